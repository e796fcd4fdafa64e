/* SPDX-License-Identifier: ISC */
/*
 * stream.c -- keel-stream: GET /api/notifications/stream, Server-Sent
 * Events (DESIGN.md, "Notifications in real time").
 *
 * libfcgi serves one request per process at a time, so this app is the
 * one on an event loop: lib/serve.c supervises it like any app, and each
 * worker runs libevent's HTTP server on the shared unix socket, behind
 * lighttpd's mod_proxy.  A worker holds every stream it accepted, one
 * Redis subscription (PSUBSCRIBE keel:notify:*) fanned out in memory by
 * user, one Redis connection for commands and one PostgreSQL connection.
 *
 *   open     bearer token (HMGET the session) or single-use ticket
 *            (stream_ticket.lua: GETDEL it, read its session), then a
 *            lease among the user's streams (Lua) and the session read
 *            again, then 200 and the replay: the user's notifications
 *            after Last-Event-ID from PostgreSQL, in id order
 *   live     a published notification whose prev is the last id this
 *            stream sent goes out at once; anything else (a gap, a
 *            message that overtook another, a replay under way, the
 *            subscription lost and back) marks the stream dirty, and
 *            dirty streams catch up from PostgreSQL, many per query
 *   close    the client went (lighttpd closes the socket, or on a FIN
 *            shuts it down: tcp-fin-propagate, scripts/stack), it stopped
 *            reading (its output passed OUT_MAX), PostgreSQL failed
 *            mid-replay (an error event), SIGTERM (a reconnect event),
 *            or its session ended or expired (an end event)
 *
 * A 401 (no credential, or one that names no session) and a 405 name no
 * user: as the apps' do, they count in their client address's windows
 * (limit.c's script again) and carry its RateLimit headers.
 *
 * KEEL_CORS_ORIGINS (lib/cors.h) reaches the stream as it does the apps:
 * a listed origin's request gets Access-Control-Allow-Origin on its 200
 * and on every refusal, and its preflight a 204 that no session or
 * limiter sees, so a page on that origin can open the stream; the
 * setting is the process's configuration like any other, so a SIGHUP
 * reads it again (lib/serve.c).
 *
 * A stream belongs to the session that opened it (the bearer's, or the
 * one that took the ticket) and ends with it: auth.c announces each
 * session it ends on the user's channel (auth.h), so every process
 * closes that session's streams at once.  The session is read again
 * after the stream is in its user's list, so a logout that lands while
 * the stream opens is seen either by that read or, later, by the
 * announcement.  A session that expires is not announced: a stream
 * keeps its session's exp and ends at its first heartbeat past it.
 * Sessions never slide (auth.c sets exp once, with the key's TTL), so
 * that costs nothing in Redis, where reading every session again each
 * heartbeat would double an idle stream's commands (docs/capacity.md).
 * When the subscription comes back after a loss, announcements may have
 * been missed: every stream's session is read again then.
 *
 * The drainer serialises a user's notifications (a row lock per user),
 * so per user, ids are in commit order: "after id N" is always complete.
 * Callbacks name a stream by its sid, never by pointer, so an answer
 * that arrives after the stream closed finds nothing and is dropped.
 *
 * Redis Cluster (REDIS_CLUSTER=1): the subscription stays one
 * connection to the REDIS_URL node (Redis 7 broadcasts a PUBLISH to
 * every node); commands go to the master of their key's slot, on a
 * connection per master opened on first use, the slot map being
 * lib/redis.c's (loaded, blocking, on first use and after a redirect).
 * A MOVED or ASK answer fails that one open (503, the client retries)
 * or renewal (the next one goes right): the map is loaded again first.
 *
 * libevent's evhttp (2.1) keeps reading a connection while it writes a
 * chunked reply, to see it close: the EOF or reset reaches on_close at
 * once, which frees the stream and gives its place in the cap back.
 * A Redis connection that drops is tried again with backoff, up to
 * REDIS_BACKOFF_MAX_MS apart; an open that finds it down tries at once
 * (open_wake), so a Redis that is back serves the next open.  Through
 * sentinels only the backoff asks them where the master is, on the loop
 * like any other Redis conversation (hiredis's async API): one lookup at
 * a time, shared by every connection waiting for it, each sentinel
 * given SENTINEL_MS in turn, the answer applied when it comes; an open
 * only connects again to the master their last answer named.
 *
 * The Redis connections, their reconnection and backoff, live in
 * redis.c, and the sentinels' lookup of the master in sentinel.c;
 * stream.h declares what the files share, and why the worker's state
 * is one global.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/time.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <sodium.h>

#include "keel/addr.h"
#include "keel/auth.h"
#include "keel/config.h"
#include "keel/cors.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/notify.h"
#include "keel/rcluster.h"
#include "keel/redis.h"
#include "keel/resource.h"
#include "keel/sentinel.h"
#include "keel/serve.h"
#include "keel/sse.h"
#include "keel/text.h"
#include "keel/url.h"
#include "stream.h"

#define REPLAY_ROWS	100		/* rows per stream per query */
#define OUT_MAX		(64 * 1024)	/* unsent bytes before a drop */
#define AUTH_MS		3000		/* Redis's answers to an open */
#define RETRY_HINT_MS	2000		/* the client's reconnect delay */
#define STREAM_BODY_MAX	(1024 * 1024 + 1) /* past lighttpd's bound */
#define TERM_GRACE_MS	1000		/* final events' time to leave */
#define OPEN_PREFIX	"keel:sse:open:"

