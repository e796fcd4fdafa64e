/* SPDX-License-Identifier: ISC */
/*
 * url.c -- the servers' addresses as settings give them (url.h).
 *
 * One reading of each: a number is digits only, so "0abc", "41497x" and
 * an overflow are refused, never cut short; a host is a name or an IPv4
 * address (and, where the library after us takes one, [IPv6]).  Pure but
 * for keel_url_pg_valid(), which asks libpq's parser (no connection).
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "keel/mem.h"
#include "keel/text.h"
#include "keel/url.h"

/* The n bytes at s as a decimal from min to max into *out. */
static bool
num_parse(const char *s, size_t n, int64_t min, int64_t max, int *out)
{
	char	 tmp[24];
	int64_t	 v;

	if (n == 0 || n >= sizeof(tmp) || *s == '-')
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (!keel_parse_int64(tmp, min, max, &v))
		return false;
	*out = (int)v;
	return true;
}

/* The n bytes at s as a port, 1..65535. */
static bool
port_ok(const char *s, size_t n, int *port)
{
	return num_parse(s, n, 1, 65535, port);
}

/* The n bytes at s as a host: a name or an IPv4 address. */
static bool
name_ok(const char *s, size_t n)
{
	size_t	 i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* The n bytes at s as a URL's host: name_ok's, [IPv6], or flags' more. */
static bool
host_ok(const char *s, size_t n, int flags)
{
	size_t	 i;

	if (n == 0)
		return (flags & KEEL_URL_PG) != 0;
	if (s[0] == '[')
		return n > 2 && s[n - 1] == ']' &&
		    strspn(s + 1, "0123456789abcdefABCDEF:.") == n - 2;
	if (!(flags & KEEL_URL_PG))
		return name_ok(s, n);
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '-' && s[i] != '_' && s[i] != '%')
			return false;
	return true;
}

/*
 * libpq's credentials: from auth to the first '@' before any '/', read
 * raw (a password may hold '?', '#' or a blank).  The '@', or NULL.
 */
static const char *
pg_credentials(const char *auth, const char *end)
{
	const char	*p;

	for (p = auth; p < end && *p != '@' && *p != '/'; p++)
		;
	return p < end && *p == '@' ? p : NULL;
}

bool
keel_url_valid(const char *v, size_t n, const char *const *schemes,
    int flags)
{
	const char	*end = v + n, *p, *auth, *at = NULL, *colon, *hend;
	size_t		 k = 0;
	int		 port;

	for (; *schemes != NULL; schemes++) {
		k = strlen(*schemes);
		if (n > k + 3 && strncmp(v, *schemes, k) == 0 &&
		    strncmp(v + k, "://", 3) == 0)
			break;
	}
	if (*schemes == NULL)
		return false;
	auth = v + k + 3;
	if (flags & KEEL_URL_PG)
		at = pg_credentials(auth, end);
	/*
	 * No blank or control byte anywhere, nor '#': none survives a URL.
	 * libpq's credentials are the exception, bar control bytes.
	 */
	for (p = v; p < end; p++) {
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			return false;
		if (at != NULL && p >= auth && p < at)
			continue;
		if (*p == ' ' || *p == '#' ||
		    (*p == '?' && !(flags & KEEL_URL_QUERY)))
			return false;
	}
	for (p = at != NULL ? at + 1 : auth; p < end && *p != '/' &&
	    *p != '?'; p++)
		;
	/* Elsewhere the last '@' ends the user part: a password may hold one. */
	if (at == NULL)
		for (hend = auth; hend < p; hend++)
			if (*hend == '@')
				at = hend;
	if (at != NULL) {
		if (!(flags & KEEL_URL_USERINFO))
			return false;
		auth = at + 1;
	}
	/* A port after the host (after the brackets of an IPv6 one). */
	hend = *auth == '[' ? memchr(auth, ']', (size_t)(p - auth)) : auth;
	if (hend == NULL)
		return false;
	if ((colon = memchr(hend, ':', (size_t)(p - hend))) != NULL) {
		if (!port_ok(colon + 1, (size_t)(p - colon - 1), &port))
			return false;
		hend = colon;
	} else
		hend = p;
	return host_ok(auth, (size_t)(hend - auth), flags);
}

