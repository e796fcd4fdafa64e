/* SPDX-License-Identifier: ISC */
/*
 * cache.c -- memcached through libmemcached.
 *
 * Servers come from MEMCACHED_SERVERS and keys spread over them by
 * consistent hashing (ketama), so adding a server moves few keys.  Short
 * timeouts everywhere: losing the cache must only cost speed.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmemcached/memcached.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/log.h"
#include "keel/mem.h"

#define CACHE_TIMEOUT_MS	250

struct keel_cache {
	memcached_st	*mc;
};

struct keel_cache *
keel_cache_open(const struct keel_config *cfg)
{
	struct keel_cache	*c;
	memcached_server_st	*list;
	memcached_return_t	 rc;

	c = keel_calloc(1, sizeof(*c));
	if ((c->mc = memcached_create(NULL)) == NULL)
		keel_log_fatalx("memcached_create failed");
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_DISTRIBUTION,
	    MEMCACHED_DISTRIBUTION_CONSISTENT);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
	    CACHE_TIMEOUT_MS);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
	    CACHE_TIMEOUT_MS);
	/* A dead server is retried after 2 s rather than on every call. */
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 2);
	list = memcached_servers_parse(cfg->memcached_servers);
	if (list == NULL)
		keel_log_warnx("cache: MEMCACHED_SERVERS lists no server");
	else {
		if ((rc = memcached_server_push(c->mc, list)) !=
		    MEMCACHED_SUCCESS)
			keel_log_warnx("cache: %s", memcached_strerror(c->mc,
			    rc));
		memcached_server_list_free(list);
	}
	return c;
}

void
keel_cache_close(struct keel_cache *c)
{
	if (c == NULL)
		return;
	memcached_free(c->mc);
	free(c);
}

enum keel_err
keel_cache_ping(struct keel_cache *c, int timeout_ms)
{
	memcached_return_t	 rc;
	uint32_t		 flags;
	size_t			 len;
	char			*v;

	if (memcached_server_count(c->mc) == 0)
		return KEEL_EUNAVAIL;
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
	    (uint64_t)timeout_ms);
	/* A get of a key nobody sets: NOTFOUND proves a round trip. */
	v = memcached_get(c->mc, "keel:ping", 9, &len, &flags, &rc);
	free(v);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
	    CACHE_TIMEOUT_MS);
	if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND)
		return KEEL_OK;
	return KEEL_EUNAVAIL;
}
