/* SPDX-License-Identifier: ISC */
/*
 * drain.c -- a drain program's loop: lease, run, finish, until the budget.
 *
 * One fetch script call promotes due delayed jobs, reclaims leases past
 * the visibility timeout and leases what the queue's in-flight bound and
 * rate limit allow; the handlers run; one finish call records every
 * outcome of the batch.  A lease carries the attempt number it was given
 * for, and finishing checks it, so a late answer from a consumer whose
 * lease expired (its job reclaimed with XAUTOCLAIM, counted as an
 * attempt and rescheduled with backoff) is refused instead of
 * corrupting the job.  When nothing can be leased the drainer blocks on
 * the stream (XREAD, which leases nothing) until a new job, the next due
 * one or free capacity -- at most a second.  The scripts are
 * lib/lua/queue_fetch.lua and queue_finish.lua; their arguments are
 * queue.c's (queue_private.h), the visibility timeout this program's
 * configuration.  Once Redis has recorded them, the jobs that completed
 * or were dead-lettered are marked so in the outbox (outbox.c), each in
 * its own row, by key and origin (a restore may reuse the key), so the
 * relay stops asking after them; a mark that fails is left to the relay,
 * which finds them finished in Redis.  A job whose row says it completed
 * is not run again; a dead-lettered one is, when an operator retries it.
 * An outage of the database, which every handler needs, is waited out
 * as DESIGN.md's table says ("wait"), not spent in attempts that end in
 * the dead letters.  Before its first lease a run asks the primary
 * whether it answers and takes writes (drain_db_unready); when it
 * doesn't, or is read-only, the run leases nothing at all and ends, so
 * an outage costs no job anything however many runs it lasts.  A job
 * that failed while PostgreSQL can't be reached (one ping per batch,
 * after its first failure, says so) is handed back without counting the
 * attempt, with the rest of its batch, and nothing is leased until
 * PostgreSQL answers.  So is a job whose statement PostgreSQL refused
 * though it answers (out of disk, read-only: keel_db_refusals()); then
 * the run leases nothing more, as no ping says when writes work again.
 * But only DRAIN_OUTAGES_MAX times in a job's life: a job that takes
 * PostgreSQL down itself (a statement that gets its backend killed, and
 * the crash recovery that follows) finds it answering at the start of
 * every run and down after its own failure; it would otherwise be
 * handed back forever, never counted, never dead-lettered; past that
 * its failures count as usual.
 */
#include "config.h"

#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/cron.h"
#include "keel/db.h"
#include "keel/drain.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/outbox.h"
#include "keel/queue.h"
#include "keel/redis.h"
#include "keel/report.h"
#include "keel/text.h"
#include "lua_scripts.h"
#include "queue_private.h"

static struct keel_rscript script_fetch = {
	.name = "queue_fetch", .lua = keel_lua_queue_fetch };
static struct keel_rscript script_finish = {
	.name = "queue_finish", .lua = keel_lua_queue_finish };

/*
 * Failures with PostgreSQL down a job may have handed back uncounted
 * (queue_finish.lua counts them in its hash).  Each costs an outage
 * that began while the job ran: the drainer leases nothing until a ping
 * answers, and a run that starts in an outage leases nothing at all, so
 * 10 is 10 outages, or 10 crash recoveries of a job that causes them --
 * far more than real outages give one job, few enough that a poisonous
 * one dies in minutes.
 */
#define DRAIN_OUTAGES_MAX	10

/* How long a ping's answer stands for the failures after it (ms). */
#define PING_FRESH_MS		1000

struct drain_counts {
	long	 processed;	/* completed */
	long	 failed;	/* dead-lettered */
	long	 retried;	/* rescheduled after a failed attempt */
	long	 stalled;	/* reclaimed after their lease expired */
	long	 refused;	/* finished too late: the lease had moved on */
	long	 released;	/* handed back uncounted: unstarted at
				   SIGTERM or PostgreSQL down */
	long	 ran_before;	/* leased again after they finished */
	int	 unmarked;	/* the last outbox call failed (log once) */
	bool	 db_down;	/* a job failed with PostgreSQL unable to
				   serve it (drain_outage) */
	bool	 db_refuses;	/* ... while it answered pings */
};

