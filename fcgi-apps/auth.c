/* SPDX-License-Identifier: ISC */
/*
 * auth.c -- login, logout, the current user, password reset (API.md "Auth
 * and users").
 *
 * Login answers the same 401 for an unknown account, an inactive one, one
 * without a password yet and a wrong password, and spends one Argon2id
 * verification on each (a dummy hash when there is no account), so
 * neither the answer nor its timing says whether an account exists.
 * Password reset answers 202 whatever the address, after the same one
 * statement either way: a job naming the address goes into the outbox
 * (PostgreSQL, so a reset can be asked for while Redis is down), and the
 * email drainer looks the account up and makes the link when it sends
 * (auth.h): no link is ever stored.
 *
 * Confirming a reset sets the password and must end every session of the
 * user.  Sessions live in Redis, so the sessions end before the commit;
 * when Redis can't be reached the transaction rolls back and the answer
 * is 503 with nothing changed (the token still works once Redis is back).
 * A login racing any such change re-reads the account after creating its
 * session (auth.h, "Ending sessions").
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel/auth.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/notify.h"
#include "keel/outbox.h"
#include "keel/resource.h"
#include "keel/serve.h"
#include "keel/text.h"

enum login_field { LOGIN_LOGIN, LOGIN_PASSWORD, LOGIN__MAX };

static const struct keel_field login_fields[LOGIN__MAX] = {
	[LOGIN_LOGIN] = { .name = "login", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 254 },
	[LOGIN_PASSWORD] = { .name = "password", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = KEEL_AUTH_PASSWORD_MAX },
};

enum reset_field { RESET_EMAIL, RESET__MAX };

static const struct keel_field reset_fields[RESET__MAX] = {
	/* The check accounts are made with: only ASCII, so no other
	 * spelling of an address (U+212A for 'k', which lower() folds)
	 * opens a fresh limiter bucket.  Syntax alone: it says nothing
	 * about who has an account. */
	[RESET_EMAIL] = { .name = "email", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = KEEL_TEXT_EMAIL_MAX,
	    .check = keel_text_email_valid,
	    .check_msg = "must be an email address" },
};

enum confirm_field { CONFIRM_TOKEN, CONFIRM_PASSWORD, CONFIRM__MAX };

static const struct keel_field confirm_fields[CONFIRM__MAX] = {
	[CONFIRM_TOKEN] = { .name = "token", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 256 },
	[CONFIRM_PASSWORD] = { .name = "password", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = KEEL_AUTH_PASSWORD_MAX },
};

/*
 * On the primary: a password changed a moment ago must count.  Always
 * one row: the user's columns (all NULL when no account answers to the
 * login), then, for this handler only, the hash and the login as
 * lower() folds it -- what the lookup compares, Unicode and all (U+212A
 * KELVIN SIGN is 'k' there), so the limiter's bucket of the login is
 * the one the lookup used, whoever it found, at no extra round trip.
 */
static const struct keel_query q_login = { .name = "auth_login",
	.sql = "WITH l AS (SELECT lower($1) AS login) "
	"SELECT " KEEL_AUTH_USER_COLS ", password_hash AS hash, "
	"l.login AS folded FROM l LEFT JOIN LATERAL (SELECT * FROM users "
	"WHERE lower(email) = l.login OR lower(username) = l.login) u "
	"ON true",
	.target = KEEL_DB_PRIMARY };

/*
 * After the session exists: the account is still what the password was
 * checked against.  FOR SHARE waits for a transaction changing the row
 * (deactivation, new password, new role), which ends sessions before it
 * commits -- so either that transaction ends this session or this query
 * sees its change.
 */
