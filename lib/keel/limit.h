/* SPDX-License-Identifier: ISC */
/* limit.h -- Redis sliding-window rate limits and RateLimit headers. */
#ifndef KEEL_LIMIT_H
#define KEEL_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"

struct keel_req;

/* The limiters of API.md, "Rate limits"; the index of each table. */
enum keel_limiter {
	KEEL_LIMIT_API,		/* every /api route, per client */
	KEEL_LIMIT_AUTH,	/* login, password reset: failures only */
	KEEL_LIMIT_WRITE,	/* POST, PUT, PATCH, DELETE */
	KEEL_LIMIT_READ,	/* GET, HEAD */
	KEEL_LIMIT__MAX
};

/* "api", "auth", "write", "read". */
const char	*keel_limit_name(enum keel_limiter);

/*
 * The router's steps (DESIGN.md, "One request's life", step 3).
 *
 * keel_limit_step() runs every limiter that applies to req in one Redis
 * round trip (EVALSHA; time from Redis's clock).  The same script also
 * reads the caller's session when req carries a bearer token and
 * req->user is still NULL, so auth's "who is calling" needs no round
 * trip of its own (keel_limit_session()).  Limits key on the user when
 * there is one, else on the client address.  Returns 0 to go on, or -1
 * after replying 429 rate_limited (Retry-After, retryAfter) or 503 (Redis
 * down and a limiter that applies fails closed).  Paths outside /api
 * (/health, /routes) are exempt and cost nothing.
 *
 * keel_limit_step_after() must follow once the request went on, whatever
 * replied: it counts a failed attempt for the auth limiter and adds the
 * RateLimit headers to the reply.
 */
int		 keel_limit_step(struct keel_req *req);
void		 keel_limit_step_after(struct keel_req *req);

/* The session the limiter's script read for req's bearer token. */
struct keel_limit_session {
	int64_t		 uid;
	const char	*role;		/* as stored: "admin", "staff", ... */
	int64_t		 exp;		/* unix seconds */
	int64_t		 ryw_ms;	/* the user's read-your-writes window
					   left, ms; 0 when none */
	const char	*id;		/* 64 hex: SHA-256 of the token */
};

/*
 * KEEL_OK with *out filled (strings from req's arena); KEEL_ENOENT when
 * the token names no live session; KEEL_EUNAVAIL when the script did not
 * read it (no token, limits off, path exempt, Redis down): look it up
 * yourself then.
 */
enum keel_err	 keel_limit_session(const struct keel_req *req,
		    struct keel_limit_session *out);

/*
 * Who req's client is, as the limiter keys it: "u:<id>" for a user,
 * else "a:<address>" (see keel_limit_client_addr()).  From req's arena.
 */
const char	*keel_limit_client(struct keel_req *req);

/* Failed-open checks since this process started (no metrics module yet:
 * each is also logged). */
unsigned long	 keel_limit_failed_open(void);

/* ------------------------------------------------------ pure helpers */

/*
 * Parses a limiter spec "N/S" (N requests per S seconds; N 1..1000000000,
 * S 1..86400) or "off".  Returns 0 with *limit (0 for off) and *window
 * set, else -1.
 */
int		 keel_limit_parse_rate(const char *s, int *limit, int *window);

/*
 * The client address for keys.  remote is the peer lighttpd saw; xff the
 * X-Forwarded-For header (may be NULL), believed only when remote is one
 * of trusted (comma-separated addresses or CIDR blocks, IPv4 or IPv6):
 * then the rightmost entry that is not a trusted proxy is the client.
 * IPv6 addresses are cut to their first v6_prefix bits ("2001:db8::/56");
 * IPv4-mapped IPv6 counts as IPv4.  Writes the result to out (size n) and
 * returns 0, or -1 when it does not fit.
 */
int		 keel_limit_client_addr(const char *remote, const char *xff,
		    const char *trusted, int v6_prefix, char *out, size_t n);

/* 0 when s is a valid TRUSTED_PROXIES list ("" included), else -1. */
int		 keel_limit_proxies_valid(const char *s);
/* 0 when s is a comma list of limiter names ("" included), else -1. */
int		 keel_limit_names_valid(const char *s);

/* One limiter's outcome, for the header fields. */
struct keel_limit_result {
	enum keel_limiter which;
	int		 limit;		/* requests per window */
	int		 window;	/* seconds */
	long long	 remaining;	/* requests left, >= 0 */
	long long	 reset_ms;	/* until the next request frees up */
};

/*
 * Formats the header values for res[0..n) (n >= 1): the classic trio
 * describes the most restrictive limiter (least remaining, then the
 * longest wait); policy and fields are the IETF draft's structured lists
 * (draft-ietf-httpapi-ratelimit-headers: RateLimit-Policy
 * "name";q=N;w=S, RateLimit "name";r=N;t=S), one item per limiter.
 * Seconds are rounded up.  Each output has its size.
 */
struct keel_limit_headers {
	char	 limit[24];
	char	 remaining[24];
	char	 reset[24];
	char	 policy[256];
	char	 fields[256];
};
void		 keel_limit_format(const struct keel_limit_result *res,
		    size_t n, struct keel_limit_headers *h);

#endif /* KEEL_LIMIT_H */
