/* SPDX-License-Identifier: ISC */
/*
 * auth.c -- login, logout, the current user, password reset (API.md "Auth
 * and users").
 *
 * Login answers the same 401 for an unknown account, an inactive one, one
 * without a password yet and a wrong password, and spends one Argon2id
 * verification on each (a dummy hash when there is no account), so
 * neither the answer nor its timing says whether an account exists.
 * Password reset answers 202 whatever the address, after one statement
 * that costs the same either way; the token and the outbox row carrying
 * its link commit together in PostgreSQL, so a reset can be asked for
 * while Redis is down (the email then waits in the outbox for the relay).
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
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/serve.h"

enum login_field { LOGIN_LOGIN, LOGIN_PASSWORD, LOGIN__MAX };

static const struct keel_field login_fields[LOGIN__MAX] = {
	[LOGIN_LOGIN] = { "login", KEEL_FIELD_STRING, 1, 0, 1, 254, NULL,
	    NULL, NULL },
	[LOGIN_PASSWORD] = { "password", KEEL_FIELD_STRING, 1, 0, 1,
	    KEEL_AUTH_PASSWORD_MAX, NULL, NULL, NULL },
};

enum reset_field { RESET_EMAIL, RESET__MAX };

static const struct keel_field reset_fields[RESET__MAX] = {
	[RESET_EMAIL] = { "email", KEEL_FIELD_STRING, 1, 0, 1, 254, NULL,
	    NULL, NULL },
};

enum confirm_field { CONFIRM_TOKEN, CONFIRM_PASSWORD, CONFIRM__MAX };

static const struct keel_field confirm_fields[CONFIRM__MAX] = {
	[CONFIRM_TOKEN] = { "token", KEEL_FIELD_STRING, 1, 0, 1, 256, NULL,
	    NULL, NULL },
	[CONFIRM_PASSWORD] = { "password", KEEL_FIELD_STRING, 1, 0, 1,
	    KEEL_AUTH_PASSWORD_MAX, NULL, NULL, NULL },
};

/* Columns after KEEL_AUTH_USER_COLS in the login lookup. */
#define COL_HASH	KEEL_AUTH_USER_NCOLS

/* On the primary: a password changed a moment ago must count. */
static const struct keel_query q_login = { "auth_login",
	"SELECT " KEEL_AUTH_USER_COLS ", password_hash FROM users "
	"WHERE lower(email) = lower($1) OR lower(username) = lower($1)",
	1, KEEL_DB_PRIMARY };

/*
 * After the session exists: the account is still what the password was
 * checked against.  FOR SHARE waits for a transaction changing the row
 * (deactivation, new password, new role), which ends sessions before it
 * commits -- so either that transaction ends this session or this query
 * sees its change.
 */
static const struct keel_query q_login_recheck = { "auth_login_recheck",
	"SELECT 1 FROM users WHERE id = $1 AND is_active "
	"AND password_hash = $2 AND role = $3 FOR SHARE", 3, KEEL_DB_PRIMARY };

static const struct keel_query q_me = { "auth_me",
	"SELECT " KEEL_AUTH_USER_COLS " FROM users WHERE id = $1 "
	"AND is_active", 1, KEEL_DB_READ };

/* The user's other live links die with the password they were for. */
static const struct keel_query q_set_password = { "auth_set_password",
	"WITH u AS (UPDATE users SET password_hash = $2, updated_at = now() "
	"WHERE id = $1 AND is_active RETURNING id), "
	"k AS (UPDATE one_time_tokens SET used_at = now() "
	"WHERE user_id IN (SELECT id FROM u) AND used_at IS NULL) "
	"SELECT id FROM u", 2, KEEL_DB_PRIMARY };

/* RFC 3339 UTC of t. */
static char *
auth_time(struct keel_req *req, time_t t)
{
	struct tm	 tm;
	char		 buf[32];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return keel_arena_strdup(req->arena, buf);
}

static void
auth_bad_login(struct keel_req *req)
{
	keel_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"keel\"");
	keel_http_reply_error(req, 401, "unauthorized",
	    "wrong login or password", NULL);
}

