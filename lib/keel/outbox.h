/* SPDX-License-Identifier: ISC */
/*
 * outbox.h -- jobs written in the caller's transaction and moved to their
 * queues after the commit (DESIGN.md, "Jobs, outbox and cron").
 */
#ifndef KEEL_OUTBOX_H
#define KEEL_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"

struct keel_db;
struct keel_queue;
struct keel_redis;

/*
 * Writes a job into the outbox table.  Call it inside the transaction of
 * the change that causes the job (keel_db_begin ... keel_db_commit), so
 * the job exists if and only if the change does.  payload is a JSON
 * object's text; idem_key names the job uniquely forever (a second add
 * with the same key is KEEL_ECONFLICT).  The strings are only read; *id
 * (may be NULL) gets the outbox row's id.
 */
enum keel_err	 keel_outbox_add(struct keel_db *db, const char *queue,
		    const char *kind, const char *payload, const char *idem_key,
		    int64_t *id);
/* The same for a job that must not run before delay_ms from now. */
enum keel_err	 keel_outbox_add_delayed(struct keel_db *db,
		    const char *queue, const char *kind, const char *payload,
		    const char *idem_key, int64_t delay_ms, int64_t *id);

/*
 * After keel_db_commit(): moves the outbox rows ids[0..n) (the caller's;
 * n 0 does nothing) to their queues at once and marks them pushed.  Best
 * effort: any failure (Redis down) leaves the rows for the relay, is
 * logged, and is returned, which the caller may ignore -- the write
 * itself has succeeded.
 */
enum keel_err	 keel_outbox_push(struct keel_db *db, struct keel_redis *r,
		    const int64_t *ids, size_t n);

/*
 * The relay's first step, in a transaction of its own: pushes up to limit
 * rows still waiting in the outbox (oldest first, rows locked by another
 * relay skipped) and marks them.  *pushed (not NULL) gets the number
 * moved.  KEEL_EUNAVAIL when Redis or PostgreSQL is down (rows stay).
 */
enum keel_err	 keel_outbox_relay(struct keel_db *db, struct keel_redis *r,
		    int limit, int *pushed);

/* What keel_outbox_recheck() did with the rows it asked Redis about. */
struct keel_outbox_relayed {
	int	 rows;		/* rows asked about */
	int	 added;		/* jobs Redis had lost, pushed again */
	int	 finished;	/* jobs Redis says completed or dead-lettered:
				   rows marked so */
};

/*
 * The relay's second step, in a transaction of its own: asks Redis about
 * up to limit rows pushed but not finished and not asked about for after
 * seconds (least recently asked first), pushes again the jobs Redis no
 * longer knows (a crash lost them), marks finished the rows whose jobs
 * it says have completed or died (a dead row is never pushed again but
 * by an operator's retry), and the others asked.  *out (not NULL) gets the
 * counts.  KEEL_EUNAVAIL when Redis or PostgreSQL is down.
 */
enum keel_err	 keel_outbox_recheck(struct keel_db *db,
		    struct keel_redis *r, int limit, int after,
		    struct keel_outbox_relayed *out);

/* A job as the outbox knows it: its key and the origin of its row. */
struct keel_outbox_job {
	const char	*key;		/* idempotency key */
	const char	*origin;	/* "<row id>@<created_at, µs>" as the
					   job carries it (lib/outbox.c);
					   "": none, the key alone */
};

/*
 * A drainer's mark, after Redis recorded it: the jobs done[0..ndone)
 * completed and dead[0..ndead) were dead-lettered, so their rows need no
 * recheck and may be pruned.  A job marks the row of its own origin
 * only: a key's row of another origin (the key reused after a restore)
 * belongs to another job, which this mark, however late, must not
 * finish.  A job without an origin marks by its key alone.  A
 * completion is marked over a dead mark (a retried job that ran); a
 * death never over a finished row.  Keys without a row (jobs added
 * straight to Redis) are ignored.  The jobs are only read; either array
 * may be NULL when its count is 0.
 */
enum keel_err	 keel_outbox_finished(struct keel_db *db,
		    const struct keel_outbox_job *done, size_t ndone,
		    const struct keel_outbox_job *dead, size_t ndead);

/*
 * Sets ran[i] (n of them) when the job of keys[i] ran by its outbox row:
 * it completed (or finished before sql/017, when a row didn't say how).
 * A drainer asks before running jobs a Redis that lost its last writes
 * may hand back.  A dead-lettered job didn't run: retried, it runs.  Keys
 * without a row did not run.
 */
enum keel_err	 keel_outbox_which_ran(struct keel_db *db,
		    const char *const *keys, size_t n, bool *ran);

/*
 * An operator's retry (keel-queues retry-failed, POST
 * /api/queues/{name}/failed/retry): moves every dead letter of q back to
 * the queue with fresh attempts and their origins, then makes the
 * outbox rows of those jobs (each of its job's origin) unfinished again
 * (never a completed one's), so the relay watches
 * them and prune keeps them until they finish anew.  *moved (not NULL)
 * gets the number moved.  A failure to change the rows is logged, not
 * returned: the jobs run all the same (a dead row doesn't stop its job;
 * only one finished before sql/017 would).  KEEL_EUNAVAIL when Redis
 * can't be reached (what was moved before stays moved).
 */
enum keel_err	 keel_outbox_retry_failed(struct keel_db *db,
		    struct keel_redis *r, const struct keel_queue *q,
		    int64_t *moved);

/*
 * keel_outbox_retry_failed(), and *unrevived (not NULL) gets how many of
 * the jobs moved back kept rows that say finished: PostgreSQL failed the
 * update.  Until they finish again the relay doesn't watch them (a Redis
 * that loses them loses them for good) and prune may delete their rows;
 * keel-queues says so in its exit status.
 */
enum keel_err	 keel_outbox_retry_failed_rows(struct keel_db *db,
		    struct keel_redis *r, const struct keel_queue *q,
		    int64_t *moved, int64_t *unrevived);

/*
 * After an operator emptied queue (keel-queues purge QUEUE all): its
 * pushed, unfinished rows are marked finished, so the relay doesn't push
 * them back; *n (may be NULL) gets how many.  Rows not yet pushed stay.
 */
enum keel_err	 keel_outbox_abandon(struct keel_db *db, const char *queue,
		    int64_t *n);

#endif /* KEEL_OUTBOX_H */
