/* SPDX-License-Identifier: ISC */
/*
 * auth.c -- passwords, sessions, one-time tokens, roles, the caller.
 *
 * Passwords are Argon2id strings from libsodium.  A session is a random
 * 256-bit token the client holds; Redis holds only its SHA-256, so
 * reading Redis (or a backup of it) yields no usable token, and ending a
 * session is one DEL that takes effect on every host at once.  Each
 * multi-key change is one Lua script, so a session and the user's index
 * of sessions never disagree.  The key layout is in auth.h, and only
 * this file reads it: the rate limiter's script reads a session in
 * passing with the fragment auth hands it.  Single-use reset and
 * invitation tokens
 * live in PostgreSQL beside the outbox row that mails them, so a reset
 * can be asked for while Redis is down.
 */
#include "config.h"

#include <ctype.h>
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
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/outbox.h"
#include "keel/redis.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/text.h"
#include "lua_scripts.h"

/*
 * Verified when the account does not exist, so that an unknown login
 * costs one Argon2id verification like a wrong password does.  Made with
 * the same limits as keel_auth_hash(); its password is random and lost.
 */
static const char dummy_hash[crypto_pwhash_STRBYTES] =
    "$argon2id$v=19$m=65536,t=2,p=1$"
    "86XGApZ0TAlubm8NGlB7bA$TVpAr1SExHOeI4lVNweoHRIazQO25bZ17WvmsPO8KAI";

static const struct {
	const char	*name;
	unsigned	 bit;
} roles[] = {
	{ .name = "admin", .bit = KEEL_ROLE_ADMIN },
	{ .name = "staff", .bit = KEEL_ROLE_STAFF },
	{ .name = "customer", .bit = KEEL_ROLE_CUSTOMER },
	{ .name = "student", .bit = KEEL_ROLE_STUDENT },
};

static const struct keel_col user_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("email", TEXT),
	KEEL_COL("username", TEXT), KEEL_COL("name", TEXT),
	KEEL_COL("role", TEXT), KEEL_COL("isActive", BOOL),
	KEEL_COL("createdAt", TEXT), KEEL_COL("updatedAt", TEXT),
};

static const struct keel_constraint user_cons[] = {
	{ .name = "users_email_key", .reply = { .status = 409,
	    .message = "a user with these details exists",
	    .field = "email", .why = "is already registered" } },
	{ .name = "users_username_key", .reply = { .status = 409,
	    .message = "a user with these details exists",
	    .field = "username", .why = "is taken" } },
};

const struct keel_resource keel_auth_users = {
	.name = "user",
	.cols = user_cols,
	.ncols = KEEL_NELEM(user_cols),
	.cons = user_cons,
	.ncons = KEEL_NELEM(user_cons),
};

static const struct keel_col user_ref_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("name", TEXT), KEEL_COL("email", TEXT),
};

const struct keel_loader keel_auth_user_loader = {
	.q = { .name = "auth_user_refs", .sql = "SELECT id, name, email "
	    "FROM users WHERE id = ANY($1::bigint[])", .target = KEEL_DB_READ },
	.cols = user_ref_cols, .ncols = KEEL_NELEM(user_ref_cols),
};

const char *const keel_auth_session_ride = keel_lua_auth_session_ride;

/* The scripts of lib/lua/auth_*.lua: each multi-key change at once. */
/* A session's key in Redis is this and its id (auth.h). */
#define SESS_PREFIX	"keel:sess:"
#define SESS_PREFIX_LEN	(sizeof(SESS_PREFIX) - 1)

static struct keel_rscript sess_new_lua = { .name = "auth_session_new",
	.lua = keel_lua_auth_session_new };
static struct keel_rscript sess_get_lua = { .name = "auth_session_get",
	.lua = keel_lua_auth_session_get };
static struct keel_rscript sess_end_lua = { .name = "auth_session_end",
	.lua = keel_lua_auth_session_end };
static struct keel_rscript sess_end_all_lua = {
	.name = "auth_session_end_all", .lua = keel_lua_auth_session_end_all };
/* Cluster mode's: a session and its user's index are in two slots. */
static struct keel_rscript sess_put_lua = { .name = "auth_session_put",
	.lua = keel_lua_auth_session_put };
static struct keel_rscript index_add_lua = { .name = "auth_index_add",
	.lua = keel_lua_auth_index_add };
/* The password-reset emails one account was sent (keel_auth_link_job). */
static struct keel_rscript reset_mail_lua = { .name = "auth_reset_mail",
	.lua = keel_lua_auth_reset_mail };

/*
 * The user's index and read-your-writes keys ("keel:user-sess:<uid>",
 * "keel:ryw:<uid>"); in cluster mode the uid is their hash tag, so a
 * user's keys (and the limiter's, limit.c) share a slot.
 */
