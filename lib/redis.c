/* SPDX-License-Identifier: ISC */
/*
 * redis.c -- the worker's Redis connection.
 *
 * Connected on first use with a connect timeout and a command timeout, so
 * a dead or hung Redis costs a request at most the timeout; after an error
 * the context is dropped and the next call reconnects.  With
 * REDIS_SENTINELS every connection asks the sentinels where the master is
 * first (sentinel.c) and checks it reached one; a -READONLY answer (a
 * master demoted under us) drops the connection, so the next call asks
 * again.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "keel/config.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/sentinel.h"

#define REDIS_TIMEOUT_MS	500	/* default connect and command timeout */

struct keel_redis {
	redisContext	*ctx;		/* NULL until first use */
	struct keel_redis_addr addr;	/* where, and the db SELECTed */
	struct keel_sentinel *sentinel;	/* or NULL: addr's host */
	int		 timeout_ms;	/* this command's; see cmd_timeout */
	struct keel_buf	 cmd;		/* the command in RESP, reused */
	size_t		 pending;	/* sent, replies unread (send) */
	char		 errstr[128];
};

void
keel_redis_addr_parse(const char *url, struct keel_redis_addr *a)
{
	const char	*p = url + strlen("redis://"), *at, *colon, *slash, *q;
	char		*end;

	memset(a, 0, sizeof(*a));
	a->port = 6379;
	if (strncmp(url, "unix://", 7) == 0) {
		p = url + 7;
		if ((q = strstr(p, "?db=")) != NULL)
			a->db = (int)strtol(q + 4, &end, 10);
		a->path = q != NULL ? keel_strndup(p, (size_t)(q - p)) :
		    keel_strdup(p);
		a->host = keel_strdup(a->path);
		return;
	}
	if (strncmp(url, "redis://", 8) != 0) {
		a->host = keel_strdup("127.0.0.1");
		return;
	}
	if ((at = strrchr(p, '@')) != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		a->password = colon != NULL ?
		    keel_strndup(colon + 1, (size_t)(at - colon - 1)) :
		    keel_strndup(p, (size_t)(at - p));
		p = at + 1;
	}
	slash = strchr(p, '/');
	colon = strchr(p, ':');
	if (colon != NULL && (slash == NULL || colon < slash)) {
		a->host = keel_strndup(p, (size_t)(colon - p));
		a->port = (int)strtol(colon + 1, &end, 10);
	} else
		a->host = slash != NULL ? keel_strndup(p, (size_t)(slash - p)) :
		    keel_strdup(p);
	if (slash != NULL && slash[1] != '\0')
		a->db = (int)strtol(slash + 1, &end, 10);
}

void
keel_redis_addr_free(struct keel_redis_addr *a)
{
	free(a->host);
	free(a->path);
	if (a->password != NULL)
		explicit_bzero(a->password, strlen(a->password));
	free(a->password);
	memset(a, 0, sizeof(*a));
}

struct keel_redis *
keel_redis_open(const struct keel_config *cfg)
{
	struct keel_redis	*r;

	r = keel_calloc(1, sizeof(*r));
	r->timeout_ms = REDIS_TIMEOUT_MS;
	keel_redis_addr_parse(cfg->redis_url, &r->addr);
	r->sentinel = keel_sentinel_new(cfg->redis_sentinels,
	    cfg->redis_sentinel_master, cfg->redis_sentinel_password);
	return r;
}

static void
drop(struct keel_redis *r)
{
	redisFree(r->ctx);
	r->ctx = NULL;
	r->pending = 0;
}

