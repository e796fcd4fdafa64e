/* SPDX-License-Identifier: ISC */
/*
 * jobs.c -- the job outbox and the drainer.
 *
 * A job is a row of the outbox table first (sql/006_outbox.sql), written in
 * the caller's transaction, so no job is lost between the database and the
 * queue: the app pushes it right after commit and the relay moves rows left
 * behind.  The queues themselves -- keys, policy, scripts -- are queue.c's.
 *
 * A lease carries the attempt number it was given for; finishing a job
 * checks that number, so a late answer from a consumer whose lease expired
 * (and whose job was reclaimed with XAUTOCLAIM, counted as an attempt and
 * rescheduled with backoff) is refused instead of corrupting the job.
 */
#include "config.h"

#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/cron.h"
#include "keel/db.h"
#include "keel/jobs.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/queue.h"
#include "keel/redis.h"
#include "lua_scripts.h"
#include "queue_private.h"

/* -------------------------------------------------------------- outbox */

static const struct keel_query q_outbox_add = {
	.name = "outbox_add",
	.sql = "INSERT INTO outbox (queue, kind, payload, idempotency_key) "
	    "VALUES ($1, $2, $3::jsonb, $4) RETURNING id",
	.nparams = 4, .target = KEEL_DB_PRIMARY };

static const struct keel_query q_outbox_add_delayed = {
	.name = "outbox_add_delayed",
	.sql = "INSERT INTO outbox (queue, kind, payload, idempotency_key, "
	    "available_at) VALUES ($1, $2, $3::jsonb, $4, "
	    "now() + $5::bigint * interval '1 millisecond') RETURNING id",
	.nparams = 5, .target = KEEL_DB_PRIMARY };

/* The delay is what is left of available_at, by the database's clock;
 * Redis then counts it on its own. */
#define OUTBOX_COLS "id, queue, kind, payload::text, idempotency_key, " \
	"GREATEST(0, ceil(extract(epoch FROM available_at - now()) * 1000))" \
	"::bigint"

static const struct keel_query q_outbox_by_ids = {
	.name = "outbox_by_ids",
	.sql = "SELECT " OUTBOX_COLS " FROM outbox "
	    "WHERE id = ANY($1::bigint[]) AND pushed_at IS NULL ORDER BY id",
	.nparams = 1, .target = KEEL_DB_PRIMARY };

static const struct keel_query q_outbox_pending = {
	.name = "outbox_pending",
	.sql = "SELECT " OUTBOX_COLS " FROM outbox WHERE pushed_at IS NULL "
	    "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
	.nparams = 1, .target = KEEL_DB_PRIMARY };

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
	.nparams = 1, .target = KEEL_DB_PRIMARY };

enum keel_err
keel_jobs_outbox_add(struct keel_db *db, const char *queue, const char *kind,
    const char *payload, const char *idem_key, int64_t *id)
{
	struct keel_rows	*rows = NULL;
	const char		*params[4];
	enum keel_err		 er;

	params[0] = queue;
	params[1] = kind;
	params[2] = payload;
	params[3] = idem_key;
	if ((er = keel_db_query(db, &q_outbox_add, params, &rows)) == KEEL_OK &&
	    id != NULL)
		*id = keel_rows_int64(rows, 0, 0);
	keel_rows_free(rows);
	return er;
}

