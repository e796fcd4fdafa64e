/* SPDX-License-Identifier: ISC */
/*
 * redis.c -- keel-stream's Redis connections on the loop (hiredis's
 * async API): one for commands (in cluster mode one per master, opened
 * on first use, by lib/redis.c's slot map) and the subscription.
 *
 * A connection that drops or fails to connect is tried again after a
 * backoff that doubles up to REDIS_BACKOFF_MAX_MS; an open that finds
 * one down tries it at once (open_wake), at most every REDIS_WAKE_MS.
 * Through sentinels a connection first asks them where the master is
 * (sentinel.c) and checks with ROLE that it found one.  Every command
 * connection loads the stream's scripts as it connects, and runs them
 * by sha from then on (run_script).  A MOVED or ASK answer marks the
 * slot map to load again (redirected).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>

#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "lua_scripts.h"
#include "stream.h"

#define REDIS_BACKOFF_MIN_MS	250
#define REDIS_BACKOFF_MAX_MS	5000
#define REDIS_WAKE_MS		200	/* opens' retries, at most this often */

const char *scripts[SCRIPT__MAX] = {	/* [SCRIPT_LIMIT]: at start */
	[SCRIPT_LEASE] = keel_lua_stream_lease,
	[SCRIPT_RENEW] = keel_lua_stream_renew,
	[SCRIPT_TICKET] = keel_lua_stream_ticket,
};

/* The backoff is up; an open's attempt under way decides instead. */
void
on_rretry(evutil_socket_t fd, short what, void *arg)
{
	struct rconn	*rc = arg;

	(void)fd;
	(void)what;
	if (rc->ac == NULL)
		rconn_start(rc);
}

/*
 * rc failed: tried again after its backoff, doubled.  An open's attempt
 * that fails leaves the backoff set before it as it is (rconn_wake).
 */
void
rconn_later(struct rconn *rc)
{
	struct timeval	 tv;

	if (W.term || evtimer_pending(rc->retry, NULL))
		return;
	rc->backoff_ms = rc->backoff_ms == 0 ? REDIS_BACKOFF_MIN_MS :
	    rc->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS :
	    rc->backoff_ms * 2;
	tv = tv_ms(rc->backoff_ms);
	evtimer_add(rc->retry, &tv);
}

static void
on_rconnect(const redisAsyncContext *ac, int status)
{
	struct rconn	*rc = ac->data;

	if (status != REDIS_OK) {
		keel_log_warnx("redis (%s): connect: %s", rc->name, ac->errstr);
		rc->ac = NULL;		/* hiredis frees it */
		if (W.rc != NULL)
			keel_redis_map_stale(W.rc);
		rconn_later(rc);
		return;
	}
	rc->up = true;
	rc->backoff_ms = 0;
	evtimer_del(rc->retry);		/* an open's attempt got there */
	keel_log_info("redis (%s): connected", rc->name);
}

static void
on_rdisconnect(const redisAsyncContext *ac, int status)
{
	struct rconn	*rc = ac->data;

	if (rc->up)
		keel_log_warnx("redis (%s): connection lost%s%s", rc->name,
		    status != REDIS_OK ? ": " : "",
		    status != REDIS_OK ? ac->errstr : "");
	if (rc->subscriber && rc->up)
		rc->lost = true;
	/* Cluster mode: the node may have failed over; ask the map again. */
	if (W.rc != NULL)
		keel_redis_map_stale(W.rc);
	rc->up = false;
	rc->ac = NULL;
	rconn_later(rc);
}

/* A SCRIPT LOAD's answer: the sha to run the script by from now on. */
static void
on_script(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply	*r = reply;
	char		*sha = privdata;

	(void)ac;
	if (r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40)
		memcpy(sha, r->str, 41);
}

/*
 * Runs a stream script on key with up to three arguments (NULL: fewer):
 * by sha once loaded on this connection (an open and every renewal
 * would otherwise send the script's text), by text until then.
 */
int
run_script(struct rconn *rc, enum script which, redisCallbackFn *fn,
    void *privdata, const char *key, const char *a1, const char *a2,
    const char *a3)
{
	const char	*argv[7];
	int		 argc = 0;
	bool		 sha = rc->sha[which][0] != '\0';

	argv[argc++] = sha ? "EVALSHA" : "EVAL";
	argv[argc++] = sha ? rc->sha[which] : scripts[which];
	argv[argc++] = "1";
	argv[argc++] = key;
	if (a1 != NULL)
		argv[argc++] = a1;
	if (a2 != NULL)
		argv[argc++] = a2;
	if (a3 != NULL)
		argv[argc++] = a3;
	return redisAsyncCommandArgv(rc->ac, fn, privdata, argc, argv, NULL);
}

