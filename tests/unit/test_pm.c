/* SPDX-License-Identifier: ISC */
/*
 * test_pm.c -- unit tests for pm.c: the dynamic pool's grow and retire
 * decision (keel_pm_decide), one tick at a time.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "keel/pm.h"

/* max_children 10, min_spare 2, max_spare 4, idle timeout 10 s */
static const struct keel_pm_limits lim = {
	.max_children = 10, .min_spare = 2, .max_spare = 4,
	.idle_timeout = 10000
};

static struct keel_pm_step
tick(int total, int idle, double now, struct keel_pm_state *st)
{
	struct keel_pm_view	 v = { .total = total, .idle = idle };

	return keel_pm_decide(&lim, &v, now, st);
}

static void
test_pm_steady_does_nothing(void **state)
{
	struct keel_pm_state	 st = { 0 };
	struct keel_pm_step	 s;

	(void)state;
	s = tick(5, 2, 5000, &st);
	assert_int_equal(s.spawn, 0);
	assert_int_equal(s.retire, 0);
	assert_int_equal(st.ramp, 1);
}

static void
test_pm_too_few_idle_forks_up_to_min_spare(void **state)
{
	struct keel_pm_state	 st = { .ramp = 8 };
	struct keel_pm_step	 s;

	(void)state;
	s = tick(5, 0, 5000, &st);
	assert_int_equal(s.spawn, 2);
	assert_int_equal(s.retire, 0);
}

static void
test_pm_ramp_doubles_to_its_bound(void **state)
{
	static const struct keel_pm_limits big = {
		.max_children = 256, .min_spare = 100, .max_spare = 120,
		.idle_timeout = 10000
	};
	struct keel_pm_view	 v = { .total = 10, .idle = 0 };
	struct keel_pm_state	 st = { 0 };
	int			 i, want[] = { 1, 2, 4, 8, 16, 32, 32 };

	(void)state;
	for (i = 0; i < 7; i++)
		assert_int_equal(keel_pm_decide(&big, &v, 5000 + i * 100,
		    &st).spawn, want[i]);
}

static void
test_pm_ramp_resets_when_enough_idle(void **state)
{
	struct keel_pm_state	 st = { .ramp = 16 };

	(void)state;
	(void)tick(5, 2, 5000, &st);
	assert_int_equal(st.ramp, 1);
}

static void
test_pm_never_past_max_children(void **state)
{
	struct keel_pm_state	 st = { .ramp = 32 };

	(void)state;
	assert_int_equal(tick(9, 0, 5000, &st).spawn, 1);
	assert_int_equal(tick(10, 0, 5100, &st).spawn, 0);
	assert_int_equal(tick(10, 0, 5200, &st).retire, 0);
}

static void
test_pm_over_max_spare_retires_one_a_second(void **state)
{
	struct keel_pm_state	 st = { 0 };

	(void)state;
	assert_int_equal(tick(9, 8, 5000, &st).retire, 1);
	assert_int_equal(tick(9, 7, 5100, &st).retire, 0);
	assert_int_equal(tick(9, 7, 5900, &st).retire, 0);
	assert_int_equal(tick(9, 7, 6000, &st).retire, 1);
}

static void
test_pm_surplus_over_min_spare_retired_after_timeout(void **state)
{
	struct keel_pm_state	 st = { 0 };

	(void)state;
	assert_int_equal(tick(4, 3, 5000, &st).retire, 0);
	assert_int_equal(tick(4, 3, 14900, &st).retire, 0);
	assert_int_equal(tick(4, 3, 15000, &st).retire, 1);
	/* Past the timeout, one a second while it lasts. */
	assert_int_equal(tick(4, 4, 15500, &st).retire, 0);
	assert_int_equal(tick(4, 4, 16000, &st).retire, 1);
}

static void
test_pm_surplus_timer_restarts_when_it_ends(void **state)
{
	struct keel_pm_state	 st = { 0 };

	(void)state;
	(void)tick(4, 3, 5000, &st);
	/* One tick with no surplus: the timeout counts again from zero. */
	(void)tick(4, 2, 10000, &st);
	assert_int_equal(tick(4, 3, 15000, &st).retire, 0);
	assert_int_equal(tick(4, 3, 25000, &st).retire, 1);
}

static void
test_pm_min_spare_kept_at_rest(void **state)
{
	struct keel_pm_state	 st = { 0 };

	(void)state;
	assert_int_equal(tick(2, 2, 5000, &st).retire, 0);
	assert_int_equal(tick(2, 2, 500000, &st).retire, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pm_steady_does_nothing),
		cmocka_unit_test(test_pm_too_few_idle_forks_up_to_min_spare),
		cmocka_unit_test(test_pm_ramp_doubles_to_its_bound),
		cmocka_unit_test(test_pm_ramp_resets_when_enough_idle),
		cmocka_unit_test(test_pm_never_past_max_children),
		cmocka_unit_test(test_pm_over_max_spare_retires_one_a_second),
		cmocka_unit_test(
		    test_pm_surplus_over_min_spare_retired_after_timeout),
		cmocka_unit_test(test_pm_surplus_timer_restarts_when_it_ends),
		cmocka_unit_test(test_pm_min_spare_kept_at_rest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
