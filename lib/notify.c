/* SPDX-License-Identifier: ISC */
/*
 * notify.c -- users' notifications: their object, cache namespace, live
 * channel and stream tickets.
 *
 * Three programs meet here and must agree byte for byte: the
 * notifications app (lists and marks them, hands out tickets), the
 * drainer that creates them (keel-drain-notifications: insert, commit,
 * invalidate, publish) and the stream that pushes them (subscribes,
 * takes tickets, replays).  So the object's columns, the channel's name,
 * its message and the tickets' Redis keys are defined once, here.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel/auth.h"
#include "keel/cache.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/notify.h"
#include "keel/outbox.h"
#include "keel/redis.h"
#include "keel/resource.h"
#include "keel/text.h"

static const struct keel_col notify_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("kind", TEXT), KEEL_COL("title", TEXT),
	KEEL_COL("body", TEXT), KEEL_COL("data", JSON),
	KEEL_COL("readAt", TEXT), KEEL_COL("createdAt", TEXT),
};

const struct keel_resource keel_notify_res = { .name = "notification",
	.cols = notify_cols, .ncols = KEEL_NELEM(notify_cols),
};

size_t
keel_notify_channel(char *buf, size_t n, int64_t uid)
{
	int	 len;

	len = snprintf(buf, n, KEEL_NOTIFY_CHANNEL_PREFIX "%lld",
	    (long long)uid);
	return len < 0 || (size_t)len >= n ? 0 : (size_t)len;
}

void
keel_notify_message(struct keel_buf *b, int64_t uid, int64_t prev,
    const char *item, size_t len)
{
	struct keel_jw	 w;

	keel_jw_init(&w, b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "userId");
	keel_jw_int(&w, uid);
	keel_jw_key(&w, "prev");
	keel_jw_int(&w, prev);
	keel_jw_key(&w, "notification");
	keel_jw_raw(&w, item, len);
	keel_jw_obj_close(&w);
}

enum keel_err
keel_notify_publish(struct keel_cache *c, struct keel_redis *r, int64_t uid,
    const char *msg, size_t len)
{
	struct keel_rreply	*rep = NULL;
	char			 ns[KEEL_NOTIFY_NS_MAX];
	char			 ch[KEEL_NOTIFY_CHANNEL_MAX];
	const char		*argv[3];
	size_t			 argvlen[3];
	enum keel_err		 er;

	/* First the pages, so a client the event sends to its list sees
	 * the row; cache.c logs a failure (the pages age out in 30 s). */
	if (keel_cache_user_ns(ns, sizeof(ns), KEEL_NOTIFY_NS, uid) > 0)
		(void)keel_cache_invalidate(c, ns);
	argv[0] = "PUBLISH";
	argv[1] = ch;
	argv[2] = msg;
	argvlen[0] = 7;
	argvlen[1] = keel_notify_channel(ch, sizeof(ch), uid);
	argvlen[2] = len;
	er = keel_redis_cmd(r, 3, argv, argvlen, &rep);
	if (er == KEEL_OK && rep->type == KEEL_R_ERROR) {
		keel_log_warnx("notify: publishing to user %lld: %s",
		    (long long)uid, rep->str);
		er = KEEL_EINTERNAL;
	} else if (er != KEEL_OK)
		keel_log_warnx("notify: publishing to user %lld failed (%s); "
		    "streams replay it from PostgreSQL", (long long)uid,
		    keel_strerror(er));
	keel_rreply_free(rep);
	return er;
}

enum keel_err
keel_notify_queue_password(struct keel_db *db, int64_t uid, const char *via,
    const char *event, int64_t *job)
{
	struct keel_buf	 b = { NULL, 0, 0 }, key = { NULL, 0, 0 };
	struct keel_jw	 w;
	enum keel_err	 er;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "userId");
	keel_jw_int(&w, uid);
	keel_jw_key(&w, "via");
	keel_jw_str(&w, via);
	keel_jw_obj_close(&w);
	keel_buf_printf(&key, "notification:password:%lld:%s",
	    (long long)uid, event);
	er = keel_outbox_add(db, "notifications", "password_changed", b.data,
	    key.data, job);
	keel_buf_free(&key);
	keel_buf_free(&b);
	return er;
}

void
keel_notify_ticket_key(const char *tok, char key[KEEL_NOTIFY_TICKET_KEY_MAX])
{
	char	 id[KEEL_AUTH_ID_LEN + 1];

	keel_auth_token_id(tok, id);
	memcpy(key, KEEL_NOTIFY_TICKET_PREFIX,
	    sizeof(KEEL_NOTIFY_TICKET_PREFIX) - 1);
	memcpy(key + sizeof(KEEL_NOTIFY_TICKET_PREFIX) - 1, id,
	    KEEL_AUTH_ID_LEN + 1);
}

enum keel_err
keel_notify_ticket_new(struct keel_redis *r, int64_t uid, const char *sid,
    char tok[KEEL_AUTH_TOKEN_LEN + 1], time_t *exp)
{
	struct keel_rreply	*rep = NULL;
	char			 key[KEEL_NOTIFY_TICKET_KEY_MAX];
	char			 val[KEEL_TEXT_INT_MAX + KEEL_AUTH_ID_LEN + 1];
	char			 ttl[KEEL_TEXT_INT_MAX];
	const char		*argv[5];
	time_t			 t = time(NULL);
	enum keel_err		 er;

	keel_auth_token_new(tok);
	keel_notify_ticket_key(tok, key);
	/* The session's id, not its token: a hash, as auth.c stores it. */
	snprintf(val, sizeof(val), "%lld:%s", (long long)uid, sid);
	keel_text_int(ttl, KEEL_NOTIFY_TICKET_TTL);
	argv[0] = "SET";
	argv[1] = key;
	argv[2] = val;
	argv[3] = "EX";
	argv[4] = ttl;
	if ((er = keel_redis_cmd(r, 5, argv, NULL, &rep)) == KEEL_OK &&
	    rep->type != KEEL_R_STR) {
		keel_log_warnx("notify: storing a ticket: %s",
		    rep->type == KEEL_R_ERROR ? rep->str : "unexpected reply");
		er = KEEL_EINTERNAL;
	}
	keel_rreply_free(rep);
	if (er != KEEL_OK)
		explicit_bzero(tok, KEEL_AUTH_TOKEN_LEN + 1);
	else if (exp != NULL)
		*exp = t + KEEL_NOTIFY_TICKET_TTL;
	return er;
}
