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
 *
 * The row stays the job's source of truth until the job has finished
 * (sql/009_outbox_finished.sql): Redis acknowledges a push before it is
 * on disk, so a crash can lose it.  The drainer marks the rows of the
 * jobs it completed or dead-lettered, and how (outcome, sql/017); the
 * relay asks Redis, once per period, about every row pushed and not
 * finished -- the same enqueue script, which adds a job it doesn't know
 * and says whether one it knows has completed or died -- so a job Redis
 * lost is pushed again and one that finished is marked.  The idempotency
 * key keeps that one job: a key Redis knows is never added twice.
 *
 * Known means known from this row.  Each push carries the row's origin,
 * its id and creation time to the microsecond, which the app's push and
 * the relay's share and which no other row has: after PostgreSQL is
 * restored to an earlier point, ids come again -- and keys built on
 * them, email:attempt:<id> -- while Redis still holds the jobs of the
 * rows the restore took away (completed ones for a day).  Such a job is
 * another row's; the enqueue script replaces it with this row's, or,
 * while it is leased (or has only just finished by code older than this,
 * whose drainer marked rows by key alone), says so, and the row stays
 * unpushed for the relay to ask again (lib/lua/queue_enqueue.lua).  A
 * drainer marks the row of its job's origin, never another row of the
 * key, so a late mark can't finish a row that reused it.  Without
 * origins a restore had new jobs marked completed that never ran.
 *
 * Only a completed job has run: a drainer never runs one again, whatever
 * Redis hands back.  A dead one is finished too (the relay leaves it
 * alone) until an operator retries it: the retry moves its dead letter
 * back in Redis, then makes its row unfinished, so the relay watches it
 * again and prune keeps it.  A completion mark wins over a dead one, and
 * a dead mark never overwrites a completion, so marks that arrive late
 * (a drainer's, racing a retry and another drainer) can't make a
 * completed job run again.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/batch.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/queue.h"
#include "keel/redis.h"
#include "queue_private.h"

/* $5: milliseconds before the job may run, by the database's clock. */
static const struct keel_query q_outbox_add = {
	.name = "outbox_add",
	.sql = "INSERT INTO outbox (queue, kind, payload, idempotency_key, "
	    "available_at, request_id) VALUES ($1, $2, $3::jsonb, $4, "
	    "now() + $5::bigint * interval '1 millisecond', NULLIF($6, '')) "
	    "RETURNING id",
	.target = KEEL_DB_PRIMARY };

/* The delay is what is left of available_at, by the database's clock;
 * Redis then counts it on its own. */
#define OUTBOX_COLS "id, queue, kind, payload::text, idempotency_key, " \
	"GREATEST(0, ceil(extract(epoch FROM available_at - now()) * 1000))" \
	"::bigint, coalesce(request_id, ''), " OUTBOX_ORIGIN

/* A row's origin (queue_enqueue.lua): its id, reused after a restore,
 * and its creation time in microseconds, which a restore doesn't bring
 * back with it. */
#define OUTBOX_ORIGIN "id::text || '@' || " \
	"round(extract(epoch FROM created_at) * 1000000)::bigint::text"

static const struct keel_query q_outbox_by_ids = {
	.name = "outbox_by_ids",
	.sql = "SELECT " OUTBOX_COLS " FROM outbox "
	    "WHERE id = ANY($1::bigint[]) AND pushed_at IS NULL ORDER BY id",
	.target = KEEL_DB_PRIMARY };

/* The relay's rows: not pushed yet ($2 ignored), oldest first, but not
 * those a push found waiting for another origin's job (checked_at, set
 * without pushed_at) in the last second, so they can't hold the batch ... */
static const struct keel_query q_outbox_pending = {
	.name = "outbox_pending",
	.sql = "SELECT " OUTBOX_COLS " FROM outbox WHERE pushed_at IS NULL "
	    "AND $2::int >= 0 AND (checked_at IS NULL OR checked_at < now() - "
	    "interval '1 second') ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
	.target = KEEL_DB_PRIMARY };

/* ... and pushed, not finished, not asked about for $2 seconds. */
static const struct keel_query q_outbox_unfinished = {
	.name = "outbox_unfinished",
	.sql = "SELECT " OUTBOX_COLS " FROM outbox WHERE pushed_at IS NOT NULL "
	    "AND finished_at IS NULL AND coalesce(checked_at, pushed_at) < "
	    "now() - $2::int * interval '1 second' "
	    "ORDER BY coalesce(checked_at, pushed_at) LIMIT $1 "
	    "FOR UPDATE SKIP LOCKED",
	.target = KEEL_DB_PRIMARY };

/*
 * Rows $1 are on their queues: pushed now, or asked about now (checked)
 * if they were pushed before; rows $2 among them have completed, rows $3
 * died (dead-lettered: finished, not run).  Rows $4 are not: their key
 * holds another origin's job for now; they are only checked, and stay
 * as pushed as they were, so a drainer's mark of that job by key can't
 * finish one that was never pushed.  The mark
 * needn't be durable: lost in a crash, it only makes the relay ask again,
 * and the queue knows the key.  So its commit skips the WAL flush
 * (set_config(..., true) lasts until that commit), which saves the
 * request path a disk flush.  The right-hand sides read the old row.
 */
static const struct keel_query q_outbox_mark = {
	.name = "outbox_mark",
	.sql = "WITH async AS "
	    "(SELECT set_config('synchronous_commit', 'off', true)) "
	    "UPDATE outbox SET pushed_at = CASE WHEN id = ANY($4::bigint[]) "
	    "THEN pushed_at ELSE coalesce(pushed_at, now()) END, "
	    "checked_at = CASE WHEN id = ANY($4::bigint[]) THEN now() "
	    "WHEN pushed_at IS NULL THEN NULL ELSE now() END, "
	    "finished_at = CASE WHEN id = ANY($2::bigint[]) "
	    "OR id = ANY($3::bigint[]) THEN now() END, "
	    "outcome = CASE WHEN id = ANY($2::bigint[]) THEN 'completed' "
	    "WHEN id = ANY($3::bigint[]) THEN 'dead' END "
	    "FROM async WHERE id = ANY($1::bigint[]) "
	    "OR id = ANY($4::bigint[])",
	.target = KEEL_DB_PRIMARY };

/*
 * The drainer's mark: the jobs $1 (a JSON array of [key, origin]) have
 * completed, the jobs $2 died.  Each marks its key's row only if the row
 * is of its origin ('' none: any, as before origins): a job of a row a
 * restore took away finishes no row that reused its key.  A completion
 * is marked over a dead mark (the job was retried and ran); a death
 * never over a finished row: it may be a completion that came first, or
 * the job died again.  A batch leases a key once, so a row matches one
 * job at most.
 */
static const struct keel_query q_outbox_finished = {
	.name = "outbox_finished",
	.sql = "WITH async AS "
	    "(SELECT set_config('synchronous_commit', 'off', true)), "
	    "m AS (SELECT e->>0 AS k, e->>1 AS o, true AS ok "
	    "FROM jsonb_array_elements($1::jsonb) e UNION ALL "
	    "SELECT e->>0, e->>1, false FROM jsonb_array_elements($2::jsonb) e) "
	    "UPDATE outbox SET finished_at = now(), outcome = CASE WHEN m.ok "
	    "THEN 'completed' ELSE 'dead' END FROM async, m "
	    "WHERE idempotency_key = m.k AND (m.o = '' OR m.o = "
	    OUTBOX_ORIGIN ") AND pushed_at IS NOT NULL AND CASE WHEN m.ok "
	    "THEN finished_at IS NULL OR outcome IS DISTINCT FROM 'completed' "
	    "ELSE finished_at IS NULL END",
	.target = KEEL_DB_PRIMARY };

/* Which of the keys $1 (a JSON array) name jobs that ran: finished, and
 * not dead (a row finished before sql/017 counts: it may have run). */
static const struct keel_query q_outbox_which_ran = {
	.name = "outbox_which_ran",
	.sql = "SELECT idempotency_key FROM outbox WHERE idempotency_key IN "
	    "(SELECT jsonb_array_elements_text($1::jsonb)) "
	    "AND finished_at IS NOT NULL AND outcome IS DISTINCT FROM 'dead'",
	.target = KEEL_DB_PRIMARY };

/*
 * An operator retried the jobs $1 (a JSON array of [key, origin]): their
 * rows, each of its job's origin ('' none: by key), are unfinished
 * again, as if pushed now -- never a row that reused the key.  Never a
 * completed one's (a dead letter Redis brought back after a crash forgot
 * its retry): the drainer finds it ran.  A row finished before sql/017
 * (outcome NULL) died, since its key was a dead letter.
 */
static const struct keel_query q_outbox_revive = {
	.name = "outbox_revive",
	.sql = "WITH m AS (SELECT e->>0 AS k, e->>1 AS o "
	    "FROM jsonb_array_elements($1::jsonb) e), "
	    "back AS (UPDATE outbox SET finished_at = NULL, "
	    "outcome = NULL, checked_at = now() FROM m "
	    "WHERE idempotency_key = m.k AND (m.o = '' OR m.o = "
	    OUTBOX_ORIGIN ") AND finished_at IS NOT NULL "
	    "AND outcome IS DISTINCT FROM 'completed' RETURNING 1) "
	    "SELECT count(*) FROM back",
	.target = KEEL_DB_PRIMARY };

/* An operator emptied queue $1: its pushed rows will never run (their
 * outcome stays NULL: counted as run, so nothing brings them back). */
static const struct keel_query q_outbox_abandon = {
	.name = "outbox_abandon",
	.sql = "WITH gone AS (UPDATE outbox SET finished_at = now() "
	    "WHERE queue = $1 AND pushed_at IS NOT NULL AND finished_at IS NULL "
	    "RETURNING 1) SELECT count(*) FROM gone",
	.target = KEEL_DB_PRIMARY };

/* What one push of rows found, for the mark and the relay's summary. */
struct push_tally {
	struct keel_buf	 all;		/* "{id,...": every row on a queue */
	struct keel_buf	 fin;		/* "{id,...": those completed */
	struct keel_buf	 dead;		/* "{id,...": those dead-lettered */
	struct keel_buf	 busy;		/* "{id,...": rows not pushed, their
					   key another origin's job for now */
	int		 rows;		/* rows on their queues */
	int		 busy_rows;	/* rows in busy */
	int		 added;		/* jobs Redis didn't know: added */
	int		 finished;	/* jobs Redis says have finished */
};

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
	/* The request's id follows the job to its logs and its mail. */
	keel_db_param_text(&p, keel_log_request());
	if ((er = keel_db_query(db, &q_outbox_add, &p, &rows)) ==
	    KEEL_OK && id != NULL)
		*id = keel_rows_int64(rows, 0, 0);
	keel_rows_free(rows);
	return er;
}

