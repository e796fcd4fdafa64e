/* SPDX-License-Identifier: ISC */
/*
 * test_srs.c -- unit tests for SM-2 scheduling against worked examples:
 * intervals 1, 6, then round(I x EF); the E-Factor's update and floor;
 * failing grades; grades out of range; the interval's cap.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "keel/srs.h"

static const struct keel_srs fresh = { .ease = KEEL_SRS_EASE_START };

/* Reviews s with grade (which must be accepted) and checks the state. */
static void
step(struct keel_srs *s, int grade, int ease, int interval, int reps)
{
	assert_true(keel_srs_review(s, grade));
	assert_int_equal(s->ease, ease);
	assert_int_equal(s->interval, interval);
	assert_int_equal(s->reps, reps);
}

static void
test_perfect_grades(void **state)
{
	struct keel_srs	 s = fresh;

	(void)state;
	/* 1, 6, then 6 x 2.7 = 16.2 -> 16, 16 x 2.8 = 44.8 -> 45, ... */
	step(&s, 5, 260, 1, 1);
	step(&s, 5, 270, 6, 2);
	step(&s, 5, 280, 16, 3);
	step(&s, 5, 290, 45, 4);
	step(&s, 5, 300, 131, 5);	/* 45 x 2.9 = 130.5: halves up */
}

static void
test_grade_four_keeps_ease(void **state)
{
	struct keel_srs	 s = fresh;

	(void)state;
	step(&s, 4, 250, 1, 1);
	step(&s, 4, 250, 6, 2);
	step(&s, 4, 250, 15, 3);	/* 6 x 2.5 */
	step(&s, 4, 250, 38, 4);	/* 37.5 -> 38 */
}

static void
test_ease_deltas_per_grade(void **state)
{
	/* EF' - EF = 0.1 - (5-q)(0.08 + (5-q)0.02), for q = 3, 4, 5. */
	static const int	 want[] = { 236, 250, 260 };
	struct keel_srs		 s;
	int			 q;

	(void)state;
	for (q = 3; q <= 5; q++) {
		s = fresh;
		assert_true(keel_srs_review(&s, q));
		assert_int_equal(s.ease, want[q - 3]);
	}
}

static void
test_grade_three_uses_old_ease_then_lowers_it(void **state)
{
	struct keel_srs	 s = { .ease = 250, .interval = 6, .reps = 2 };

	(void)state;
	step(&s, 3, 236, 15, 3);	/* 6 x 2.50, then EF - 0.14 */
	step(&s, 3, 222, 35, 4);	/* 15 x 2.36 = 35.4 */
}

static void
test_ease_floor(void **state)
{
	struct keel_srs	 s = { .ease = 140, .interval = 10, .reps = 3 };

	(void)state;
	step(&s, 3, 130, 14, 4);	/* 1.40 - 0.14 = 1.26 -> 1.3 */
	step(&s, 3, 130, 18, 5);	/* 14 x 1.3 = 18.2 */
}

static void
test_failing_grade_restarts_keeping_ease(void **state)
{
	struct keel_srs	 s = { .ease = 270, .interval = 16, .reps = 3 };
	int		 q;

	(void)state;
	for (q = 0; q < 3; q++) {
		s = (struct keel_srs){ .ease = 270, .interval = 16, .reps = 3 };
		step(&s, q, 270, 1, 0);
	}
	/* Then as a new card, from its own E-Factor. */
	step(&s, 5, 280, 1, 1);
	step(&s, 5, 290, 6, 2);
	step(&s, 5, 300, 17, 3);	/* 6 x 2.9 = 17.4 */
}

static void
test_bad_grades_change_nothing(void **state)
{
	static const int64_t	 bad[] = { -1, 6, 100, INT64_MIN, INT64_MAX };
	struct keel_srs		 s = { .ease = 250, .interval = 6, .reps = 2 };
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(keel_srs_grade_valid(bad[i]));
		assert_false(keel_srs_review(&s, bad[i]));
		assert_int_equal(s.ease, 250);
		assert_int_equal(s.interval, 6);
		assert_int_equal(s.reps, 2);
	}
	assert_true(keel_srs_grade_valid(0));
	assert_true(keel_srs_grade_valid(5));
}

static void
test_bad_state_refused(void **state)
{
	struct keel_srs	 s = { .ease = 129, .interval = 1, .reps = 1 };

	(void)state;
	assert_false(keel_srs_review(&s, 5));
	s = (struct keel_srs){ .ease = 250, .interval = -1, .reps = 1 };
	assert_false(keel_srs_review(&s, 5));
	s = (struct keel_srs){ .ease = 250, .interval = 1, .reps = -1 };
	assert_false(keel_srs_review(&s, 5));
}

static void
test_interval_capped(void **state)
{
	struct keel_srs	 s = { .ease = 250, .interval = 20000, .reps = 9 };

	(void)state;
	step(&s, 5, 260, KEEL_SRS_INTERVAL_MAX, 10);
	step(&s, 5, 270, KEEL_SRS_INTERVAL_MAX, 11);
	/* A huge state never overflows. */
	s = (struct keel_srs){ .ease = INT32_MAX, .interval = INT32_MAX,
	    .reps = INT32_MAX };
	assert_true(keel_srs_review(&s, 5));
	assert_int_equal(s.interval, KEEL_SRS_INTERVAL_MAX);
	assert_int_equal(s.reps, INT32_MAX);
	assert_int_equal(s.ease, INT32_MAX);
}

int
main(void)
{
	const struct CMUnitTest	 tests[] = {
		cmocka_unit_test(test_perfect_grades),
		cmocka_unit_test(test_grade_four_keeps_ease),
		cmocka_unit_test(test_ease_deltas_per_grade),
		cmocka_unit_test(test_grade_three_uses_old_ease_then_lowers_it),
		cmocka_unit_test(test_ease_floor),
		cmocka_unit_test(test_failing_grade_restarts_keeping_ease),
		cmocka_unit_test(test_bad_grades_change_nothing),
		cmocka_unit_test(test_bad_state_refused),
		cmocka_unit_test(test_interval_capped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
