/* SPDX-License-Identifier: ISC */
/*
 * test_http.c -- unit tests for the pure parts of http.c: query-string
 * parsing, percent-decoding and the UTF-8 check (RFC 3629), and the
 * Location of a created row.
 *
 * Query strings are client bytes: every test here is one way a client can
 * send something odd, and what lib must make of it.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keel/http.h"
#include "keel/mem.h"

static int
setup(void **state)
{
	*state = keel_arena_new();
	return 0;
}

static int
teardown(void **state)
{
	keel_arena_free(*state);
	return 0;
}

/* Parses qs, which must succeed, and checks the pair count. */
static struct keel_param *
parse_ok(struct keel_arena *a, const char *qs, size_t want)
{
	struct keel_param	*qp;
	const char		*bad = "unset";
	size_t			 n;

	assert_int_equal(keel_http_parse_query(a, qs, &qp, &n, &bad),
	    KEEL_OK);
	assert_null(bad);
	assert_int_equal(n, want);
	if (want > 0)
		assert_non_null(qp);
	return qp;
}

/* Parses qs, which must fail with er, naming want_bad. */
static void
parse_fails(struct keel_arena *a, const char *qs, enum keel_err er,
    const char *want_bad)
{
	struct keel_param	*qp;
	const char		*bad = NULL;
	size_t			 n;

	assert_int_equal(keel_http_parse_query(a, qs, &qp, &n, &bad), er);
	assert_null(qp);
	assert_int_equal(n, 0);
	if (want_bad != NULL) {
		assert_non_null(bad);
		assert_string_equal(bad, want_bad);
	}
}

static void
assert_pair(const struct keel_param *p, const char *name, const char *value)
{
	assert_string_equal(p->name, name);
	assert_string_equal(p->value, value);
}

static void
test_query_two_pairs(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "a=1&b=2", 2);
	assert_pair(&qp[0], "a", "1");
	assert_pair(&qp[1], "b", "2");
}

static void
test_query_empty_string_has_no_pairs(void **state)
{
	parse_ok(*state, "", 0);
}

static void
test_query_keeps_order_and_repeats(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "s=b&s=a&t=c", 3);
	assert_pair(&qp[0], "s", "b");
	assert_pair(&qp[1], "s", "a");
	assert_pair(&qp[2], "t", "c");
}

static void
test_query_plus_is_space(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "q=red+car&a+b=1", 2);
	assert_pair(&qp[0], "q", "red car");
	assert_pair(&qp[1], "a b", "1");
}

static void
test_query_percent_20_is_space(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "q=red%20car", 1);
	assert_pair(&qp[0], "q", "red car");
}

static void
test_query_escaped_plus_and_amp_are_literal(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "q=a%2Bb%26c%3Dd", 1);
	assert_pair(&qp[0], "q", "a+b&c=d");
}

static void
test_query_hex_escape_either_case(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "q=%4a%4A", 1);
	assert_pair(&qp[0], "q", "JJ");
}

static void
test_query_empty_pairs_skipped(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "a=1&&b=2", 2);
	assert_pair(&qp[0], "a", "1");
	assert_pair(&qp[1], "b", "2");
}

static void
test_query_leading_and_trailing_amp_skipped(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "&&a=1&", 1);
	assert_pair(&qp[0], "a", "1");
}

static void
test_query_name_without_equals_gets_empty_value(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "archived&a=1", 2);
	assert_pair(&qp[0], "archived", "");
	assert_pair(&qp[1], "a", "1");
}

static void
test_query_empty_value(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "a=&b=2", 2);
	assert_pair(&qp[0], "a", "");
	assert_pair(&qp[1], "b", "2");
}

static void
test_query_value_keeps_later_equals(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state, "after=abc==", 1);
	assert_pair(&qp[0], "after", "abc==");
}

static void
test_query_bad_escape_rejected(void **state)
{
	parse_fails(*state, "a=%zz", KEEL_EINVAL, "a");
}

static void
test_query_truncated_escape_rejected(void **state)
{
	parse_fails(*state, "a=%4", KEEL_EINVAL, "a");
	parse_fails(*state, "a=%", KEEL_EINVAL, "a");
	parse_fails(*state, "a=%4&b=1", KEEL_EINVAL, "a");
}

static void
test_query_percent_00_rejected(void **state)
{
	parse_fails(*state, "a=x%00y", KEEL_EINVAL, "a");
}