static enum keel_err
auth_login(struct keel_req *req)
{
	struct keel_value	 v[LOGIN__MAX];
	struct keel_rows	*rows = NULL, *again = NULL;
	struct json_object	*body;
	const char		*params[3], *hash = NULL;
	char			 tok[KEEL_AUTH_TOKEN_LEN + 1];
	char			 sid[KEEL_AUTH_ID_LEN + 1];
	int64_t			 uid;
	time_t			 exp;
	int			 ok;
	enum keel_err		 er;

	if (keel_http_body_fields(req, login_fields, LOGIN__MAX,
	    KEEL_FIELDS_ALL, v))
		return KEEL_OK;
	params[0] = v[LOGIN_LOGIN].s;
	if ((er = keel_db_query(req->db, &q_login, params, &rows)) != KEEL_OK)
		goto out;
	/* Usernames can't hold '@', so at most one row matches. */
	if (keel_rows_count(rows) == 1 && keel_rows_bool(rows, 0, 5))
		hash = keel_rows_value(rows, 0, COL_HASH);
	/* Always one verification: a NULL hash checks a dummy. */
	ok = keel_auth_verify(hash, v[LOGIN_PASSWORD].s);
	if (!ok) {
		keel_log_info("auth: failed login");
		auth_bad_login(req);
		goto out;
	}
	uid = keel_rows_int64(rows, 0, 0);
	if ((er = keel_auth_session_new(req->redis, uid,
	    keel_auth_role_parse(keel_rows_value(rows, 0, 4)),
	    keel_config()->session_ttl, tok, &exp)) != KEEL_OK)
		goto out;
	params[0] = keel_rows_value(rows, 0, 0);
	params[1] = hash;
	params[2] = keel_rows_value(rows, 0, 4);
	if ((er = keel_db_query(req->db, &q_login_recheck, params,
	    &again)) != KEEL_OK || keel_rows_count(again) != 1) {
		/* Deactivated, or its password or role changed, meanwhile. */
		keel_auth_token_id(tok, sid);
		explicit_bzero(tok, sizeof(tok));
		if (keel_auth_session_end(req->redis, uid, sid) != KEEL_OK)
			keel_log_error("auth: could not end a stale login's "
			    "session of user %lld", (long long)uid);
		if (er == KEEL_OK) {
			keel_log_info("auth: login raced an account change");
			auth_bad_login(req);
		}
		goto out;
	}
	body = json_object_new_object();
	json_object_object_add(body, "token", json_object_new_string(tok));
	json_object_object_add(body, "expiresAt",
	    json_object_new_string(auth_time(req, exp)));
	json_object_object_add(body, "user", keel_auth_user_json(rows, 0, 0));
	keel_http_reply_json(req, 200, body);
	json_object_put(body);
	explicit_bzero(tok, sizeof(tok));
out:
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
	struct keel_rows	*rows = NULL;
	struct json_object	*o;
	const char		*params[1];
	enum keel_err		 er;

	params[0] = keel_arena_printf(req->arena, "%lld",
	    (long long)req->user->id);
	if ((er = keel_db_query(req->db, &q_me, params, &rows)) != KEEL_OK)
		goto out;
	if (keel_rows_count(rows) == 0) {
		/* Deactivated a moment ago, before the session ended. */
		keel_http_reply_error(req, 401, "unauthorized",
		    "this account is not active", NULL);
		goto out;
	}
	o = keel_auth_user_json(rows, 0, 0);
	keel_http_reply_json(req, 200, o);
	json_object_put(o);
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
	    KEEL_FIELDS_ALL, v))
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
	struct json_object	*f;

	f = json_object_new_object();
	json_object_object_add(f, "token",
	    json_object_new_string("is invalid, expired or already used"));
	keel_http_reply_error(req, 400, "bad_request",
	    "the link is invalid, expired or already used; ask for a new one",
	    f);
	json_object_put(f);
}

static enum keel_err
auth_reset_confirm(struct keel_req *req)
{
	struct keel_value	 v[CONFIRM__MAX];
	struct keel_rows	*rows = NULL;
	struct json_object	*f;
	const char		*params[2], *msg;
	char			 hash[KEEL_AUTH_HASH_MAX], purpose[16];
	int64_t			 uid;
	enum keel_err		 er;

	if (keel_http_body_fields(req, confirm_fields, CONFIRM__MAX,
	    KEEL_FIELDS_ALL, v))
		return KEEL_OK;
	/* Check the password before the token dies for nothing. */
	if ((msg = keel_auth_password_check(v[CONFIRM_PASSWORD].s)) != NULL) {
		f = json_object_new_object();
		json_object_object_add(f, "password",
		    json_object_new_string(msg));
		keel_http_reply_error(req, 422, "validation_failed",
		    "some fields are not valid", f);
		json_object_put(f);
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
	params[0] = keel_arena_printf(req->arena, "%lld", (long long)uid);
	params[1] = hash;
	if ((er = keel_db_query(req->db, &q_set_password, params, &rows)) !=
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
	if ((er = keel_db_commit(req->db)) != KEEL_OK)
		goto out;
	keel_http_reply_empty(req, 204);
out:
	keel_db_rollback(req->db);
	explicit_bzero(hash, sizeof(hash));
	keel_rows_free(rows);
	return er;
}

static const struct keel_route auth_routes[] = {
	{ "POST", "/api/auth/login", auth_login, KEEL_ACCESS_ANYONE },
	{ "POST", "/api/auth/logout", auth_logout, KEEL_ACCESS_USER },
	{ "GET", "/api/auth/me", auth_me, KEEL_ACCESS_USER },
	{ "POST", "/api/auth/password-reset", auth_reset, KEEL_ACCESS_ANYONE },
	{ "POST", "/api/auth/password-reset/confirm", auth_reset_confirm,
	    KEEL_ACCESS_ANYONE },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "auth", auth_routes,
	    sizeof(auth_routes) / sizeof(auth_routes[0]) };

	return keel_serve(argc, argv, &app);
}
