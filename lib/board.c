/* SPDX-License-Identifier: ISC */
/*
 * board.c -- leaderboards (DESIGN.md, "Leaderboards"): the encoding of
 * a score and its time into one exact double, periods, board keys, the
 * statements that recompute entries (one user's, every board's of a
 * rebuild), and the board scripts (lib/lua/board_*.lua).
 *
 * Writers never add to an entry: the drainer (one user) and the rebuild
 * (every board at once) recompute entries from test_attempts by the
 * same expression (one max() per test and user; tests/e2e checks the
 * two agree to the encoded value), so a job run twice counts its attempt
 * once.  Redis only ever raises a value (ZADD GT); a rebuild fills a
 * fresh key, into which the drainer also writes while it exists, and
 * renames it over the board, so a reader sees the old board or the new
 * one and a concurrent update lands in whichever wins.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/board.h"
#include "keel/cache.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/text.h"
#include "lua_scripts.h"

#define BAND	4294967296.0		/* 2^KEEL_BOARD_TIME_BITS */

/* Milliseconds, monotonic: a rebuild's phases are timed. */
static double
monotonic_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
}

static struct keel_rscript script_add = {
	.name = "board_add", .lua = keel_lua_board_add };
static struct keel_rscript script_begin = {
	.name = "board_begin", .lua = keel_lua_board_begin };
static struct keel_rscript script_fill = {
	.name = "board_fill", .lua = keel_lua_board_fill };
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
keel_board_key(char *buf, size_t n, const struct keel_board *b, bool fresh,
    const struct keel_redis *r)
{
	if (b->test > 0)
		snprintf(buf, n, "keel:lb:%st%" PRId64 ":%s:%s%s%s",
		    KEEL_RTAG_L(r), b->test, keel_board_periods[b->period],
		    b->start, KEEL_RTAG_R(r), fresh ? ":new" : "");
	else
		snprintf(buf, n, "keel:lb:%sg:%s:%s%s%s", KEEL_RTAG_L(r),
		    keel_board_periods[b->period], b->start, KEEL_RTAG_R(r),
		    fresh ? ":new" : "");
}

void
keel_board_ns(char *buf, size_t n, int64_t test)
{
	if (test > 0)
		snprintf(buf, n, "leaderboard:t%" PRId64, test);
	else
		snprintf(buf, n, "leaderboard:global");
}

/* The scopes (0: global) of a user's entries, any period's: $1 the user.
 * On the primary, so a change the caller just committed is seen. */
static const struct keel_query q_user_scopes = {
	.name = "board_user_scopes",
	.sql = "SELECT DISTINCT COALESCE(test_id, 0) FROM leaderboard_entries "
	"WHERE user_id = $1", .target = KEEL_DB_PRIMARY };

enum keel_err
keel_board_invalidate_user(struct keel_db *db, struct keel_cache *c,
    int64_t user)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;
	size_t			 i;
	char			 ns[KEEL_BOARD_NS_MAX];

	keel_db_params_init(&p);
	keel_db_param_int(&p, user);
	if ((er = keel_db_query(db, &q_user_scopes, &p, &rows)) != KEEL_OK)
		return er;
	/* One bump per scope; a failed one (logged by cache.c) leaves that
	 * scope's pages to their TTL, so the rest are still worth doing. */
	for (i = 0; i < keel_rows_count(rows); i++) {
		keel_board_ns(ns, sizeof(ns), keel_rows_int64(rows, i, 0));
		if (keel_cache_invalidate(c, ns) != KEEL_OK)
			er = KEEL_EUNAVAIL;
	}
	keel_rows_free(rows);
	return er;
}

/*
 * The durable copy's upsert, the recompute's and the rebuild's alike:
 * an entry is never overwritten by one from fewer attempts, and an
 * unchanged one is not touched.
 */
#define BOARD_UPSERT \
	"ON CONFLICT ((COALESCE(test_id, 0)), period, period_start, user_id) " \
	"DO UPDATE SET score = EXCLUDED.score, attempts = EXCLUDED.attempts, " \
	"reached_at = EXCLUDED.reached_at, updated_at = now() " \
	"WHERE EXCLUDED.attempts >= e.attempts AND " \
	"(e.score, e.attempts, e.reached_at) IS DISTINCT FROM " \
	"(EXCLUDED.score, EXCLUDED.attempts, EXCLUDED.reached_at) "

