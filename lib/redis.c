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
 *
 * Cluster mode (REDIS_CLUSTER=1): hiredis 0.14 follows no redirects, so
 * this file does what a cluster client does, for the synchronous calls
 * here: the slot map is loaded with CLUSTER SLOTS on first use (from the
 * REDIS_URL node, or any node known), each command goes to the master of
 * its key's slot (rcluster.h) on that node's own connection (opened on
 * first use, same timeouts), a MOVED updates the map and is followed, an
 * ASK is followed once with ASKING, at most MAX_REDIRECTS times a
 * command.  A node that can't be reached marks the map stale: the next
 * call loads it again (a failover's promoted replica).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "keel/config.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/rcluster.h"
#include "keel/redis.h"
#include "keel/sentinel.h"
#include "keel/text.h"
#include "keel/url.h"

#define REDIS_TIMEOUT_MS	500	/* default connect and command timeout */
#define MAX_REDIRECTS		5	/* MOVED/ASK hops one command may take */

struct keel_redis {
	redisContext	*ctx;		/* NULL until first use */
	struct keel_url_redis addr;	/* where, and the db SELECTed */
	struct keel_sentinel *sentinel;	/* or NULL: addr's host */
	int		 timeout_ms;	/* this command's; see cmd_timeout */
	struct keel_buf	 cmd;		/* the command in RESP, reused */
	size_t		 pending;	/* sent, replies unread (send) */
	char		 errstr[128];
	/* Cluster mode: ctx is node cur's; the others wait in nctx. */
	struct keel_rc_map *map;	/* NULL: not a cluster */
	redisContext	*nctx[KEEL_RC_NODES_MAX];
	int		 cur;		/* the node ctx talks to */
	int		 stale;		/* load the map before the next call */
	int		 unsent;	/* the last exchange() failed connecting:
					   no server saw its command */
	struct fifo_item *fifo, *fifo_tail;	/* cluster_send's replies */
};

struct fifo_item {
	struct keel_rreply	*rep;
	struct fifo_item	*next;
};

/* Forgets the replies cluster_send kept. */
static void
fifo_clear(struct keel_redis *r)
{
	struct fifo_item	*it;

	while ((it = r->fifo) != NULL) {
		r->fifo = it->next;
		keel_rreply_free(it->rep);
		free(it);
	}
	r->fifo_tail = NULL;
	r->pending = 0;
}

/*
 * Cluster mode: REDIS_URL's nodes (config.c checked them: redis://,
 * database 0, comma-separated) are the map's first nodes, asked for the
 * map in turn; r->addr is the first's (its password is every node's).
 */
static void
seeds(struct keel_redis *r, const char *url)
{
	struct keel_url_redis	 a;
	const char		*p, *end;
	char			*one;

	keel_rc_map_reset(r->map);
	keel_url_redis_free(&r->addr);
	for (p = url; p != NULL; p = end != NULL ? end + 1 : NULL) {
		end = strchr(p, ',');
		one = end != NULL ? keel_strndup(p, (size_t)(end - p)) :
		    keel_strdup(p);
		keel_url_redis_parse(one, &a);
		free(one);
		(void)keel_rc_map_node(r->map, a.host, a.port);
		if (p == url)
			r->addr = a;
		else
			keel_url_redis_free(&a);
	}
}

struct keel_redis *
keel_redis_open(const struct keel_config *cfg)
{
	struct keel_redis	*r;

	r = keel_calloc(1, sizeof(*r));
	r->timeout_ms = REDIS_TIMEOUT_MS;
	keel_url_redis_parse(cfg->redis_url, &r->addr);
	if (cfg->redis_cluster) {
		r->map = keel_calloc(1, sizeof(*r->map));
		seeds(r, cfg->redis_url);
		r->cur = 0;
		r->stale = 1;
	}
	r->sentinel = keel_sentinel_new(cfg->redis_sentinels,
	    cfg->redis_sentinel_master, cfg->redis_sentinel_password);
	return r;
}

int
keel_redis_is_cluster(const struct keel_redis *r)
{
	return r != NULL && r->map != NULL;
}

static enum keel_err load_map(struct keel_redis *);

enum keel_err
keel_redis_node_of(struct keel_redis *r, const char *key, size_t len,
    char *host, size_t n, int *port)
{
	int	 node;

	if (r->map == NULL || r->pending > 0)
		return KEEL_EINTERNAL;
	if (r->stale)
		(void)load_map(r);
	if ((node = keel_rc_map_lookup(r->map, keel_rc_slot(key, len))) < 0) {
		snprintf(r->errstr, sizeof(r->errstr), "no cluster node "
		    "serves the slot of %.*s", (int)(len < 64 ? len : 64), key);
		r->stale = 1;
		return KEEL_EUNAVAIL;
	}
	snprintf(host, n, "%s", r->map->node[node].host);
	*port = r->map->node[node].port;
	return KEEL_OK;
}

void
keel_redis_map_stale(struct keel_redis *r)
{
	if (r->map != NULL)
		r->stale = 1;
}

static void
drop(struct keel_redis *r)
{
	/* A node that failed may have moved or failed over. */
	if (r->map != NULL && r->ctx != NULL)
		r->stale = 1;
	redisFree(r->ctx);
	r->ctx = NULL;
	if (r->map == NULL)
		r->pending = 0;	/* (cluster mode: replies kept apart) */
}

/* Makes node n's connection the current one (cluster mode). */
static void
select_node(struct keel_redis *r, int n)
{
	if (n == r->cur)
		return;
	r->nctx[r->cur] = r->ctx;
	r->ctx = r->nctx[n];
	r->nctx[n] = NULL;
	r->cur = n;
}

/* Closes every node's connection (cluster mode). */
static void
drop_all(struct keel_redis *r)
{
	int	 i;

	for (i = 0; i < KEEL_RC_NODES_MAX; i++) {
		redisFree(r->nctx[i]);
		r->nctx[i] = NULL;
	}
	redisFree(r->ctx);
	r->ctx = NULL;
	r->pending = 0;
}

void
keel_redis_close(struct keel_redis *r)
{
	if (r == NULL)
		return;
	if (r->map != NULL) {
		fifo_clear(r);
		drop_all(r);
	} else
		drop(r);
	free(r->map);
	keel_buf_free(&r->cmd);
	keel_url_redis_free(&r->addr);
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
	if (r->map != NULL)
		r->ctx = redisConnectWithTimeout(r->map->node[r->cur].host,
		    r->map->node[r->cur].port, tv);
	else
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
	    (r->addr.db != 0 && r->map == NULL &&
	    setup_cmd(r, "SELECT %s", db)) || !is_master(r)) {
		drop(r);
		return KEEL_EUNAVAIL;
	}
	/* The command being run may want its own (cmd_timeout). */
	if (r->timeout_ms != timeout_ms)
		redisSetTimeout(r->ctx, tv_ms(r->timeout_ms));
	return KEEL_OK;
}

