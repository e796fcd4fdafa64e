/* SPDX-License-Identifier: ISC */
/* limit.h -- Redis sliding-window rate limits and RateLimit headers. */
#ifndef KEEL_LIMIT_H
#define KEEL_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/router.h"

/*
 * A read that rides on the limiter's round trip, so that "who is
 * calling" costs no round trip of its own (DESIGN.md: steps 3 and 4 may
 * share one).  lua is a Lua fragment, the same for the life of the
 * process, that defines
 *
 *	local function ride(key) ... end
 *
 * returning false, or values the first of which is the id the limits
 * key on ("u:<id>" keys instead of the address).  The module that owns
 * key's format writes the fragment (auth's session read); the limiter
 * neither knows nor parses what it reads.
 */
#define KEEL_LIMIT_RIDE_MAX	8
struct keel_limit_ride {
	const char	*lua;		/* the fragment defining ride() */
	const char	*key;		/* what it reads; NULL: nothing */
	bool		 ran;		/* out: the script ran and read key */
	size_t		 n;		/* out: values ride() returned */
	const char	*vals[KEEL_LIMIT_RIDE_MAX]; /* out: as text, from
					   req's arena; n == 0 for false */
};

/*
 * A step (DESIGN.md, "One request's life", 3): every limiter that
 * applies to req -- api; read or write by method; auth for a route of
 * class KEEL_LIMIT_CLASS_AUTH(_EVERY) -- in one Redis round trip
 * (EVALSHA on Redis's clock), with ride's read in the same script
 * (ride may be NULL).  Limits key on ride's id when it found one, else
 * on the client's address (auth's: the address and the account named).
 * An admitted request holds its place in every window at once, so no
 * number of concurrent requests gets past a limit; keel_limit_after()
 * gives an auth place back when the attempt doesn't count.  KEEL_STEP_REPLIED after a 429 rate_limited
 * (Retry-After, retryAfter) or a 503 (Redis down and an applicable
 * limiter fails closed, KEEL_RATELIMIT_FAIL_CLOSED).  Paths outside /api
 * (/health, /routes) are exempt and cost nothing.
 */
enum keel_step	 keel_limit_check(struct keel_req *req,
		    enum keel_limit_class cls, struct keel_limit_ride *ride);

/*
 * For a route of an auth class, once the handler knows what the attempt
 * names: takes a place in two buckets, atomically (on a Redis Cluster
 * one after the other, the first given back when the second refuses).
 * This client address's bucket of spelling (KEEL_RATELIMIT_AUTH): the
 * login string as the account lookup folds it, the same whether or not
 * an account answers to it, so a refusal never says whether one does;
 * an account thus has one such bucket per address for its email and
 * one for its username, and every case spelling of either shares it.
 * And every address's bucket of account together
 * (KEEL_RATELIMIT_AUTH_ACCOUNT, much higher: it bounds a guesser with
 * many addresses, and since anyone can spend it, it must not be a
 * lockout five requests buy); its count stays out of the RateLimit
 * headers until it is spent.  spelling and account are opaque,
 * key-safe names, neither NULL, copied ("login:<hash>" of a folded
 * login; "42" for user 42; for no user, the spelling's name again).  A
 * step: 429 when either is spent, 503 when Redis can't be reached and
 * the auth limiter fails closed; the caller answers nothing else then.
 * On a route of another class that checks a password (a password
 * change's currentPassword, whose spelling is the user's id) the
 * attempt is a login's: its 4xx answers kept by keel_limit_after(),
 * and the auth limiter's failure policy.  Nothing happens when limits
 * are off, the auth limiter is off, or on an auth route whose check
 * failed open.
 */
enum keel_step	 keel_limit_account(struct keel_req *req, const char *spelling,
		    const char *account);
/*
 * keel_limit_account() for a login: folded is the login string as the
 * account lookup folded it (not NULL, copied), named in the keys by
 * "login:" and its keel_limit_login_hash() under KEEL_SECRET; user the
 * account's id ("42"), or NULL when none answers (the spelling's name
 * then counts as the account).  While KEEL_SECRET_FALLBACK is set each
 * bucket so named has a twin under the fallback's hash, checked and
 * counted with it (in the same call on a single Redis; in a cluster,
 * each in its slot's turn), so a rotation of the secret, or a fleet half
 * rolled, gives no login a fresh window; the headers show the two as
 * one, by the less left.
 */
enum keel_step	 keel_limit_login(struct keel_req *req, const char *folded,
		    const char *user);

