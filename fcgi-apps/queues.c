/* SPDX-License-Identifier: ISC */
/*
 * queues.c -- queue stats and dead-letter retry (API.md, "Queues").
 *
 * Admin only (the router enforces the access bits).  Counts come from one
 * Lua script per queue (lib/queue.c), so the five numbers are one
 * consistent snapshot.  A retry is the outbox's (lib/outbox.c): the dead
 * letters go back with fresh attempts and their outbox rows become
 * unfinished, so the jobs run again; nothing moves while PostgreSQL
 * can't be reached.  keel-queues does the same from a shell.
 */
#include "config.h"

#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/queue.h"
#include "keel/router.h"
#include "keel/serve.h"

/* A step: the queue the path names, or a 404. */
static enum keel_step
queues_lookup(struct keel_req *req, const char *name,
    const struct keel_queue **q)
{
	if ((*q = keel_queue_find(name)) != NULL)
		return KEEL_STEP_GO;
	keel_http_reply_error(req, 404, "not_found", "no such queue");
	return KEEL_STEP_REPLIED;
}

/* Replies with {name: n, ...} for names[0..n). */
static void
queues_reply(struct keel_req *req, const char *const *names,
    const int64_t *vals, size_t n)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	size_t		 i;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	for (i = 0; i < n; i++) {
		keel_jw_key(&w, names[i]);
		keel_jw_int(&w, vals[i]);
	}
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
	keel_buf_free(&b);
}

static enum keel_err
queues_reply_stats(struct keel_req *req, const struct keel_queue *q)
{
	static const char *const names[] = { "waiting", "active", "delayed",
	    "completed", "failed" };
	struct keel_queue_stats	 st;
	enum keel_err		 er;

	if ((er = keel_queue_stats(req->redis, q, &st)) != KEEL_OK)
		return er;
	queues_reply(req, names, (const int64_t[]){ st.waiting, st.active,
	    st.delayed, st.completed, st.failed }, KEEL_NELEM(names));
	return KEEL_OK;
}

static enum keel_err
queues_stats(struct keel_req *req)
{
	const struct keel_queue	*q;

	if (queues_lookup(req, keel_http_param(req, "name"), &q) !=
	    KEEL_STEP_GO)
		return KEEL_OK;
	return queues_reply_stats(req, q);
}

static enum keel_err
queues_email_stats(struct keel_req *req)
{
	return queues_reply_stats(req, keel_queue_find("email"));
}

static enum keel_err
queues_retry(struct keel_req *req)
{
	static const char *const names[] = { "retried" };
	const struct keel_queue	*q;
	enum keel_err		 er;
	int64_t			 n;

	if (queues_lookup(req, keel_http_param(req, "name"), &q) !=
	    KEEL_STEP_GO)
		return KEEL_OK;
	/*
	 * Nothing moves without PostgreSQL: a job back on the queue with an
	 * outbox row that still says finished is one the relay no longer
	 * watches, so a Redis crash would lose it (503, as keel-queues'
	 * exit 1).
	 */
	if ((er = keel_db_ping(req->db, -1, req->cfg->db_connect_timeout *
	    1000, NULL)) != KEEL_OK)
		return er;
	if ((er = keel_outbox_retry_failed(req->db, req->redis, q,
	    &n)) != KEEL_OK)
		return er;
	queues_reply(req, names, &n, 1);
	return KEEL_OK;
}

static const struct keel_route queues_routes[] = {
	{ .method = "GET", .pattern = "/api/queues/{name:str}/stats",
	    .handler = queues_stats, .access = KEEL_ROLE_ADMIN },
	{ .method = "POST", .pattern = "/api/queues/{name:str}/failed/retry",
	    .handler = queues_retry, .access = KEEL_ROLE_ADMIN },
	{ .method = "GET", .pattern = "/api/email-queue/stats",
	    .handler = queues_email_stats, .access = KEEL_ROLE_ADMIN },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "queues",
	    .routes = queues_routes, .nroutes = KEEL_NELEM(queues_routes) };

	return keel_serve(argc, argv, &app);
}
