/* SPDX-License-Identifier: ISC */
/*
 * cors.h -- which browser origins may read keel's answers (CORS), and
 * what they are told (pure).
 *
 * KEEL_CORS_ORIGINS lists exact origins, as a browser writes its Origin
 * header (Fetch, "origin serialization"): scheme://host[:port], lower
 * case, no default port, no path.  A request whose Origin is one of them
 * gets it back in Access-Control-Allow-Origin on every answer (http.c);
 * a preflight gets the route's methods (pipeline.c).  Auth is a bearer
 * header a script sets itself, never a cookie the browser adds, so no
 * credentials mode is offered.
 */
#ifndef KEEL_CORS_H
#define KEEL_CORS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The request headers a script may set (a preflight's
 * Access-Control-Allow-Headers): those keel reads, the stream's
 * Last-Event-ID among them.  Accept-Encoding is the browser's own.
 */
#define KEEL_CORS_ALLOW_HEADERS \
	"Authorization, Content-Type, Idempotency-Key, X-No-Compression, " \
	"Last-Event-ID"
/*
 * The response headers a script may read beyond the safelisted ones
 * (Access-Control-Expose-Headers): every header keel adds that a client
 * acts on, a 201's Location among them (Fetch: not a CORS-safelisted
 * response-header name).
 */
#define KEEL_CORS_EXPOSE_HEADERS \
	"RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, " \
	"RateLimit-Policy, RateLimit, Retry-After, X-Request-Id, X-Cache, " \
	"Idempotent-Replayed, Allow, WWW-Authenticate, Server-Timing, " \
	"Location"
/* Seconds a browser may keep a preflight's answer (Chromium caps 7200). */
#define KEEL_CORS_MAX_AGE	"600"
/*
 * What a preflight's answer depends on besides Origin, which http.c's
 * Vary names on every answer (Fetch §3.2.5, "CORS protocol and HTTP
 * caches").
 */
#define KEEL_CORS_PREFLIGHT_VARY \
	"Access-Control-Request-Method, Access-Control-Request-Headers"

/*
 * Whether list is a KEEL_CORS_ORIGINS value: "" (no CORS), "*" alone, or
 * comma-separated origins http[s]://host[:port], host a lower-case name,
 * an IPv4 address or a bracketed IPv6 one, port 1..65535 but the
 * scheme's default.  Else false, with what is wrong (naming the item)
 * in why (size n).  list must not be NULL.
 */
bool		 keel_cors_origins_valid(const char *list, char *why,
		    size_t n);

/*
 * The Access-Control-Allow-Origin value for a request whose Origin header
 * is origin (NULL: none), under list (a valid KEEL_CORS_ORIGINS): "*"
 * when list is "*", origin itself when list holds it byte for byte, else
 * NULL (no CORS headers).  The result is origin or a static string.
 */
const char	*keel_cors_allow_origin(const char *list, const char *origin);

/*
 * Whether answers under list depend on the request's Origin, so every
 * one of them says Vary: Origin, those without CORS headers too: a list
 * of origins (not "" and not "*").
 */
bool		 keel_cors_varies(const char *list);

#endif /* KEEL_CORS_H */
