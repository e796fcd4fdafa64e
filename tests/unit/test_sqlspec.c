/* SPDX-License-Identifier: ISC */
/*
 * test_sqlspec.c -- unit tests for the statements specialised per set of
 * absent filters (sqlspec.h): what is read off a statement, which form a
 * run picks, and the text each form is.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/resource.h"
#include "keel/sqlspec.h"

/* cars.c's list, as the resource layer runs it. */
#define CARS "SELECT id, to_char(created_at, 'YYYY-MM-DD\"T\"HH24') AS " \
	"\"createdAt\" FROM cars WHERE is_archived = $4 " \
	"AND ($5::text IS NULL OR status = $5) " \
	"AND ($6::text IS NULL OR manufacturer = $6) " KEEL_SQL_AFTER

static char *
spec(const char *sql, uint32_t nulls, int limit, size_t n, uint32_t *unref)
{
	struct keel_sqlspec_key	 key = { .nulls = nulls, .limit = limit };

	return keel_sqlspec_write(sql, &key, n, unref);
}

static void
test_shape(void **state)
{
	struct keel_sqlspec_shape	 sh;

	(void)state;
	assert_true(keel_sqlspec_shape(CARS, &sh));
	/* $1 (the cursor), $5, $6; the LIMIT is $3. */
	assert_int_equal(sh.heads, (1u << 0) | (1u << 4) | (1u << 5));
	assert_int_equal(sh.limit, 3);
	/* No arm: nothing to specialise. */
	assert_false(keel_sqlspec_shape("SELECT 1 FROM t WHERE id = $1 "
	    "LIMIT $2", &sh));
	/* Not a parameter's arm. */
	assert_false(keel_sqlspec_shape("SELECT 1 FROM t WHERE (x.a IS NULL "
	    "OR x.a = $1)", &sh));
	/* An arm's words in a string are text, not an arm. */
	assert_false(keel_sqlspec_shape("SELECT '($1::text IS NULL OR a)', "
	    "$1", &sh));
	assert_false(sh.unread);
	/* What the reader doesn't follow is left alone, and said so. */
	assert_false(keel_sqlspec_shape("SELECT 1 -- ($1 IS NULL OR a = $1)\n",
	    &sh));
	assert_true(sh.unread);
	assert_false(keel_sqlspec_shape("SELECT $$x$$ WHERE ($1 IS NULL OR "
	    "a = $1)", &sh));
	assert_false(keel_sqlspec_shape("SELECT 'open WHERE ($1 IS NULL OR "
	    "a = $1)", &sh));
	assert_false(keel_sqlspec_shape("SELECT E'it\\'s' WHERE ($1 IS NULL "
	    "OR a = $1)", &sh));
	/* A name ending in e before a quote is not an E'' string. */
	assert_true(keel_sqlspec_shape("SELECT 1 FROM t WHERE ($1 IS NULL OR "
	    "name = $1) AND type='x'", &sh));
	/* Lower case, no cast, a two-word type, a subquery's parentheses. */
	assert_true(keel_sqlspec_shape("select 1 where ( $2 is null or a in "
	    "(select b from c where d = ')')) and ($3::double precision IS "
	    "NULL OR e > $3)", &sh));
	assert_int_equal(sh.heads, (1u << 1) | (1u << 2));
	assert_int_equal(sh.limit, 0);
	/* Two LIMITs: which is the page's is not guessed. */
	assert_true(keel_sqlspec_shape("SELECT * FROM (SELECT 1 LIMIT $2) s "
	    "WHERE ($1 IS NULL OR a = $1) LIMIT $3", &sh));
	assert_int_equal(sh.limit, 0);
}

