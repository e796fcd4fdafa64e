/* SPDX-License-Identifier: ISC */
/*
 * test_sse.c -- unit tests for sse.c: event framing, Last-Event-ID and
 * the notification messages the stream app fans out.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/mem.h"
#include "keel/sse.h"

#define PARSE(lit, m)	keel_sse_msg_parse((lit), sizeof(lit) - 1, (m))

static void
test_event_has_id_event_and_data(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	assert_true(keel_sse_event(&b, 42, "notification", "{\"id\":42}"));
	keel_buf_putc(&b, '\0');
	assert_string_equal(b.data,
	    "id: 42\nevent: notification\ndata: {\"id\":42}\n\n");
	keel_buf_free(&b);
}

static void
test_event_without_id(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	assert_true(keel_sse_event(&b, -1, "reconnect", "{}"));
	keel_buf_putc(&b, '\0');
	assert_string_equal(b.data, "event: reconnect\ndata: {}\n\n");
	keel_buf_free(&b);
}

static void
test_event_refuses_line_breaks(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	assert_false(keel_sse_event(&b, 1, "n", "{}\ndata: forged"));
	assert_false(keel_sse_event(&b, 1, "n", "{}\r"));
	assert_false(keel_sse_event(&b, 1, "n\nid: 9", "{}"));
	assert_int_equal(b.len, 0);
	keel_buf_free(&b);
}

static void
test_last_id_digits(void **state)
{
	int64_t	 v = -1;

	(void)state;
	assert_true(keel_sse_last_id("0", &v));
	assert_int_equal(v, 0);
	assert_true(keel_sse_last_id("123456789012345678", &v));
	assert_int_equal(v, 123456789012345678LL);
}

static void
test_last_id_rejects_junk(void **state)
{
	int64_t	 v = 7;

	(void)state;
	assert_false(keel_sse_last_id(NULL, &v));
	assert_false(keel_sse_last_id("", &v));
	assert_false(keel_sse_last_id("-1", &v));
	assert_false(keel_sse_last_id("+1", &v));
	assert_false(keel_sse_last_id(" 1", &v));
	assert_false(keel_sse_last_id("1 ", &v));
	assert_false(keel_sse_last_id("1e3", &v));
	assert_false(keel_sse_last_id("1234567890123456789", &v));
	assert_int_equal(v, 7);
}

static void
test_msg_parse_good(void **state)
{
	struct keel_sse_msg	 m;

	(void)state;
	assert_true(PARSE("{\"userId\": 5, \"prev\": 3, \"notification\": "
	    "{\"id\": 9, \"title\": \"a/b\\nc\"}}", &m));
	assert_int_equal(m.uid, 5);
	assert_int_equal(m.prev, 3);
	assert_int_equal(m.id, 9);
	assert_string_equal(m.item, "{\"id\":9,\"title\":\"a/b\\nc\"}");
	keel_sse_msg_free(&m);
	assert_null(m.item);
}

static void
test_msg_parse_first_has_prev_zero(void **state)
{
	struct keel_sse_msg	 m;

	(void)state;
	assert_true(PARSE("{\"userId\":1,\"prev\":0,\"notification\":"
	    "{\"id\":1}}", &m));
	assert_int_equal(m.prev, 0);
	keel_sse_msg_free(&m);
}

static void
test_msg_parse_rejects_bad_shapes(void **state)
{
	struct keel_sse_msg	 m;

	(void)state;
	assert_false(PARSE("", &m));
	assert_false(PARSE("[]", &m));
	assert_false(PARSE("{\"userId\":1,\"prev\":0}", &m));
	assert_false(PARSE("{\"userId\":\"1\",\"prev\":0,"
	    "\"notification\":{\"id\":2}}", &m));
	assert_false(PARSE("{\"userId\":0,\"prev\":0,"
	    "\"notification\":{\"id\":2}}", &m));
	assert_false(PARSE("{\"userId\":1,\"prev\":-1,"
	    "\"notification\":{\"id\":2}}", &m));
	assert_false(PARSE("{\"userId\":1,\"prev\":0,"
	    "\"notification\":[]}", &m));
	assert_false(PARSE("{\"userId\":1,\"prev\":0,"
	    "\"notification\":{\"id\":0}}", &m));
	assert_null(m.item);
}

static void
test_msg_parse_rejects_prev_not_below_id(void **state)
{
	struct keel_sse_msg	 m;

	(void)state;
	assert_false(PARSE("{\"userId\":1,\"prev\":2,"
	    "\"notification\":{\"id\":2}}", &m));
}

static void
test_msg_parse_rejects_trailing_bytes(void **state)
{
	struct keel_sse_msg	 m;

	(void)state;
	assert_false(PARSE("{\"userId\":1,\"prev\":0,"
	    "\"notification\":{\"id\":2}} x", &m));
}

static void
test_item_is_one_plain_line(void **state)
{
	static const char	 pg[] = "{\"id\" : 4, \"body\" : \"x\\ny\", "
	    "\"data\" : {\"a\" : [1, 2]}}";
	char			*s;

	(void)state;
	s = keel_sse_item(pg, sizeof(pg) - 1);
	assert_non_null(s);
	assert_string_equal(s,
	    "{\"id\":4,\"body\":\"x\\ny\",\"data\":{\"a\":[1,2]}}");
	free(s);
	assert_null(keel_sse_item("4", 1));
	assert_null(keel_sse_item("{", 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_has_id_event_and_data),
		cmocka_unit_test(test_event_without_id),
		cmocka_unit_test(test_event_refuses_line_breaks),
		cmocka_unit_test(test_last_id_digits),
		cmocka_unit_test(test_last_id_rejects_junk),
		cmocka_unit_test(test_msg_parse_good),
		cmocka_unit_test(test_msg_parse_first_has_prev_zero),
		cmocka_unit_test(test_msg_parse_rejects_bad_shapes),
		cmocka_unit_test(test_msg_parse_rejects_prev_not_below_id),
		cmocka_unit_test(test_msg_parse_rejects_trailing_bytes),
		cmocka_unit_test(test_item_is_one_plain_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
