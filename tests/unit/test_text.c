/* SPDX-License-Identifier: ISC */
/*
 * test_text.c -- unit tests for text.c: UTF-8 (RFC 3629), calendar
 * dates, bounded integers, comma lists and the decimal formatter.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keel/text.h"

/* keel_utf8_valid() over a string literal, not counting its NUL. */
#define VALID(lit)	keel_utf8_valid((lit), sizeof(lit) - 1)

static void
test_utf8_valid_empty_and_ascii(void **state)
{
	(void)state;
	assert_true(keel_utf8_valid("", 0));
	assert_true(VALID("hello, world"));
	assert_true(VALID("\x01\x7f"));
}

static void
test_utf8_valid_two_byte_bounds(void **state)
{
	(void)state;
	assert_true(VALID("\xc2\x80"));		/* U+0080 */
	assert_true(VALID("\xdf\xbf"));		/* U+07FF */
	assert_false(VALID("\xc0\x80"));	/* overlong NUL */
	assert_false(VALID("\xc1\xbf"));	/* overlong U+007F */
}

static void
test_utf8_valid_three_byte_bounds(void **state)
{
	(void)state;
	assert_true(VALID("\xe0\xa0\x80"));	/* U+0800 */
	assert_true(VALID("\xef\xbf\xbf"));	/* U+FFFF */
	assert_false(VALID("\xe0\x9f\xbf"));	/* overlong U+07FF */
	assert_false(VALID("\xe0\x80\xaf"));	/* overlong "/" */
}

static void
test_utf8_valid_surrogates_rejected(void **state)
{
	(void)state;
	assert_true(VALID("\xed\x9f\xbf"));	/* U+D7FF */
	assert_false(VALID("\xed\xa0\x80"));	/* U+D800 */
	assert_false(VALID("\xed\xbf\xbf"));	/* U+DFFF */
	assert_true(VALID("\xee\x80\x80"));	/* U+E000 */
}

static void
test_utf8_valid_four_byte_bounds(void **state)
{
	(void)state;
	assert_true(VALID("\xf0\x90\x80\x80"));	/* U+10000 */
	assert_true(VALID("\xf4\x8f\xbf\xbf"));	/* U+10FFFF */
	assert_false(VALID("\xf0\x8f\xbf\xbf"));	/* overlong U+FFFF */
	assert_false(VALID("\xf4\x90\x80\x80"));	/* U+110000 */
	assert_false(VALID("\xf5\x80\x80\x80"));
	assert_false(VALID("\xf7\xbf\xbf\xbf"));
}

static void
test_utf8_valid_bad_bytes_rejected(void **state)
{
	(void)state;
	assert_false(VALID("\x80"));		/* lone continuation */
	assert_false(VALID("a\xbf"));
	assert_false(VALID("\xfe"));
	assert_false(VALID("\xff"));
	assert_false(VALID("\xf8\x88\x80\x80\x80"));	/* 5-byte form */
}

static void
test_utf8_valid_truncated_sequence_rejected(void **state)
{
	(void)state;
	assert_false(VALID("\xc3"));
	assert_false(VALID("\xe2\x82"));
	assert_false(VALID("\xf0\x9f\x98"));
	/* The length rules, not a NUL: "\xe2\x82\xac" cut to two bytes. */
	assert_false(keel_utf8_valid("\xe2\x82\xac", 2));
	assert_true(keel_utf8_valid("\xe2\x82\xac", 3));
}

static void
test_utf8_valid_bad_continuation_rejected(void **state)
{
	(void)state;
	assert_false(VALID("\xe2\x28\xa1"));
	assert_false(VALID("\xc3\x28"));
	assert_false(VALID("\xf0\x9f\x98\x41"));
	assert_false(VALID("\xc3\xc3\xa9"));
}

static void
test_utf8_valid_mixed_text(void **state)
{
	(void)state;
	assert_true(VALID("na\xc3\xafve \xe2\x82\xac \xf0\x9f\x9a\x97 ok"));
}

static void
test_date_valid_leap_years(void **state)
{
	(void)state;
	assert_true(keel_date_valid("2024-02-29"));
	assert_true(keel_date_valid("2000-02-29"));	/* divisible by 400 */
	assert_false(keel_date_valid("2023-02-29"));
	assert_false(keel_date_valid("1900-02-29"));	/* by 100, not 400 */
	assert_false(keel_date_valid("2024-02-30"));
}