void
keel_redis_close(struct keel_redis *r)
{
	if (r == NULL)
		return;
	drop(r);
	keel_buf_free(&r->cmd);
	keel_redis_addr_free(&r->addr);
	keel_sentinel_free(r->sentinel);
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

/*
 * A new connection to REDIS_URL's server, or to the master the sentinels
 * name (each asked within the connect timeout, at most 250 ms); NULL
 * with errstr set when the sentinels can't say.
 */
static redisContext *
connect_to(struct keel_redis *r, int timeout_ms)
{
	struct timeval	 tv = tv_ms(timeout_ms);
	char		 host[KEEL_SENTINEL_HOST_MAX];
	int		 port;

	if (r->sentinel == NULL)
		return r->addr.path != NULL ?
		    redisConnectUnixWithTimeout(r->addr.path, tv) :
		    redisConnectWithTimeout(r->addr.host, r->addr.port, tv);
	if (keel_sentinel_master(r->sentinel, timeout_ms < 250 ? timeout_ms :
	    250, host, sizeof(host), &port, r->errstr, sizeof(r->errstr)) !=
	    KEEL_OK)
		return NULL;
	return redisConnectWithTimeout(host, port, tv);
}

/* Through sentinels: true when the server says it is the master. */
static bool
is_master(struct keel_redis *r)
{
	redisReply	*rep;
	bool		 ok;

	if (r->sentinel == NULL)
		return true;
	rep = redisCommand(r->ctx, "ROLE");
	if (!(ok = keel_sentinel_role_is_master(rep)))
		snprintf(r->errstr, sizeof(r->errstr), "%s", rep == NULL ?
		    r->ctx->errstr : "the sentinels' master is not one (yet)");
	freeReplyObject(rep);
	return ok;
}

/*
 * Connects unless connected.  *fresh (may be NULL) says whether this call
 * made the connection, so a failure on it can't be an old socket's.
 */
static enum keel_err
ensure(struct keel_redis *r, int timeout_ms, int *fresh)
{
	struct timeval	 tv = tv_ms(timeout_ms);
	char		 db[16];

	if (fresh != NULL)
		*fresh = 0;
	if (r->ctx != NULL && r->ctx->err == 0)
		return KEEL_OK;
	if (fresh != NULL)
		*fresh = 1;
	drop(r);
	r->ctx = connect_to(r, timeout_ms);
	if (r->ctx == NULL && r->sentinel != NULL)
		return KEEL_EUNAVAIL;	/* errstr: the sentinels' */
	if (r->ctx == NULL || r->ctx->err != 0) {
		snprintf(r->errstr, sizeof(r->errstr), "%s", r->ctx != NULL ?
		    r->ctx->errstr : "out of memory");
		drop(r);
		return KEEL_EUNAVAIL;
	}
	redisSetTimeout(r->ctx, tv);
	snprintf(db, sizeof(db), "%d", r->addr.db);
	if ((r->addr.password != NULL && setup_cmd(r, "AUTH %s", r->addr.password)) ||
	    (r->addr.db != 0 && setup_cmd(r, "SELECT %s", db)) ||
	    !is_master(r)) {
		drop(r);
		return KEEL_EUNAVAIL;
	}
	/* The command being run may want its own (cmd_timeout). */
	if (r->timeout_ms != timeout_ms)
		redisSetTimeout(r->ctx, tv_ms(r->timeout_ms));
	return KEEL_OK;
}

enum keel_err
keel_redis_ping(struct keel_redis *r, int timeout_ms)
{
	redisReply	*rep;
	enum keel_err	 er;

	if ((er = ensure(r, timeout_ms > 0 ? timeout_ms : REDIS_TIMEOUT_MS,
	    NULL)) != KEEL_OK)
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

/* Bytes a copy of rep needs: the node array, then every string.  Debian's
 * hiredis 0.14 speaks RESP2 only: strings, status, errors, ints, arrays. */
static size_t
reply_size(const redisReply *rep, size_t *nodes)
{
	size_t	 n = 0, i;

	(*nodes)++;
	switch (rep->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_ERROR:
		n += rep->len + 1;
		break;
	case REDIS_REPLY_ARRAY:
		for (i = 0; i < rep->elements; i++)
			n += reply_size(rep->element[i], nodes);
		break;
	default:
		break;
	}
	return n;
}

/* Copies rep into node, taking further nodes and string bytes from the
 * two cursors. */
static void
reply_copy(const redisReply *rep, struct keel_rreply *node,
    struct keel_rreply **next_node, char **next_str)
{
	size_t	 i;

	memset(node, 0, sizeof(*node));
	switch (rep->type) {
	case REDIS_REPLY_INTEGER:
		node->type = KEEL_R_INT;
		node->integer = rep->integer;
		return;
	case REDIS_REPLY_NIL:
		node->type = KEEL_R_NIL;
		return;
	case REDIS_REPLY_ARRAY:
		node->type = KEEL_R_ARRAY;
		node->nelem = rep->elements;
		node->elem = *next_node;
		*next_node += rep->elements;
		for (i = 0; i < rep->elements; i++)
			reply_copy(rep->element[i], &node->elem[i], next_node,
			    next_str);
		return;
	default:
		node->type = rep->type == REDIS_REPLY_ERROR ? KEEL_R_ERROR :
		    KEEL_R_STR;
		node->str = *next_str;
		node->len = rep->len;
		memcpy(node->str, rep->str, rep->len);
		node->str[rep->len] = '\0';
		*next_str += rep->len + 1;
		return;
	}
}

static struct keel_rreply *
reply_dup(const redisReply *rep)
{
	struct keel_rreply	*root, *next;
	size_t			 nodes = 0, bytes;
	char			*str;

	bytes = reply_size(rep, &nodes);
	root = keel_malloc(nodes * sizeof(*root) + bytes);
	next = root + 1;
	str = (char *)(root + nodes);
	reply_copy(rep, root, &next, &str);
	return root;
}

void
keel_rreply_free(struct keel_rreply *rep)
{
	free(rep);
}

/* v in decimal, written backwards from end; returns the first byte. */
static char *
fmt_size(char *end, size_t v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	return end;
}

/*
 * The command in RESP (an array of bulk strings), built here rather than
 * by hiredis's printf-like formatter, which costs several times more.
 */
static void
resp_format(struct keel_buf *b, int argc, const char **argv,
    const size_t *argvlen)
{
	char	 num[24], *p, *end = num + sizeof(num);
	size_t	 len;
	int	 i;

	keel_buf_reset(b);
	p = fmt_size(end, (size_t)argc);
	*--p = '*';
	keel_buf_append(b, p, (size_t)(end - p));
	keel_buf_append(b, "\r\n", 2);
	for (i = 0; i < argc; i++) {
		len = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
		p = fmt_size(end, len);
		*--p = '$';
		keel_buf_append(b, p, (size_t)(end - p));
		keel_buf_append(b, "\r\n", 2);
		keel_buf_append(b, argv[i], len);
		keel_buf_append(b, "\r\n", 2);
	}
}

/*
 * True when a command failed because the server had closed this
 * connection before it was sent (Redis restarted, or dropped an idle
 * client): the end of the stream, or a reset, on a socket we didn't just
 * open.  Such a command never reached a live server, so it can be sent
 * again on a new connection.  A timeout is never one: the command may be
 * running.
 */
static int
closed_by_server(const redisContext *ctx, int err, int fresh)
{
	if (fresh)
		return 0;
	return ctx->err == REDIS_ERR_EOF || (ctx->err == REDIS_ERR_IO &&
	    (err == ECONNRESET || err == EPIPE));
}

/*
 * An error reply that says the server can't serve any command yet, not
 * that this one failed: a Redis loading its data after a restart
 * (LOADING), one stuck in a long script (BUSY), a replica cut from its
 * master (MASTERDOWN), a replica (READONLY: a failover demoted the
 * master).  The caller sees KEEL_EUNAVAIL, as for a server
 * that is down, so the failure policy applies (503, fail open or closed).
 */
static bool
not_serving(const redisReply *rep)
{
	static const char *const words[] = { "LOADING ", "BUSY ",
	    "MASTERDOWN ", "READONLY " };
	size_t	 i;

	if (rep->type != REDIS_REPLY_ERROR || rep->str == NULL)
		return false;
	for (i = 0; i < KEEL_NELEM(words); i++)
		if (strncmp(rep->str, words[i], strlen(words[i])) == 0)
			return true;
	return false;
}

enum keel_err
keel_redis_cmd(struct keel_redis *r, int argc, const char **argv,
    const size_t *argvlen, struct keel_rreply **out)
{
	void		*rep = NULL;
	enum keel_err	 er;
	int		 fresh, err, tries;

	if (out != NULL)
		*out = NULL;
	if (r->pending > 0) {
		keel_log_error("redis: a command while %zu sent are unread",
		    r->pending);
		return KEEL_EINTERNAL;
	}
	resp_format(&r->cmd, argc, argv, argvlen);
	for (tries = 0;; tries++) {
		if ((er = ensure(r, REDIS_TIMEOUT_MS, &fresh)) != KEEL_OK)
			return er;
		if (redisAppendFormattedCommand(r->ctx, r->cmd.data,
		    r->cmd.len) == REDIS_OK &&
		    redisGetReply(r->ctx, &rep) == REDIS_OK && rep != NULL)
			break;
		/* I/O error or timeout: the context is unusable now. */
		err = errno;
		snprintf(r->errstr, sizeof(r->errstr), "%s", r->ctx->errstr);
		if (tries > 0 || !closed_by_server(r->ctx, err, fresh)) {
			drop(r);
			return KEEL_EUNAVAIL;
		}
		keel_log_info("redis: the server closed the connection (%s); "
		    "reconnecting", r->errstr);
		drop(r);
	}
	if (not_serving(rep)) {
		snprintf(r->errstr, sizeof(r->errstr), "%s",
		    ((redisReply *)rep)->str);
		/* A master demoted under us (a failover): the next call
		 * reconnects, through the sentinels when there are some. */
		if (strncmp(r->errstr, "READONLY ", 9) == 0)
			drop(r);
		freeReplyObject(rep);
		return KEEL_EUNAVAIL;
	}
	if (out != NULL)
		*out = reply_dup(rep);
	freeReplyObject(rep);
	return KEEL_OK;
}

enum keel_err
keel_redis_send(struct keel_redis *r, int argc, const char **argv,
    const size_t *argvlen)
{
	enum keel_err	 er;
	int		 done = 0;

	if (r->pending == 0 && (er = ensure(r, REDIS_TIMEOUT_MS, NULL)) !=
	    KEEL_OK)
		return er;
	if (r->ctx == NULL)
		return KEEL_EUNAVAIL;	/* dropped with commands unread */
	resp_format(&r->cmd, argc, argv, argvlen);
	if (redisAppendFormattedCommand(r->ctx, r->cmd.data, r->cmd.len) !=
	    REDIS_OK)
		goto fail;
	while (!done)
		if (redisBufferWrite(r->ctx, &done) != REDIS_OK)
			goto fail;
	r->pending++;
	return KEEL_OK;
fail:
	snprintf(r->errstr, sizeof(r->errstr), "%s", r->ctx->errstr);
	drop(r);
	return KEEL_EUNAVAIL;
}

enum keel_err
keel_redis_recv(struct keel_redis *r, struct keel_rreply **out)
{
	void	*v = NULL;

	*out = NULL;
	if (r->pending == 0) {
		keel_log_error("redis: a reply read with none pending");
		return KEEL_EINTERNAL;
	}
	if (r->ctx == NULL || redisGetReply(r->ctx, &v) != REDIS_OK ||
	    v == NULL) {
		if (r->ctx != NULL)
			snprintf(r->errstr, sizeof(r->errstr), "%s",
			    r->ctx->errstr);
		drop(r);
		return KEEL_EUNAVAIL;
	}
	r->pending--;
	*out = reply_dup(v);
	freeReplyObject(v);
	return KEEL_OK;
}

size_t
keel_redis_pending(const struct keel_redis *r)
{
	return r->pending;
}

enum keel_err
keel_redis_wait(struct keel_redis *r)
{
	struct keel_rreply	*rep;
	enum keel_err		 er = KEEL_OK, e;

	while (r->pending > 0) {
		if ((e = keel_redis_recv(r, &rep)) != KEEL_OK)
			return e;
		if (er == KEEL_OK && rep->type == KEEL_R_ERROR) {
			keel_log_error("redis: a sent command: %s", rep->str);
			er = KEEL_EINTERNAL;
		}
		keel_rreply_free(rep);
	}
	return er;
}

enum keel_err
keel_redis_eval(struct keel_redis *r, struct keel_rscript *script, int nkeys,
    int argc, const char **argv, const size_t *argvlen,
    struct keel_rreply **out)
{
	const char		**av, *av_small[32];
	size_t			*al, al_small[32];
	struct keel_rreply	*rep = NULL;
	const char		*load[3];
	char			 nk[16];
	enum keel_err		 er;
	int			 i, tries;

	*out = NULL;
	/* A request's scripts take a dozen arguments: no malloc for them. */
	if ((size_t)argc + 3 <= sizeof(av_small) / sizeof(av_small[0])) {
		av = av_small;
		al = al_small;
	} else {
		av = keel_calloc((size_t)argc + 3, sizeof(*av));
		al = keel_calloc((size_t)argc + 3, sizeof(*al));
	}
	snprintf(nk, sizeof(nk), "%d", nkeys);
	av[0] = "EVALSHA";
	av[2] = nk;
	for (i = 0; i < argc; i++) {
		av[i + 3] = argv[i];
		al[i + 3] = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
	}
	al[0] = 7;
	al[2] = strlen(nk);
	for (tries = 0; tries < 2; tries++) {
		if (script->sha[0] == '\0') {
			load[0] = "SCRIPT";
			load[1] = "LOAD";
			load[2] = script->lua;
			if ((er = keel_redis_cmd(r, 3, load, NULL, &rep)) !=
			    KEEL_OK)
				goto out;
			if (rep->type != KEEL_R_STR || rep->len != 40) {
				keel_log_error("redis: loading script %s: %s",
				    script->name, rep->str != NULL ? rep->str :
				    "unexpected reply");
				er = KEEL_EINTERNAL;
				goto out;
			}
			memcpy(script->sha, rep->str, 41);
			keel_rreply_free(rep);
			rep = NULL;
		}
		av[1] = script->sha;
		al[1] = 40;
		if ((er = keel_redis_cmd(r, argc + 3, av, al, &rep)) != KEEL_OK)
			goto out;
		/* Redis restarted or flushed its scripts: load it again. */
		if (rep->type == KEEL_R_ERROR &&
		    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
			script->sha[0] = '\0';
			keel_rreply_free(rep);
			rep = NULL;
			continue;
		}
		break;
	}
	*out = rep;
	rep = NULL;
out:
	keel_rreply_free(rep);
	if (av != av_small) {
		free(av);
		free(al);
	}
	return er;
}

enum keel_err
keel_redis_cmd_timeout(struct keel_redis *r, int timeout_ms, int argc,
    const char **argv, const size_t *argvlen, struct keel_rreply **out)
{
	enum keel_err	 er;

	if (out != NULL)
		*out = NULL;
	if ((er = ensure(r, REDIS_TIMEOUT_MS, NULL)) != KEEL_OK)
		return er;
	/* A blocking command (XREAD BLOCK) may wait longer than the usual
	 * command timeout; give it its own (kept across a reconnect by
	 * ensure), then restore the default. */
	r->timeout_ms = timeout_ms;
	redisSetTimeout(r->ctx, tv_ms(timeout_ms));
	er = keel_redis_cmd(r, argc, argv, argvlen, out);
	r->timeout_ms = REDIS_TIMEOUT_MS;
	if (r->ctx != NULL)
		redisSetTimeout(r->ctx, tv_ms(REDIS_TIMEOUT_MS));
	return er;
}