/* The worker's state: stream.h says what and why. */
struct worker	 W;

/* ------------------------------------------------------------ helpers */

double
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

struct timeval
tv_ms(int ms)
{
	struct timeval	 tv = { .tv_sec = ms / 1000,
	    .tv_usec = (ms % 1000) * 1000 };

	return tv;
}

struct event *
must(struct event *ev)
{
	if (ev == NULL)
		keel_log_fatalx("libevent: out of memory");
	return ev;
}

/* n hex digits (n = 2 * SESS_BYTES) into a session id; false if not. */
static bool
sess_parse(const char *hex, size_t n, unsigned char out[SESS_BYTES])
{
	const char	*end;
	size_t		 len;

	return n == 2 * SESS_BYTES && sodium_hex2bin(out, SESS_BYTES, hex, n,
	    NULL, &len, &end) == 0 && len == SESS_BYTES && end == hex + n;
}

/* "keel:sess:<64 hex>", the key of session id, into buf. */
static void
sess_key(char buf[SESS_KEY_MAX], const unsigned char id[SESS_BYTES])
{
	memcpy(buf, SESS_PREFIX, sizeof(SESS_PREFIX) - 1);
	sodium_bin2hex(buf + sizeof(SESS_PREFIX) - 1, 2 * SESS_BYTES + 1, id,
	    SESS_BYTES);
}

/* A request's method as its name (a label, a log field). */
static const char *
method_name(const struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:		return "GET";
	case EVHTTP_REQ_HEAD:		return "HEAD";
	case EVHTTP_REQ_POST:		return "POST";
	case EVHTTP_REQ_PUT:		return "PUT";
	case EVHTTP_REQ_PATCH:		return "PATCH";
	case EVHTTP_REQ_DELETE:		return "DELETE";
	case EVHTTP_REQ_OPTIONS:	return "OPTIONS";
	default:			return "other";
	}
}

/*
 * The answer to req begins: its id is the X-Request-Id lighttpd passed
 * on when the peer lighttpd saw (the last X-Forwarded-For hop, which
 * lighttpd appends) is a trusted proxy and the id is well formed, as
 * the apps adopt one; otherwise 16 hex digits drawn here.
 */
static void
answer_begin(struct answer *a, struct evhttp_request *req, bool routed)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	const char		*id;
	unsigned char		 r[8];

	a->t0 = now_ms();
	a->route = routed ? STREAM_PATH : "unmatched";
	a->vary = NULL;
	if (W.cfg->client.ntrusted > 0 &&
	    (id = evhttp_find_header(in, "X-Request-Id")) != NULL &&
	    keel_text_request_id_valid(id) &&
	    keel_addr_last_hop_trusted(&W.cfg->client,
	    evhttp_find_header(in, "X-Forwarded-For"))) {
		keel_text_copy(a->id, sizeof(a->id), id);
		return;
	}
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(a->id, sizeof(a->id), r, sizeof(r));
}

/*
 * CORS (lib/cors.h) as lib/http.c puts it on the apps' answers: with
 * KEEL_CORS_ORIGINS a list, Vary: Origin on every answer (Fetch §3.2.5),
 * in one line with a's own names; to a listed origin's request, its
 * origin (or "*") and the headers a script may read, on the 200 and on
 * every refusal alike, or the browser shows the script a network error
 * where it needs the 401 or the 429's Retry-After.  The origin sent back
 * is the setting's match, never the client's bytes unchecked.
 */
static void
cors_headers(const struct answer *a, struct evhttp_request *req)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);
	const char		*list = W.cfg->cors_origins, *acao;
	char			 vary[128];

	if (keel_cors_varies(list) || a->vary != NULL) {
		snprintf(vary, sizeof(vary), "%s%s%s",
		    keel_cors_varies(list) ? "Origin" : "",
		    keel_cors_varies(list) && a->vary != NULL ? ", " : "",
		    a->vary != NULL ? a->vary : "");
		evhttp_add_header(h, "Vary", vary);
	}
	if ((acao = keel_cors_allow_origin(list, evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Origin"))) == NULL)
		return;
	evhttp_add_header(h, "Access-Control-Allow-Origin", acao);
	evhttp_add_header(h, "Access-Control-Expose-Headers",
	    KEEL_CORS_EXPOSE_HEADERS);
}

/*
 * The answer with status is about to go: its CORS headers, id, access
 * line, count.
 */
static void
answered(const struct answer *a, struct evhttp_request *req, int status)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*path = uri != NULL ?
				    evhttp_uri_get_path(uri) : NULL;
	double			 ms = now_ms() - a->t0;

	cors_headers(a, req);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "X-Request-Id", a->id);
	keel_log_set_request(a->id);
	keel_log_access(method_name(req), path, status, ms);
	keel_log_set_request(NULL);
	keel_metrics_request(a->route, method_name(req), status, ms);
}