static void
ukey_of(const struct keel_redis *r, char *buf, size_t n, int64_t uid)
{
	snprintf(buf, n, "keel:user-sess:%s%lld%s", KEEL_RTAG_L(r),
	    (long long)uid, KEEL_RTAG_R(r));
}

static void
rywkey_of(const struct keel_redis *r, char *buf, size_t n, int64_t uid)
{
	snprintf(buf, n, "keel:ryw:%s%lld%s", KEEL_RTAG_L(r), (long long)uid,
	    KEEL_RTAG_R(r));
}

/*
 * The user's live channel (KEEL_AUTH_USER_CHANNEL + uid: not a key, so
 * no hash tag), where a session's end is announced as END_MSG says,
 * byte for byte as lib/lua/auth_session_gone.lua writes it.
 */
#define END_MSG		"{\"userId\":%lld,\"sessionEnded\":\"%s\"}"
#define CHAN_MAX	(sizeof(KEEL_AUTH_USER_CHANNEL) + KEEL_TEXT_INT_MAX)

static void
chan_of(char *buf, size_t n, int64_t uid)
{
	snprintf(buf, n, KEEL_AUTH_USER_CHANNEL "%lld", (long long)uid);
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

bool
keel_auth_email_valid(const char *s)
{
	/* The mailer's own check: an address taken is one mail can reach. */
	return keel_text_email_valid(s);
}

bool
keel_auth_username_valid(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-", *s) == NULL)
			return false;
	return true;
}

const char *
keel_auth_password_check(const char *pw)
{
	size_t	 n;

	n = strlen(pw);
	if (n > KEEL_AUTH_PASSWORD_MAX)
		return "must be at most 1024 bytes";
	if (!keel_utf8_valid(pw, n))
		return "must be valid UTF-8";
	/* Characters, not bytes. */
	if (keel_utf8_chars(pw) < KEEL_AUTH_PASSWORD_MIN)
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

bool
keel_auth_verify(const char *hash, const char *pw)
{
	bool	 ok;

	ok = crypto_pwhash_str_verify(hash != NULL ? hash : dummy_hash, pw,
	    strlen(pw)) == 0;
	return hash != NULL && ok;
}

/* On the primary: the hash a moment-old change left must count. */
static const struct keel_query q_user_hash = { .name = "auth_user_hash",
	.sql = "SELECT password_hash FROM users WHERE id = $1 AND is_active",
	.target = KEEL_DB_PRIMARY };

enum keel_step
keel_auth_new_password(struct keel_req *req, const char *pw,
    const char *current, char hash[KEEL_AUTH_HASH_MAX], enum keel_err *er)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	const char		*msg;
	bool			 ok;

	*er = KEEL_OK;
	if ((msg = keel_auth_password_check(pw)) != NULL) {
		keel_http_reply_field(req, "password", msg);
		return KEEL_STEP_REPLIED;
	}
	if (current == NULL) {
		keel_http_reply_field(req, "currentPassword",
		    "is required to change the password");
		return KEEL_STEP_REPLIED;
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, req->user->id);
	if ((*er = keel_db_query(req->db, &q_user_hash, &p, &rows)) !=
	    KEEL_OK)
		return KEEL_STEP_REPLIED;
	ok = keel_auth_verify(keel_rows_value(rows, 0, 0), current);
	keel_rows_free(rows);
	if (!ok) {
		keel_http_reply_field(req, "currentPassword", "is wrong");
		return KEEL_STEP_REPLIED;
	}
	if ((*er = keel_auth_hash(pw, hash)) != KEEL_OK)
		return KEEL_STEP_REPLIED;
	return KEEL_STEP_GO;
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

bool
keel_auth_token_valid(const char *tok)
{
	size_t	 i;

	if (strlen(tok) != KEEL_AUTH_TOKEN_LEN)
		return false;
	for (i = 0; i < KEEL_AUTH_TOKEN_LEN; i++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789-_", tok[i]) == NULL)
			return false;
	return true;
}

/* What run() and cmd() got: an error reply is KEEL_EINTERNAL (logged
 * with what), else the reply into *out (or freed: out NULL). */
static enum keel_err
got(const char *what, enum keel_err er, struct keel_rreply *rep,
    struct keel_rreply **out)
{
	if (er != KEEL_OK)
		return er;
	if (rep->type == KEEL_R_ERROR) {
		keel_log_error("auth: %s: %s", what, rep->str);
		keel_rreply_free(rep);
		return KEEL_EINTERNAL;
	}
	if (out != NULL)
		*out = rep;
	else
		keel_rreply_free(rep);
	return KEEL_OK;
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
	return got(script->name, er, rep, out);
}

/* One command, as run() runs a script (cluster mode's steps). */
static enum keel_err
cmd(struct keel_redis *r, int argc, const char **argv,
    struct keel_rreply **out)
{
	struct keel_rreply	*rep = NULL;
	enum keel_err		 er;

	if (out != NULL)
		*out = NULL;
	if ((er = keel_redis_cmd(r, argc, argv, NULL, &rep)) ==
	    KEEL_EUNAVAIL)
		er = keel_redis_cmd(r, argc, argv, NULL, &rep);
	return got(argv[0], er, rep, out);
}

/* The key of session id into buf (SESS_PREFIX_LEN + 65 bytes). */
static void
skey_of(char *buf, size_t n, const char *id)
{
	snprintf(buf, n, SESS_PREFIX "%s", id);
}

/*
 * Cluster mode: ends session id of uid, whose index is ukey, the
 * session first, then its place in the index (two slots, two
 * commands), then announces it (a third: a failure there is logged and
 * the session's streams last to its expiry).
 */
static enum keel_err
cluster_end(struct keel_redis *r, int64_t uid, const char *ukey,
    const char *id)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[3];
	char			 skey[SESS_PREFIX_LEN + KEEL_AUTH_ID_LEN + 1];
	char			 chan[CHAN_MAX], msg[128];
	bool			 was;
	enum keel_err		 er;

	skey_of(skey, sizeof(skey), id);
	av[0] = "DEL";
	av[1] = skey;
	if ((er = cmd(r, 2, av, &rep)) != KEEL_OK)
		return er;
	was = rep->type == KEEL_R_INT && rep->integer == 1;
	keel_rreply_free(rep);
	av[0] = "SREM";
	av[1] = ukey;
	av[2] = id;
	if ((er = cmd(r, 3, av, NULL)) != KEEL_OK || !was)
		return er;
	chan_of(chan, sizeof(chan), uid);
	snprintf(msg, sizeof(msg), END_MSG, (long long)uid, id);
	av[0] = "PUBLISH";
	av[1] = chan;
	av[2] = msg;
	if (cmd(r, 3, av, NULL) != KEEL_OK)
		keel_log_warnx("auth: the end of a session of user %lld was "
		    "not announced: its streams last to its expiry",
		    (long long)uid);
	return KEEL_OK;
}

struct born {
	const char	*id;
	long long	 born;
};

static int
born_cmp(const void *a, const void *b)
{
	const struct born *x = a, *y = b;

	return x->born < y->born ? -1 : x->born > y->born;
}

/*
 * Cluster mode: ends the oldest of the user's sessions past max, as
 * auth_session_new.lua does on a single Redis, a command at a time (the
 * sessions are in other slots): a login past the limit only.
 */
static enum keel_err
cluster_evict(struct keel_redis *r, int64_t uid, const char *ukey, int max)
{
	struct keel_rreply	*mem = NULL, *rep = NULL;
	struct born		*live;
	const char		*av[3];
	char			 skey[SESS_PREFIX_LEN + KEEL_AUTH_ID_LEN + 1];
	size_t			 i, n = 0;
	enum keel_err		 er;

	av[0] = "SMEMBERS";
	av[1] = ukey;
	if ((er = cmd(r, 2, av, &mem)) != KEEL_OK)
		return er;
	live = keel_calloc(mem->nelem + 1, sizeof(*live));
	for (i = 0; i < mem->nelem && er == KEEL_OK; i++) {
		skey_of(skey, sizeof(skey), mem->elem[i].str);
		av[0] = "HGET";
		av[1] = skey;
		av[2] = "born";
		if ((er = cmd(r, 3, av, &rep)) != KEEL_OK)
			break;
		if (rep->type == KEEL_R_STR) {
			live[n].id = mem->elem[i].str;
			live[n++].born = strtoll(rep->str, NULL, 10);
		} else {
			av[0] = "SREM";
			av[1] = ukey;
			av[2] = mem->elem[i].str;
			er = cmd(r, 3, av, NULL);
		}
		keel_rreply_free(rep);
		rep = NULL;
	}
	qsort(live, n, sizeof(*live), born_cmp);
	for (i = 0; er == KEEL_OK && n > (size_t)max && i < n - (size_t)max;
	    i++)
		er = cluster_end(r, uid, ukey, live[i].id);
	free(live);
	keel_rreply_free(mem);
	return er;
}

/*
 * Cluster mode's session_new: the index first, then the session, so a
 * session that exists is always in its index (a logout everywhere finds
 * it); an id whose session is missing is dropped by the next eviction.
 */
static enum keel_err
cluster_session_new(struct keel_redis *r, int64_t uid, const char **argv,
    int max)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[5];
	long long		 n;
	enum keel_err		 er;

	/* argv: skey ukey uid role exp ttl id max chan (the script's). */
	av[0] = argv[1];
	av[1] = argv[6];
	av[2] = argv[5];
	if ((er = run(r, &index_add_lua, 1, 3, av, &rep)) != KEEL_OK)
		return er;
	n = rep->type == KEEL_R_INT ? rep->integer : 0;
	keel_rreply_free(rep);
	av[0] = argv[0];
	av[1] = argv[2];
	av[2] = argv[3];
	av[3] = argv[4];
	av[4] = argv[5];
	if ((er = run(r, &sess_put_lua, 1, 5, av, NULL)) != KEEL_OK)
		return er;
	return n > max ? cluster_evict(r, uid, argv[1], max) : KEEL_OK;
}

enum keel_err
keel_auth_session_new(struct keel_req *req, int64_t uid, unsigned role,
    char tok[KEEL_AUTH_TOKEN_LEN + 1], time_t *exp)
{
	char		 id[KEEL_AUTH_ID_LEN + 1], skey[80], ukey[48];
	char		 suid[24], sexp[24], sttl[16], smax[16];
	char		 chan[CHAN_MAX];
	const char	*argv[9];
	int		 ttl = req->cfg->session_ttl;
	time_t		 e;
	enum keel_err	 er;

	keel_auth_token_new(tok);
	keel_auth_token_id(tok, id);
	e = time(NULL) + ttl;
	skey_of(skey, sizeof(skey), id);
	ukey_of(req->redis, ukey, sizeof(ukey), uid);
	snprintf(suid, sizeof(suid), "%lld", (long long)uid);
	snprintf(sexp, sizeof(sexp), "%lld", (long long)e);
	snprintf(sttl, sizeof(sttl), "%d", ttl);
	snprintf(smax, sizeof(smax), "%d", req->cfg->session_max);
	argv[0] = skey;
	argv[1] = ukey;
	argv[2] = suid;
	argv[3] = keel_auth_role_name(role);
	argv[4] = sexp;
	argv[5] = sttl;
	argv[6] = id;
	argv[7] = smax;
	chan_of(chan, sizeof(chan), uid);
	argv[8] = chan;
	if ((er = keel_redis_is_cluster(req->redis) ?
	    cluster_session_new(req->redis, uid, argv,
	    req->cfg->session_max) :
	    run(req->redis, &sess_new_lua, 2, 9, argv, NULL)) != KEEL_OK) {
		explicit_bzero(tok, KEEL_AUTH_TOKEN_LEN + 1);
		return er;
	}
	if (exp != NULL)
		*exp = e;
	return KEEL_OK;
}

/*
 * The session in what ride() returned (vals[0..n): uid, role, exp,
 * read-your-writes ms); KEEL_ENOENT when it is none or malformed.
 */
static enum keel_err
session_parse(const char *const *vals, size_t n, struct keel_session *out)
{
	int64_t	 exp, ryw;

	if (n != 4)
		return KEEL_ENOENT;
	if (!keel_parse_int64(vals[0], 1, INT64_MAX, &out->uid) ||
	    (out->role = keel_auth_role_parse(vals[1])) == 0 ||
	    !keel_parse_int64(vals[2], 0, INT64_MAX, &exp) ||
	    !keel_parse_int64(vals[3], 0, INT64_MAX, &ryw)) {
		keel_log_warnx("auth: malformed session %.12s...", out->id);
		return KEEL_ENOENT;
	}
	/* The key's TTL ends it too; this covers a TTL lost in a restore. */
	if ((out->exp = (time_t)exp) <= time(NULL))
		return KEEL_ENOENT;
	out->ryw_ms = ryw;
	return KEEL_OK;
}

/*
 * Cluster mode's session_get: the session (its slot), then the user's
 * read-your-writes window (the user's slot): two round trips where a
 * single Redis takes one.
 */
static enum keel_err
cluster_session_get(struct keel_redis *r, const char *key,
    struct keel_session *out)
{
	struct keel_rreply	*rep = NULL, *ryw = NULL;
	const char		*av[5], *vals[4];
	char			 rkey[48], ms[KEEL_TEXT_INT_MAX];
	int64_t			 uid;
	size_t			 i;
	enum keel_err		 er;

	av[0] = "HMGET";
	av[1] = key;
	av[2] = "uid";
	av[3] = "role";
	av[4] = "exp";
	if ((er = cmd(r, 5, av, &rep)) != KEEL_OK)
		return er;
	er = KEEL_ENOENT;
	if (rep->type != KEEL_R_ARRAY || rep->nelem != 3 ||
	    rep->elem[0].type != KEEL_R_STR)
		goto out;
	for (i = 0; i < 3; i++)
		vals[i] = rep->elem[i].type == KEEL_R_STR ? rep->elem[i].str :
		    "";
	if (!keel_parse_int64(vals[0], 1, INT64_MAX, &uid))
		goto out;
	rywkey_of(r, rkey, sizeof(rkey), uid);
	av[0] = "PTTL";
	av[1] = rkey;
	if ((er = cmd(r, 2, av, &ryw)) != KEEL_OK)
		goto out;
	keel_text_int(ms, ryw->type == KEEL_R_INT && ryw->integer > 0 ?
	    ryw->integer : 0);
	vals[3] = ms;
	er = session_parse(vals, 4, out);
out:
	keel_rreply_free(ryw);
	keel_rreply_free(rep);
	return er;
}

/* The session under key ("keel:sess:<id>"), into out (zeroed first). */
static enum keel_err
session_get(struct keel_redis *r, const char *key, struct keel_session *out)
{
	struct keel_rreply	*rep = NULL;
	const char		*argv[1], *vals[4];
	size_t			 i;
	enum keel_err		 er;

	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", key + SESS_PREFIX_LEN);
	if (keel_redis_is_cluster(r))
		return cluster_session_get(r, key, out);
	argv[0] = key;
	if ((er = run(r, &sess_get_lua, 1, 1, argv, &rep)) != KEEL_OK)
		return er;
	er = KEEL_ENOENT;
	if (rep->type != KEEL_R_ARRAY || rep->nelem != 4)
		goto out;
	for (i = 0; i < 4; i++)
		if ((vals[i] = rep->elem[i].str) == NULL)
			goto out;
	er = session_parse(vals, 4, out);
out:
	keel_rreply_free(rep);
	return er;
}

enum keel_err
keel_auth_session_get(struct keel_redis *r, const char *tok,
    struct keel_session *out)
{
	char	 key[SESS_PREFIX_LEN + KEEL_AUTH_ID_LEN + 1];

	memset(out, 0, sizeof(*out));
	if (!keel_auth_token_valid(tok))
		return KEEL_ENOENT;
	memcpy(key, SESS_PREFIX, SESS_PREFIX_LEN);
	keel_auth_token_id(tok, key + SESS_PREFIX_LEN);
	return session_get(r, key, out);
}

enum keel_err
keel_auth_session_end(struct keel_redis *r, int64_t uid, const char *id)
{
	char		 skey[80], ukey[48], chan[CHAN_MAX];
	char		 suid[KEEL_TEXT_INT_MAX];
	const char	*argv[5];

	skey_of(skey, sizeof(skey), id);
	ukey_of(r, ukey, sizeof(ukey), uid);
	if (keel_redis_is_cluster(r))
		return cluster_end(r, uid, ukey, id);
	chan_of(chan, sizeof(chan), uid);
	keel_text_int(suid, uid);
	argv[0] = skey;
	argv[1] = ukey;
	argv[2] = id;
	argv[3] = chan;
	argv[4] = suid;
	return run(r, &sess_end_lua, 2, 5, argv, NULL);
}

/*
 * Cluster mode's end_all: each session but keep, then its place in the
 * index, a command at a time (the sessions are in other slots).
 */
static enum keel_err
cluster_end_all(struct keel_redis *r, int64_t uid, const char *ukey,
    const char *keep)
{
	struct keel_rreply	*mem = NULL;
	const char		*av[2];
	size_t			 i;
	enum keel_err		 er;

	av[0] = "SMEMBERS";
	av[1] = ukey;
	if ((er = cmd(r, 2, av, &mem)) != KEEL_OK)
		return er;
	for (i = 0; i < mem->nelem && er == KEEL_OK; i++)
		if (keep == NULL || strcmp(mem->elem[i].str, keep) != 0)
			er = cluster_end(r, uid, ukey, mem->elem[i].str);
	keel_rreply_free(mem);
	return er;
}

enum keel_err
keel_auth_sessions_end_all(struct keel_redis *r, int64_t uid,
    const char *keep)
{
	char		 ukey[48], chan[CHAN_MAX], suid[KEEL_TEXT_INT_MAX];
	const char	*argv[4];

	ukey_of(r, ukey, sizeof(ukey), uid);
	if (keel_redis_is_cluster(r))
		return cluster_end_all(r, uid, ukey, keep);
	chan_of(chan, sizeof(chan), uid);
	keel_text_int(suid, uid);
	argv[0] = ukey;
	argv[1] = keep != NULL ? keep : "";
	argv[2] = chan;
	argv[3] = suid;
	return run(r, &sess_end_all_lua, 1, 4, argv, NULL);
}

/*
 * One-time tokens (sql/008_one_time_tokens.sql).  Only a token's SHA-256
 * is stored; taking one is a single UPDATE whose WHERE holds every rule
 * (unused, unexpired, of an accepted purpose), so it works once even when
 * two confirms race: the second waits on the row lock, then finds it used.
 * It locks the token's user first (u): every writer of both takes the
 * user's row before its tokens (a users PATCH that ends the links, the
 * new password's own statement), so a confirm racing a PATCH of the
 * same user waits instead of deadlocking, and then finds the link
 * ended if the PATCH ended it.  FOR NO KEY UPDATE: enough against those
 * writers, and it doesn't hold up inserts that only reference the user
 * (a contract, an attempt: FOR KEY SHARE).
 */
/*
 * A link's token, made only while its account is active and (a reset's,
 * $5) still has the address the request named, read FOR SHARE: a users
 * PATCH that changes the address or password (its row FOR UPDATE, then
 * the links' end) either commits first, and the row is read as it left
 * it -- a reset of a moved address makes nothing, an invitation goes to
 * the corrected one -- or waits for this statement, and then ends the
 * token it made.  Without the lock a PATCH between the lookup and the
 * insert found no token to end, and the link went to the old address,
 * alive (probe I).  The address and name returned are the row's now.
 */
static const struct keel_query q_once_new = { .name = "auth_once_new",
	.sql = "WITH u AS MATERIALIZED (SELECT id, email, name FROM users "
	"WHERE id = $2 AND is_active "
	"AND ($5::text IS NULL OR lower(email) = lower($5)) FOR SHARE), "
	"t AS (INSERT INTO one_time_tokens (hash, user_id, purpose, "
	"expires_at) SELECT $1, id, $3, now() + $4::int * interval "
	"'1 second' FROM u RETURNING user_id) "
	"SELECT u.email, u.name FROM u JOIN t ON t.user_id = u.id",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_once_take = { .name = "auth_once_take",
	.sql = "WITH u AS MATERIALIZED (SELECT id FROM users WHERE id = "
	"(SELECT user_id FROM one_time_tokens WHERE hash = $1) "
	"FOR NO KEY UPDATE) "
	"UPDATE one_time_tokens SET used_at = now() "
	"WHERE hash = $1 AND used_at IS NULL AND expires_at > now() "
	"AND purpose IN ('reset', 'invite') "
	"AND user_id IN (SELECT id FROM u) RETURNING user_id, purpose",
	.target = KEEL_DB_PRIMARY };

/* Who a link job is for: $1 an address (reset) or $2 an id (invite). */
static const struct keel_query q_link_user = { .name = "auth_link_user",
	.sql = "SELECT id, email, name FROM users WHERE is_active "
	"AND ((NOT $3 AND lower(email) = lower($1)) OR ($3 AND id = $2))",
	.target = KEEL_DB_PRIMARY };

/*
 * A single-use token for purpose ("reset", "invite") of r's account,
 * living ttl seconds, inserted into one_time_tokens (only its SHA-256)
 * by q_once_new, which rereads the account under a lock: r gets its
 * address and name as they are now.  email, when not NULL, is the
 * address the account must still have.  KEEL_ENOENT when the account is
 * no longer active or no longer has it (nothing made); else
 * keel_db_query()'s errors.  tok receives the token.
 */
static enum keel_err
once_new(struct keel_db *db, const char *purpose,
    struct keel_auth_recipient *r, const char *email, int ttl,
    char tok[KEEL_AUTH_TOKEN_LEN + 1])
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	char			 hid[KEEL_AUTH_ID_LEN + 1];
	enum keel_err		 er;

	keel_auth_token_new(tok);
	keel_auth_token_id(tok, hid);
	keel_db_params_init(&p);
	keel_db_param_text(&p, hid);
	keel_db_param_int(&p, r->uid);
	keel_db_param_text(&p, purpose);
	keel_db_param_int(&p, ttl);
	keel_db_param_text(&p, email);
	if ((er = keel_db_query(db, &q_once_new, &p, &rows)) != KEEL_OK)
		goto out;
	if (keel_rows_count(rows) != 1) {
		er = KEEL_ENOENT;
		goto out;
	}
	keel_auth_recipient_free(r);
	r->to = keel_strdup(keel_rows_value(rows, 0, 0));
	r->name = keel_strdup(keel_rows_value(rows, 0, 1));
out:
	if (er != KEEL_OK)
		explicit_bzero(tok, KEEL_AUTH_TOKEN_LEN + 1);
	keel_rows_free(rows);
	return er;
}

enum keel_err
keel_auth_once_take(struct keel_db *db, const char *tok, int64_t *uid,
    char *purpose, size_t n)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	char			 hid[KEEL_AUTH_ID_LEN + 1];
	enum keel_err		 er;

	if (!keel_auth_token_valid(tok))
		return KEEL_ENOENT;
	keel_auth_token_id(tok, hid);
	keel_db_params_init(&p);
	keel_db_param_text(&p, hid);
	if ((er = keel_db_query(db, &q_once_take, &p, &rows)) != KEEL_OK)
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
keel_auth_queue_invite(struct keel_db *db, int64_t uid, int64_t *job)
{
	char	 payload[64], key[64];

	snprintf(payload, sizeof(payload), "{\"userId\":%lld}", (long long)uid);
	/* One invitation per user: a retried request can't send two. */
	snprintf(key, sizeof(key), "invitation_request:%lld", (long long)uid);
	return keel_outbox_add(db, "email", "invitation_request", payload,
	    key, job);
}

/*
 * A reset request is the same one outbox row whether or not the address
 * has an account (the lookup is the drainer's), so neither the answer nor
 * its time says which.
 */
enum keel_err
keel_auth_queue_reset(struct keel_db *db, const char *email, int64_t *job)
{
	struct keel_buf		 payload = { 0 };
	struct keel_jw		 w;
	unsigned char		 r[12];
	char			 key[64], hex[2 * sizeof(r) + 1];
	enum keel_err		 er;

	/* Each request its own job: two requests are two emails. */
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(key, sizeof(key), "password_reset_request:%s", hex);
	keel_jw_init(&w, &payload);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "email");
	keel_jw_str(&w, email);
	keel_jw_obj_close(&w);
	er = keel_outbox_add(db, "email", "password_reset_request",
	    payload.data, key, job);
	keel_buf_free(&payload);
	return er;
}