/* Runs script over b's key (and its fresh key when two) with argv. */
static enum keel_err
board_eval(struct keel_redis *r, struct keel_rscript *s,
    const struct keel_board *b, int nkeys, bool fresh_first, int argc,
    const char **argv, struct keel_rreply **rep)
{
	char		 k1[KEEL_BOARD_KEY_MAX], k2[KEEL_BOARD_KEY_MAX];
	const char	*av[8];
	int		 i;

	keel_board_key(k1, sizeof(k1), b, fresh_first, r);
	keel_board_key(k2, sizeof(k2), b, !fresh_first, r);
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
	char			 t[16], key[KEEL_BOARD_KEY_MAX];
	long long		 n = 0;
	enum keel_err		 er;

	snprintf(t, sizeof(t), "%d", ttl);
	av[0] = run;
	av[1] = t;
	er = board_eval(r, &script_begin, b, 1, true, 2, av, &rep);
	if ((er = board_int(&script_begin, er, rep, &n)) != KEEL_OK)
		return er;
	*began = n >= 1;
	if (n == 2) {
		keel_board_key(key, sizeof(key), b, true, r);
		keel_log_warnx("%s: took over a fresh key no run owned (no "
		    "TTL or no sentinel: Redis lost it during a rebuild)", key);
	}
	return KEEL_OK;
}

enum keel_err
keel_board_fill(struct keel_redis *r, const struct keel_board *b,
    const char *run, const int64_t *users, const double *vals, size_t n)
{
	const char		**av;
	char			*num, key[KEEL_BOARD_KEY_MAX];
	size_t			 i;
	enum keel_err		 er;

	if (n == 0)
		return KEEL_OK;
	/* EVAL with the text, as the swap: a pipelined EVALSHA would find
	 * no script in a Redis restarted mid-run, and Redis compiles the
	 * text once (it keeps EVAL's scripts by their SHA). */
	av = keel_calloc(5 + 2 * n, sizeof(*av));
	num = keel_malloc(n * 2 * 24);
	keel_board_key(key, sizeof(key), b, true, r);
	av[0] = "EVAL";
	av[1] = script_fill.lua;
	av[2] = "1";
	av[3] = key;
	av[4] = run;
	for (i = 0; i < n; i++) {
		av[5 + 2 * i] = num + 48 * i;
		av[6 + 2 * i] = num + 48 * i + 24;
		keel_text_int(num + 48 * i, (int64_t)vals[i]);
		keel_text_int(num + 48 * i + 24, users[i]);
	}
	er = keel_redis_send(r, (int)(5 + 2 * n), av, NULL);
	free(num);
	free(av);
	return er;
}

/* b's expiry: a period's board outlives it by a day, for late readers. */
static void
board_expiry(const struct keel_board *b, char at[KEEL_TEXT_INT_MAX])
{
	keel_text_int(at, b->end > 0 ? b->end + 86400 : 0);
}

enum keel_err
keel_board_swap(struct keel_redis *r, const struct keel_board *b,
    const char *run, bool *swapped)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[3];
	char			 at[KEEL_TEXT_INT_MAX];
	long long		 n = 0;
	enum keel_err		 er;

	board_expiry(b, at);
	av[0] = run;
	av[1] = at;
	av[2] = "0";
	er = board_eval(r, &script_swap, b, 2, true, 3, av, &rep);
	if ((er = board_int(&script_swap, er, rep, &n)) == KEEL_OK)
		*swapped = n == 1;
	return er;
}

/*
 * Sends b's swap (board_swap.lua by EVAL, its reply read later: it runs
 * after the adds sent before it), refused when the fresh key holds fewer
 * than least members.
 */
static enum keel_err
board_swap_send(struct keel_redis *r, const struct keel_board *b,
    const char *run, long least)
{
	const char	*av[8];
	char		 k1[KEEL_BOARD_KEY_MAX], k2[KEEL_BOARD_KEY_MAX];
	char		 at[KEEL_TEXT_INT_MAX], n[KEEL_TEXT_INT_MAX];

	keel_board_key(k1, sizeof(k1), b, true, r);
	keel_board_key(k2, sizeof(k2), b, false, r);
	board_expiry(b, at);
	keel_text_int(n, least);
	av[0] = "EVAL";
	av[1] = script_swap.lua;
	av[2] = "2";
	av[3] = k1;
	av[4] = k2;
	av[5] = run;
	av[6] = at;
	av[7] = n;
	return keel_redis_send(r, 8, av, NULL);
}

/*
 * The rebuild's transaction.  Whole boards aggregate every attempt of
 * their periods (a million for the benchmark's all-time boards): at the
 * default 4 MB the hash aggregates spill and PostgreSQL's row estimates
 * for the steps after them are far off (over a minute where it takes
 * seconds with room), so work_mem is raised for the transaction only;
 * and those estimates (millions of rows) make PostgreSQL compile the
 * statements (JIT), a second or more spent before the first row of a
 * statement that runs once, so JIT is off for it.
 */
#define BOARD_WORK_MEM	"256MB"
static const struct keel_query q_settings = { .name = "board_settings",
	.sql = "SELECT set_config('work_mem', $1, true), "
	"set_config('jit', 'off', true)", .target = KEEL_DB_PRIMARY };

