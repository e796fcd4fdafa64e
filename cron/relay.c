/* SPDX-License-Identifier: ISC */
/*
 * relay.c -- keel-outbox-relay: moves outbox rows that no app pushed (Redis
 * was down, or the worker died between commit and push) onto their
 * queues, and pushes again the jobs Redis lost after it acknowledged
 * them (a crash within its last second of writes): every pushed row not
 * yet finished is asked about every KEEL_RELAY_RECHECK seconds
 * (lib/outbox.c).  cron starts it every minute; it polls every second
 * within its budget, so jobs written during a Redis outage are queued
 * within about a second of Redis coming back.
 */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "keel/cron.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/outbox.h"
#include "keel/redis.h"
#include "keel/text.h"

#define RELAY_BATCH	500	/* rows per transaction */

int
main(int argc, char *argv[])
{
	struct keel_cron	 c;
	struct keel_db		*db;
	struct keel_redis	*r;
	struct keel_outbox_relayed rc;
	enum keel_err		 er, last = KEEL_OK;
	int64_t			 budget = 0;
	long			 total = 0, errors = 0, lost = 0, finished = 0;
	int			 n, once = 0, i, full;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--once") == 0)
			once = 1;
		else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc &&
		    keel_parse_int64(argv[i + 1], 1, 86400, &budget))
			i++;
		else {
			fprintf(stderr, "usage: keel-outbox-relay "
			    "[--budget SECONDS] [--once]\n");
			return 2;
		}
	}
	keel_cron_init(&c, "keel-outbox-relay", 0);
	c.deadline = c.t0 + (budget > 0 ? budget : c.cfg.drain_budget) *
	    1000.0;
	if (!keel_cron_lock(&c)) {
		keel_cron_done(&c, "skipped: another run is relaying");
		return 0;
	}
	db = keel_db_open(&c.cfg);
	r = keel_redis_open(&c.cfg);
	while (!keel_cron_stopping(&c)) {
		memset(&rc, 0, sizeof(rc));
		if ((er = keel_outbox_relay(db, r, RELAY_BATCH, &n)) ==
		    KEEL_OK)
			er = keel_outbox_recheck(db, r, RELAY_BATCH,
			    c.cfg.relay_recheck, &rc);
		total += n;
		lost += rc.added;
		finished += rc.finished;
		if (rc.added > 0)
			keel_log_warnx("relay: %d job(s) Redis had lost, "
			    "pushed again", rc.added);
		if (er != KEEL_OK) {
			/* Log a failure once, not once a second. */
			if (er != last)
				keel_log_warnx("relay: %s (rows stay in the "
				    "outbox)", keel_strerror(er));
			errors++;
		} else if (last != KEEL_OK)
			keel_log_info("relay: working again");
		last = er;
		keel_cron_progress(&c, "pushed=%ld lost=%ld", total, lost);
		/* A full batch: more may wait, go on at once. */
		full = er == KEEL_OK && (n == RELAY_BATCH ||
		    rc.rows == RELAY_BATCH);
		if (once && !full)
			break;
		if (!full)
			poll(NULL, 0, 1000);
	}
	keel_redis_close(r);
	keel_db_close(db);
	keel_cron_done(&c, "processed=%ld failed=%ld retried=0 took=%.2fs "
	    "lost=%ld finished=%ld", total, errors, keel_cron_elapsed(&c),
	    lost, finished);
	return last == KEEL_OK ? 0 : 1;
}
