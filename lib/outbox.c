/* SPDX-License-Identifier: ISC */
/*
 * outbox.c -- jobs as rows of the outbox table, moved to their queues.
 *
 * A job is a row of the outbox table first (sql/006_outbox.sql), written
 * in the caller's transaction, so no job is lost between the database
 * and the queue: the app pushes it right after commit and the relay
 * (cron/relay.c) moves rows left behind.  A push is one enqueue script
 * call per run of rows bound for one queue; the queue knows every job's
 * key, so a row pushed twice (a mark lost, two pushers) is one job.  The
 * delay of a delayed row is counted by the database until the push and by
 * Redis after it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/batch.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/redis.h"
#include "queue_private.h"

/* $5: milliseconds before the job may run, by the database's clock. */
static const struct keel_query q_outbox_add = {
	.name = "outbox_add",
	.sql = "INSERT INTO outbox (queue, kind, payload, idempotency_key, "
	    "available_at) VALUES ($1, $2, $3::jsonb, $4, "
	    "now() + $5::bigint * interval '1 millisecond') RETURNING id",
	.target = KEEL_DB_PRIMARY };

/* The delay is what is left of available_at, by the database's clock;
 * Redis then counts it on its own. */
#define OUTBOX_COLS "id, queue, kind, payload::text, idempotency_key, " \
	"GREATEST(0, ceil(extract(epoch FROM available_at - now()) * 1000))" \
	"::bigint"

static const struct keel_query q_outbox_by_ids = {
	.name = "outbox_by_ids",
	.sql = "SELECT " OUTBOX_COLS " FROM outbox "
	    "WHERE id = ANY($1::bigint[]) AND pushed_at IS NULL ORDER BY id",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_outbox_pending = {
	.name = "outbox_pending",
	.sql = "SELECT " OUTBOX_COLS " FROM outbox WHERE pushed_at IS NULL "
	    "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
	.target = KEEL_DB_PRIMARY };

/*
 * The mark needn't be durable: lost in a crash, it only makes the relay
 * push the row again, and the queue knows the key.  So its commit skips
 * the WAL flush (set_config(..., true) lasts until that commit), which
 * saves the request path a disk flush.
 */
static const struct keel_query q_outbox_mark = {
	.name = "outbox_mark",
	.sql = "WITH async AS "
	    "(SELECT set_config('synchronous_commit', 'off', true)) "
	    "UPDATE outbox SET pushed_at = now() FROM async "
	    "WHERE id = ANY($1::bigint[])",
	.target = KEEL_DB_PRIMARY };

enum keel_err
keel_outbox_add(struct keel_db *db, const char *queue, const char *kind,
    const char *payload, const char *idem_key, int64_t *id)
{
	/* One statement: now() + 0 is available_at's default anyway. */
	return keel_outbox_add_delayed(db, queue, kind, payload, idem_key, 0,
	    id);
}

enum keel_err
keel_outbox_add_delayed(struct keel_db *db, const char *queue,
    const char *kind, const char *payload, const char *idem_key,
    int64_t delay_ms, int64_t *id)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_text(&p, queue);
	keel_db_param_text(&p, kind);
	keel_db_param_text(&p, payload);
	keel_db_param_text(&p, idem_key);
	keel_db_param_int(&p, delay_ms);
	if ((er = keel_db_query(db, &q_outbox_add, &p, &rows)) ==
	    KEEL_OK && id != NULL)
		*id = keel_rows_int64(rows, 0, 0);
	keel_rows_free(rows);
	return er;
}

/*
 * Pushes outbox rows (OUTBOX_COLS) onto their queues, one script call per
 * queue run of consecutive rows, and appends the ids pushed to the array
 * literal ids ("{1,2}" without the braces).
 */
static enum keel_err
push_rows(struct keel_redis *r, const struct keel_rows *rows,
    struct keel_buf *ids, int *pushed)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	const char		*name;
	size_t			 i, j, n = keel_rows_count(rows);
	enum keel_err		 er = KEEL_OK;

	for (i = 0; i < n; i = j) {
		name = keel_rows_value(rows, i, 1);
		keel_queue_args_init(&a, keel_queue_policy(name), name);
		for (j = i; j < n && strcmp(keel_rows_value(rows, j, 1),
		    name) == 0 && j - i < 200; j++) {
			keel_queue_args_str(&a, keel_rows_value(rows, j, 4));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 2));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 3));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 5));
		}
		er = keel_queue_args_eval(r, &keel_queue_script_enqueue, &a,
		    &rep);
		keel_queue_args_free(&a);
		keel_rreply_free(rep);
		rep = NULL;
		if (er != KEEL_OK)
			return er;
		/* Known keys count as pushed too: they are on the queue. */
		for (; i < j; i++) {
			keel_buf_printf(ids, "%s%s", ids->len > 1 ? "," : "",
			    keel_rows_value(rows, i, 0));
			(*pushed)++;
		}
	}
	return er;
}

enum keel_err
keel_outbox_push(struct keel_db *db, struct keel_redis *r, const int64_t *ids,
    size_t n)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	struct keel_buf		 done = { NULL, 0, 0 };
	char			*in;
	enum keel_err		 er, er2;
	int			 pushed = 0;

	if (n == 0)
		return KEEL_OK;
	in = keel_batch_array(ids, n);
	keel_db_params_init(&p);
	keel_db_param_text(&p, in);
	if ((er = keel_db_query(db, &q_outbox_by_ids, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	keel_buf_putc(&done, '{');
	er = push_rows(r, rows, &done, &pushed);
	keel_buf_putc(&done, '}');
	if (pushed > 0) {
		/* Unmarked rows are pushed again by the relay; the queue
		 * knows their keys, so that costs nothing but a call. */
		keel_db_params_init(&p);
		keel_db_param_text(&p, done.data);
		if ((er2 = keel_db_query(db, &q_outbox_mark, &p, NULL)) !=
		    KEEL_OK && er == KEEL_OK)
			er = er2;
	}
out:
	if (er != KEEL_OK)
		keel_log_warnx("outbox: push after commit failed (%s); the "
		    "relay will move the job", keel_strerror(er));
	keel_rows_free(rows);
	free(in);
	keel_buf_free(&done);
	return er;
}

enum keel_err
keel_outbox_relay(struct keel_db *db, struct keel_redis *r, int limit,
    int *pushed)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	struct keel_buf		 done = { NULL, 0, 0 };
	enum keel_err		 er, er2;

	*pushed = 0;
	if ((er = keel_db_begin(db)) != KEEL_OK)
		return er;
	keel_db_params_init(&p);
	keel_db_param_int(&p, limit);
	/* FOR UPDATE SKIP LOCKED: two relays never push the same rows. */
	if ((er = keel_db_query(db, &q_outbox_pending, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	keel_buf_putc(&done, '{');
	er = push_rows(r, rows, &done, pushed);
	keel_buf_putc(&done, '}');
	if (*pushed > 0) {
		keel_db_params_init(&p);
		keel_db_param_text(&p, done.data);
		if ((er2 = keel_db_query(db, &q_outbox_mark, &p, NULL)) !=
		    KEEL_OK) {
			er = er2;
			*pushed = 0;
			goto out;
		}
	}
	/* Commit what was pushed even when Redis failed part-way. */
	if ((er2 = keel_db_commit(db)) != KEEL_OK) {
		er = er2;
		*pushed = 0;
	}
out:
	keel_db_rollback(db);
	keel_rows_free(rows);
	keel_buf_free(&done);
	return er;
}
