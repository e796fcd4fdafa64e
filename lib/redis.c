/* SPDX-License-Identifier: ISC */
/*
 * redis.c -- the worker's Redis connection.
 *
 * Connected on first use with a connect timeout and a command timeout, so
 * a dead or hung Redis costs a request at most the timeout; after an error
 * the context is dropped and the next call reconnects.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "keel/config.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"

#define REDIS_TIMEOUT_MS	500	/* default connect and command timeout */

struct keel_redis {
	redisContext	*ctx;		/* NULL until first use */
	char		*host;		/* owned */
	int		 port;
	int		 db;		/* SELECTed after connect */
	char		*password;	/* owned, may be NULL */
	char		 errstr[128];
};

/* Parses redis://[:password@]host[:port][/db]. */
static void
parse_url(struct keel_redis *r, const char *url)
{
	const char	*p = url + strlen("redis://"), *at, *colon, *slash;
	char		*end;

	r->port = 6379;
	r->db = 0;
	if (strncmp(url, "redis://", 8) != 0) {
		r->host = keel_strdup("127.0.0.1");
		return;
	}
	if ((at = strrchr(p, '@')) != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		r->password = colon != NULL ?
		    keel_strndup(colon + 1, (size_t)(at - colon - 1)) :
		    keel_strndup(p, (size_t)(at - p));
		p = at + 1;
	}
	slash = strchr(p, '/');
	colon = strchr(p, ':');
	if (colon != NULL && (slash == NULL || colon < slash)) {
		r->host = keel_strndup(p, (size_t)(colon - p));
		r->port = (int)strtol(colon + 1, &end, 10);
	} else
		r->host = slash != NULL ? keel_strndup(p, (size_t)(slash - p)) :
		    keel_strdup(p);
	if (slash != NULL && slash[1] != '\0')
		r->db = (int)strtol(slash + 1, &end, 10);
}

struct keel_redis *
keel_redis_open(const struct keel_config *cfg)
{
	struct keel_redis	*r;

	r = keel_calloc(1, sizeof(*r));
	parse_url(r, cfg->redis_url);
	return r;
}

static void
drop(struct keel_redis *r)
{
	redisFree(r->ctx);
	r->ctx = NULL;
}

void
keel_redis_close(struct keel_redis *r)
{
	if (r == NULL)
		return;
	drop(r);
	free(r->host);
	if (r->password != NULL) {
		explicit_bzero(r->password, strlen(r->password));
		free(r->password);
	}
	free(r);
}

static struct timeval
tv_ms(int ms)
{
	struct timeval	 tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/* A command whose reply must not be an error; used while connecting. */
static int
setup_cmd(struct keel_redis *r, const char *fmt, const char *arg)
{
	redisReply	*rep;
	int		 ok;

	rep = redisCommand(r->ctx, fmt, arg);
	ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
	if (!ok)
		snprintf(r->errstr, sizeof(r->errstr), "%s", rep != NULL ?
		    rep->str : r->ctx->errstr);
	freeReplyObject(rep);
	return ok ? 0 : -1;
}

static enum keel_err
ensure(struct keel_redis *r, int timeout_ms)
{
	struct timeval	 tv = tv_ms(timeout_ms);
	char		 db[16];

	if (r->ctx != NULL && r->ctx->err == 0)
		return KEEL_OK;
	drop(r);
	r->ctx = redisConnectWithTimeout(r->host, r->port, tv);
	if (r->ctx == NULL || r->ctx->err != 0) {
		snprintf(r->errstr, sizeof(r->errstr), "%s", r->ctx != NULL ?
		    r->ctx->errstr : "out of memory");
		drop(r);
		return KEEL_EUNAVAIL;
	}
	redisSetTimeout(r->ctx, tv);
	snprintf(db, sizeof(db), "%d", r->db);
	if ((r->password != NULL && setup_cmd(r, "AUTH %s", r->password)) ||
	    (r->db != 0 && setup_cmd(r, "SELECT %s", db))) {
		drop(r);
		return KEEL_EUNAVAIL;
	}
	return KEEL_OK;
}

enum keel_err
keel_redis_ping(struct keel_redis *r, int timeout_ms)
{
	redisReply	*rep;
	enum keel_err	 er;

	if ((er = ensure(r, timeout_ms > 0 ? timeout_ms : REDIS_TIMEOUT_MS)) !=
	    KEEL_OK)
		return er;
	redisSetTimeout(r->ctx, tv_ms(timeout_ms));
	rep = redisCommand(r->ctx, "PING");
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		snprintf(r->errstr, sizeof(r->errstr), "%s", rep != NULL ?
		    rep->str : r->ctx->errstr);
		freeReplyObject(rep);
		drop(r);
		return KEEL_EUNAVAIL;
	}
	freeReplyObject(rep);
	return KEEL_OK;
}

const char *
keel_redis_errstr(const struct keel_redis *r)
{
	return r->errstr;
}
