/* SPDX-License-Identifier: ISC */
/*
 * idem.c -- request deduplication with Idempotency-Key, the way payment
 * APIs do it (the IETF httpapi draft "The Idempotency-Key HTTP Header
 * Field").
 *
 * A POST with a key first claims "keel:idem:<client>:<hash of key>" in
 * Redis, a hash holding the request's fingerprint and state "running";
 * the claim expires after KEEL_IDEM_RUNNING_TTL so a crashed worker
 * can't block the key for a day.  When the handler has answered, the
 * status, content type, body and Location (a 201's) replace the claim
 * for KEEL_IDEM_TTL.
 * Claiming and reading are one script, so two concurrent retries can't
 * both run the handler.  A 5xx is not kept: the failure may be transient
 * and the retry deserves a real attempt.
 *
 * Redis runs with noeviction, so what a client can make it keep must be
 * bounded, not only how fast it asks: each client has an index,
 * "keel:idem:i:<client>", of its kept answers by age, and keeping one
 * past KEEL_IDEM_MAX deletes the oldest (whose retry then runs again).
 * An answer over KEEL_IDEM_BODY_MAX bytes is not kept whole: a small 422
 * saying so is kept in its place, so its retry doesn't run again either.
 * On a single Redis keeping, indexing and deleting are the one script
 * the answer always took; in cluster mode the answers stand alone in
 * their own slots, as before (the names are unchanged everywhere, so
 * old and new binaries replay each other's answers during a roll), and
 * the index is kept first, then the answer, then the oldest deleted a
 * command at a time.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/idem.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/redis.h"
#include "keel/text.h"
#include "lua_scripts.h"

/* lib/lua/idem_*.lua: claiming and reading are one script. */
static struct keel_rscript begin_script = { .name = "idem_begin",
	.lua = keel_lua_idem_begin };
static struct keel_rscript done_script = { .name = "idem_done",
	.lua = keel_lua_idem_done };
static struct keel_rscript drop_script = { .name = "idem_drop",
	.lua = keel_lua_idem_drop };
/* Cluster mode's: the index alone (its slot is not the answers'). */
static struct keel_rscript keep_script = { .name = "idem_keep",
	.lua = keel_lua_idem_keep };

#define HASH_LEN	16		/* bytes of a key's hash */

struct keel_idem_state {
	const char	*key;		/* the Redis key we claimed: prefix
					   and hash */
	const char	*prefix;	/* "keel:idem:<client>:" */
	const char	*index;		/* the client's index of answers */
	char		 hash[2 * HASH_LEN + 1]; /* the key's, in hex: its
					   member in the index */
	char		 fp[2 * crypto_generichash_BYTES + 1];
};

/* What is kept of an answer; the strings are the request's or b's. */
struct answer {
	char		 status[KEEL_TEXT_INT_MAX];
	const char	*ctype;
	const char	*body;
	size_t		 len;		/* bytes of body */
	const char	*location;	/* "" for none */
	struct keel_buf	 b;		/* owns the body of a too-large
					   answer's stand-in */
};

