/* SPDX-License-Identifier: ISC */
/*
 * router.c -- method + path pattern matching.
 *
 * Route tables are small (a resource has a handful of routes), so matching
 * is a linear walk comparing segment by segment; no allocation happens
 * unless a route matches and has parameters.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "keel/auth.h"
#include "keel/cache.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/idem.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/router.h"

/* Next segment of *p (after its leading '/'); its length in *len. */
static const char *
next_segment(const char **p, size_t *len)
{
	const char	*s = *p, *e;

	if (*s == '/')
		s++;
	e = strchr(s, '/');
	if (e == NULL)
		e = s + strlen(s);
	*len = (size_t)(e - s);
	*p = e;
	return s;
}

static int
int_segment(const char *s, size_t n)
{
	size_t	 i;

	/* 1..18 digits and no leading zero: fits int64, ids start at 1. */
	if (n == 0 || n > 18 || s[0] == '0')
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/*
 * Matches path against pattern; on success, when a != NULL, stores the
 * parameters.  Returns 1 on a match.
 */
static int
match_path(const char *pattern, const char *path, struct keel_arena *a,
    struct keel_param *params, size_t *nparams)
{
	const char	*ps, *ss, *colon;
	size_t		 plen, slen, np = 0;

	for (;;) {
		if (*pattern == '\0') {
			/* A trailing slash of the path is ignored. */
			if (path[0] == '/' && path[1] == '\0')
				path++;
			break;
		}
		if (*path == '\0')
			break;
		ps = next_segment(&pattern, &plen);
		ss = next_segment(&path, &slen);
		if (plen > 2 && ps[0] == '{' && ps[plen - 1] == '}') {
			if (slen == 0 || np == KEEL_HTTP_MAXPARAMS)
				return 0;
			colon = memchr(ps, ':', plen);
			if (colon != NULL && strncmp(colon, ":int}", 5) == 0 &&
			    !int_segment(ss, slen))
				return 0;
			if (a != NULL) {
				params[np].name = keel_arena_strndup(a, ps + 1,
				    (colon != NULL ? (size_t)(colon - ps) :
				    plen) - 1);
				params[np].value = keel_arena_strndup(a, ss,
				    slen);
			}
			np++;
		} else if (plen != slen || memcmp(ps, ss, plen) != 0)
			return 0;
	}
	if (*pattern != '\0' || *path != '\0')
		return 0;
	if (nparams != NULL)
		*nparams = np;
	return 1;
}

static void
allow_add(char *allow, size_t n, const char *method)
{
	size_t	 len = strlen(method), used;
	char	*p;

	/* No duplicates: "GET" must not match inside "GET, HEAD" twice. */
	for (p = allow; (p = strstr(p, method)) != NULL; p += len)
		if ((p == allow || p[-1] == ' ') &&
		    (p[len] == ',' || p[len] == '\0'))
			return;
	used = strlen(allow);
	snprintf(allow + used, n - used, "%s%s", used > 0 ? ", " : "", method);
}

enum keel_route_match
keel_router_match(const struct keel_route *routes, size_t n,
    const char *method, const char *path, struct keel_arena *a,
    struct keel_param *params, size_t *nparams,
    const struct keel_route **found, char *allow, size_t allowlen)
{
	const char	*m;
	size_t		 i;
	int		 path_matched = 0;

	*found = NULL;
	if (allowlen > 0)
		allow[0] = '\0';
	/* HEAD is GET without the body (RFC 9110 §9.3.2). */
	m = strcmp(method, "HEAD") == 0 ? "GET" : method;
	for (i = 0; i < n; i++) {
		if (!match_path(routes[i].pattern, path, NULL, NULL, NULL))
			continue;
		if (strcmp(routes[i].method, m) == 0) {
			match_path(routes[i].pattern, path, a, params, nparams);
			*found = &routes[i];
			return KEEL_ROUTE_FOUND;
		}
		path_matched = 1;
		allow_add(allow, allowlen, routes[i].method);
		if (strcmp(routes[i].method, "GET") == 0)
			allow_add(allow, allowlen, "HEAD");
	}
	return path_matched ? KEEL_ROUTE_BAD_METHOD : KEEL_ROUTE_NOT_FOUND;
}

/* v in decimal, written backwards from end; returns the first byte. */
static char *
put_digits(char *end, unsigned long long v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	return end;
}

/*
 * Server-Timing: db;dur=<ms, 2 decimals>;desc="<n> queries", formatted
 * by hand: printf's floating point was a visible share of a cached GET.
 */
static void
server_timing(struct keel_req *req, double ms, unsigned nq)
{
	char			 v[96], *p = v + sizeof(v);
	unsigned long long	 c;

	/* Clamped: a cast past the range of the type is undefined. */
	c = ms > 0 ? (unsigned long long)((ms < 1e12 ? ms : 1e12) * 100 +
	    0.5) : 0;
	*--p = '\0';
	p -= sizeof(" queries\"") - 1;
	memcpy(p, " queries\"", sizeof(" queries\"") - 1);
	p = put_digits(p, nq);
	p -= sizeof(";desc=\"") - 1;
	memcpy(p, ";desc=\"", sizeof(";desc=\"") - 1);
	p = put_digits(p, c % 100);
	if (c % 100 < 10)
		*--p = '0';
	*--p = '.';
	p = put_digits(p, c / 100);
	p -= sizeof("db;dur=") - 1;
	memcpy(p, "db;dur=", sizeof("db;dur=") - 1);
	keel_http_add_header(req, "Server-Timing", p);
}

/* Handlers whose cache lookup is sent before limits and auth. */
static struct {
	keel_handler_fn		*handler;
	keel_cache_key_fn	*key;
} prefetch[KEEL_ROUTER_PREFETCH_MAX];
static size_t	 nprefetch;

void
keel_router_prefetch(keel_handler_fn *handler, keel_cache_key_fn *key)
{
	if (nprefetch == KEEL_ROUTER_PREFETCH_MAX)
		keel_log_fatalx("router: more than %d prefetching handlers",
		    KEEL_ROUTER_PREFETCH_MAX);
	prefetch[nprefetch].handler = handler;
	prefetch[nprefetch].key = key;
	nprefetch++;
}

/*
 * A cached GET's two round trips, Redis (limits, session) and memcached
 * (the lookup), are independent once the key is known: send the lookup
 * first, so its answer is waiting when the handler asks for it.
 */
static void
prefetch_send(struct keel_req *req, const struct keel_route *r)
{
	const char	*ns = NULL, *key;
	size_t		 i;

	for (i = 0; i < nprefetch; i++)
		if (prefetch[i].handler == r->handler) {
			if ((key = prefetch[i].key(req, &ns)) != NULL &&
			    ns != NULL)
				keel_cache_prefetch(req->cache, ns, key);
			return;
		}
}

/*
 * The steps between a match and the handler, in DESIGN.md's order ("One
 * request's life").  Each step either lets the request through or
 * replies (401, 403, 429, a replayed answer) and ends it here.
 */
static enum keel_err
router_run(struct keel_req *req, const struct keel_route *r)
{
	enum keel_err	 er;
	unsigned	 nq;
	double		 ms;

	/* Replica pinning and write tracking are per request. */
	keel_db_request_reset(req->db);
	prefetch_send(req, r);
	/*
	 * Rate limits (limit.c): one Redis round trip that also reads the
	 * bearer token's session, which identify then takes from it, so
	 * limits key on the user and 401s are limited too.  429 ends here.
	 */
	er = KEEL_OK;
	if (keel_limit_step(req) == -1)
		goto drop;
	/* Who is calling: the bearer token's session (auth.c). */
	if (keel_auth_step_identify(req) == -1)
		goto out;
	/* May they: 401 without a session, 403 for a role not listed. */
	if (keel_auth_step_authorize(req) == -1)
		goto out;
	/* POST with Idempotency-Key: a retry gets the first answer. */
	if (keel_idem_step(req) == -1)
		goto out;
	er = r->handler(req);
	keel_idem_step_after(req, er);
	/* Their next reads, on any host, must see what they just wrote. */
	keel_auth_note_writes(req);
	/* W3C Server-Timing: database cost, so N+1 queries show. */
	keel_db_stats(req->db, &nq, &ms);
	server_timing(req, ms, nq);
out:
	/* Counts a failed login; RateLimit headers on whatever replied. */
	keel_limit_step_after(req);
drop:
	/* The lookup sent early, unread when no handler served from it. */
	keel_cache_prefetch_drop(req->cache);
	return er;
}

enum keel_err
keel_router_dispatch(const struct keel_route *routes, size_t n,
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
		return router_run(req, r);
	case KEEL_ROUTE_BAD_METHOD:
		/* Probing costs budget too (API.md: every /api response). */
		if (keel_limit_step(req) == -1)
			return KEEL_OK;
		keel_http_add_header(req, "Allow", allow);
		keel_http_reply_error(req, 405, "method_not_allowed",
		    keel_arena_printf(req->arena, "this method is not allowed "
		    "here; allowed: %s", allow), NULL);
		keel_limit_step_after(req);
		return KEEL_OK;
	case KEEL_ROUTE_NOT_FOUND:
		break;
	}
	if (keel_limit_step(req) == -1)
		return KEEL_OK;
	keel_http_reply_error(req, 404, "not_found", "no such route", NULL);
	keel_limit_step_after(req);
	return KEEL_OK;
}
