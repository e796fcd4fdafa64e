/* SPDX-License-Identifier: ISC */
/*
 * sentinel.h -- Redis Sentinel: where the master is now.
 *
 * With REDIS_SENTINELS set, every (re)connection to Redis first asks the
 * sentinels, in turn, for the address of the master they know by
 * REDIS_SENTINEL_MASTER (SENTINEL get-master-addr-by-name), and the one
 * that answered is asked first next time.  The connection then checks
 * that the server it reached says it is a master (ROLE), so a stale
 * answer never leaves keel writing to a demoted one.  redis.c (the
 * workers' and cron's connection) and the stream app use it.
 */
#ifndef KEEL_SENTINEL_H
#define KEEL_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/err.h"

#define KEEL_SENTINEL_PORT	26379	/* an item without :port */
#define KEEL_SENTINEL_MAX	16	/* sentinels in the list */
#define KEEL_SENTINEL_HOST_MAX	256	/* bytes of a host, with its NUL */

struct keel_sentinel_addr {
	char	 host[KEEL_SENTINEL_HOST_MAX];	/* no brackets for IPv6 */
	int	 port;
};

/* The sentinels and the master's name; opaque. */
struct keel_sentinel;

/*
 * Parses list ("host:port,host:port"; "[::1]:26379" for IPv6; a missing
 * port is KEEL_SENTINEL_PORT) into out[0..max).  Returns the count, or
 * -1 when an item is malformed, a port out of range, or the list holds
 * more than max or none.  Pure.
 */
int	 keel_sentinel_parse(const char *list, struct keel_sentinel_addr *out,
	    size_t max);

/*
 * The sentinels of list (keel_sentinel_parse()'s format) watching the
 * master called name; password (NULL or "": none) is sent to each
 * sentinel with AUTH (their own requirepass, not the master's).  NULL
 * when list is empty or malformed (config.c checked it).
 */
struct keel_sentinel *keel_sentinel_new(const char *list, const char *name,
		    const char *password);
/* s may be NULL. */
void		 keel_sentinel_free(struct keel_sentinel *s);

/*
 * Asks the sentinels in turn, each within timeout_ms (connect and
 * answer), for the master's address: KEEL_OK with host (hostsz bytes)
 * and *port set, the sentinel that answered asked first from then on;
 * KEEL_EUNAVAIL when none could say (err says why, the last one's
 * answer).  Blocks: at most timeout_ms per sentinel.
 */
enum keel_err	 keel_sentinel_master(struct keel_sentinel *s, int timeout_ms,
		    char *host, size_t hostsz, int *port, char *err,
		    size_t errsz);

/*
 * The same protocol in steps, for a caller that asks the sentinels on
 * an event loop of its own (the stream app, with hiredis's async API):
 * the count of sentinels; the i-th to ask (0 <= i < count: the one that
 * answered last is the 0th), owned by s; the master's name and the
 * sentinels' password (NULL: none), owned by s; and
 * keel_sentinel_answered(), which makes the i-th (as keel_sentinel_nth
 * counts) the one asked first from now on, logging the change with the
 * address it gave (host, port).  s not NULL.
 */
size_t		 keel_sentinel_count(const struct keel_sentinel *s);
const struct keel_sentinel_addr *keel_sentinel_nth(
		    const struct keel_sentinel *s, size_t i);
const char	*keel_sentinel_name(const struct keel_sentinel *s);
const char	*keel_sentinel_password(const struct keel_sentinel *s);
void		 keel_sentinel_answered(struct keel_sentinel *s, size_t i,
		    const char *host, int port);

/*
 * The pure parts, for the tests and the stream app's asynchronous
 * connections: the answer to SENTINEL get-master-addr-by-name (an array
 * of two strings, host and port) read into host and *port, false for
 * anything else (nil: the sentinel doesn't know the name); and whether a
 * ROLE answer (an array whose first element is the role) says "master".
 * They take hiredis's redisReply (const void * here, so this header
 * doesn't need hiredis).
 */
bool	 keel_sentinel_master_reply(const void *reply, char *host,
	    size_t hostsz, int *port);
bool	 keel_sentinel_role_is_master(const void *reply);

/* The order sentinels are asked in: the index asked first (tests). */
size_t	 keel_sentinel_first(const struct keel_sentinel *s);

#endif /* KEEL_SENTINEL_H */
