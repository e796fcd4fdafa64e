/* SPDX-License-Identifier: ISC */
/*
 * prune.c -- keel-jobs-prune: applies every queue's retention (completed
 * jobs by count and age, dead letters by count), deletes outbox rows
 * whose jobs completed more than a week ago or were dead-lettered more
 * than 30 days ago (never one still to run: it is the job's source of
 * truth, lib/outbox.c; a retried dead letter's row is unfinished again),
 * and one-time tokens a day after they were used or expired (a dead
 * token is only a liability).  A dead row is kept longer because an
 * operator may retry its dead letter after fixing what killed it: while
 * the row lives, the retried job has the outbox's guarantees (a Redis
 * crash can't lose it or run it twice); after, it still runs, from its
 * dead letter alone.  Drainers already trim on every finish; this
 * catches queues nobody drained lately.  cron runs it hourly.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "keel/cron.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/queue.h"
#include "keel/redis.h"

static const struct keel_query q_outbox_prune = { .name = "jobs_outbox_prune",
	.sql = "WITH gone AS (DELETE FROM outbox WHERE finished_at < now() - "
	"CASE WHEN outcome = 'dead' THEN interval '30 days' "
	"ELSE interval '7 days' END RETURNING 1) SELECT count(*) FROM gone",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_tokens_prune = { .name = "jobs_tokens_prune",
	.sql = "WITH gone AS (DELETE FROM one_time_tokens "
	"WHERE expires_at < now() - interval '1 day' "
	"OR used_at < now() - interval '1 day' RETURNING 1) "
	"SELECT count(*) FROM gone",
	.target = KEEL_DB_PRIMARY };

/* Runs a counting DELETE; adds its count to *n, or counts a failure. */
static void
prune_rows(struct keel_db *db, const struct keel_query *q, int64_t *n,
    long *failed)
{
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	if ((er = keel_db_query(db, q, NULL, &rows)) == KEEL_OK)
		*n += keel_rows_int64(rows, 0, 0);
	else {
		keel_log_warnx("%s: %s", q->name, keel_strerror(er));
		(*failed)++;
	}
	keel_rows_free(rows);
}

int
main(int argc, char *argv[])
{
	const struct keel_queue	*qs;
	struct keel_cron	 c;
	struct keel_db		*db;
	struct keel_redis	*r;
	enum keel_err		 er;
	size_t			 nq, i;
	int64_t			 n, removed = 0, outbox = 0, tokens = 0;
	long			 failed = 0;

	if (argc > 1) {
		fprintf(stderr, "usage: %s\n", argv[0]);
		return 2;
	}
	keel_cron_init(&c, "keel-jobs-prune", 300);
	if (!keel_cron_lock(&c)) {
		keel_cron_done(&c, "skipped: another run is pruning");
		return 0;
	}
	r = keel_redis_open(&c.cfg);
	qs = keel_queue_all(&nq);
	for (i = 0; i < nq && !keel_cron_stopping(&c); i++) {
		if ((er = keel_queue_prune(r, &qs[i], &n)) != KEEL_OK) {
			keel_log_warnx("prune %s: %s", qs[i].name,
			    keel_strerror(er));
			failed++;
			continue;
		}
		removed += n;
	}
	db = keel_db_open(&c.cfg);
	prune_rows(db, &q_outbox_prune, &outbox, &failed);
	prune_rows(db, &q_tokens_prune, &tokens, &failed);
	keel_db_close(db);
	keel_redis_close(r);
	keel_cron_done(&c, "processed=%lld failed=%ld retried=0 took=%.2fs "
	    "outbox_rows=%lld tokens=%lld", (long long)removed, failed,
	    keel_cron_elapsed(&c), (long long)outbox, (long long)tokens);
	return failed ? 1 : 0;
}