static void
test_date_valid_month_and_day_bounds(void **state)
{
	(void)state;
	assert_true(keel_date_valid("2024-01-31"));
	assert_true(keel_date_valid("2024-12-31"));
	assert_false(keel_date_valid("2024-13-01"));
	assert_false(keel_date_valid("2024-00-10"));
	assert_false(keel_date_valid("2024-04-31"));
	assert_false(keel_date_valid("2024-01-00"));
	assert_false(keel_date_valid("2024-01-32"));
	assert_false(keel_date_valid("0000-01-01"));
	assert_true(keel_date_valid("0001-01-01"));
	assert_true(keel_date_valid("9999-12-31"));
}

static void
test_date_valid_rejects_bad_shape(void **state)
{
	(void)state;
	assert_false(keel_date_valid("2024-1-01"));
	assert_false(keel_date_valid("2024-01-1"));
	assert_false(keel_date_valid("2024/01/01"));
	assert_false(keel_date_valid("24-01-01"));
	assert_false(keel_date_valid("+2024-01-01"));
	assert_false(keel_date_valid(""));
	assert_false(keel_date_valid("2024-01-0a"));
}

static void
test_date_valid_rejects_trailing_chars(void **state)
{
	(void)state;
	assert_false(keel_date_valid("2024-01-01x"));
	assert_false(keel_date_valid("2024-01-01 "));
	assert_false(keel_date_valid(" 2024-01-01"));
	assert_false(keel_date_valid("2024-01-010"));
}

static void
test_time_format_is_rfc3339_utc_with_microseconds(void **state)
{
	char	 buf[KEEL_TIME_LEN + 1];

	(void)state;
	keel_time_format(0, buf);
	assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
	keel_time_format(1796524200, buf);	/* 2026-12-06 02:30 UTC */
	assert_string_equal(buf, "2026-12-06T02:30:00.000000Z");
	assert_int_equal(strlen(buf), KEEL_TIME_LEN);
}

/* keel_parse_int64 over the whole int64 range; false on failure. */
static bool
parse_any(const char *s, int64_t *v)
{
	return keel_parse_int64(s, INT64_MIN, INT64_MAX, v);
}

static void
test_parse_int64_plain(void **state)
{
	int64_t	 v;

	(void)state;
	assert_true(parse_any("0", &v));
	assert_int_equal(v, 0);
	assert_true(parse_any("42", &v));
	assert_int_equal(v, 42);
	assert_true(parse_any("-17", &v));
	assert_int_equal(v, -17);
	assert_true(parse_any("-0", &v));
	assert_int_equal(v, 0);
}

static void
test_parse_int64_max_accepted(void **state)
{
	int64_t	 v = 0;

	(void)state;
	assert_true(parse_any("9223372036854775807", &v));
	assert_true(v == INT64_MAX);
}

static void
test_parse_int64_min_accepted(void **state)
{
	int64_t	 v = 0;

	(void)state;
	assert_true(parse_any("-9223372036854775808", &v));
	assert_true(v == INT64_MIN);
}

static void
test_parse_int64_overflow_rejected(void **state)
{
	int64_t	 v = 99;

	(void)state;
	assert_false(parse_any("9223372036854775808", &v));
	assert_false(parse_any("-9223372036854775809", &v));
	assert_false(parse_any("9999999999999999999", &v));
	assert_int_equal(v, 99);	/* untouched on failure */
}

static void
test_parse_int64_19_digits_accepted(void **state)
{
	int64_t	 v;

	(void)state;
	assert_true(parse_any("1000000000000000000", &v));
	assert_true(v == INT64_C(1000000000000000000));
	assert_true(parse_any("0000000000000000001", &v));
	assert_int_equal(v, 1);
}

static void
test_parse_int64_20_digits_rejected(void **state)
{
	int64_t	 v;

	(void)state;
	assert_false(parse_any("10000000000000000000", &v));
	assert_false(parse_any("00000000000000000001", &v));
	assert_false(parse_any("-00000000000000000001", &v));
}

static void
test_parse_int64_rejects_junk(void **state)
{
	int64_t	 v;

	(void)state;
	assert_false(parse_any("", &v));
	assert_false(parse_any("-", &v));
	assert_false(parse_any("+1", &v));
	assert_false(parse_any(" 1", &v));
	assert_false(parse_any("1 ", &v));
	assert_false(parse_any("--1", &v));
	assert_false(parse_any("1-", &v));
	assert_false(parse_any("12a", &v));
	assert_false(parse_any("0x10", &v));
	assert_false(parse_any("1e3", &v));
	assert_false(parse_any("1.0", &v));
}