/* Runs a stream script with its arguments (numkeys first), as above. */
int
run_script_argv(struct rconn *rc, enum script which, redisCallbackFn *fn,
    void *privdata, int argc, const char **argv)
{
	const char	*all[2 + 5 + 5 * KEEL_LIMIT_CALL_MAX];
	int		 n = 0, i;
	bool		 sha = rc->sha[which][0] != '\0';

	if (argc > (int)KEEL_NELEM(all) - 2)
		return REDIS_ERR;
	all[n++] = sha ? "EVALSHA" : "EVAL";
	all[n++] = sha ? rc->sha[which] : scripts[which];
	for (i = 0; i < argc; i++)
		all[n++] = argv[i];
	return redisAsyncCommandArgv(rc->ac, fn, privdata, n, all, NULL);
}

/* An answer that is a redirect: the slot map is loaded again first. */
bool
redirected(const redisReply *r)
{
	if (r == NULL || r->type != REDIS_REPLY_ERROR || W.rc == NULL ||
	    (strncmp(r->str, "MOVED ", 6) != 0 &&
	    strncmp(r->str, "ASK ", 4) != 0))
		return false;
	keel_log_info("redis: %s; the slot map is loaded again", r->str);
	keel_redis_map_stale(W.rc);
	return true;
}

/* For the commands whose answer is not otherwise read. */
void
on_redirect(redisAsyncContext *ac, void *reply, void *privdata)
{
	(void)ac;
	(void)privdata;
	(void)redirected(reply);
}

/*
 * The connection for commands on key, up or not: the one, or in cluster
 * mode the one to its slot's master (made and started now if new).
 * NULL when there is no map, or no room for another master.
 */
static struct rconn *
conn_for(const char *key)
{
	struct rconn	*rc;
	char		 host[KEEL_RC_HOST_MAX];
	int		 port, i;

	if (W.rc == NULL)
		return &W.cmd;
	if (keel_redis_node_of(W.rc, key, strlen(key), host, sizeof(host),
	    &port) != KEEL_OK) {
		keel_log_warnx("redis: %s", keel_redis_errstr(W.rc));
		return NULL;
	}
	for (i = 0; i < W.nnodes; i++)
		if (W.nodes[i]->port == port &&
		    strcmp(W.nodes[i]->host, host) == 0)
			return W.nodes[i];
	if (W.nnodes == KEEL_RC_NODES_MAX)
		return NULL;
	rc = keel_calloc(1, sizeof(*rc));
	rc->name = "commands";
	snprintf(rc->host, sizeof(rc->host), "%s", host);
	rc->port = port;
	rc->retry = must(evtimer_new(W.base, on_rretry, rc));
	W.nodes[W.nnodes++] = rc;
	rconn_start(rc);
	return rc;
}

/*
 * The connection for commands on key (conn_for), NULL when there is
 * none right now (down, or no map).  One that is connecting is given:
 * hiredis holds the commands until it is up, and answers them NULL if
 * it fails.
 */
struct rconn *
cmd_for(const char *key)
{
	struct rconn	*rc = conn_for(key);

	return rc != NULL && rc->ac != NULL ? rc : NULL;
}

/*
 * rc is down and an open needs it: try now rather than wait out the
 * backoff (up to REDIS_BACKOFF_MAX_MS), so a Redis that is back serves
 * this open, not one some seconds later.  Only between attempts (none
 * under way: no context, the retry timer set), and not within
 * REDIS_WAKE_MS of rc's last one.  Through sentinels, never a lookup:
 * a partition that drops their packets would make every open wait for
 * one (SENTINEL_MS a sentinel), and a crowd of opens would be a crowd
 * of lookups.  Only when their last answer named a master is it
 * connected to again; that lookup failing, rc waits for its backoff,
 * which asks them.  The backoff stays set: opens that came more often
 * than it would otherwise put it off for ever, and through sentinels
 * the lookup with it (a master that moved never found).  True when an
 * attempt was made.
 */
static bool
rconn_wake(struct rconn *rc, double now)
{
	if (rc->ac != NULL || rc->looking ||
	    !evtimer_pending(rc->retry, NULL) ||
	    now - rc->tried < REDIS_WAKE_MS)
		return false;
	if (W.sentinel != NULL && rc->host[0] == '\0' && !W.master_known)
		return false;
	rconn_connect(rc);
	return true;
}

