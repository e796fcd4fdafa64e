/* SPDX-License-Identifier: ISC */
/*
 * router.c -- method + path pattern matching.
 *
 * Route tables are small (a resource has a handful of routes), so matching
 * is a linear walk comparing segment by segment; no allocation happens
 * unless a route matches and has parameters.  The router only matches:
 * the steps a matched request goes through are pipeline.c's.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "keel/http.h"
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

static bool
int_segment(const char *s, size_t n)
{
	size_t	 i;

	/* 1..18 digits and no leading zero: fits int64, ids start at 1. */
	if (n == 0 || n > 18 || s[0] == '0')
		return false;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * Matches path against pattern; on success, when a != NULL, stores the
 * parameters.  True on a match.
 */
static bool
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
				return false;
			colon = memchr(ps, ':', plen);
			if (colon != NULL && strncmp(colon, ":int}", 5) == 0 &&
			    !int_segment(ss, slen))
				return false;
			if (a != NULL) {
				params[np].name = keel_arena_strndup(a, ps + 1,
				    (colon != NULL ? (size_t)(colon - ps) :
				    plen) - 1);
				params[np].value = keel_arena_strndup(a, ss,
				    slen);
			}
			np++;
		} else if (plen != slen || memcmp(ps, ss, plen) != 0)
			return false;
	}
	if (*pattern != '\0' || *path != '\0')
		return false;
	if (nparams != NULL)
		*nparams = np;
	return true;
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
	bool		 path_matched = false;

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
		path_matched = true;
		allow_add(allow, allowlen, routes[i].method);
		if (strcmp(routes[i].method, "GET") == 0)
			allow_add(allow, allowlen, "HEAD");
	}
	return path_matched ? KEEL_ROUTE_BAD_METHOD : KEEL_ROUTE_NOT_FOUND;
}
