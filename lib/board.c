/* SPDX-License-Identifier: ISC */
/*
 * board.c -- leaderboards (DESIGN.md, "Leaderboards"): the encoding of
 * a score and its time into one exact double, periods, board keys, the
 * statement every writer of leaderboard_entries shares, and the board
 * scripts (lib/lua/board_*.lua).
 *
 * Writers never add to an entry: the drainer (one user) and the rebuild
 * (every user) run the same statement, which recomputes entries from
 * test_attempts, so a job run twice counts its attempt once and the two
 * always agree.  Redis only ever raises a value (ZADD GT); a rebuild
 * fills a fresh key, into which the drainer also writes while it
 * exists, and renames it over the board, so a reader sees the old board
 * or the new one and a concurrent update lands in whichever wins.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/board.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "lua_scripts.h"

#define BAND	4294967296.0		/* 2^KEEL_BOARD_TIME_BITS */

static struct keel_rscript script_add = {
	.name = "board_add", .lua = keel_lua_board_add };
static struct keel_rscript script_begin = {
	.name = "board_begin", .lua = keel_lua_board_begin };
static struct keel_rscript script_swap = {
	.name = "board_swap", .lua = keel_lua_board_swap };
static struct keel_rscript script_page = {
	.name = "board_page", .lua = keel_lua_board_page };
static struct keel_rscript script_rank = {
	.name = "board_rank", .lua = keel_lua_board_rank };

const char *const keel_board_periods[] = { "all", "week", "month", NULL };

bool
keel_board_encode(int64_t score, int64_t reached, double *out)
{
	int64_t	 t = reached - KEEL_BOARD_EPOCH;

	if (score < 0 || score > KEEL_BOARD_SCORE_MAX)
		return false;
	if (t < 0)
		t = 0;
	if (t > KEEL_BOARD_TIME_MAX)
		t = KEEL_BOARD_TIME_MAX;
	/* An integer below 2^53: exact as a double. */
	*out = (double)((score << KEEL_BOARD_TIME_BITS) |
	    (KEEL_BOARD_TIME_MAX - t));
	return true;
}

void
keel_board_decode(double v, int64_t *score, int64_t *reached)
{
	int64_t	 x = (int64_t)v;

	*score = x >> KEEL_BOARD_TIME_BITS;
	*reached = KEEL_BOARD_EPOCH + KEEL_BOARD_TIME_MAX -
	    (x & KEEL_BOARD_TIME_MAX);
}

double
keel_board_band(int64_t score)
{
	return (double)score * BAND;
}

enum keel_board_period
keel_board_period_find(const char *s)
{
	int	 i;

	for (i = 0; i < KEEL_BOARD_PERIOD__MAX; i++)
		if (strcmp(keel_board_periods[i], s) == 0)
			return (enum keel_board_period)i;
	return KEEL_BOARD_PERIOD__MAX;
}

