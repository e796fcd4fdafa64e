/* SPDX-License-Identifier: ISC */
/*
 * open.c -- a stream's open, from its credentials to its 200 or its
 * refusal (stream.c's on_request starts it).
 *
 * Each step sends its Redis commands at once and counts their answers
 * down (auth_wait); at the last, auth_step gives the verdict.  First
 * the credentials: a bearer token's session (HMGET), a ticket taken
 * with its session (stream_ticket.lua; in cluster mode GETDEL, then the
 * session).  Then, the session known, stream_check: the stream joins
 * its user's list, takes a lease among the user's streams, reads the
 * session again, and counts in the user's rate windows.  Then 200, the
 * retry hint and the replay.  A 401 or 405 counts in its client
 * address's windows first (refuse_counted), as the apps' do.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "keel/addr.h"
#include "keel/cors.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "stream.h"

#define RETRY_HINT_MS	2000		/* the client's reconnect delay */

/*
 * Every answer of a step of the open counts down; at the last, the
 * verdict.  First the credentials (a token's session, a ticket and its
 * session), then, the session known, the lease and the session read
 * again (stream_check); then 200.
 */
static void	stream_check(struct stream *s);
static void	on_limit(redisAsyncContext *ac, void *reply, void *privdata);
static void	limit_failed(struct stream *s);
static void	refuse_limited(struct stream *s);

void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)arg);

	(void)fd;
	(void)what;
	if (s == NULL || s->open)
		return;
	stream_refuse(s, 503, "unavailable",
	    "Sessions could not be checked in time.", "1");
}

/*
 * The client went: its stream was open, or its 200 found it gone
 * (libevent reads no more of a connection whose request is being
 * answered until the answer starts, so a client that left during the
 * checks is seen then).  libevent 2.1 (http.c,
 * evhttp_connection_incoming_fail) took the request off the connection
 * before freeing it, the answer being unfinished: the request is ours
 * to free, or the worker keeps it, headers and all, until it exits.
 * One still on its connection (those evhttp_free frees at exit) is
 * libevent's.
 */
void
on_close(struct evhttp_connection *evcon, void *arg)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)arg);

	(void)evcon;
	if (s == NULL)
		return;
	if (s->req != NULL && evhttp_request_get_connection(s->req) == NULL)
		evhttp_request_free(s->req);
	s->req = NULL;
	stream_free(s, "client left");
}

/* Refuses s (not open yet) with an error reply, and forgets it. */
void
stream_refuse(struct stream *s, int status, const char *code,
    const char *msg, const char *retry_after)
{
	struct evhttp_request	*req = s->req;

	struct answer		 a = s->ans;

	evhttp_connection_set_closecb(s->evcon, NULL, NULL);
	stream_free(s, code);
	reply_error(&a, req, status, code, msg, retry_after);
}

/* keel_limit_headers_each()'s add, for libevent's headers. */
static void
ev_add(void *h, const char *name, const char *value)
{
	evhttp_add_header(h, name, value);
}

/*
 * The RateLimit fields of the limiters the open was checked by (none
 * when limits are off or failed open), as keel_limit_after() writes
 * them for the apps; Retry-After too when one is full.  Its value into
 * retry (n bytes) when retry is not NULL.
 */
static void
limit_headers(struct stream *s, char *retry, size_t n)
{
	struct evkeyvalq		*h;
	struct keel_limit_headers	 lh;

	if (s->nlim == 0)
		return;
	h = evhttp_request_get_output_headers(s->req);
	keel_limit_format(s->lim, s->nlim, &lh);
	keel_limit_headers_each(&lh, ev_add, h);
	if (retry != NULL)
		snprintf(retry, n, "%s", strcmp(lh.reset, "0") == 0 ? "1" :
		    lh.reset);
}