bool
keel_idem_key_valid(const char *k)
{
	size_t	 i, n = strlen(k);

	if (n == 0 || n > KEEL_IDEM_KEY_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (k[i] < 0x20 || k[i] > 0x7e)
			return false;
	return true;
}

/*
 * The request's fingerprint under secret (KEEL_SECRET, or while a
 * rotation runs KEEL_SECRET_FALLBACK): what "the same request" means.
 * Keyed (BLAKE2b under a key derived from the secret), so the stored
 * value can't be used to test guesses of a body offline.
 */
static void
fingerprint(const struct keel_req *req, const char *secret, char *out)
{
	crypto_generichash_state	 s;
	unsigned char			 key[crypto_generichash_KEYBYTES];
	unsigned char			 h[crypto_generichash_BYTES];

	crypto_generichash(key, sizeof(key),
	    (const unsigned char *)secret, strlen(secret),
	    (const unsigned char *)"keel idempotency", 16);
	crypto_generichash_init(&s, key, sizeof(key), sizeof(h));
	/* NUL separators: no two different requests run together. */
	crypto_generichash_update(&s, (const unsigned char *)req->method,
	    strlen(req->method) + 1);
	crypto_generichash_update(&s, (const unsigned char *)req->path,
	    strlen(req->path) + 1);
	crypto_generichash_update(&s, (const unsigned char *)req->query,
	    strlen(req->query) + 1);
	if (req->body != NULL)
		crypto_generichash_update(&s, (const unsigned char *)req->body,
		    req->body_len);
	crypto_generichash_final(&s, h, sizeof(h));
	sodium_memzero(key, sizeof(key));
	sodium_bin2hex(out, 2 * sizeof(h) + 1, h, sizeof(h));
}

/*
 * The kept answer idem_begin.lua read: {"done", status, content type,
 * body, location}, the location "" when it was kept without one (by an
 * older binary, or an answer that has none).
 */
static void
replay(struct keel_req *req, const struct keel_rreply *rep)
{
	const struct keel_rreply	*loc;
	int64_t				 status;

	if (rep->nelem != 5 || rep->elem[1].type != KEEL_R_STR ||
	    !keel_parse_int64(rep->elem[1].str, 100, 599, &status) ||
	    (loc = &rep->elem[4])->type != KEEL_R_STR ||
	    strpbrk(loc->str, "\r\n") != NULL) {
		keel_http_reply_err(req, KEEL_EINTERNAL);
		return;
	}
	keel_http_add_header(req, "Idempotent-Replayed", "true");
	keel_http_reply(req, (int)status, rep->elem[2].len > 0 ?
	    keel_arena_strdup(req->arena, rep->elem[2].str) : NULL,
	    rep->elem[3].str, rep->elem[3].len);
	if (loc->len > 0)
		keel_http_location(req, loc->str);
}

enum keel_step
keel_idem_step(struct keel_req *req)
{
	const struct keel_http_error mismatch = {
		.status = 422,
		.message = "this Idempotency-Key belongs to a different "
		    "request",
		.field = "Idempotency-Key",
		.why = "was used with a different request",
	};
	struct keel_idem_state	*st;
	struct keel_rreply	*rep = NULL;
	const char		*key, *client, *argv[4];
	unsigned char		 h[HASH_LEN];
	char			 ttl[KEEL_TEXT_INT_MAX];
	char			 old[2 * crypto_generichash_BYTES + 1];
	int			 argc = 3;
	enum keel_step		 step = KEEL_STEP_GO;

	if (strcmp(req->method, "POST") != 0 ||
	    (key = keel_http_header(req, "Idempotency-Key")) == NULL)
		return KEEL_STEP_GO;
	if (!keel_idem_key_valid(key)) {
		keel_http_reply_error(req, 400, "bad_request",
		    "Idempotency-Key must be 1 to 255 printable ASCII "
		    "characters");
		return KEEL_STEP_REPLIED;
	}
	st = keel_arena_alloc(req->arena, sizeof(*st));
	crypto_generichash(h, sizeof(h), (const unsigned char *)key,
	    strlen(key), NULL, 0);
	sodium_bin2hex(st->hash, sizeof(st->hash), h, sizeof(h));
	/*
	 * The names of before the index, unchanged (a roll mixes binaries);
	 * clients are "u:..." or "a:...", so no answer's name is an index's.
	 */
	client = keel_http_client(req);
	st->prefix = keel_arena_printf(req->arena, "keel:idem:%s:", client);
	st->index = keel_arena_printf(req->arena, "keel:idem:i:%s", client);
	st->key = keel_arena_cat(req->arena, st->prefix, st->hash, NULL);
	/* A claim made now holds the current secret's fingerprint. */
	fingerprint(req, req->cfg->secret, st->fp);
	keel_text_int(ttl, KEEL_IDEM_RUNNING_TTL * 1000);
	argv[0] = st->key;
	argv[1] = st->fp;
	argv[2] = ttl;
	/*
	 * While a rotation runs, a claim made under the fallback (before
	 * the change, or by a host not yet rolled) is the same request's
	 * too.  Last, so the two arguments before keep their places.
	 */
	if (req->cfg->secret_fallback[0] != '\0') {
		fingerprint(req, req->cfg->secret_fallback, old);
		argv[argc++] = old;
	}
	if (keel_redis_eval(req->redis, &begin_script, 1, argc, argv, NULL,
	    &rep) != KEEL_OK || rep->type != KEEL_R_ARRAY || rep->nelem < 1 ||
	    rep->elem[0].type != KEEL_R_STR) {
		/* Like the limiter: Redis down must not stop writes. */
		keel_metrics_error("idem_unavailable");
		keel_log_warnx("idem: redis unavailable (%s); running the "
		    "request without deduplication",
		    keel_redis_errstr(req->redis));
		goto out;
	}
	if (strcmp(rep->elem[0].str, "new") == 0) {
		req->idem = st;
	} else if (strcmp(rep->elem[0].str, "done") == 0) {
		replay(req, rep);
		step = KEEL_STEP_REPLIED;
	} else if (strcmp(rep->elem[0].str, "running") == 0) {
		keel_http_reply_error(req, 409, "conflict", "a request with "
		    "this Idempotency-Key is still being processed; retry "
		    "later");
		step = KEEL_STEP_REPLIED;
	} else {
		keel_http_reply_problem(req, &mismatch);
		step = KEEL_STEP_REPLIED;
	}
out:
	keel_rreply_free(rep);
	return step;
}

/*
 * NULL when a call succeeded: Redis answered, not with an error; else
 * why, a copy in the request's arena (it outlives rep and the handle's
 * next call).
 */
static const char *
failed(struct keel_req *req, enum keel_err er, const struct keel_rreply *rep)
{
	if (er != KEEL_OK)
		return keel_arena_strdup(req->arena,
		    keel_redis_errstr(req->redis));
	return rep->type == KEEL_R_ERROR ?
	    keel_arena_strdup(req->arena, rep->str) : NULL;
}

/*
 * The stand-in for an answer over KEEL_IDEM_BODY_MAX bytes (status was
 * its status): 422 naming the key, as for a key used with another
 * request.  Not a replay (the body is gone) and not a second run (the
 * key's promise is at most once); the client learns that its request
 * was done and reads the result.  Written into a->b.
 */
static void
too_large(struct answer *a, int status)
{
	struct keel_jw	 w;
	char		 msg[256];

	snprintf(msg, sizeof(msg), "the request with this Idempotency-Key "
	    "was done (status %d) but its answer was over %d bytes, too "
	    "large to keep: it is not run again; read its result instead",
	    status, KEEL_IDEM_BODY_MAX);
	keel_jw_init(&w, &a->b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "error");
	keel_jw_str(&w, "validation_failed");
	keel_jw_key(&w, "message");
	keel_jw_str(&w, msg);
	keel_jw_key(&w, "fields");
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "Idempotency-Key");
	keel_jw_str(&w, "was used by a request whose answer was too large "
	    "to keep");
	keel_jw_obj_close(&w);
	keel_jw_obj_close(&w);
	keel_text_int(a->status, 422);
	a->ctype = "application/json; charset=utf-8";
	a->body = a->b.data;
	a->len = a->b.len;
	a->location = "";	/* a 422 points nowhere */
}