/*
 * An entry's 64-bit hash: the durable copy's and the computed entries'
 * alike, of user, score, attempts and reached (us is its microseconds
 * since 1970, exact: a bigint).  A board's count and XOR of its
 * entries' hashes tell whether the durable copy holds exactly the
 * computed entries (a changed board passing for unchanged needs a 2^-64
 * coincidence).  Integer hashes chained: hash_record_extended() of a
 * ROW() costs a second more over the benchmark's 1.4M entries.
 */
#define BOARD_H(u, s, a, us) "hashint8extended(" u ", hashint8extended(" \
	s ", hashint8extended(" a ", " us ")))"

/*
 * Each board's durable entries, counted and hashed ($1..$3: each
 * board's test (0: global), period and first day, as arrays; board i
 * is the i-th, from 1): (i, count, hash), the boards with none left out.
 */
static const struct keel_query q_run_durable = { .name = "board_run_durable",
	.sql = "WITH b AS (SELECT * FROM unnest($1::bigint[], $2::text[], "
	"$3::date[]) WITH ORDINALITY AS b(test_id, period, start, i)) "
	"SELECT b.i, count(*), bit_xor(" BOARD_H("e.user_id", "e.score",
	"e.attempts", "(extract(epoch FROM e.reached_at) * 1000000)::bigint")
	") FROM b JOIN leaderboard_entries e "
	"ON COALESCE(e.test_id, 0) = b.test_id AND e.period = b.period AND "
	"e.period_start = b.start GROUP BY b.i", .target = KEEL_DB_PRIMARY };

/*
 * Every board of the run at once, board by board ($1..$4: as
 * q_run_durable's, and each board's end (NULL: all time)): board, user,
 * score, attempts, reached (Unix s), the entry's hash.  Each (period,
 * test, user)'s best and the second it was first reached, as
 * keel_board_compute_user finds them (one max() of score * 2^40 + 2^40 - 1
 * - the second): all time by one sequential pass over the attempts when
 * a global board needs them all, else by the test_id index for the
 * boards' tests (the drainer building a new test's board), a week or a
 * month by the submitted_at index.  A test's board takes its rows, a
 * global board sums them per user.  Read by a cursor, as the feeding
 * goes: nothing is stored in PostgreSQL on the way.  A drainer that
 * stored more attempts meanwhile wrote a higher value into the fresh key
 * too (begun before this statement's snapshot), and ZADD GT keeps it.
 */
#define BOARD_K	"max(a.score::bigint * 1099511627776 + 1099511627775 - " \
	"floor(extract(epoch FROM a.submitted_at))::bigint) AS k, " \
	"count(*)::integer AS n"
/*
 * When a board's sum of bests (each k of BOARD_K: a test's best and the
 * second it was first reached) was reached: when it last rose, the
 * latest of the bests above 0; with none above 0, the first 0.  A best
 * of 0 adds nothing, so a 0 on another test must not make the sum's time
 * later: the encoded value would fall, and Redis, which only raises
 * (ZADD GT), would keep the old one while the durable copy and a rebuild
 * took the new -- the two would order a tie differently.  A test's
 * board has one k: its best's time either way.
 */
#define BOARD_REACHED(k) "COALESCE(max(1099511627775 - (" k \
	" & 1099511627775)) FILTER (WHERE " k " >> 40 > 0), " \
	"min(1099511627775 - (" k " & 1099511627775)))"
static const struct keel_query q_run_open = { .name = "board_run_open",
	.sql = "DECLARE lb_cur NO SCROLL CURSOR FOR WITH b AS (SELECT * FROM "
	"unnest($1::bigint[], $2::text[], $3::date[], $4::bigint[]) WITH "
	"ORDINALITY AS b(test_id, period, start, fin, i)), "
	"p AS (SELECT period, start, fin, bool_or(test_id = 0) AS g, "
	"array_agg(test_id) AS tests FROM b GROUP BY period, start, fin), "
	"bt AS (SELECT 'all' AS period, a.test_id, a.user_id, " BOARD_K
	" FROM test_attempts a WHERE a.submitted_at IS NOT NULL AND "
	"NOT a.late AND "
	"(SELECT g FROM p WHERE p.period = 'all') "
	"GROUP BY a.test_id, a.user_id "
	"UNION ALL SELECT 'all', a.test_id, a.user_id, " BOARD_K
	" FROM test_attempts a WHERE a.submitted_at IS NOT NULL AND "
	"NOT a.late AND "
	"NOT COALESCE((SELECT g FROM p WHERE p.period = 'all'), true) AND "
	"a.test_id = ANY ((SELECT tests FROM p WHERE p.period = 'all')"
	"::bigint[]) GROUP BY a.test_id, a.user_id "
	"UNION ALL SELECT p.period, a.test_id, a.user_id, " BOARD_K
	" FROM p JOIN test_attempts a ON "
	"a.submitted_at >= p.start::timestamp AT TIME ZONE 'UTC' AND "
	"a.submitted_at < to_timestamp(p.fin) AND NOT a.late AND "
	"(p.g OR a.test_id = ANY (p.tests)) WHERE p.period <> 'all' "
	"GROUP BY p.period, a.test_id, a.user_id), "
	"e AS (SELECT b.i, bt.user_id, bt.k >> 40 AS score, bt.n AS attempts, "
	"1099511627775 - (bt.k & 1099511627775) AS t FROM bt JOIN b ON "
	"b.test_id = bt.test_id AND b.period = bt.period "
	"UNION ALL SELECT b.i, g.user_id, g.score, g.attempts, g.t FROM "
	"(SELECT bt.period, bt.user_id, sum((bt.k >> 40)::integer) AS score, "
	"sum(bt.n)::integer AS attempts, "
	BOARD_REACHED("bt.k") " AS t FROM bt WHERE "
	"bt.period IN (SELECT period FROM p WHERE g) "
	"GROUP BY bt.period, bt.user_id) g JOIN b ON b.test_id = 0 AND "
	"b.period = g.period) "
	"SELECT i, user_id, score, attempts, t, " BOARD_H("user_id", "score",
	"attempts", "t * 1000000") " FROM e ORDER BY i",
	.target = KEEL_DB_PRIMARY };