static const struct keel_query q_login_recheck = {
	.name = "auth_login_recheck",
	.sql = "SELECT 1 FROM users WHERE id = $1 AND is_active "
	"AND password_hash = $2 AND role = $3 FOR SHARE",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_me = { .name = "auth_me",
	.sql = "SELECT " KEEL_AUTH_USER_COLS " FROM users WHERE id = $1 "
	"AND is_active", .target = KEEL_DB_READ };

/* The user's other live links die with the password they were for. */
static const struct keel_query q_set_password = {
	.name = "auth_set_password",
	.sql = "WITH u AS (UPDATE users SET password_hash = $2, "
	"updated_at = now() WHERE id = $1 AND is_active RETURNING id), "
	"k AS (UPDATE one_time_tokens SET used_at = now() "
	"WHERE user_id IN (SELECT id FROM u) AND used_at IS NULL) "
	"SELECT id, pg_current_xact_id()::text AS event FROM u",
	.target = KEEL_DB_PRIMARY };

static void
auth_bad_login(struct keel_req *req)
{
	keel_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"keel\"");
	keel_http_reply_error(req, 401, "unauthorized",
	    "wrong login or password");
}

/* {"token", "expiresAt", "user"} of a new session. */
static void
auth_reply_session(struct keel_req *req, const char *tok, time_t exp,
    const struct keel_rows *user)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	char		 at[KEEL_TIME_LEN + 1];

	keel_time_format(exp, at);
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "token");
	keel_jw_str(&w, tok);
	keel_jw_key(&w, "expiresAt");
	keel_jw_str(&w, at);
	keel_jw_key(&w, "user");
	keel_res_write(&w, &keel_auth_users, user, 0);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
	keel_buf_free(&b);
}

/*
 * What names a login's two limiter buckets (keel_limit_login()): *folded
 * the login as the lookup folded it (row's "folded"), whoever answers to
 * it, named in the keys by its hash under a key of KEEL_SECRET's (and of
 * KEEL_SECRET_FALLBACK's while a rotation runs), so its count can't say
 * whether anyone does; *user the account, however named (email or
 * username), or NULL for none.  False when the row has no folded login.
 */
static bool
auth_buckets(const struct keel_rows *rows, const char **folded,
    const char **user)
{
	*folded = keel_rows_value(rows, 0, keel_rows_col(rows, "folded"));
	*user = keel_rows_value(rows, 0, keel_rows_col(rows, "id"));
	return *folded != NULL;
}

