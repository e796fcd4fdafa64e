/* SPDX-License-Identifier: ISC */
/*
 * pipeline.c -- the steps between a request and its handler.
 *
 * Each step is a module's (limit, auth, http's query check, idem,
 * cache) and reads what it needs off the matched route's row: its
 * limiter class, its roles, the query it takes, its cache namespace.
 * The steps know nothing of each other; this file is the one place
 * that knows their order and glues their round trips:
 * the cache lookup of a cached GET is sent first, then the limiter's
 * script runs auth's session read in passing, so a cached GET waits for
 * one round trip, not three.
 */
#include "config.h"

#include <string.h>

#include "keel/auth.h"
#include "keel/cache.h"
#include "keel/config.h"
#include "keel/cors.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/idem.h"
#include "keel/limit.h"
#include "keel/mem.h"
#include "keel/pipeline.h"
#include "keel/redis.h"
#include "keel/router.h"
#include "keel/text.h"

/* The cache key of a cached route: its own, or the path and query. */
static const char *
cache_key(struct keel_req *req, const struct keel_route *r)
{
	if (r->cache.key != NULL)
		return r->cache.key(req);
	return keel_arena_cat(req->arena, req->path, "?", req->query, NULL);
}

/*
 * The namespace of a cached route's request: the route's ns_of's (one
 * board of many), its own, or, cached per user, the caller's part of it
 * (NULL before the caller is known: the lookup waits for the session).
 */
static const char *
cache_ns(struct keel_req *req, const struct keel_route *r)
{
	char	*ns;

	if (r->cache.ns_of != NULL)
		return r->cache.ns_of(req);
	if (!r->cache.per_user)
		return r->cache.ns;
	if (req->user == NULL)
		return NULL;
	ns = keel_arena_alloc(req->arena, KEEL_CACHE_NS_MAX + 1);
	if (keel_cache_user_ns(ns, KEEL_CACHE_NS_MAX + 1, r->cache.ns,
	    req->user->id) == 0)
		return NULL;
	return ns;
}

/*
 * A cached GET's two round trips, Redis (limits, session) and memcached
 * (the lookup), are independent once the key is known: send the lookup
 * first, so its answer is waiting when the handler asks for it.
 */
static void
prefetch(struct keel_req *req, const struct keel_route *r)
{
	const char	*ns, *key;

	if (r->cache.ns != NULL && (ns = cache_ns(req, r)) != NULL &&
	    (key = cache_key(req, r)) != NULL)
		keel_cache_prefetch(req->cache, ns, key);
}

/* cache.h's fill function: the route's handler. */
static enum keel_err
fill(struct keel_req *req, void *arg)
{
	const struct keel_route	*r = arg;

	return r->handler(req);
}

static enum keel_err
handle(struct keel_req *req, const struct keel_route *r)
{
	const char	*ns, *key;

	if (r->cache.ns == NULL || (ns = cache_ns(req, r)) == NULL ||
	    (key = cache_key(req, r)) == NULL)
		return r->handler(req);
	return keel_cache_serve(req, ns, key, r->cache.ttl, fill, (void *)r);
}

/*
 * A route that takes no query refuses every parameter here, with the
 * 400 a list gives an unknown filter (keel_http_query_known), before the
 * idempotency record, the cache and the handler: a client's ?dryRun=1
 * must not become a real write.  It runs after the limiter and auth, as
 * a handler's own 400 would: it counts, and a 401 or 403 comes first.
 */
static enum keel_step
query_step(struct keel_req *req, const struct keel_route *r)
{
	if (r->query != KEEL_QUERY_NONE)
		return KEEL_STEP_GO;
	return keel_http_query_known(req, NULL, 0, NULL);
}

/*
 * Server-Timing: db;dur=<ms, 2 decimals>;desc="<n> queries" (W3C), so
 * N+1 queries show in any client's tools.  Built without printf: its
 * floating point was a visible share of a cached GET.
 */
static void
server_timing(struct keel_req *req)
{
	char		 v[96];
	unsigned	 nq;
	double		 ms;
	int64_t		 c;
	size_t		 len;

	keel_db_stats(req->db, &nq, &ms);
	/* Hundredths, clamped: a cast past the type's range is undefined. */
	c = ms > 0 ? (int64_t)((ms < 1e12 ? ms : 1e12) * 100 + 0.5) : 0;
	memcpy(v, "db;dur=", 7);
	len = 7 + keel_text_int(v + 7, c / 100);
	v[len++] = '.';
	v[len++] = (char)('0' + c % 100 / 10);
	v[len++] = (char)('0' + c % 10);
	memcpy(v + len, ";desc=\"", 7);
	len += 7;
	len += keel_text_int(v + len, nq);
	memcpy(v + len, " queries\"", sizeof(" queries\""));
	keel_http_add_header(req, "Server-Timing", v);
}

