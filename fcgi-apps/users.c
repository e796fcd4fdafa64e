/* SPDX-License-Identifier: ISC */
/*
 * users.c -- accounts (API.md "Auth and users").
 *
 * Admins create, list, change and deactivate users; everyone else sees
 * and changes only themselves (name and password), and another user's
 * id answers 404 as if it did not exist.  A change that makes a session's
 * role stale, deactivation and a password change end sessions at once:
 * inside their transaction, before the commit, so that without Redis they
 * answer 503 and change nothing, and a login racing them is caught by its
 * re-check (auth.h, "Ending sessions").  An invitation's token and its
 * set-password link go into PostgreSQL in the same transaction as the
 * user, so there is never one without the other; the email is pushed to
 * its queue right after the commit (the relay catches what that misses).
 * A new user starts with no session: any Redis still holds for its id (a
 * restored database reuses ids) ends in the same way, before the commit.
 *
 * A change that takes a user away -- deactivation, a new role -- is
 * refused (409) when it would leave what depends on them broken, decided
 * in its transaction after its UPDATE holds the user's row: an active
 * contract not yet ended keeps its customer an active customer (as it
 * keeps its car in service, cars.c), and the system keeps an active
 * admin.  The customer's row orders the first against a contract being
 * written (contracts.c holds it FOR SHARE to insert one), so the check,
 * a statement of its own and so a newer snapshot under READ COMMITTED,
 * sees the contract it waited for.  Two admins demoting each other touch
 * different rows: those changes take one advisory lock, and count the
 * active admins in the statement after it, which sees what the lock's
 * last holder committed.
 */
#include "config.h"

#include <string.h>

#include "keel/auth.h"
#include "keel/board.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/limit.h"
#include "keel/mem.h"
#include "keel/notify.h"
#include "keel/outbox.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/serve.h"
#include "keel/text.h"

static const char *const user_roles[] = { "admin", "staff", "customer",
    "student", NULL };

enum user_field {
	USER_EMAIL, USER_USERNAME, USER_NAME, USER_ROLE, USER_SEND,
	USER_PASSWORD, USER_CURRENT, USER__MAX
};

static const struct keel_field user_fields[USER__MAX] = {
	[USER_EMAIL] = KEEL_AUTH_FIELD_EMAIL,
	[USER_USERNAME] = KEEL_AUTH_FIELD_USERNAME,
	[USER_NAME] = KEEL_AUTH_FIELD_NAME,
	[USER_ROLE] = { .name = "role", .type = KEEL_FIELD_ENUM,
	    .required = true, .values = user_roles },
	[USER_SEND] = { .name = "sendCredentials", .type = KEEL_FIELD_BOOL },
	[USER_PASSWORD] = { .name = "password", .type = KEEL_FIELD_STRING,
	    .min = 1, .max = KEEL_AUTH_PASSWORD_MAX },
	[USER_CURRENT] = { .name = "currentPassword",
	    .type = KEEL_FIELD_STRING, .min = 1,
	    .max = KEEL_AUTH_PASSWORD_MAX },
};

static const struct keel_field user_filters[] = {
	{ .name = "role", .type = KEEL_FIELD_ENUM, .values = user_roles },
};

#define USERS_LIST "SELECT " KEEL_AUTH_USER_COLS " FROM users " \
	"WHERE ($4::text IS NULL OR role = $4) "

