/* SPDX-License-Identifier: ISC */
/* cache.h -- memcached through libmemcached (namespaces: a later issue). */
#ifndef KEEL_CACHE_H
#define KEEL_CACHE_H

#include "keel/err.h"

struct keel_config;
struct keel_cache;		/* opaque: owns the memcached handle */

/* MEMCACHED_SERVERS, spread by consistent hashing.  Never NULL. */
struct keel_cache *keel_cache_open(const struct keel_config *);
/* c may be NULL. */
void		 keel_cache_close(struct keel_cache *c);
/* One round trip to every server within timeout_ms; KEEL_EUNAVAIL if any
 * is unreachable. */
enum keel_err	 keel_cache_ping(struct keel_cache *c, int timeout_ms);

#endif /* KEEL_CACHE_H */
