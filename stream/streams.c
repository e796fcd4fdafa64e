/* SPDX-License-Identifier: ISC */
/*
 * streams.c -- keel-stream's table of streams: each by its sid, each
 * user's list, and what is written to a stream until it ends.
 *
 * A stream is made when its request comes (stream_new) and is in W's
 * sid chains and list of all from then on; once its session is known
 * it is in its user's list too, which live messages and session ends
 * fan out through.  Every write goes through stream_write, which drops
 * a client that stopped reading (OUT_MAX unsent bytes) rather than
 * buffer for it.  stream_free is the one way out: every table, the
 * lease in Redis (ZREM), the metrics and the log line.  Callbacks hold
 * a sid, never a pointer, and look it up here (stream_find).
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <sodium.h>

#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/sse.h"
#include "stream.h"

#define OUT_MAX		(64 * 1024)	/* unsent bytes before a drop */
#define AUTH_MS		3000		/* Redis's answers to an open */
#define OPEN_PREFIX	"keel:sse:open:"

/* n hex digits (n = 2 * SESS_BYTES) into a session id; false if not. */
bool
sess_parse(const char *hex, size_t n, unsigned char out[SESS_BYTES])
{
	const char	*end;
	size_t		 len;

	return n == 2 * SESS_BYTES && sodium_hex2bin(out, SESS_BYTES, hex, n,
	    NULL, &len, &end) == 0 && len == SESS_BYTES && end == hex + n;
}

/* "keel:sess:<64 hex>", the key of session id, into buf. */
void
sess_key(char buf[SESS_KEY_MAX], const unsigned char id[SESS_BYTES])
{
	memcpy(buf, SESS_PREFIX, sizeof(SESS_PREFIX) - 1);
	sodium_bin2hex(buf + sizeof(SESS_PREFIX) - 1, 2 * SESS_BYTES + 1, id,
	    SESS_BYTES);
}

struct stream *
stream_find(uint64_t sid)
{
	struct stream	*s;

	for (s = W.sids[sid % NBUCKETS]; s != NULL; s = s->hnext)
		if (s->sid == sid)
			return s;
	return NULL;
}

struct user *
user_find(int64_t uid)
{
	struct user	*u;

	for (u = W.users[(uint64_t)uid % NBUCKETS]; u != NULL; u = u->hnext)
		if (u->uid == uid)
			return u;
	return NULL;
}

void
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

void
mark_dirty(struct stream *s)
{
	if (!s->dirty) {
		s->dirty = true;
		W.ndirty++;
	}
}

struct stream *
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
void
open_key(char *buf, size_t n, int64_t uid)
{
	snprintf(buf, n, OPEN_PREFIX "%" PRId64, uid);
}

/*
 * Forgets s: out of every table, its place in the cap given back, its
 * line in the log.  The connection is the caller's business.
 */
void
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
bool
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
bool
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
void
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
void
stream_end(struct stream *s, bool expired)
{
	if (expired)
		stream_last_word(s, "end", "{\"reason\":\"session_expired\"}",
		    "session expired");
	else
		stream_last_word(s, "end", "{\"reason\":\"session_ended\"}",
		    "session ended");
}
