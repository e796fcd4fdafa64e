/* SPDX-License-Identifier: ISC */
/*
 * test_batch.c -- unit tests for the batch loader's pure parts: ids are
 * deduplicated in add order, non-ids are ignored, and the bigint[]
 * literal sent as $1 is exact.  (Loading runs against PostgreSQL in the
 * e2e suite, which counts the queries.)
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "keel/batch.h"

static void
test_add_dedups_in_order(void **state)
{
	struct keel_batch	 b;
	int64_t			 i;

	(void)state;
	keel_batch_init(&b);
	keel_batch_add(&b, 7);
	keel_batch_add(&b, 3);
	keel_batch_add(&b, 7);
	keel_batch_add(&b, 0);		/* a NULL reference */
	keel_batch_add(&b, -4);
	assert_int_equal(b.nids, 2);
	assert_int_equal(b.ids[0], 7);
	assert_int_equal(b.ids[1], 3);
	/* Growth past the first block keeps every id. */
	for (i = 100; i < 200; i++)
		keel_batch_add(&b, i);
	assert_int_equal(b.nids, 102);
	assert_int_equal(b.ids[101], 199);
	/* Nothing loaded yet: lookups miss. */
	assert_int_equal(keel_batch_find(&b, 7), -1);
	assert_null(keel_batch_rows(&b));
	keel_batch_free(&b);
	keel_batch_free(NULL);
}

static void
test_array_literal(void **state)
{
	static const int64_t	 ids[] = { 1, 42, INT64_MAX };
	char			*s;

	(void)state;
	s = keel_batch_array(ids, 3);
	assert_string_equal(s, "{1,42,9223372036854775807}");
	free(s);
	s = keel_batch_array(ids, 0);
	assert_string_equal(s, "{}");
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_dedups_in_order),
		cmocka_unit_test(test_array_literal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
