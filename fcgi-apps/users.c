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
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "keel/auth.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/page.h"
#include "keel/router.h"
#include "keel/serve.h"

enum user_col { COL_ID, COL_EMAIL, COL_USERNAME, COL_NAME, COL_ROLE,
	COL_ACTIVE, COL_CREATED, COL_UPDATED };

static const char *const user_roles[] = { "admin", "staff", "customer",
    "student", NULL };

/* The shape sql/002_users.sql checks, minus whitespace anywhere. */
static int
users_email_check(const char *s)
{
	const char	*at = strchr(s, '@');
	size_t		 i;

	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@'))
		return -1;
	for (i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return -1;
	return 0;
}

static int
users_username_check(const char *s)
{
	size_t	 i, n = strlen(s);

	if (n < 3 || n > 32)
		return -1;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("_.-", s[i]) ==
		    NULL)
			return -1;
	return 0;
}

enum user_field {
	USER_EMAIL, USER_USERNAME, USER_NAME, USER_ROLE, USER_SEND,
	USER_PASSWORD, USER_CURRENT, USER__MAX
};

static const struct keel_field user_fields[USER__MAX] = {
	[USER_EMAIL] = { "email", KEEL_FIELD_STRING, 1, 0, 3, 254, NULL,
	    users_email_check, "must be an email address" },
	[USER_USERNAME] = { "username", KEEL_FIELD_STRING, 1, 0, 3, 32, NULL,
	    users_username_check, "must be 3-32 letters, digits, '_', '.' "
	    "or '-'" },
	[USER_NAME] = { "name", KEEL_FIELD_STRING, 1, 0, 1, 100, NULL, NULL,
	    NULL },
	[USER_ROLE] = { "role", KEEL_FIELD_ENUM, 1, 0, 0, 0, user_roles, NULL,
	    NULL },
	[USER_SEND] = { "sendCredentials", KEEL_FIELD_BOOL, 0, 0, 0, 0, NULL,
	    NULL, NULL },
	[USER_PASSWORD] = { "password", KEEL_FIELD_STRING, 0, 0, 1,
	    KEEL_AUTH_PASSWORD_MAX, NULL, NULL, NULL },
	[USER_CURRENT] = { "currentPassword", KEEL_FIELD_STRING, 0, 0, 1,
	    KEEL_AUTH_PASSWORD_MAX, NULL, NULL, NULL },
};

enum user_filter { FILTER_ROLE, FILTER__MAX };

static const struct keel_field user_filters[FILTER__MAX] = {
	[FILTER_ROLE] = { "role", KEEL_FIELD_ENUM, 0, 0, 0, 0, user_roles,
	    NULL, NULL },
};

static const struct keel_query q_users_after = { "users_list_after",
	"SELECT " KEEL_AUTH_USER_COLS " FROM users "
	"WHERE ($1::text IS NULL OR role = $1) "
	"AND ($2::timestamptz IS NULL OR "
	"(created_at, id) < ($2::timestamptz, $3::bigint)) "
	"ORDER BY created_at DESC, id DESC LIMIT $4", 4, KEEL_DB_READ };

static const struct keel_query q_users_before = { "users_list_before",
	"SELECT " KEEL_AUTH_USER_COLS " FROM users "
	"WHERE ($1::text IS NULL OR role = $1) "
	"AND (created_at, id) > ($2::timestamptz, $3::bigint) "
	"ORDER BY created_at ASC, id ASC LIMIT $4", 4, KEEL_DB_READ };

static const struct keel_query q_user_get = { "users_get",
	"SELECT " KEEL_AUTH_USER_COLS " FROM users WHERE id = $1", 1,
	KEEL_DB_READ };

static const struct keel_query q_user_hash = { "users_hash",
	"SELECT password_hash FROM users WHERE id = $1 AND is_active", 1,
	KEEL_DB_PRIMARY };

static const struct keel_query q_user_insert = { "users_insert",
	"INSERT INTO users (email, username, name, role) "
	"VALUES (lower($1), $2, $3, $4) RETURNING " KEEL_AUTH_USER_COLS, 4,
	KEEL_DB_PRIMARY };

/* $6: the new role differs from the old one (sessions must end). */
static const struct keel_query q_user_update = { "users_update",
	"UPDATE users u SET email = COALESCE(lower($2), u.email), "
	"username = COALESCE($3, u.username), name = COALESCE($4, u.name), "
	"role = COALESCE($5, u.role), "
	"password_hash = COALESCE($6, u.password_hash), updated_at = now() "
	"FROM users old WHERE u.id = $1 AND old.id = u.id "
	"RETURNING u.id, u.email, u.username, u.name, u.role, u.is_active, "
	"to_char(u.created_at AT TIME ZONE 'UTC', "
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
	"to_char(u.updated_at AT TIME ZONE 'UTC', "
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), old.role <> u.role",
	6, KEEL_DB_PRIMARY };

