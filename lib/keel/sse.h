/* SPDX-License-Identifier: ISC */
/*
 * sse.h -- Server-Sent Events framing and the notification messages the
 * stream app fans out (DESIGN.md, "Notifications in real time"): pure
 * functions, no I/O.
 */
#ifndef KEEL_SSE_H
#define KEEL_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_buf;

/*
 * Appends one event to b: "id: <id>\nevent: <event>\ndata: <data>\n\n"
 * (no id line when id < 0).  False, and b untouched, when data or event
 * holds a CR or LF, which would end the field early (json_item below
 * never does).
 */
bool	keel_sse_event(struct keel_buf *b, int64_t id, const char *event,
	    const char *data);

/*
 * A Last-Event-ID (header or lastEventId parameter): 1 to 18 ASCII
 * digits, nothing else.  True with the value in *out; false for
 * anything else (signs, spaces, overflow), which the caller ignores.
 */
bool	keel_sse_last_id(const char *s, int64_t *out);

/*
 * A notification as it travels: the user it is for, the user's previous
 * notification's id (0: none), its own id, and the item -- the
 * notification as GET /api/notifications lists it -- as one line of
 * JSON (malloc'd, the caller frees it with keel_sse_msg_free).
 */
struct keel_sse_msg {
	int64_t	 uid;
	int64_t	 prev;
	int64_t	 id;
	char	*item;
};

/*
 * Parses what keel-drain-notifications publishes on keel:notify:<uid>:
 * {"userId": n, "prev": n, "notification": {"id": n, ...}}.  True and
 * *out filled (out->item owned by out) when every member is there with
 * its type (ids >= 1, prev >= 0 and below id); false otherwise, out
 * zeroed.
 */
bool	keel_sse_msg_parse(const char *s, size_t len, struct keel_sse_msg *out);
void	keel_sse_msg_free(struct keel_sse_msg *m);

/*
 * A JSON object's text (PostgreSQL's json_build_object output, say) as
 * one plain line, as keel_sse_msg_parse writes items: malloc'd, or NULL
 * when s is not a JSON object.
 */
char	*keel_sse_item(const char *s, size_t len);

#endif /* KEEL_SSE_H */