/*
 * Runs idem_done.lua for a: with the index on a single Redis (nkeys 2),
 * alone in cluster mode (1).  NULL on success, else why it failed.
 */
static const char *
done(struct keel_req *req, const struct answer *a, int nkeys)
{
	const struct keel_idem_state *st = req->idem;
	struct keel_rreply	*rep = NULL;
	const char		*argv[11], *why;
	size_t			 argvlen[11];
	char			 ttl[KEEL_TEXT_INT_MAX], max[KEEL_TEXT_INT_MAX];
	int			 i, body, n = 0;
	enum keel_err		 er;

	keel_text_int(ttl, KEEL_IDEM_TTL);
	keel_text_int(max, req->cfg->idem_max);
	argv[n++] = st->key;
	if (nkeys == 2)
		argv[n++] = st->index;
	argv[n++] = st->fp;
	argv[n++] = a->status;
	argv[n++] = a->ctype;
	body = n;
	argv[n++] = a->body;
	argv[n++] = ttl;
	if (nkeys == 2) {
		argv[n++] = st->hash;
		argv[n++] = max;
		argv[n++] = st->prefix;
	}
	argv[n++] = a->location;	/* last: older callers had none */
	/* The body may hold NULs; the rest are C strings. */
	for (i = 0; i < n; i++)
		argvlen[i] = i == body ? a->len : strlen(argv[i]);
	er = keel_redis_eval(req->redis, &done_script, nkeys, n, argv,
	    argvlen, &rep);
	why = failed(req, er, rep);
	keel_rreply_free(rep);
	return why;
}