void
keel_board_period(enum keel_board_period p, int64_t t, char day[11],
    int64_t *end)
{
	struct tm	 tm;
	time_t		 tt = (time_t)t;

	if (p == KEEL_BOARD_ALL) {
		memcpy(day, "1970-01-01", 11);
		if (end != NULL)
			*end = 0;
		return;
	}
	gmtime_r(&tt, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	if (p == KEEL_BOARD_WEEK)
		tm.tm_mday -= (tm.tm_wday + 6) % 7;	/* back to Monday */
	else
		tm.tm_mday = 1;
	tt = timegm(&tm);		/* normalises the day */
	gmtime_r(&tt, &tm);
	strftime(day, 11, "%Y-%m-%d", &tm);
	if (end == NULL)
		return;
	if (p == KEEL_BOARD_WEEK)
		tm.tm_mday += 7;
	else
		tm.tm_mon += 1;
	*end = (int64_t)timegm(&tm);
}

void
keel_board_at(struct keel_board *b, int64_t test, enum keel_board_period p,
    int64_t t)
{
	b->test = test;
	b->period = p;
	keel_board_period(p, t, b->start, &b->end);
}

void
keel_board_key(char *buf, size_t n, const struct keel_board *b, bool fresh)
{
	if (b->test > 0)
		snprintf(buf, n, "keel:lb:t%" PRId64 ":%s:%s%s", b->test,
		    keel_board_periods[b->period], b->start,
		    fresh ? ":new" : "");
	else
		snprintf(buf, n, "keel:lb:g:%s:%s%s",
		    keel_board_periods[b->period], b->start,
		    fresh ? ":new" : "");
}

/*
 * A user's attempts of the scope and period, each test's best and the
 * second it was first reached -- one max() of score * 2^40 + (2^40 - 1
 * - the second), a bigint, so a plain hash aggregate finds both --
 * summed per user (one test: its best), upserted
 * (only over an entry from fewer attempts, and only when it changes:
 * an unchanged entry is not even locked), then every computed user's
 * entry as it now stands.
 */
const struct keel_query keel_board_q_compute = {
	.name = "board_compute",
	.sql = "WITH a AS (SELECT user_id, test_id, score, submitted_at "
	"FROM test_attempts WHERE submitted_at IS NOT NULL "
	"AND ($1::bigint IS NULL OR test_id = $1::bigint) "
	"AND submitted_at >= $3::date::timestamp AT TIME ZONE 'UTC' "
	"AND ($4::bigint IS NULL OR submitted_at < to_timestamp($4::bigint)) "
	"AND ($5::bigint IS NULL OR user_id = $5::bigint)), "
	"bt AS (SELECT user_id, max(score::bigint * 1099511627776 + "
	"1099511627775 - floor(extract(epoch FROM submitted_at))::bigint) "
	"AS k, count(*) AS n FROM a GROUP BY user_id, test_id), "
	"c AS (SELECT user_id, sum(k >> 40)::bigint AS score, "
	"sum(n)::integer AS attempts, to_timestamp(max(1099511627775 - "
	"(k & 1099511627775))) AS reached FROM bt GROUP BY user_id), "
	"j AS (SELECT c.*, e.user_id IS NOT NULL AS known, e.score AS escore, "
	"e.attempts AS eattempts, e.reached_at AS ereached FROM c "
	"LEFT JOIN leaderboard_entries e ON e.user_id = c.user_id "
	"AND COALESCE(e.test_id, 0) = COALESCE($1::bigint, 0) "
	"AND e.period = $2::text AND e.period_start = $3::date), "
	"up AS (INSERT INTO leaderboard_entries AS e (test_id, period, "
	"period_start, user_id, score, attempts, reached_at) "
	"SELECT $1::bigint, $2::text, $3::date, user_id, score, attempts, "
	"reached FROM j WHERE NOT known OR (attempts >= eattempts AND "
	"(escore, eattempts, ereached) IS DISTINCT FROM "
	"(score, attempts, reached)) "
	"ON CONFLICT ((COALESCE(test_id, 0)), period, period_start, user_id) "
	"DO UPDATE SET score = EXCLUDED.score, attempts = EXCLUDED.attempts, "
	"reached_at = EXCLUDED.reached_at, updated_at = now() "
	"WHERE EXCLUDED.attempts >= e.attempts AND "
	"(e.score, e.attempts, e.reached_at) IS DISTINCT FROM "
	"(EXCLUDED.score, EXCLUDED.attempts, EXCLUDED.reached_at) "
	"RETURNING user_id, score, reached_at) "
	"SELECT user_id AS \"userId\", score, "
	"floor(extract(epoch FROM reached_at))::bigint AS reached FROM up "
	"UNION ALL SELECT user_id, escore, "
	"floor(extract(epoch FROM ereached))::bigint FROM j WHERE known "
	"AND NOT EXISTS (SELECT 1 FROM up WHERE up.user_id = j.user_id)",
	.target = KEEL_DB_PRIMARY };

void
keel_board_params(struct keel_db_params *p, const struct keel_board *b,
    char *endbuf, size_t n)
{
	if (b->test > 0)
		keel_db_param_int(p, b->test);
	else
		keel_db_param_null(p);
	keel_db_param_text(p, keel_board_periods[b->period]);
	keel_db_param_text(p, b->start);
	if (b->end > 0) {
		snprintf(endbuf, n, "%" PRId64, b->end);
		keel_db_param_text(p, endbuf);
	} else
		keel_db_param_null(p);
}

/* Runs script over b's key (and its fresh key when two) with argv. */
static enum keel_err
board_eval(struct keel_redis *r, struct keel_rscript *s,
    const struct keel_board *b, int nkeys, bool fresh_first, int argc,
    const char **argv, struct keel_rreply **rep)
{
	char		 k1[KEEL_BOARD_KEY_MAX], k2[KEEL_BOARD_KEY_MAX];
	const char	*av[8];
	int		 i;

	keel_board_key(k1, sizeof(k1), b, fresh_first);
	keel_board_key(k2, sizeof(k2), b, !fresh_first);
	av[0] = k1;
	av[1] = k2;
	for (i = 0; i < argc; i++)
		av[nkeys + i] = argv[i];
	return keel_redis_eval(r, s, nkeys, nkeys + argc, av, NULL, rep);
}

/* The script's integer answer; KEEL_EINTERNAL (logged) for another. */
static enum keel_err
board_int(struct keel_rscript *s, enum keel_err er, struct keel_rreply *rep,
    long long *v)
{
	if (er == KEEL_OK && rep->type != KEEL_R_INT) {
		keel_log_error("redis: %s: %s", s->name, rep->type ==
		    KEEL_R_ERROR ? rep->str : "unexpected reply");
		er = KEEL_EINTERNAL;
	}
	if (er == KEEL_OK)
		*v = rep->integer;
	keel_rreply_free(rep);
	return er;
}

enum keel_err
keel_board_add(struct keel_redis *r, const struct keel_board *b,
    int64_t user, double v, bool *stored)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[2];
	char			 val[32], mem[32];
	long long		 n = 0;
	enum keel_err		 er;

	snprintf(val, sizeof(val), "%" PRId64, (int64_t)v);
	snprintf(mem, sizeof(mem), "%" PRId64, user);
	av[0] = val;
	av[1] = mem;
	er = board_eval(r, &script_add, b, 2, false, 2, av, &rep);
	if ((er = board_int(&script_add, er, rep, &n)) == KEEL_OK)
		*stored = n > 0;
	return er;
}

