/* SPDX-License-Identifier: ISC */
/*
 * queue.c -- the Redis Streams queues: the policy table, the scripts'
 * arguments, adding jobs and the operator's commands.
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
 * Every state change is one Lua script (lib/lua/queue_*.lua, after the
 * shared queue_prelude.lua), timed by the server's TIME, so all consumers
 * on all hosts agree on one clock.  This file owns the keys, the policy
 * and the argument vector every script takes; outbox.c adds jobs and
 * retries dead letters through it (a retry changes the jobs' outbox rows
 * too) and drain.c leases and finishes them (queue_private.h).  Nothing
 * here reads the configuration: the one setting a script needs from it,
 * the visibility timeout, is the drainer's to pass.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/log.h"
#include "keel/mem.h"
#include "keel/queue.h"
#include "keel/redis.h"
#include "lua_scripts.h"
#include "queue_private.h"

/*
 * The queues.  email is the seeds' policy (3 attempts: now, +2 s, +4 s;
 * 5 in flight; 10/s; 100 completed for a day; 500 failed).  leaderboard
 * and notifications are consumed by the drainers of their resources;
 * noop exists for benchmarks and smoke tests.  A queue missing here (an
 * outbox row naming one) gets default_queue's policy.
 */
static const struct keel_queue queues[] = {
	{ .name = "email", .attempts = 3, .backoff_ms = 2000, .inflight = 5,
	  .rate = 10, .rate_ms = 1000, .batch = 1,
	  .keep_completed = 100, .completed_age = 86400,
	  .keep_failed = 500, .failed_age = 0 },
	{ .name = "leaderboard", .attempts = 5, .backoff_ms = 1000,
	  .inflight = 100, .rate = 0, .rate_ms = 1000, .batch = 100,
	  .keep_completed = 100, .completed_age = 86400,
	  .keep_failed = 500, .failed_age = 0 },
	{ .name = "notifications", .attempts = 5, .backoff_ms = 1000,
	  .inflight = 100, .rate = 0, .rate_ms = 1000, .batch = 100,
	  .keep_completed = 100, .completed_age = 86400,
	  .keep_failed = 500, .failed_age = 0 },
	{ .name = "noop", .attempts = 3, .backoff_ms = 1000,
	  .inflight = 100000, .rate = 0, .rate_ms = 1000, .batch = 1000,
	  .keep_completed = 100, .completed_age = 86400,
	  .keep_failed = 500, .failed_age = 0 },
};

static const struct keel_queue default_queue = {
	.name = NULL, .attempts = 5, .backoff_ms = 1000, .inflight = 100,
	.rate = 0, .rate_ms = 1000, .batch = 100,
	.keep_completed = 100, .completed_age = 86400,
	.keep_failed = 500, .failed_age = 0,
};

/* The scripts this file runs, and two outbox.c runs (queue_private.h);
 * drain.c has fetch and finish. */
struct keel_rscript keel_queue_script_enqueue = {
	.name = "queue_enqueue", .lua = keel_lua_queue_enqueue };
struct keel_rscript keel_queue_script_retry_failed = {
	.name = "queue_retry_failed", .lua = keel_lua_queue_retry_failed };
static struct keel_rscript script_stats = {
	.name = "queue_stats", .lua = keel_lua_queue_stats };
static struct keel_rscript script_prune = {
	.name = "queue_prune", .lua = keel_lua_queue_prune };

const struct keel_queue *
keel_queue_find(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(queues) / sizeof(queues[0]); i++)
		if (strcmp(queues[i].name, name) == 0)
			return &queues[i];
	return NULL;
}

const struct keel_queue *
keel_queue_all(size_t *n)
{
	*n = sizeof(queues) / sizeof(queues[0]);
	return queues;
}

const struct keel_queue *
keel_queue_policy(const char *name)
{
	const struct keel_queue	*q;

	return (q = keel_queue_find(name)) != NULL ? q : &default_queue;
}

int64_t
keel_queue_backoff_ms(const struct keel_queue *q, int attempt)
{
	int	 shift = attempt < 2 ? 0 : attempt - 2;

	if (shift > 20)
		shift = 20;
	return (int64_t)q->backoff_ms << shift;
}

/* ------------------------------------------------- script arguments */

static void
args_push(struct keel_queue_args *a, const char *s, size_t len)
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

void
keel_queue_args_str(struct keel_queue_args *a, const char *s)
{
	args_push(a, s, strlen(s));
}

void
keel_queue_args_fmt(struct keel_queue_args *a, const char *fmt, ...)
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

void
keel_queue_args_free(struct keel_queue_args *a)
{
	int	 i;

	for (i = 0; i < a->nown; i++)
		free(a->own[i]);
	free(a->own);
	free(a->av);
	free(a->al);
	memset(a, 0, sizeof(*a));
}

/* Keys, the job prefix and the policy: the first 16 arguments. */
void
keel_queue_args_init(struct keel_queue_args *a, const struct keel_redis *r,
    const struct keel_queue *q, const char *name)
{
	static const char *const sfx[] = { "s", "d", "a", "c", "x", "r" };
	size_t	 i;

	memset(a, 0, sizeof(*a));
	for (i = 0; i < 6; i++)
		keel_queue_args_fmt(a, KEEL_QUEUE_KEY,
		    KEEL_QUEUE_KEY_ARGS(r, name, sfx[i]));
	keel_queue_args_fmt(a, KEEL_QUEUE_KEY, KEEL_QUEUE_KEY_ARGS(r, name,
	    "j:"));
	keel_queue_args_fmt(a, "%d", q->attempts);
	keel_queue_args_fmt(a, "%d", q->backoff_ms);
	keel_queue_args_fmt(a, "%d", q->inflight);
	keel_queue_args_fmt(a, "%d", q->rate);
	keel_queue_args_fmt(a, "%d", q->rate_ms);
	keel_queue_args_fmt(a, "%d", q->keep_completed);
	keel_queue_args_fmt(a, "%lld", (long long)q->completed_age * 1000);
	keel_queue_args_fmt(a, "%d", q->keep_failed);
	keel_queue_args_fmt(a, "%lld", (long long)q->failed_age * 1000);
}

