/* SPDX-License-Identifier: ISC */
/* cache.h -- memcached read-through cache with namespaces (DESIGN.md). */
#ifndef KEEL_CACHE_H
#define KEEL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"
#include "keel/mem.h"

struct keel_config;
struct keel_req;
struct keel_cache;		/* opaque: owns the memcached handle */

/* TTLs per use (issue 4), in seconds. */
#define KEEL_CACHE_TTL_CARS		300
#define KEEL_CACHE_TTL_QUESTIONS	300
#define KEEL_CACHE_TTL_LEADERBOARD	300
#define KEEL_CACHE_TTL_NOTIFICATIONS	30

/* Longest namespace name; the key itself is hashed and may be anything. */
#define KEEL_CACHE_NS_MAX		100

/* MEMCACHED_SERVERS, spread by consistent hashing.  Never NULL. */
struct keel_cache *keel_cache_open(const struct keel_config *);
/* c may be NULL. */
void		 keel_cache_close(struct keel_cache *c);
/* One round trip to every server within timeout_ms; KEEL_EUNAVAIL if any
 * is unreachable. */
enum keel_err	 keel_cache_ping(struct keel_cache *c, int timeout_ms);
/* The servers' get hits and misses summed (memcached's own stats), into
 * the caller's *hits and *misses; KEEL_EUNAVAIL if a server can't say. */
enum keel_err	 keel_cache_stats(struct keel_cache *c, uint64_t *hits,
		    uint64_t *misses);

/*
 * What a lookup found.  FRESH: stored under the namespace's current
 * generation and within its TTL.  STALE: current generation but past its
 * TTL (no write has touched it: safe to serve while one worker refreshes).
 * MISS: absent, or computed under an older generation (a write happened:
 * never served).
 */
enum keel_cache_found {
	KEEL_CACHE_FRESH,
	KEEL_CACHE_STALE,
	KEEL_CACHE_MISS,
};

/*
 * A cached answer in its two forms, one memcached item: the body as the
 * handler wrote it, then its gzip coding (gzip.h; none when the body is
 * under KEEL_GZIP_MIN or doesn't shrink), so a hit is still one get and
 * a write invalidates both at once.  The caller owns bytes (reset it
 * with keel_buf_free).
 */
struct keel_cache_entry {
	struct keel_buf	 bytes;		/* identity form, then gzip's */
	size_t		 identity_len;	/* bytes of the identity form */
};

/*
 * One lookup: a single multi-get of key's entry and ns's generation (one
 * round trip).  A missing generation (never set, or evicted) is re-created
 * with a random value, so entries stored under an evicted generation can
 * never match again.  On KEEL_OK *found says what was found, e (reset
 * first) holds the entry for FRESH and STALE, and *gen is the generation
 * to store a recomputed value under.  KEEL_EUNAVAIL when memcached can't
 * be reached: go to the database.  ns must be at most KEEL_CACHE_NS_MAX
 * bytes of [A-Za-z0-9:_.-] (it names code's namespaces, e.g.
 * "notifications:user:42"); key may be any text (it is hashed).
 */
enum keel_err	 keel_cache_get(struct keel_cache *c, const char *ns,
		    const char *key, struct keel_cache_entry *e,
		    enum keel_cache_found *found, uint64_t *gen);

/*
 * Stores e (the caller keeps it) as key's entry in ns, computed under
 * generation gen (from keel_cache_get), fresh for ttl seconds.  The entry
 * itself lives a little longer so it can be served stale during a
 * refresh.
 */
enum keel_err	 keel_cache_set(struct keel_cache *c, const char *ns,
		    const char *key, uint64_t gen, int ttl,
		    const struct keel_cache_entry *e);

/*
 * Invalidates every entry of ns with one increment of its generation.
 * Call after the write commits.  A missing generation is created with a
 * random value instead.
 */
enum keel_err	 keel_cache_invalidate(struct keel_cache *c, const char *ns);

/*
 * Single-flight: takes the recompute lock of key in ns (an add with a
 * short expiry).  KEEL_OK when this caller should recompute,
 * KEEL_ECONFLICT when another worker holds it.  keel_cache_unlock()
 * releases it early.
 */
enum keel_err	 keel_cache_lock(struct keel_cache *c, const char *ns,
		    const char *key);
void		 keel_cache_unlock(struct keel_cache *c, const char *ns,
		    const char *key);

/*
 * A namespace of one user's entries, "<ns>:user:<uid>", into buf (size
 * n): a route cached per user (keel_route_cache's per_user) and every
 * write that changes that user's data name it, so the write invalidates
 * that user's entries only.  Returns the length, or 0 when it doesn't
 * fit in n or in KEEL_CACHE_NS_MAX.  Pure: unit-tested.
 */
size_t		 keel_cache_user_ns(char *buf, size_t n, const char *ns,
		    int64_t uid);