static const struct keel_list users_list_rows = { .scope = "users",
	.after = { .name = "users_list_after", .sql = USERS_LIST
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "users_list_before", .sql = USERS_LIST
	    KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.filters = user_filters, .nfilters = KEEL_NELEM(user_filters),
};

static const struct keel_query q_user_get = { .name = "users_get",
	.sql = "SELECT " KEEL_AUTH_USER_COLS " FROM users WHERE id = $1",
	.target = KEEL_DB_READ };

static const struct keel_query q_user_insert = { .name = "users_insert",
	.sql = "INSERT INTO users (email, username, name, role) "
	"VALUES (lower($1), $2, $3, $4) RETURNING " KEEL_AUTH_USER_COLS,
	.target = KEEL_DB_PRIMARY };

/*
 * "roleChanged": the new role differs from the old (sessions end);
 * "wasAdmin": the old role was admin (the last-admin rule).  A new
 * password or address ends the links sent for the old ones (k).
 * "event": this transaction's id, naming the change in its
 * notifications' job keys.  The old row is read FOR UPDATE, and the
 * UPDATE waits on that read (its EXISTS): a change that waited for a
 * racing one compares with the row that one left, not with the
 * statement's snapshot, which predates the wait -- else a role changed
 * back to what the snapshot held would look unchanged and the sessions
 * of the role in between would live on.
 */
static const struct keel_query q_user_update = { .name = "users_update",
	.sql = "WITH old AS MATERIALIZED (SELECT role, email FROM users "
	"WHERE id = $1 FOR UPDATE), "
	"u AS (UPDATE users SET email = COALESCE(lower($2), email), "
	"username = COALESCE($3, username), name = COALESCE($4, name), "
	"role = COALESCE($5, role), "
	"password_hash = COALESCE($6, password_hash), updated_at = now() "
	"WHERE id = $1 AND EXISTS (SELECT FROM old) RETURNING *), "
	"k AS (UPDATE one_time_tokens SET used_at = now() "
	"WHERE user_id = $1 AND used_at IS NULL AND EXISTS (SELECT FROM u) "
	"AND ($6 IS NOT NULL OR lower($2) <> (SELECT email FROM old))) "
	"SELECT " KEEL_AUTH_USER_COLS ", "
	"role <> (SELECT role FROM old) AS \"roleChanged\", "
	"(SELECT role FROM old) = 'admin' AS \"wasAdmin\", "
	"pg_current_xact_id()::text AS event FROM u",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_user_deactivate = {
	.name = "users_deactivate",
	.sql = "UPDATE users SET is_active = false, updated_at = now() "
	"WHERE id = $1 RETURNING " KEEL_AUTH_USER_COLS,
	.target = KEEL_DB_PRIMARY };

/*
 * The lock every change that may take an active admin away holds to its
 * commit: one key, for this rule only.
 */
static const struct keel_query q_user_admins_lock = {
	.name = "users_admins_lock",
	.sql = "SELECT pg_advisory_xact_lock(hashtext('keel:users:admins'))",
	.target = KEEL_DB_PRIMARY };

/* Any active admin, this transaction's change counted. */
static const struct keel_query q_user_admin_left = {
	.name = "users_admin_left",
	.sql = "SELECT FROM users WHERE role = 'admin' AND is_active LIMIT 1",
	.target = KEEL_DB_PRIMARY };

/* An active contract of customer $1 not yet ended (cars.c's rule). */
static const struct keel_query q_user_booked = { .name = "users_booked",
	.sql = "SELECT FROM contracts WHERE customer_id = $1 "
	"AND status = 'active' AND end_date >= current_date LIMIT 1",
	.target = KEEL_DB_PRIMARY };

/* What a change's transaction needs of its request (w->arg). */
struct users_change {
	const char	*hash;		/* a new password's, or NULL */
	bool		 role;		/* the request sets a role */
	bool		 deactivate;	/* DELETE */
};

static void
users_not_found(struct keel_req *req)
{
	keel_http_reply_error(req, 404, "not_found", "no such user");
}

static enum keel_err
users_list(struct keel_req *req)
{
	return keel_res_list(req, &keel_auth_users, &users_list_rows, NULL);
}

static enum keel_err
users_get(struct keel_req *req)
{
	struct keel_db_params	 p;
	int64_t			 id = keel_http_param_int(req, "id");

	/* Someone else's account does not exist, as far as they can tell. */
	if (req->user->role != KEEL_ROLE_ADMIN && id != req->user->id) {
		users_not_found(req);
		return KEEL_OK;
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, id);
	return keel_res_get(req, &keel_auth_users, &q_user_get, &p);
}

/*
 * In the new user's transaction: no session may name the new id, then
 * the invitation, when one was asked.  A database restored to an earlier
 * point hands out again the ids the lost writes had used, while Redis
 * still holds those users' sessions (uid, role): one would act as the
 * new user, with the old one's role.  They end here, before the commit,
 * so without Redis the user is not created (503) rather than created
 * with someone's session (README, "Restoring PostgreSQL from a backup").
 * One Redis call per user created; sessions are still read from Redis
 * alone.
 */
static enum keel_err
users_created(struct keel_req *req, const struct keel_rows *rows,
    struct keel_res_write *w)
{
	int64_t		 id = keel_rows_int64(rows, 0, keel_rows_col(rows,
			    "id")), job;
	enum keel_err	 er;

	if ((er = keel_auth_sessions_end_all(req->redis, id, NULL)) !=
	    KEEL_OK)
		return er;
	if (!*(const bool *)w->arg)
		return KEEL_OK;
	if ((er = keel_auth_queue_invite(req->db, id, &job)) == KEEL_OK)
		keel_res_job(w, job);
	return er;
}

static enum keel_err
users_create(struct keel_req *req)
{
	struct keel_value	 v[USER__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_user_insert, .p = &p,
	    .status = 201, .location = "/api/users/",
	    .in_tx = users_created };
	bool			 invite;
	size_t			 i;

	if (keel_http_body_fields(req, user_fields, USER__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	/* Passwords are only ever set by their owner, through a link. */
	if (v[USER_PASSWORD].present || v[USER_CURRENT].present) {
		keel_http_reply_field(req, v[USER_PASSWORD].present ?
		    "password" : "currentPassword", "can't be set here; "
		    "sendCredentials emails a set-password link");
		return KEEL_OK;
	}
	keel_db_params_init(&p);
	for (i = USER_EMAIL; i <= USER_ROLE; i++)
		keel_res_param(&p, &v[i]);
	invite = v[USER_SEND].present && v[USER_SEND].b;
	w.arg = &invite;
	return keel_res_change(req, &keel_auth_users, &w);
}

/*
 * Who may change what: admins any field but passwords; a user their own
 * name and, with the current one, their password.  A step: replied when
 * it refuses.
 */
static enum keel_step
users_patch_allowed(struct keel_req *req, int64_t id,
    const struct keel_value *v)
{
	bool	 self = id == req->user->id;
	bool	 admin = req->user->role == KEEL_ROLE_ADMIN;

	if (!self && !admin)
		users_not_found(req);
	else if (!admin && (v[USER_ROLE].present ||
	    v[USER_EMAIL].present || v[USER_USERNAME].present))
		keel_http_reply_error(req, 403, "forbidden",
		    "you may change your own name and password only");
	else if (v[USER_SEND].present)
		keel_http_reply_field(req, "sendCredentials",
		    "applies to new users only");
	else if (v[USER_PASSWORD].present && !self)
		keel_http_reply_error(req, 403, "forbidden",
		    "only the owner sets a password (password reset sends "
		    "them a link)");
	else if (v[USER_CURRENT].present && !v[USER_PASSWORD].present)
		keel_http_reply_field(req, "password",
		    "is required with currentPassword");
	else
		return KEEL_STEP_GO;
	return KEEL_STEP_REPLIED;
}

/*
 * In a change's transaction: the user's notifications of a new role and
 * a new password, queued in the outbox, each keyed by the change (its
 * transaction), so a retried job notifies once and every change does.
 */
static enum keel_err
users_notify(struct keel_req *req, const struct keel_rows *rows,
    struct keel_res_write *w)
{
	struct keel_buf	 b = { NULL, 0, 0 }, key = { NULL, 0, 0 };
	struct keel_jw	 jw;
	int64_t		 id = keel_http_param_int(req, "id"), job;
	const char	*event = keel_rows_value(rows, 0, keel_rows_col(rows,
	    "event"));
	const char	*role = keel_rows_value(rows, 0, keel_rows_col(rows,
	    "role"));
	const struct users_change *c = w->arg;
	enum keel_err	 er = KEEL_OK;

	if (c->hash != NULL) {
		if ((er = keel_notify_queue_password(req->db, id, "profile",
		    event, &job)) != KEEL_OK)
			return er;
		keel_res_job(w, job);
	}
	if (!keel_rows_bool(rows, 0, keel_rows_col(rows, "roleChanged")))
		return KEEL_OK;
	keel_jw_init(&jw, &b);
	keel_jw_obj_open(&jw);
	keel_jw_key(&jw, "userId");
	keel_jw_int(&jw, id);
	keel_jw_key(&jw, "role");
	keel_jw_str(&jw, role);
	keel_jw_obj_close(&jw);
	keel_buf_printf(&key, "notification:role:%lld:%s", (long long)id,
	    event);
	if ((er = keel_outbox_add(req->db, "notifications", "role_changed",
	    b.data, key.data, &job)) == KEEL_OK)
		keel_res_job(w, job);
	keel_buf_free(&key);
	keel_buf_free(&b);
	return er;
}

/*
 * In a change's transaction, after its UPDATE holds the user's row (the
 * file's comment): a step, replied (409, rolled back) when the change
 * takes away a customer who holds a contract, or the last active admin,
 * or sets the role of a deactivated account (which has no sessions to
 * take a role into, and no way back: nothing reactivates one).
 */
static enum keel_step
users_still_whole(struct keel_req *req, const struct keel_rows *rows,
    const struct users_change *c, enum keel_err *er)
{
	struct keel_db_params	 p;
	struct keel_rows	*found = NULL;
	const char		*role = keel_rows_value(rows, 0,
	    keel_rows_col(rows, "role"));
	enum keel_step		 step = KEEL_STEP_REPLIED;

	*er = KEEL_OK;
	if (!c->deactivate && !c->role)
		return KEEL_STEP_GO;
	if (!c->deactivate && !keel_rows_bool(rows, 0, keel_rows_col(rows,
	    "isActive"))) {
		keel_http_reply_error(req, 409, "conflict", "the user is "
		    "deactivated; their role doesn't change");
		return KEEL_STEP_REPLIED;
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_rows_int64(rows, 0, 0));	/* its id */
	if (c->deactivate || strcmp(role, "customer") != 0) {
		if ((*er = keel_db_query(req->db, &q_user_booked, &p,
		    &found)) != KEEL_OK)
			goto out;
		if (keel_rows_count(found) > 0) {
			keel_http_reply_error(req, 409, "conflict", "the "
			    "customer has active contracts; cancel or "
			    "complete them first");
			goto out;
		}
		keel_rows_free(found);
		found = NULL;
	}
	/* Only an admin taken away can leave none: everyone else's change
	 * needs neither the lock nor the count. */
	if (c->deactivate ? strcmp(role, "admin") == 0 :
	    strcmp(role, "admin") != 0 && keel_rows_bool(rows, 0,
	    keel_rows_col(rows, "wasAdmin"))) {
		keel_db_params_init(&p);
		if ((*er = keel_db_query(req->db, &q_user_admins_lock, &p,
		    &found)) != KEEL_OK)
			goto out;
		keel_rows_free(found);
		found = NULL;
		if ((*er = keel_db_query(req->db, &q_user_admin_left, &p,
		    &found)) != KEEL_OK)
			goto out;
		if (keel_rows_count(found) == 0) {
			keel_http_reply_error(req, 409, "conflict", "the last "
			    "active admin can't be demoted or deactivated; "
			    "make another admin first");
			goto out;
		}
	}
	step = KEEL_STEP_GO;
out:
	keel_rows_free(found);
	return step;
}

/*
 * Before the commit of a change: a stale role in a session would outlive
 * it, and a new password logs out whoever knew the old one (but this
 * session).  So that without Redis nothing changes (503).  A change
 * (not a deactivation) then queues its notifications.
 */
static enum keel_err
users_end_sessions(struct keel_req *req, const struct keel_rows *rows,
    struct keel_res_write *w)
{
	const struct users_change *c = w->arg;
	int64_t		 id = keel_http_param_int(req, "id");
	size_t		 changed = keel_rows_col(rows, "roleChanged");
	enum keel_err	 er = KEEL_OK;

	if (users_still_whole(req, rows, c, &er) != KEEL_STEP_GO)
		return er;
	if (changed == KEEL_ROWS_NOCOL || keel_rows_bool(rows, 0, changed))
		er = keel_auth_sessions_end_all(req->redis, id, NULL);
	else if (c->hash != NULL)
		er = keel_auth_sessions_end_all(req->redis, id,
		    req->user->session);
	if (er != KEEL_OK || changed == KEEL_ROWS_NOCOL)
		return er;
	return users_notify(req, rows, w);
}

/* A currentPassword guess's place in the login buckets of req's user. */
static enum keel_step
users_limit_guess(struct keel_req *req)
{
	const char	*me = keel_arena_printf(req->arena, "%lld",
			    (long long)req->user->id);

	return keel_limit_account(req, me, me);
}

static enum keel_err
users_patch(struct keel_req *req)
{
	struct keel_value	 v[USER__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_user_update, .p = &p,
	    .status = 200, .in_tx = users_end_sessions };
	char			 hash[KEEL_AUTH_HASH_MAX] = "";
	struct users_change	 c = { NULL, false, false };
	int64_t			 id = keel_http_param_int(req, "id");
	size_t			 i;
	enum keel_err		 er = KEEL_OK;

	if (keel_http_body_fields(req, user_fields, USER__MAX,
	    KEEL_FIELDS_SOME, v) != KEEL_STEP_GO ||
	    users_patch_allowed(req, id, v) != KEEL_STEP_GO)
		return KEEL_OK;
	/*
	 * A currentPassword is a guess like a login's: the account's
	 * bucket of every address, and this address's of the one spelling
	 * a session has for its own account, its id.
	 */
	if (v[USER_PASSWORD].present && v[USER_CURRENT].present &&
	    users_limit_guess(req) != KEEL_STEP_GO)
		goto out;
	if (v[USER_PASSWORD].present && keel_auth_new_password(req,
	    v[USER_PASSWORD].s, v[USER_CURRENT].s, hash, &er) != KEEL_STEP_GO)
		goto out;
	keel_db_params_init(&p);
	keel_db_param_int(&p, id);
	for (i = USER_EMAIL; i <= USER_ROLE; i++)
		keel_res_param(&p, &v[i]);
	keel_db_param_text(&p, hash[0] != '\0' ? hash : NULL);
	c.hash = hash[0] != '\0' ? hash : NULL;
	c.role = v[USER_ROLE].present && !v[USER_ROLE].is_null;
	w.arg = &c;
	er = keel_res_change(req, &keel_auth_users, &w);
	/*
	 * Committed: the leaderboard pages cached with the old name are a
	 * generation behind (best effort, as keel_res_change's own
	 * invalidation; the reply is sent after this returns).
	 */
	if (er == KEEL_OK && keel_http_status(req) == 200 &&
	    v[USER_NAME].present &&
	    keel_board_invalidate_user(req->db, req->cache, id) != KEEL_OK)
		keel_log_warnx("users: leaderboard pages of user %lld may "
		    "show the old name until they expire", (long long)id);
out:
	explicit_bzero(hash, sizeof(hash));
	return er;
}

/*
 * The sessions end before the commit: without Redis the account stays
 * active (503) rather than inactive with live sessions, and a login that
 * read it active re-checks after this commits.
 */
static enum keel_err
users_deactivate(struct keel_req *req)
{
	struct keel_db_params	 p;
	struct users_change	 c = { NULL, false, true };
	struct keel_res_write	 w = { .q = &q_user_deactivate, .p = &p,
	    .status = 200, .in_tx = users_end_sessions, .arg = &c };

	if (keel_http_param_int(req, "id") == req->user->id) {
		keel_http_reply_error(req, 409, "conflict",
		    "you can't deactivate your own account");
		return KEEL_OK;
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	return keel_res_change(req, &keel_auth_users, &w);
}

static const struct keel_route users_routes[] = {
	{ .method = "GET", .pattern = "/api/users", .handler = users_list,
	    .access = KEEL_ROLE_ADMIN, .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/users", .handler = users_create,
	    .access = KEEL_ROLE_ADMIN },
	{ .method = "GET", .pattern = "/api/users/{id:int}",
	    .handler = users_get, .access = KEEL_ACCESS_USER },
	{ .method = "PATCH", .pattern = "/api/users/{id:int}",
	    .handler = users_patch, .access = KEEL_ACCESS_USER },
	{ .method = "DELETE", .pattern = "/api/users/{id:int}",
	    .handler = users_deactivate, .access = KEEL_ROLE_ADMIN },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "users",
	    .routes = users_routes, .nroutes = KEEL_NELEM(users_routes) };

	return keel_serve(argc, argv, &app);
}
