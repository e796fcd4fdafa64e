/* SPDX-License-Identifier: ISC */
/*
 * sentinel.c -- where the Redis master is, asked of REDIS_SENTINELS on
 * the loop like any other Redis conversation (hiredis's async API).
 *
 * One lookup at a time, shared by every connection waiting for it
 * (rconn->looking): each sentinel is given SENTINEL_MS in turn, AUTH
 * first when it has a password, then SENTINEL get-master-addr-by-name.
 * The first answer is the master (W.master, W.master_port) and every
 * waiting connection connects to it (redis.c); when none can say, each
 * waits for its backoff.  The lookup's own state is this file's; what
 * redis.c reads of its answer is W's.
 */
#include "config.h"

#include <stdio.h>

#include <hiredis/adapters/libevent.h>

#include "keel/log.h"
#include "keel/mem.h"
#include "stream.h"

#define SENTINEL_MS	250		/* a sentinel's time to answer */

/*
 * The sentinels asked where the master is (lookup_start): one at a time,
 * the next when one fails or stays silent past SENTINEL_MS.  Callbacks
 * of a context that is no longer ac are dropped: hiredis answers a
 * context's pending commands with NULL as it frees it.
 */
struct lookup {
	bool			 running;
	redisAsyncContext	*ac;		/* the sentinel asked now */
	size_t			 i;		/* its place, keel_sentinel_nth */
	struct event		*timer;		/* its SENTINEL_MS */
	char			 err[512];	/* the last one's failure */
};

/* The lookup under way, if any. */
static struct lookup	 look;

static void	lookup_ask(size_t i);

/*
 * The lookup is over: through the master it found (W.master), or, none
 * could say (logged for each connection, as a failed connect is), on
 * their backoff.  Opens wake nothing until a lookup finds one.
 */
static void
lookup_done(bool found)
{
	struct rconn	*rcs[2] = { &W.cmd, &W.sub };
	size_t		 i;

	look.running = false;
	W.master_known = found;
	for (i = 0; i < KEEL_NELEM(rcs); i++) {
		if (!rcs[i]->looking)
			continue;
		rcs[i]->looking = false;
		if (found && !W.term)
			rconn_connect(rcs[i]);
		else {
			keel_log_warnx("redis (%s): %s", rcs[i]->name,
			    look.err);
			rconn_later(rcs[i]);
		}
	}
}

/*
 * The sentinel asked now failed (why: logged with the lookup's end if
 * it is the last); the next is asked.  Its context is left, to hiredis
 * when it is freeing it already (gone), freed here otherwise.
 */
static void
lookup_next(const char *why, bool gone)
{
	const struct keel_sentinel_addr	*a = keel_sentinel_nth(W.sentinel,
					    look.i);
	redisAsyncContext		*ac = look.ac;

	snprintf(look.err, sizeof(look.err), "sentinel %s:%d: %s",
	    a->host, a->port, why);
	look.ac = NULL;
	evtimer_del(look.timer);
	if (!gone && ac != NULL)
		redisAsyncFree(ac);	/* its callbacks find it not W.look's */
	lookup_ask(look.i + 1);
}

static void
on_look_timeout(evutil_socket_t fd, short what, void *arg)
{
	char	 why[64];

	(void)fd;
	(void)what;
	(void)arg;
	snprintf(why, sizeof(why), "no answer within %d ms", SENTINEL_MS);
	lookup_next(why, false);
}

static void
on_look_connect(const redisAsyncContext *ac, int status)
{
	/* On failure hiredis frees ac once this returns. */
	if (ac == look.ac && status != REDIS_OK)
		lookup_next(ac->errstr, true);
}

static void
on_look_disconnect(const redisAsyncContext *ac, int status)
{
	(void)status;
	if (ac == look.ac)
		lookup_next("connection lost", true);
}