static void
push_tally_init(struct push_tally *t)
{
	memset(t, 0, sizeof(*t));
	keel_buf_putc(&t->all, '{');
	keel_buf_putc(&t->fin, '{');
	keel_buf_putc(&t->dead, '{');
	keel_buf_putc(&t->busy, '{');
}

static void
push_tally_free(struct push_tally *t)
{
	keel_buf_free(&t->all);
	keel_buf_free(&t->fin);
	keel_buf_free(&t->dead);
	keel_buf_free(&t->busy);
}

/* Appends id to the array literal b ("{" open, no "}" yet). */
static void
push_tally_id(struct keel_buf *b, const char *id)
{
	keel_buf_printf(b, "%s%s", b->len > 1 ? "," : "", id);
}

/*
 * Pushes outbox rows (OUTBOX_COLS) onto their queues, one script call per
 * queue run of consecutive rows, and tallies each row in t.
 */
static enum keel_err
push_rows(struct keel_redis *r, const struct keel_rows *rows,
    struct push_tally *t)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	const char		*name, *id;
	size_t			 i, j, k, n = keel_rows_count(rows);
	enum keel_err		 er = KEEL_OK;

	for (i = 0; i < n; i = j) {
		name = keel_rows_value(rows, i, 1);
		keel_queue_args_init(&a, r, keel_queue_policy(name), name);
		keel_queue_args_fmt(&a, "%d", KEEL_QUEUE_REUSE_GRACE_MS);
		for (j = i; j < n && strcmp(keel_rows_value(rows, j, 1),
		    name) == 0 && j - i < 200; j++) {
			keel_queue_args_str(&a, keel_rows_value(rows, j, 4));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 2));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 3));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 5));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 6));
			keel_queue_args_str(&a, keel_rows_value(rows, j, 7));
		}
		er = keel_queue_args_eval(r, &keel_queue_script_enqueue, &a,
		    &rep);
		keel_queue_args_free(&a);
		if (er != KEEL_OK) {
			keel_rreply_free(rep);
			return er;
		}
		/* Known keys count as pushed too: they are on the queue. */
		for (k = 0; i < j; i++, k++) {
			id = keel_rows_value(rows, i, 0);
			if (keel_queue_reply_int(rep, k) == KEEL_QUEUE_ADD_BUSY) {
				push_tally_id(&t->busy, id);
				t->busy_rows++;
				continue;
			}
			push_tally_id(&t->all, id);
			t->rows++;
			switch (keel_queue_reply_int(rep, k)) {
			case KEEL_QUEUE_ADD_ADDED:
				t->added++;
				break;
			case KEEL_QUEUE_ADD_DONE:
				push_tally_id(&t->fin, id);
				t->finished++;
				break;
			case KEEL_QUEUE_ADD_DEAD:
				push_tally_id(&t->dead, id);
				t->finished++;
				break;
			default:
				break;
			}
		}
		keel_rreply_free(rep);
		rep = NULL;
	}
	return er;
}