static void
test_query_bad_escape_in_name_names_query(void **state)
{
	parse_fails(*state, "a%zz=1", KEEL_EINVAL, "query");
	parse_fails(*state, "%ff=1", KEEL_EINVAL, "query");
}

static void
test_query_invalid_utf8_byte_rejected(void **state)
{
	parse_fails(*state, "ok=1&name=%ff", KEEL_EINVAL, "name");
}

static void
test_query_overlong_utf8_rejected(void **state)
{
	/* "/" as two bytes: the classic path-traversal disguise. */
	parse_fails(*state, "p=%c0%af", KEEL_EINVAL, "p");
}

static void
test_query_surrogate_utf8_rejected(void **state)
{
	parse_fails(*state, "s=%ed%a0%80", KEEL_EINVAL, "s");
}

static void
test_query_utf8_above_max_rejected(void **state)
{
	parse_fails(*state, "u=%f4%90%80%80", KEEL_EINVAL, "u");
	parse_fails(*state, "u=%f5%80%80%80", KEEL_EINVAL, "u");
}

static void
test_query_truncated_utf8_rejected(void **state)
{
	parse_fails(*state, "e=%e2%82", KEEL_EINVAL, "e");
}

static void
test_query_raw_invalid_utf8_rejected(void **state)
{
	parse_fails(*state, "r=\xff", KEEL_EINVAL, "r");
}

static void
test_query_multibyte_utf8_accepted(void **state)
{
	struct keel_param	*qp;

	qp = parse_ok(*state,
	    "city=S%C3%A3o+Paulo&sym=%E2%82%AC&e=%F0%9F%98%80&raw=\xc3\xa9", 4);
	assert_pair(&qp[0], "city", "S\xc3\xa3o Paulo");
	assert_pair(&qp[1], "sym", "\xe2\x82\xac");
	assert_pair(&qp[2], "e", "\xf0\x9f\x98\x80");
	assert_pair(&qp[3], "raw", "\xc3\xa9");
}

/* "p0=0&p1=1&...", n pairs, into buf. */
static void
many_pairs(char *buf, size_t len, int n)
{
	size_t	 off = 0;
	int	 i;

	buf[0] = '\0';
	for (i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, len - off, "%sp%d=%d",
		    i > 0 ? "&" : "", i, i);
}

static void
test_query_64_pairs_accepted(void **state)
{
	struct keel_param	*qp;
	char			 buf[1024];

	many_pairs(buf, sizeof(buf), 64);
	qp = parse_ok(*state, buf, 64);
	assert_pair(&qp[63], "p63", "63");
}

static void
test_query_65_pairs_too_big(void **state)
{
	char	 buf[1024];

	many_pairs(buf, sizeof(buf), 65);
	parse_fails(*state, buf, KEEL_ETOOBIG, NULL);
}

static void
test_query_empty_pairs_do_not_count_toward_limit(void **state)
{
	char	 buf[1024];

	many_pairs(buf, sizeof(buf), 64);
	strcat(buf, "&&&&");
	parse_ok(*state, buf, 64);
}

static void
test_decode_plain_copy(void **state)
{
	char	*s;

	s = keel_http_decode(*state, "abc", 3, 0);
	assert_non_null(s);
	assert_string_equal(s, "abc");
}

static void
test_decode_respects_length(void **state)
{
	char	*s;

	s = keel_http_decode(*state, "abc%41", 4, 0);
	assert_null(s);			/* "abc%" is a truncated escape */
	s = keel_http_decode(*state, "abc%41", 5, 0);
	assert_null(s);			/* so is "abc%4" */
	s = keel_http_decode(*state, "ab%41cd", 5, 0);
	assert_non_null(s);
	assert_string_equal(s, "abA");
}

static void
test_decode_plus_kept_without_plus_space(void **state)
{
	char	*s;

	s = keel_http_decode(*state, "a+b", 3, 0);
	assert_string_equal(s, "a+b");
	s = keel_http_decode(*state, "a+b", 3, 1);
	assert_string_equal(s, "a b");
}

static void
test_decode_escape_at_end(void **state)
{
	char	*s;

	s = keel_http_decode(*state, "a%2F", 4, 0);
	assert_non_null(s);
	assert_string_equal(s, "a/");
}

static void
test_decode_rejects_bad_hex(void **state)
{
	assert_null(keel_http_decode(*state, "%g0", 3, 0));
	assert_null(keel_http_decode(*state, "%0g", 3, 0));
	assert_null(keel_http_decode(*state, "% 1", 3, 0));
}

static void
test_decode_rejects_encoded_nul(void **state)
{
	assert_null(keel_http_decode(*state, "a%00", 4, 0));
}

