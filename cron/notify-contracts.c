/* SPDX-License-Identifier: ISC */
/*
 * notify-contracts.c -- keel-notify-contracts: tells each customer, the
 * day before, that their rental starts tomorrow.  cron runs it daily.
 *
 * It finds the active contracts of active customers starting tomorrow
 * (the UTC day after the database's today) and queues one
 * notifications job per contract and start date, contract_starting
 * {"userId", "contractId", "startsAt", "car"}, keyed
 * "notification:contract-starting:<contractId>:<startsAt>" (outbox.h:
 * one job per key, ever), and pushes them (the relay pushes what it
 * couldn't).  A contract whose job or notification for that date exists
 * already is not asked about again, so running it twice, or twice a
 * day, or on two hosts, notifies once: the key refuses a second job,
 * and the drainer's dedup_key a second row.  The date is in the key so
 * that a contract moved to another day is reminded again the day
 * before it; the drainer checks the contract again before it notifies
 * (drain-notifications.c), so a reminder queued before a cancellation
 * or a move is never made.  Keys queued before the date was in them,
 * "...:<contractId>", still count for the date their payload names.
 * Contracts are read in pages by id, within the budget.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "keel/cron.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/redis.h"

#define NOTIFY_BATCH	500	/* contracts per page */
#define NOTIFY_KEY	"notification:contract-starting:"

/*
 * Tomorrow's, after id $1, of active customers, none queued or notified
 * for that date: under its key, or under a key of before the date was in
 * it whose payload names the date.
 */
static const struct keel_query q_starting = { .name = "notify_starting",
	.sql = "SELECT c.id, c.customer_id, c.start_date::text, "
	"left(r.manufacturer || ' ' || r.model || ' (' || r.license_plate || "
	"')', 300) FROM contracts c JOIN cars r ON r.id = c.car_id "
	"JOIN users u ON u.id = c.customer_id "
	"WHERE c.status = 'active' AND u.is_active "
	"AND c.start_date = (now() AT TIME ZONE 'UTC')::date + 1 "
	"AND c.id > $1 "
	"AND NOT EXISTS (SELECT FROM outbox o "
	"WHERE o.idempotency_key IN ('" NOTIFY_KEY "' || c.id || ':' || "
	"c.start_date::text, '" NOTIFY_KEY "' || c.id) "
	"AND o.payload->>'startsAt' = c.start_date::text) "
	"AND NOT EXISTS (SELECT FROM notifications n "
	"WHERE n.dedup_key IN ('" NOTIFY_KEY "' || c.id || ':' || "
	"c.start_date::text, '" NOTIFY_KEY "' || c.id) "
	"AND n.data->>'startsAt' = c.start_date::text) "
	"ORDER BY c.id LIMIT $2", .target = KEEL_DB_PRIMARY };

struct notify_run {
	long	 queued;	/* jobs written */
	long	 skipped;	/* another run queued it meanwhile */
	long	 failed;
};

/* Row r's job into the outbox; its id into *job (0 when none). */
static void
notify_one(struct keel_db *db, const struct keel_rows *rows, size_t r,
    struct notify_run *run, int64_t *job)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	char		 key[96];
	int64_t		 id = keel_rows_int64(rows, r, 0);
	enum keel_err	 er;

	*job = 0;
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "userId");
	keel_jw_int(&w, keel_rows_int64(rows, r, 1));
	keel_jw_key(&w, "contractId");
	keel_jw_int(&w, id);
	keel_jw_key(&w, "startsAt");
	keel_jw_str(&w, keel_rows_value(rows, r, 2));
	keel_jw_key(&w, "car");
	keel_jw_str(&w, keel_rows_value(rows, r, 3));
	keel_jw_obj_close(&w);
	snprintf(key, sizeof(key), NOTIFY_KEY "%lld:%s", (long long)id,
	    keel_rows_value(rows, r, 2));
	er = keel_outbox_add(db, "notifications", "contract_starting",
	    b.data, key, job);
	if (er == KEEL_OK)
		run->queued++;
	else if (er == KEEL_ECONFLICT)
		run->skipped++;
	else {
		keel_log_warnx("contract %lld: %s", (long long)id,
		    keel_strerror(er));
		run->failed++;
	}
	keel_buf_free(&b);
}

int
main(int argc, char *argv[])
{
	struct keel_cron	 c;
	struct keel_db		*db;
	struct keel_redis	*r;
	struct keel_db_params	 p;
	struct keel_rows	*rows;
	struct notify_run	 run = { 0, 0, 0 };
	int64_t			 after = 0, jobs[NOTIFY_BATCH];
	size_t			 i, n, njobs;
	enum keel_err		 er;

	if (argc > 1) {
		fprintf(stderr, "usage: %s\n", argv[0]);
		return 2;
	}
	keel_cron_init(&c, "keel-notify-contracts", 300);
	if (!keel_cron_lock(&c)) {
		keel_cron_done(&c, "skipped: another run is notifying");
		return 0;
	}
	db = keel_db_open(&c.cfg);
	r = keel_redis_open(&c.cfg);
	do {
		rows = NULL;
		keel_db_params_init(&p);
		keel_db_param_int(&p, after);
		keel_db_param_int(&p, NOTIFY_BATCH);
		if ((er = keel_db_query(db, &q_starting, &p, &rows)) !=
		    KEEL_OK) {
			keel_log_warnx("listing contracts: %s",
			    keel_strerror(er));
			run.failed++;
			break;
		}
		n = keel_rows_count(rows);
		for (i = njobs = 0; i < n && !keel_cron_stopping(&c); i++) {
			notify_one(db, rows, i, &run, &jobs[njobs]);
			if (jobs[njobs] > 0)
				njobs++;
			after = keel_rows_int64(rows, i, 0);
		}
		keel_rows_free(rows);
		/* Best effort: the relay pushes what this doesn't. */
		(void)keel_outbox_push(db, r, jobs, njobs);
		keel_cron_progress(&c, "queued=%ld", run.queued);
	} while (n == NOTIFY_BATCH && !keel_cron_stopping(&c));
	keel_redis_close(r);
	keel_db_close(db);
	keel_cron_done(&c, "processed=%ld failed=%ld retried=0 took=%.2fs "
	    "skipped=%ld", run.queued, run.failed, keel_cron_elapsed(&c),
	    run.skipped);
	return run.failed > 0 ? 1 : 0;
}