void
keel_board_run(char *buf, size_t n, const char *who)
{
	char	 host[256];

	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, n, "~%s:%s:%ld:%lld", who, host, (long)getpid(),
	    (long long)time(NULL));
}

enum keel_err
keel_board_begin(struct keel_redis *r, const struct keel_board *b,
    const char *run, int ttl, bool *began)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[2];
	char			 t[16];
	long long		 n = 0;
	enum keel_err		 er;

	snprintf(t, sizeof(t), "%d", ttl);
	av[0] = run;
	av[1] = t;
	er = board_eval(r, &script_begin, b, 1, true, 2, av, &rep);
	if ((er = board_int(&script_begin, er, rep, &n)) == KEEL_OK)
		*began = n == 1;
	return er;
}

enum keel_err
keel_board_fill(struct keel_redis *r, const struct keel_board *b,
    const int64_t *users, const double *vals, size_t n)
{
	struct keel_rreply	*rep = NULL;
	const char		**av;
	char			*num, key[KEEL_BOARD_KEY_MAX];
	size_t			 i;
	enum keel_err		 er;

	if (n == 0)
		return KEEL_OK;
	av = keel_calloc(3 + 2 * n, sizeof(*av));
	num = keel_malloc(n * 2 * 24);
	keel_board_key(key, sizeof(key), b, true);
	av[0] = "ZADD";
	av[1] = key;
	av[2] = "GT";
	for (i = 0; i < n; i++) {
		av[3 + 2 * i] = num + 48 * i;
		av[4 + 2 * i] = num + 48 * i + 24;
		snprintf(num + 48 * i, 24, "%" PRId64, (int64_t)vals[i]);
		snprintf(num + 48 * i + 24, 24, "%" PRId64, users[i]);
	}
	er = keel_redis_cmd(r, (int)(3 + 2 * n), av, NULL, &rep);
	if (er == KEEL_OK && rep->type == KEEL_R_ERROR) {
		keel_log_error("redis: ZADD %s: %s", key, rep->str);
		er = KEEL_EINTERNAL;
	}
	keel_rreply_free(rep);
	free(num);
	free(av);
	return er;
}