/* A JSON error as API.md shapes it, with extra headers (may be NULL). */
static void
reply_error(const struct answer *a, struct evhttp_request *req, int status,
    const char *code, const char *msg, const char *retry_after)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);
	struct evbuffer		*body;
	struct keel_buf		 b = { NULL, 0, 0 };
	struct keel_jw		 w;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "error");
	keel_jw_str(&w, code);
	keel_jw_key(&w, "message");
	keel_jw_str(&w, msg);
	if (status == 429 && retry_after != NULL) {
		keel_jw_key(&w, "retryAfter");
		keel_jw_raw(&w, retry_after, strlen(retry_after));
	}
	keel_jw_obj_close(&w);
	keel_buf_putc(&b, '\n');
	evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (status == 405)
		evhttp_add_header(h, "Allow", STREAM_METHODS);
	/* RFC 6750 §3, as the FastCGI apps' 401 (lib/auth.c). */
	if (status == 401)
		evhttp_add_header(h, "WWW-Authenticate", "Bearer realm=\"keel\"");
	if (retry_after != NULL)
		evhttp_add_header(h, "Retry-After", retry_after);
	if ((body = evbuffer_new()) == NULL)
		abort();
	evbuffer_add(body, b.data, b.len);
	answered(a, req, status);
	evhttp_send_reply(req, status, NULL, body);
	evbuffer_free(body);
	keel_buf_free(&b);
}

/* ----------------------------------------------------- streams, users */

static struct stream *
stream_find(uint64_t sid)
{
	struct stream	*s;

	for (s = W.sids[sid % NBUCKETS]; s != NULL; s = s->hnext)
		if (s->sid == sid)
			return s;
	return NULL;
}

static struct user *
user_find(int64_t uid)
{
	struct user	*u;

	for (u = W.users[(uint64_t)uid % NBUCKETS]; u != NULL; u = u->hnext)
		if (u->uid == uid)
			return u;
	return NULL;
}

static void
user_add(struct stream *s)
{
	struct user	**bucket = &W.users[(uint64_t)s->uid % NBUCKETS];
	struct user	 *u;

	if ((u = user_find(s->uid)) == NULL) {
		u = keel_calloc(1, sizeof(*u));
		u->uid = s->uid;
		u->hnext = *bucket;
		*bucket = u;
	}
	s->unext = u->streams;
	s->uprev = NULL;
	if (u->streams != NULL)
		u->streams->uprev = s;
	u->streams = s;
}

static void
user_remove(struct stream *s)
{
	struct user	**pp = &W.users[(uint64_t)s->uid % NBUCKETS];
	struct user	 *u;

	if ((u = user_find(s->uid)) == NULL)
		return;
	if (s->uprev != NULL)
		s->uprev->unext = s->unext;
	else if (u->streams == s)
		u->streams = s->unext;
	else
		return;		/* not in the list */
	if (s->unext != NULL)
		s->unext->uprev = s->uprev;
	if (u->streams != NULL)
		return;
	while (*pp != u)
		pp = &(*pp)->hnext;
	*pp = u->hnext;
	free(u);
}

static void
mark_dirty(struct stream *s)
{
	if (!s->dirty) {
		s->dirty = true;
		W.ndirty++;
	}
}

static void	on_close(struct evhttp_connection *evcon, void *arg);
static void	on_deadline(evutil_socket_t fd, short what, void *arg);
static void	stream_refuse(struct stream *s, int status, const char *code,
		    const char *msg, const char *retry_after);

static struct stream *
stream_new(struct evhttp_request *req)
{
	struct stream	*s;
	struct timeval	 tv = tv_ms(AUTH_MS);

	s = keel_calloc(1, sizeof(*s));
	s->sid = ++W.next_sid;
	s->req = req;
	s->evcon = evhttp_request_get_connection(req);
	s->last_id = -1;
	s->opened = now_ms();
	s->deadline = evtimer_new(W.base, on_deadline,
	    (void *)(uintptr_t)s->sid);
	if (s->deadline == NULL)
		abort();
	evtimer_add(s->deadline, &tv);
	s->hnext = W.sids[s->sid % NBUCKETS];
	W.sids[s->sid % NBUCKETS] = s;
	s->next = W.all;
	if (W.all != NULL)
		W.all->prev = s;
	W.all = s;
	W.nstreams++;
	evhttp_connection_set_closecb(s->evcon, on_close,
	    (void *)(uintptr_t)s->sid);
	return s;
}

/* "keel:sse:open:<uid>" into buf. */
static void
open_key(char *buf, size_t n, int64_t uid)
{
	snprintf(buf, n, OPEN_PREFIX "%" PRId64, uid);
}

/*
 * Forgets s: out of every table, its place in the cap given back, its
 * line in the log.  The connection is the caller's business.
 */
