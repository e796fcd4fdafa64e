/* SPDX-License-Identifier: ISC */
/* router.h -- method + path pattern -> handler; 404 and 405 as JSON. */
#ifndef KEEL_ROUTER_H
#define KEEL_ROUTER_H

#include <stddef.h>

#include "keel/err.h"
#include "keel/http.h"

/*
 * A handler validates, then looks up or replies with the error and
 * returns.  A reply of any status is KEEL_OK; returning an error without
 * having replied makes lib answer 500 or 503 (keel_http_reply_err).
 */
typedef enum keel_err keel_handler_fn(struct keel_req *);

/*
 * For a handler that answers through keel_cache_serve(): the cache key it
 * will look up (and its namespace in *ns), from the matched route's
 * params and query alone, or NULL for none.  Declared with
 * keel_router_prefetch(), the router sends that lookup to memcached
 * before the Redis round trip of limits and auth, so the two round trips
 * overlap (keel_cache_prefetch), and drops it if the request ends before
 * the handler (401, 403, 429, 503).
 */
typedef const char *keel_cache_key_fn(struct keel_req *, const char **ns);
/* Before keel_serve(): handler's lookups are sent early (above).  Up to
 * KEEL_ROUTER_PREFETCH_MAX handlers per process. */
#define KEEL_ROUTER_PREFETCH_MAX	16
void	keel_router_prefetch(keel_handler_fn *handler, keel_cache_key_fn *key);

/*
 * One row of an app's route table.  Patterns are literal segments and
 * typed parameters: "/api/cars/{id:int}" (int: 1..18 digits, > 0) or
 * "{name:str}" (any non-empty segment, decoded).  A segment that fails
 * its type does not match, so /api/cars/abc is a 404.
 */
struct keel_route {
	const char	*method;	/* "GET", "POST", "PATCH", "DELETE", ... */
	const char	*pattern;
	keel_handler_fn	*handler;
	unsigned	 access;	/* roles allowed: KEEL_ROLE_* bits, or
					   KEEL_ACCESS_ANYONE (no session) */
};

/* Roles (API.md "Auth"): one bit each, so a route lists who may call it. */
#define KEEL_ROLE_ADMIN		0x01u
#define KEEL_ROLE_STAFF		0x02u
#define KEEL_ROLE_CUSTOMER	0x04u
#define KEEL_ROLE_STUDENT	0x08u
#define KEEL_ACCESS_ANYONE	0u	/* public: no session needed */
#define KEEL_ACCESS_USER	(KEEL_ROLE_ADMIN | KEEL_ROLE_STAFF | \
				 KEEL_ROLE_CUSTOMER | KEEL_ROLE_STUDENT)
#define KEEL_ACCESS_STAFF	(KEEL_ROLE_ADMIN | KEEL_ROLE_STAFF)

enum keel_route_match {
	KEEL_ROUTE_FOUND,
	KEEL_ROUTE_NOT_FOUND,
	KEEL_ROUTE_BAD_METHOD,	/* the path matched, with other methods */
};

/*
 * Matches method and path against routes[0..n).  On FOUND, *found is the
 * route and params[0..*nparams) its parameters (strings from a).  On
 * BAD_METHOD, allow (size allowlen) lists the methods that would match,
 * "GET, HEAD, POST" style (HEAD where GET is).  A trailing slash is
 * ignored.  HEAD matches GET routes.
 */
enum keel_route_match keel_router_match(const struct keel_route *routes,
		    size_t n, const char *method, const char *path,
		    struct keel_arena *a, struct keel_param *params,
		    size_t *nparams, const struct keel_route **found,
		    char *allow, size_t allowlen);

/*
 * Routes req through routes[0..n): sets req->route and req->params and
 * calls the handler, or replies 404/405 (with Allow) as JSON.  Returns the
 * handler's result, or KEEL_OK after a 404/405.
 */
enum keel_err	 keel_router_dispatch(const struct keel_route *routes,
		    size_t n, struct keel_req *req);

#endif /* KEEL_ROUTER_H */
