/* SPDX-License-Identifier: ISC */
/*
 * auth.c -- passwords, sessions, one-time tokens, roles, the caller.
 *
 * Passwords are Argon2id strings from libsodium.  A session is a random
 * 256-bit token the client holds; Redis holds only its SHA-256, so
 * reading Redis (or a backup of it) yields no usable token, and ending a
 * session is one DEL that takes effect on every host at once.  Each
 * multi-key change is one Lua script, so a session and the user's index
 * of sessions never disagree.  The key layout is in auth.h; the rate
 * limiter reads the same keys.  Single-use reset and invitation tokens
 * live in PostgreSQL beside the outbox row that mails them, so a reset
 * can be asked for while Redis is down.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "keel/auth.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/redis.h"
#include "keel/router.h"

/*
 * Verified when the account does not exist, so that an unknown login
 * costs one Argon2id verification like a wrong password does.  Made with
 * the same limits as keel_auth_hash(); its password is random and lost.
 */
static const char dummy_hash[] = "$argon2id$v=19$m=65536,t=2,p=1$"
    "86XGApZ0TAlubm8NGlB7bA$TVpAr1SExHOeI4lVNweoHRIazQO25bZ17WvmsPO8KAI";

static const struct {
	const char	*name;
	unsigned	 bit;
} roles[] = {
	{ "admin", KEEL_ROLE_ADMIN },
	{ "staff", KEEL_ROLE_STAFF },
	{ "customer", KEEL_ROLE_CUSTOMER },
	{ "student", KEEL_ROLE_STUDENT },
};

/* KEYS: session, user index.  ARGV: uid, role, exp, ttl, id. */
static struct keel_rscript sess_new_lua = { "session_new",
	"redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'role', ARGV[2],"
	" 'exp', ARGV[3])\n"
	"redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
	/* Drop ids whose session expired, so the index can't grow forever. */
	"for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
	"  if redis.call('EXISTS', 'keel:sess:' .. m) == 0 then\n"
	"    redis.call('SREM', KEYS[2], m)\n"
	"  end\n"
	"end\n"
	"redis.call('SADD', KEYS[2], ARGV[5])\n"
	"if redis.call('TTL', KEYS[2]) < tonumber(ARGV[4]) then\n"
	"  redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
	"end\n"
	"return 1\n", "" };

/* KEYS: session.  The user's read-your-writes window rides along. */
static struct keel_rscript sess_get_lua = { "session_get",
	"local s = redis.call('HMGET', KEYS[1], 'uid', 'role', 'exp')\n"
	"if not s[1] then return false end\n"
	"return {s[1], s[2], s[3], redis.call('PTTL', 'keel:ryw:' .. s[1])}\n",
	"" };

/* KEYS: session, user index.  ARGV: id. */
static struct keel_rscript sess_end_lua = { "session_end",
	"redis.call('SREM', KEYS[2], ARGV[1])\n"
	"return redis.call('DEL', KEYS[1])\n", "" };

/* KEYS: user index.  ARGV: the id to keep, or "". */
static struct keel_rscript sess_end_all_lua = { "session_end_all",
	"local n = 0\n"
	"for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
	"  if m ~= ARGV[1] then\n"
	"    n = n + redis.call('DEL', 'keel:sess:' .. m)\n"
	"    redis.call('SREM', KEYS[1], m)\n"
	"  end\n"
	"end\n"
	"return n\n", "" };

struct json_object *
keel_auth_user_json(const struct keel_rows *rows, size_t r, size_t col)
{
	struct json_object	*o;

	o = json_object_new_object();
	json_object_object_add(o, "id",
	    json_object_new_int64(keel_rows_int64(rows, r, col)));
	json_object_object_add(o, "email",
	    keel_json_str(keel_rows_value(rows, r, col + 1)));
	json_object_object_add(o, "username",
	    keel_json_str(keel_rows_value(rows, r, col + 2)));
	json_object_object_add(o, "name",
	    keel_json_str(keel_rows_value(rows, r, col + 3)));
	json_object_object_add(o, "role",
	    keel_json_str(keel_rows_value(rows, r, col + 4)));
	json_object_object_add(o, "isActive",
	    json_object_new_boolean(keel_rows_bool(rows, r, col + 5)));
	json_object_object_add(o, "createdAt",
	    keel_json_str(keel_rows_value(rows, r, col + 6)));
	json_object_object_add(o, "updatedAt",
	    keel_json_str(keel_rows_value(rows, r, col + 7)));
	return o;
}

