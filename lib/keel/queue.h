/* SPDX-License-Identifier: ISC */
/*
 * queue.h -- the Redis Streams queues: their policy, adding a job
 * straight to Redis, and what an operator does to a queue (DESIGN.md,
 * "Jobs, outbox and cron").  Writes go through the outbox (outbox.h);
 * drain programs through drain.h.
 */
#ifndef KEEL_QUEUE_H
#define KEEL_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"

struct keel_redis;

/*
 * One queue's policy: a row of the table in queue.c.  Times are in
 * milliseconds of the Redis server's clock (TIME), never a host's.
 */
struct keel_queue {
	const char	*name;
	int		 attempts;	/* in all, the first try included */
	int		 backoff_ms;	/* before the 2nd attempt; doubles */
	int		 inflight;	/* leases at once, every consumer */
	int		 rate;		/* leases per rate_ms, every consumer;
					   0: unlimited */
	int		 rate_ms;
	int		 batch;		/* jobs one fetch leases at most */
	int		 keep_completed; /* newest completed jobs kept */
	int		 completed_age;	/* seconds kept; 0: count only */
	int		 keep_failed;	/* dead letters kept */
	int		 failed_age;	/* seconds kept; 0: count only */
};

/* The queue called name (not NULL), or NULL when the table has none.
 * The row is static: never freed. */
const struct keel_queue *keel_queue_find(const char *name);
/* The whole table, static; *n (not NULL) gets the count. */
const struct keel_queue *keel_queue_all(size_t *n);
/* The backoff before attempt (attempt - 1 failed): base * 2^(attempt-2).
 * attempt >= 2; pure, for tests. */
int64_t		 keel_queue_backoff_ms(const struct keel_queue *q,
		    int attempt);

/*
 * Straight onto queue q, bypassing the outbox (operations: test emails,
 * benchmarks).  A job whose key is already known is left alone
 * (*added = 0; added may be NULL), whichever outbox row it came from:
 * with no row of its own, the key alone says which job it is.  delay_ms
 * 0 runs it now.  The strings are only read.  KEEL_EUNAVAIL when Redis
 * can't be reached.
 */
enum keel_err	 keel_queue_enqueue(struct keel_redis *r,
		    const struct keel_queue *q, const char *kind,
		    const char *payload, const char *idem_key, int64_t delay_ms,
		    int *added);

/* Counts for API.md's stats route: one consistent snapshot. */
struct keel_queue_stats {
	int64_t	 waiting;	/* on the stream, not leased */
	int64_t	 active;	/* leased */
	int64_t	 delayed;	/* waiting for their time (retries too) */
	int64_t	 completed;	/* kept by the retention policy */
	int64_t	 failed;	/* in the dead-letter stream */
};

/* Fills *st (the caller's) with q's counts; untouched on an error. */
enum keel_err	 keel_queue_stats(struct keel_redis *r,
		    const struct keel_queue *q, struct keel_queue_stats *st);
/* Retrying q's dead letters is keel_outbox_retry_failed() (outbox.h):
 * it makes their outbox rows unfinished too. */
/* Applies q's retention now; *removed (may be NULL) gets the count. */
enum keel_err	 keel_queue_prune(struct keel_redis *r,
		    const struct keel_queue *q, int64_t *removed);
/*
 * Deletes q's "completed", "failed" or "all" jobs (all: the queue's every
 * key, leased jobs included); *removed (may be NULL) gets the count.
 * KEEL_EINVAL for any other what.
 */
enum keel_err	 keel_queue_purge(struct keel_redis *r,
		    const struct keel_queue *q, const char *what,
		    int64_t *removed);

#endif /* KEEL_QUEUE_H */