/*
 * Cluster mode: the index first (idem_keep.lua), so that an answer kept
 * is always in it, then the answer, then the answers it took out, each
 * in its own slot.  NULL on success (a delete that failed is logged: that
 * answer lives out its KEEL_IDEM_TTL), else why keeping failed.
 */
static const char *
cluster_done(struct keel_req *req, const struct answer *a)
{
	const struct keel_idem_state *st = req->idem;
	struct keel_rreply	*gone = NULL, *rep = NULL;
	const char		*argv[4], *why;
	char			 ttl[KEEL_TEXT_INT_MAX], max[KEEL_TEXT_INT_MAX];
	size_t			 i;
	enum keel_err		 er;

	keel_text_int(ttl, KEEL_IDEM_TTL);
	keel_text_int(max, req->cfg->idem_max);
	argv[0] = st->index;
	argv[1] = st->hash;
	argv[2] = ttl;
	argv[3] = max;
	er = keel_redis_eval(req->redis, &keep_script, 1, 4, argv, NULL,
	    &gone);
	if ((why = failed(req, er, gone)) != NULL ||
	    (why = done(req, a, 1)) != NULL)
		goto out;
	for (i = 0; gone->type == KEEL_R_ARRAY && i < gone->nelem; i++) {
		if (gone->elem[i].type != KEEL_R_STR)
			continue;
		argv[0] = "DEL";
		argv[1] = keel_arena_cat(req->arena, st->prefix,
		    gone->elem[i].str, NULL);
		er = keel_redis_cmd(req->redis, 2, argv, NULL, &rep);
		if ((why = failed(req, er, rep)) != NULL) {
			keel_metrics_error("idem_evict_failed");
			keel_log_warnx("idem: deleting a client's oldest "
			    "answer failed (%s); it lives out its time", why);
			why = NULL;
		}
		keel_rreply_free(rep);
		rep = NULL;
	}
out:
	keel_rreply_free(gone);
	return why;
}

void
keel_idem_step_after(struct keel_req *req, enum keel_err er)
{
	struct keel_idem_state	*st = req->idem;
	struct keel_rreply	*rep = NULL;
	struct answer		 a = { .b = { NULL, 0, 0 } };
	const char		*argv[2], *why;
	int			 code = keel_http_status(req);

	if (st == NULL)
		return;
	if (er != KEEL_OK || code == 0 || code >= 500) {
		argv[0] = st->key;
		argv[1] = st->fp;
		keel_redis_eval(req->redis, &drop_script, 1, 2, argv, NULL,
		    &rep);
		keel_rreply_free(rep);
		return;
	}
	a.body = keel_http_reply_body(req, &a.len, &a.ctype);
	if (a.len > KEEL_IDEM_BODY_MAX) {
		too_large(&a, code);
	} else {
		keel_text_int(a.status, code);
		if (a.ctype == NULL)
			a.ctype = "";
		if (a.body == NULL)
			a.body = "";
		if ((a.location = keel_http_reply_location(req)) == NULL)
			a.location = "";
	}
	why = keel_redis_is_cluster(req->redis) ? cluster_done(req, &a) :
	    done(req, &a, 2);
	if (why != NULL) {
		keel_metrics_error("idem_store_failed");
		keel_log_warnx("idem: keeping the answer failed (%s); a retry "
		    "will see 409 until the claim expires", why);
	}
	keel_buf_free(&a.b);
}