static void
stream_free(struct stream *s, const char *why)
{
	struct stream	**pp = &W.sids[s->sid % NBUCKETS];
	struct rconn	 *rc;
	char		  key[64], member[128];
	char		  labels[KEEL_METRICS_LABELS_MAX];

	while (*pp != s)
		pp = &(*pp)->hnext;
	*pp = s->hnext;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		W.all = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (s->listed)
		user_remove(s);
	if (s->dirty)
		W.ndirty--;
	if (s->leased) {
		open_key(key, sizeof(key), s->uid);
		snprintf(member, sizeof(member), "%s%" PRIu64, W.member,
		    s->sid);
		if ((rc = cmd_for(key)) != NULL)
			redisAsyncCommand(rc->ac, on_redirect, NULL,
			    "ZREM %s %s", key, member);
	}
	if (s->open) {
		keel_metrics_add(KEEL_M_STREAM_CLOSES, keel_metrics_labels(
		    labels, "reason", why, (char *)NULL), 1);
		keel_metrics_add(KEEL_M_STREAM_EVENTS, "", (uint64_t)s->sent);
	}
	if (s->open)
		keel_log_info("stream closed: user %" PRId64 ", %ld events, "
		    "%.1f s, %s", s->uid, s->sent,
		    (now_ms() - s->opened) / 1000.0, why);
	event_free(s->deadline);
	W.nstreams--;
	free(s);
}

/* The connection's unsent bytes. */
static size_t
pending(const struct stream *s)
{
	struct bufferevent	*bev;

	bev = evhttp_connection_get_bufferevent(s->evcon);
	return bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) :
	    0;
}

/*
 * Ends s.  Gracefully (the response ends after what was written) unless
 * abort, which cuts the connection: a client that stopped reading would
 * otherwise hold its buffers until it read them.
 */
static void
stream_close(struct stream *s, bool abort_conn, const char *why)
{
	struct evhttp_request		*req = s->req;
	struct evhttp_connection	*evcon = s->evcon;
	bool				 open = s->open;

	stream_free(s, why);
	if (req == NULL)
		return;
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	if (abort_conn)
		evhttp_connection_free(evcon);
	else if (open)
		evhttp_send_reply_end(req);
}

/* Writes b to s; false (and s closed) when the client stopped reading. */
static bool
stream_write(struct stream *s, const struct keel_buf *b)
{
	if (pending(s) > OUT_MAX) {
		stream_close(s, true, "client stopped reading");
		return false;
	}
	if (evbuffer_add(W.out, b->data, b->len) != 0) {
		stream_close(s, true, "out of memory");
		return false;
	}
	evhttp_send_reply_chunk(s->req, W.out);
	evbuffer_drain(W.out, evbuffer_get_length(W.out));
	return true;
}

/* One notification (item: one line of JSON) to s. */
static bool
stream_event(struct stream *s, int64_t id, const char *item)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	bool		 ok = true;

	if (keel_sse_event(&b, id, "notification", item)) {
		ok = stream_write(s, &b);
		if (ok) {
			s->last_id = id;
			s->sent++;
		}
	}
	keel_buf_free(&b);
	return ok;
}

/* An event with no id (reconnect, error), then the end of s. */
static void
stream_last_word(struct stream *s, const char *event, const char *data,
    const char *why)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	if (keel_sse_event(&b, -1, event, data) && !stream_write(s, &b)) {
		keel_buf_free(&b);
		return;
	}
	keel_buf_free(&b);
	stream_close(s, false, why);
}

/*
 * Its session ended (a logout, the end of all the user's sessions) or
 * expired: an end event saying which, and the end of the response.  Not
 * a reconnect: the session is gone, and a client that comes back with
 * it gets 401.
 */
static void
stream_end(struct stream *s, bool expired)
{
	if (expired)
		stream_last_word(s, "end", "{\"reason\":\"session_expired\"}",
		    "session expired");
	else
		stream_last_word(s, "end", "{\"reason\":\"session_ended\"}",
		    "session ended");
}

/* ------------------------------------------------ catching up from PG */

static const char q_catchup[] =
	"SELECT s.sid, b.after, n.id, n.item "
	"FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) "
	"AS s (sid, uid, after) "
	"CROSS JOIN LATERAL (SELECT CASE WHEN s.after >= 0 THEN s.after "
	"ELSE (SELECT coalesce(max(id), 0) FROM notifications "
	"WHERE user_id = s.uid) END AS after) AS b "
	"LEFT JOIN LATERAL (SELECT id, json_build_object("
	"'id', id, 'kind', kind, 'title', title, 'body', body, "
	"'data', data, 'readAt', to_char(read_at AT TIME ZONE 'UTC', "
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'createdAt', "
	"to_char(created_at AT TIME ZONE 'UTC', "
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text AS item "
	"FROM notifications WHERE user_id = s.uid AND id > b.after "
	"ORDER BY id LIMIT 100) AS n ON true "
	"ORDER BY s.sid, n.id";

static void	pump(void);

/* Applies one row of the catch-up to its stream; false if it closed. */
static void
catchup_row(const PGresult *res, int r, uint64_t *cur, int *count)
{
	struct stream	*s;
	uint64_t	 sid = strtoull(PQgetvalue(res, r, 0), NULL, 10);
	int64_t		 id;
	char		*item;

	if (sid != *cur) {
		*cur = sid;
		*count = 0;
	}
	if ((s = stream_find(sid)) == NULL)
		return;
	if (s->last_id < 0)
		s->last_id = strtoll(PQgetvalue(res, r, 1), NULL, 10);
	if (PQgetisnull(res, r, 2))
		return;
	if (++*count == REPLAY_ROWS)
		mark_dirty(s);		/* more where these came from */
	id = strtoll(PQgetvalue(res, r, 2), NULL, 10);
	if (id <= s->last_id)
		return;
	item = keel_sse_item(PQgetvalue(res, r, 3),
	    (size_t)PQgetlength(res, r, 3));
	if (item == NULL) {
		keel_log_warnx("notification %" PRId64 ": bad item", id);
		free(item);
		return;
	}
	(void)stream_event(s, id, item);
	free(item);
}