static enum keel_err
auth_login(struct keel_req *req)
{
	struct keel_value	 v[LOGIN__MAX];
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL, *again = NULL;
	const char		*hash = NULL, *role, *folded, *user;
	char			 tok[KEEL_AUTH_TOKEN_LEN + 1];
	char			 sid[KEEL_AUTH_ID_LEN + 1];
	int64_t			 uid;
	time_t			 exp;
	enum keel_err		 er;

	if (keel_http_body_fields(req, login_fields, LOGIN__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_db_params_init(&p);
	keel_db_param_text(&p, v[LOGIN_LOGIN].s);
	if ((er = keel_db_query(req->db, &q_login, &p, &rows)) != KEEL_OK)
		goto out;
	if (!keel_res_check(&keel_auth_users, rows)) {
		er = KEEL_EINTERNAL;
		goto out;
	}
	/* Usernames can't hold '@', so at most one user matches: one row. */
	if (keel_rows_count(rows) != 1 ||
	    !auth_buckets(rows, &folded, &user)) {
		keel_log_error("auth: the login lookup returned %zu rows, not "
		    "one with the folded login", keel_rows_count(rows));
		er = KEEL_EINTERNAL;
		goto out;
	}
	/* The login's buckets too, before the password is looked at. */
	if (keel_limit_login(req, folded, user) != KEEL_STEP_GO)
		goto out;
	/* No account: its columns are NULL, and the hash stays NULL. */
	if (keel_rows_bool(rows, 0, keel_rows_col(rows, "isActive")))
		hash = keel_rows_value(rows, 0, keel_rows_col(rows, "hash"));
	/* Always one verification: a NULL hash checks a dummy. */
	if (!keel_auth_verify(hash, v[LOGIN_PASSWORD].s)) {
		/* The access line's 401 says it: an operator's log has
		 * no line per guess a client can send (debug has). */
		keel_log_debug("auth: failed login");
		auth_bad_login(req);
		goto out;
	}
	uid = keel_rows_int64(rows, 0, keel_rows_col(rows, "id"));
	role = keel_rows_value(rows, 0, keel_rows_col(rows, "role"));
	if ((er = keel_auth_session_new(req, uid, keel_auth_role_parse(role),
	    tok, &exp)) != KEEL_OK)
		goto out;
	keel_db_params_init(&p);
	keel_db_param_int(&p, uid);
	keel_db_param_text(&p, hash);
	keel_db_param_text(&p, role);
	if ((er = keel_db_query(req->db, &q_login_recheck, &p, &again)) !=
	    KEEL_OK || keel_rows_count(again) != 1) {
		/* Deactivated, or its password or role changed, meanwhile. */
		keel_auth_token_id(tok, sid);
		if (keel_auth_session_end(req->redis, uid, sid) != KEEL_OK)
			keel_log_error("auth: could not end a stale login's "
			    "session of user %lld", (long long)uid);
		if (er == KEEL_OK) {
			keel_log_info("auth: login raced an account change");
			auth_bad_login(req);
		}
		goto out;
	}
	auth_reply_session(req, tok, exp, rows);
out:
	explicit_bzero(tok, sizeof(tok));
	keel_rows_free(again);
	keel_rows_free(rows);
	return er;
}

static enum keel_err
auth_logout(struct keel_req *req)
{
	enum keel_err	 er;

	if ((er = keel_auth_session_end(req->redis, req->user->id,
	    req->user->session)) != KEEL_OK)
		return er;
	keel_http_reply_empty(req, 204);
	return KEEL_OK;
}

static enum keel_err
auth_me(struct keel_req *req)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_int(&p, req->user->id);
	if ((er = keel_db_query(req->db, &q_me, &p, &rows)) != KEEL_OK)
		goto out;
	if (keel_rows_count(rows) == 0)
		/* Deactivated a moment ago, before the session ended. */
		keel_http_reply_error(req, 401, "unauthorized",
		    "this account is not active");
	else
		er = keel_res_reply_row(req, &keel_auth_users, 200, rows);
out:
	keel_rows_free(rows);
	return er;
}

static enum keel_err
auth_reset(struct keel_req *req)
{
	struct keel_value	 v[RESET__MAX];
	int64_t			 job;
	enum keel_err		 er;

	if (keel_http_body_fields(req, reset_fields, RESET__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	/* One statement, no Redis: the row commits even while it is down. */
	if ((er = keel_auth_queue_reset(req->db, v[RESET_EMAIL].s, &job)) !=
	    KEEL_OK)
		return er;
	/* Best effort: what isn't pushed now, the relay pushes. */
	if (job > 0)
		(void)keel_outbox_push(req->db, req->redis, &job, 1);
	/* 202 either way: the answer must not say who has an account. */
	keel_http_reply_empty(req, 202);
	return KEEL_OK;
}

static void
auth_bad_token(struct keel_req *req)
{
	const struct keel_http_error e = { .status = 400,
	    .message = "the link is invalid, expired or already used; ask "
	    "for a new one",
	    .field = "token", .why = "is invalid, expired or already used" };

	keel_http_reply_problem(req, &e);
}

static enum keel_err
auth_reset_confirm(struct keel_req *req)
{
	struct keel_value	 v[CONFIRM__MAX];
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	const char		*msg;
	char			 hash[KEEL_AUTH_HASH_MAX], purpose[16];
	int64_t			 uid, job = 0;
	enum keel_err		 er;

	if (keel_http_body_fields(req, confirm_fields, CONFIRM__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	/* Check the password before the token dies for nothing. */
	if ((msg = keel_auth_password_check(v[CONFIRM_PASSWORD].s)) != NULL) {
		keel_http_reply_field(req, "password", msg);
		return KEEL_OK;
	}
	if (!keel_auth_token_valid(v[CONFIRM_TOKEN].s)) {
		auth_bad_token(req);
		return KEEL_OK;
	}
	/* Hashed before the transaction: no lock waits on Argon2id. */
	if ((er = keel_auth_hash(v[CONFIRM_PASSWORD].s, hash)) != KEEL_OK)
		return er;
	if ((er = keel_db_begin(req->db)) != KEEL_OK)
		goto out;
	er = keel_auth_once_take(req->db, v[CONFIRM_TOKEN].s, &uid,
	    purpose, sizeof(purpose));
	if (er == KEEL_ENOENT) {
		auth_bad_token(req);
		er = KEEL_OK;
		goto out;
	}
	if (er != KEEL_OK)
		goto out;
	keel_db_params_init(&p);
	keel_db_param_int(&p, uid);
	keel_db_param_text(&p, hash);
	if ((er = keel_db_query(req->db, &q_set_password, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	if (keel_rows_count(rows) == 0) {
		/* Deactivated since the link was sent. */
		auth_bad_token(req);
		goto out;
	}
	/*
	 * Whoever knew the old password is logged out everywhere, before
	 * the commit: without Redis nothing changes and the answer is 503.
	 */
	if ((er = keel_auth_sessions_end_all(req->redis, uid, NULL)) !=
	    KEEL_OK) {
		keel_log_warnx("auth: password reset of user %lld refused: "
		    "sessions can't be ended (%s)", (long long)uid,
		    keel_strerror(er));
		er = KEEL_EUNAVAIL;
		goto out;
	}
	/* A reset changed a password the user had; an invitation set the
	 * first one, which is no news to them. */
	if (strcmp(purpose, "reset") == 0 && (er =
	    keel_notify_queue_password(req->db, uid, "reset",
	    keel_rows_value(rows, 0, 1), &job)) != KEEL_OK)
		goto out;
	if ((er = keel_db_commit(req->db)) != KEEL_OK)
		goto out;
	/* Best effort: what isn't pushed now, the relay pushes. */
	if (job > 0)
		(void)keel_outbox_push(req->db, req->redis, &job, 1);
	keel_http_reply_empty(req, 204);
out:
	keel_db_rollback(req->db);
	explicit_bzero(hash, sizeof(hash));
	keel_rows_free(rows);
	return er;
}

/*
 * Login and the two password-reset routes count against the auth limiter
 * (API.md "Rate limits"); asking for a reset answers 202 whatever
 * happens, so every request of it counts.  Every row says .no_idem: an
 * auth route takes no part in idempotency (README "Idempotency"), its
 * bodies and answers hold passwords and tokens, and each logout must end
 * the session it names.
 */
static const struct keel_route auth_routes[] = {
	{ .method = "POST", .pattern = "/api/auth/login",
	    .handler = auth_login, .access = KEEL_ACCESS_ANYONE,
	    .limit = KEEL_LIMIT_CLASS_AUTH, .no_idem = true },
	{ .method = "POST", .pattern = "/api/auth/logout",
	    .handler = auth_logout, .access = KEEL_ACCESS_USER,
	    .no_idem = true },
	{ .method = "GET", .pattern = "/api/auth/me", .handler = auth_me,
	    .access = KEEL_ACCESS_USER, .no_idem = true },
	{ .method = "POST", .pattern = "/api/auth/password-reset",
	    .handler = auth_reset, .access = KEEL_ACCESS_ANYONE,
	    .limit = KEEL_LIMIT_CLASS_AUTH_EVERY, .no_idem = true },
	{ .method = "POST", .pattern = "/api/auth/password-reset/confirm",
	    .handler = auth_reset_confirm, .access = KEEL_ACCESS_ANYONE,
	    .limit = KEEL_LIMIT_CLASS_AUTH, .no_idem = true },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "auth",
	    .routes = auth_routes, .nroutes = KEEL_NELEM(auth_routes) };

	return keel_serve(argc, argv, &app);
}