/*
 * The memcached key of kind ('g' generation, 'v' entry, 'l' lock) for ns
 * and key (ignored for 'g') into buf (size n >= KEEL_CACHE_KEY_MAX):
 * "keel:<kind>:<ns>[:<32 hex digits of BLAKE2b(key)>]".  Returns the
 * length, or 0 when ns is not a valid namespace.  Pure: unit-tested.
 */
#define KEEL_CACHE_KEY_MAX	(8 + KEEL_CACHE_NS_MAX + 1 + 32 + 1)
size_t		 keel_cache_key(char *buf, size_t n, char kind,
		    const char *ns, const char *key);

/*
 * Fills the reply of req: called by keel_cache_serve() on a miss, it
 * replies as a handler does (any status; only a 200 is cached) and
 * returns a handler's result.  arg is keel_cache_serve()'s.
 */
typedef enum keel_err keel_cache_fill_fn(struct keel_req *req, void *arg);

/*
 * The one call a cached GET needs: serves req's reply for key in ns from
 * the cache, or runs fill to make it and caches a 200 reply for ttl
 * seconds.  Sets X-Cache: HIT, MISS or BYPASS (memcached unreachable:
 * fill runs and nothing is stored).  On a miss one worker fills while
 * the others serve the stale copy if there is one, else wait up to about
 * 100 ms for the filler and then fill themselves.  Returns fill's result
 * (KEEL_OK on a hit).  The cached body is the whole reply body; the
 * content type is JSON's.  A cached or stored answer goes out with
 * Vary: Accept-Encoding, gzip-coded (Content-Encoding: gzip) when the
 * request wants it (keel_gzip_wanted) and the entry has that form: the
 * filler codes it once, when it stores the body.
 */
enum keel_err	 keel_cache_serve(struct keel_req *req, const char *ns,
		    const char *key, int ttl, keel_cache_fill_fn *fill,
		    void *arg);

/*
 * Sends the lookup of key in ns now (the multi-get's one write) without
 * waiting for the answer, so another round trip can run meanwhile; the
 * next keel_cache_get() of the same ns and key (keel_cache_serve's)
 * reads it instead of asking again, with the same outcome, BYPASS when
 * memcached is down included.  At most one is pending per connection;
 * any other use of c reads and drops it first.  No-op when the cache is
 * off (KEEL_CACHE=0) or c is NULL.
 */
void		 keel_cache_prefetch(struct keel_cache *c, const char *ns,
		    const char *key);
/* Reads and drops a prefetch nobody used (a 401, 403, 429...); c may be
 * NULL. */
void		 keel_cache_prefetch_drop(struct keel_cache *c);

/*
 * How many servers servers names (MEMCACHED_SERVERS's syntax; NULL or
 * "": none), into *n.  servers is read by libmemcached's own parse, as
 * keel_cache_open() reads it, so each form the apps take -- host (port
 * 11211), host:port, host:port:weight, a socket's path, blanks after a
 * comma -- names the same server here and in keel_cache_dump_gens().
 * Connects to none.  KEEL_EINVAL when libmemcached refuses the list,
 * with its message appended to why (the caller's).
 */
enum keel_err	 keel_cache_dump_count(const char *servers, size_t *n,
		    struct keel_buf *why);

/* keel_cache_dump_gens()'s callback: ns is a namespace whose generation
 * the server holds; anything but KEEL_OK fails the listing. */
typedef enum keel_err keel_cache_gen_fn(const char *ns, void *arg);

/*
 * For the operator after a database restore (keel-admin restored):
 * lists the keys of server i (below keel_cache_dump_count's) of servers
 * with memcached's LRU crawler (metadump, memcached 1.4.31 and later)
 * and calls fn(ns, arg) for each namespace whose generation
 * ("keel:g:<ns>") it holds; a namespace with no generation has nothing
 * cached under one that could match.  The dump walks the hash table
 * ("hash"; memcached 1.6.18 has it): walking the LRUs ("all") misses
 * items moved while it runs, and a generation, read by every cached
 * GET, is what moves most.  A server that refuses "hash" is asked for
 * "all".  Each answer waits 10 s at most.  KEEL_OK at the listing's
 * end.  Else it appends to why (the caller's) "memcached <server>:
 * <why>", naming the server by its socket's path or host:port and
 * quoting its last line when it answered one: KEEL_EUNAVAIL when the
 * server can't be reached, lists no keys or fn failed, KEEL_EINTERNAL
 * when this process can't read the answer, KEEL_EINVAL as
 * keel_cache_dump_count.
 */
enum keel_err	 keel_cache_dump_gens(const char *servers, size_t i,
		    keel_cache_gen_fn *fn, void *arg, struct keel_buf *why);

#endif /* KEEL_CACHE_H */
