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
 * status, content type and body replace the claim for KEEL_IDEM_TTL.
 * Claiming and reading are one script, so two concurrent retries can't
 * both run the handler.  A 5xx is not kept: the failure may be transient
 * and the retry deserves a real attempt.
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

struct keel_idem_state {
	const char	*key;		/* the Redis key we claimed */
	char		 fp[2 * crypto_generichash_BYTES + 1];
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
 * The request's fingerprint: what "the same request" means.  Keyed
 * (BLAKE2b under a key derived from KEEL_SECRET), so the stored value
 * can't be used to test guesses of a body offline.
 */
static void
fingerprint(const struct keel_req *req, char *out)
{
	crypto_generichash_state	 s;
	unsigned char			 key[crypto_generichash_KEYBYTES];
	unsigned char			 h[crypto_generichash_BYTES];

	crypto_generichash(key, sizeof(key),
	    (const unsigned char *)req->cfg->secret, strlen(req->cfg->secret),
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

static void
replay(struct keel_req *req, const struct keel_rreply *rep)
{
	int64_t	 status;

	if (rep->nelem != 4 || rep->elem[1].type != KEEL_R_STR ||
	    !keel_parse_int64(rep->elem[1].str, 100, 599, &status)) {
		keel_http_reply_err(req, KEEL_EINTERNAL);
		return;
	}
	keel_http_add_header(req, "Idempotent-Replayed", "true");
	keel_http_reply(req, (int)status, rep->elem[2].len > 0 ?
	    keel_arena_strdup(req->arena, rep->elem[2].str) : NULL,
	    rep->elem[3].str, rep->elem[3].len);
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
	const char		*key, *argv[3];
	unsigned char		 h[16];
	char			 kh[2 * sizeof(h) + 1], ttl[KEEL_TEXT_INT_MAX];
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
	sodium_bin2hex(kh, 2 * sizeof(h) + 1, h, sizeof(h));
	st->key = keel_arena_printf(req->arena, "keel:idem:%s:%s",
	    keel_http_client(req), kh);
	fingerprint(req, st->fp);
	keel_text_int(ttl, KEEL_IDEM_RUNNING_TTL * 1000);
	argv[0] = st->key;
	argv[1] = st->fp;
	argv[2] = ttl;
	if (keel_redis_eval(req->redis, &begin_script, 1, 3, argv, NULL,
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

void
keel_idem_step_after(struct keel_req *req, enum keel_err er)
{
	struct keel_idem_state	*st = req->idem;
	struct keel_rreply	*rep = NULL;
	const char		*argv[6], *body, *ctype;
	size_t			 argvlen[6], len;
	char			 status[KEEL_TEXT_INT_MAX];
	char			 ttl[KEEL_TEXT_INT_MAX];
	int			 code = keel_http_status(req);

	if (st == NULL)
		return;
	argv[0] = st->key;
	argv[1] = st->fp;
	if (er != KEEL_OK || code == 0 || code >= 500) {
		keel_redis_eval(req->redis, &drop_script, 1, 2, argv, NULL,
		    &rep);
		goto out;
	}
	body = keel_http_reply_body(req, &len, &ctype);
	keel_text_int(status, code);
	keel_text_int(ttl, KEEL_IDEM_TTL);
	argv[2] = status;
	argv[3] = ctype != NULL ? ctype : "";
	argv[4] = body != NULL ? body : "";
	argv[5] = ttl;
	argvlen[0] = strlen(argv[0]);
	argvlen[1] = strlen(argv[1]);
	argvlen[2] = strlen(argv[2]);
	argvlen[3] = strlen(argv[3]);
	argvlen[4] = len;
	argvlen[5] = strlen(argv[5]);
	if (keel_redis_eval(req->redis, &done_script, 1, 6, argv, argvlen,
	    &rep) != KEEL_OK) {
		keel_metrics_error("idem_store_failed");
		keel_log_warnx("idem: keeping the answer failed (%s); a retry "
		    "will see 409 until the claim expires",
		    keel_redis_errstr(req->redis));
	}
out:
	keel_rreply_free(rep);
}
