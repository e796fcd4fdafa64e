/* SPDX-License-Identifier: ISC */
/*
 * limitapp.c -- a test-only app under /api/_limit for the rate-limit and
 * idempotency tests: a read, a write that answers a fresh nonce (so a
 * replay is told from a second run), a slow write (a request in flight),
 * a failing write, a login that fails unless the password is "right",
 * and a route that needs a session.  Built, never installed.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "keel/json.h"
#include "keel/serve.h"

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
	unsigned char		 r[16];
	char			 hex[33];
	struct json_object	*o;

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	o = json_object_new_object();
	json_object_object_add(o, "nonce", json_object_new_string(hex));
	keel_http_reply_json(req, 201, o);
	json_object_put(o);
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
	    keel_parse_int64(s, 0, 10000, &ms) == -1) {
		keel_http_reply_error(req, 400, "bad_request",
		    "ms must be 0..10000", NULL);
		return KEEL_OK;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1)
		continue;
	return limitapp_write(req);
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
		    "bad credentials", NULL);
		return KEEL_OK;
	}
	return limitapp_read(req);
}

static enum keel_err
limitapp_me(struct keel_req *req)
{
	struct json_object	*o;

	o = json_object_new_object();
	json_object_object_add(o, "uid", json_object_new_int64(req->user->id));
	keel_http_reply_json(req, 200, o);
	json_object_put(o);
	return KEEL_OK;
}

static const struct keel_route limitapp_routes[] = {
	{ "GET", "/api/_limit/read", limitapp_read, KEEL_ACCESS_ANYONE },
	{ "POST", "/api/_limit/write", limitapp_write, KEEL_ACCESS_ANYONE },
	{ "POST", "/api/_limit/slow", limitapp_slow, KEEL_ACCESS_ANYONE },
	{ "POST", "/api/_limit/fail", limitapp_fail, KEEL_ACCESS_ANYONE },
	{ "POST", "/api/_limit/auth/login", limitapp_login,
	    KEEL_ACCESS_ANYONE },
	{ "GET", "/api/_limit/me", limitapp_me, KEEL_ACCESS_USER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "limitapp", limitapp_routes,
	    sizeof(limitapp_routes) / sizeof(limitapp_routes[0]) };

	return keel_serve(argc, argv, &app);
}