/* libpq's message is not repeated: it may quote the password. */
bool
keel_url_pg_valid(const char *s, size_t n)
{
	static const char *const schemes[] = { "postgresql", "postgres",
	    NULL };
	PQconninfoOption	*opts;
	char			*one, *msg = NULL;

	if (!keel_url_valid(s, n, schemes, KEEL_URL_USERINFO |
	    KEEL_URL_QUERY | KEEL_URL_PG))
		return false;
	one = keel_strndup(s, n);
	opts = PQconninfoParse(one, &msg);
	explicit_bzero(one, n);
	free(one);
	PQfreemem(msg);
	PQconninfoFree(opts);
	return opts != NULL;
}

/*
 * One MEMCACHED_SERVERS item as libmemcached's memcached_servers_parse()
 * reads it: a socket path, or host[:port[:weight]] (port 11211 when left
 * out), blanks around it allowed.
 */
static bool
memcached_ok(const char *s, size_t n)
{
	const char	*colon, *weight;
	int		 v;

	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n > 1 && *s == '/')
		return memchr(s, ' ', n) == NULL && memchr(s, '\t', n) == NULL;
	if ((colon = memchr(s, ':', n)) == NULL)
		return name_ok(s, n);
	if (!name_ok(s, (size_t)(colon - s)))
		return false;
	n -= (size_t)(colon - s) + 1;
	s = colon + 1;
	if ((weight = memchr(s, ':', n)) == NULL)
		return port_ok(s, n, &v);
	return port_ok(s, (size_t)(weight - s), &v) &&
	    num_parse(weight + 1, n - (size_t)(weight - s) - 1, 1, 1000000,
	    &v);
}

bool
keel_url_memcached_valid(const char *list)
{
	const char	*p, *end;

	if (*list == '\0')
		return true;
	for (p = list;; p = end + 1) {
		end = p + strcspn(p, ",");
		if (!memcached_ok(p, (size_t)(end - p)))
			return false;
		if (*end == '\0')
			return true;
	}
}

/* unix:///path[?db=N]: the path absolute, nothing after it but the db. */
static bool
redis_unix(const char *p, struct keel_url_redis *a)
{
	const char	*q = strchr(p, '?');
	size_t		 n = q != NULL ? (size_t)(q - p) : strlen(p);

	if (n < 2 || *p != '/')
		return false;
	if (q != NULL && (strncmp(q, "?db=", 4) != 0 ||
	    !num_parse(q + 4, strlen(q + 4), 0, INT_MAX, &a->db)))
		return false;
	a->path = keel_strndup(p, n);
	a->host = keel_strdup(a->path);
	return true;
}

/* [[user]:password@]host[:port][/[db]], after "redis://". */
static bool
redis_tcp(const char *p, struct keel_url_redis *a)
{
	const char	*at, *colon, *slash, *hend;

	if ((at = strrchr(p, '@')) != NULL) {
		/* A user before the colon is not sent: AUTH takes the password. */
		colon = memchr(p, ':', (size_t)(at - p));
		a->password = colon != NULL ?
		    keel_strndup(colon + 1, (size_t)(at - colon - 1)) :
		    keel_strndup(p, (size_t)(at - p));
		p = at + 1;
	}
	if ((slash = strchr(p, '/')) == NULL)
		slash = p + strlen(p);
	if ((colon = memchr(p, ':', (size_t)(slash - p))) != NULL) {
		if (!port_ok(colon + 1, (size_t)(slash - colon - 1), &a->port))
			return false;
		hend = colon;
	} else
		hend = slash;
	if (!name_ok(p, (size_t)(hend - p)))
		return false;
	a->host = keel_strndup(p, (size_t)(hend - p));
	/* "/" alone, or nothing, is database 0. */
	if (*slash == '/' && slash[1] != '\0' &&
	    !num_parse(slash + 1, strlen(slash + 1), 0, INT_MAX, &a->db))
		return false;
	return true;
}

bool
keel_url_redis_parse(const char *url, struct keel_url_redis *a)
{
	bool	 ok = false;

	memset(a, 0, sizeof(*a));
	a->port = 6379;
	if (strncmp(url, "unix://", 7) == 0)
		ok = redis_unix(url + 7, a);
	else if (strncmp(url, "redis://", 8) == 0)
		ok = redis_tcp(url + 8, a);
	if (!ok)
		keel_url_redis_free(a);
	return ok;
}

void
keel_url_redis_free(struct keel_url_redis *a)
{
	free(a->host);
	free(a->path);
	if (a->password != NULL)
		explicit_bzero(a->password, strlen(a->password));
	free(a->password);
	memset(a, 0, sizeof(*a));
}