/* One leased job of a fetch reply, with what became of it. */
struct drain_job {
	struct keel_job	 job;
	const char	*msgid;
	const char	*outcome;	/* done, retry, fail, release, outage
					   (queue_finish.lua) */
	bool		 ran_before;	/* done: its outbox row says so */
	bool		 internal;	/* failed for a reason of ours, not
					   its payload's: reported when it is
					   dead-lettered */
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

/*
 * j's reason when no handler of d knows its kind.  The kind is escaped:
 * a job written straight into Redis (not through keel-queues, which
 * refuses such a kind) may hold a newline or an escape, and the reason
 * goes into the drainer's log line and the dead letter.
 */
static void
drain_no_handler(const struct keel_drainer *d, struct drain_job *j)
{
	char	 kind[160];	/* escaped, cut to leave the rest room */

	snprintf(j->why, sizeof(j->why), "no handler for kind '%s' in %s",
	    keel_log_escape(kind, sizeof(kind), j->job.kind), d->name);
}

static void
drain_sleep(int ms)
{
	/* poll() rather than sleep(): SIGTERM (no SA_RESTART for poll's
	 * timeout) cuts it short at worst after ms anyway. */
	if (ms > 0)
		poll(NULL, 0, ms);
}

/* Marks the outbox rows of the jobs that completed (done[0..nd)) and
 * died (dead[0..nx)), each its own origin's; logs once. */
static void
drain_mark(struct keel_db *db, const struct keel_outbox_job *done, size_t nd,
    const struct keel_outbox_job *dead, size_t nx, struct drain_counts *cnt)
{
	enum keel_err	 er;

	if ((er = keel_outbox_finished(db, done, nd, dead, nx)) != KEEL_OK) {
		if (!cnt->unmarked++)
			keel_log_warnx("drain: finished jobs not marked in the "
			    "outbox (%s); the relay will find them finished",
			    keel_strerror(er));
	} else if (cnt->unmarked) {
		keel_log_info("drain: marking finished jobs again");
		cnt->unmarked = 0;
	}
}

/*
 * A job dead-lettered for an internal reason becomes an error event: its
 * last attempt failed with KEEL_JOB_RETRY (a dependency or a bug, every
 * attempt), or no handler knows its kind.  A KEEL_JOB_FAIL (a payload
 * that can never work) is the sender's problem, not reported.
 */
static void
drain_report(const struct keel_queue *q, const struct drain_job *j)
{
	struct keel_report_event ev;
	struct keel_report_tag	 tags[4];
	char			 what[400], attempt[16];

	snprintf(what, sizeof(what), "%s job %s dead-lettered after attempt "
	    "%d: %s", q->name, j->job.key, j->job.attempt, j->why);
	snprintf(attempt, sizeof(attempt), "%d", j->job.attempt);
	tags[0] = (struct keel_report_tag){ .key = "queue", .value = q->name };
	tags[1] = (struct keel_report_tag){ .key = "job_kind",
	    .value = j->job.kind };
	tags[2] = (struct keel_report_tag){ .key = "job", .value = j->job.key };
	tags[3] = (struct keel_report_tag){ .key = "attempt",
	    .value = attempt };
	memset(&ev, 0, sizeof(ev));
	ev.type = "JobDeadLettered";
	ev.value = what;
	ev.request_id = j->job.request_id;
	ev.tags = tags;
	ev.ntags = KEEL_NELEM(tags);
	keel_report_send(&ev);
}

/* Jobs the fetch dead-lettered: their last lease expired (a drainer
 * that died or hung on them, every attempt). */
static void
drain_report_stalled(const struct keel_queue *q, long long n)
{
	struct keel_report_event ev;
	struct keel_report_tag	 tag = { .key = "queue", .value = q->name };
	char			 what[200];

	snprintf(what, sizeof(what), "%lld %s jobs dead-lettered: their last "
	    "lease expired (KEEL_JOB_VISIBILITY)", n, q->name);
	memset(&ev, 0, sizeof(ev));
	ev.type = "JobDeadLettered";
	ev.value = what;
	ev.tags = &tag;
	ev.ntags = 1;
	keel_report_send(&ev);
}

/* Logs what the finish script made of job j, which failed with
 * PostgreSQL down (outcome "outage"): handed back uncounted (4), or
 * counted (2, 3) once it has been handed back DRAIN_OUTAGES_MAX times. */
static void
drain_log_outage(const struct keel_queue *q, const struct drain_job *j,
    long long res)
{
	if (res == 4)
		keel_log_warnx("drain: %s %s attempt %d handed back, not "
		    "counted", q->name, j->job.key, j->job.attempt);
	else if (res == 2 || res == 3)
		keel_log_warnx("drain: %s %s attempt %d counted: it failed "
		    "with PostgreSQL down more than %d times", q->name,
		    j->job.key, j->job.attempt, DRAIN_OUTAGES_MAX);
}

/* Counts the finish script's answer for one job and logs what needs it;
 * true when the job was dead-lettered. */
static bool
drain_count(const struct keel_queue *q, const struct drain_job *j,
    long long res, struct drain_counts *cnt)
{
	static const char *const outcome[] = { "refused", "done", "retried",
	    "dead_lettered" };
	char	 labels[KEEL_METRICS_LABELS_MAX];

	keel_metrics_add(KEEL_M_JOBS, keel_metrics_labels(labels, "queue",
	    q->name, "outcome", res >= 0 && res <= 3 ? (res == 1 &&
	    j->ran_before ? "ran_before" : outcome[res]) : "released",
	    (char *)NULL), 1);
	if (strcmp(j->outcome, "outage") == 0)
		drain_log_outage(q, j, res);
	switch (res) {
	case 0:
		cnt->refused++;
		keel_log_warnx("drain: %s %s attempt %d: lease no longer "
		    "current, result dropped", q->name, j->job.key,
		    j->job.attempt);
		break;
	case 1:
		if (j->ran_before)
			cnt->ran_before++;
		else
			cnt->processed++;
		break;
	case 2:
		cnt->retried++;
		keel_log_info("drain: %s %s attempt %d failed, retrying: %s",
		    q->name, j->job.key, j->job.attempt, j->why);
		break;
	case 3:
		cnt->failed++;
		keel_log_warnx("drain: %s %s dead-lettered after attempt %d: "
		    "%s", q->name, j->job.key, j->job.attempt, j->why);
		if (j->internal)
			drain_report(q, j);
		return true;
	default:
		cnt->released++;
		break;
	}
	return false;
}

/*
 * Records the outcomes of jobs[0..n) in one script call, then marks the
 * outbox rows of those that finished: every job its handler completed,
 * whatever Redis answered (a Redis restarted without its last writes
 * refuses the finish of a job it forgot, which the relay would push
 * again), as completed, and every job dead-lettered as dead -- not as
 * run, so a retry of its dead letter runs it.  Each marks the row of its
 * origin only: its key may have been handed to a new row since it was
 * leased (a restore of PostgreSQL reuses ids), which this mark must not
 * finish.  A finish lost to a Redis outage is tried again for a while:
 * giving up would turn a job already done into a stalled one, sent twice.
 */
static void
drain_finish(struct keel_redis *r, struct keel_db *db,
    const struct keel_queue *q, struct drain_job *jobs, size_t n,
    struct drain_counts *cnt)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	struct keel_outbox_job	*done, *dead;
	enum keel_err		 er;
	size_t			 i, nd = 0, nx = 0;
	int			 tries;
	bool			 died;

