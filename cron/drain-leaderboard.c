/* SPDX-License-Identifier: ISC */
/*
 * drain-leaderboard.c -- keel-drain-leaderboard: applies submitted
 * attempts to the leaderboards (DESIGN.md, "Leaderboards").
 *
 * attempt_submitted {"attemptId"} (written by the submit transaction;
 * other payload fields are ignored): the attempt is read from
 * PostgreSQL, the source of truth, and its user's entries on six boards
 * -- its test's and the global one, each all-time, for the ISO week and
 * for the month the attempt was submitted in -- are recomputed from
 * test_attempts, all six by one statement (lib/board.c), then raised in
 * Redis (ZADD GT).  Nothing is added to a count, so a job run twice (a
 * retry after a crash) or out of order leaves the same entries.  An
 * attempt that doesn't exist or isn't submitted can never be applied:
 * dead-lettered.  A board missing from Redis (lost, or new: a new test,
 * a new week) is built whole from PostgreSQL, as the rebuild does, its
 * entry included.  The cached pages of the two scopes are invalidated.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/board.h"
#include "keel/cache.h"
#include "keel/db.h"
#include "keel/drain.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"

struct lb_ctx {
	struct keel_db		*db;		/* the drainer's */
	struct keel_redis	*redis;
	struct keel_cache	*cache;
	char			 run[300];	/* fresh keys' sentinel */
};

#define LB_FRESH_TTL	600	/* s a dead drainer's fresh key lives */
/*
 * An attempt's boards, in the order the rebuild writes boards (the
 * global scope's, then its test's, each by period), so the two lock
 * entries in one order and can't deadlock.
 */
#define LB_BOARDS	(2 * KEEL_BOARD_PERIOD__MAX)

static const struct keel_query q_attempt = { .name = "lb_attempt",
	.sql = "SELECT user_id, test_id, "
	"floor(extract(epoch FROM submitted_at))::bigint FROM test_attempts "
	"WHERE id = $1 AND submitted_at IS NOT NULL",
	.target = KEEL_DB_PRIMARY };

static void *
lb_setup(const struct keel_config *cfg, struct keel_db *db)
{
	struct lb_ctx	*c;

	c = keel_calloc(1, sizeof(*c));
	c->db = db;
	c->redis = keel_redis_open(cfg);
	c->cache = keel_cache_open(cfg);
	keel_board_run(c->run, sizeof(c->run), "drain");
	return c;
}

static void
lb_teardown(void *arg)
{
	struct lb_ctx	*c = arg;

	keel_redis_close(c->redis);
	keel_cache_close(c->cache);
	free(c);
}

/*
 * Raises user's entry on b to v in Redis; builds b from PostgreSQL when
 * it is missing there.  RETRY when PostgreSQL or Redis can't be reached
 * (what was done is done again).
 */
static enum keel_job_result
lb_board(struct lb_ctx *c, const struct keel_board *b, int64_t user,
    double v, char *why, size_t n)
{
	char			 key[KEEL_BOARD_KEY_MAX];
	enum keel_err		 er;
	long			 built;
	bool			 stored;

	if ((er = keel_board_add(c->redis, b, user, v, &stored)) != KEEL_OK) {
		snprintf(why, n, "redis: %s", keel_strerror(er));
		return KEEL_JOB_RETRY;
	}
	if (stored)
		return KEEL_JOB_DONE;
	/* Lost, or new (a new test, a new week): built from PostgreSQL,
	 * whose entries include this one. */
	keel_board_key(key, sizeof(key), b, false, c->redis);
	if ((er = keel_board_rebuild(c->db, c->redis, b, c->run,
	    LB_FRESH_TTL, &built)) != KEEL_OK) {
		snprintf(why, n, "rebuilding %s: %s", key, keel_strerror(er));
		return KEEL_JOB_RETRY;
	}
	if (built >= 0)
		keel_log_info("%s was not in redis: built (%ld entries)", key,
		    built);
	return KEEL_JOB_DONE;
}

static enum keel_job_result
lb_attempt_submitted(void *arg, const struct keel_job *job, char *why,
    size_t n)
{
	struct lb_ctx		*c = arg;
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	struct keel_board	 b[LB_BOARDS];
	struct json_object	*o = NULL, *v;
	enum keel_job_result	 res = KEEL_JOB_DONE;
	enum keel_err		 er;
	int64_t			 id = 0, user, test, at;
	double			 vals[LB_BOARDS];
	bool			 has[LB_BOARDS];
	size_t			 k;
	char			 err[64], ns[KEEL_BOARD_NS_MAX];

	if (keel_json_parse(job->payload, strlen(job->payload), &o, err,
	    sizeof(err)) == KEEL_OK && json_object_is_type(o,
	    json_type_object) && json_object_object_get_ex(o, "attemptId",
	    &v) && json_object_is_type(v, json_type_int))
		id = json_object_get_int64(v);
	json_object_put(o);
	if (id < 1) {
		snprintf(why, n, "payload: no attemptId");
		return KEEL_JOB_FAIL;
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, id);
	if ((er = keel_db_query(c->db, &q_attempt, &p, &rows)) != KEEL_OK) {
		snprintf(why, n, "database: %s", keel_strerror(er));
		return KEEL_JOB_RETRY;
	}
	if (keel_rows_count(rows) == 0) {
		keel_rows_free(rows);
		snprintf(why, n, "no submitted attempt %lld", (long long)id);
		return KEEL_JOB_FAIL;
	}
	user = keel_rows_int64(rows, 0, 0);
	test = keel_rows_int64(rows, 0, 1);
	at = keel_rows_int64(rows, 0, 2);
	keel_rows_free(rows);
	for (k = 0; k < LB_BOARDS; k++)
		keel_board_at(&b[k], k < KEEL_BOARD_PERIOD__MAX ? 0 : test,
		    (enum keel_board_period)(k % KEEL_BOARD_PERIOD__MAX), at);
	if ((er = keel_board_compute_user(c->db, b, LB_BOARDS, user, vals,
	    has)) != KEEL_OK) {
		snprintf(why, n, "database: %s", keel_strerror(er));
		return KEEL_JOB_RETRY;
	}
	for (k = 0; k < LB_BOARDS && res == KEEL_JOB_DONE; k++)
		if (has[k])
			res = lb_board(c, &b[k], user, vals[k], why, n);
	/* The two scopes' cached pages are a generation behind now (best
	 * effort); other tests' pages stay cached. */
	keel_board_ns(ns, sizeof(ns), test);
	keel_cache_invalidate(c->cache, ns);
	keel_board_ns(ns, sizeof(ns), 0);
	keel_cache_invalidate(c->cache, ns);
	return res;
}

static const struct keel_job_kind leaderboard_kinds[] = {
	{ .kind = "attempt_submitted", .fn = lb_attempt_submitted },
};

static const struct keel_drainer leaderboard_drainer = {
	.name = "keel-drain-leaderboard", .queue = "leaderboard",
	.kinds = leaderboard_kinds, .nkinds = KEEL_NELEM(leaderboard_kinds),
	.setup = lb_setup, .teardown = lb_teardown,
};

int
main(int argc, char *argv[])
{
	return keel_drain_main(argc, argv, &leaderboard_drainer);
}