/* The steps of a matched request, in DESIGN.md's order. */
static enum keel_err
run(struct keel_req *req, const struct keel_route *r)
{
	struct keel_limit_ride	 ride = {
		.lua = keel_auth_session_ride,
		.key = keel_auth_session_key(req),
	};
	enum keel_err		 er = KEEL_OK;

	/* Replica pinning and write tracking are per request. */
	keel_db_request_reset(req->db);
	prefetch(req, r);
	if (keel_redis_is_cluster(req->redis)) {
		/* Redis Cluster: the session (its slot) first, then the
		 * limits keyed on its user (theirs): limit.c's top comment. */
		if (keel_auth_step_identify(req, ride.key, NULL, 0) !=
		    KEEL_STEP_GO)
			goto out;
		if (keel_limit_check(req, r->limit, NULL) != KEEL_STEP_GO)
			goto drop;
		if (keel_auth_step_authorize(req) != KEEL_STEP_GO)
			goto out;
	/* 3, 4: limits and the session in one round trip; 429 ends here. */
	} else if (keel_limit_check(req, r->limit, &ride) != KEEL_STEP_GO)
		goto drop;
	else if (keel_auth_step_identify(req, ride.key,
	    ride.ran ? ride.vals : NULL, ride.n) != KEEL_STEP_GO ||
	    keel_auth_step_authorize(req) != KEEL_STEP_GO)
		goto out;
	if (query_step(req, r) != KEEL_STEP_GO)
		goto out;
	/* Its row says whether it takes part (router.h: no_idem, secret),
	 * never its limiter class: a logout, of the default class, replayed
	 * another session's 204 and left its own session working. */
	if (!r->no_idem && !r->secret &&
	    keel_idem_step(req) != KEEL_STEP_GO)
		goto out;
	er = handle(req, r);
	keel_idem_step_after(req, er);
	/* Their next reads, on any host, must see what they just wrote. */
	keel_auth_note_writes(req);
	server_timing(req);
out:
	/* Counts an auth attempt; RateLimit headers on whatever replied. */
	keel_limit_after(req);
drop:
	/* The lookup sent early, unread when no handler served from it. */
	keel_cache_prefetch_drop(req->cache);
	return er;
}

/* 404 and 405 cost budget too (API.md: every /api response). */
static void
unrouted(struct keel_req *req, int status, const char *allow)
{
	struct keel_limit_ride	 ride = { .lua = keel_auth_session_ride };

	/* The session's key costs a SHA-256 of the token: only for limits. */
	if (req->cfg->ratelimit)
		ride.key = keel_auth_session_key(req);
	/* Redis Cluster: no ride (a session and a client's limits are in
	 * two slots); an unrouted answer's limits key on the client. */
	if (keel_limit_check(req, KEEL_LIMIT_CLASS_DEFAULT,
	    keel_redis_is_cluster(req->redis) ? NULL : &ride) !=
	    KEEL_STEP_GO)
		return;
	if (status == 405) {
		keel_http_add_header(req, "Allow", allow);
		keel_http_reply_error(req, 405, "method_not_allowed",
		    keel_arena_printf(req->arena, "this method is not allowed "
		    "here; allowed: %s", allow));
	} else
		keel_http_reply_error(req, 404, "not_found", "no such route");
	keel_limit_after(req);
}

/*
 * A CORS preflight (Fetch §3.2.2: OPTIONS with Origin and
 * Access-Control-Request-Method) from a listed origin, on a path with
 * routes (allow, their methods): 204 with the methods, the headers a
 * script may set and how long the browser may keep the answer; http.c
 * adds Access-Control-Allow-Origin.  No session (a browser sends no
 * Authorization on a preflight) and no limiter: it reaches neither
 * Redis nor a handler, a browser sends one per Max-Age, not per
 * request, and counted it would halve the budget of every cross-origin
 * write.  False for anything else, which goes on as before: an unlisted
 * origin's preflight is the 405 of any OPTIONS, without CORS headers,
 * which the browser refuses.
 */
static bool
preflight(struct keel_req *req, const char *allow)
{
	if (strcmp(req->method, "OPTIONS") != 0 ||
	    keel_http_header(req, "Access-Control-Request-Method") == NULL ||
	    keel_cors_allow_origin(req->cfg->cors_origins,
	    keel_http_header(req, "Origin")) == NULL)
		return false;
	keel_http_add_header(req, "Access-Control-Allow-Methods", allow);
	keel_http_add_header(req, "Access-Control-Allow-Headers",
	    KEEL_CORS_ALLOW_HEADERS);
	keel_http_add_header(req, "Access-Control-Max-Age",
	    KEEL_CORS_MAX_AGE);
	keel_http_vary(req, KEEL_CORS_PREFLIGHT_VARY);
	keel_http_reply_empty(req, 204);
	return true;
}

enum keel_err
keel_pipeline_run(const struct keel_route *routes, size_t n,
    struct keel_req *req)
{
	const struct keel_route	*r;
	char			 allow[128];
	size_t			 np = 0;

	switch (keel_router_match(routes, n, req->method, req->path,
	    req->arena, req->params, &np, &r, allow, sizeof(allow))) {
	case KEEL_ROUTE_FOUND:
		req->route = r;
		req->nparams = np;
		return run(req, r);
	case KEEL_ROUTE_BAD_METHOD:
		/* No route takes OPTIONS: a preflight comes here. */
		if (!preflight(req, allow))
			unrouted(req, 405, allow);
		return KEEL_OK;
	case KEEL_ROUTE_NOT_FOUND:
		break;
	}
	unrouted(req, 404, NULL);
	return KEEL_OK;
}