static void
on_catchup(void *arg, const PGresult *res, const char *err)
{
	struct stream	*s;
	uint64_t	 cur = 0;
	int		 r, i, count = 0;

	(void)arg;
	if (res == NULL)
		keel_log_warnx("notifications replay failed: %s", err);
	for (r = 0; res != NULL && r < PQntuples(res); r++)
		catchup_row(res, r, &cur, &count);
	for (i = 0; i < W.nbatch; i++) {
		if ((s = stream_find(W.batch[i])) == NULL)
			continue;
		s->inflight = false;
		if (res == NULL)
			stream_last_word(s, "error",
			    "{\"error\":\"unavailable\",\"message\":"
			    "\"The notification history is unavailable; "
			    "reconnect.\"}", "database unavailable");
	}
	W.nbatch = 0;
	pump();
}

/*
 * Starts a catch-up query for the dirty streams not already in one, if
 * the connection is free: their user, and the id after which they need
 * events (-1: the stream just opened without Last-Event-ID, so "after
 * the user's newest").
 */
static void
pump(void)
{
	struct keel_buf	 a[3] = { { NULL, 0, 0 }, { NULL, 0, 0 },
			    { NULL, 0, 0 } };
	const char	*params[3];
	struct stream	*s;
	int		 i;

	if (W.ndirty == 0 || pgev_busy(W.pg) || W.term)
		return;
	for (i = 0; i < 3; i++)
		keel_buf_putc(&a[i], '{');
	W.nbatch = 0;
	for (s = W.all; s != NULL && W.nbatch < BATCH_MAX; s = s->next) {
		if (!s->dirty || s->inflight || !s->open)
			continue;
		s->dirty = false;
		W.ndirty--;
		s->inflight = true;
		keel_buf_printf(&a[0], "%s%" PRIu64, W.nbatch ? "," : "",
		    s->sid);
		keel_buf_printf(&a[1], "%s%" PRId64, W.nbatch ? "," : "",
		    s->uid);
		keel_buf_printf(&a[2], "%s%" PRId64, W.nbatch ? "," : "",
		    s->last_id);
		W.batch[W.nbatch++] = s->sid;
	}
	for (i = 0; i < 3; i++) {
		keel_buf_puts(&a[i], "}");
		params[i] = a[i].data;
	}
	if (W.nbatch > 0 && !pgev_query(W.pg, q_catchup, 3, params,
	    on_catchup, NULL))
		keel_log_warnx("catch-up query refused");
	for (i = 0; i < 3; i++)
		keel_buf_free(&a[i]);
}

/* ------------------------------------------------------ live messages */

/*
 * A session's end as auth.c announces it (auth.h), {"userId":<uid>,
 * "sessionEnded":"<64 hex>"}: one producer writes it with one format,
 * so it is matched byte for byte.  True with *uid and id set.
 */
static bool
session_ended(const char *msg, size_t len, int64_t *uid,
    unsigned char id[SESS_BYTES])
{
	static const char	 a[] = "{\"userId\":";
	static const char	 b[] = ",\"sessionEnded\":\"";
	const char		*p = msg, *end = msg + len, *q;
	char			 num[KEEL_TEXT_INT_MAX];

	if (len < sizeof(a) - 1 || memcmp(p, a, sizeof(a) - 1) != 0)
		return false;
	p += sizeof(a) - 1;
	for (q = p; q < end && *q >= '0' && *q <= '9'; q++)
		continue;
	if (q == p || (size_t)(q - p) >= sizeof(num))
		return false;
	memcpy(num, p, (size_t)(q - p));
	num[q - p] = '\0';
	if (!keel_parse_int64(num, 1, INT64_MAX, uid))
		return false;
	if ((size_t)(end - q) != sizeof(b) - 1 + 2 * SESS_BYTES + 2 ||
	    memcmp(q, b, sizeof(b) - 1) != 0 ||
	    memcmp(end - 2, "\"}", 2) != 0)
		return false;
	return sess_parse(q + sizeof(b) - 1, 2 * SESS_BYTES, id);
}

/*
 * Session id of uid ended: its open streams end, and one still opening
 * is refused (401) when its checks answer.
 */
static void
session_gone(int64_t uid, const unsigned char id[SESS_BYTES])
{
	struct user	*u;
	struct stream	*s, *next;

	if ((u = user_find(uid)) == NULL)
		return;
	/* Closing the last stream frees u: only next is read after. */
	for (s = u->streams; s != NULL; s = next) {
		next = s->unext;
		if (memcmp(s->sess, id, SESS_BYTES) != 0)
			continue;
		if (s->open)
			stream_end(s, false);
		else
			s->auth_bad = true;
	}
}