unsigned
keel_auth_role_parse(const char *name)
{
	size_t	 i;

	for (i = 0; name != NULL && i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strcmp(roles[i].name, name) == 0)
			return roles[i].bit;
	return 0;
}

const char *
keel_auth_role_name(unsigned role)
{
	size_t	 i;

	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (roles[i].bit == role)
			return roles[i].name;
	return "";
}

const char *
keel_auth_password_check(const char *pw)
{
	size_t	 n, chars, i;

	n = strlen(pw);
	if (n > KEEL_AUTH_PASSWORD_MAX)
		return "must be at most 1024 bytes";
	if (!keel_utf8_valid(pw, n))
		return "must be valid UTF-8";
	/* Characters, not bytes: count the bytes that start one. */
	for (i = 0, chars = 0; i < n; i++)
		if (((unsigned char)pw[i] & 0xc0) != 0x80)
			chars++;
	if (chars < KEEL_AUTH_PASSWORD_MIN)
		return "must be at least 10 characters";
	return NULL;
}

enum keel_err
keel_auth_hash(const char *pw, char out[KEEL_AUTH_HASH_MAX])
{
	if (crypto_pwhash_str(out, pw, strlen(pw),
	    crypto_pwhash_OPSLIMIT_INTERACTIVE,
	    crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
		keel_log_error("auth: crypto_pwhash_str failed (out of memory)");
		return KEEL_EINTERNAL;
	}
	return KEEL_OK;
}

int
keel_auth_verify(const char *hash, const char *pw)
{
	int	 ok;

	ok = crypto_pwhash_str_verify(hash != NULL ? hash : dummy_hash, pw,
	    strlen(pw)) == 0;
	return hash != NULL && ok;
}

void
keel_auth_token_new(char tok[KEEL_AUTH_TOKEN_LEN + 1])
{
	unsigned char	 raw[KEEL_AUTH_TOKEN_BYTES];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(tok, KEEL_AUTH_TOKEN_LEN + 1, raw, sizeof(raw),
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
}

void
keel_auth_token_id(const char *tok, char id[KEEL_AUTH_ID_LEN + 1])
{
	unsigned char	 h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const unsigned char *)tok, strlen(tok));
	sodium_bin2hex(id, KEEL_AUTH_ID_LEN + 1, h, sizeof(h));
}