#define BOARD_FETCH	"50000"
static const struct keel_query q_run_fetch = { .name = "board_run_fetch",
	.sql = "FETCH FORWARD " BOARD_FETCH " FROM lb_cur",
	.target = KEEL_DB_PRIMARY };

/*
 * One board's durable copy, written where it differs, as
 * keel_board_compute_user writes it (never over an entry from more
 * attempts; an unchanged entry not even locked), in the unique index's
 * order: $1 test (0: global), $2 period, $3 first day, $4..$7 the
 * entries' users, scores, attempts and reached (Unix s), as arrays.
 * Returns the rows written.
 */
static const struct keel_query q_run_write = { .name = "board_run_write",
	.sql = "WITH l AS (SELECT * FROM unnest($4::bigint[], $5::bigint[], "
	"$6::integer[], $7::bigint[]) AS l(user_id, score, attempts, t)), "
	"up AS (INSERT INTO leaderboard_entries AS e (test_id, "
	"period, period_start, user_id, score, attempts, reached_at) "
	"SELECT NULLIF($1::bigint, 0), $2::text, $3::date, l.user_id, "
	"l.score, l.attempts, to_timestamp(l.t) FROM l "
	"LEFT JOIN leaderboard_entries x ON COALESCE(x.test_id, 0) = "
	"$1::bigint AND x.period = $2::text AND x.period_start = $3::date AND "
	"x.user_id = l.user_id WHERE x.user_id IS NULL OR "
	"(l.attempts >= x.attempts AND (x.score, x.attempts, x.reached_at) "
	"IS DISTINCT FROM (l.score, l.attempts, to_timestamp(l.t))) "
	"ORDER BY l.user_id "
	BOARD_UPSERT
	"RETURNING 1) SELECT count(*) FROM up", .target = KEEL_DB_PRIMARY };

/* The boards' four arrays, as q_run_open takes them, into a[0..3]. */
static void
board_arrays(const struct keel_board *b, size_t n, struct keel_buf a[4])
{
	size_t	 i;

	for (i = 0; i < 4; i++)
		keel_buf_putc(&a[i], '{');
	for (i = 0; i < n; i++) {
		keel_buf_printf(&a[0], "%s%" PRId64, i > 0 ? "," : "",
		    b[i].test);
		keel_buf_printf(&a[1], "%s%s", i > 0 ? "," : "",
		    keel_board_periods[b[i].period]);
		keel_buf_printf(&a[2], "%s%s", i > 0 ? "," : "", b[i].start);
		if (b[i].end > 0)
			keel_buf_printf(&a[3], "%s%" PRId64, i > 0 ? "," : "",
			    b[i].end);
		else
			keel_buf_printf(&a[3], "%sNULL", i > 0 ? "," : "");
	}
	for (i = 0; i < 4; i++)
		keel_buf_putc(&a[i], '}');
}

/*
 * One user's entries on a set of boards ($1..$4: as q_run_open's, $5
 * the user): the user's attempts of each board's scope and period, each
 * test's best and the second it was first reached (one max() of score *
 * 2^40 + (2^40 - 1 - the second), a bigint, so a plain hash aggregate
 * finds both), summed per board (a test's board: its one test), upserted
 * in the boards' order (only over an entry from fewer attempts, and only
 * when it changes: an unchanged entry is not even locked), then each
 * board's entry as it now stands: (board, score, reached Unix s), the
 * boards where the user has none left out.  One statement for all the
 * boards of a job: one plan, one transaction.
 */
