/* SPDX-License-Identifier: ISC */
/*
 * notify.h -- users' notifications: the object every reader writes, the
 * per-user cache namespace, the live channel and its message, stream
 * tickets (DESIGN.md, "Notifications in real time").
 */
#ifndef KEEL_NOTIFY_H
#define KEEL_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "keel/auth.h"
#include "keel/err.h"
#include "keel/resource.h"
#include "keel/text.h"

struct keel_buf;
struct keel_cache;
struct keel_db;
struct keel_redis;

/*
 * A notification as GET /api/notifications lists it, the drainer
 * publishes it and a stream replays it: {"id", "kind", "title", "body",
 * "data", "readAt" (null while unread), "createdAt"}.  The columns every
 * statement returning one selects (FROM notifications), and the resource
 * table that writes them.
 */
#define KEEL_NOTIFY_COLS "id, kind, title, body, data, " \
	KEEL_SQL_TIME("read_at", "readAt") ", " \
	KEEL_SQL_TIME("created_at", "createdAt")
extern const struct keel_resource keel_notify_res;

/*
 * The cache namespace of a user's list pages (cache.h): the route's
 * namespace, per user (keel_route_cache's per_user), so a change to one
 * user's notifications invalidates theirs only.
 */
#define KEEL_NOTIFY_NS		"notifications"
#define KEEL_NOTIFY_NS_MAX	(sizeof(KEEL_NOTIFY_NS) + 6 + \
				 KEEL_TEXT_INT_MAX)

/*
 * The live channel of user uid: "keel:notify:<uid>".  Each committed
 * notification is published there once (again when its job runs again)
 * as one JSON object, {"userId": uid, "prev": <the id of the user's
 * notification before it, 0 for none>, "notification": <the object
 * above>}.  A user's ids are in commit order (their inserts are
 * serialised), so a subscriber that has seen prev has missed nothing;
 * one that hasn't replays from PostgreSQL.  The channel also carries
 * the end of each of the user's sessions (auth.h), {"userId": uid,
 * "sessionEnded": "<64-hex session id>"}, which has no "notification".
 */
#define KEEL_NOTIFY_CHANNEL_PREFIX	KEEL_AUTH_USER_CHANNEL
#define KEEL_NOTIFY_CHANNEL_MAX		(sizeof(KEEL_NOTIFY_CHANNEL_PREFIX) + \
					 KEEL_TEXT_INT_MAX)
/* The channel of uid into buf (size n); returns its length. */
size_t		 keel_notify_channel(char *buf, size_t n, int64_t uid);

/*
 * Appends to b the channel's message for uid: prev and item, the
 * notification's JSON text as keel_res_write() wrote it (only read).
 */
void		 keel_notify_message(struct keel_buf *b, int64_t uid,
		    int64_t prev, const char *item, size_t len);

/*
 * After the insert commits: invalidates uid's cached pages, then
 * publishes msg (len bytes, keel_notify_message's) on uid's channel, so
 * a client that reacts to the event by reading its list sees the row.
 * A failed PUBLISH is logged and returned (the row is durable: streams
 * catch up from PostgreSQL); a failed invalidation is only logged.
 */
enum keel_err	 keel_notify_publish(struct keel_cache *c,
		    struct keel_redis *r, int64_t uid, const char *msg,
		    size_t len);

/*
 * Queues, in the caller's transaction (outbox.h), the notification that
 * uid's password changed: queue notifications, kind password_changed,
 * {"userId", "via"} (via: "profile" or "reset"), key
 * "notification:password:<uid>:<event>", event naming this change
 * alone (the transaction's id: a retried job is one notification, two
 * changes are two).  *job gets the outbox id to push after the commit.
 * Errors are keel_outbox_add()'s.
 */
enum keel_err	 keel_notify_queue_password(struct keel_db *db, int64_t uid,
		    const char *via, const char *event, int64_t *job);

/*
 * Stream tickets: GET /api/notifications/stream is an EventSource,
 * which can't send headers, so a signed-in client first asks for a
 * ticket.  Redis holds "keel:sse:ticket:<lower-case hex SHA-256 of the
 * ticket>" = "<uid>:<the 64-hex id of the session that took it>" for
 * KEEL_NOTIFY_TICKET_TTL seconds; the stream takes it and reads that
 * session in one script (lib/lua/stream_ticket.lua), so it works once,
 * and not after its session ended; the stream it opens belongs to that
 * session.  Neither the ticket nor the session's token is stored.
 * Tickets look like session tokens (auth.h: 43 url-safe base64
 * characters).
 */
#define KEEL_NOTIFY_TICKET_TTL		60	/* seconds */
#define KEEL_NOTIFY_TICKET_PREFIX	"keel:sse:ticket:"
#define KEEL_NOTIFY_TICKET_KEY_MAX	(sizeof(KEEL_NOTIFY_TICKET_PREFIX) + \
					 KEEL_AUTH_ID_LEN)
/* The Redis key of ticket tok into key (pure). */
void		 keel_notify_ticket_key(const char *tok,
		    char key[KEEL_NOTIFY_TICKET_KEY_MAX]);

/*
 * A new ticket of uid's session sid (its 64-hex id: struct keel_user's
 * session), stored as above: tok gets it, *exp (may be NULL) when it
 * expires.  KEEL_EUNAVAIL when Redis can't be reached (no ticket: the
 * caller answers 503).
 */
enum keel_err	 keel_notify_ticket_new(struct keel_redis *r, int64_t uid,
		    const char *sid, char tok[KEEL_AUTH_TOKEN_LEN + 1],
		    time_t *exp);

#endif /* KEEL_NOTIFY_H */