enum keel_err
keel_queue_args_eval(struct keel_redis *r, struct keel_rscript *s,
    struct keel_queue_args *a, struct keel_rreply **out)
{
	enum keel_err	 er;

	if ((er = keel_redis_eval(r, s, 6, a->n, a->av, a->al, out)) !=
	    KEEL_OK)
		return er;
	if ((*out)->type == KEEL_R_ERROR) {
		keel_log_error("queue: script %s: %s", s->name, (*out)->str);
		keel_rreply_free(*out);
		*out = NULL;
		return KEEL_EINTERNAL;
	}
	return KEEL_OK;
}

long long
keel_queue_reply_int(const struct keel_rreply *rep, size_t i)
{
	if (rep->type != KEEL_R_ARRAY || i >= rep->nelem)
		return 0;
	if (rep->elem[i].type == KEEL_R_INT)
		return rep->elem[i].integer;
	if (rep->elem[i].type == KEEL_R_STR)
		return strtoll(rep->elem[i].str, NULL, 10);
	return 0;
}

/* ------------------------------------------------------------ queues */

enum keel_err
keel_queue_enqueue(struct keel_redis *r, const struct keel_queue *q,
    const char *kind, const char *payload, const char *idem_key,
    int64_t delay_ms, int *added)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	enum keel_err		 er;

	keel_queue_args_init(&a, r, q, q->name);
	keel_queue_args_fmt(&a, "%d", KEEL_QUEUE_REUSE_GRACE_MS);
	keel_queue_args_str(&a, idem_key);
	keel_queue_args_str(&a, kind);
	keel_queue_args_str(&a, payload);
	keel_queue_args_fmt(&a, "%lld", (long long)delay_ms);
	keel_queue_args_str(&a, keel_log_request());
	/* No outbox row, no origin: the key alone says which job it is. */
	keel_queue_args_str(&a, "");
	if ((er = keel_queue_args_eval(r, &keel_queue_script_enqueue, &a,
	    &rep)) == KEEL_OK && added != NULL)
		*added = keel_queue_reply_int(rep, 0) == KEEL_QUEUE_ADD_ADDED;
	keel_rreply_free(rep);
	keel_queue_args_free(&a);
	return er;
}

enum keel_err
keel_queue_stats(struct keel_redis *r, const struct keel_queue *q,
    struct keel_queue_stats *st)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	enum keel_err		 er;

	keel_queue_args_init(&a, r, q, q->name);
	if ((er = keel_queue_args_eval(r, &script_stats, &a, &rep)) ==
	    KEEL_OK) {
		st->waiting = keel_queue_reply_int(rep, 0);
		st->active = keel_queue_reply_int(rep, 1);
		st->delayed = keel_queue_reply_int(rep, 2);
		st->completed = keel_queue_reply_int(rep, 3);
		st->failed = keel_queue_reply_int(rep, 4);
	}
	keel_rreply_free(rep);
	keel_queue_args_free(&a);
	return er;
}

/* A script of q that takes nothing more and returns one count. */
static enum keel_err
simple_script(struct keel_redis *r, const struct keel_queue *q,
    struct keel_rscript *s, int64_t *n)
{
	struct keel_rreply	*rep = NULL;
	struct keel_queue_args	 a;
	enum keel_err		 er;

	keel_queue_args_init(&a, r, q, q->name);
	if ((er = keel_queue_args_eval(r, s, &a, &rep)) == KEEL_OK &&
	    n != NULL)
		*n = rep->type == KEEL_R_INT ? rep->integer : 0;
	keel_rreply_free(rep);
	keel_queue_args_free(&a);
	return er;
}

enum keel_err
keel_queue_prune(struct keel_redis *r, const struct keel_queue *q,
    int64_t *removed)
{
	int64_t		 n, total = 0;
	enum keel_err	 er;

	do {
		if ((er = simple_script(r, q, &script_prune, &n)) != KEEL_OK)
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
keel_queue_purge(struct keel_redis *r, const struct keel_queue *q,
    const char *what, int64_t *removed)
{
	struct keel_queue_stats	 st;
	char			 key[128], pat[128];
	const char		*av[2];
	enum keel_err		 er;
	int64_t			 n = 0;

	if ((er = keel_queue_stats(r, q, &st)) != KEEL_OK)
		return er;
	av[0] = "UNLINK";
	av[1] = key;
	if (strcmp(what, "failed") == 0) {
		snprintf(key, sizeof(key), KEEL_QUEUE_KEY,
		    KEEL_QUEUE_KEY_ARGS(r, q->name, "x"));
		er = keel_redis_cmd(r, 2, av, NULL, NULL);
		n = st.failed;
	} else if (strcmp(what, "completed") == 0) {
		/* Retention with nothing to keep, by a zero-count policy. */
		struct keel_queue	 z = *q;

		z.keep_completed = 0;
		er = keel_queue_prune(r, &z, NULL);
		n = st.completed;
	} else if (strcmp(what, "all") == 0) {
		snprintf(pat, sizeof(pat), KEEL_QUEUE_KEY,
		    KEEL_QUEUE_KEY_ARGS(r, q->name, "*"));
		er = del_matching(r, pat, &n);
	} else
		return KEEL_EINVAL;
	if (er == KEEL_OK && removed != NULL)
		*removed = n;
	return er;
}