static const struct keel_query q_user = { .name = "board_user",
	.sql = "WITH b AS (SELECT * FROM unnest($1::bigint[], $2::text[], "
	"$3::date[], $4::bigint[]) WITH ORDINALITY AS b(test_id, period, "
	"start, fin, i)), "
	"bt AS (SELECT b.i, " BOARD_K " FROM b JOIN test_attempts a ON "
	"a.user_id = $5::bigint AND a.submitted_at IS NOT NULL AND "
	"NOT a.late AND "
	"(b.test_id = 0 OR a.test_id = b.test_id) AND "
	"a.submitted_at >= b.start::timestamp AT TIME ZONE 'UTC' AND "
	"(b.fin IS NULL OR a.submitted_at < to_timestamp(b.fin)) "
	"GROUP BY b.i, a.test_id), "
	"c AS (SELECT i, sum(k >> 40)::bigint AS score, "
	"sum(n)::integer AS attempts, to_timestamp(" BOARD_REACHED("k")
	") AS reached FROM bt GROUP BY i), "
	"j AS (SELECT c.*, b.test_id, b.period, b.start, "
	"e.user_id IS NOT NULL AS known, e.score AS escore, "
	"e.attempts AS eattempts, e.reached_at AS ereached FROM c "
	"JOIN b ON b.i = c.i LEFT JOIN leaderboard_entries e ON "
	"e.user_id = $5::bigint AND COALESCE(e.test_id, 0) = b.test_id AND "
	"e.period = b.period AND e.period_start = b.start), "
	"up AS (INSERT INTO leaderboard_entries AS e (test_id, period, "
	"period_start, user_id, score, attempts, reached_at) "
	"SELECT NULLIF(test_id, 0), period, start, $5::bigint, score, "
	"attempts, reached FROM j WHERE NOT known OR (attempts >= eattempts "
	"AND (escore, eattempts, ereached) IS DISTINCT FROM "
	"(score, attempts, reached)) ORDER BY i "
	BOARD_UPSERT
	"RETURNING COALESCE(test_id, 0) AS test_id, period, period_start, "
	"score, reached_at) "
	"SELECT j.i, COALESCE(up.score, j.escore), "
	"floor(extract(epoch FROM COALESCE(up.reached_at, j.ereached)))"
	"::bigint FROM j LEFT JOIN up ON up.test_id = j.test_id AND "
	"up.period = j.period AND up.period_start = j.start "
	"WHERE up.test_id IS NOT NULL OR j.known",
	.target = KEEL_DB_PRIMARY };

enum keel_err
keel_board_compute_user(struct keel_db *db, const struct keel_board *b,
    size_t n, int64_t user, double *vals, bool *has)
{
	struct keel_db_params	 p;
	struct keel_buf		 a[4];
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;
	size_t			 i, k;

	for (i = 0; i < n; i++)
		has[i] = false;
	memset(a, 0, sizeof(a));
	board_arrays(b, n, a);
	keel_db_params_init(&p);
	for (i = 0; i < 4; i++)
		keel_db_param_text(&p, a[i].data);
	keel_db_param_int(&p, user);
	er = keel_db_query(db, &q_user, &p, &rows);
	for (i = 0; i < 4; i++)
		keel_buf_free(&a[i]);
	if (er != KEEL_OK)
		return er;
	for (i = 0; i < keel_rows_count(rows) && er == KEEL_OK; i++) {
		k = (size_t)keel_rows_int64(rows, i, 0);
		if (k < 1 || k > n)
			er = KEEL_EINTERNAL;
		else if (keel_board_encode(keel_rows_int64(rows, i, 1),
		    keel_rows_int64(rows, i, 2), &vals[k - 1]))
			has[k - 1] = true;
		else
			keel_log_warnx("board %" PRId64 " %s %s: user %" PRId64
			    "'s score %s is past the board's range",
			    b[k - 1].test, keel_board_periods[b[k - 1].period],
			    b[k - 1].start, user, keel_rows_value(rows, i, 1));
	}
	keel_rows_free(rows);
	return er;
}

/* A board's durable entries: their count and hash (q_run_durable). */
struct durable {
	int64_t		 n;
	int64_t		 h;
};

/*
 * The PostgreSQL half's start: the transaction begun, each board's
 * durable count and hash into d[0..n-1], the cursor open.
 */
static enum keel_err
board_compute(struct keel_db *db, const struct keel_board *b, size_t n,
    struct durable *d)
{
	struct keel_db_params	 p;
	struct keel_buf		 a[4];
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;
	size_t			 i, k;

