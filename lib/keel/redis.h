/* SPDX-License-Identifier: ISC */
/* redis.h -- the worker's Redis connection: connect, timeouts, reconnect. */
#ifndef KEEL_REDIS_H
#define KEEL_REDIS_H

#include "keel/err.h"

struct keel_config;
struct keel_redis;		/* opaque: owns the hiredis context */

/* Connects lazily on first use.  Never NULL. */
struct keel_redis *keel_redis_open(const struct keel_config *);
/* r may be NULL. */
void		 keel_redis_close(struct keel_redis *r);
/*
 * PING within timeout_ms (connecting if needed).  KEEL_EUNAVAIL when
 * Redis can't be reached; the handle reconnects on the next call.
 */
enum keel_err	 keel_redis_ping(struct keel_redis *r, int timeout_ms);
const char	*keel_redis_errstr(const struct keel_redis *r);

#endif /* KEEL_REDIS_H */