static const struct keel_query q_user_deactivate = { "users_deactivate",
	"UPDATE users SET is_active = false, updated_at = now() "
	"WHERE id = $1 RETURNING " KEEL_AUTH_USER_COLS, 1, KEEL_DB_PRIMARY };

static int
users_is_admin(const struct keel_req *req)
{
	return req->user->role == KEEL_ROLE_ADMIN;
}

static void
users_not_found(struct keel_req *req)
{
	keel_http_reply_error(req, 404, "not_found", "no such user", NULL);
}

/* Replies with the one user in rows, or 404. */
static enum keel_err
users_reply_one(struct keel_req *req, int status, struct keel_rows *rows)
{
	struct json_object	*o;

	if (keel_rows_count(rows) == 0) {
		users_not_found(req);
		return KEEL_OK;
	}
	o = keel_auth_user_json(rows, 0, 0);
	keel_http_reply_json(req, status, o);
	json_object_put(o);
	return KEEL_OK;
}

/* A 422 naming one field. */
static void
users_field_error(struct keel_req *req, int status, const char *code,
    const char *field, const char *msg)
{
	struct json_object	*f;

	f = json_object_new_object();
	json_object_object_add(f, field, json_object_new_string(msg));
	keel_http_reply_error(req, status, code, status == 409 ?
	    "a user with these details exists" : "some fields are not valid",
	    f);
	json_object_put(f);
}

/* Maps a write's failure to its reply; KEEL_OK once replied. */
static enum keel_err
users_write_failed(struct keel_req *req, enum keel_err er)
{
	const char	*cons = keel_db_constraint(req->db);

	if (er == KEEL_ECONFLICT && strcmp(cons, "users_email_key") == 0) {
		users_field_error(req, 409, "conflict", "email",
		    "is already registered");
		return KEEL_OK;
	}
	if (er == KEEL_ECONFLICT && strcmp(cons, "users_username_key") == 0) {
		users_field_error(req, 409, "conflict", "username",
		    "is taken");
		return KEEL_OK;
	}
	if (er == KEEL_EINVAL) {
		keel_http_reply_error(req, 422, "validation_failed",
		    "the user breaks a data rule", NULL);
		return KEEL_OK;
	}
	return er;
}

/* Sort keys of a user row, as the list's cursors carry them. */
static const size_t users_keys[] = { COL_CREATED, COL_ID };

static enum keel_err
users_list(struct keel_req *req)
{
	struct keel_value	 f[FILTER__MAX];
	struct keel_page	 pg;
	struct keel_rows	*rows = NULL;
	struct json_object	*body, *data;
	struct keel_page_window	 w;
	const char		*params[4];
	size_t			 i;
	int64_t			 id;
	int			 back;
	enum keel_err		 er;

	if (keel_http_query_fields(req, user_filters, FILTER__MAX, f) ||
	    keel_page_from_request(req, "users", 2, &pg))
		return KEEL_OK;
	if (pg.dir != KEEL_PAGE_FIRST &&
	    keel_parse_int64(pg.keys[1], 1, INT64_MAX, &id) == -1)
		return KEEL_EINTERNAL;
	back = pg.dir == KEEL_PAGE_BEFORE;
	params[0] = f[FILTER_ROLE].s;
	params[1] = pg.dir == KEEL_PAGE_FIRST ? NULL : pg.keys[0];
	params[2] = pg.dir == KEEL_PAGE_FIRST ? NULL : pg.keys[1];
	/* One row more than asked tells whether another page follows. */
	params[3] = keel_arena_printf(req->arena, "%d", pg.limit + 1);
	if ((er = keel_db_query(req->db, back ? &q_users_before :
	    &q_users_after, params, &rows)) != KEEL_OK)
		goto out;
	keel_page_window(req, &pg, "users", rows, users_keys, 2, &w);
	data = json_object_new_array_ext((int)w.n);
	for (i = 0; i < w.n; i++)
		json_object_array_add(data, keel_auth_user_json(rows,
		    keel_page_at(&w, i), 0));
	body = json_object_new_object();
	json_object_object_add(body, "data", data);
	json_object_object_add(body, "page", keel_page_json(&pg, w.next,
	    w.prev));
	keel_http_reply_json(req, 200, body);
	json_object_put(body);
out:
	keel_rows_free(rows);
	return er;
}

static enum keel_err
users_get(struct keel_req *req)
{
	struct keel_rows	*rows = NULL;
	const char		*params[1];
	enum keel_err		 er;

	/* Someone else's account does not exist, as far as they can tell. */
	if (!users_is_admin(req) &&
	    keel_http_param_int(req, "id") != req->user->id) {
		users_not_found(req);
		return KEEL_OK;
	}
	params[0] = keel_http_param(req, "id");
	if ((er = keel_db_query(req->db, &q_user_get, params, &rows)) ==
	    KEEL_OK)
		er = users_reply_one(req, 200, rows);
	keel_rows_free(rows);
	return er;
}

