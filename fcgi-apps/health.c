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

#include <stdio.h>
#include <time.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/redis.h"
#include "keel/serve.h"

static double
health_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A duration as a JSON number with two decimals ("1.25", not 17 digits). */
static struct json_object *
health_ms(double ms)
{
	char	 buf[32];

	snprintf(buf, sizeof(buf), "%.2f", ms);
	return json_object_new_double_s(ms, buf);
}

/* {"status": "up"|"down", "ms": ...} for one check. */
static struct json_object *
health_check(enum keel_err er, double t0)
{
	struct json_object	*o;

	o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string(
	    er == KEEL_OK ? "up" : "down"));
	json_object_object_add(o, "ms", health_ms(health_now() - t0));
	return o;
}

static enum keel_err
health_get(struct keel_req *req)
{
	struct json_object	*body, *checks, *o;
	enum keel_err		 pg, rep = KEEL_OK, rd, mc;
	double			 t0, lag;
	int			 tmo = keel_config()->health_timeout, down;

	checks = json_object_new_object();
	t0 = health_now();
	pg = keel_db_ping(req->db, -1, tmo, NULL);
	json_object_object_add(checks, "postgres", health_check(pg, t0));

	/* The first replica stands for the replica check. */
	if (keel_db_replicas(req->db) > 0) {
		t0 = health_now();
		rep = keel_db_ping(req->db, 0, tmo, &lag);
		o = health_check(rep, t0);
		if (rep == KEEL_OK && lag >= 0)
			json_object_object_add(o, "lagMs", health_ms(lag));
	} else {
		o = json_object_new_object();
		json_object_object_add(o, "status",
		    json_object_new_string("disabled"));
	}
	json_object_object_add(checks, "replica", o);

	t0 = health_now();
	rd = keel_redis_ping(req->redis, tmo);
	json_object_object_add(checks, "redis", health_check(rd, t0));
	t0 = health_now();
	mc = keel_cache_ping(req->cache, tmo);
	json_object_object_add(checks, "memcached", health_check(mc, t0));

	down = pg != KEEL_OK;
	body = json_object_new_object();
	json_object_object_add(body, "status", json_object_new_string(down ?
	    "down" : rep != KEEL_OK || rd != KEEL_OK || mc != KEEL_OK ?
	    "degraded" : "ok"));
	json_object_object_add(body, "checks", checks);
	keel_http_add_header(req, "Cache-Control", "no-store");
	keel_http_reply_json(req, down ? 503 : 200, body);
	json_object_put(body);
	return KEEL_OK;
}

static const struct keel_route health_routes[] = {
	{ "GET", "/health", health_get, KEEL_ACCESS_ANYONE },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "health", health_routes,
	    sizeof(health_routes) / sizeof(health_routes[0]) };

	return keel_serve(argc, argv, &app);
}
