/* SPDX-License-Identifier: ISC */
/*
 * limitapp.c -- a test-only app under /api/_limit for the rate-limit and
 * idempotency tests: a read, a write that answers a fresh nonce (so a
 * replay is told from a second run), the same with a body as large as
 * asked (an answer too large to keep), a slow write (a request in
 * flight), a failing write, a login that fails unless the password is
 * "right", and a route that needs a session.  Built, never installed.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/serve.h"
#include "keel/text.h"

/* Replies status with {name: value}. */
static void
limitapp_reply(struct keel_req *req, int status, const char *name,
    const char *s, int64_t i)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, name);
	if (s != NULL)
		keel_jw_str(&w, s);
	else
		keel_jw_int(&w, i);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, status, &b);
	keel_buf_free(&b);
}

static enum keel_err
limitapp_read(struct keel_req *req)
{
	keel_http_reply(req, 200, "application/json; charset=utf-8",
	    "{\"ok\":true}", 11);
	return KEEL_OK;
}

/* 201 {"nonce": 32 hex digits}: different on every run of a handler. */
static enum keel_err
limitapp_write(struct keel_req *req)
{
	unsigned char	 r[16];
	char		 hex[33];

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	limitapp_reply(req, 201, "nonce", hex, 0);
	return KEEL_OK;
}

/* Sleeps ?ms= (at most 10 s), then answers like write. */
static enum keel_err
limitapp_slow(struct keel_req *req)
{
	struct timespec	 ts;
	const char	*s;
	int64_t		 ms = 1000;

	if ((s = keel_http_query(req, "ms")) != NULL &&
	    !keel_parse_int64(s, 0, 10000, &ms)) {
		keel_http_reply_error(req, 400, "bad_request",
		    "ms must be 0..10000");
		return KEEL_OK;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1)
		continue;
	return limitapp_write(req);
}

/* 201 {"nonce": as write's, "pad": ?bytes= (at most 1 MiB) "x"s}. */
static enum keel_err
limitapp_big(struct keel_req *req)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	unsigned char	 r[16];
	char		 hex[33], *pad;
	const char	*s;
	int64_t		 n = 0;

	if ((s = keel_http_query(req, "bytes")) != NULL &&
	    !keel_parse_int64(s, 0, 1048576, &n)) {
		keel_http_reply_error(req, 400, "bad_request",
		    "bytes must be 0..1048576");
		return KEEL_OK;
	}
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	pad = keel_arena_alloc(req->arena, (size_t)n + 1);
	memset(pad, 'x', (size_t)n);
	pad[n] = '\0';
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "nonce");
	keel_jw_str(&w, hex);
	keel_jw_key(&w, "pad");
	keel_jw_str(&w, pad);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 201, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

static enum keel_err
limitapp_fail(struct keel_req *req)
{
	(void)req;
	return KEEL_EINTERNAL;
}

/* {"login", "password"}: 200 when the password is "right", else 401. */
static enum keel_err
limitapp_login(struct keel_req *req)
{
	struct json_object	*doc, *pw;
	char			 err[64];
	int			 ok = 0;

	if (req->body != NULL && keel_json_parse(req->body, req->body_len,
	    &doc, err, sizeof(err)) == KEEL_OK) {
		ok = json_object_object_get_ex(doc, "password", &pw) &&
		    strcmp(json_object_get_string(pw), "right") == 0;
		json_object_put(doc);
	}
	if (!ok) {
		keel_http_reply_error(req, 401, "unauthorized",
		    "bad credentials");
		return KEEL_OK;
	}
	return limitapp_read(req);
}

static enum keel_err
limitapp_me(struct keel_req *req)
{
	limitapp_reply(req, 200, "uid", NULL, req->user->id);
	return KEEL_OK;
}

static const struct keel_route limitapp_routes[] = {
	{ .method = "GET", .pattern = "/api/_limit/read",
	    .handler = limitapp_read, .access = KEEL_ACCESS_ANYONE },
	{ .method = "POST", .pattern = "/api/_limit/write",
	    .handler = limitapp_write, .access = KEEL_ACCESS_ANYONE },
	{ .method = "POST", .pattern = "/api/_limit/big",
	    .handler = limitapp_big, .access = KEEL_ACCESS_ANYONE,
	    .query = KEEL_QUERY_IGNORED },
	{ .method = "POST", .pattern = "/api/_limit/slow",
	    .handler = limitapp_slow, .access = KEEL_ACCESS_ANYONE,
	    .query = KEEL_QUERY_IGNORED },
	{ .method = "POST", .pattern = "/api/_limit/fail",
	    .handler = limitapp_fail, .access = KEEL_ACCESS_ANYONE },
	/* Counts its failures against the auth limiter, as login does. */
	{ .method = "POST", .pattern = "/api/_limit/auth/login",
	    .handler = limitapp_login, .access = KEEL_ACCESS_ANYONE,
	    .limit = KEEL_LIMIT_CLASS_AUTH },
	{ .method = "GET", .pattern = "/api/_limit/me",
	    .handler = limitapp_me, .access = KEEL_ACCESS_USER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "limitapp",
	    .routes = limitapp_routes,
	    .nroutes = KEEL_NELEM(limitapp_routes) };

	return keel_serve(argc, argv, &app);
}
