/* SPDX-License-Identifier: ISC */
/*
 * testapp.c -- a test-only app for the process-manager tests: a slow
 * route (a request in flight during SIGTERM or SIGHUP), the serving
 * worker's pid and binary (which worker answered, and which file it
 * runs: a reload's test replaces it) and a route that fails (500).  Built, never installed.
 * Two routes ask PostgreSQL through lib/db.c (test_pgbouncer.py): the
 * settings a statement runs under, alone and in a transaction, and a
 * statement that sleeps.
 */
#include "config.h"

#include <sys/stat.h>

#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "keel/db.h"
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

/* ?ms= into *ms (1000 when absent); false after answering 400. */
static bool
testapp_ms(struct keel_req *req, int64_t *ms)
{
	const char	*s;

	*ms = 1000;
	if ((s = keel_http_query(req, "ms")) != NULL &&
	    !keel_parse_int64(s, 0, 60000, ms)) {
		keel_http_reply_error(req, 400, "bad_request",
		    "ms must be 0..60000");
		return false;
	}
	return true;
}

/* Sleeps ?ms= milliseconds (at most 60 s), then answers like /pid. */
static enum keel_err
testapp_sleep(struct keel_req *req)
{
	struct timespec	 ts;
	int64_t		 ms;

	if (!testapp_ms(req, &ms))
		return KEEL_OK;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1)
		continue;
	return testapp_reply_pid(req);
}

/* What a statement of this worker's runs under. */
static const struct keel_query q_settings = { .name = "testapp_settings",
	.sql = "SELECT setting FROM pg_settings WHERE name IN "
	"('plan_cache_mode', 'statement_timeout') ORDER BY name",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_sleep = { .name = "testapp_sleep",
	.sql = "SELECT pg_sleep($1::float8 / 1000)", .target = KEEL_DB_PRIMARY };

/* The settings' rows as "planCacheMode" and "statementTimeout" of key. */
static void
testapp_settings_put(struct keel_jw *w, const char *key,
    const struct keel_rows *rows)
{
	keel_jw_key(w, key);
	keel_jw_obj_open(w);
	keel_jw_key(w, "planCacheMode");
	keel_jw_str(w, keel_rows_value(rows, 0, 0));
	keel_jw_key(w, "statementTimeout");
	keel_jw_str(w, keel_rows_value(rows, 1, 0));
	keel_jw_obj_close(w);
}

/* The settings a statement alone, then one in a transaction, ran under. */
static enum keel_err
testapp_db_settings(struct keel_req *req)
{
	struct keel_rows	*alone = NULL, *tx = NULL;
	struct keel_buf		 b = { NULL, 0, 0 };
	struct keel_jw		 w;
	enum keel_err		 er;

	if ((er = keel_db_query(req->db, &q_settings, NULL, &alone)) !=
	    KEEL_OK || (er = keel_db_begin(req->db)) != KEEL_OK ||
	    (er = keel_db_query(req->db, &q_settings, NULL, &tx)) != KEEL_OK ||
	    (er = keel_db_commit(req->db)) != KEEL_OK)
		goto out;
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "pid");
	keel_jw_int(&w, getpid());
	testapp_settings_put(&w, "alone", alone);
	testapp_settings_put(&w, "inTransaction", tx);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
	keel_buf_free(&b);
out:
	keel_db_rollback(req->db);
	keel_rows_free(alone);
	keel_rows_free(tx);
	return er;
}

/* A statement that sleeps ?ms= milliseconds (at most 60 s) in PostgreSQL. */
static enum keel_err
testapp_db_sleep(struct keel_req *req)
{
	struct keel_db_params	 p;
	int64_t			 ms;
	enum keel_err		 er;

	if (!testapp_ms(req, &ms))
		return KEEL_OK;
	keel_db_params_init(&p);
	keel_db_param_int(&p, ms);
	if ((er = keel_db_query(req->db, &q_sleep, &p, NULL)) != KEEL_OK)
		return er;
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
	    .handler = testapp_sleep, .access = KEEL_ACCESS_ANYONE,
	    .query = KEEL_QUERY_IGNORED },
	{ .method = "GET", .pattern = "/_test/db/settings",
	    .handler = testapp_db_settings, .access = KEEL_ACCESS_ANYONE },
	{ .method = "GET", .pattern = "/_test/db/sleep",
	    .handler = testapp_db_sleep, .access = KEEL_ACCESS_ANYONE,
	    .query = KEEL_QUERY_IGNORED },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "testapp",
	    .routes = testapp_routes, .nroutes = KEEL_NELEM(testapp_routes) };

	return keel_serve(argc, argv, &app);
}
