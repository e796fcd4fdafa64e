/* SPDX-License-Identifier: ISC */
/*
 * jobs.c -- the job outbox and the Redis Streams queues.
 *
 * A job is a row of the outbox table first (sql/006_outbox.sql), written in
 * the caller's transaction, so no job is lost between the database and the
 * queue: the app pushes it right after commit and the relay moves rows left
 * behind.
 *
 * In Redis a queue <q> is a handful of keys under "keel:q:<q>:":
 *
 *   s        stream of ready jobs ("job" => key), consumer group "workers"
 *   d        zset: delayed jobs (retries, too), scored by when they are due
 *   a        zset: leased jobs, scored by lease deadline (the in-flight set)
 *   c        zset: completed jobs kept for retention, scored by finish time
 *   x        stream: dead letters (job, kind, payload, attempts, reason)
 *   r        zset: recent lease times, the shared sliding-window rate limit
 *   j:<key>  hash: the job (kind, payload, state, attempts, lease, ...)
 *
 * Every state change is one Lua script, timed by the server's TIME, so all
 * consumers on all hosts agree on one clock.  A lease carries the attempt
 * number it was given for; finishing a job checks that number, so a late
 * answer from a consumer whose lease expired (and whose job was reclaimed
 * with XAUTOCLAIM, counted as an attempt and rescheduled with backoff) is
 * refused instead of corrupting the job.  Retention runs inside every
 * finish, not in a separate sweep that may never come.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
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
#include "keel/redis.h"
#include "lua_scripts.h"

#define JOBS_GROUP	"workers"
#define NSETTINGS	10	/* ARGV[2..11]: the queue's policy */

/*
 * The queues.  email is the seeds' policy (3 attempts: now, +2 s, +4 s;
 * 5 in flight; 10/s; 100 completed for a day; 500 failed).  leaderboard
 * and notifications are consumed by the drainers of their resources;
 * noop exists for benchmarks and smoke tests.  A queue missing here (an
 * outbox row naming one) gets the last row's policy.
 */
static const struct keel_queue queues[] = {
	/* name, attempts, backoff, inflight, rate, rate_ms, batch,
	   keep_c, age_c, keep_f, age_f */
	{ "email", 3, 2000, 5, 10, 1000, 1, 100, 86400, 500, 0 },
	{ "leaderboard", 5, 1000, 100, 0, 1000, 100, 100, 86400, 500, 0 },
	{ "notifications", 5, 1000, 100, 0, 1000, 100, 100, 86400, 500, 0 },
	{ "noop", 3, 1000, 100000, 0, 1000, 1000, 100, 86400, 500, 0 },
};

static const struct keel_queue default_queue =
	{ NULL, 5, 1000, 100, 0, 1000, 100, 100, 86400, 500, 0 };

const struct keel_queue *
keel_jobs_queue(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(queues) / sizeof(queues[0]); i++)
		if (strcmp(queues[i].name, name) == 0)
			return &queues[i];
	return NULL;
}

const struct keel_queue *
keel_jobs_queues(size_t *n)
{
	*n = sizeof(queues) / sizeof(queues[0]);
	return queues;
}

int64_t
keel_jobs_backoff_ms(const struct keel_queue *q, int attempt)
{
	int	 shift = attempt < 2 ? 0 : attempt - 2;

	if (shift > 20)
		shift = 20;
	return (int64_t)q->backoff_ms << shift;
}

/* ------------------------------------------------------------- scripts */

/*
 * The scripts are lib/lua/queue_*.lua, each with queue_prelude.lua in
 * front (KEYS: s d a c x r; ARGV[1] the job hash prefix, ARGV[2..11] the
 * policy, see args_queue), embedded by scripts/lua-embed.  What each
 * takes and returns is at the top of its file.
 */
static struct keel_rscript lua_enqueue = {
	.name = "jobs_enqueue", .lua = keel_lua_queue_enqueue };
static struct keel_rscript lua_fetch = {
	.name = "jobs_fetch", .lua = keel_lua_queue_fetch };
static struct keel_rscript lua_finish = {
	.name = "jobs_finish", .lua = keel_lua_queue_finish };
static struct keel_rscript lua_stats = {
	.name = "jobs_stats", .lua = keel_lua_queue_stats };
static struct keel_rscript lua_retry_failed = {
	.name = "jobs_retry_failed", .lua = keel_lua_queue_retry_failed };