static void
on_message(const char *msg, size_t len)
{
	struct keel_sse_msg	 m;
	struct user		*u;
	struct stream		*s, *next;
	unsigned char		 id[SESS_BYTES];
	int64_t			 uid;

	if (session_ended(msg, len, &uid, id)) {
		session_gone(uid, id);
		return;
	}
	if (!keel_sse_msg_parse(msg, len, &m)) {
		keel_log_warnx("notify: a message that is not one (%zu "
		    "bytes)", len);
		return;
	}
	if ((u = user_find(m.uid)) != NULL) {
		for (s = u->streams; s != NULL; s = next) {
			next = s->unext;
			if (!s->open)
				continue;	/* its replay will have it */
			if (s->last_id >= 0 && m.id <= s->last_id)
				continue;	/* sent already */
			if (s->last_id >= 0 && m.prev == s->last_id)
				(void)stream_event(s, m.id, m.item);
			else
				mark_dirty(s);
		}
	}
	keel_sse_msg_free(&m);
	pump();
}

/* A session read again after the subscription was lost (verify_all). */
static void
on_verify(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct stream	*s = stream_find((uint64_t)(uintptr_t)privdata);
	redisReply	*r = reply;

	(void)ac;
	(void)redirected(r);
	if (s == NULL || r == NULL || r->type != REDIS_REPLY_INTEGER ||
	    r->integer != 0)
		return;
	if (s->open)
		stream_end(s, false);
	else
		s->auth_bad = true;
}

/*
 * After the subscription came back: an end announced while it was lost
 * was missed, so every listed stream's session is read again (once per
 * loss, not per heartbeat).  Left for the next heartbeat while a
 * command connection is down.
 */
static void
verify_all(void)
{
	struct stream	*s;
	struct rconn	*rc;
	char		 skey[SESS_KEY_MAX];

	W.verify = false;
	for (s = W.all; s != NULL; s = s->next) {
		if (!s->listed)
			continue;
		sess_key(skey, s->sess);
		if ((rc = cmd_for(skey)) == NULL || redisAsyncCommand(rc->ac,
		    on_verify, (void *)(uintptr_t)s->sid, "EXISTS %s",
		    skey) != REDIS_OK)
			W.verify = true;
	}
}

/* After the subscription came back: every stream may have missed some. */
static void
catch_up_all(void)
{
	struct stream	*s;

	for (s = W.all; s != NULL; s = s->next)
		if (s->open)
			mark_dirty(s);
	pump();
}

void
on_pmessage(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply	*r = reply;

	(void)ac;
	(void)privdata;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "psubscribe") == 0) {
		keel_log_info("subscribed to %s", NOTIFY_PATTERN);
		if (W.sub.lost) {
			W.sub.lost = false;
			catch_up_all();
			verify_all();
		}
		return;
	}
	if (strcmp(r->element[0]->str, "pmessage") == 0 &&
	    r->elements == 4 && r->element[3]->type == REDIS_REPLY_STRING)
		on_message(r->element[3]->str, r->element[3]->len);
}

/* ---------------------------------------------------------- opening */

static void
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
static void
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
static void
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
 * Every answer of a step of the open counts down; at the last, the
 * verdict.  First the credentials (a token's session, a ticket and its
 * session), then, the session known, the lease and the session read
 * again (stream_check); then 200.
 */
static void	stream_check(struct stream *s);
static void	on_limit(redisAsyncContext *ac, void *reply, void *privdata);
static void	limit_failed(struct stream *s);
static void	refuse_limited(struct stream *s);

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
static void
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
static void
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
static void
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
static bool
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
static bool
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