/* AUTH's answer: an error ends this sentinel's turn. */
static void
on_look_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply	*r = reply;
	char		 why[160];

	(void)privdata;
	if (ac != look.ac || r == NULL || r->type != REDIS_REPLY_ERROR)
		return;
	snprintf(why, sizeof(why), "AUTH: %s", r->str);
	lookup_next(why, false);
}

/*
 * SENTINEL get-master-addr-by-name's answer: the master's address, the
 * lookup's end; anything else, the next sentinel.  A NULL reply is
 * hiredis freeing ac (the sentinel hung up).
 */
static void
on_look_answer(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply	*r = reply;
	char		 host[KEEL_SENTINEL_HOST_MAX];
	int		 port;

	(void)privdata;
	if (ac != look.ac)
		return;
	if (!keel_sentinel_master_reply(r, host, sizeof(host), &port)) {
		lookup_next(r == NULL ? (ac->err != 0 ? ac->errstr :
		    "connection lost") : r->type == REDIS_REPLY_ERROR ? r->str :
		    r->type == REDIS_REPLY_NIL ? "no master by that name" :
		    "unexpected answer", r == NULL);
		return;
	}
	look.ac = NULL;
	evtimer_del(look.timer);
	redisAsyncFree(ac);	/* in its callback: freed once this returns */
	keel_sentinel_answered(W.sentinel, look.i, host, port);
	snprintf(W.master, sizeof(W.master), "%s", host);
	W.master_port = port;
	lookup_done(true);
}

/*
 * Asks the i-th sentinel (keel_sentinel_nth), or the next that can be
 * asked; past the last, the lookup is over and found nothing.
 */
static void
lookup_ask(size_t i)
{
	const struct keel_sentinel_addr	*a;
	const char			*pw;
	redisAsyncContext		*ac;
	struct timeval			 tv = tv_ms(SENTINEL_MS);

	for (; i < keel_sentinel_count(W.sentinel); i++) {
		a = keel_sentinel_nth(W.sentinel, i);
		if ((ac = redisAsyncConnect(a->host, a->port)) == NULL ||
		    ac->err != 0) {
			snprintf(look.err, sizeof(look.err),
			    "sentinel %s:%d: %s", a->host, a->port,
			    ac != NULL ? ac->errstr : "out of memory");
			if (ac != NULL)
				redisAsyncFree(ac);
			continue;
		}
		if (redisLibeventAttach(ac, W.base) != REDIS_OK)
			keel_log_fatalx("redis: cannot attach to the event "
			    "loop");
		redisAsyncSetConnectCallback(ac, on_look_connect);
		redisAsyncSetDisconnectCallback(ac, on_look_disconnect);
		/* Sent once connected, in order (hiredis queues them). */
		if ((pw = keel_sentinel_password(W.sentinel)) != NULL)
			redisAsyncCommand(ac, on_look_auth, NULL, "AUTH %s",
			    pw);
		redisAsyncCommand(ac, on_look_answer, NULL,
		    "SENTINEL get-master-addr-by-name %s",
		    keel_sentinel_name(W.sentinel));
		look.ac = ac;
		look.i = i;
		evtimer_add(look.timer, &tv);
		return;
	}
	lookup_done(false);
}

/*
 * rc waits for the sentinels' answer: the lookup under way, or one
 * started now.  The loop goes on meanwhile, every stream served.
 */
void
lookup_start(struct rconn *rc)
{
	rc->looking = true;
	if (look.running)
		return;
	look.running = true;
	look.err[0] = '\0';
	lookup_ask(0);
}

/* At exit: the sentinel asked now is left. */
void
lookup_stop(void)
{
	redisAsyncContext	*ac = look.ac;

	look.ac = NULL;
	look.running = false;
	if (ac != NULL)
		redisAsyncFree(ac);
	if (look.timer != NULL)
		event_free(look.timer);
}

void
lookup_init(struct event_base *base)
{
	look.timer = must(evtimer_new(base, on_look_timeout, NULL));
}
