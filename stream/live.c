/* SPDX-License-Identifier: ISC */
/*
 * live.c -- the subscription's messages (PSUBSCRIBE keel:notify:*),
 * fanned out in memory to the streams of the user they name.
 *
 * A notification whose prev is the last id a stream sent goes out at
 * once; any other (a gap, one that overtook another, a stream still
 * replaying) marks the stream dirty for replay.c.  A session's end, as
 * auth.c announces it on the user's channel, ends that session's
 * streams.  When the subscription comes back after a loss, what was
 * published meanwhile is lost to it: every open stream catches up, and
 * every listed stream's session is read again (verify_all).
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "keel/log.h"
#include "keel/sse.h"
#include "keel/text.h"
#include "stream.h"

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
void
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
