/* SPDX-License-Identifier: ISC */
/*
 * queues.c -- queue stats and dead-letter retry (API.md, "Queues").
 *
 * Admin only (the router enforces the access bits).  Counts come from one
 * Lua script per queue (lib/queue.c), so the five numbers are one
 * consistent snapshot.  keel-queues does the same from a shell.
 */
#include "config.h"

#include "keel/http.h"
#include "keel/json.h"
#include "keel/queue.h"
#include "keel/router.h"
#include "keel/serve.h"

static int
queues_lookup(struct keel_req *req, const char *name,
    const struct keel_queue **q)
{
	if ((*q = keel_queue_find(name)) == NULL) {
		keel_http_reply_error(req, 404, "not_found", "no such queue",
		    NULL);
		return -1;
	}
	return 0;
}

static enum keel_err
queues_reply_stats(struct keel_req *req, const struct keel_queue *q)
{
	struct keel_queue_stats	 st;
	struct json_object	*o;
	enum keel_err		 er;

	if ((er = keel_queue_stats(req->redis, q, &st)) != KEEL_OK)
		return er;
	o = json_object_new_object();
	json_object_object_add(o, "waiting", json_object_new_int64(st.waiting));
	json_object_object_add(o, "active", json_object_new_int64(st.active));
	json_object_object_add(o, "delayed", json_object_new_int64(st.delayed));
	json_object_object_add(o, "completed",
	    json_object_new_int64(st.completed));
	json_object_object_add(o, "failed", json_object_new_int64(st.failed));
	keel_http_reply_json(req, 200, o);
	json_object_put(o);
	return KEEL_OK;
}

static enum keel_err
queues_stats(struct keel_req *req)
{
	const struct keel_queue	*q;

	if (queues_lookup(req, keel_http_param(req, "name"), &q) == -1)
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
	const struct keel_queue	*q;
	struct json_object	*o;
	enum keel_err		 er;
	int64_t			 n;

	if (queues_lookup(req, keel_http_param(req, "name"), &q) == -1)
		return KEEL_OK;
	if ((er = keel_queue_retry_failed(req->redis, q, &n)) != KEEL_OK)
		return er;
	o = json_object_new_object();
	json_object_object_add(o, "retried", json_object_new_int64(n));
	keel_http_reply_json(req, 200, o);
	json_object_put(o);
	return KEEL_OK;
}

static const struct keel_route queues_routes[] = {
	{ "GET", "/api/queues/{name:str}/stats", queues_stats,
	    KEEL_ROLE_ADMIN },
	{ "POST", "/api/queues/{name:str}/failed/retry", queues_retry,
	    KEEL_ROLE_ADMIN },
	{ "GET", "/api/email-queue/stats", queues_email_stats,
	    KEEL_ROLE_ADMIN },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "queues", queues_routes,
	    sizeof(queues_routes) / sizeof(queues_routes[0]) };

	return keel_serve(argc, argv, &app);
}