static void
test_key(void **state)
{
	struct keel_sqlspec_shape	 sh;
	struct keel_sqlspec_key		 key;
	const char			*first[] = { NULL, NULL, "21", "false",
	    "available", NULL };
	const char			*after[] = { "2026-01-01", "7", "5",
	    "false", NULL, "Kia" };
	const char			*odd[] = { NULL, NULL, "+21", "false",
	    NULL, NULL };
	const char			*big[] = { NULL, NULL, "1001", "false",
	    NULL, NULL };

	(void)state;
	assert_true(keel_sqlspec_shape(CARS, &sh));
	keel_sqlspec_key(&sh, 6, first, &key);
	assert_int_equal(key.nulls, (1u << 0) | (1u << 5));
	assert_int_equal(key.limit, 21);
	keel_sqlspec_key(&sh, 6, after, &key);
	assert_int_equal(key.nulls, 1u << 4);
	assert_int_equal(key.limit, 5);
	/* Only plain digits are written in; else the LIMIT stays $3. */
	keel_sqlspec_key(&sh, 6, odd, &key);
	assert_int_equal(key.limit, -1);
	keel_sqlspec_key(&sh, 6, big, &key);
	assert_int_equal(key.limit, -1);
	/* Fewer values than arms: a missing one counts as absent. */
	keel_sqlspec_key(&sh, 4, after, &key);
	assert_int_equal(key.nulls, (1u << 4) | (1u << 5));
}

static void
test_write(void **state)
{
	uint32_t	 unref;
	char		*s;

	(void)state;
	/* The first page, status only: the cursor's arm and $6's go. */
	s = spec(CARS, (1u << 0) | (1u << 5), 21, 6, &unref);
	assert_non_null(s);
	assert_string_equal(s, "SELECT id, to_char(created_at, "
	    "'YYYY-MM-DD\"T\"HH24') AS \"createdAt\" FROM cars WHERE "
	    "is_archived = $4 AND ($5::text IS NOT NULL AND (status = $5)) "
	    "AND true AND true ORDER BY created_at DESC, id DESC LIMIT 21");
	/* $1, $2 (the cursor), $3 (the LIMIT written in) and $6. */
	assert_int_equal(unref, (1u << 0) | (1u << 1) | (1u << 2) |
	    (1u << 5));
	free(s);
	/* After a cursor, every filter: nothing named goes unnamed. */
	s = spec(CARS, 0, -1, 6, &unref);
	assert_string_equal(s, "SELECT id, to_char(created_at, "
	    "'YYYY-MM-DD\"T\"HH24') AS \"createdAt\" FROM cars WHERE "
	    "is_archived = $4 AND ($5::text IS NOT NULL AND (status = $5)) "
	    "AND ($6::text IS NOT NULL AND (manufacturer = $6)) "
	    "AND ($1::timestamptz IS NOT NULL AND ((created_at, id) < "
	    "($1::timestamptz, $2::bigint))) ORDER BY created_at DESC, "
	    "id DESC LIMIT $3");
	assert_int_equal(unref, 0);
	free(s);
	/* An OR inside <cond> stays inside it (AND binds first). */
	s = spec("SELECT 1 WHERE ($1::int IS NULL OR a = $1 OR b = $1)", 0,
	    -1, 1, &unref);
	assert_string_equal(s, "SELECT 1 WHERE ($1::int IS NOT NULL AND "
	    "(a = $1 OR b = $1))");
	free(s);
	/* An arm in an arm. */
	s = spec("SELECT 1 WHERE ($1 IS NULL OR (a = $1 AND ($2 IS NULL OR "
	    "b = $2)))", 1u << 1, -1, 2, &unref);
	assert_string_equal(s, "SELECT 1 WHERE ($1 IS NOT NULL AND ((a = $1 "
	    "AND true)))");
	assert_int_equal(unref, 1u << 1);
	free(s);
	/* An arm that doesn't name its parameter past the test. */
	s = spec("SELECT 1 FROM t WHERE ($6::bigint IS NULL OR t.published)",
	    0, -1, 6, &unref);
	assert_string_equal(s, "SELECT 1 FROM t WHERE ($6::bigint IS NOT NULL "
	    "AND (t.published))");
	assert_int_equal(unref, 0x1f);
	free(s);
	assert_null(spec("SELECT 'x", 0, -1, 0, &unref));
}

/* Every key of an arm set is a different text: names never collide. */
static void
test_forms_differ(void **state)
{
	char		*s[8];
	uint32_t	 unref, m;
	size_t		 i, j;

	(void)state;
	for (m = 0; m < 8; m++)
		s[m] = spec(CARS, (m & 1) | ((m & 6) << 3), 21, 6, &unref);
	for (i = 0; i < 8; i++) {
		assert_null(strstr(s[i], "IS NULL OR"));
		for (j = i + 1; j < 8; j++)
			assert_string_not_equal(s[i], s[j]);
	}
	for (i = 0; i < 8; i++)
		free(s[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shape),
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_forms_differ),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