static int	closed_by_server(const redisContext *, int, int);

enum keel_err
keel_redis_ping(struct keel_redis *r, int timeout_ms)
{
	redisReply	*rep = NULL;
	enum keel_err	 er;
	int		 n, tries, fresh, err;

	/* Cluster mode: the master of slot 0, from a map loaded again
	 * after any failure (so not a node that failed over). */
	if (r->map != NULL) {
		if (r->stale && (er = load_map(r)) != KEEL_OK)
			return er;
		if ((n = keel_rc_map_lookup(r->map, 0)) < 0) {
			snprintf(r->errstr, sizeof(r->errstr), "no cluster "
			    "node serves slot 0");
			r->stale = 1;
			return KEEL_EUNAVAIL;
		}
		select_node(r, n);
	}
	/* A connection the server closed while idle (Redis restarted) is
	 * made again once, as for any command (exchange()): not "down". */
	for (tries = 0; tries < 2; tries++) {
		if ((er = ensure(r, timeout_ms > 0 ? timeout_ms :
		    REDIS_TIMEOUT_MS, &fresh)) != KEEL_OK)
			return er;
		redisSetTimeout(r->ctx, tv_ms(timeout_ms));
		if ((rep = redisCommand(r->ctx, "PING")) != NULL)
			break;
		err = errno;
		snprintf(r->errstr, sizeof(r->errstr), "%s", r->ctx->errstr);
		if (tries > 0 || !closed_by_server(r->ctx, err, fresh)) {
			drop(r);
			return KEEL_EUNAVAIL;
		}
		drop(r);
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		snprintf(r->errstr, sizeof(r->errstr), "%s", rep->str);
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
 * An error reply that says the server can't serve the command now, not
 * that the command is wrong: a Redis loading its data after a restart
 * (LOADING), one stuck in a long script (BUSY), a replica cut from its
 * master (MASTERDOWN), a replica (READONLY: a failover demoted the
 * master), and a master that answers but refuses writes: its last save
 * failed with stop-writes-on-bgsave-error (MISCONF: a full disk), too
 * few replicas for min-replicas-to-write (NOREPLICAS), or maxmemory
 * reached under noeviction (OOM).  The caller sees KEEL_EUNAVAIL, as
 * for a server that is down, so the failure policy applies (503, fail
 * open or closed, jobs left in the outbox).
 */
static bool
not_serving(const redisReply *rep)
{
	static const char *const words[] = { "LOADING ", "BUSY ",
	    "MASTERDOWN ", "READONLY ", "TRYAGAIN ", "CLUSTERDOWN ",
	    "MISCONF ", "NOREPLICAS ", "OOM " };
	size_t	 i;

	if (rep->type != REDIS_REPLY_ERROR || rep->str == NULL)
		return false;
	for (i = 0; i < KEEL_NELEM(words); i++)
		if (strncmp(rep->str, words[i], strlen(words[i])) == 0)
			return true;
	return false;
}

/*
 * Sends r->cmd on the current connection (after ASKING when asking) and
 * reads its reply into *rep, reconnecting once when the server had
 * closed an idle connection.
 */
static enum keel_err
exchange(struct keel_redis *r, int asking, redisReply **rep)
{
	static const char ask[] = "*1\r\n$6\r\nASKING\r\n";
	void		*v = NULL, *a = NULL;
	enum keel_err	 er;
	int		 fresh, err, tries;

	*rep = NULL;
	r->unsent = 0;
	for (tries = 0;; tries++) {
		if ((er = ensure(r, REDIS_TIMEOUT_MS, &fresh)) != KEEL_OK) {
			r->unsent = 1;
			return er;
		}
		if (r->map != NULL && r->timeout_ms != REDIS_TIMEOUT_MS)
			redisSetTimeout(r->ctx, tv_ms(r->timeout_ms));
		if ((!asking || redisAppendFormattedCommand(r->ctx, ask,
		    sizeof(ask) - 1) == REDIS_OK) &&
		    redisAppendFormattedCommand(r->ctx, r->cmd.data,
		    r->cmd.len) == REDIS_OK &&
		    (!asking || (redisGetReply(r->ctx, &a) == REDIS_OK &&
		    a != NULL)) &&
		    redisGetReply(r->ctx, &v) == REDIS_OK && v != NULL)
			break;
		/* I/O error or timeout: the context is unusable now. */
		err = errno;
		freeReplyObject(a);
		a = NULL;
		snprintf(r->errstr, sizeof(r->errstr), "%s", r->ctx->errstr);
		if (tries > 0 || !closed_by_server(r->ctx, err, fresh)) {
			drop(r);
			return KEEL_EUNAVAIL;
		}
		keel_log_info("redis: the server closed the connection (%s); "
		    "reconnecting", r->errstr);
		drop(r);
	}
	freeReplyObject(a);
	if (r->map != NULL && r->timeout_ms != REDIS_TIMEOUT_MS)
		redisSetTimeout(r->ctx, tv_ms(REDIS_TIMEOUT_MS));
	*rep = v;
	return KEEL_OK;
}

/* The node host:port names (host "" : node from's), or -1 (logged). */
static int
node_named(struct keel_redis *r, const char *host, int port, int from)
{
	int	 n;

	if (*host == '\0')
		host = r->map->node[from].host;
	if ((n = keel_rc_map_node(r->map, host, port)) < 0)
		keel_log_warnx("redis: more than %d cluster nodes; ignoring "
		    "%s:%d", KEEL_RC_NODES_MAX, host, port);
	return n;
}

/*
 * The slot map from CLUSTER SLOTS on node n: KEEL_OK when it parsed
 * (the map then holds it), else an error and the map unchanged.
 */
static enum keel_err
load_from(struct keel_redis *r, int n)
{
	static const char q[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
	redisReply	*rep = NULL, *e, *m;
	int16_t		 old[KEEL_RC_SLOTS];
	enum keel_err	 er;
	size_t		 i;
	int		 node;

	select_node(r, n);
	keel_buf_reset(&r->cmd);
	keel_buf_append(&r->cmd, q, sizeof(q) - 1);
	if ((er = exchange(r, 0, &rep)) != KEEL_OK)
		return er;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
		snprintf(r->errstr, sizeof(r->errstr), "CLUSTER SLOTS: %s",
		    rep->type == REDIS_REPLY_ERROR ? rep->str :
		    "no slots served");
		freeReplyObject(rep);
		return KEEL_EUNAVAIL;
	}
	memcpy(old, r->map->slot, sizeof(old));
	keel_rc_map_clear_slots(r->map);
	for (i = 0; i < rep->elements; i++) {
		e = rep->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER ||
		    (m = e->element[2])->type != REDIS_REPLY_ARRAY ||
		    m->elements < 2 ||
		    m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER)
			goto bad;
		if ((node = node_named(r, m->element[0]->str,
		    (int)m->element[1]->integer, n)) < 0)
			continue;
		keel_rc_map_assign(r->map, (unsigned)e->element[0]->integer,
		    (unsigned)e->element[1]->integer, node);
	}
	freeReplyObject(rep);
	return KEEL_OK;
bad:
	memcpy(r->map->slot, old, sizeof(old));
	snprintf(r->errstr, sizeof(r->errstr), "CLUSTER SLOTS: a malformed "
	    "reply");
	freeReplyObject(rep);
	return KEEL_EUNAVAIL;
}

/*
 * Loads the slot map from the first node that answers: the current one
 * when its connection is up (a MOVED), then every node known (the
 * REDIS_URL node is node 0), a current one that just failed last.
 */
static enum keel_err
load_map(struct keel_redis *r)
{
	enum keel_err	 er = KEEL_EUNAVAIL;
	int		 n, first = r->cur, up = r->ctx != NULL;

	if (up && (er = load_from(r, first)) == KEEL_OK)
		goto ok;
	for (n = 0; n < r->map->nnodes; n++)
		if (n != first && (er = load_from(r, n)) == KEEL_OK)
			goto ok;
	if (!up && (er = load_from(r, first)) == KEEL_OK)
		goto ok;
	keel_log_warnx("redis: no cluster node gave its slot map: %s",
	    r->errstr);
	return er;
ok:
	r->stale = 0;
	return KEEL_OK;
}

/*
 * In cluster mode, runs the command in r->cmd on the master of slot (-1:
 * any node), following redirects; a reply is in *rep on KEEL_OK.  A map
 * load reuses r->cmd, so the command is formatted again from argv after
 * one.
 */
static enum keel_err
cluster_exchange(struct keel_redis *r, int slot, int argc,
    const char **argv, const size_t *argvlen, redisReply **rep)
{
	struct keel_rc_redirect	 rd;
	enum keel_rc_redir	 kind;
	enum keel_err		 er;
	int			 hops, n, ask = -1, moved = 0;

	*rep = NULL;
	if (r->stale) {
		(void)load_map(r);
		resp_format(&r->cmd, argc, argv, argvlen);
	}
	for (hops = 0;; hops++) {
		n = ask >= 0 ? ask : slot >= 0 ?
		    keel_rc_map_lookup(r->map, (unsigned)slot) : r->cur;
		if (n < 0) {
			snprintf(r->errstr, sizeof(r->errstr), "no cluster "
			    "node serves slot %d", slot);
			r->stale = 1;
			return KEEL_EUNAVAIL;
		}
		select_node(r, n);
		if ((er = exchange(r, ask >= 0, rep)) != KEEL_OK) {
			/*
			 * A node no one can connect to (its master
			 * failed over, or the slot moved while it was
			 * down): once, where a map loaded now puts the
			 * slot, when that is elsewhere.  No server saw
			 * the command, so it can't run twice.
			 */
			if (!r->unsent || moved++ > 0 || slot < 0 ||
			    ask >= 0 || load_map(r) != KEEL_OK ||
			    keel_rc_map_lookup(r->map, (unsigned)slot) == n)
				return er;
			keel_log_info("redis: node %s:%d unreachable; slot %d "
			    "is served elsewhere now, sent there",
			    r->map->node[n].host, r->map->node[n].port, slot);
			resp_format(&r->cmd, argc, argv, argvlen);
			continue;
		}
		if ((*rep)->type != REDIS_REPLY_ERROR || (kind =
		    keel_rc_redirect_parse((*rep)->str, (*rep)->len, &rd)) ==
		    KEEL_RC_NONE)
			return KEEL_OK;
		if (hops == MAX_REDIRECTS) {
			snprintf(r->errstr, sizeof(r->errstr), "more than %d "
			    "redirects (last: %s)", MAX_REDIRECTS,
			    (*rep)->str);
			keel_log_warnx("redis: %s", r->errstr);
			freeReplyObject(*rep);
			*rep = NULL;
			r->stale = 1;
			return KEEL_EUNAVAIL;
		}
		freeReplyObject(*rep);
		*rep = NULL;
		if ((n = node_named(r, rd.host, rd.port, r->cur)) < 0)
			return KEEL_EUNAVAIL;
		if (kind == KEEL_RC_MOVED) {
			keel_log_info("redis: slot %u moved to %s:%d; the map "
			    "is reloaded at the next call", rd.slot,
			    r->map->node[n].host, r->map->node[n].port);
			/* This slot now; the others at the next call. */
			keel_rc_map_assign(r->map, rd.slot, rd.slot, n);
			r->stale = 1;
			ask = -1;
			slot = (int)rd.slot;
		} else
			ask = n;
	}
}

/* The hash slot cmd routes by (rcluster.h), or -1 for any node. */
static int
cmd_slot(int argc, const char **argv, const size_t *argvlen)
{
	int	 k;

	if ((k = keel_rc_cmd_key(argc, argv, argvlen)) < 0)
		return -1;
	return (int)keel_rc_slot(argv[k], argvlen != NULL ? argvlen[k] :
	    strlen(argv[k]));
}

static enum keel_err cmd_run(struct keel_redis *, int, int, const char **,
		    const size_t *, struct keel_rreply **);

/* keel_redis_cmd at slot (-1: its key's; -2: any node). */
static enum keel_err
cmd_at(struct keel_redis *r, int slot, int argc, const char **argv,
    const size_t *argvlen, struct keel_rreply **out)
{
	if (out != NULL)
		*out = NULL;
	if (r->pending > 0) {
		keel_log_error("redis: a command while %zu sent are unread",
		    r->pending);
		return KEEL_EINTERNAL;
	}
	return cmd_run(r, slot, argc, argv, argvlen, out);
}

/* cmd_at, whatever is pending (cluster_send's replies wait apart). */
static enum keel_err
cmd_run(struct keel_redis *r, int slot, int argc, const char **argv,
    const size_t *argvlen, struct keel_rreply **out)
{
	redisReply	*rep = NULL;
	enum keel_err	 er;

	if (out != NULL)
		*out = NULL;
	resp_format(&r->cmd, argc, argv, argvlen);
	if (r->map == NULL)
		er = exchange(r, 0, &rep);
	else
		er = cluster_exchange(r, slot == -1 ? cmd_slot(argc, argv,
		    argvlen) : slot == -2 ? -1 : slot, argc, argv, argvlen,
		    &rep);
	if (er != KEEL_OK)
		return er;
	if (not_serving(rep)) {
		snprintf(r->errstr, sizeof(r->errstr), "%s", rep->str);
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
keel_redis_cmd(struct keel_redis *r, int argc, const char **argv,
    const size_t *argvlen, struct keel_rreply **out)
{
	return cmd_at(r, -1, argc, argv, argvlen, out);
}

/*
 * Cluster mode: a "sent" command runs at once on its key's node, its
 * redirects followed, and its reply waits in r->fifo for recv: the order
 * and the results of a pipeline, without its overlap (a pipeline's
 * commands may go to several nodes).
 */
static enum keel_err
cluster_send(struct keel_redis *r, int argc, const char **argv,
    const size_t *argvlen)
{
	struct keel_rreply	*rep = NULL;
	struct fifo_item	*it;
	enum keel_err		 er;

	if ((er = cmd_run(r, -1, argc, argv, argvlen, &rep)) != KEEL_OK) {
		fifo_clear(r);
		return er;
	}
	it = keel_calloc(1, sizeof(*it));
	it->rep = rep;
	if (r->fifo_tail != NULL)
		r->fifo_tail->next = it;
	else
		r->fifo = it;
	r->fifo_tail = it;
	r->pending++;
	return KEEL_OK;
}

enum keel_err
keel_redis_send(struct keel_redis *r, int argc, const char **argv,
    const size_t *argvlen)
{
	enum keel_err	 er;
	int		 done = 0;

	if (r->map != NULL)
		return cluster_send(r, argc, argv, argvlen);
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
	struct fifo_item *it;
	void		*v = NULL;

	*out = NULL;
	if (r->pending == 0) {
		keel_log_error("redis: a reply read with none pending");
		return KEEL_EINTERNAL;
	}
	if (r->map != NULL) {
		it = r->fifo;
		if ((r->fifo = it->next) == NULL)
			r->fifo_tail = NULL;
		*out = it->rep;
		free(it);
		r->pending--;
		return KEEL_OK;
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
	char			 nk[KEEL_TEXT_INT_MAX];
	enum keel_err		 er;
	int			 i, tries, slot;

	*out = NULL;
	/* A request's scripts take a dozen arguments: no malloc for them. */
	if ((size_t)argc + 3 <= sizeof(av_small) / sizeof(av_small[0])) {
		av = av_small;
		al = al_small;
	} else {
		av = keel_calloc((size_t)argc + 3, sizeof(*av));
		al = keel_calloc((size_t)argc + 3, sizeof(*al));
	}
	keel_text_int(nk, nkeys);
	av[0] = "EVALSHA";
	av[2] = nk;
	for (i = 0; i < argc; i++) {
		av[i + 3] = argv[i];
		al[i + 3] = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
	}
	al[0] = 7;
	al[2] = strlen(nk);
	/*
	 * Cluster mode: loaded where the script will run, its key's node.
	 * A single Redis has no slots (the CRC was ~7% of a request).
	 */
	slot = r->map != NULL && nkeys > 0 ? (int)keel_rc_slot(av[3],
	    al[3]) : -2;
	for (tries = 0; tries < 2; tries++) {
		if (script->sha[0] == '\0') {
			load[0] = "SCRIPT";
			load[1] = "LOAD";
			load[2] = script->lua;
			if ((er = cmd_at(r, slot, 3, load, NULL, &rep)) !=
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
		/*
		 * Cluster mode: a node that hasn't seen it (a redirect's,
		 * a new master's) runs the text, which it keeps too.
		 */
		if (rep->type == KEEL_R_ERROR && r->map != NULL &&
		    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
			keel_rreply_free(rep);
			rep = NULL;
			av[0] = "EVAL";
			al[0] = 4;
			av[1] = script->lua;
			al[1] = strlen(script->lua);
			if ((er = keel_redis_cmd(r, argc + 3, av, al, &rep)) !=
			    KEEL_OK)
				goto out;
			break;
		}
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
	if (r->map != NULL) {
		/* exchange() sets it on whichever node runs the command. */
		r->timeout_ms = timeout_ms;
		er = keel_redis_cmd(r, argc, argv, argvlen, out);
		r->timeout_ms = REDIS_TIMEOUT_MS;
		return er;
	}
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
