/* SPDX-License-Identifier: ISC */
/* router.h -- route tables, and method + path pattern -> the route. */
#ifndef KEEL_ROUTER_H
#define KEEL_ROUTER_H

#include <stdbool.h>
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
 * The cache key of a cached GET (struct keel_route_cache), from the
 * matched route's params and query, into req's arena; NULL: don't cache
 * this one.  The pipeline asks it before it knows the caller, to send
 * the lookup early, and again when it serves: a key that depends on the
 * caller returns NULL while req->user is NULL (no early lookup then).
 */
typedef const char *keel_cache_key_fn(struct keel_req *);
/*
 * The cache namespace of one request of a cached GET whose answers fall
 * into several (one per leaderboard scope, so a change to one board
 * leaves the others' pages cached), into req's arena; NULL: don't cache
 * this one.  Asked when the key is, before the query is validated.
 */
typedef const char *keel_cache_ns_fn(struct keel_req *);

/*
 * The limiters a route counts against beyond the api limiter and the
 * read or write one its method picks (limit.c; API.md "Rate limits").
 * A class says nothing of idempotency: a route row's no_idem does.
 */
enum keel_limit_class {
	KEEL_LIMIT_CLASS_DEFAULT = 0,
	KEEL_LIMIT_CLASS_AUTH,		/* + auth: its failed answers (4xx)
					   count, keyed by address and the
					   account named in the body */
	KEEL_LIMIT_CLASS_AUTH_EVERY,	/* + auth, every answer counting: a
					   route that answers alike whatever
					   happened (a reset request) */
	KEEL_LIMIT_CLASS_NONE,		/* not limited: the operators' probes
					   (/health, /routes) */
};

/*
 * What a route takes in its query string.  A parameter a route doesn't
 * take, or one given twice, is 400 validation_failed naming it
 * (docs/openapi.yaml): a client's ?dryRun=1 or ?force=true must never
 * be ignored on its way to a real write.
 */
enum keel_route_query {
	KEEL_QUERY_NONE = 0,		/* none: the pipeline refuses every
					   parameter, before anything runs */
	KEEL_QUERY_HANDLER,		/* its own: the handler refuses what
					   it doesn't take (a list's filters
					   and paging, keel_res_filters; the
					   leaderboard's fields) through
					   keel_http_query_known */
	KEEL_QUERY_IGNORED,		/* reads what it takes and ignores
					   the rest: the operators' probes
					   (/health, /routes, /metrics), the
					   e2e test apps' knobs (?ms=) */
};

/*
 * A GET whose 200 answers are cached (cache.h, keel_cache_serve): the
 * handler fills what is stored; the pipeline sends the lookup before
 * the Redis round trip of limits and session, so the two overlap.
 */
struct keel_route_cache {
	const char		*ns;	/* namespace; NULL: not cached */
	int			 ttl;	/* seconds an answer stays fresh */
	keel_cache_key_fn	*key;	/* NULL: the path and the query */
	bool			 per_user; /* the namespace is the caller's
					   own, "<ns>:user:<id>"
					   (keel_cache_user_ns), so a
					   change to their data
					   invalidates theirs only */
	keel_cache_ns_fn	*ns_of;	/* NULL: ns for every request */
};

/*
 * One row of an app's route table, written with designated initializers.
 * Patterns are literal segments and typed parameters: "/api/cars/{id:int}"
 * (int: 1..18 digits, > 0) or "{name:str}" (any non-empty segment,
 * decoded).  A segment that fails its type does not match, so
 * /api/cars/abc is a 404.
 */
struct keel_route {
	const char		*method;	/* "GET", "POST", ... */
	const char		*pattern;
	keel_handler_fn		*handler;
	unsigned		 access;	/* KEEL_ROLE_* bits, or
						   KEEL_ACCESS_ANYONE */
	enum keel_limit_class	 limit;
	struct keel_route_cache	 cache;
	enum keel_route_query	 query;		/* NONE unless it reads one */
	bool			 secret;	/* its answer holds a secret
						   (a stream ticket): no
						   Idempotency-Key keeps it
						   (implies no_idem) */
	bool			 no_idem;	/* an Idempotency-Key is
						   ignored: the route runs
						   every time.  Every auth
						   route: bodies and answers
						   hold passwords and tokens,
						   and a logout must end the
						   session it names, not
						   replay another's 204 */
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
 * ignored.  HEAD matches GET routes.  Matching is all the router does:
 * what follows a match is pipeline.c's.
 */
enum keel_route_match keel_router_match(const struct keel_route *routes,
		    size_t n, const char *method, const char *path,
		    struct keel_arena *a, struct keel_param *params,
		    size_t *nparams, const struct keel_route **found,
		    char *allow, size_t allowlen);

#endif /* KEEL_ROUTER_H */