static struct keel_rscript lua_prune = {
	.name = "jobs_prune", .lua = keel_lua_queue_prune };

/* ------------------------------------------------------------ plumbing */

/* The argument vector of one script call: keys, prefix, policy, more. */
struct jobs_args {
	const char	**av;
	size_t		 *al;
	int		  n, cap;
	struct keel_buf	  nums;		/* backing store of numbers */
	char		**own;		/* strings we allocated */
	int		  nown;
};

static void
args_push(struct jobs_args *a, const char *s, size_t len)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 32;
		a->av = keel_realloc(a->av, (size_t)a->cap * sizeof(*a->av));
		a->al = keel_realloc(a->al, (size_t)a->cap * sizeof(*a->al));
		a->own = keel_realloc(a->own, (size_t)a->cap *
		    sizeof(*a->own));
	}
	a->av[a->n] = s;
	a->al[a->n] = len;
	a->n++;
}

static void
args_str(struct jobs_args *a, const char *s)
{
	args_push(a, s, strlen(s));
}

/* A copy we own (numbers, built key names). */
static void
args_fmt(struct jobs_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
args_fmt(struct jobs_args *a, const char *fmt, ...)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	va_list		 ap;

	va_start(ap, fmt);
	keel_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	/* After the push own has room: nown < n <= cap. */
	args_push(a, b.data, b.len);
	a->own[a->nown++] = b.data;
}

static void
args_free(struct jobs_args *a)
{
	int	 i;

	for (i = 0; i < a->nown; i++)
		free(a->own[i]);
	free(a->own);
	free(a->av);
	free(a->al);
	memset(a, 0, sizeof(*a));
}

/* Keys, the job prefix and the policy: the first 17 arguments. */
static void
args_queue(struct jobs_args *a, const struct keel_queue *q, const char *name)
{
	static const char *const sfx[] = { "s", "d", "a", "c", "x", "r" };
	const struct keel_config *cfg = keel_config();
	size_t	 i;
	int	 vis = cfg != NULL ? cfg->job_visibility : 60;

	for (i = 0; i < 6; i++)
		args_fmt(a, "keel:q:%s:%s", name, sfx[i]);
	args_fmt(a, "keel:q:%s:j:", name);
	args_fmt(a, "%d", q->attempts);
	args_fmt(a, "%d", q->backoff_ms);
	args_fmt(a, "%d", q->inflight);
	args_fmt(a, "%d", q->rate);
	args_fmt(a, "%d", q->rate_ms);
	args_fmt(a, "%d", vis * 1000);
	args_fmt(a, "%d", q->keep_completed);
	args_fmt(a, "%lld", (long long)q->completed_age * 1000);
	args_fmt(a, "%d", q->keep_failed);
	args_fmt(a, "%lld", (long long)q->failed_age * 1000);
}

static enum keel_err
args_eval(struct keel_redis *r, struct keel_rscript *s, struct jobs_args *a,
    struct keel_rreply **out)
{
	enum keel_err	 er;

	if ((er = keel_redis_eval(r, s, 6, a->n, a->av, a->al, out)) !=
	    KEEL_OK)
		return er;
	if ((*out)->type == KEEL_R_ERROR) {
		keel_log_error("jobs: script %s: %s", s->name, (*out)->str);
		keel_rreply_free(*out);
		*out = NULL;
		return KEEL_EINTERNAL;
	}
	return KEEL_OK;
}

static long long
rint_at(const struct keel_rreply *rep, size_t i)
{
	if (rep->type != KEEL_R_ARRAY || i >= rep->nelem)
		return 0;
	if (rep->elem[i].type == KEEL_R_INT)
		return rep->elem[i].integer;
	if (rep->elem[i].type == KEEL_R_STR)
		return strtoll(rep->elem[i].str, NULL, 10);
	return 0;
}

/* -------------------------------------------------------------- outbox */

static const struct keel_query q_outbox_add = { "jobs_outbox_add",
	"INSERT INTO outbox (queue, kind, payload, idempotency_key) "
	"VALUES ($1, $2, $3::jsonb, $4) RETURNING id", 4, KEEL_DB_PRIMARY };

static const struct keel_query q_outbox_add_delayed = {
	"jobs_outbox_add_delayed",
	"INSERT INTO outbox (queue, kind, payload, idempotency_key, "
	"available_at) VALUES ($1, $2, $3::jsonb, $4, "
	"now() + $5::bigint * interval '1 millisecond') RETURNING id", 5,
	KEEL_DB_PRIMARY };