	memset(a, 0, sizeof(a));
	if ((er = keel_db_begin(db)) != KEEL_OK)
		return er;
	keel_db_params_init(&p);
	keel_db_param_text(&p, BOARD_WORK_MEM);
	if ((er = keel_db_query(db, &q_settings, &p, NULL)) != KEEL_OK)
		goto fail;
	board_arrays(b, n, a);
	keel_db_params_init(&p);
	for (i = 0; i < 3; i++)
		keel_db_param_text(&p, a[i].data);
	if ((er = keel_db_query(db, &q_run_durable, &p, &rows)) != KEEL_OK)
		goto fail;
	for (i = 0; i < keel_rows_count(rows); i++) {
		k = (size_t)keel_rows_int64(rows, i, 0);
		if (k < 1 || k > n) {
			er = KEEL_EINTERNAL;
			goto fail;
		}
		d[k - 1].n = keel_rows_int64(rows, i, 1);
		d[k - 1].h = keel_rows_int64(rows, i, 2);
	}
	keel_rows_free(rows);
	rows = NULL;
	keel_db_param_text(&p, a[3].data);
	if ((er = keel_db_query(db, &q_run_open, &p, NULL)) != KEEL_OK)
		goto fail;
	for (i = 0; i < 4; i++)
		keel_buf_free(&a[i]);
	return KEEL_OK;
fail:
	keel_rows_free(rows);
	keel_db_rollback(db);
	for (i = 0; i < 4; i++)
		keel_buf_free(&a[i]);
	return er;
}

/* A command sent while feeding: board k's add, or its swap. */
struct sent {
	size_t	 k;
	bool	 swap;
};

/* One computed entry of the board being fed, kept for the durable copy. */
struct entry {
	int64_t	 user, score, attempts, t;
};

/*
 * The boards being fed, in order: the members of the current one not
 * yet sent, its entries so far (their count and hash, and the entries
 * themselves, written if the durable copy differs), the commands whose
 * replies are unread, and how each board went.
 */
struct feed {
	struct keel_db			*db;
	struct keel_redis		*r;
	const struct keel_board		*b;	/* the boards */
	const struct durable		*d;	/* their durable copies */
	const char			*run;
	struct keel_board_result	*res;	/* the set's */
	int64_t				 users[KEEL_BOARD_BATCH];
	double				 vals[KEEL_BOARD_BATCH];
	size_t				 n;
	struct entry			*e;	/* the board's entries */
	size_t				 ne, ecap;
	int64_t				 h;	/* their hashes' XOR */
	struct sent			*q;	/* a ring of qcap */
	size_t				 qhead, qlen;
	enum keel_err			 lost;	/* the connection broke */
	enum keel_err			 pg;	/* a write failed */
	long				 written;
	double				 write_ms;
};

/* Unread replies allowed before the oldest are read: Redis keeps busy,
 * and at most a few fresh boards exist at once. */
#define FEED_AHEAD	64

/* Reads the oldest reply: a failed add fails its board, a swap says. */
static void
feed_recv(struct feed *f)
{
	struct keel_rreply	*rep;
	struct sent		 s = f->q[f->qhead];
	struct keel_board_result *res = &f->res[s.k];
	enum keel_err		 er;

	f->qhead = (f->qhead + 1) % FEED_AHEAD;
	f->qlen--;
	if (f->lost != KEEL_OK)
		return;
	if ((er = keel_redis_recv(f->r, &rep)) != KEEL_OK) {
		f->lost = er;
		return;
	}
	if (rep->type == KEEL_R_ERROR) {
		keel_log_error("redis: board %zu: %s", s.k + 1, rep->str);
		if (res->err == KEEL_OK)
			res->err = KEEL_EINTERNAL;
	} else if (s.swap && rep->type == KEEL_R_INT) {
		res->swapped = rep->integer == 1;
		if (res->err == KEEL_OK && rep->integer == 0)
			res->err = KEEL_ECONFLICT;	/* another's now */
		else if (res->err == KEEL_OK && rep->integer != 1)
			res->err = KEEL_EINTERNAL;	/* short: refused */
	}
	keel_rreply_free(rep);
}

/* Notes a command sent for board k, reading the oldest past the bound. */
static void
feed_sent(struct feed *f, size_t k, bool swap, enum keel_err er)
{
	if (er != KEEL_OK) {
		f->lost = er;
		return;
	}
	if (f->qlen == FEED_AHEAD)
		feed_recv(f);
	f->q[(f->qhead + f->qlen) % FEED_AHEAD] = (struct sent){ .k = k,
	    .swap = swap };
	f->qlen++;
}

/* Sends what board k holds: one board_fill.lua, its reply read later. */
static void
feed_send(struct feed *f, size_t k)
{
	if (f->n > 0 && f->lost == KEEL_OK)
		feed_sent(f, k, false, keel_board_fill(f->r, &f->b[k],
		    f->run, f->users, f->vals, f->n));
	f->res[k].entries += (long)f->n;
	f->n = 0;
}

/* Keeps entry e of the board being fed (for its durable copy). */
static void
feed_keep(struct feed *f, const struct entry *e, int64_t h)
{
	if (f->ne == f->ecap) {
		f->ecap = f->ecap > 0 ? f->ecap * 2 : 4096;
		f->e = keel_realloc(f->e, f->ecap * sizeof(*f->e));
	}
	f->e[f->ne++] = *e;
	f->h ^= h;
}