/* The lease is held: 200, the retry hint, and the replay. */
static void
stream_start(struct stream *s)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(s->req);
	struct bufferevent	*bev;
	struct keel_buf		 b = { NULL, 0, 0 };

	evtimer_del(s->deadline);
	limit_headers(s, NULL, 0);
	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-cache, no-store");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	answered(&s->ans, s->req, 200);
	evhttp_send_reply_start(s->req, 200, "OK");
	/* No read timeout: an idle stream reads nothing for hours. */
	if ((bev = evhttp_connection_get_bufferevent(s->evcon)) != NULL)
		bufferevent_set_timeouts(bev, NULL, NULL);
	s->open = true;
	keel_metrics_add(KEEL_M_STREAM_OPENS, "", 1);
	keel_buf_printf(&b, "retry: %d\n\n", RETRY_HINT_MS);
	if (stream_write(s, &b)) {
		mark_dirty(s);
		pump();
	}
	keel_buf_free(&b);
}

/*
 * The client as the apps name an anonymous caller in its limits' keys
 * (keel_http_client: "a:<address>"), into out: the peer lighttpd saw is
 * the X-Forwarded-For hop it appended, the last; the hops before it are
 * what the client sent, believed as keel_addr_client() says.
 */
static void
client_of(struct evhttp_request *req, char out[2 + KEEL_ADDR_MAX])
{
	const char	*xff = evhttp_find_header(
			    evhttp_request_get_input_headers(req),
			    "X-Forwarded-For");
	const char	*last;
	char		*before = NULL, addr[KEEL_ADDR_MAX];

	if (xff == NULL)
		xff = "unknown";
	if ((last = strrchr(xff, ',')) != NULL) {
		before = keel_strndup(xff, (size_t)(last - xff));
		xff = last + 1;
	}
	xff += strspn(xff, " \t");
	if (!keel_addr_client(&W.cfg->client, xff, before, addr))
		memcpy(addr, "unknown", sizeof("unknown"));
	free(before);
	snprintf(out, 2 + KEEL_ADDR_MAX, "a:%s", addr);
}

/*
 * s is refused with status (401, 405), an answer that names no user:
 * as the apps' such answers, it counts in its client's windows (api,
 * and read for a GET, write for another method) and carries their
 * RateLimit headers; the limits' answer gives the verdict (auth_step).
 */
void
refuse_counted(struct stream *s, int status)
{
	struct keel_limit_call	 lc;
	struct rconn		*rc;
	char			 client[2 + KEEL_ADDR_MAX], member[128];
	enum evhttp_cmd_type	 m = evhttp_request_get_command(s->req);

	s->refusal = status;
	client_of(s->req, client);
	snprintf(member, sizeof(member), "%s%" PRIu64, W.member, s->sid);
	keel_limit_call_client(&lc, W.cfg, client, m == EVHTTP_REQ_GET ||
	    m == EVHTTP_REQ_HEAD, member, W.rc != NULL);
	s->nlim = lc.n;
	memcpy(s->lim, lc.res, sizeof(s->lim));
	if (lc.n > 0) {
		if ((rc = cmd_for(lc.argv[1])) != NULL && run_script_argv(rc,
		    SCRIPT_LIMIT, on_limit, (void *)(uintptr_t)s->sid,
		    lc.argc, lc.argv) == REDIS_OK) {
			s->auth_wait++;
			return;
		}
		limit_failed(s);
	}
	refuse_limited(s);
}

/* The limits of a refusal answered (or could not be read): its verdict. */
static void
refuse_limited(struct stream *s)
{
	char	 retry[24];

	if (s->limit_down) {
		stream_refuse(s, 503, "unavailable",
		    "Rate limits can't be checked right now; retry later.",
		    "5");
		return;
	}
	limit_headers(s, retry, sizeof(retry));
	if (s->limited)
		stream_refuse(s, 429, "rate_limited",
		    "Too many requests; retry later.", retry);
	else if (s->refusal == 405)
		stream_refuse(s, 405, "method_not_allowed",
		    "Method not allowed.", NULL);
	else
		stream_refuse(s, 401, "unauthorized",
		    "A valid session or stream ticket is required.", NULL);
}