enum keel_err
keel_board_swap(struct keel_redis *r, const struct keel_board *b,
    const char *run, bool *swapped)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[2];
	char			 at[32];
	long long		 n = 0;
	enum keel_err		 er;

	/* A period's board outlives it by a day, for late readers. */
	snprintf(at, sizeof(at), "%" PRId64, b->end > 0 ? b->end + 86400 :
	    (int64_t)0);
	av[0] = run;
	av[1] = at;
	er = board_eval(r, &script_swap, b, 2, true, 2, av, &rep);
	if ((er = board_int(&script_swap, er, rep, &n)) == KEEL_OK)
		*swapped = n == 1;
	return er;
}

/*
 * A whole board's statement aggregates every attempt of its period (a
 * million for the global board of the benchmark): at the default 4 MB
 * its hash aggregates spill and PostgreSQL's row estimates for the
 * steps after them are far off, and it ran over a minute where it takes
 * five seconds with room.  Raised for the statement's transaction only.
 */
#define BOARD_WORK_MEM	"256MB"
static const struct keel_query q_work_mem = { .name = "board_work_mem",
	.sql = "SELECT set_config('work_mem', $1, true)",
	.target = KEEL_DB_PRIMARY };

/* keel_board_q_compute over every user, with its work_mem. */
static enum keel_err
board_compute_all(struct keel_db *db, const struct keel_board *b,
    struct keel_rows **rows)
{
	struct keel_db_params	 p;
	char			 end[24];
	enum keel_err		 er;

	if ((er = keel_db_begin(db)) != KEEL_OK)
		return er;
	keel_db_params_init(&p);
	keel_db_param_text(&p, BOARD_WORK_MEM);
	if ((er = keel_db_query(db, &q_work_mem, &p, NULL)) != KEEL_OK)
		goto out;
	keel_db_params_init(&p);
	keel_board_params(&p, b, end, sizeof(end));
	keel_db_param_null(&p);
	if ((er = keel_db_query(db, &keel_board_q_compute, &p, rows)) !=
	    KEEL_OK)
		goto out;
	er = keel_db_commit(db);
out:
	if (er != KEEL_OK) {
		keel_db_rollback(db);
		keel_rows_free(*rows);
		*rows = NULL;
	}
	return er;
}

/* Drops b's fresh key after a failed rebuild: writers stop feeding it. */
static void
board_drop(struct keel_redis *r, const struct keel_board *b)
{
	const char	*av[2];
	char		 key[KEEL_BOARD_KEY_MAX];

	keel_board_key(key, sizeof(key), b, true);
	av[0] = "DEL";
	av[1] = key;
	(void)keel_redis_cmd(r, 2, av, NULL, NULL);
}