static void
test_parse_int64_bounds_inclusive(void **state)
{
	int64_t	 v;

	(void)state;
	assert_true(keel_parse_int64("1", 1, 100, &v));
	assert_true(keel_parse_int64("100", 1, 100, &v));
	assert_int_equal(v, 100);
	assert_false(keel_parse_int64("0", 1, 100, &v));
	assert_false(keel_parse_int64("101", 1, 100, &v));
	assert_true(keel_parse_int64("-5", -5, -1, &v));
	assert_int_equal(v, -5);
}

static void
test_utf8_chars_counts_code_points(void **state)
{
	(void)state;
	assert_int_equal(keel_utf8_chars(""), 0);
	assert_int_equal(keel_utf8_chars("abc"), 3);
	/* é (2 bytes), € (3), 🚗 (4): three characters in nine bytes. */
	assert_int_equal(keel_utf8_chars("\xc3\xa9\xe2\x82\xac"
	    "\xf0\x9f\x9a\x97"), 3);
}

static void
test_one_line_refuses_control_characters(void **state)
{
	(void)state;
	assert_true(keel_text_one_line("Ann O'Brien, \"Nan\" \xc3\xa9"));
	assert_true(keel_text_one_line(""));
	assert_false(keel_text_one_line("Ann\r\nBcc: x@y.z"));
	assert_false(keel_text_one_line("tab\there"));
	assert_false(keel_text_one_line("del\x7f"));
}

/* "a<c>b" with code point c as UTF-8, into buf. */
static const char *
around(char buf[8], unsigned int c)
{
	if (c < 0x800)
		snprintf(buf, 8, "a%c%cb", (int)(0xc0 | (c >> 6)),
		    (int)(0x80 | (c & 0x3f)));
	else
		snprintf(buf, 8, "a%c%c%cb", (int)(0xe0 | (c >> 12)),
		    (int)(0x80 | ((c >> 6) & 0x3f)), (int)(0x80 | (c & 0x3f)));
	return buf;
}

static void
test_one_line_refuses_c1_separators_and_bidi_controls(void **state)
{
	char		 buf[8];
	unsigned int	 c;

	(void)state;
	/* C1: U+0085 NEL ends a line, U+009B is an 8-bit CSI. */
	for (c = 0x80; c <= 0x9f; c++)
		assert_false(keel_text_one_line(around(buf, c)));
	/* Separators, bidi embeddings and overrides, isolates. */
	for (c = 0x2028; c <= 0x202e; c++)
		assert_false(keel_text_one_line(around(buf, c)));
	for (c = 0x2066; c <= 0x2069; c++)
		assert_false(keel_text_one_line(around(buf, c)));
	/* Their neighbours are text: NBSP, ÿ, ‧, NNBSP, WJ, U+206A. */
	assert_true(keel_text_one_line(around(buf, 0xa0)));
	assert_true(keel_text_one_line(around(buf, 0xff)));
	assert_true(keel_text_one_line(around(buf, 0x2027)));
	assert_true(keel_text_one_line(around(buf, 0x202f)));
	assert_true(keel_text_one_line(around(buf, 0x2060)));
	assert_true(keel_text_one_line(around(buf, 0x206a)));
	/* A bidi mark (LRM) and names in other scripts stay allowed. */
	assert_true(keel_text_one_line(around(buf, 0x200e)));
	assert_true(keel_text_one_line("\xd7\xa9\xd7\xa8\xd7\x94 "
	    "\xe5\xb1\xb1\xe7\x94\xb0 \xf0\x9f\x9a\x97"));
	/* One at the very end of the string. */
	assert_false(keel_text_one_line("Ann\xe2\x80\xae"));
	assert_false(keel_text_one_line("Ann\xc2\x85"));
}

static void
test_text_int_matches_printf(void **state)
{
	static const int64_t vals[] = { 0, 7, -7, 10, 1234567890,
	    INT64_MAX, INT64_MIN, -1 };
	char	 out[KEEL_TEXT_INT_MAX], want[32];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		snprintf(want, sizeof(want), "%lld", (long long)vals[i]);
		assert_int_equal(keel_text_int(out, vals[i]), strlen(want));
		assert_string_equal(out, want);
	}
}