int
keel_auth_token_valid(const char *tok)
{
	size_t	 i;

	if (strlen(tok) != KEEL_AUTH_TOKEN_LEN)
		return 0;
	for (i = 0; i < KEEL_AUTH_TOKEN_LEN; i++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789-_", tok[i]) == NULL)
			return 0;
	return 1;
}

/* Runs script; KEEL_EINTERNAL (logged) on an error reply. */
static enum keel_err
run(struct keel_redis *r, struct keel_rscript *script, int nkeys, int argc,
    const char **argv, struct keel_rreply **out)
{
	struct keel_rreply	*rep = NULL;
	enum keel_err		 er;

	if (out != NULL)
		*out = NULL;
	/*
	 * A connection Redis closed while idle (a restart) fails once and
	 * is reopened by the next call; every script here is safe to repeat.
	 */
	if ((er = keel_redis_eval(r, script, nkeys, argc, argv, NULL,
	    &rep)) == KEEL_EUNAVAIL)
		er = keel_redis_eval(r, script, nkeys, argc, argv, NULL, &rep);
	if (er != KEEL_OK)
		return er;
	if (rep->type == KEEL_R_ERROR) {
		keel_log_error("auth: %s: %s", script->name, rep->str);
		keel_rreply_free(rep);
		return KEEL_EINTERNAL;
	}
	if (out != NULL)
		*out = rep;
	else
		keel_rreply_free(rep);
	return KEEL_OK;
}

enum keel_err
keel_auth_session_new(struct keel_redis *r, int64_t uid, unsigned role,
    int ttl, char tok[KEEL_AUTH_TOKEN_LEN + 1], time_t *exp)
{
	char		 id[KEEL_AUTH_ID_LEN + 1], skey[80], ukey[48];
	char		 suid[24], sexp[24], sttl[16];
	const char	*argv[7];
	time_t		 e;
	enum keel_err	 er;

	keel_auth_token_new(tok);
	keel_auth_token_id(tok, id);
	e = time(NULL) + ttl;
	snprintf(skey, sizeof(skey), "keel:sess:%s", id);
	snprintf(ukey, sizeof(ukey), "keel:user-sess:%lld", (long long)uid);
	snprintf(suid, sizeof(suid), "%lld", (long long)uid);
	snprintf(sexp, sizeof(sexp), "%lld", (long long)e);
	snprintf(sttl, sizeof(sttl), "%d", ttl);
	argv[0] = skey;
	argv[1] = ukey;
	argv[2] = suid;
	argv[3] = keel_auth_role_name(role);
	argv[4] = sexp;
	argv[5] = sttl;
	argv[6] = id;
	if ((er = run(r, &sess_new_lua, 2, 7, argv, NULL)) != KEEL_OK) {
		explicit_bzero(tok, KEEL_AUTH_TOKEN_LEN + 1);
		return er;
	}
	if (exp != NULL)
		*exp = e;
	return KEEL_OK;
}

/* A reply element's text, or NULL when it is not a string. */
static const char *
elem_str(const struct keel_rreply *rep, size_t i)
{
	if (i >= rep->nelem || rep->elem[i].type != KEEL_R_STR)
		return NULL;
	return rep->elem[i].str;
}

enum keel_err
keel_auth_session_get(struct keel_redis *r, const char *tok,
    struct keel_session *out)
{
	struct keel_rreply	*rep = NULL;
	const char		*argv[1];
	char			 skey[80];
	int64_t			 exp;
	enum keel_err		 er;

	memset(out, 0, sizeof(*out));
	if (!keel_auth_token_valid(tok))
		return KEEL_ENOENT;
	keel_auth_token_id(tok, out->id);
	snprintf(skey, sizeof(skey), "keel:sess:%s", out->id);
	argv[0] = skey;
	if ((er = run(r, &sess_get_lua, 1, 1, argv, &rep)) != KEEL_OK)
		return er;
	er = KEEL_ENOENT;
	if (rep->type != KEEL_R_ARRAY || rep->nelem != 4 ||
	    elem_str(rep, 0) == NULL || elem_str(rep, 1) == NULL ||
	    elem_str(rep, 2) == NULL)
		goto out;
	if (keel_parse_int64(elem_str(rep, 0), 1, INT64_MAX, &out->uid) ==
	    -1 || (out->role = keel_auth_role_parse(elem_str(rep, 1))) == 0 ||
	    keel_parse_int64(elem_str(rep, 2), 0, INT64_MAX, &exp) == -1) {
		keel_log_warnx("auth: malformed session %.12s...", out->id);
		goto out;
	}
	/* The key's TTL ends it too; this covers a TTL lost in a restore. */
	if ((out->exp = (time_t)exp) <= time(NULL))
		goto out;
	if (rep->elem[3].type == KEEL_R_INT && rep->elem[3].integer > 0)
		out->ryw_ms = rep->elem[3].integer;
	er = KEEL_OK;
out:
	keel_rreply_free(rep);
	return er;
}

enum keel_err
keel_auth_session_end(struct keel_redis *r, int64_t uid, const char *id)
{
	char		 skey[80], ukey[48];
	const char	*argv[3];

	snprintf(skey, sizeof(skey), "keel:sess:%s", id);
	snprintf(ukey, sizeof(ukey), "keel:user-sess:%lld", (long long)uid);
	argv[0] = skey;
	argv[1] = ukey;
	argv[2] = id;
	return run(r, &sess_end_lua, 2, 3, argv, NULL);
}

enum keel_err
keel_auth_sessions_end_all(struct keel_redis *r, int64_t uid,
    const char *keep)
{
	char		 ukey[48];
	const char	*argv[2];

	snprintf(ukey, sizeof(ukey), "keel:user-sess:%lld", (long long)uid);
	argv[0] = ukey;
	argv[1] = keep != NULL ? keep : "";
	return run(r, &sess_end_all_lua, 1, 2, argv, NULL);
}

/*
 * One-time tokens (sql/008_one_time_tokens.sql).  Only a token's SHA-256
 * is stored; taking one is a single UPDATE whose WHERE holds every rule
 * (unused, unexpired, of an accepted purpose), so it works once even when
 * two confirms race: the second waits on the row lock, then finds it used.
 */
static const struct keel_query q_once_new = { "auth_once_new",
	"INSERT INTO one_time_tokens (hash, user_id, purpose, expires_at) "
	"VALUES ($1, $2, $3, now() + $4::int * interval '1 second')", 4,
	KEEL_DB_PRIMARY };

static const struct keel_query q_once_take = { "auth_once_take",
	"UPDATE one_time_tokens SET used_at = now() "
	"WHERE hash = $1 AND used_at IS NULL AND expires_at > now() "
	"AND purpose IN ('reset', 'invite') RETURNING user_id, purpose", 1,
	KEEL_DB_PRIMARY };

/*
 * A reset request in one statement whether or not the address has an
 * account: the token and the outbox row are inserted only when it does,
 * so both answers cost the same index lookup and round trip.  $1 email,
 * $2 token hash, $3 ttl (s), $4 link.  The idempotency key is
 * keel_auth_queue_mail()'s: kind:uid:first 16 hex of the hash.
 */
static const struct keel_query q_reset_request = { "auth_reset_request",
	"WITH u AS (SELECT id, email, name FROM users "
	"WHERE lower(email) = lower($1) AND is_active), "
	"t AS (INSERT INTO one_time_tokens (hash, user_id, purpose, "
	"expires_at) SELECT $2, id, 'reset', "
	"now() + $3::int * interval '1 second' FROM u RETURNING user_id) "
	"INSERT INTO outbox (queue, kind, payload, idempotency_key) "
	"SELECT 'email', 'password_reset', jsonb_build_object('to', u.email, "
	"'name', u.name, 'link', $4::text), "
	"'password_reset:' || u.id || ':' || left($2, 16) "
	"FROM u JOIN t ON t.user_id = u.id RETURNING id", 4,
	KEEL_DB_PRIMARY };

enum keel_err
keel_auth_once_new(struct keel_db *db, const char *purpose, int64_t uid,
    int ttl, char tok[KEEL_AUTH_TOKEN_LEN + 1],
    char id[KEEL_AUTH_ID_LEN + 1])
{
	char		 hid[KEEL_AUTH_ID_LEN + 1], suid[24], sttl[16];
	const char	*params[4];
	enum keel_err	 er;

	keel_auth_token_new(tok);
	keel_auth_token_id(tok, hid);
	snprintf(suid, sizeof(suid), "%lld", (long long)uid);
	snprintf(sttl, sizeof(sttl), "%d", ttl);
	params[0] = hid;
	params[1] = suid;
	params[2] = purpose;
	params[3] = sttl;
	if ((er = keel_db_query(db, &q_once_new, params, NULL)) != KEEL_OK) {
		explicit_bzero(tok, KEEL_AUTH_TOKEN_LEN + 1);
		return er;
	}
	if (id != NULL)
		memcpy(id, hid, sizeof(hid));
	return KEEL_OK;
}

enum keel_err
keel_auth_once_take(struct keel_db *db, const char *tok, int64_t *uid,
    char *purpose, size_t n)
{
	struct keel_rows	*rows = NULL;
	char			 hid[KEEL_AUTH_ID_LEN + 1];
	const char		*params[1];
	enum keel_err		 er;

	if (!keel_auth_token_valid(tok))
		return KEEL_ENOENT;
	keel_auth_token_id(tok, hid);
	params[0] = hid;
	if ((er = keel_db_query(db, &q_once_take, params, &rows)) != KEEL_OK)
		goto out;
	if (keel_rows_count(rows) != 1) {
		er = KEEL_ENOENT;
		goto out;
	}
	*uid = keel_rows_int64(rows, 0, 0);
	snprintf(purpose, n, "%s", keel_rows_value(rows, 0, 1));
out:
	keel_rows_free(rows);
	return er;
}

void
keel_auth_mail_link(struct keel_buf *b, const char *base, const char *tok)
{
	size_t	 n;

	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	/* Tokens are base64url: safe in a query string as they are. */
	keel_buf_printf(b, "%.*s/set-password?token=%s", (int)n, base, tok);
}

enum keel_err
keel_auth_queue_mail(struct keel_db *db, const struct keel_auth_mail *m,
    int64_t *job)
{
	struct json_object	*o;
	struct keel_buf		 link = { NULL, 0, 0 };
	char			 idem[128];
	enum keel_err		 er;

	keel_auth_mail_link(&link, keel_config()->public_url, m->token);
	o = json_object_new_object();
	json_object_object_add(o, "to", json_object_new_string(m->to));
	json_object_object_add(o, "name", json_object_new_string(m->name));
	json_object_object_add(o, "link", json_object_new_string(link.data));
	/* One job per token: a retried request can't send it twice. */
	snprintf(idem, sizeof(idem), "%s:%lld:%.16s", m->kind,
	    (long long)m->uid, m->token_id);
	er = keel_outbox_add(db, "email", m->kind,
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE), idem, job);
	json_object_put(o);
	explicit_bzero(link.data, link.len);
	keel_buf_free(&link);
	return er;
}