/* Marks the rows t tallied (q_outbox_mark), if any. */
static enum keel_err
push_mark(struct keel_db *db, struct push_tally *t)
{
	struct keel_db_params	 p;

	if (t->rows + t->busy_rows == 0)
		return KEEL_OK;
	keel_buf_putc(&t->all, '}');
	keel_buf_putc(&t->fin, '}');
	keel_buf_putc(&t->dead, '}');
	keel_buf_putc(&t->busy, '}');
	keel_db_params_init(&p);
	keel_db_param_text(&p, t->all.data);
	keel_db_param_text(&p, t->fin.data);
	keel_db_param_text(&p, t->dead.data);
	keel_db_param_text(&p, t->busy.data);
	return keel_db_query(db, &q_outbox_mark, &p, NULL);
}

enum keel_err
keel_outbox_push(struct keel_db *db, struct keel_redis *r, const int64_t *ids,
    size_t n)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	struct push_tally	 t;
	char			*in;
	enum keel_err		 er, er2;

	if (n == 0)
		return KEEL_OK;
	push_tally_init(&t);
	in = keel_batch_array(ids, n);
	keel_db_params_init(&p);
	keel_db_param_text(&p, in);
	if ((er = keel_db_query(db, &q_outbox_by_ids, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	er = push_rows(r, rows, &t);
	/* Unmarked rows are pushed again by the relay; the queue knows
	 * their keys, so that costs nothing but a call. */
	if ((er2 = push_mark(db, &t)) != KEEL_OK && er == KEEL_OK)
		er = er2;
out:
	if (er != KEEL_OK)
		keel_log_warnx("outbox: push after commit failed (%s); the "
		    "relay will move the job", keel_strerror(er));
	keel_rows_free(rows);
	free(in);
	push_tally_free(&t);
	return er;
}

/*
 * One relay transaction: locks up to limit rows of q (q_outbox_pending
 * or q_outbox_unfinished, $2 after seconds), pushes them, marks them and
 * commits what was pushed even when Redis failed part-way.  Fills *out.
 */
static enum keel_err
relay_step(struct keel_db *db, struct keel_redis *r,
    const struct keel_query *q, int limit, int after,
    struct keel_outbox_relayed *out)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	struct push_tally	 t;
	enum keel_err		 er, er2;

	memset(out, 0, sizeof(*out));
	push_tally_init(&t);
	if ((er = keel_db_begin(db)) != KEEL_OK)
		goto out;
	keel_db_params_init(&p);
	keel_db_param_int(&p, limit);
	keel_db_param_int(&p, after);
	/* FOR UPDATE SKIP LOCKED: two relays never push the same rows. */
	if ((er = keel_db_query(db, q, &p, &rows)) != KEEL_OK)
		goto out;
	er = push_rows(r, rows, &t);
	if ((er2 = push_mark(db, &t)) == KEEL_OK)
		er2 = keel_db_commit(db);
	if (er2 != KEEL_OK) {
		er = er2;
		goto out;
	}
	out->rows = t.rows;
	out->added = t.added;
	out->finished = t.finished;
out:
	keel_db_rollback(db);
	keel_rows_free(rows);
	push_tally_free(&t);
	return er;
}

enum keel_err
keel_outbox_relay(struct keel_db *db, struct keel_redis *r, int limit,
    int *pushed)
{
	struct keel_outbox_relayed	 out;
	enum keel_err			 er;

	er = relay_step(db, r, &q_outbox_pending, limit, 0, &out);
	*pushed = out.rows;
	return er;
}

enum keel_err
keel_outbox_recheck(struct keel_db *db, struct keel_redis *r, int limit,
    int after, struct keel_outbox_relayed *out)
{
	return relay_step(db, r, &q_outbox_unfinished, limit, after, out);
}

/* Sets b (empty) to keys[0..n) as a JSON array of strings. */
static void
keys_json(struct keel_buf *b, const char *const *keys, size_t n)
{
	struct keel_jw		 w;
	size_t			 i;

	keel_jw_init(&w, b);
	keel_jw_arr_open(&w);
	for (i = 0; i < n; i++)
		keel_jw_str(&w, keys[i]);
	keel_jw_arr_close(&w);
}

/* Sets b (empty) to jobs[0..n) as a JSON array of [key, origin]. */
static void
jobs_json(struct keel_buf *b, const struct keel_outbox_job *jobs, size_t n)
{
	struct keel_jw		 w;
	size_t			 i;

	keel_jw_init(&w, b);
	keel_jw_arr_open(&w);
	for (i = 0; i < n; i++) {
		keel_jw_arr_open(&w);
		keel_jw_str(&w, jobs[i].key);
		keel_jw_str(&w, jobs[i].origin != NULL ? jobs[i].origin : "");
		keel_jw_arr_close(&w);
	}
	keel_jw_arr_close(&w);
}

/*
 * Runs q with arr, a JSON array keys_json() or jobs_json() made, as its
 * one parameter; frees arr's bytes.
 */
static enum keel_err
array_query(struct keel_db *db, const struct keel_query *q,
    struct keel_buf *arr, struct keel_rows **rows)
{
	struct keel_db_params	 p;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_text(&p, arr->data);
	er = keel_db_query(db, q, &p, rows);
	keel_buf_free(arr);
	return er;
}

enum keel_err
keel_outbox_finished(struct keel_db *db, const struct keel_outbox_job *done,
    size_t ndone, const struct keel_outbox_job *dead, size_t ndead)
{
	struct keel_db_params	 p;
	struct keel_buf		 d1 = { NULL, 0, 0 }, d2 = { NULL, 0, 0 };
	enum keel_err		 er;

	if (ndone + ndead == 0)
		return KEEL_OK;
	jobs_json(&d1, done, ndone);
	jobs_json(&d2, dead, ndead);
	keel_db_params_init(&p);
	keel_db_param_text(&p, d1.data);
	keel_db_param_text(&p, d2.data);
	er = keel_db_query(db, &q_outbox_finished, &p, NULL);
	keel_buf_free(&d1);
	keel_buf_free(&d2);
	return er;
}

enum keel_err
keel_outbox_which_ran(struct keel_db *db, const char *const *keys,
    size_t n, bool *ran)
{
	struct keel_rows	*rows = NULL;
	struct keel_buf		 arr = { NULL, 0, 0 };
	size_t			 i, j;
	enum keel_err		 er;

	memset(ran, 0, n * sizeof(*ran));
	if (n == 0)
		return KEEL_OK;
	keys_json(&arr, keys, n);
	if ((er = array_query(db, &q_outbox_which_ran, &arr, &rows)) !=
	    KEEL_OK)
		return er;
	for (j = 0; j < keel_rows_count(rows); j++)
		for (i = 0; i < n; i++)
			if (strcmp(keys[i], keel_rows_value(rows, j, 0)) == 0)
				ran[i] = true;
	keel_rows_free(rows);
	return KEEL_OK;
}

/* Element i of an array reply as a string ("" when it is none). */
static const char *
reply_str(const struct keel_rreply *rep, size_t i)
{
	return i < rep->nelem && rep->elem[i].type == KEEL_R_STR ?
	    rep->elem[i].str : "";
}

/*
 * One batch of a retry: up to 1000 dead letters of q moved back in
 * Redis, then their rows made unfinished.  *read gets the dead letters
 * the script read, *moved the jobs it moved back.  A failed revive adds
 * the batch to *unrevived and is logged (once, while *unrevived is 0),
 * not returned: the jobs are back and will run (a dead row doesn't stop
 * them); only the relay's watch and prune's hold on their rows wait for
 * their next finish.
 */
static enum keel_err
retry_batch(struct keel_db *db, struct keel_redis *r,
    const struct keel_queue *q, int64_t *read, int64_t *moved,
    int64_t *unrevived)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	struct keel_outbox_job	*jobs;
	struct keel_buf		 arr = { NULL, 0, 0 };
	size_t			 i, n;
	enum keel_err		 er = KEEL_OK;

	*read = *moved = 0;
	keel_queue_args_init(&a, r, q, q->name);
	er = keel_queue_args_eval(r, &keel_queue_script_retry_failed, &a,
	    &rep);
	keel_queue_args_free(&a);
	if (er != KEEL_OK)
		return er;
	if (rep->type != KEEL_R_ARRAY || rep->nelem < 1) {
		keel_rreply_free(rep);
		return KEEL_EINTERNAL;
	}
	*read = keel_queue_reply_int(rep, 0);
	/* A key and its origin per job moved. */
	n = (rep->nelem - 1) / 2;
	jobs = keel_calloc(n + 1, sizeof(*jobs));
	for (i = 0; i < n; i++) {
		jobs[i].key = reply_str(rep, 1 + 2 * i);
		jobs[i].origin = reply_str(rep, 2 + 2 * i);
	}
	*moved = (int64_t)n;
	if (n > 0) {
		jobs_json(&arr, jobs, n);
		er = array_query(db, &q_outbox_revive, &arr, NULL);
	}
	if (er != KEEL_OK) {
		if (*unrevived == 0)
			keel_log_warnx("outbox: %s: %zu retried job(s) back on "
			    "the queue, their outbox rows still finished (%s); "
			    "they run all the same", q->name, n,
			    keel_strerror(er));
		*unrevived += (int64_t)n;
	}
	free(jobs);
	keel_rreply_free(rep);
	return KEEL_OK;
}

enum keel_err
keel_outbox_retry_failed_rows(struct keel_db *db, struct keel_redis *r,
    const struct keel_queue *q, int64_t *moved, int64_t *unrevived)
{
	int64_t		 read, n;
	enum keel_err	 er;

	/* 1000 dead letters per call keeps each script short. */
	*moved = *unrevived = 0;
	do {
		if ((er = retry_batch(db, r, q, &read, &n, unrevived)) !=
		    KEEL_OK)
			return er;
		*moved += n;
	} while (read == 1000);
	return KEEL_OK;
}

enum keel_err
keel_outbox_retry_failed(struct keel_db *db, struct keel_redis *r,
    const struct keel_queue *q, int64_t *moved)
{
	int64_t		 unrevived;

	return keel_outbox_retry_failed_rows(db, r, q, moved, &unrevived);
}

enum keel_err
keel_outbox_abandon(struct keel_db *db, const char *queue, int64_t *n)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_text(&p, queue);
	if ((er = keel_db_query(db, &q_outbox_abandon, &p, &rows)) == KEEL_OK &&
	    n != NULL)
		*n = keel_rows_int64(rows, 0, 0);
	keel_rows_free(rows);
	return er;
}
