/* SPDX-License-Identifier: ISC */
/*
 * health.c -- GET /health: is every dependency reachable?
 *
 * Each check has a short timeout (KEEL_HEALTH_TIMEOUT) so a hung
 * dependency can't hang the probe.  Only a down primary makes the answer
 * 503: the rest degrade keel (DESIGN.md, "When a dependency fails") but it
 * still serves.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/serve.h"

static double
health_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One check's outcome. */
struct health {
	const char	*name;
	enum keel_err	 er;
	double		 ms;		/* how long it took */
	double		 lag;		/* replica: replay lag (ms), -1 none */
	bool		 off;		/* not configured */
};

/* A duration as a JSON number with two decimals ("1.25", not 17 digits). */
static void
health_ms(struct keel_jw *w, const char *key, double ms)
{
	char	 buf[32];
	int	 n;

	n = snprintf(buf, sizeof(buf), "%.2f", ms);
	keel_jw_key(w, key);
	keel_jw_raw(w, buf, (size_t)n);
}

/* "name": {"status": "up"|"down"|"disabled", "ms": ..., "lagMs": ...}. */
static void
health_write(struct keel_jw *w, const struct health *h)
{
	keel_jw_key(w, h->name);
	keel_jw_obj_open(w);
	keel_jw_key(w, "status");
	keel_jw_str(w, h->off ? "disabled" : h->er == KEEL_OK ? "up" : "down");
	if (!h->off)
		health_ms(w, "ms", h->ms);
	if (h->er == KEEL_OK && h->lag >= 0)
		health_ms(w, "lagMs", h->lag);
	keel_jw_obj_close(w);
}

static enum keel_err
health_get(struct keel_req *req)
{
	struct health	 h[4] = { { .name = "postgres", .lag = -1 },
	    { .name = "replica", .lag = -1 }, { .name = "redis", .lag = -1 },
	    { .name = "memcached", .lag = -1 } };
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	double		 t0;
	int		 tmo = req->cfg->health_timeout;
	size_t		 i;

	t0 = health_now();
	h[0].er = keel_db_ping(req->db, -1, tmo, NULL);
	h[0].ms = health_now() - t0;
	/* The first replica stands for the replica check. */
	h[1].off = keel_db_replicas(req->db) == 0;
	if (!h[1].off) {
		t0 = health_now();
		h[1].er = keel_db_ping(req->db, 0, tmo, &h[1].lag);
		h[1].ms = health_now() - t0;
	}
	t0 = health_now();
	h[2].er = keel_redis_ping(req->redis, tmo);
	h[2].ms = health_now() - t0;
	t0 = health_now();
	h[3].er = keel_cache_ping(req->cache, tmo);
	h[3].ms = health_now() - t0;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "status");
	keel_jw_str(&w, h[0].er != KEEL_OK ? "down" : h[1].er != KEEL_OK ||
	    h[2].er != KEEL_OK || h[3].er != KEEL_OK ? "degraded" : "ok");
	keel_jw_key(&w, "checks");
	keel_jw_obj_open(&w);
	for (i = 0; i < 4; i++)
		health_write(&w, &h[i]);
	keel_jw_obj_close(&w);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, h[0].er != KEEL_OK ? 503 : 200, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

static const struct keel_route health_routes[] = {
	{ .method = "GET", .pattern = "/health", .handler = health_get,
	    .access = KEEL_ACCESS_ANYONE, .limit = KEEL_LIMIT_CLASS_NONE },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "health",
	    .routes = health_routes, .nroutes = KEEL_NELEM(health_routes) };

	return keel_serve(argc, argv, &app);
}