	keel_queue_args_init(&a, r, q, q->name);
	keel_queue_args_fmt(&a, "%d", DRAIN_OUTAGES_MAX);
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
	if (er != KEEL_OK)
		keel_log_error("drain: %zu results not recorded (%s); their "
		    "leases will expire and count as attempts", n,
		    keel_strerror(er));
	done = keel_calloc(n + 1, sizeof(*done));
	dead = keel_calloc(n + 1, sizeof(*dead));
	for (i = 0; i < n; i++) {
		died = er == KEEL_OK &&
		    drain_count(q, &jobs[i], keel_queue_reply_int(rep, i), cnt);
		if (died)
			dead[nx++] = (struct keel_outbox_job){
			    jobs[i].job.key, jobs[i].job.origin };
		else if (strcmp(jobs[i].outcome, "done") == 0 &&
		    !jobs[i].ran_before)
			done[nd++] = (struct keel_outbox_job){
			    jobs[i].job.key, jobs[i].job.origin };
	}
	drain_mark(db, done, nd, dead, nx, cnt);
	free(done);
	free(dead);
	keel_rreply_free(rep);
}

/*
 * Jobs whose outbox rows say they completed already are done without
 * running them again: a Redis that lost its last second of writes hands
 * back jobs whose completion it forgot.  A dead-lettered job's row
 * doesn't stop it: it is back because an operator retried it.  When
 * PostgreSQL can't say, they run (at least once, as before).
 */