static void
auth_step(struct stream *s)
{
	char	 retry[24];

	if (--s->auth_wait > 0)
		return;
	if (s->refusal != 0)
		refuse_limited(s);
	else if (s->auth_down)
		stream_refuse(s, 503, "unavailable",
		    "Sessions cannot be checked right now.", "1");
	else if (s->auth_bad && !s->checking)
		refuse_counted(s, 401);
	else if (s->auth_bad) {
		/* Its user's limits counted it (stream_check). */
		limit_headers(s, NULL, 0);
		stream_refuse(s, 401, "unauthorized",
		    "A valid session or stream ticket is required.", NULL);
	} else if (!s->checking)
		stream_check(s);
	else if (s->limit_down)
		stream_refuse(s, 503, "unavailable",
		    "Rate limits can't be checked right now; retry later.",
		    "5");
	else if (s->limited) {
		limit_headers(s, retry, sizeof(retry));
		stream_refuse(s, 429, "rate_limited",
		    "Too many requests; retry later.", retry);
	} else if (s->crowded)
		stream_refuse(s, 429, "rate_limited",
		    "Too many open notification streams for this user.", "5");
	else
		stream_start(s);
}

static void
on_lease(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)privdata);
	redisReply	*r = reply;

	(void)redirected(r);
	/* A master demoted under us (a failover): reconnect, through
	 * the sentinels when there are some. */
	if (r != NULL && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "READONLY ", 9) == 0)
		redisAsyncDisconnect(ac);
	if (s == NULL || s->open)
		return;
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		s->auth_down = true;
	else if (r->integer != 1)
		s->crowded = true;
	else
		s->leased = true;
	auth_step(s);
}

/* The session read again once the stream is listed: EXISTS's answer. */
static void
on_recheck(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)privdata);
	redisReply	*r = reply;

	(void)ac;
	(void)redirected(r);
	if (s == NULL || s->open)
		return;
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		s->auth_down = true;
	else if (r->integer != 1)
		s->auth_bad = true;
	auth_step(s);
}

/* The rate limits could not be read: open, or closed as configured. */
static void
limit_failed(struct stream *s)
{
	if (keel_limit_call_down(W.cfg, s->lim, s->nlim))
		s->limit_down = true;
	else
		keel_log_warnx("stream: rate limits unavailable; failing "
		    "open (user %lld)", (long long)s->uid);
	s->nlim = 0;
}

/*
 * The rate limits' answer (limit.c's script): a full window is a 429;
 * an answer that is none fails open, unless a limiter fails closed.
 */
static void
on_limit(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)privdata);
	redisReply	*r = reply;
	long long	 vals[2 + 2 * KEEL_LIMIT_CALL_MAX];
	size_t		 i;
	bool		 ok, admitted = false;

	(void)ac;
	(void)redirected(r);
	if (s == NULL || s->open)
		return;
	ok = r != NULL && r->type == REDIS_REPLY_ARRAY &&
	    r->elements <= KEEL_NELEM(vals);
	for (i = 0; ok && i < r->elements; i++) {
		ok = r->element[i]->type == REDIS_REPLY_INTEGER;
		vals[i] = ok ? r->element[i]->integer : 0;
	}
	if (!ok || !keel_limit_call_reply(s->lim, s->nlim, vals,
	    r->elements, &admitted))
		limit_failed(s);
	else if (!admitted)
		s->limited = true;
	auth_step(s);
}

/*
 * The session is known: the stream joins its user's list, so the news
 * of the session's end finds it from now on (session_gone), then takes
 * a place among the user's streams and reads the session again, both
 * at once.  The read sees an end that came before the stream was
 * listed, when the announcement found nothing (the two connections'
 * answers may come in either order).
 */
