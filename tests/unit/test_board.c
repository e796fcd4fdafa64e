/* SPDX-License-Identifier: ISC */
/*
 * test_board.c -- unit tests for the leaderboard encoding's bound and
 * order, the periods and the board keys (board.c's pure parts; the
 * Redis scripts run in tests/e2e/test_leaderboard.py).
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keel/board.h"
#include "keel/cache.h"

#define T_MIN	KEEL_BOARD_EPOCH
#define T_MAX	(KEEL_BOARD_EPOCH + KEEL_BOARD_TIME_MAX)

/* Encodes (s, t) and checks the value decodes back to both. */
static double
roundtrip(int64_t s, int64_t t)
{
	double	 v = -1;
	int64_t	 s2, t2;

	assert_true(keel_board_encode(s, t, &v));
	keel_board_decode(v, &s2, &t2);
	assert_int_equal(s2, s);
	assert_int_equal(t2, t);
	return v;
}

static void
test_bound_is_2_pow_53(void **state)
{
	double	 v;

	(void)state;
	/* The largest value: max score, earliest time: exactly 2^53 - 1. */
	v = roundtrip(KEEL_BOARD_SCORE_MAX, T_MIN);
	assert_true(v == 9007199254740991.0);
	assert_true((int64_t)v == (INT64_C(1) << 53) - 1);
	/* It and its neighbour are distinct doubles: every value is exact. */
	assert_true(v - 1 != v && (v - 1) + 1 == v);
	/* Max score at the latest time, min score at both ends. */
	roundtrip(KEEL_BOARD_SCORE_MAX, T_MAX);
	assert_true(roundtrip(0, T_MAX) == 0.0);
	roundtrip(0, T_MIN);
	roundtrip(100, T_MIN);
	roundtrip(100, T_MAX);
	roundtrip(100, INT64_C(1796000000));
	/* Out of range scores are refused, the value untouched. */
	v = 7;
	assert_false(keel_board_encode(KEEL_BOARD_SCORE_MAX + 1, T_MIN, &v));
	assert_false(keel_board_encode(-1, T_MIN, &v));
	assert_true(v == 7);
}

static void
test_times_out_of_range_are_clamped(void **state)
{
	double	 a, b;

	(void)state;
	assert_true(keel_board_encode(5, T_MIN - 1000, &a));
	assert_true(keel_board_encode(5, T_MIN, &b));
	assert_true(a == b);
	assert_true(keel_board_encode(5, T_MAX + 1000, &a));
	assert_true(keel_board_encode(5, T_MAX, &b));
	assert_true(a == b);
}

static void
test_earlier_time_sorts_higher(void **state)
{
	double	 early, late, next;
	int64_t	 t;

	(void)state;
	for (t = T_MIN; t < T_MAX; t += INT64_C(86400) * 997 + 13) {
		assert_true(keel_board_encode(50, t, &early));
		assert_true(keel_board_encode(50, t + 1, &late));
		assert_true(early > late);
	}
	/* Any higher score beats any time of a lower one. */
	assert_true(keel_board_encode(50, T_MIN, &early));
	assert_true(keel_board_encode(51, T_MAX, &next));
	assert_true(next > early);
	assert_true(keel_board_encode(KEEL_BOARD_SCORE_MAX - 1, T_MIN, &early));
	assert_true(keel_board_encode(KEEL_BOARD_SCORE_MAX, T_MAX, &next));
	assert_true(next > early);
}

static void
test_band_separates_scores(void **state)
{
	double	 v;

	(void)state;
	/* Every value of score s lies in [band(s), band(s + 1)). */
	assert_true(keel_board_encode(7, T_MIN, &v));
	assert_true(v < keel_board_band(8) && v >= keel_board_band(7));
	assert_true(keel_board_encode(7, T_MAX, &v));
	assert_true(v == keel_board_band(7));
	assert_true(keel_board_band(KEEL_BOARD_SCORE_MAX + 1) ==
	    9007199254740992.0);
}

static void
test_periods(void **state)
{
	char	 d[11];
	int64_t	 end;

	(void)state;
	/* 2026-12-06 is a Sunday: its ISO week began Monday 11-30. */
	keel_board_period(KEEL_BOARD_WEEK, INT64_C(1796558400), d, &end);
	assert_string_equal(d, "2026-11-30");
	assert_int_equal(end, INT64_C(1796601600));	/* 2026-12-07 */
	keel_board_period(KEEL_BOARD_MONTH, INT64_C(1796558400), d, &end);
	assert_string_equal(d, "2026-12-01");
	assert_int_equal(end, INT64_C(1798761600));	/* 2027-01-01 */
	/* A Monday at midnight starts its own week. */
	keel_board_period(KEEL_BOARD_WEEK, INT64_C(1796601600), d, NULL);
	assert_string_equal(d, "2026-12-07");
	/* One second before: the week before. */
	keel_board_period(KEEL_BOARD_WEEK, INT64_C(1796601599), d, NULL);
	assert_string_equal(d, "2026-11-30");
	/* A week across a year: 2027-01-01 is a Friday. */
	keel_board_period(KEEL_BOARD_WEEK, INT64_C(1798761600), d, NULL);
	assert_string_equal(d, "2026-12-28");
	keel_board_period(KEEL_BOARD_ALL, INT64_C(1798761600), d, &end);
	assert_string_equal(d, "1970-01-01");
	assert_int_equal(end, 0);
	assert_int_equal(keel_board_period_find("week"), KEEL_BOARD_WEEK);
	assert_int_equal(keel_board_period_find("year"),
	    KEEL_BOARD_PERIOD__MAX);
}

static void
test_keys(void **state)
{
	struct keel_board	 b;
	char			 k[KEEL_BOARD_KEY_MAX];

	(void)state;
	keel_board_at(&b, 42, KEEL_BOARD_WEEK, INT64_C(1796558400));
	keel_board_key(k, sizeof(k), &b, false, NULL);
	assert_string_equal(k, "keel:lb:t42:week:2026-11-30");
	keel_board_key(k, sizeof(k), &b, true, NULL);
	assert_string_equal(k, "keel:lb:t42:week:2026-11-30:new");
	keel_board_at(&b, 0, KEEL_BOARD_ALL, INT64_C(1796558400));
	keel_board_key(k, sizeof(k), &b, false, NULL);
	assert_string_equal(k, "keel:lb:g:all:1970-01-01");
	/* The longest key fits. */
	keel_board_at(&b, INT64_MAX, KEEL_BOARD_MONTH, INT64_C(1796558400));
	keel_board_key(k, sizeof(k), &b, true, NULL);
	assert_string_equal(k,
	    "keel:lb:t9223372036854775807:month:2026-12-01:new");
}

/* One cache namespace per scope; the longest fits and is a valid one. */
static void
test_cache_namespaces(void **state)
{
	char	 ns[KEEL_BOARD_NS_MAX];

	(void)state;
	keel_board_ns(ns, sizeof(ns), 0);
	assert_string_equal(ns, "leaderboard:global");
	keel_board_ns(ns, sizeof(ns), 42);
	assert_string_equal(ns, "leaderboard:t42");
	keel_board_ns(ns, sizeof(ns), INT64_MAX);
	assert_string_equal(ns, "leaderboard:t9223372036854775807");
	assert_true(strlen(ns) <= KEEL_CACHE_NS_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bound_is_2_pow_53),
		cmocka_unit_test(test_times_out_of_range_are_clamped),
		cmocka_unit_test(test_earlier_time_sorts_higher),
		cmocka_unit_test(test_band_separates_scores),
		cmocka_unit_test(test_periods),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_cache_namespaces),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
