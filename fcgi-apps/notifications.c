/* SPDX-License-Identifier: ISC */
/*
 * notifications.c -- a user's own notifications (API.md "Exam prep",
 * DESIGN.md "Notifications in real time"): the list, marking them read,
 * and the tickets a browser's EventSource presents to the stream.
 *
 * Only keel-drain-notifications creates them (cron/drain-notifications.c);
 * this app reads and marks.  Every statement is scoped to the caller, so
 * another user's notification is a 404, never a 403.  The list is cached
 * 30 s in the caller's own namespace ("notifications:user:<id>", the
 * route's per_user), which every change to their notifications bumps
 * after it commits -- a read here, a read-all, a new one in the drainer
 * -- so nobody else's pages are touched and a GET after a change never
 * serves the page from before it.  The stream itself
 * (/api/notifications/stream) is another program's, behind lighttpd's
 * mod_proxy; its path never reaches this app.
 */
#include "config.h"

#include <string.h>
#include <time.h>

#include "keel/auth.h"
#include "keel/cache.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/notify.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/serve.h"
#include "keel/text.h"

/* unread=true lists the unread ones only; false or absent, all. */
static const struct keel_field notify_filters[] = {
	{ .name = "unread", .type = KEEL_FIELD_BOOL },
};

/*
 * $4 the filter, $5 the caller (.owner: every role).  Two statements,
 * so that each is planned on its own index: notifications_user_page_idx
 * for all, the partial notifications_user_unread_idx for the unread
 * (a plan can use a partial index only where its predicate is in the
 * SQL, not in a parameter).
 */
#define NOTIFY_ALL "SELECT " KEEL_NOTIFY_COLS " FROM notifications " \
	"WHERE user_id = $5 AND ($4::boolean IS NULL OR NOT $4::boolean) "
#define NOTIFY_UNREAD "SELECT " KEEL_NOTIFY_COLS " FROM notifications " \
	"WHERE user_id = $5 AND read_at IS NULL AND $4::boolean "

static const struct keel_list notify_all = { .scope = "notifications",
	.after = { .name = "notifications_all_after", .sql = NOTIFY_ALL
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "notifications_all_before", .sql = NOTIFY_ALL
	    KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.filters = notify_filters, .nfilters = KEEL_NELEM(notify_filters),
	.owner = KEEL_ACCESS_USER,
};

static const struct keel_list notify_unread = { .scope = "notifications",
	.after = { .name = "notifications_unread_after", .sql = NOTIFY_UNREAD
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "notifications_unread_before", .sql =
	    NOTIFY_UNREAD KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.filters = notify_filters, .nfilters = KEEL_NELEM(notify_filters),
	.owner = KEEL_ACCESS_USER,
};

/*
 * $1 the notification, $2 the caller.  Reading one already read keeps
 * its first readAt; concurrent reads of one agree on it (the second
 * UPDATE waits for the first and re-reads the row).
 */
static const struct keel_query q_notify_read = { .name = "notifications_read",
	.sql = "UPDATE notifications SET read_at = coalesce(read_at, now()) "
	"WHERE id = $1 AND user_id = $2 RETURNING " KEEL_NOTIFY_COLS,
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_notify_read_all = {
	.name = "notifications_read_all",
	.sql = "WITH u AS (UPDATE notifications SET read_at = now() "
	"WHERE user_id = $1 AND read_at IS NULL RETURNING 1) "
	"SELECT count(*) FROM u", .target = KEEL_DB_PRIMARY };

/* After a change committed: the caller's cached pages are old. */
static void
notify_invalidate(struct keel_req *req)
{
	char	 ns[KEEL_NOTIFY_NS_MAX];

	if (keel_cache_user_ns(ns, sizeof(ns), KEEL_NOTIFY_NS,
	    req->user->id) > 0)
		(void)keel_cache_invalidate(req->cache, ns);
}

static enum keel_err
notify_list(struct keel_req *req)
{
	struct keel_value	 f[KEEL_NELEM(notify_filters)];
	bool			 unread;

	if (keel_res_filters(req, &notify_all, f) != KEEL_STEP_GO)
		return KEEL_OK;
	unread = f[0].present && f[0].b;
	return keel_res_list(req, &keel_notify_res, unread ? &notify_unread :
	    &notify_all, f);
}

static enum keel_err
notify_read(struct keel_req *req)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	keel_res_params_own(req, &p);
	if ((er = keel_db_query(req->db, &q_notify_read, &p, &rows)) !=
	    KEEL_OK) {
		er = keel_res_failed(req, &keel_notify_res, er);
		goto out;
	}
	if (keel_rows_count(rows) > 0)
		notify_invalidate(req);
	/* No row: missing, or someone else's (404 alike). */
	er = keel_res_reply_row(req, &keel_notify_res, 200, rows);
out:
	keel_rows_free(rows);
	return er;
}

static enum keel_err
notify_read_all(struct keel_req *req)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	struct keel_buf		 b = { NULL, 0, 0 };
	struct keel_jw		 w;
	int64_t			 n;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_int(&p, req->user->id);
	if ((er = keel_db_query(req->db, &q_notify_read_all, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	if ((n = keel_rows_int64(rows, 0, 0)) > 0)
		notify_invalidate(req);
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "marked");
	keel_jw_int(&w, n);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
out:
	keel_buf_free(&b);
	keel_rows_free(rows);
	return er;
}

/*
 * A single-use ticket for the stream, stored hashed for 60 s and bound
 * to the caller's session (notify.h).
 * Without Redis there is none to give: 503, as lib answers
 * KEEL_EUNAVAIL.
 */
static enum keel_err
notify_ticket(struct keel_req *req)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	char		 tok[KEEL_AUTH_TOKEN_LEN + 1], at[KEEL_TIME_LEN + 1];
	time_t		 exp;
	enum keel_err	 er;

	if ((er = keel_notify_ticket_new(req->redis, req->user->id,
	    req->user->session, tok, &exp)) != KEEL_OK)
		return er;
	keel_time_format(exp, at);
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "ticket");
	keel_jw_str(&w, tok);
	keel_jw_key(&w, "expiresAt");
	keel_jw_str(&w, at);
	keel_jw_obj_close(&w);
	explicit_bzero(tok, sizeof(tok));
	keel_http_reply_buf(req, 201, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

/*
 * Any signed-in user, on their own notifications only.  read-all and
 * stream-ticket are literal segments, which {id:int} would not match
 * anyway.  A ticket is a secret: no Idempotency-Key keeps its answer.
 */
static const struct keel_route notify_routes[] = {
	{ .method = "GET", .pattern = "/api/notifications",
	    .handler = notify_list, .access = KEEL_ACCESS_USER,
	    .cache = { .ns = KEEL_NOTIFY_NS,
	    .ttl = KEEL_CACHE_TTL_NOTIFICATIONS, .per_user = true },
	    .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/notifications/read-all",
	    .handler = notify_read_all, .access = KEEL_ACCESS_USER },
	{ .method = "POST", .pattern = "/api/notifications/stream-ticket",
	    .handler = notify_ticket, .access = KEEL_ACCESS_USER,
	    .secret = true },
	{ .method = "POST", .pattern = "/api/notifications/{id:int}/read",
	    .handler = notify_read, .access = KEEL_ACCESS_USER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "notifications",
	    .routes = notify_routes, .nroutes = KEEL_NELEM(notify_routes) };

	return keel_serve(argc, argv, &app);
}
