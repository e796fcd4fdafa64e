/* SPDX-License-Identifier: ISC */
/*
 * url.h -- the servers' addresses as settings give them: URLs and server
 * lists, parsed whole (pure).  config.c checks its settings with these at
 * start, and redis.c connects with what keel_url_redis_parse() read, so a
 * value is read one way only.
 */
#ifndef KEEL_URL_H
#define KEEL_URL_H

#include <stdbool.h>
#include <stddef.h>

/* What keel_url_valid() lets through besides scheme://host[:port][/path]. */
#define KEEL_URL_USERINFO	0x01	/* user[:password]@ */
#define KEEL_URL_QUERY		0x02	/* ?query (no #fragment ever) */
#define KEEL_URL_PG		0x04	/* libpq's: an empty host (its
					   socket), a %-encoded socket path
					   as the host, raw credentials */

/*
 * Whether the n bytes at v are scheme://[userinfo@]host[:port][/path] for
 * one of schemes (NULL-terminated), with what flags allow: a host a name,
 * an IPv4 address or [IPv6], a port 1..65535, no blank, control byte or
 * '#' anywhere (with KEEL_URL_PG, but for blanks and '#' in the
 * credentials, which libpq reads raw up to the first '@' before a '/').
 * The shape libcurl and libpq read after us.
 */
bool	 keel_url_valid(const char *v, size_t n, const char *const *schemes,
	    int flags);

/*
 * Whether the n bytes at s are one PostgreSQL URL (postgresql:// or
 * postgres://) that libpq's own parser takes too (an unknown ?parameter
 * or a bad %-encoding is refused); nothing is connected.
 */
bool	 keel_url_pg_valid(const char *s, size_t n);

/*
 * Whether list is a MEMCACHED_SERVERS value, as libmemcached's
 * memcached_servers_parse() reads it: comma-separated items, each a
 * socket path or host[:port[:weight]] (a name or IPv4 address, port
 * 1..65535, 11211 when left out), blanks around an item allowed, no
 * empty item; or "" (no server).  What libmemcached would misread (a bad
 * port, a stray character) is refused; a host that doesn't resolve is
 * the network's to fail.
 */
bool	 keel_url_memcached_valid(const char *list);

/*
 * Where a REDIS_URL item points: redis://[[user]:password@]host[:port][/db]
 * or unix:///path[?db=N].  Strict: host a name or IPv4 address, port
 * 1..65535 (6379 when left out), db 0..INT_MAX (0), digits only.
 */
struct keel_url_redis {
	char	*host;		/* the socket's path for unix:// */
	char	*path;		/* unix socket, or NULL */
	int	 port;
	int	 db;
	char	*password;	/* or NULL; a user before it is not kept */
};

/*
 * Parses url into *a, whose strings it owns (release with
 * keel_url_redis_free(), also after false).  False when url is none of
 * the forms above; a then holds nothing.
 */
bool	 keel_url_redis_parse(const char *url, struct keel_url_redis *a);
/* Frees a's strings (the password wiped first); a may be zeroed. */
void	 keel_url_redis_free(struct keel_url_redis *a);

#endif /* KEEL_URL_H */