static enum keel_err
users_create(struct keel_req *req)
{
	struct keel_value	 v[USER__MAX];
	struct keel_rows	*rows = NULL;
	struct keel_auth_mail	 m;
	const char		*params[4];
	char			 tok[KEEL_AUTH_TOKEN_LEN + 1];
	char			 id[KEEL_AUTH_ID_LEN + 1];
	int64_t			 job = 0;
	enum keel_err		 er;

	if (keel_http_body_fields(req, user_fields, USER__MAX,
	    KEEL_FIELDS_ALL, v))
		return KEEL_OK;
	/* Passwords are only ever set by their owner, through a link. */
	if (v[USER_PASSWORD].present || v[USER_CURRENT].present) {
		users_field_error(req, 422, "validation_failed",
		    v[USER_PASSWORD].present ? "password" : "currentPassword",
		    "can't be set here; sendCredentials emails a set-password "
		    "link");
		return KEEL_OK;
	}
	params[0] = v[USER_EMAIL].s;
	params[1] = v[USER_USERNAME].s;
	params[2] = v[USER_NAME].s;
	params[3] = v[USER_ROLE].s;
	if ((er = keel_db_begin(req->db)) != KEEL_OK)
		goto out;
	if ((er = keel_db_query(req->db, &q_user_insert, params, &rows)) !=
	    KEEL_OK) {
		keel_db_rollback(req->db);
		er = users_write_failed(req, er);
		goto out;
	}
	if (v[USER_SEND].present && v[USER_SEND].b) {
		m.kind = "invitation";
		m.uid = keel_rows_int64(rows, 0, COL_ID);
		m.to = keel_rows_value(rows, 0, COL_EMAIL);
		m.name = keel_rows_value(rows, 0, COL_NAME);
		if ((er = keel_auth_once_new(req->db, "invite", m.uid,
		    keel_config()->invite_ttl, tok, id)) != KEEL_OK)
			goto out;
		m.token = tok;
		m.token_id = id;
		er = keel_auth_queue_mail(req->db, &m, &job);
		explicit_bzero(tok, sizeof(tok));
		if (er != KEEL_OK)
			goto out;
	}
	if ((er = keel_db_commit(req->db)) != KEEL_OK)
		goto out;
	/* Best effort: what isn't pushed now, the relay pushes. */
	if (job > 0)
		(void)keel_outbox_push(req->db, req->redis, &job, 1);
	er = users_reply_one(req, 201, rows);
out:
	keel_db_rollback(req->db);
	keel_rows_free(rows);
	return er;
}

/*
 * Who may change what: admins any field but passwords; a user their own
 * name and, with the current one, their password.  Returns 0 to go on,
 * -1 after replying.
 */
static int
users_patch_allowed(struct keel_req *req, int64_t id,
    const struct keel_value *v)
{
	int	 self = id == req->user->id;

	if (!self && !users_is_admin(req)) {
		users_not_found(req);
		return -1;
	}
	if (!users_is_admin(req) && (v[USER_ROLE].present ||
	    v[USER_EMAIL].present || v[USER_USERNAME].present)) {
		keel_http_reply_error(req, 403, "forbidden",
		    "you may change your own name and password only", NULL);
		return -1;
	}
	if (v[USER_SEND].present) {
		users_field_error(req, 422, "validation_failed",
		    "sendCredentials", "applies to new users only");
		return -1;
	}
	if (v[USER_PASSWORD].present && !self) {
		keel_http_reply_error(req, 403, "forbidden",
		    "only the owner sets a password (password reset sends "
		    "them a link)", NULL);
		return -1;
	}
	if (v[USER_CURRENT].present && !v[USER_PASSWORD].present) {
		users_field_error(req, 422, "validation_failed", "password",
		    "is required with currentPassword");
		return -1;
	}
	return 0;
}

/* Checks the new password and the current one; hashes the new one. */
static int
users_new_password(struct keel_req *req, const struct keel_value *v,
    char hash[KEEL_AUTH_HASH_MAX], enum keel_err *er)
{
	struct keel_rows	*rows = NULL;
	const char		*params[1], *msg;
	int			 ok;

	*er = KEEL_OK;
	if ((msg = keel_auth_password_check(v[USER_PASSWORD].s)) != NULL) {
		users_field_error(req, 422, "validation_failed", "password",
		    msg);
		return -1;
	}
	if (!v[USER_CURRENT].present) {
		users_field_error(req, 422, "validation_failed",
		    "currentPassword", "is required to change the password");
		return -1;
	}
	params[0] = keel_arena_printf(req->arena, "%lld",
	    (long long)req->user->id);
	if ((*er = keel_db_query(req->db, &q_user_hash, params, &rows)) !=
	    KEEL_OK)
		return -1;
	ok = keel_auth_verify(keel_rows_value(rows, 0, 0),
	    v[USER_CURRENT].s);
	keel_rows_free(rows);
	if (!ok) {
		users_field_error(req, 422, "validation_failed",
		    "currentPassword", "is wrong");
		return -1;
	}
	if ((*er = keel_auth_hash(v[USER_PASSWORD].s, hash)) != KEEL_OK)
		return -1;
	return 0;
}