static void
stream_check(struct stream *s)
{
	char		 key[64], member[128], max[16], lease[16];
	char		 skey[SESS_KEY_MAX];
	struct keel_limit_call lc;
	struct rconn	*rc;
	void		*sid = (void *)(uintptr_t)s->sid;

	user_add(s);
	s->listed = true;
	s->checking = true;
	open_key(key, sizeof(key), s->uid);
	snprintf(member, sizeof(member), "%s%" PRIu64, W.member, s->sid);
	snprintf(max, sizeof(max), "%d", W.cfg->stream_per_user);
	snprintf(lease, sizeof(lease), "%d", W.lease_ms);
	if ((rc = cmd_for(key)) != NULL && run_script(rc, SCRIPT_LEASE,
	    on_lease, sid, key, member, max, lease) == REDIS_OK)
		s->auth_wait++;
	else
		s->auth_down = true;
	sess_key(skey, s->sess);
	if ((rc = cmd_for(skey)) != NULL && redisAsyncCommand(rc->ac,
	    on_recheck, sid, "EXISTS %s", skey) == REDIS_OK)
		s->auth_wait++;
	else
		s->auth_down = true;
	/* An /api route: the user's api and read windows count it. */
	keel_limit_call_init(&lc, W.cfg, s->uid, member, W.rc != NULL);
	s->nlim = lc.n;
	memcpy(s->lim, lc.res, sizeof(s->lim));
	if (lc.n > 0) {
		if ((rc = cmd_for(lc.argv[1])) != NULL && run_script_argv(rc,
		    SCRIPT_LIMIT, on_limit, sid, lc.argc, lc.argv) == REDIS_OK)
			s->auth_wait++;
		else
			limit_failed(s);
	}
	if (s->auth_wait == 0)
		stream_refuse(s, 503, "unavailable",
		    "Sessions cannot be checked right now.", "1");
}

/*
 * A session as the first n elements of r hold it, [uid, role, exp, ...]
 * as auth.c stores it: its uid, *exp set; 0 when it is none, malformed
 * or over.
 */
static int64_t
session_of(const redisReply *r, size_t n, time_t *exp)
{
	int64_t	 uid, e;
	size_t	 i;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
		return 0;
	for (i = 0; i < n; i++)
		if (r->element[i]->type != REDIS_REPLY_STRING)
			return 0;
	if (!keel_parse_int64(r->element[0]->str, 1, INT64_MAX, &uid) ||
	    keel_auth_role_parse(r->element[1]->str) == 0 ||
	    !keel_parse_int64(r->element[2]->str, 0, INT64_MAX, &e) ||
	    e <= (int64_t)time(NULL))
		return 0;
	*exp = (time_t)e;
	return uid;
}

/*
 * One credential's session: uid's (0: none), id, ending at exp (0: not
 * known yet).  When a request brings both a token and a ticket, both
 * must name the same session.
 */
static void
auth_got(struct stream *s, int64_t uid, const unsigned char *id, time_t exp)
{
	if (uid == 0 || (s->uid != 0 && s->uid != uid) ||
	    (s->have_sess && memcmp(s->sess, id, SESS_BYTES) != 0)) {
		s->auth_bad = true;
		return;
	}
	s->uid = uid;
	if (id != s->sess)
		memcpy(s->sess, id, SESS_BYTES);
	s->have_sess = true;
	if (exp != 0)
		s->exp = exp;
}

/* A token's session (HMGET), or in cluster mode a ticket's. */
void
on_auth_session(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)privdata);
	redisReply	*r = reply;
	time_t		 exp = 0;
	int64_t		 uid;

	(void)ac;
	(void)redirected(r);
	if (s == NULL || s->open)
		return;
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		s->auth_down = true;
	else {
		uid = session_of(r, 3, &exp);
		auth_got(s, uid, s->sess, exp);
	}
	auth_step(s);
}

/*
 * Cluster mode: a ticket's value, "<uid>:<session id>", taken by
 * GETDEL; its session is in another slot, read next (the answer goes
 * to on_auth_session, as a token's does).
 */
static void
ticket_session(struct stream *s, const char *v, size_t len)
{
	const char	*colon = memchr(v, ':', len);
	char		 num[KEEL_TEXT_INT_MAX], skey[SESS_KEY_MAX];
	unsigned char	 id[SESS_BYTES];
	struct rconn	*rc;
	int64_t		 uid = 0;
	size_t		 n;

	if (colon == NULL || (n = (size_t)(colon - v)) >= sizeof(num) ||
	    !sess_parse(colon + 1, len - n - 1, id)) {
		s->auth_bad = true;
		return;
	}
	memcpy(num, v, n);
	num[n] = '\0';
	(void)keel_parse_int64(num, 1, INT64_MAX, &uid);
	auth_got(s, uid, id, 0);
	if (s->auth_bad)
		return;
	sess_key(skey, s->sess);
	if ((rc = cmd_for(skey)) != NULL && redisAsyncCommand(rc->ac,
	    on_auth_session, (void *)(uintptr_t)s->sid,
	    "HMGET %s uid role exp", skey) == REDIS_OK)
		s->auth_wait++;
	else
		s->auth_down = true;
}