/* Board k's entries into its durable copy where they differ. */
static enum keel_err
feed_write(struct feed *f, size_t k)
{
	struct keel_db_params	 p;
	struct keel_buf		 a[4];
	struct keel_rows	*rows = NULL;
	char			 num[KEEL_TEXT_INT_MAX];
	enum keel_err		 er;
	size_t			 i, c;
	double			 t0 = monotonic_ms();

	memset(a, 0, sizeof(a));
	for (c = 0; c < 4; c++)
		keel_buf_putc(&a[c], '{');
	for (i = 0; i < f->ne; i++) {
		for (c = 0; c < 4; c++) {
			if (i > 0)
				keel_buf_putc(&a[c], ',');
			keel_buf_append(&a[c], num, keel_text_int(num,
			    c == 0 ? f->e[i].user : c == 1 ? f->e[i].score :
			    c == 2 ? f->e[i].attempts : f->e[i].t));
		}
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, f->b[k].test);
	keel_db_param_text(&p, keel_board_periods[f->b[k].period]);
	keel_db_param_text(&p, f->b[k].start);
	for (c = 0; c < 4; c++) {
		keel_buf_putc(&a[c], '}');
		keel_db_param_text(&p, a[c].data);
	}
	if ((er = keel_db_query(f->db, &q_run_write, &p, &rows)) == KEEL_OK &&
	    keel_rows_count(rows) == 1)
		f->written += (long)keel_rows_int64(rows, 0, 0);
	keel_rows_free(rows);
	for (c = 0; c < 4; c++)
		keel_buf_free(&a[c]);
	f->write_ms += monotonic_ms() - t0;
	return er;
}

/*
 * Board k is whole: its last members sent, its durable copy written if
 * it differs (the board is swapped in only once that is done), then its
 * swap sent.
 */
static void
feed_finish(struct feed *f, size_t k)
{
	feed_send(f, k);
	if (f->pg == KEEL_OK && f->ne > 0 && ((int64_t)f->ne != f->d[k].n ||
	    f->h != f->d[k].h))
		f->pg = feed_write(f, k);
	f->ne = 0;
	f->h = 0;
	if (f->lost == KEEL_OK && f->pg == KEEL_OK)
		feed_sent(f, k, true, board_swap_send(f->r, &f->b[k], f->run,
		    f->res[k].entries + 1));
}

/*
 * Row i's first n columns, integers, into v: false for another value
 * (keel_parse_int64, not strtoll: a rebuild reads millions).
 */
static bool
row_ints(const struct keel_rows *rows, size_t i, int64_t *v, size_t n)
{
	const char	*s;
	size_t		 c;

	for (c = 0; c < n; c++)
		if ((s = keel_rows_value(rows, i, c)) == NULL ||
		    !keel_parse_int64(s, INT64_MIN, INT64_MAX, &v[c]))
			return false;
	return true;
}

/*
 * The cursor's rows into their boards' fresh keys, board by board,
 * each one's swap sent after its last member (Redis runs them in
 * order); *first_ms the time until the first rows came (PostgreSQL
 * computing them), *redis_ms the time spent on Redis and encoding.
 */
static enum keel_err
board_feed(struct keel_db *db, struct feed *f, struct keel_board_set *set,
    double *first_ms, double *redis_ms)
{
	struct keel_rows	*rows;
	struct entry		 e;
	enum keel_err		 er;
	int64_t			 c[6];	/* board, user, score, attempts,
					   reached, hash */
	size_t			 i, nr, cur = 0, at;
	double			 v, t0 = monotonic_ms();
	bool			 first = true;

	*redis_ms = 0;
	do {
		rows = NULL;
		if ((er = keel_db_query(db, &q_run_fetch, NULL, &rows)) !=
		    KEEL_OK)
			return er;
		if (first)
			*first_ms = monotonic_ms() - t0;
		first = false;
		nr = keel_rows_count(rows);
		t0 = monotonic_ms();
		for (i = 0; i < nr; i++) {
			if (!row_ints(rows, i, c, 6) || c[0] < (int64_t)cur +
			    1 || c[0] > (int64_t)set->n) {
				keel_rows_free(rows);
				return KEEL_EINTERNAL;
			}
			at = (size_t)c[0];
			for (; cur + 1 < at && f->pg == KEEL_OK; cur++)
				feed_finish(f, cur);
			if (f->pg != KEEL_OK)
				break;
			e = (struct entry){ .user = c[1], .score = c[2],
			    .attempts = c[3], .t = c[4] };
			feed_keep(f, &e, c[5]);
			if (!keel_board_encode(e.score, e.t, &v)) {
				keel_log_warnx("board %zu: user %s's score %s "
				    "is past the board's range", at,
				    keel_rows_value(rows, i, 1),
				    keel_rows_value(rows, i, 2));
				set->dropped++;
				continue;
			}
			f->users[f->n] = e.user;
			f->vals[f->n++] = v;
			if (f->n == KEEL_BOARD_BATCH)
				feed_send(f, cur);
		}
		keel_rows_free(rows);
		*redis_ms += monotonic_ms() - t0;
		if (f->pg != KEEL_OK)
			return f->pg;
	} while (nr > 0);
	t0 = monotonic_ms();
	for (; cur < set->n && f->pg == KEEL_OK; cur++)
		feed_finish(f, cur);
	while (f->qlen > 0)
		feed_recv(f);
	*redis_ms += monotonic_ms() - t0;
	return f->pg != KEEL_OK ? f->pg : f->lost;
}

