/* SPDX-License-Identifier: ISC */
/*
 * testapp.c -- a test-only app for the process-manager tests: a slow
 * route (a request in flight during SIGTERM or SIGHUP), the serving
 * worker's pid and binary (which worker answered, and which file it
 * runs: a reload's test replaces it) and a route that fails (500).  Built, never installed.
 */
#include "config.h"

#include <sys/stat.h>

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/serve.h"
#include "keel/text.h"

static enum keel_err
testapp_reply_pid(struct keel_req *req)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	struct stat	 st;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "pid");
	keel_jw_int(&w, getpid());
	/* Which binary serves: a reload's test replaces the file. */
	keel_jw_key(&w, "exe");
	keel_jw_int(&w, stat("/proc/self/exe", &st) == 0 ?
	    (int64_t)st.st_ino : 0);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

static enum keel_err
testapp_pid(struct keel_req *req)
{
	return testapp_reply_pid(req);
}

/* Sleeps ?ms= milliseconds (at most 60 s), then answers like /pid. */
static enum keel_err
testapp_sleep(struct keel_req *req)
{
	struct timespec	 ts;
	const char	*s;
	int64_t		 ms = 1000;

	if ((s = keel_http_query(req, "ms")) != NULL &&
	    !keel_parse_int64(s, 0, 60000, &ms)) {
		keel_http_reply_error(req, 400, "bad_request",
		    "ms must be 0..60000");
		return KEEL_OK;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1)
		continue;
	return testapp_reply_pid(req);
}

/* An internal error, whatever the request holds (the error reports'
 * tests: a 500 with the route pattern, the caller and scrubbed headers). */
static enum keel_err
testapp_fail(struct keel_req *req)
{
	(void)req;
	return KEEL_EINTERNAL;
}

static const struct keel_route testapp_routes[] = {
	{ .method = "POST", .pattern = "/_test/fail/{id:int}",
	    .handler = testapp_fail, .access = KEEL_ACCESS_ANYONE },
	{ .method = "GET", .pattern = "/_test/pid", .handler = testapp_pid,
	    .access = KEEL_ACCESS_ANYONE },
	{ .method = "GET", .pattern = "/_test/sleep",
	    .handler = testapp_sleep, .access = KEEL_ACCESS_ANYONE },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "testapp",
	    .routes = testapp_routes, .nroutes = KEEL_NELEM(testapp_routes) };

	return keel_serve(argc, argv, &app);
}