static void
drain_ran_before(struct keel_db *db, struct drain_job *jobs, size_t n,
    struct drain_counts *cnt)
{
	const char	**keys;
	bool		*ran;
	size_t		 i;
	enum keel_err	 er;

	keys = keel_calloc(n + 1, sizeof(*keys));
	ran = keel_calloc(n + 1, sizeof(*ran));
	for (i = 0; i < n; i++)
		keys[i] = jobs[i].job.key;
	if ((er = keel_outbox_which_ran(db, keys, n, ran)) != KEEL_OK) {
		if (!cnt->unmarked++)
			keel_log_warnx("drain: the outbox can't say which jobs "
			    "ran (%s); running them", keel_strerror(er));
	} else {
		for (i = 0; i < n; i++) {
			if (!ran[i])
				continue;
			jobs[i].outcome = "done";
			jobs[i].ran_before = true;
			keel_log_info("drain: %s %s ran before (its outbox row "
			    "says it completed); not run again",
			    jobs[i].job.queue, jobs[i].job.key);
		}
	}
	free(keys);
	free(ran);
}

/* True when PostgreSQL doesn't answer a ping. */
static bool
drain_db_down(struct keel_db *db, const struct keel_config *cfg)
{
	keel_log_debug("drain: pinging PostgreSQL");
	return keel_db_ping(db, -1, cfg->db_connect_timeout * 1000, NULL) !=
	    KEEL_OK;
}

/*
 * Before the first lease of a run: NULL when PostgreSQL can do the
 * jobs, else why not (for the log line).  Not when the primary doesn't
 * answer (down, restarting) or answers read-only (a standby where it
 * was): every job leased would fail and be handed back, each hand-back
 * one of the DRAIN_OUTAGES_MAX a job has, so an outage lasting that
 * many runs would dead-letter the queue's front job.  One question
 * serves as the ping: keel_db_read_only() connects and runs on the
 * primary within the connect timeout, as keel_db_ping() does.
 */
static const char *
drain_db_unready(struct keel_db *db, const struct keel_config *cfg)
{
	bool	 ro;

	if (keel_db_read_only(db, cfg->db_connect_timeout * 1000, &ro) !=
	    KEEL_OK)
		return "doesn't answer";
	if (ro)
		return "answers but refuses the work (read-only)";
	return NULL;
}