/* {"to", "name", "link"}: the template's payload, into out. */
static void
link_payload(struct keel_buf *out, const struct keel_auth_recipient *u,
    const struct keel_buf *link)
{
	struct keel_jw	 w;

	keel_jw_init(&w, out);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "to");
	keel_jw_str(&w, u->to);
	keel_jw_key(&w, "name");
	keel_jw_str(&w, u->name);
	keel_jw_key(&w, "link");
	keel_jw_str(&w, link->data);
	keel_jw_obj_close(&w);
}

enum keel_err
keel_auth_mail_user(struct keel_db *db, const char *email, int64_t uid,
    struct keel_auth_recipient *out)
{
	struct keel_db_params	 p;
	struct keel_rows	*u = NULL;
	bool			 byid = uid > 0;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_text(&p, byid ? NULL : email);
	keel_db_param_int(&p, uid);
	keel_db_param_bool(&p, byid);
	if ((er = keel_db_query(db, &q_link_user, &p, &u)) != KEEL_OK)
		goto out;
	if (keel_rows_count(u) != 1) {
		er = KEEL_ENOENT;
		goto out;
	}
	out->uid = keel_rows_int64(u, 0, 0);
	out->to = keel_strdup(keel_rows_value(u, 0, 1));
	out->name = keel_strdup(keel_rows_value(u, 0, 2));
out:
	keel_rows_free(u);
	return er;
}

