/* SPDX-License-Identifier: ISC */
/*
 * test_db.c -- unit tests for the pure parts of db.c: a statement's
 * client-side deadline, the time left to it, when a failed statement
 * may run again on a new connection, and how a statement is sent
 * (named, or unnamed for PgBouncer's transaction pooling).  (The behaviour against a frozen or
 * dying server is tests/e2e/test_db_deadline.py's.)
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>

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

static void
test_resend_when_never_sent(void **state)
{
	(void)state;
	/* Reads and writes alike: the server never saw it. */
	assert_true(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_UNSENT, true,
	    false, false));
	assert_true(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_UNSENT, true,
	    true, false));
}

static void
test_no_resend_of_a_sent_write(void **state)
{
	(void)state;
	/* It may have committed: running it again could do it twice. */
	assert_false(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_SENT, true,
	    false, false));
	/* A read is safe to repeat. */
	assert_true(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_SENT, true,
	    true, false));
}

static void
test_no_resend_after_a_timeout(void **state)
{
	(void)state;
	/* The deadline is spent, sent or not, read or not. */
	assert_false(keel_db_may_resend(KEEL_ETIMEOUT, KEEL_DB_SENT, true,
	    true, false));
	assert_false(keel_db_may_resend(KEEL_ETIMEOUT, KEEL_DB_UNSENT, true,
	    false, false));
}

static void
test_no_resend_inside_a_transaction(void **state)
{
	(void)state;
	/* The transaction died with its connection. */
	assert_false(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_UNSENT, true,
	    true, true));
	assert_false(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_SENT, true,
	    true, true));
}

static void
test_no_resend_on_a_new_connection(void **state)
{
	(void)state;
	/* A connection just made that fails isn't mended by another. */
	assert_false(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_UNSENT, false,
	    true, false));
	assert_false(keel_db_may_resend(KEEL_EUNAVAIL, KEEL_DB_NOCONN, true,
	    true, false));
}

static void
test_no_resend_of_statement_errors(void **state)
{
	(void)state;
	/* The server answered: the answer stands. */
	assert_false(keel_db_may_resend(KEEL_OK, KEEL_DB_SENT, true, true,
	    false));
	assert_false(keel_db_may_resend(KEEL_ECONFLICT, KEEL_DB_SENT, true,
	    true, false));
	assert_false(keel_db_may_resend(KEEL_EINTERNAL, KEEL_DB_UNSENT, true,
	    true, false));
}

static void
test_named_runs_what_is_prepared(void **state)
{
	(void)state;
	assert_int_equal(keel_db_send_as(true, true, true, false),
	    KEEL_DB_SEND_PREPARED);
	assert_int_equal(keel_db_send_as(true, true, false, true),
	    KEEL_DB_SEND_PREPARED);
}

static void
test_named_prepares_while_there_is_room(void **state)
{
	(void)state;
	assert_int_equal(keel_db_send_as(true, false, true, false),
	    KEEL_DB_SEND_PREPARE);
	assert_int_equal(keel_db_send_as(true, false, true, true),
	    KEEL_DB_SEND_PREPARE);
}

static void
test_named_past_the_table_runs_unnamed(void **state)
{
	(void)state;
	/* The session's settings hold: nothing goes in front of it. */
	assert_int_equal(keel_db_send_as(true, false, false, false),
	    KEEL_DB_SEND_UNNAMED);
}

static void
test_unnamed_alone_takes_its_settings_along(void **state)
{
	(void)state;
	/* A pooled server connection keeps nothing: set it each time. */
	assert_int_equal(keel_db_send_as(false, false, true, false),
	    KEEL_DB_SEND_UNNAMED_SET);
	/* Never a name, whatever the connection is thought to hold. */
	assert_int_equal(keel_db_send_as(false, true, true, false),
	    KEEL_DB_SEND_UNNAMED_SET);
}

static void
test_unnamed_in_a_transaction_has_begins_settings(void **state)
{
	(void)state;
	assert_int_equal(keel_db_send_as(false, false, true, true),
	    KEEL_DB_SEND_UNNAMED);
	assert_int_equal(keel_db_send_as(false, true, false, true),
	    KEEL_DB_SEND_UNNAMED);
}

/* KEEL_SQL_TIME's timestamps, as the API writes every one. */
static void
test_time_rfc3339(void **state)
{
	static const struct {
		const char	*in, *out;
	} ok[] = {
		{ "2026-12-06 02:30:00", "2026-12-06T02:30:00.000000Z" },
		{ "2026-12-06 02:30:00.5", "2026-12-06T02:30:00.500000Z" },
		{ "2026-12-06 02:30:00.12345", "2026-12-06T02:30:00.123450Z" },
		{ "0001-01-01 00:00:00.000001", "0001-01-01T00:00:00.000001Z" },
		{ "2026-12-06 23:59:59.999999", "2026-12-06T23:59:59.999999Z" },
	};
	static const char *const bad[] = { "infinity", "-infinity", "",
	    "2026-12-06 02:30:00.", "2026-12-06 02:30:00 BC",
	    "12026-12-06 02:30:00", "2026-12-06T02:30:00",
	    "2026-12-06 02:30:00.1234567", "2026-12-06 02:30:0x",
	    "Sun Dec 06 02:30:00 2026", "12/06/2026 02:30:00" };
	char	 out[KEEL_DB_TIME_LEN + 1];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_true(keel_db_time_rfc3339(ok[i].in, strlen(ok[i].in),
		    out));
		assert_string_equal(out, ok[i].out);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(keel_db_time_rfc3339(bad[i], strlen(bad[i]), out));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_rfc3339),
		cmocka_unit_test(test_deadline_is_timeout_plus_margin),
		cmocka_unit_test(test_ms_left_rounds_up_and_stops_at_zero),
		cmocka_unit_test(test_resend_when_never_sent),
		cmocka_unit_test(test_no_resend_of_a_sent_write),
		cmocka_unit_test(test_no_resend_after_a_timeout),
		cmocka_unit_test(test_no_resend_inside_a_transaction),
		cmocka_unit_test(test_no_resend_on_a_new_connection),
		cmocka_unit_test(test_no_resend_of_statement_errors),
		cmocka_unit_test(test_named_runs_what_is_prepared),
		cmocka_unit_test(test_named_prepares_while_there_is_room),
		cmocka_unit_test(test_named_past_the_table_runs_unnamed),
		cmocka_unit_test(test_unnamed_alone_takes_its_settings_along),
		cmocka_unit_test(test_unnamed_in_a_transaction_has_begins_settings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