enum keel_err
keel_jobs_outbox_add_delayed(struct keel_db *db, const char *queue,
    const char *kind, const char *payload, const char *idem_key,
    int64_t delay_ms, int64_t *id)
{
	struct keel_rows	*rows = NULL;
	const char		*params[5];
	char			 delay[24];
	enum keel_err		 er;

	snprintf(delay, sizeof(delay), "%lld", (long long)delay_ms);
	params[0] = queue;
	params[1] = kind;
	params[2] = payload;
	params[3] = idem_key;
	params[4] = delay;
	if ((er = keel_db_query(db, &q_outbox_add_delayed, params, &rows)) ==
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
keel_jobs_push(struct keel_db *db, struct keel_redis *r, const int64_t *ids,
    size_t n)
{
	struct keel_rows	*rows = NULL;
	struct keel_buf		 in = { NULL, 0, 0 }, done = { NULL, 0, 0 };
	const char		*param;
	enum keel_err		 er, er2;
	size_t			 i;
	int			 pushed = 0;

	if (n == 0)
		return KEEL_OK;
	keel_buf_putc(&in, '{');
	for (i = 0; i < n; i++)
		keel_buf_printf(&in, "%s%lld", i ? "," : "",
		    (long long)ids[i]);
	keel_buf_putc(&in, '}');
	param = in.data;
	if ((er = keel_db_query(db, &q_outbox_by_ids, &param, &rows)) !=
	    KEEL_OK)
		goto out;
	keel_buf_putc(&done, '{');
	er = push_rows(r, rows, &done, &pushed);
	keel_buf_putc(&done, '}');
	if (pushed > 0) {
		/* Unmarked rows are pushed again by the relay; the queue
		 * knows their keys, so that costs nothing but a call. */
		param = done.data;
		if ((er2 = keel_db_query(db, &q_outbox_mark, &param, NULL)) !=
		    KEEL_OK && er == KEEL_OK)
			er = er2;
	}
out:
	if (er != KEEL_OK)
		keel_log_warnx("outbox: push after commit failed (%s); the "
		    "relay will move the job", keel_strerror(er));
	keel_rows_free(rows);
	keel_buf_free(&in);
	keel_buf_free(&done);
	return er;
}

enum keel_err
keel_jobs_relay(struct keel_db *db, struct keel_redis *r, int limit,
    int *pushed)
{
	struct keel_rows	*rows = NULL;
	struct keel_buf		 done = { NULL, 0, 0 }, lim = { NULL, 0, 0 };
	const char		*param;
	enum keel_err		 er, er2;

	*pushed = 0;
	if ((er = keel_db_begin(db)) != KEEL_OK)
		return er;
	keel_buf_printf(&lim, "%d", limit);
	param = lim.data;
	/* FOR UPDATE SKIP LOCKED: two relays never push the same rows. */
	if ((er = keel_db_query(db, &q_outbox_pending, &param, &rows)) !=
	    KEEL_OK)
		goto out;
	keel_buf_putc(&done, '{');
	er = push_rows(r, rows, &done, pushed);
	keel_buf_putc(&done, '}');
	if (*pushed > 0) {
		param = done.data;
		if ((er2 = keel_db_query(db, &q_outbox_mark, &param, NULL)) !=
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
	keel_buf_free(&lim);
	return er;
}

/* ------------------------------------------------------------ drainer */

static struct keel_rscript script_fetch = {
	.name = "queue_fetch", .lua = keel_lua_queue_fetch };
static struct keel_rscript script_finish = {
	.name = "queue_finish", .lua = keel_lua_queue_finish };

struct drain_counts {
	long	 processed;	/* completed */
	long	 failed;	/* dead-lettered */
	long	 retried;	/* rescheduled after a failed attempt */
	long	 stalled;	/* reclaimed after their lease expired */
	long	 refused;	/* finished too late: the lease had moved on */
	long	 released;	/* handed back unstarted at SIGTERM */
};

/* One leased job of a fetch reply, with what became of it. */
struct drain_job {
	struct keel_job	 job;
	const char	*msgid;
	const char	*outcome;	/* done, retry, fail, release */
	char		 why[256];
};

static keel_job_fn *
drain_handler(const struct keel_drainer *d, const char *kind)
{
	size_t	 i;

	for (i = 0; i < d->nkinds; i++)
		if (strcmp(d->kinds[i].kind, kind) == 0)
			return d->kinds[i].fn;
	return NULL;
}

static void
drain_sleep(int ms)
{
	/* poll() rather than sleep(): SIGTERM (no SA_RESTART for poll's
	 * timeout) cuts it short at worst after ms anyway. */
	if (ms > 0)
		poll(NULL, 0, ms);
}

/*
 * Records the outcomes of jobs[0..n) in one script call.  A finish lost to
 * a Redis outage is tried again for a while: giving up would turn a job
 * already done into a stalled one, sent twice.
 */
static void
drain_finish(struct keel_redis *r, const struct keel_queue *q,
    struct drain_job *jobs, size_t n, struct drain_counts *cnt)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	enum keel_err		 er;
	size_t			 i;
	int			 tries;

	keel_queue_args_init(&a, q, q->name);
	for (i = 0; i < n; i++) {
		keel_queue_args_str(&a, jobs[i].msgid);
		keel_queue_args_str(&a, jobs[i].job.key);
		keel_queue_args_fmt(&a, "%d", jobs[i].job.attempt);
		keel_queue_args_str(&a, jobs[i].outcome);
		keel_queue_args_str(&a, jobs[i].why);
	}
	for (tries = 0; tries < 40; tries++) {
		if ((er = keel_queue_args_eval(r, &script_finish, &a, &rep)) !=
		    KEEL_EUNAVAIL)
			break;
		if (tries == 0)
			keel_log_warnx("drain: recording results: redis "
			    "unavailable (%s); retrying", keel_redis_errstr(r));
		drain_sleep(250);
	}
	keel_queue_args_free(&a);
	if (er != KEEL_OK) {
		keel_log_error("drain: %zu results not recorded (%s); their "
		    "leases will expire and count as attempts", n,
		    keel_strerror(er));
		return;
	}
	for (i = 0; i < n; i++) {
		switch (keel_queue_reply_int(rep, i)) {
		case 0:
			cnt->refused++;
			keel_log_warnx("drain: %s %s attempt %d: lease no "
			    "longer current, result dropped", q->name,
			    jobs[i].job.key, jobs[i].job.attempt);
			break;
		case 1:
			cnt->processed++;
			break;
		case 2:
			cnt->retried++;
			keel_log_info("drain: %s %s attempt %d failed, "
			    "retrying: %s", q->name, jobs[i].job.key,
			    jobs[i].job.attempt, jobs[i].why);
			break;
		case 3:
			cnt->failed++;
			keel_log_warnx("drain: %s %s dead-lettered after "
			    "attempt %d: %s", q->name, jobs[i].job.key,
			    jobs[i].job.attempt, jobs[i].why);
			break;
		default:
			cnt->released++;
			break;
		}
	}
	keel_rreply_free(rep);
}

/* Runs the leased jobs of one fetch reply (elements 6..). */
static void
drain_batch(struct keel_redis *r, const struct keel_drainer *d,
    const struct keel_queue *q, void *ctx, const struct keel_rreply *rep,
    struct drain_counts *cnt)
{
	struct drain_job	*jobs;
	const struct keel_rreply *e;
	keel_job_fn		*fn;
	size_t			 i, n = rep->nelem - 6;

	jobs = keel_calloc(n, sizeof(*jobs));
	for (i = 0; i < n; i++) {
		e = &rep->elem[6 + i];
		jobs[i].msgid = e->elem[0].str;
		jobs[i].job.queue = q->name;
		jobs[i].job.key = e->elem[1].str;
		jobs[i].job.kind = e->elem[2].type == KEEL_R_STR ?
		    e->elem[2].str : "";
		jobs[i].job.payload = e->elem[3].type == KEEL_R_STR ?
		    e->elem[3].str : "";
		jobs[i].job.attempt = (int)e->elem[4].integer;
		/* SIGTERM: finish the job in hand, hand the rest back. */
		if (keel_cron_signalled()) {
			jobs[i].outcome = "release";
			continue;
		}
		if ((fn = drain_handler(d, jobs[i].job.kind)) == NULL) {
			snprintf(jobs[i].why, sizeof(jobs[i].why),
			    "no handler for kind '%.64s' in %s",
			    jobs[i].job.kind, d->name);
			jobs[i].outcome = "fail";
			continue;
		}
		switch (fn(ctx, &jobs[i].job, jobs[i].why,
		    sizeof(jobs[i].why))) {
		case KEEL_JOB_DONE:
			jobs[i].outcome = "done";
			break;
		case KEEL_JOB_RETRY:
			jobs[i].outcome = "retry";
			break;
		default:
			jobs[i].outcome = "fail";
			break;
		}
	}
	drain_finish(r, q, jobs, n, cnt);
	free(jobs);
}

/*
 * Waits up to ms for a job added to q's stream after last_id: XREAD, not
 * XREADGROUP, so waking leases nothing -- the next fetch does, within
 * the limits.
 */
static enum keel_err
drain_block(struct keel_redis *r, const struct keel_queue *q,
    const char *last_id, int ms)
{
	const char	*av[6];
	char		 key[128], block[16];
	enum keel_err	 er;

	snprintf(key, sizeof(key), KEEL_QUEUE_KEY, q->name, "s");
	snprintf(block, sizeof(block), "%d", ms);
	av[0] = "XREAD";
	av[1] = "BLOCK";
	av[2] = block;
	av[3] = "STREAMS";
	av[4] = key;
	av[5] = last_id;
	if ((er = keel_redis_cmd_timeout(r, ms + 1000, 6, av, NULL, NULL)) !=
	    KEEL_OK)
		drain_sleep(ms < 500 ? ms : 500);
	return er;
}

static void
drain_usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--budget SECONDS] [--until-empty]\n"
	    "  --budget SECONDS  stop after this long (KEEL_DRAIN_BUDGET)\n"
	    "  --until-empty     stop once nothing waits or is delayed\n"
	    "  --config          print the environment variables and exit\n",
	    prog);
}