/*
 * After job j failed (KEEL_JOB_RETRY): true when the failure is an
 * outage's, not the job's: PostgreSQL doesn't answer a ping, or it
 * refused one of the job's statements though it answered (refused:
 * out of disk, read-only; keel_db_refusals()), which sets
 * cnt->db_refuses.  The first
 * failure of a batch pings (*pinged_at then its time); a later one takes
 * that answer while it is under PING_FRESH_MS old: a ping that failed
 * has released the rest of the batch already, and one that answered a
 * moment ago needn't be asked again (for up to KEEL_DB_CONNECT_TIMEOUT a
 * failed job, a hundred a batch).  An older answer is asked again, so an
 * outage that begins in a long batch still releases its failures.
 */
static bool
drain_outage(struct keel_db *db, const struct keel_config *cfg,
    const struct keel_queue *q, const struct drain_job *j, bool refused,
    double *pinged_at, struct drain_counts *cnt)
{
	double	 now = keel_cron_now_ms();

	if (refused) {
		cnt->db_down = true;
		cnt->db_refuses = true;
	} else if (*pinged_at == 0 || now - *pinged_at >= PING_FRESH_MS) {
		*pinged_at = now;
		cnt->db_down = drain_db_down(db, cfg);
	}
	if (cnt->db_down)
		keel_log_warnx("drain: %s %s attempt %d failed with PostgreSQL "
		    "unavailable (%s); waiting for PostgreSQL", q->name,
		    j->job.key, j->job.attempt, j->why);
	return cnt->db_down;
}

