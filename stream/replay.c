/* SPDX-License-Identifier: ISC */
/*
 * replay.c -- catching up from PostgreSQL: the notifications a stream
 * missed, by one query for many streams (pgev.c, on the loop).
 *
 * A stream that just opened, saw a gap in the live messages, or lived
 * through a lost subscription is dirty (mark_dirty).  pump() takes up
 * to BATCH_MAX dirty streams into one query, which returns for each
 * the notifications after its last id (REPLAY_ROWS at most; a stream
 * that got that many stays dirty for the next round), or, for a stream
 * opened without Last-Event-ID, the id to start after.  One query at a
 * time: its answer starts the next.  A failed query ends the streams in
 * it with an error event; the client reconnects.
 */
#include "config.h"

#include <inttypes.h>
#include <stdlib.h>

#include "keel/log.h"
#include "keel/mem.h"
#include "keel/sse.h"
#include "stream.h"

#define REPLAY_ROWS	100		/* rows per stream per query */

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
void
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