static enum keel_err
users_patch(struct keel_req *req)
{
	struct keel_value	 v[USER__MAX];
	struct keel_rows	*rows = NULL;
	const char		*params[6];
	char			 hash[KEEL_AUTH_HASH_MAX];
	int64_t			 id;
	enum keel_err		 er = KEEL_OK;

	if (keel_http_body_fields(req, user_fields, USER__MAX,
	    KEEL_FIELDS_SOME, v))
		return KEEL_OK;
	id = keel_http_param_int(req, "id");
	if (users_patch_allowed(req, id, v) == -1)
		return KEEL_OK;
	hash[0] = '\0';
	if (v[USER_PASSWORD].present &&
	    users_new_password(req, v, hash, &er) == -1)
		goto out;
	params[0] = keel_http_param(req, "id");
	params[1] = v[USER_EMAIL].s;
	params[2] = v[USER_USERNAME].s;
	params[3] = v[USER_NAME].s;
	params[4] = v[USER_ROLE].s;
	params[5] = hash[0] != '\0' ? hash : NULL;
	if ((er = keel_db_begin(req->db)) != KEEL_OK)
		goto out;
	if ((er = keel_db_query(req->db, &q_user_update, params, &rows)) !=
	    KEEL_OK) {
		keel_db_rollback(req->db);
		er = users_write_failed(req, er);
		goto out;
	}
	if (keel_rows_count(rows) == 0) {
		users_not_found(req);
		goto out;
	}
	/*
	 * A stale role in a session would outlive the change, and a new
	 * password logs out whoever knew the old one: end them before the
	 * commit, so that without Redis nothing changes (503).
	 */
	if (keel_rows_bool(rows, 0, KEEL_AUTH_USER_NCOLS))
		er = keel_auth_sessions_end_all(req->redis, id, NULL);
	else if (hash[0] != '\0')
		er = keel_auth_sessions_end_all(req->redis, id,
		    req->user->session);
	if (er != KEEL_OK || (er = keel_db_commit(req->db)) != KEEL_OK)
		goto out;
	er = users_reply_one(req, 200, rows);
out:
	keel_db_rollback(req->db);
	explicit_bzero(hash, sizeof(hash));
	keel_rows_free(rows);
	return er;
}

static enum keel_err
users_deactivate(struct keel_req *req)
{
	struct keel_rows	*rows = NULL;
	const char		*params[1];
	int64_t			 id;
	enum keel_err		 er;

	id = keel_http_param_int(req, "id");
	if (id == req->user->id) {
		keel_http_reply_error(req, 409, "conflict",
		    "you can't deactivate your own account", NULL);
		return KEEL_OK;
	}
	params[0] = keel_http_param(req, "id");
	if ((er = keel_db_begin(req->db)) != KEEL_OK)
		goto out;
	if ((er = keel_db_query(req->db, &q_user_deactivate, params,
	    &rows)) != KEEL_OK)
		goto out;
	if (keel_rows_count(rows) == 0) {
		users_not_found(req);
		goto out;
	}
	/*
	 * The sessions end before the commit: without Redis the account
	 * stays active (503) rather than inactive with live sessions, and
	 * a login that read it active re-checks after this commits.
	 */
	if ((er = keel_auth_sessions_end_all(req->redis, id, NULL)) !=
	    KEEL_OK || (er = keel_db_commit(req->db)) != KEEL_OK)
		goto out;
	er = users_reply_one(req, 200, rows);
out:
	keel_db_rollback(req->db);
	keel_rows_free(rows);
	return er;
}

static const struct keel_route users_routes[] = {
	{ "GET", "/api/users", users_list, KEEL_ROLE_ADMIN },
	{ "POST", "/api/users", users_create, KEEL_ROLE_ADMIN },
	{ "GET", "/api/users/{id:int}", users_get, KEEL_ACCESS_USER },
	{ "PATCH", "/api/users/{id:int}", users_patch, KEEL_ACCESS_USER },
	{ "DELETE", "/api/users/{id:int}", users_deactivate, KEEL_ROLE_ADMIN },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "users", users_routes,
	    sizeof(users_routes) / sizeof(users_routes[0]) };

	return keel_serve(argc, argv, &app);
}
