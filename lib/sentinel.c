/* SPDX-License-Identifier: ISC */
/*
 * sentinel.c -- Redis Sentinel: asking the sentinels where the master is.
 *
 * The sentinel clients' protocol (redis.io, "Sentinel client spec"):
 * ask each sentinel in turn, with a short timeout, for the master's
 * address by name; the first that answers is asked first next time; then
 * connect and check the server's ROLE (redis.c does, and drops a
 * connection that meets -READONLY, so the next command asks again).
 * Nothing is cached between connections: a reconnect happens after an
 * error, and that is when the master may have moved.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "keel/log.h"
#include "keel/mem.h"
#include "keel/sentinel.h"
#include "keel/text.h"

struct keel_sentinel {
	struct keel_sentinel_addr	 addr[KEEL_SENTINEL_MAX];
	size_t				 n;
	size_t				 first;	/* asked first */
	char				*name;	/* the master's */
	char				*password; /* theirs, or NULL */
};

struct parse_state {
	struct keel_sentinel_addr	*out;
	size_t				 max, n;
	bool				 bad;
};

static bool
parse_item(const char *s, size_t n, void *arg)
{
	struct parse_state		*ps = arg;
	struct keel_sentinel_addr	*a;
	const char			*host = s, *port = NULL, *close;
	size_t				 hostlen = n;
	int64_t				 v;
	char				 num[8];

	if (ps->n == ps->max)
		goto bad;
	a = &ps->out[ps->n];
	if (n > 0 && s[0] == '[') {
		/* [v6]:port */
		if ((close = memchr(s, ']', n)) == NULL || close == s + 1)
			goto bad;
		host = s + 1;
		hostlen = (size_t)(close - host);
		if (close + 1 < s + n) {
			if (close[1] != ':')
				goto bad;
			port = close + 2;
		}
	} else if ((port = memchr(s, ':', n)) != NULL) {
		/* One colon only: a bare IPv6 address needs its brackets. */
		if (memchr(port + 1, ':', (size_t)(s + n - port - 1)) != NULL)
			goto bad;
		hostlen = (size_t)(port - s);
		port++;
	}
	if (hostlen == 0 || hostlen >= sizeof(a->host) ||
	    memchr(host, ' ', hostlen) != NULL)
		goto bad;
	memcpy(a->host, host, hostlen);
	a->host[hostlen] = '\0';
	a->port = KEEL_SENTINEL_PORT;
	if (port != NULL) {
		if ((size_t)(s + n - port) >= sizeof(num) || port == s + n)
			goto bad;
		memcpy(num, port, (size_t)(s + n - port));
		num[s + n - port] = '\0';
		if (!keel_parse_int64(num, 1, 65535, &v))
			goto bad;
		a->port = (int)v;
	}
	ps->n++;
	return true;
bad:
	ps->bad = true;
	return false;
}

int
keel_sentinel_parse(const char *list, struct keel_sentinel_addr *out,
    size_t max)
{
	struct parse_state	 ps = { .out = out, .max = max };

	if (list == NULL || !keel_text_each(list, parse_item, &ps) ||
	    ps.bad || ps.n == 0)
		return -1;
	return (int)ps.n;
}

struct keel_sentinel *
keel_sentinel_new(const char *list, const char *name, const char *password)
{
	struct keel_sentinel	*s;
	int			 n;

	if (list == NULL || *list == '\0')
		return NULL;
	s = keel_calloc(1, sizeof(*s));
	if ((n = keel_sentinel_parse(list, s->addr, KEEL_SENTINEL_MAX)) < 0) {
		free(s);
		return NULL;
	}
	s->n = (size_t)n;
	s->name = keel_strdup(name != NULL ? name : "mymaster");
	if (password != NULL && *password != '\0')
		s->password = keel_strdup(password);
	return s;
}

void
keel_sentinel_free(struct keel_sentinel *s)
{
	if (s == NULL)
		return;
	free(s->name);
	if (s->password != NULL)
		explicit_bzero(s->password, strlen(s->password));
	free(s->password);
	free(s);
}