static void
test_decode_rejects_raw_nul(void **state)
{
	assert_null(keel_http_decode(*state, "a\0b", 3, 0));
}

static void
test_decode_empty(void **state)
{
	char	*s;

	s = keel_http_decode(*state, "", 0, 1);
	assert_non_null(s);
	assert_string_equal(s, "");
}

/* An encoded '/' or '\' is refused, either case of hex, anywhere. */
static void
test_path_encoded_separator_refused(void **state)
{
	static const char *bad[] = { "/api/cars%2F1", "/api/cars%2f1",
	    "/api/cars%5C1", "/api/cars%5c1", "%2F", "/a/b%2F" };
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(keel_http_path_escapes_ok(bad[i],
		    strlen(bad[i])));
}

static void
test_path_other_escapes_pass(void **state)
{
	(void)state;
	assert_true(keel_http_path_escapes_ok("/api/cars/1", 11));
	assert_true(keel_http_path_escapes_ok("/api/a%20b", 10));
	/* Double-encoded: decoded once, it is the text "%2F", not a '/'. */
	assert_true(keel_http_path_escapes_ok("/api/a%252F", 11));
	/* Only the first n bytes count (a query follows the path). */
	assert_true(keel_http_path_escapes_ok("/api/cars?x=%2F", 9));
	/* Truncated or bad escapes are keel_http_decode's to refuse. */
	assert_true(keel_http_path_escapes_ok("/a%2", 4));
	assert_true(keel_http_path_escapes_ok("/a%g2F", 6));
	assert_true(keel_http_path_escapes_ok("", 0));
}

static void
test_location_appends_the_id(void **state)
{
	assert_string_equal(keel_http_location_of(*state, "/api/cars/", "12"),
	    "/api/cars/12");
	assert_string_equal(keel_http_location_of(*state, "/api/attempts/",
	    "9223372036854775807"), "/api/attempts/9223372036854775807");
}

/* Only a positive integer goes into the header, written canonically. */
static void
test_location_refuses_what_is_not_an_id(void **state)
{
	static const char *const bad[] = { "", "0", "-1", "1.5", "1 ",
	    "12a", "a", "9223372036854775808", "1\r\nSet-Cookie: x=1",
	    "../1" };
	size_t	 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(keel_http_location_of(*state, "/api/cars/",
		    bad[i]));
	assert_null(keel_http_location_of(*state, "/api/cars/", NULL));
}

static void
test_location_drops_leading_zeros(void **state)
{
	assert_string_equal(keel_http_location_of(*state, "/api/users/",
	    "007"), "/api/users/7");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_query_two_pairs),
		T(test_query_empty_string_has_no_pairs),
		T(test_query_keeps_order_and_repeats),
		T(test_query_plus_is_space),
		T(test_query_percent_20_is_space),
		T(test_query_escaped_plus_and_amp_are_literal),
		T(test_query_hex_escape_either_case),
		T(test_query_empty_pairs_skipped),
		T(test_query_leading_and_trailing_amp_skipped),
		T(test_query_name_without_equals_gets_empty_value),
		T(test_query_empty_value),
		T(test_query_value_keeps_later_equals),
		T(test_query_bad_escape_rejected),
		T(test_query_truncated_escape_rejected),
		T(test_query_percent_00_rejected),
		T(test_query_bad_escape_in_name_names_query),
		T(test_query_invalid_utf8_byte_rejected),
		T(test_query_overlong_utf8_rejected),
		T(test_query_surrogate_utf8_rejected),
		T(test_query_utf8_above_max_rejected),
		T(test_query_truncated_utf8_rejected),
		T(test_query_raw_invalid_utf8_rejected),
		T(test_query_multibyte_utf8_accepted),
		T(test_query_64_pairs_accepted),
		T(test_query_65_pairs_too_big),
		T(test_query_empty_pairs_do_not_count_toward_limit),
		T(test_decode_plain_copy),
		T(test_decode_respects_length),
		T(test_decode_plus_kept_without_plus_space),
		T(test_decode_escape_at_end),
		T(test_decode_rejects_bad_hex),
		T(test_decode_rejects_encoded_nul),
		T(test_decode_rejects_raw_nul),
		T(test_decode_empty),
		T(test_path_encoded_separator_refused),
		T(test_path_other_escapes_pass),
		T(test_location_appends_the_id),
		T(test_location_refuses_what_is_not_an_id),
		T(test_location_drops_leading_zeros),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
