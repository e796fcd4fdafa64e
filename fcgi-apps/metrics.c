/* SPDX-License-Identifier: ISC */
/*
 * metrics.c -- GET /api/metrics: this host's metrics in Prometheus text
 * format 0.0.4 (API.md; DESIGN.md, "Observability").
 *
 * The counters and histograms every app and cron program keeps in its
 * file under KEEL_METRICS_DIR, summed over the workers' slots
 * (lib/metrics.c), then the gauges only a scrape can read: dependencies
 * up or down, the replica's lag, each queue's depth and dead letters,
 * the oldest outbox row's age, memcached's hit ratio.  Loopback only,
 * unless the scraper brings KEEL_METRICS_TOKEN as a bearer token.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keel/addr.h"
#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/queue.h"
#include "keel/redis.h"
#include "keel/serve.h"

#define CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

static const struct keel_query q_outbox_age = { .name = "metrics_outbox_age",
	.sql = "SELECT coalesce(extract(epoch FROM now() - min(created_at)), "
	"0)::float8 AS age FROM outbox WHERE pushed_at IS NULL",
	.target = KEEL_DB_PRIMARY };

/* Whether req carries a forwarding header other than X-Forwarded-For. */
static bool
forwarded_otherwise(struct keel_req *req)
{
	const char *const	*h;
	const char		*v;

	for (h = keel_addr_forward_headers; *h != NULL; h++)
		if ((v = keel_http_header(req, *h)) != NULL && *v != '\0')
			return true;
	return false;
}

/*
 * The client is this host, or the scraper knows the token.  The client,
 * not the peer: behind a proxy on this host (HAProxy, TRUSTED_PROXIES)
 * every peer is loopback, and the client is who the proxy says.
 */
static bool
allowed(struct keel_req *req)
{
	const char	*tok = req->cfg->metrics_token, *authz;
	size_t		 n;

	if (keel_addr_client_local(&req->cfg->client, req->remote_addr,
	    keel_http_header(req, "X-Forwarded-For"),
	    forwarded_otherwise(req)))
		return true;
	if (*tok == '\0' ||
	    (authz = keel_http_header(req, "Authorization")) == NULL ||
	    strncmp(authz, "Bearer ", 7) != 0)
		return false;
	n = strlen(tok);
	return strlen(authz + 7) == n && sodium_memcmp(authz + 7, tok, n) == 0;
}

/* keel_up{dependency} and the replica's lag. */
static void
dependencies(struct keel_req *req, struct keel_buf *out)
{
	static const char	*help = "1 when the dependency answered this "
	    "scrape within KEEL_HEALTH_TIMEOUT.";
	int			 tmo = req->cfg->health_timeout;
	double			 lag = -1;
	bool			 replica;

	keel_metrics_gauge(out, "keel_up", help, "dependency=\"postgres\"",
	    keel_db_ping(req->db, -1, tmo, NULL) == KEEL_OK);
	if ((replica = keel_db_replicas(req->db) > 0))
		keel_metrics_gauge(out, "keel_up", NULL,
		    "dependency=\"replica\"", keel_db_ping(req->db, 0, tmo,
		    &lag) == KEEL_OK);
	keel_metrics_gauge(out, "keel_up", NULL, "dependency=\"redis\"",
	    keel_redis_ping(req->redis, tmo) == KEEL_OK);
	keel_metrics_gauge(out, "keel_up", NULL, "dependency=\"memcached\"",
	    keel_cache_ping(req->cache, tmo) == KEEL_OK);
	if (replica && lag >= 0)
		keel_metrics_gauge(out, "keel_db_replica_lag_seconds",
		    "The first replica's replay lag.", "", lag / 1000.0);
}

/* Each queue's jobs waiting, delayed, leased and dead. */
static void
queues(struct keel_req *req, struct keel_buf *out)
{
	const struct keel_queue	*q;
	struct keel_queue_stats	 st;
	char			 labels[KEEL_METRICS_LABELS_MAX];
	size_t			 i, n;
	bool			 first = true;

	q = keel_queue_all(&n);
	for (i = 0; i < n; i++) {
		if (keel_queue_stats(req->redis, &q[i], &st) != KEEL_OK)
			continue;
		keel_metrics_labels(labels, "queue", q[i].name, (char *)NULL);
		keel_metrics_gauge(out, "keel_queue_depth", first ?
		    "Jobs on the queue not yet leased, delayed ones included." :
		    NULL, labels, (double)(st.waiting + st.delayed));
		keel_metrics_gauge(out, "keel_queue_active", first ?
		    "Jobs leased by a drainer now." : NULL, labels,
		    (double)st.active);
		keel_metrics_gauge(out, "keel_queue_dead_letters", first ?
		    "Jobs in the queue's dead-letter stream." : NULL, labels,
		    (double)st.failed);
		first = false;
	}
}

static void
outbox_and_cache(struct keel_req *req, struct keel_buf *out)
{
	struct keel_rows	*rows = NULL;
	uint64_t		 hits, misses;

	if (keel_db_query(req->db, &q_outbox_age, NULL, &rows) == KEEL_OK &&
	    keel_rows_count(rows) == 1)
		keel_metrics_gauge(out, "keel_outbox_oldest_age_seconds",
		    "Age of the oldest outbox row not yet on its queue.", "",
		    strtod(keel_rows_value(rows, 0, 0), NULL));
	keel_rows_free(rows);
	if (keel_cache_stats(req->cache, &hits, &misses) == KEEL_OK &&
	    hits + misses > 0)
		keel_metrics_gauge(out, "keel_cache_hit_ratio",
		    "memcached's get hits over gets, since it started.", "",
		    (double)hits / (double)(hits + misses));
}

static enum keel_err
metrics_get(struct keel_req *req)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	char		 err[256];

	if (!allowed(req)) {
		keel_http_reply_error(req, 403, "forbidden",
		    "metrics are for this host or the metrics token");
		return KEEL_OK;
	}
	if (*req->cfg->metrics_dir == '\0' ||
	    !keel_metrics_scrape(req->cfg->metrics_dir, &b, err, sizeof(err)))
		keel_buf_puts(&b, "# no metrics directory\n");
	dependencies(req, &b);
	queues(req, &b);
	outbox_and_cache(req, &b);
	keel_http_reply(req, 200, CONTENT_TYPE, b.data, b.len);
	keel_buf_free(&b);
	return KEEL_OK;
}

static const struct keel_route metrics_routes[] = {
	{ .method = "GET", .pattern = "/api/metrics", .handler = metrics_get,
	    .access = KEEL_ACCESS_ANYONE, .limit = KEEL_LIMIT_CLASS_NONE,
	    .query = KEEL_QUERY_IGNORED },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "metrics",
	    .routes = metrics_routes, .nroutes = KEEL_NELEM(metrics_routes) };

	return keel_serve(argc, argv, &app);
}