/*
 * A ticket's answer: stream_ticket.lua's [uid, role, exp, session id]
 * (nil: unknown, used, or its session over), or in cluster mode
 * GETDEL's value.
 */
void
on_auth_ticket(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)privdata);
	redisReply	*r = reply;
	unsigned char	 id[SESS_BYTES];
	time_t		 exp = 0;
	int64_t		 uid;

	(void)ac;
	(void)redirected(r);
	if (s == NULL || s->open)
		return;
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		s->auth_down = true;
	else if (r->type == REDIS_REPLY_STRING)
		ticket_session(s, r->str, r->len);
	else if ((uid = session_of(r, 4, &exp)) != 0 &&
	    sess_parse(r->element[3]->str, r->element[3]->len, id))
		auth_got(s, uid, id, exp);
	else
		s->auth_bad = true;
	auth_step(s);
}

/*
 * The credentials' Redis keys: the session a bearer token names
 * (skey), the ticket's (tkey); either may be empty, not both.  False
 * when there is none, or one has not the shape of a token.
 */
bool
credentials(struct evhttp_request *req, const struct evkeyvalq *query,
    char skey[SESS_KEY_MAX], char tkey[KEEL_NOTIFY_TICKET_KEY_MAX])
{
	const char	*authz, *ticket;
	char		 id[KEEL_AUTH_ID_LEN + 1];

	skey[0] = tkey[0] = '\0';
	authz = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	ticket = evhttp_find_header(query, "ticket");
	if (authz == NULL && ticket == NULL)
		return false;
	if (authz != NULL) {
		if (strncasecmp(authz, "Bearer ", 7) != 0 ||
		    !keel_auth_token_valid(authz + 7))
			return false;
		keel_auth_token_id(authz + 7, id);
		snprintf(skey, SESS_KEY_MAX, SESS_PREFIX "%s", id);
	}
	if (ticket != NULL) {
		if (!keel_auth_token_valid(ticket))
			return false;
		keel_notify_ticket_key(ticket, tkey);
	}
	return true;
}

/*
 * A CORS preflight (Fetch §3.2.2: OPTIONS with Origin and
 * Access-Control-Request-Method) from a listed origin, answered as the
 * apps answer one (lib/pipeline.c): 204 with the stream's methods, the
 * headers a script may set (Last-Event-ID, Authorization) and how long
 * the browser may keep the answer.  No session (a browser sends no
 * Authorization on a preflight) and no limiter: a browser sends one per
 * Max-Age, and counted it would spend a place of the client's budget
 * before every open.  False for anything else, which goes on to the 405
 * of any OPTIONS, counted and without the preflight's headers.
 */
bool
preflight(struct answer *a, struct evhttp_request *req)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);

	if (evhttp_request_get_command(req) != EVHTTP_REQ_OPTIONS ||
	    evhttp_find_header(in, "Access-Control-Request-Method") == NULL ||
	    keel_cors_allow_origin(W.cfg->cors_origins,
	    evhttp_find_header(in, "Origin")) == NULL)
		return false;
	evhttp_add_header(h, "Access-Control-Allow-Methods", STREAM_METHODS);
	evhttp_add_header(h, "Access-Control-Allow-Headers",
	    KEEL_CORS_ALLOW_HEADERS);
	evhttp_add_header(h, "Access-Control-Max-Age", KEEL_CORS_MAX_AGE);
	evhttp_add_header(h, "Cache-Control", "no-store");
	a->vary = KEEL_CORS_PREFLIGHT_VARY;
	answered(a, req, 204);
	evhttp_send_reply(req, 204, "No Content", NULL);
	return true;
}