/* True when the boards of each period are of the same one (the run's
 * statement finds a period's attempts once, for all its boards). */
static bool
boards_one_time(const struct keel_board *b, size_t n)
{
	const char	*start[KEEL_BOARD_PERIOD__MAX] = { NULL };
	size_t		 i;

	for (i = 0; i < n; i++) {
		if (start[b[i].period] != NULL &&
		    strcmp(start[b[i].period], b[i].start) != 0)
			return false;
		start[b[i].period] = b[i].start;
	}
	return true;
}

enum keel_err
keel_board_rebuild_set(struct keel_db *db, struct keel_redis *r,
    const struct keel_board *b, size_t n, const char *run,
    struct keel_board_set *set)
{
	struct feed	*f = NULL;
	struct durable	*d;
	enum keel_err	 er;
	double		 t0 = monotonic_ms(), t1, first = 0;
	size_t		 i;

	memset(set, 0, sizeof(*set));
	set->n = n;
	set->boards = keel_calloc(n + 1, sizeof(*set->boards));
	d = keel_calloc(n + 1, sizeof(*d));
	if (!boards_one_time(b, n)) {
		keel_log_error("board: a rebuild's boards of one period are "
		    "of different ones");
		er = KEEL_EINVAL;
		goto out;
	}
	if ((er = board_compute(db, b, n, d)) != KEEL_OK)
		goto out;
	t1 = monotonic_ms();
	f = keel_calloc(1, sizeof(*f));
	f->q = keel_calloc(FEED_AHEAD, sizeof(*f->q));
	f->db = db;
	f->r = r;
	f->b = b;
	f->d = d;
	f->run = run;
	f->res = set->boards;
	er = board_feed(db, f, set, &first, &set->redis_ms);
	/* Stopped early: the swaps sent still say how their boards went. */
	while (f->qlen > 0)
		feed_recv(f);
	/* The durable writes, made while feeding, are PostgreSQL's. */
	set->redis_ms -= f->write_ms;
	set->feed_ms = monotonic_ms() - t1 - first - f->write_ms;
	set->written = f->written;
	/* The boards swapped in hold what the attempts say even if this
	 * fails: the next run writes the durable copy then. */
	if (er == KEEL_OK)
		er = keel_db_commit(db);
	else
		keel_db_rollback(db);
	if (er != KEEL_OK)
		set->written = 0;
out:
	set->pg_ms = monotonic_ms() - t0 - set->feed_ms;
	if (f != NULL) {
		free(f->e);
		free(f->q);
		free(f);
	}
	free(d);
	/* A board not swapped in is dropped (ECONFLICT: not ours). */
	(void)keel_redis_wait(r);
	for (i = 0; i < n; i++) {
		if (!set->boards[i].swapped && set->boards[i].err == KEEL_OK)
			set->boards[i].err = er != KEEL_OK ? er :
			    KEEL_EINTERNAL;
		if (!set->boards[i].swapped &&
		    set->boards[i].err != KEEL_ECONFLICT)
			keel_board_drop(r, &b[i]);
	}
	return er;
}

void
keel_board_set_free(struct keel_board_set *set)
{
	free(set->boards);
	memset(set, 0, sizeof(*set));
}

void
keel_board_drop(struct keel_redis *r, const struct keel_board *b)
{
	const char	*av[2];
	char		 key[KEEL_BOARD_KEY_MAX];

	(void)keel_redis_wait(r);
	keel_board_key(key, sizeof(key), b, true, r);
	av[0] = "DEL";
	av[1] = key;
	(void)keel_redis_cmd(r, 2, av, NULL, NULL);
}

enum keel_err
keel_board_rebuild(struct keel_db *db, struct keel_redis *r,
    const struct keel_board *b, const char *run, int ttl, long *entries)
{
	struct keel_board_set	 set;
	enum keel_err		 er;
	bool			 ok;

	*entries = -1;
	if ((er = keel_board_begin(r, b, run, ttl, &ok)) != KEEL_OK || !ok)
		return er;
	if ((er = keel_board_rebuild_set(db, r, b, 1, run, &set)) ==
	    KEEL_OK && (er = set.boards[0].err) == KEEL_OK)
		*entries = set.boards[0].entries;
	keel_board_set_free(&set);
	return er;
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