/* Runs the leased jobs of one fetch reply (elements 6..). */
static void
drain_batch(struct keel_redis *r, struct keel_db *db,
    const struct keel_config *cfg,
    const struct keel_drainer *d,
    const struct keel_queue *q, void *ctx, const struct keel_rreply *rep,
    struct drain_counts *cnt)
{
	struct drain_job	*jobs;
	const struct keel_rreply *e;
	keel_job_fn		*fn;
	enum keel_job_result	 er;
	double			 t0;
	size_t			 i, n = rep->nelem - 6;
	double			 pinged_at = 0;
	unsigned long		 refusals;

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
		jobs[i].job.request_id = e->nelem > 5 &&
		    e->elem[5].type == KEEL_R_STR ? e->elem[5].str : "";
		jobs[i].job.origin = e->nelem > 6 &&
		    e->elem[6].type == KEEL_R_STR ? e->elem[6].str : "";
	}
	drain_ran_before(db, jobs, n, cnt);
	for (i = 0; i < n; i++) {
		if (jobs[i].outcome != NULL)
			continue;
		/* SIGTERM: finish the job in hand, hand the rest back; and
		 * all of them while PostgreSQL is down. */
		if (keel_cron_signalled() || cnt->db_down) {
			jobs[i].outcome = "release";
			continue;
		}
		if ((fn = drain_handler(d, jobs[i].job.kind)) == NULL) {
			drain_no_handler(d, &jobs[i]);
			jobs[i].outcome = "fail";
			jobs[i].internal = true;
			continue;
		}
		/* The job's lines carry the id of the request it came from. */
		keel_log_set_request(*jobs[i].job.request_id != '\0' ?
		    jobs[i].job.request_id : NULL);
		t0 = keel_cron_now_ms();
		refusals = keel_db_refusals(db);
		er = fn(ctx, &jobs[i].job, jobs[i].why, sizeof(jobs[i].why));
		jobs[i].outcome = er == KEEL_JOB_DONE ? "done" :
		    er == KEEL_JOB_RETRY ? "retry" : "fail";
		jobs[i].internal = er == KEEL_JOB_RETRY;
		if (er == KEEL_JOB_RETRY && drain_outage(db, cfg, q, &jobs[i],
		    keel_db_refusals(db) != refusals, &pinged_at, cnt))
			jobs[i].outcome = "outage";
		/* DESIGN.md, "Observability": one line per job. */
		keel_log_info("job queue=%s kind=%.64s attempt=%d outcome=%s "
		    "ms=%.1f", q->name, jobs[i].job.kind, jobs[i].job.attempt,
		    jobs[i].outcome, keel_cron_now_ms() - t0);
		keel_log_set_request(NULL);
	}
	drain_finish(r, db, q, jobs, n, cnt);
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

	snprintf(key, sizeof(key), KEEL_QUEUE_KEY,
	    KEEL_QUEUE_KEY_ARGS(r, q->name, "s"));
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
keel_drain_main(int argc, char *argv[], const struct keel_drainer *d)
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
	struct keel_db		*db;
	struct keel_rreply	*rep = NULL;
	struct drain_counts	 cnt;
	struct keel_queue_args	 a;
	char			 consumer[300], host[256];
	void			*ctx;
	enum keel_err		 er;
	int64_t			 budget = 0;
	int			 ch, until_empty = 0, down = 0, wait, vis_ms;
	int			 db_wait = 0;
	const char		*unready;
	long long		 wake;

	while ((ch = getopt_long(argc, argv, "b:ech", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'b':
			if (!keel_parse_int64(optarg, 1, 86400, &budget)) {
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
	if (!keel_cron_lock(&c)) {
		keel_cron_done(&c, "skipped: another run is draining");
		return 0;
	}
	memset(&cnt, 0, sizeof(cnt));
	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(consumer, sizeof(consumer), "%s:%ld", host, (long)getpid());
	r = keel_redis_open(&c.cfg);
	db = keel_db_open(&c.cfg);
	ctx = d->setup != NULL ? d->setup(&c.cfg, db) : NULL;
	vis_ms = c.cfg.job_visibility * 1000;
	/* A run that starts in an outage leases nothing: it would cost
	 * the front job a hand-back, every run the outage lasts. */
	if ((unready = drain_db_unready(db, &c.cfg)) != NULL)
		keel_log_warnx("drain: %s: PostgreSQL %s; leasing nothing "
		    "this run", q->name, unready);

	while (unready == NULL && !keel_cron_stopping(&c)) {
		if (cnt.db_refuses) {
			/*
			 * PostgreSQL answers but can't do the work (out of
			 * disk, read-only): no ping says when it can again,
			 * so this run leases nothing more.  A full disk
			 * costs a job one hand-back a run: unlike a primary
			 * down or read-only, no question before the first
			 * lease finds it.
			 */
			keel_log_warnx("drain: %s: PostgreSQL answers but "
			    "refuses the work (read-only, or out of disk); "
			    "leasing nothing more this run", q->name);
			break;
		}
		if (cnt.db_down) {
			/* Lease nothing until PostgreSQL answers: 0.5 s,
			 * doubling to 5 s, between pings. */
			db_wait = db_wait == 0 ? 500 : db_wait < 2500 ?
			    db_wait * 2 : 5000;
			drain_sleep(keel_cron_left_ms(&c) < db_wait ?
			    (int)keel_cron_left_ms(&c) : db_wait);
			if (keel_cron_stopping(&c) || drain_db_down(db, &c.cfg))
				continue;
			keel_log_info("drain: %s: PostgreSQL is back", q->name);
			cnt.db_down = false;
			db_wait = 0;
		}
		keel_queue_args_init(&a, r, q, q->name);
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
		if (keel_queue_reply_int(rep, 4) > 0)
			drain_report_stalled(q, keel_queue_reply_int(rep, 4));
		if (rep->nelem > 6) {
			drain_batch(r, db, &c.cfg, d, q, ctx, rep, &cnt);
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
	keel_db_close(db);
	keel_redis_close(r);
	keel_cron_done(&c, "processed=%ld failed=%ld retried=%ld took=%.2fs "
	    "stalled=%ld refused=%ld released=%ld ran_before=%ld", cnt.processed,
	    cnt.failed, cnt.retried, keel_cron_elapsed(&c), cnt.stalled,
	    cnt.refused, cnt.released, cnt.ran_before);
	return 0;
}