static void
test_text_copy_matches_snprintf(void **state)
{
	static const char *const srcs[] = { "", "a", "abc", "abcd", "abcdef" };
	char	 out[8], want[8];
	size_t	 i, size;

	(void)state;
	for (i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++)
		for (size = 1; size <= 5; size++) {
			memset(out, 'x', sizeof(out));
			snprintf(want, size, "%s", srcs[i]);
			assert_int_equal(keel_text_copy(out, size, srcs[i]),
			    strlen(want));
			assert_string_equal(out, want);
			/* Nothing written past size. */
			assert_true(out[size] == 'x');
		}
}

/* Collects the items keel_text_each() hands out, "|"-separated. */
static bool
collect(const char *s, size_t n, void *arg)
{
	char	*out = arg;

	if (*out != '\0')
		strcat(out, "|");
	strncat(out, s, n);
	return strncmp(s, "stop", n) != 0;
}

static void
test_text_each_trims_and_skips_empty(void **state)
{
	char	 out[64];

	(void)state;
	out[0] = '\0';
	assert_true(keel_text_each(" a, b ,,c\t,", collect, out));
	assert_string_equal(out, "a|b|c");
	out[0] = '\0';
	assert_true(keel_text_each("", collect, out));
	assert_string_equal(out, "");
}

static void
test_text_each_stops_when_told(void **state)
{
	char	 out[64];

	(void)state;
	out[0] = '\0';
	assert_false(keel_text_each("a, stop, b", collect, out));
	assert_string_equal(out, "a|stop");
}


static void
test_request_id_valid(void **state)
{
	char	 max[KEEL_TEXT_REQUEST_ID_MAX + 2];

	(void)state;
	assert_true(keel_text_request_id_valid("0f3a9c"));
	assert_true(keel_text_request_id_valid(
	    "6ba7b810-9dad-11d1-80b4-00c04fd430c8"));
	assert_true(keel_text_request_id_valid("edge.1:trace_2"));
	assert_false(keel_text_request_id_valid(""));
	assert_false(keel_text_request_id_valid("a b"));
	assert_false(keel_text_request_id_valid("a\r\nX-Evil: 1"));
	assert_false(keel_text_request_id_valid("a\"b"));
	memset(max, 'a', sizeof(max));
	max[KEEL_TEXT_REQUEST_ID_MAX] = '\0';
	assert_true(keel_text_request_id_valid(max));
	max[KEEL_TEXT_REQUEST_ID_MAX] = 'a';
	max[KEEL_TEXT_REQUEST_ID_MAX + 1] = '\0';
	assert_false(keel_text_request_id_valid(max));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_valid_empty_and_ascii),
		cmocka_unit_test(test_utf8_valid_two_byte_bounds),
		cmocka_unit_test(test_utf8_valid_three_byte_bounds),
		cmocka_unit_test(test_utf8_valid_surrogates_rejected),
		cmocka_unit_test(test_utf8_valid_four_byte_bounds),
		cmocka_unit_test(test_utf8_valid_bad_bytes_rejected),
		cmocka_unit_test(test_utf8_valid_truncated_sequence_rejected),
		cmocka_unit_test(test_utf8_valid_bad_continuation_rejected),
		cmocka_unit_test(test_utf8_valid_mixed_text),
		cmocka_unit_test(test_date_valid_leap_years),
		cmocka_unit_test(test_date_valid_month_and_day_bounds),
		cmocka_unit_test(test_date_valid_rejects_bad_shape),
		cmocka_unit_test(test_date_valid_rejects_trailing_chars),
		cmocka_unit_test(test_time_format_is_rfc3339_utc_with_microseconds),
		cmocka_unit_test(test_parse_int64_plain),
		cmocka_unit_test(test_parse_int64_max_accepted),
		cmocka_unit_test(test_parse_int64_min_accepted),
		cmocka_unit_test(test_parse_int64_overflow_rejected),
		cmocka_unit_test(test_parse_int64_19_digits_accepted),
		cmocka_unit_test(test_parse_int64_20_digits_rejected),
		cmocka_unit_test(test_parse_int64_rejects_junk),
		cmocka_unit_test(test_parse_int64_bounds_inclusive),
		cmocka_unit_test(test_utf8_chars_counts_code_points),
		cmocka_unit_test(test_one_line_refuses_control_characters),
		cmocka_unit_test(
		    test_one_line_refuses_c1_separators_and_bidi_controls),
		cmocka_unit_test(test_text_int_matches_printf),
		cmocka_unit_test(test_text_copy_matches_snprintf),
		cmocka_unit_test(test_text_each_trims_and_skips_empty),
		cmocka_unit_test(test_text_each_stops_when_told),
		cmocka_unit_test(test_request_id_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