void
keel_auth_recipient_free(struct keel_auth_recipient *r)
{
	if (r == NULL)
		return;
	free(r->to);
	free(r->name);
	r->to = r->name = NULL;
}

/*
 * The reset cap, where the account is known: the request's limiter keys
 * on the address typed and the asker's address, so many askers (or many
 * spellings) could each mail the one account their own five.  KEEL_OK:
 * send; KEEL_ETOOBIG: the account's emails for the window are spent.
 */
static enum keel_err
reset_mail_take(const struct keel_auth_link *l, int64_t uid)
{
	struct keel_rreply	*rep = NULL;
	const char		*argv[4];
	char			 key[64], max[KEEL_TEXT_INT_MAX],
				 win[KEEL_TEXT_INT_MAX];
	char			 labels[KEEL_METRICS_LABELS_MAX];
	enum keel_err		 er;
	bool			 send;

	if (l->reset_max <= 0)
		return KEEL_OK;
	snprintf(key, sizeof(key), "keel:reset-mail:%s%lld%s",
	    KEEL_RTAG_L(l->redis), (long long)uid, KEEL_RTAG_R(l->redis));
	keel_text_int(max, l->reset_max);
	keel_text_int(win, (int64_t)l->reset_window * 1000);
	argv[0] = key;
	argv[1] = max;
	argv[2] = win;
	argv[3] = l->key != NULL ? l->key : "";
	if ((er = run(l->redis, &reset_mail_lua, 1, 4, argv, &rep)) !=
	    KEEL_OK)
		return er;
	send = rep->type == KEEL_R_INT && rep->integer == 1;
	keel_rreply_free(rep);
	keel_metrics_add(KEEL_M_RATE_LIMIT, keel_metrics_labels(labels,
	    "limiter", "reset_mail", "decision", send ? "allow" : "deny",
	    NULL), 1);
	if (send)
		return KEEL_OK;
	/* The user's id, never the address or a token. */
	keel_log_info("auth: reset email not sent: the account's %d a "
	    "window are spent uid=%lld", l->reset_max, (long long)uid);
	return KEEL_ETOOBIG;
}

