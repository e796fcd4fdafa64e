/* SPDX-License-Identifier: ISC */
/*
 * drain.h -- a drain program: leases one queue's jobs, runs each through
 * its kind's handler, records the outcome (DESIGN.md, "Jobs, outbox and
 * cron").  A cron/drain-*.c file is a table of handlers and a main.
 */
#ifndef KEEL_DRAIN_H
#define KEEL_DRAIN_H

#include <stddef.h>

struct keel_config;
struct keel_db;

/* A job as its handler sees it; strings live until the handler returns. */
struct keel_job {
	const char	*queue;
	const char	*key;		/* idempotency key */
	const char	*kind;
	const char	*payload;	/* JSON text */
	int		 attempt;	/* 1 for the first try */
	const char	*request_id;	/* of the request that made it; "" */
	const char	*origin;	/* its outbox row, "<id>@<µs>"
					   (lib/outbox.c); "": none */
};

enum keel_job_result {
	KEEL_JOB_DONE,		/* completed */
	KEEL_JOB_RETRY,		/* failed; retried after the backoff, then
				   dead-lettered past the last attempt */
	KEEL_JOB_FAIL,		/* can never succeed (bad payload): dead
				   letter at once */
};

/*
 * A handler: ctx is what the drainer's setup returned.  On RETRY or FAIL
 * it writes the reason (no secrets) into why (size n).
 */
typedef enum keel_job_result keel_job_fn(void *ctx, const struct keel_job *,
		    char *why, size_t n);

struct keel_job_kind {
	const char	*kind;
	keel_job_fn	*fn;
};

/* What a drain program is: its queue and a handler per job kind. */
struct keel_drainer {
	const char			*name;		/* program, for logs */
	const char			*queue;		/* keel_queue_find() */
	const struct keel_job_kind	*kinds;
	size_t				 nkinds;
	/* Called once after the configuration is read (cfg and db, the
	 * program's PostgreSQL connections, live until teardown; db is the
	 * loop's too, used between handlers); returns ctx (may be NULL).
	 * teardown may be NULL. */
	void				*(*setup)(const struct keel_config *,
					    struct keel_db *);
	void				 (*teardown)(void *ctx);
};

/*
 * A drain program's main: reads the configuration, takes the program's
 * lock (exits 0 at once if another run holds it), then leases and runs
 * jobs -- blocking reads, so a new job starts within a second -- until
 * the time budget ends (--budget SECONDS, KEEL_DRAIN_BUDGET) or SIGTERM;
 * leased jobs not yet started are handed back, never left half-done.
 * Leases last KEEL_JOB_VISIBILITY.  A kind without a handler is
 * dead-lettered with that reason.  Prints "processed=N failed=N
 * retried=N took=S" and, on a terminal, progress.  --until-empty stops
 * once nothing is waiting or delayed.  d (not NULL) is only read.
 * Returns the exit status.
 */
int		 keel_drain_main(int argc, char *argv[],
		    const struct keel_drainer *d);

#endif /* KEEL_DRAIN_H */