enum keel_err
keel_auth_queue_reset(struct keel_db *db, const char *email, int64_t *job)
{
	struct keel_rows	*rows = NULL;
	struct keel_buf		 link = { NULL, 0, 0 };
	char			 tok[KEEL_AUTH_TOKEN_LEN + 1];
	char			 hid[KEEL_AUTH_ID_LEN + 1], sttl[16];
	const char		*params[4];
	enum keel_err		 er;

	*job = 0;
	/* The same work for every address, an account behind it or not. */
	keel_auth_token_new(tok);
	keel_auth_token_id(tok, hid);
	keel_auth_mail_link(&link, keel_config()->public_url, tok);
	explicit_bzero(tok, sizeof(tok));
	snprintf(sttl, sizeof(sttl), "%d", KEEL_AUTH_RESET_TTL);
	params[0] = email;
	params[1] = hid;
	params[2] = sttl;
	params[3] = link.data;
	if ((er = keel_db_query(db, &q_reset_request, params, &rows)) ==
	    KEEL_OK && keel_rows_count(rows) == 1)
		*job = keel_rows_int64(rows, 0, 0);
	keel_rows_free(rows);
	explicit_bzero(link.data, link.len);
	keel_buf_free(&link);
	return er;
}

/* The token of "Authorization: Bearer <token>" (RFC 6750 §2.1), or NULL. */
static const char *
bearer(const struct keel_req *req)
{
	const char	*h;

	if ((h = keel_http_header(req, "Authorization")) == NULL)
		return NULL;
	/* The scheme is case-insensitive (RFC 9110 §11.1). */
	if (strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h != '\0' ? h : NULL;
}

/*
 * The session the rate limiter's script read in the same round trip
 * (limit.h; DESIGN.md: steps 3 and 4 share one round trip), as
 * keel_auth_session_get() would give it.  KEEL_EUNAVAIL when the limiter
 * did not read it: look it up then.
 */
static enum keel_err
session_from_limiter(const struct keel_req *req, const char *tok,
    struct keel_session *s)
{
	struct keel_limit_session	 ls;
	enum keel_err			 er;

	memset(s, 0, sizeof(*s));
	if ((er = keel_limit_session(req, &ls)) != KEEL_OK)
		return er;
	if (!keel_auth_token_valid(tok) || ls.uid < 1 ||
	    (s->role = keel_auth_role_parse(ls.role)) == 0)
		return KEEL_ENOENT;
	s->uid = ls.uid;
	s->exp = (time_t)ls.exp;
	s->ryw_ms = ls.ryw_ms;
	snprintf(s->id, sizeof(s->id), "%s", ls.id);
	return KEEL_OK;
}

enum keel_err
keel_auth_identify(struct keel_req *req, struct keel_user **out)
{
	struct keel_session	 s;
	struct keel_user	*u;
	const char		*tok;
	enum keel_err		 er;

	*out = NULL;
	if ((tok = bearer(req)) == NULL)
		return KEEL_OK;
	if ((er = session_from_limiter(req, tok, &s)) == KEEL_EUNAVAIL)
		er = keel_auth_session_get(req->redis, tok, &s);
	if (er == KEEL_ENOENT)
		return KEEL_OK;
	if (er != KEEL_OK)
		return er;
	u = keel_arena_alloc(req->arena, sizeof(*u));
	u->id = s.uid;
	u->role = s.role;
	u->session = keel_arena_strdup(req->arena, s.id);
	/* This user wrote moments ago: replicas may not have it yet. */
	if (s.ryw_ms > 0)
		keel_db_pin_primary(req->db, 1);
	*out = u;
	return KEEL_OK;
}

int
keel_auth_step_identify(struct keel_req *req)
{
	struct keel_user	*u;
	enum keel_err		 er;

	if ((er = keel_auth_identify(req, &u)) == KEEL_OK) {
		req->user = u;
		return 0;
	}
	/* A public route still works without Redis, anonymously. */
	if (req->route->access == KEEL_ACCESS_ANYONE)
		return 0;
	keel_log_warnx("auth: sessions unavailable: %s",
	    keel_redis_errstr(req->redis));
	keel_http_reply_err(req, er == KEEL_EINTERNAL ? er : KEEL_EUNAVAIL);
	return -1;
}

int
keel_auth_step_authorize(struct keel_req *req)
{
	unsigned	 access = req->route->access;

	if (access == KEEL_ACCESS_ANYONE)
		return 0;
	if (req->user == NULL) {
		/* RFC 6750 §3: say which scheme would work. */
		keel_http_add_header(req, "WWW-Authenticate",
		    "Bearer realm=\"keel\"");
		keel_http_reply_error(req, 401, "unauthorized",
		    "a valid session is required (Authorization: Bearer "
		    "<token>)", NULL);
		return -1;
	}
	if ((access & req->user->role) == 0) {
		keel_http_reply_error(req, 403, "forbidden",
		    "your role may not do this", NULL);
		return -1;
	}
	return 0;
}

void
keel_auth_note_writes(struct keel_req *req)
{
	const struct keel_config *cfg = keel_config();
	char		 key[48], ms[24];
	const char	*argv[5];

	if (req->user == NULL || cfg->db_ryw_window == 0 ||
	    !keel_db_wrote(req->db))
		return;
	snprintf(key, sizeof(key), "keel:ryw:%lld", (long long)req->user->id);
	snprintf(ms, sizeof(ms), "%lld", (long long)cfg->db_ryw_window * 1000);
	argv[0] = "SET";
	argv[1] = key;
	argv[2] = "1";
	argv[3] = "PX";
	argv[4] = ms;
	/* Best effort: without Redis there is no session to read with. */
	if (keel_redis_cmd(req->redis, 5, argv, NULL, NULL) != KEEL_OK)
		keel_log_warnx("auth: could not open the read-your-writes "
		    "window: %s", keel_redis_errstr(req->redis));
}
