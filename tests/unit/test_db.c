/* SPDX-License-Identifier: ISC */
/*
 * test_db.c -- unit tests for the pure parts of db.c: a statement's
 * client-side deadline and the time left to it.  (The behaviour against a
 * frozen or dying server is tests/e2e/test_db_deadline.py's.)
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <limits.h>

#include <cmocka.h>

#include "keel/db.h"

static void
test_deadline_is_timeout_plus_margin(void **state)
{
	(void)state;
	assert_true(keel_db_deadline(1000.0, 30000) ==
	    1000.0 + 30000 + KEEL_DB_DEADLINE_MARGIN);
	assert_true(keel_db_deadline(0.5, 100) ==
	    0.5 + 100 + KEEL_DB_DEADLINE_MARGIN);
	/* The cancel fits in the margin's order, not the timeout's. */
	assert_true(KEEL_DB_CANCEL_MAX <= KEEL_DB_DEADLINE_MARGIN);
}

static void
test_ms_left_rounds_up_and_stops_at_zero(void **state)
{
	(void)state;
	assert_int_equal(keel_db_ms_left(100.0, 0.0), 100);
	/* A fraction left is a whole ms: poll(0) would spin on it. */
	assert_int_equal(keel_db_ms_left(100.0, 99.75), 1);
	assert_int_equal(keel_db_ms_left(100.0, 100.0), 0);
	assert_int_equal(keel_db_ms_left(100.0, 250.0), 0);
	assert_int_equal(keel_db_ms_left(1e12, 0.0), INT_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deadline_is_timeout_plus_margin),
		cmocka_unit_test(test_ms_left_rounds_up_and_stops_at_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