/* The delay is what is left of available_at, by the database's clock;
 * Redis then counts it on its own. */
#define OUTBOX_COLS "id, queue, kind, payload::text, idempotency_key, " \
	"GREATEST(0, ceil(extract(epoch FROM available_at - now()) * 1000))" \
	"::bigint"

static const struct keel_query q_outbox_by_ids = { "jobs_outbox_by_ids",
	"SELECT " OUTBOX_COLS " FROM outbox WHERE id = ANY($1::bigint[]) "
	"AND pushed_at IS NULL ORDER BY id", 1, KEEL_DB_PRIMARY };

static const struct keel_query q_outbox_pending = { "jobs_outbox_pending",
	"SELECT " OUTBOX_COLS " FROM outbox WHERE pushed_at IS NULL "
	"ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", 1, KEEL_DB_PRIMARY };

/*
 * The mark needn't be durable: lost in a crash, it only makes the relay
 * push the row again, and the queue knows the key.  So its commit skips
 * the WAL flush (set_config(..., true) lasts until that commit), which
 * saves the request path a disk flush.
 */
static const struct keel_query q_outbox_mark = { "jobs_outbox_mark",
	"WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) "
	"UPDATE outbox SET pushed_at = now() FROM async "
	"WHERE id = ANY($1::bigint[])", 1, KEEL_DB_PRIMARY };

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
	const struct keel_queue	*q;
	struct keel_rreply	*rep = NULL;
	struct jobs_args	 a;
	const char		*name;
	size_t			 i, j, n = keel_rows_count(rows);
	enum keel_err		 er = KEEL_OK;

	for (i = 0; i < n; i = j) {
		name = keel_rows_value(rows, i, 1);
		if ((q = keel_jobs_queue(name)) == NULL)
			q = &default_queue;
		memset(&a, 0, sizeof(a));
		args_queue(&a, q, name);
		for (j = i; j < n && strcmp(keel_rows_value(rows, j, 1),
		    name) == 0 && j - i < 200; j++) {
			args_str(&a, keel_rows_value(rows, j, 4));
			args_str(&a, keel_rows_value(rows, j, 2));
			args_str(&a, keel_rows_value(rows, j, 3));
			args_str(&a, keel_rows_value(rows, j, 5));
		}
		er = args_eval(r, &lua_enqueue, &a, &rep);
		args_free(&a);
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
		keel_log_warnx("jobs: push after commit failed (%s); the "
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

/* ------------------------------------------------------------ queues */

enum keel_err
keel_jobs_enqueue(struct keel_redis *r, const struct keel_queue *q,
    const char *kind, const char *payload, const char *idem_key,
    int64_t delay_ms, int *added)
{
	struct keel_rreply	*rep = NULL;
	struct jobs_args	 a;
	enum keel_err		 er;

	memset(&a, 0, sizeof(a));
	args_queue(&a, q, q->name);
	args_str(&a, idem_key);
	args_str(&a, kind);
	args_str(&a, payload);
	args_fmt(&a, "%lld", (long long)delay_ms);
	if ((er = args_eval(r, &lua_enqueue, &a, &rep)) == KEEL_OK &&
	    added != NULL)
		*added = (int)rint_at(rep, 0);
	keel_rreply_free(rep);
	args_free(&a);
	return er;
}

enum keel_err
keel_jobs_stats(struct keel_redis *r, const struct keel_queue *q,
    struct keel_jobs_stats *st)
{
	struct keel_rreply	*rep = NULL;
	struct jobs_args	 a;
	enum keel_err		 er;

	memset(&a, 0, sizeof(a));
	args_queue(&a, q, q->name);
	if ((er = args_eval(r, &lua_stats, &a, &rep)) == KEEL_OK) {
		st->waiting = rint_at(rep, 0);
		st->active = rint_at(rep, 1);
		st->delayed = rint_at(rep, 2);
		st->completed = rint_at(rep, 3);
		st->failed = rint_at(rep, 4);
	}
	keel_rreply_free(rep);
	args_free(&a);
	return er;
}

static enum keel_err
simple_script(struct keel_redis *r, const struct keel_queue *q,
    struct keel_rscript *s, int64_t *n)
{
	struct keel_rreply	*rep = NULL;
	struct jobs_args	 a;
	enum keel_err		 er;

	memset(&a, 0, sizeof(a));
	args_queue(&a, q, q->name);
	if ((er = args_eval(r, s, &a, &rep)) == KEEL_OK && n != NULL)
		*n = rep->type == KEEL_R_INT ? rep->integer : 0;
	keel_rreply_free(rep);
	args_free(&a);
	return er;
}

enum keel_err
keel_jobs_retry_failed(struct keel_redis *r, const struct keel_queue *q,
    int64_t *moved)
{
	int64_t		 n;
	enum keel_err	 er;

	/* 1000 dead letters per call keeps each script short. */
	*moved = 0;
	do {
		if ((er = simple_script(r, q, &lua_retry_failed, &n)) !=
		    KEEL_OK)
			return er;
		*moved += n;
	} while (n == 1000);
	return KEEL_OK;
}

enum keel_err
keel_jobs_prune(struct keel_redis *r, const struct keel_queue *q,
    int64_t *removed)
{
	int64_t		 n, total = 0;
	enum keel_err	 er;

	do {
		if ((er = simple_script(r, q, &lua_prune, &n)) != KEEL_OK)
			return er;
		total += n;
	} while (n >= 1000);
	if (removed != NULL)
		*removed = total;
	return KEEL_OK;
}

/* Deletes keys matching pattern with SCAN (never KEYS: it blocks). */
static enum keel_err
del_matching(struct keel_redis *r, const char *pattern, int64_t *n)
{
	struct keel_rreply	*rep = NULL, *keys;
	const char		*av[6], **dv = NULL;
	char			 cursor[32] = "0";
	enum keel_err		 er;
	size_t			 i;

	do {
		av[0] = "SCAN";
		av[1] = cursor;
		av[2] = "MATCH";
		av[3] = pattern;
		av[4] = "COUNT";
		av[5] = "1000";
		if ((er = keel_redis_cmd(r, 6, av, NULL, &rep)) != KEEL_OK)
			return er;
		if (rep->type != KEEL_R_ARRAY || rep->nelem != 2) {
			keel_rreply_free(rep);
			return KEEL_EINTERNAL;
		}
		snprintf(cursor, sizeof(cursor), "%s", rep->elem[0].str);
		keys = &rep->elem[1];
		if (keys->nelem > 0) {
			dv = keel_calloc(keys->nelem + 1, sizeof(*dv));
			dv[0] = "UNLINK";
			for (i = 0; i < keys->nelem; i++)
				dv[i + 1] = keys->elem[i].str;
			er = keel_redis_cmd(r, (int)keys->nelem + 1, dv, NULL,
			    NULL);
			*n += (int64_t)keys->nelem;
			free(dv);
		}
		keel_rreply_free(rep);
		rep = NULL;
	} while (er == KEEL_OK && strcmp(cursor, "0") != 0);
	return er;
}

enum keel_err
keel_jobs_purge(struct keel_redis *r, const struct keel_queue *q,
    const char *what, int64_t *removed)
{
	struct keel_jobs_stats	 st;
	char			 key[128], pat[128];
	const char		*av[2];
	enum keel_err		 er;
	int64_t			 n = 0;

	if ((er = keel_jobs_stats(r, q, &st)) != KEEL_OK)
		return er;
	av[0] = "UNLINK";
	av[1] = key;
	if (strcmp(what, "failed") == 0) {
		snprintf(key, sizeof(key), "keel:q:%s:x", q->name);
		er = keel_redis_cmd(r, 2, av, NULL, NULL);
		n = st.failed;
	} else if (strcmp(what, "completed") == 0) {
		/* Retention with nothing to keep, by a zero-count policy. */
		struct keel_queue	 z = *q;

		z.keep_completed = 0;
		er = keel_jobs_prune(r, &z, NULL);
		n = st.completed;
	} else if (strcmp(what, "all") == 0) {
		snprintf(pat, sizeof(pat), "keel:q:%s:*", q->name);
		er = del_matching(r, pat, &n);
	} else
		return KEEL_EINVAL;
	if (er == KEEL_OK && removed != NULL)
		*removed = n;
	return er;
}

/* ------------------------------------------------------------ drainer */

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
drain_finish(struct keel_cron *c, struct keel_redis *r,
    const struct keel_queue *q, struct drain_job *jobs, size_t n,
    struct drain_counts *cnt)
{
	struct keel_rreply	*rep = NULL;
	struct jobs_args	 a;
	enum keel_err		 er;
	size_t			 i;
	int			 tries;

	memset(&a, 0, sizeof(a));
	args_queue(&a, q, q->name);
	for (i = 0; i < n; i++) {
		args_str(&a, jobs[i].msgid);
		args_str(&a, jobs[i].job.key);
		args_fmt(&a, "%d", jobs[i].job.attempt);
		args_str(&a, jobs[i].outcome);
		args_str(&a, jobs[i].why);
	}
	for (tries = 0; tries < 40; tries++) {
		if ((er = args_eval(r, &lua_finish, &a, &rep)) !=
		    KEEL_EUNAVAIL)
			break;
		if (tries == 0)
			keel_log_warnx("jobs: recording results: redis "
			    "unavailable (%s); retrying", keel_redis_errstr(r));
		drain_sleep(250);
	}
	args_free(&a);
	if (er != KEEL_OK) {
		keel_log_error("jobs: %zu results not recorded (%s); their "
		    "leases will expire and count as attempts", n,
		    keel_strerror(er));
		(void)c;
		return;
	}
	for (i = 0; i < n; i++) {
		switch (rint_at(rep, i)) {
		case 0:
			cnt->refused++;
			keel_log_warnx("jobs: %s %s attempt %d: lease no longer "
			    "current, result dropped", q->name,
			    jobs[i].job.key, jobs[i].job.attempt);
			break;
		case 1:
			cnt->processed++;
			break;
		case 2:
			cnt->retried++;
			keel_log_info("jobs: %s %s attempt %d failed, retrying:"
			    " %s", q->name, jobs[i].job.key,
			    jobs[i].job.attempt, jobs[i].why);
			break;
		case 3:
			cnt->failed++;
			keel_log_warnx("jobs: %s %s dead-lettered after attempt"
			    " %d: %s", q->name, jobs[i].job.key,
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
drain_batch(struct keel_cron *c, struct keel_redis *r,
    const struct keel_drainer *d, const struct keel_queue *q, void *ctx,
    const struct keel_rreply *rep, struct drain_counts *cnt)
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
	drain_finish(c, r, q, jobs, n, cnt);
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
	enum keel_err	 er;

	const char	*av[6];
	char		 key[128], block[16];

	snprintf(key, sizeof(key), "keel:q:%s:s", q->name);
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
	struct jobs_args	 a;
	char			 consumer[300], host[256];
	void			*ctx;
	enum keel_err		 er;
	int64_t			 budget = 0;
	int			 ch, until_empty = 0, down = 0, wait;
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
	if ((q = keel_jobs_queue(d->queue)) == NULL) {
		fprintf(stderr, "%s: no queue %s in jobs.c\n", d->name,
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

	while (!keel_cron_stopping(&c)) {
		memset(&a, 0, sizeof(a));
		args_queue(&a, q, q->name);
		args_str(&a, consumer);
		args_fmt(&a, "%d", q->batch);
		er = args_eval(r, &lua_fetch, &a, &rep);
		args_free(&a);
		if (er != KEEL_OK) {
			/* Redis restarting: reconnect and carry on. */
			if (!down++)
				keel_log_warnx("jobs: %s: %s (%s); retrying",
				    q->name, keel_strerror(er),
				    keel_redis_errstr(r));
			drain_sleep(500);
			continue;
		}
		if (down) {
			keel_log_info("jobs: %s: redis is back", q->name);
			down = 0;
		}
		cnt.stalled += rint_at(rep, 3);
		cnt.failed += rint_at(rep, 4);
		if (rep->nelem > 6) {
			drain_batch(&c, r, d, q, ctx, rep, &cnt);
			keel_cron_progress(&c, "processed=%ld failed=%ld "
			    "retried=%ld", cnt.processed, cnt.failed,
			    cnt.retried);
		} else if (until_empty && rint_at(rep, 5) == 0) {
			break;
		} else {
			/* Nothing to lease: block until a new job, the next
			 * due one, or free capacity -- at most a second. */
			wake = rint_at(rep, 0);
			wait = (int)(keel_cron_left_ms(&c) < 1000 ?
			    keel_cron_left_ms(&c) : 1000);
			if (wake >= 0 && wake < wait)
				wait = (int)wake;
			if (wait < 1)
				wait = 1;
			if (rint_at(rep, 1))
				drain_sleep(wait < 50 ? wait : 50);
			else if (drain_block(r, q, rep->elem[2].str, wait) !=
			    KEEL_OK && !down++)
				keel_log_warnx("jobs: %s: waiting for jobs: %s; "
				    "reconnecting", q->name,
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
