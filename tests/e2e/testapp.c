/* SPDX-License-Identifier: ISC */
/*
 * testapp.c -- a test-only app for the process-manager tests: a slow
 * route (a request in flight during SIGTERM or SIGHUP) and the serving
 * worker's pid (which worker answered).  Built, never installed.
 */
#include "config.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "keel/json.h"
#include "keel/serve.h"

static enum keel_err
testapp_reply_pid(struct keel_req *req)
{
	struct json_object	*o;

	o = json_object_new_object();
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	keel_http_reply_json(req, 200, o);
	json_object_put(o);
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
	    keel_parse_int64(s, 0, 60000, &ms) == -1) {
		keel_http_reply_error(req, 400, "bad_request",
		    "ms must be 0..60000", NULL);
		return KEEL_OK;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1)
		continue;
	return testapp_reply_pid(req);
}

static const struct keel_route testapp_routes[] = {
	{ "GET", "/_test/pid", testapp_pid, KEEL_ACCESS_ANYONE },
	{ "GET", "/_test/sleep", testapp_sleep, KEEL_ACCESS_ANYONE },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "testapp", testapp_routes,
	    sizeof(testapp_routes) / sizeof(testapp_routes[0]) };

	return keel_serve(argc, argv, &app);
}