int
keel_jobs_drain(int argc, char *argv[], const struct keel_drainer *d)
{
	static const struct option longopts[] = {
		{ "budget", required_argument, NULL, 'b' },
		{ "until-empty", no_argument, NULL, 'e' },
		{ "config", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const struct keel_queue	*q;
	struct keel_cron	 c;
	struct keel_redis	*r;
	struct keel_rreply	*rep = NULL;
	struct drain_counts	 cnt;
	struct keel_queue_args	 a;
	char			 consumer[300], host[256];
	void			*ctx;
	enum keel_err		 er;
	int64_t			 budget = 0;
	int			 ch, until_empty = 0, down = 0, wait, vis_ms;
	long long		 wake;

	while ((ch = getopt_long(argc, argv, "b:ech", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'b':
			if (keel_parse_int64(optarg, 1, 86400, &budget) == -1) {
				drain_usage(argv[0]);
				return 2;
			}
			break;
		case 'e':
			until_empty = 1;
			break;
		case 'c':
			keel_config_print_table();
			return 0;
		default:
			drain_usage(argv[0]);
			return ch == 'h' ? 0 : 2;
		}
	}
	if ((q = keel_queue_find(d->queue)) == NULL) {
		fprintf(stderr, "%s: no queue %s in queue.c\n", d->name,
		    d->queue);
		return 1;
	}
	keel_cron_init(&c, d->name, 0);
	if (d->nkinds == 0) {
		/* Its resource hasn't landed: leave the jobs waiting. */
		keel_cron_done(&c, "processed=0 failed=0 retried=0 took=0.00s "
		    "(no job kind handled yet: jobs wait on the %s queue)",
		    q->name);
		return 0;
	}
	c.deadline = c.t0 + (budget > 0 ? budget : c.cfg.drain_budget) *
	    1000.0;
	if (keel_cron_lock(&c) == -1) {
		keel_cron_done(&c, "skipped: another run is draining");
		return 0;
	}
	memset(&cnt, 0, sizeof(cnt));
	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(consumer, sizeof(consumer), "%s:%ld", host, (long)getpid());
	r = keel_redis_open(&c.cfg);
	ctx = d->setup != NULL ? d->setup(&c.cfg) : NULL;
	vis_ms = c.cfg.job_visibility * 1000;

	while (!keel_cron_stopping(&c)) {
		keel_queue_args_init(&a, q, q->name);
		keel_queue_args_str(&a, consumer);
		keel_queue_args_fmt(&a, "%d", q->batch);
		keel_queue_args_fmt(&a, "%d", vis_ms);
		er = keel_queue_args_eval(r, &script_fetch, &a, &rep);
		keel_queue_args_free(&a);
		if (er != KEEL_OK) {
			/* Redis restarting: reconnect and carry on. */
			if (!down++)
				keel_log_warnx("drain: %s: %s (%s); retrying",
				    q->name, keel_strerror(er),
				    keel_redis_errstr(r));
			drain_sleep(500);
			continue;
		}
		if (down) {
			keel_log_info("drain: %s: redis is back", q->name);
			down = 0;
		}
		cnt.stalled += keel_queue_reply_int(rep, 3);
		cnt.failed += keel_queue_reply_int(rep, 4);
		if (rep->nelem > 6) {
			drain_batch(r, d, q, ctx, rep, &cnt);
			keel_cron_progress(&c, "processed=%ld failed=%ld "
			    "retried=%ld", cnt.processed, cnt.failed,
			    cnt.retried);
		} else if (until_empty && keel_queue_reply_int(rep, 5) == 0) {
			break;
		} else {
			/* Nothing to lease: block until a new job, the next
			 * due one, or free capacity -- at most a second. */
			wake = keel_queue_reply_int(rep, 0);
			wait = (int)(keel_cron_left_ms(&c) < 1000 ?
			    keel_cron_left_ms(&c) : 1000);
			if (wake >= 0 && wake < wait)
				wait = (int)wake;
			if (wait < 1)
				wait = 1;
			if (keel_queue_reply_int(rep, 1))
				drain_sleep(wait < 50 ? wait : 50);
			else if (drain_block(r, q, rep->elem[2].str, wait) !=
			    KEEL_OK && !down++)
				keel_log_warnx("drain: %s: waiting for jobs: "
				    "%s; reconnecting", q->name,
				    keel_redis_errstr(r));
		}
		keel_rreply_free(rep);
		rep = NULL;
	}
	keel_rreply_free(rep);
	if (d->teardown != NULL)
		d->teardown(ctx);
	keel_redis_close(r);
	keel_cron_done(&c, "processed=%ld failed=%ld retried=%ld took=%.2fs "
	    "stalled=%ld refused=%ld released=%ld", cnt.processed, cnt.failed,
	    cnt.retried, keel_cron_elapsed(&c), cnt.stalled, cnt.refused,
	    cnt.released);
	return 0;
}