static void
on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq	 query = { NULL, NULL };
	const char		*path, *last;
	struct stream		*s;
	struct answer		 a;
	struct rconn		*rs = NULL, *rt = NULL;
	char			 skey[SESS_KEY_MAX];
	char			 tkey[KEEL_NOTIFY_TICKET_KEY_MAX];
	void			*sid;
	int64_t			 after = -1;
	int			 want;

	(void)arg;
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	answer_begin(&a, req, path != NULL && strcmp(path, STREAM_PATH) == 0);
	if (path == NULL || strcmp(path, STREAM_PATH) != 0) {
		reply_error(&a, req, 404, "not_found", "No such resource.", NULL);
		return;
	}
	if (preflight(&a, req))
		return;
	/*
	 * The cap first: a counted refusal costs a stream object and a
	 * round trip to Redis, which a server at its cap must not spend on
	 * a flood of wrong methods.
	 */
	if (W.term || W.nstreams >= W.cfg->stream_max) {
		reply_error(&a, req, 503, "unavailable", W.term ?
		    "This server is restarting." :
		    "This server holds all the streams it can.", "5");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		s = stream_new(req);
		s->ans = a;
		refuse_counted(s, 405);
		return;
	}
	if (evhttp_uri_get_query(uri) != NULL &&
	    evhttp_parse_query_str(evhttp_uri_get_query(uri), &query) != 0) {
		reply_error(&a, req, 400, "bad_request",
		    "The query string could not be parsed.", NULL);
		return;
	}
	if (!credentials(req, &query, skey, tkey)) {
		s = stream_new(req);
		s->ans = a;
		refuse_counted(s, 401);
		goto out;
	}
	open_wake(skey, tkey);
	if ((skey[0] != '\0' && (rs = cmd_for(skey)) == NULL) ||
	    (tkey[0] != '\0' && (rt = cmd_for(tkey)) == NULL)) {
		reply_error(&a, req, 503, "unavailable",
		    "Sessions cannot be checked right now.", "1");
		goto out;
	}
	/* A Last-Event-ID that is not an id is ignored: no replay. */
	if ((last = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Last-Event-ID")) == NULL)
		last = evhttp_find_header(&query, "lastEventId");
	if (last != NULL && !keel_sse_last_id(last, &after))
		after = -1;
	s = stream_new(req);
	s->ans = a;
	s->last_id = after;
	sid = (void *)(uintptr_t)s->sid;
	want = (skey[0] != '\0') + (tkey[0] != '\0');
	/* A token's session is the stream's; a ticket must be of it too. */
	if (skey[0] != '\0')
		s->have_sess = sess_parse(skey + sizeof(SESS_PREFIX) - 1,
		    KEEL_AUTH_ID_LEN, s->sess);
	if (skey[0] != '\0' && redisAsyncCommand(rs->ac, on_auth_session,
	    sid, "HMGET %s uid role exp", skey) == REDIS_OK)
		s->auth_wait++;
	/*
	 * A ticket is used up even when the session fails.  A single Redis
	 * takes it and reads its session in one script; a cluster holds
	 * them in two slots, a command each.
	 */
	if (tkey[0] != '\0' && (W.rc == NULL ? run_script(rt, SCRIPT_TICKET,
	    on_auth_ticket, sid, tkey, NULL, NULL, NULL) :
	    redisAsyncCommand(rt->ac, on_auth_ticket, sid, "GETDEL %s",
	    tkey)) == REDIS_OK)
		s->auth_wait++;
	if (s->auth_wait < want)
		s->auth_down = true;
	if (s->auth_wait == 0)
		stream_refuse(s, 503, "unavailable",
		    "Sessions cannot be checked right now.", "1");
out:
	evhttp_clear_headers(&query);
}

/* ----------------------------------------------------------- the loop */

/*
 * Once a second: the heartbeat of the streams whose turn it is (a
 * stream's every KEEL_STREAM_HEARTBEAT seconds, spread over the seconds
 * by its sid, so 10,000 streams never beat in one callback that holds
 * up live events), and their leases renewed; a stream whose session's
 * exp has passed ends instead, so within a heartbeat of it.
 */
static void
on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct keel_buf	 hb = { NULL, 0, 0 };
	struct stream	*s, *next;
	struct rconn	*rc;
	char		 key[64], member[128], lease[16];
	uint64_t	 every = (uint64_t)W.cfg->stream_heartbeat;
	time_t		 now = time(NULL);

	(void)fd;
	(void)what;
	(void)arg;
	W.tick++;
	if (W.verify)
		verify_all();
	keel_buf_puts(&hb, ": hb\n\n");
	snprintf(lease, sizeof(lease), "%d", W.lease_ms);
	for (s = W.all; s != NULL; s = next) {
		next = s->next;
		if (!s->open || (s->sid + W.tick) % every != 0)
			continue;
		if (s->exp <= now) {
			stream_end(s, true);
			continue;
		}
		if (!stream_write(s, &hb))
			continue;
		if (!s->leased)
			continue;
		open_key(key, sizeof(key), s->uid);
		if ((rc = cmd_for(key)) != NULL) {
			snprintf(member, sizeof(member), "%s%" PRIu64,
			    W.member, s->sid);
			(void)run_script(rc, SCRIPT_RENEW, on_redirect, NULL,
			    key, member, lease, NULL);
		}
	}
	keel_buf_free(&hb);
}

static void
on_term(evutil_socket_t fd, short what, void *arg)
{
	struct stream	*s, *next;
	struct timeval	 grace = tv_ms(TERM_GRACE_MS);
	int		 n = 0;

	(void)fd;
	(void)what;
	(void)arg;
	if (W.term)
		return;
	W.term = true;
	evconnlistener_disable(W.listener);
	for (s = W.all; s != NULL; s = next) {
		next = s->next;
		if (s->open) {
			stream_last_word(s, "reconnect", "{}", "shutdown");
			n++;
		} else if (s->req != NULL)
			stream_refuse(s, 503, "unavailable",
			    "This server is restarting.", "1");
	}
	keel_log_info("leaving: told %d streams to reconnect", n);
	event_base_loopexit(W.base, &grace);
}

/* Out of descriptors: stop accepting for a moment instead of spinning. */
static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	struct timeval	 tv = tv_ms(100);

	(void)arg;
	keel_log_warn("accept");
	evconnlistener_disable(l);
	evtimer_add(W.relisten, &tv);
}

static void
on_relisten(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!W.term)
		evconnlistener_enable(W.listener);
}

/* Room for every stream the process may hold, if the hard limit allows. */
static void
raise_fd_limit(int want)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want > rl.rlim_cur)
		keel_log_warnx("KEEL_STREAM_MAX %d needs about %d descriptors; "
		    "the limit is %ju", W.cfg->stream_max, want,
		    (uintmax_t)rl.rlim_cur);
}