/*
 * An open needs the subscription (its stream gets live events) and the
 * connections for its keys: wake those that are down.  One limit for
 * them all, REDIS_WAKE_MS from the last open that woke any, so a crowd
 * of opens while Redis is down is not a crowd of connects.  Not from a
 * hiredis callback: a context may be being freed under it.
 */
void
open_wake(const char *skey, const char *tkey)
{
	struct rconn	*rcs[3] = { &W.sub, NULL, NULL };
	double		 now = now_ms();
	bool		 woke = false;
	size_t		 i;

	if (W.term || now - W.woke < REDIS_WAKE_MS)
		return;
	if (skey[0] != '\0')
		rcs[1] = conn_for(skey);
	if (tkey[0] != '\0')
		rcs[2] = conn_for(tkey);
	/* The same connection twice is tried once: its tried is now. */
	for (i = 0; i < sizeof(rcs) / sizeof(rcs[0]); i++)
		if (rcs[i] != NULL && rconn_wake(rcs[i], now))
			woke = true;
	if (woke)
		W.woke = now;
}

/*
 * Through sentinels, the ROLE asked right after connecting: a server
 * that isn't the master (a stale answer, or one demoted since) is left,
 * and the reconnection asks the sentinels again.
 */
static void
on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rconn	*rc = privdata;

	if (reply == NULL || keel_sentinel_role_is_master(reply))
		return;
	/* Opens wait for a lookup now, not for this address again. */
	W.master_known = false;
	keel_log_warnx("redis (%s): the sentinels' master is not one (yet); "
	    "reconnecting", rc->name);
	redisAsyncDisconnect(ac);
}

/*
 * Connects rc; through sentinels (not in cluster mode) once they have
 * said where the master is: the lookup answers later.
 */
void
rconn_start(struct rconn *rc)
{
	if (W.sentinel != NULL && rc->host[0] == '\0' && W.rc == NULL) {
		rc->tried = now_ms();
		lookup_start(rc);
		return;
	}
	rconn_connect(rc);
}

/*
 * Connects rc; through sentinels to the master they named last (a
 * lookup's answer, or an open's wake).
 */
void
rconn_connect(struct rconn *rc)
{
	const struct keel_url_redis	*a = &W.raddr;
	redisAsyncContext		*ac;
	int				 i;

	rc->tried = now_ms();
	/* Cluster mode: the subscription on slot 0's master by the map
	 * (loaded again after it failed); any node hears every PUBLISH. */
	if (rc->subscriber && W.rc != NULL && keel_redis_node_of(W.rc, "", 0,
	    rc->host, sizeof(rc->host), &rc->port) != KEEL_OK) {
		keel_log_warnx("redis (%s): %s", rc->name,
		    keel_redis_errstr(W.rc));
		rconn_later(rc);
		return;
	}
	if (rc->host[0] != '\0')
		ac = redisAsyncConnect(rc->host, rc->port);
	else if (W.sentinel != NULL)
		ac = redisAsyncConnect(W.master, W.master_port);
	else
		ac = a->path != NULL ? redisAsyncConnectUnix(a->path) :
		    redisAsyncConnect(a->host, a->port);
	if (ac == NULL || ac->err) {
		keel_log_warnx("redis (%s): %s", rc->name,
		    ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		rconn_later(rc);
		return;
	}
	ac->data = rc;
	if (redisLibeventAttach(ac, W.base) != REDIS_OK)
		keel_log_fatalx("redis: cannot attach to the event loop");
	redisAsyncSetConnectCallback(ac, on_rconnect);
	redisAsyncSetDisconnectCallback(ac, on_rdisconnect);
	rc->ac = ac;
	if (a->password != NULL)
		redisAsyncCommand(ac, NULL, NULL, "AUTH %s", a->password);
	if (W.sentinel != NULL)
		redisAsyncCommand(ac, on_role, rc, "ROLE");
	if (rc->subscriber) {
		redisAsyncCommand(ac, on_pmessage, NULL, "PSUBSCRIBE %s",
		    NOTIFY_PATTERN);
		return;
	}
	if (a->db != 0 && W.rc == NULL)
		redisAsyncCommand(ac, NULL, NULL, "SELECT %d", a->db);
	for (i = 0; i < SCRIPT__MAX; i++) {
		rc->sha[i][0] = '\0';
		redisAsyncCommand(ac, on_script, rc->sha[i], "SCRIPT LOAD %s",
		    scripts[i]);
	}
}