/*
 * After whatever answered a request that went past keel_limit_check():
 * an auth attempt keeps its places (a failure; every answer of class
 * AUTH_EVERY) or gives them back (a success), and the RateLimit headers
 * go on the reply.
 */
void		 keel_limit_after(struct keel_req *req);

/* Checks that failed open since this process started (each is logged). */
unsigned long	 keel_limit_failed_open(void);

/* ------------------------------------------------------ pure helpers */

/* One limiter's outcome, for the header fields. */
struct keel_limit_result {
	enum keel_limiter which;
	int		 limit;		/* requests per window */
	int		 window;	/* seconds */
	long long	 remaining;	/* requests left, >= 0 */
	long long	 reset_ms;	/* until the next request frees up */
	const char	*name;		/* the headers' name; NULL: which's */
};

/*
 * Formats the header values for res[0..n) (n >= 1): the classic trio
 * describes the most restrictive limiter (least remaining, then the
 * longest wait); policy and fields are the IETF draft's structured lists
 * (draft-ietf-httpapi-ratelimit-headers: RateLimit-Policy
 * "name";q=N;w=S, RateLimit "name";r=N;t=S), one item per limiter,
 * by its name (a bucket of a limiter's own, such as a login's, by the
 * name it is given, so no two items share one).
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
/* h's fields by their header names, each as add(arg, name, value). */
void		 keel_limit_headers_each(const struct keel_limit_headers *h,
		    void (*add)(void *, const char *, const char *),
		    void *arg);

/*
 * The name a typed login or reset address s[0..n) (folded by the
 * caller) goes by in the auth limiter's keys, into out: BLAKE2b-128 in
 * hex, keyed with a key derived from secret (KEEL_SECRET), so that
 * what Redis and its AOF keep for 15 minutes neither tells who tried to
 * log in (by hashing the users table) nor lets a password typed into
 * the login field be searched for offline.  The key is derived once
 * per process (again when secret changes).  secret and s not NULL.
 */
#define KEEL_LIMIT_LOGIN_HEX	32	/* hex digits of such a name */
void		 keel_limit_login_hash(const char *secret, const char *s,
		    size_t n, char out[KEEL_LIMIT_LOGIN_HEX + 1]);

/*
 * A check for a caller with a Redis client of its own (the stream
 * process, on hiredis's async API): the limiters of a GET (api, read)
 * by user uid, keyed as keel_limit_check() keys a signed-in user's, so
 * the two count in the same windows.  keel_limit_call_init() fills c:
 * c->n limiters (0: none applies, nothing to run) and the arguments of
 * an EVAL of keel_limit_call_lua() after the script (or its sha):
 * c->argv[0..c->argc), numkeys first, pointing into c.  member names
 * the request in the windows (unique per request).
 * keel_limit_call_client() fills c for an answer that names no user
 * (the stream's 401, its 405): by client, "a:<address>" as
 * keel_http_client() names an anonymous caller (the address as
 * keel_addr_client() gives it), with the limiters of its method (read:
 * GET or HEAD, api and read; otherwise api and write), in the windows
 * keel_limit_check() keeps for that client.
 *
 * keel_limit_call_reply() reads the script's answer, given as its
 * integers (vals[0..nvals)), into res[0..n) (c->res, or a copy):
 * false when it is not one; *admitted when every limiter let the
 * request in.  keel_limit_call_down() is the answer when the script
 * could not run: true when one of the limiters fails closed
 * (KEEL_RATELIMIT_FAIL_CLOSED).  Both count the decisions in the
 * metrics as keel_limit_check() does.
 */
#define KEEL_LIMIT_CALL_MAX	2
struct keel_limit_call {
	size_t			 n;
	struct keel_limit_result res[KEEL_LIMIT_CALL_MAX];
	int			 argc;
	const char		*argv[5 + 5 * KEEL_LIMIT_CALL_MAX];
	char			 keys[KEEL_LIMIT_CALL_MAX][96];
	char			 nums[1 + 3 * KEEL_LIMIT_CALL_MAX][24];
};
void		 keel_limit_call_init(struct keel_limit_call *c,
		    const struct keel_config *cfg, int64_t uid,
		    const char *member, bool cluster);
void		 keel_limit_call_client(struct keel_limit_call *c,
		    const struct keel_config *cfg, const char *client,
		    bool read, const char *member, bool cluster);
const char	*keel_limit_call_lua(void);
bool		 keel_limit_call_reply(struct keel_limit_result *res,
		    size_t n, const long long *vals, size_t nvals,
		    bool *admitted);
bool		 keel_limit_call_down(const struct keel_config *cfg,
		    const struct keel_limit_result *res, size_t n);

#endif /* KEEL_LIMIT_H */