enum keel_err
keel_board_rebuild(struct keel_db *db, struct keel_redis *r,
    const struct keel_board *b, const char *run, int ttl, long *entries)
{
	struct keel_rows	*rows = NULL;
	int64_t			*users;
	double			*vals;
	char			 key[KEEL_BOARD_KEY_MAX];
	size_t			 i, n, m = 0;
	enum keel_err		 er;
	bool			 ok;

	*entries = -1;
	if ((er = keel_board_begin(r, b, run, ttl, &ok)) != KEEL_OK || !ok)
		return er;
	if ((er = board_compute_all(db, b, &rows)) != KEEL_OK) {
		board_drop(r, b);
		return er;
	}
	keel_board_key(key, sizeof(key), b, false);
	n = keel_rows_count(rows);
	users = keel_calloc(n + 1, sizeof(*users));
	vals = keel_calloc(n + 1, sizeof(*vals));
	for (i = 0; i < n; i++) {
		users[m] = keel_rows_int64(rows, i, 0);
		if (keel_board_encode(keel_rows_int64(rows, i, 1),
		    keel_rows_int64(rows, i, 2), &vals[m]))
			m++;
		else
			keel_log_warnx("%s: user %lld's score %s is past the "
			    "board's range", key, (long long)users[m],
			    keel_rows_value(rows, i, 1));
	}
	keel_rows_free(rows);
	for (i = 0; i < m && er == KEEL_OK; i += KEEL_BOARD_BATCH)
		er = keel_board_fill(r, b, users + i, vals + i,
		    m - i < KEEL_BOARD_BATCH ? m - i : KEEL_BOARD_BATCH);
	free(users);
	free(vals);
	if (er == KEEL_OK && (er = keel_board_swap(r, b, run, &ok)) ==
	    KEEL_OK && !ok)
		return KEEL_ECONFLICT;	/* the fresh key is another's now */
	if (er != KEEL_OK) {
		board_drop(r, b);
		return er;
	}
	*entries = (long)m;
	return KEEL_OK;
}

/* An integer element of a script's array answer. */
static int64_t
elem_int(const struct keel_rreply *e)
{
	int64_t	 v = 0;

	if (e->type == KEEL_R_INT)
		return e->integer;
	if (e->type == KEEL_R_STR)
		v = strtoll(e->str, NULL, 10);
	return v;
}

/* A page or rank answer: nil (missing board), an error, or an array. */
static enum keel_err
board_array(struct keel_rscript *s, enum keel_err er,
    const struct keel_rreply *rep)
{
	if (er != KEEL_OK)
		return er;
	if (rep->type == KEEL_R_NIL)
		return KEEL_ENOENT;
	if (rep->type != KEEL_R_ARRAY) {
		keel_log_error("redis: %s: %s", s->name, rep->type ==
		    KEEL_R_ERROR ? rep->str : "unexpected reply");
		return KEEL_EINTERNAL;
	}
	return KEEL_OK;
}

enum keel_err
keel_board_page(struct keel_redis *r, const struct keel_board *b,
    int64_t offset, int64_t limit, struct keel_board_entry *out, size_t *n,
    int64_t *total)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[2];
	char			 o[24], l[24];
	size_t			 i, m;
	enum keel_err		 er;

	snprintf(o, sizeof(o), "%" PRId64, offset);
	snprintf(l, sizeof(l), "%" PRId64, limit);
	av[0] = o;
	av[1] = l;
	er = board_eval(r, &script_page, b, 1, false, 2, av, &rep);
	if ((er = board_array(&script_page, er, rep)) != KEEL_OK)
		goto out;
	m = (rep->nelem - 1) / 3;
	if (rep->nelem < 1 || m > (size_t)limit) {
		er = KEEL_EINTERNAL;
		goto out;
	}
	*total = elem_int(&rep->elem[0]);
	for (i = 0; i < m; i++) {
		out[i].user = elem_int(&rep->elem[1 + 3 * i]);
		out[i].score = elem_int(&rep->elem[2 + 3 * i]);
		out[i].rank = elem_int(&rep->elem[3 + 3 * i]);
	}
	*n = m;
out:
	keel_rreply_free(rep);
	return er;
}

enum keel_err
keel_board_rank(struct keel_redis *r, const struct keel_board *b,
    int64_t user, struct keel_board_entry *e, bool *found)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[1];
	char			 mem[24];
	enum keel_err		 er;

	snprintf(mem, sizeof(mem), "%" PRId64, user);
	av[0] = mem;
	er = board_eval(r, &script_rank, b, 1, false, 1, av, &rep);
	if ((er = board_array(&script_rank, er, rep)) != KEEL_OK)
		goto out;
	*found = rep->nelem == 2;
	if (*found) {
		e->user = user;
		e->score = elem_int(&rep->elem[0]);
		e->rank = elem_int(&rep->elem[1]);
	}
out:
	keel_rreply_free(rep);
	return er;
}