size_t
keel_sentinel_first(const struct keel_sentinel *s)
{
	return s->first;
}

bool
keel_sentinel_master_reply(const void *reply, char *host, size_t hostsz,
    int *port)
{
	const redisReply	*r = reply, *h, *p;
	int64_t			 v;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		return false;
	h = r->element[0];
	p = r->element[1];
	if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING ||
	    h->len == 0 || h->len >= hostsz || memchr(h->str, '\0', h->len) ||
	    !keel_parse_int64(p->str, 1, 65535, &v))
		return false;
	memcpy(host, h->str, h->len);
	host[h->len] = '\0';
	*port = (int)v;
	return true;
}

bool
keel_sentinel_role_is_master(const void *reply)
{
	const redisReply	*r = reply, *e;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return false;
	e = r->element[0];
	return (e->type == REDIS_REPLY_STRING || e->type ==
	    REDIS_REPLY_STATUS) && e->len == 6 && memcmp(e->str, "master",
	    6) == 0;
}

/* Asks one sentinel; true with host and *port set. */
static bool
ask(const struct keel_sentinel *s, const struct keel_sentinel_addr *a,
    int timeout_ms, char *host, size_t hostsz, int *port, char *err,
    size_t errsz)
{
	struct timeval	 tv;
	redisContext	*c;
	redisReply	*rep;
	bool		 ok;

	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	c = redisConnectWithTimeout(a->host, a->port, tv);
	if (c == NULL || c->err != 0) {
		snprintf(err, errsz, "sentinel %s:%d: %s", a->host, a->port,
		    c != NULL ? c->errstr : "out of memory");
		redisFree(c);
		return false;
	}
	redisSetTimeout(c, tv);
	if (s->password != NULL) {
		rep = redisCommand(c, "AUTH %s", s->password);
		ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
		if (!ok)
			snprintf(err, errsz, "sentinel %s:%d: AUTH: %s",
			    a->host, a->port, rep != NULL ? rep->str :
			    c->errstr);
		freeReplyObject(rep);
		if (!ok) {
			redisFree(c);
			return false;
		}
	}
	rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s", s->name);
	ok = keel_sentinel_master_reply(rep, host, hostsz, port);
	if (!ok)
		snprintf(err, errsz, "sentinel %s:%d: %s", a->host, a->port,
		    rep == NULL ? c->errstr : rep->type == REDIS_REPLY_ERROR ?
		    rep->str : rep->type == REDIS_REPLY_NIL ?
		    "no master by that name" : "unexpected answer");
	freeReplyObject(rep);
	redisFree(c);
	return ok;
}

size_t
keel_sentinel_count(const struct keel_sentinel *s)
{
	return s->n;
}

const struct keel_sentinel_addr *
keel_sentinel_nth(const struct keel_sentinel *s, size_t i)
{
	return &s->addr[(s->first + i) % s->n];
}

const char *
keel_sentinel_name(const struct keel_sentinel *s)
{
	return s->name;
}

const char *
keel_sentinel_password(const struct keel_sentinel *s)
{
	return s->password;
}

void
keel_sentinel_answered(struct keel_sentinel *s, size_t i, const char *host,
    int port)
{
	size_t	 k = (s->first + i) % s->n;

	if (k == s->first)
		return;
	keel_log_info("redis: sentinel %s:%d answered (%s is at %s:%d); "
	    "asking it first", s->addr[k].host, s->addr[k].port, s->name,
	    host, port);
	s->first = k;
}

enum keel_err
keel_sentinel_master(struct keel_sentinel *s, int timeout_ms, char *host,
    size_t hostsz, int *port, char *err, size_t errsz)
{
	size_t	 i;

	for (i = 0; i < s->n; i++) {
		if (!ask(s, keel_sentinel_nth(s, i), timeout_ms, host, hostsz,
		    port, err, errsz))
			continue;
		keel_sentinel_answered(s, i, host, *port);
		return KEEL_OK;
	}
	return KEEL_EUNAVAIL;
}