static void
stream_loop(const struct keel_config *cfg, int lfd, const sigset_t *waitmask)
{
	struct keel_db_conn_params pgp;
	struct timeval	 hb;
	char		 host[64];
	int		 i;

	W.cfg = cfg;
	W.lease_ms = cfg->stream_heartbeat * 3000;
	scripts[SCRIPT_LIMIT] = keel_limit_call_lua();
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	snprintf(W.member, sizeof(W.member), "%s:%ld:", host, (long)getpid());
	raise_fd_limit(cfg->stream_max + 64);
	if ((W.base = event_base_new()) == NULL ||
	    (W.http = evhttp_new(W.base)) == NULL ||
	    (W.out = evbuffer_new()) == NULL)
		keel_log_fatalx("libevent: cannot start");
	W.listener = evconnlistener_new(W.base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_EXEC, 0, lfd);
	if (W.listener == NULL)
		keel_log_fatalx("libevent: cannot listen");
	evconnlistener_set_error_cb(W.listener, on_accept_error);
	if (evhttp_bind_listener(W.http, W.listener) == NULL)
		keel_log_fatalx("libevent: cannot serve");
	evhttp_set_gencb(W.http, on_request, NULL);
	evhttp_set_timeout(W.http, 10);
	evhttp_set_max_headers_size(W.http, 16384);
	/*
	 * Every method and any body reach on_request, whose 405 is JSON with
	 * Allow: libevent's own answers to a method outside its default set
	 * (OPTIONS, PATCH, TRACE: 501) or a body past its cap (413) are HTML
	 * pages.  lighttpd bounds a body first (server.max-request-size,
	 * 1 MiB, its JSON 413); the stream never reads one.
	 */
	evhttp_set_allowed_methods(W.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(W.http, STREAM_BODY_MAX);
	if (cfg->redis_cluster) {
		/* The first of the seeds (its password is every node's). */
		char	*first = keel_strndup(cfg->redis_url,
			    strcspn(cfg->redis_url, ","));

		keel_url_redis_parse(first, &W.raddr);
		free(first);
	} else
		keel_url_redis_parse(cfg->redis_url, &W.raddr);
	W.sentinel = keel_sentinel_new(cfg->redis_sentinels,
	    cfg->redis_sentinel_master, cfg->redis_sentinel_password);
	W.cmd = (struct rconn){ .name = "commands" };
	W.sub = (struct rconn){ .name = "subscription", .subscriber = true };
	W.cmd.retry = must(evtimer_new(W.base, on_rretry, &W.cmd));
	W.sub.retry = must(evtimer_new(W.base, on_rretry, &W.sub));
	lookup_init(W.base);
	/* Every keel session's settings (lib/db.c): its replay runs as
	 * the apps' reads do, and pg_stat_activity names it. */
	keel_db_conn_params_init(&pgp, cfg, cfg->database_url, "keel-stream");
	W.pg = pgev_new(W.base, pgp.keys, pgp.vals, cfg->db_connect_timeout,
	    cfg->db_statement_timeout);
	W.relisten = must(evtimer_new(W.base, on_relisten, NULL));
	W.heartbeat = must(event_new(W.base, -1, EV_PERSIST, on_heartbeat,
	    NULL));
	hb = tv_ms(1000);
	event_add(W.heartbeat, &hb);
	W.sigterm = must(evsignal_new(W.base, SIGTERM, on_term, NULL));
	W.sigint = must(evsignal_new(W.base, SIGINT, on_term, NULL));
	event_add(W.sigterm, NULL);
	event_add(W.sigint, NULL);
	if (cfg->redis_cluster)
		W.rc = keel_redis_open(cfg);	/* the map; node conns later */
	else
		rconn_start(&W.cmd);
	rconn_start(&W.sub);
	sigprocmask(SIG_SETMASK, waitmask, NULL);

	event_base_dispatch(W.base);

	lookup_stop();
	if (W.cmd.ac != NULL)
		redisAsyncFree(W.cmd.ac);
	for (i = 0; i < W.nnodes; i++) {
		if (W.nodes[i]->ac != NULL)
			redisAsyncFree(W.nodes[i]->ac);
		event_free(W.nodes[i]->retry);
		free(W.nodes[i]);
	}
	keel_redis_close(W.rc);
	if (W.sub.ac != NULL)
		redisAsyncFree(W.sub.ac);
	evhttp_free(W.http);
	pgev_free(W.pg);
	event_free(W.heartbeat);
	event_free(W.relisten);
	event_free(W.sigterm);
	event_free(W.sigint);
	event_free(W.cmd.retry);
	event_free(W.sub.retry);
	keel_url_redis_free(&W.raddr);
	keel_sentinel_free(W.sentinel);
	evbuffer_free(W.out);
	event_base_free(W.base);
}

static const struct keel_route routes[] = {
	{ .method = "GET", .pattern = STREAM_PATH, .access = KEEL_ACCESS_USER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "stream",
	    .routes = routes, .nroutes = KEEL_NELEM(routes),
	    .loop = stream_loop };

	return keel_serve(argc, argv, &app);
}