enum keel_err
keel_auth_link_job(struct keel_db *db, const struct keel_auth_link *l,
    struct keel_buf *out)
{
	struct keel_auth_recipient u = { 0, NULL, NULL };
	struct keel_buf		 link = { NULL, 0, 0 };
	char			 tok[KEEL_AUTH_TOKEN_LEN + 1];
	bool			 invite = l->uid > 0;
	enum keel_err		 er;

	/*
	 * No such active account: nothing to send, and nobody told.  A
	 * reset finds its account by address first, for the cap; once_new()
	 * reads the account again under its lock either way, so an
	 * invitation, which names its user, needs no read before it.
	 */
	if (invite)
		u.uid = l->uid;
	else if ((er = keel_auth_mail_user(db, l->email, 0, &u)) !=
	    KEEL_OK || (er = reset_mail_take(l, u.uid)) != KEEL_OK)
		goto out;
	if ((er = once_new(db, invite ? "invite" : "reset", &u,
	    invite ? NULL : l->email, invite ? l->invite_ttl :
	    KEEL_AUTH_RESET_TTL, tok)) != KEEL_OK)
		goto out;
	keel_auth_mail_link(&link, l->site, tok);
	link_payload(out, &u, &link);
out:
	explicit_bzero(tok, sizeof(tok));
	if (link.data != NULL)
		explicit_bzero(link.data, link.len);
	keel_buf_free(&link);
	keel_auth_recipient_free(&u);
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

const char *
keel_auth_session_key(struct keel_req *req)
{
	const char	*tok;
	char		 id[KEEL_AUTH_ID_LEN + 1];

	if ((tok = bearer(req)) == NULL || !keel_auth_token_valid(tok))
		return NULL;
	keel_auth_token_id(tok, id);
	return keel_arena_cat(req->arena, SESS_PREFIX, id, NULL);
}

enum keel_step
keel_auth_step_identify(struct keel_req *req, const char *key,
    const char *const *seen, size_t nseen)
{
	struct keel_session	 s;
	struct keel_user	*u;
	enum keel_err		 er;

	if (key == NULL)
		return KEEL_STEP_GO;
	if (seen != NULL) {
		memset(&s, 0, sizeof(s));
		keel_text_copy(s.id, sizeof(s.id), key + SESS_PREFIX_LEN);
		er = session_parse(seen, nseen, &s);
	} else
		er = session_get(req->redis, key, &s);
	if (er == KEEL_ENOENT)
		return KEEL_STEP_GO;
	if (er != KEEL_OK) {
		/* A public route still works without Redis, anonymously. */
		if (req->route->access == KEEL_ACCESS_ANYONE)
			return KEEL_STEP_GO;
		keel_log_warnx("auth: sessions unavailable: %s",
		    keel_redis_errstr(req->redis));
		keel_http_reply_err(req, er == KEEL_EINTERNAL ? er :
		    KEEL_EUNAVAIL);
		return KEEL_STEP_REPLIED;
	}
	u = keel_arena_alloc(req->arena, sizeof(*u));
	u->id = s.uid;
	u->role = s.role;
	u->session = keel_arena_strdup(req->arena, s.id);
	req->user = u;
	/* This user wrote moments ago: replicas may not have it yet. */
	if (s.ryw_ms > 0)
		keel_db_pin_primary(req->db, true);
	return KEEL_STEP_GO;
}

enum keel_step
keel_auth_step_authorize(struct keel_req *req)
{
	unsigned	 access = req->route->access;

	if (access == KEEL_ACCESS_ANYONE)
		return KEEL_STEP_GO;
	if (req->user == NULL) {
		/* RFC 6750 §3: say which scheme would work. */
		keel_http_add_header(req, "WWW-Authenticate",
		    "Bearer realm=\"keel\"");
		keel_http_reply_error(req, 401, "unauthorized",
		    "a valid session is required (Authorization: Bearer "
		    "<token>)");
		return KEEL_STEP_REPLIED;
	}
	if ((access & req->user->role) == 0) {
		keel_http_reply_error(req, 403, "forbidden",
		    "your role may not do this");
		return KEEL_STEP_REPLIED;
	}
	return KEEL_STEP_GO;
}

void
keel_auth_note_writes(struct keel_req *req)
{
	const struct keel_config *cfg = req->cfg;
	char		 key[48], ms[24];
	const char	*argv[5];

	if (req->user == NULL || cfg->db_ryw_window == 0 ||
	    !keel_db_wrote(req->db))
		return;
	rywkey_of(req->redis, key, sizeof(key), req->user->id);
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
