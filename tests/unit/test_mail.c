/* SPDX-License-Identifier: ISC */
/* test_mail.c -- MIME building, RFC 2047 subjects, Message-IDs, backoff. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keel/mail.h"
#include "keel/mem.h"
#include "keel/queue.h"
#include "keel/text.h"

static void
test_ascii_subject_left_alone(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	keel_mail_encode_header(&b, "Reset your keel password");
	assert_string_equal(b.data, "Reset your keel password");
	keel_buf_free(&b);
}

static void
test_utf8_subject_encoded_words(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	keel_mail_encode_header(&b, "Zoë");
	/* "Zoë" = 5a 6f c3 ab */
	assert_string_equal(b.data, "=?UTF-8?B?Wm/Dqw==?=");
	keel_buf_free(&b);
}

/* Long text: words under 76 characters, folded, never a split character. */
static void
test_long_subject_split_between_characters(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	const char	*s = "ééééééééééééééééééééééééééééééééééééééééééééé";
	char		*p, *line;

	(void)state;
	keel_mail_encode_header(&b, s);
	assert_non_null(strstr(b.data, "?=\r\n =?UTF-8?B?"));
	for (line = b.data; (p = strstr(line, "\r\n")) != NULL; line = p + 2)
		assert_true(p - line <= 75);
	assert_true(strlen(line) <= 75);
	keel_buf_free(&b);
}

static void
test_message_id_from_key_and_sender_domain(void **state)
{
	char	 a[128], b[128], c[128];

	(void)state;
	keel_mail_message_id(a, sizeof(a), "inv-1", NULL,
	    "keel <no@keel.example>");
	keel_mail_message_id(b, sizeof(b), "inv-1", "", "no@keel.example");
	keel_mail_message_id(c, sizeof(c), "inv-2", NULL, "no@keel.example");
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	/* sha256("inv-1")[0..16) in hex: no origin, as before origins */
	assert_string_equal(a,
	    "<eec0310629106a7a7e910c4f396ec98f.keel@keel.example>");
	assert_int_equal(strlen(a), 1 + 32 + strlen(".keel@keel.example") + 1);
	assert_non_null(strstr(a, ".keel@keel.example>"));
}

static void
test_message_id_from_key_and_origin(void **state)
{
	char	 a[128], b[128], c[128], d[128];

	(void)state;
	/* Attempt 7 before a restore of PostgreSQL and after: one key, two
	 * outbox rows, two messages; one row's retry, one message. */
	keel_mail_message_id(a, sizeof(a), "email:attempt:7",
	    "12@1700000000000001", "no@keel.example");
	keel_mail_message_id(b, sizeof(b), "email:attempt:7",
	    "12@1700000999000002", "no@keel.example");
	keel_mail_message_id(c, sizeof(c), "email:attempt:7",
	    "12@1700000000000001", "no@keel.example");
	keel_mail_message_id(d, sizeof(d), "email:attempt:7", NULL,
	    "no@keel.example");
	assert_string_not_equal(a, b);
	assert_string_equal(a, c);
	assert_string_not_equal(a, d);
	assert_string_not_equal(b, d);
}

static void
test_build_carries_a_valid_request_id_only(void **state)
{
	struct keel_mail_msg	 m = { .to = "a@b.example", .subject = "Hi",
	    .text = "text", .idem_key = "k1", .request_id = "trace-7f3a:01" };
	struct keel_buf		 b = { NULL, 0, 0 };

	(void)state;
	keel_mail_build(&b, "no@keel.example", &m, 0);
	keel_buf_putc(&b, '\0');
	assert_non_null(strstr(b.data, "\r\nX-Request-Id: trace-7f3a:01\r\n"));
	keel_buf_free(&b);
	m.request_id = "evil\r\nBcc: x@y.example";
	keel_mail_build(&b, "no@keel.example", &m, 0);
	keel_buf_putc(&b, '\0');
	assert_null(strstr(b.data, "X-Request-Id"));
	assert_null(strstr(b.data, "Bcc"));
	keel_buf_free(&b);
	m.request_id = NULL;
	keel_mail_build(&b, "no@keel.example", &m, 0);
	keel_buf_putc(&b, '\0');
	assert_null(strstr(b.data, "X-Request-Id"));
	keel_buf_free(&b);
}

static void
test_build_multipart_with_both_parts(void **state)
{
	struct keel_mail_msg	 m = { "a@b.example", "Ann", "Hi ✓", "text",
	    "<p>html</p>", "k1", NULL, NULL };
	struct keel_buf		 b = { NULL, 0, 0 };
	char			 mid[128];
	size_t			 i;

	(void)state;
	keel_mail_build(&b, "keel <no@keel.example>", &m, 0);
	keel_mail_message_id(mid, sizeof(mid), "k1", NULL, "no@keel.example");
	assert_non_null(strstr(b.data, "Message-ID: "));
	assert_non_null(strstr(b.data, mid));
	assert_non_null(strstr(b.data, "Date: Thu, 01 Jan 1970 00:00:00 "
	    "+0000\r\n"));
	assert_non_null(strstr(b.data, "Subject: =?UTF-8?B?"));
	assert_non_null(strstr(b.data, "multipart/alternative"));
	assert_non_null(strstr(b.data, "text/plain; charset=UTF-8"));
	assert_non_null(strstr(b.data, "text/html; charset=UTF-8"));
	/* 7-bit, CRLF only. */
	for (i = 0; i < b.len; i++) {
		assert_true((unsigned char)b.data[i] < 0x80);
		if (b.data[i] == '\n')
			assert_true(i > 0 && b.data[i - 1] == '\r');
	}
	keel_buf_free(&b);
}

static void
test_address_validation(void **state)
{
	(void)state;
	assert_true(keel_text_email_valid("a@b.example"));
	assert_false(keel_text_email_valid("a@b"));
	assert_false(keel_text_email_valid("a b@c.example"));
	assert_false(keel_text_email_valid("a@b.example\r\nRCPT TO:<x@y.z>"));
	assert_false(keel_text_email_valid("<a@b.example>"));
	assert_false(keel_text_email_valid("@b.example"));
	assert_false(keel_text_email_valid(NULL));
}

/* The probe's addresses, which the API took before it shared this check. */
static void
test_render_refuses_what_the_api_refuses(void **state)
{
	static const char *const bad[] = { "x<y@e2e.test", "user@localhost",
	    "\xc3\xbc@e2e.test", "q\\\"x\\\"@e2e.test", "a@e2e.test.",
	    "a(x)@e2e.test" };
	struct keel_arena	*a = keel_arena_new();
	struct keel_mail_msg	 m;
	char			 payload[128], why[256];
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(payload, sizeof(payload), "{\"to\":\"%s\"}", bad[i]);
		assert_int_equal(keel_mail_render(a, "test", payload, "k", &m,
		    why, sizeof(why)), KEEL_EINVAL);
		assert_non_null(strstr(why, "not an email address"));
	}
	keel_arena_free(a);
}

static void
test_render_rejects_bad_payloads(void **state)
{
	struct keel_arena	*a = keel_arena_new();
	struct keel_mail_msg	 m;
	char			 why[256];

	(void)state;
	assert_int_equal(keel_mail_render(a, "invitation", "nope", "k", &m,
	    why, sizeof(why)), KEEL_EINVAL);
	assert_int_equal(keel_mail_render(a, "invitation",
	    "{\"to\":\"a@b.example\",\"link\":\"javascript:x\"}", "k", &m,
	    why, sizeof(why)), KEEL_EINVAL);
	assert_int_equal(keel_mail_render(a, "nosuch",
	    "{\"to\":\"a@b.example\"}", "k", &m, why, sizeof(why)),
	    KEEL_ENOENT);
	assert_int_equal(keel_mail_render(a, "password_reset",
	    "{\"to\":\"a@b.example\",\"name\":\"<b>\",\"link\":"
	    "\"https://k.example/r?t=1\"}", "k", &m, why, sizeof(why)),
	    KEEL_OK);
	assert_non_null(strstr(m.html, "&lt;b&gt;"));
	keel_arena_free(a);
}

static void
test_render_attempt_result(void **state)
{
	struct keel_arena	*a = keel_arena_new();
	struct keel_mail_msg	 m;
	char			 why[256];

	(void)state;
	assert_int_equal(keel_mail_render(a, "attempt_result",
	    "{\"to\":\"a@b.example\",\"name\":\"Ann\",\"testTitle\":"
	    "\"Algebra <1>\",\"score\":67,\"correct\":2,\"total\":3,"
	    "\"late\":false}", "k", &m, why, sizeof(why)), KEEL_OK);
	assert_string_equal(m.subject, "Your result: Algebra <1>");
	assert_non_null(strstr(m.text, "67% on \"Algebra <1>\": 2 of 3"));
	assert_null(strstr(m.text, "late"));
	assert_non_null(strstr(m.html, "Algebra &lt;1&gt;"));
	/* Late says so; a stored title with a line break stays one line. */
	assert_int_equal(keel_mail_render(a, "attempt_result",
	    "{\"to\":\"a@b.example\",\"testTitle\":\"A\\r\\nBcc: x\","
	    "\"score\":0,\"correct\":0,\"total\":1,\"late\":true}", "k",
	    &m, why, sizeof(why)), KEEL_OK);
	assert_string_equal(m.subject, "Your result: A  Bcc: x (late)");
	assert_non_null(strstr(m.text, "marked late"));
	assert_int_equal(keel_mail_render(a, "attempt_result",
	    "{\"to\":\"a@b.example\",\"testTitle\":\"A\",\"score\":0,"
	    "\"correct\":2,\"total\":1}", "k", &m, why, sizeof(why)),
	    KEEL_EINVAL);
	keel_arena_free(a);
}

/* The To: line keel_mail_build() writes for name and a@b.example. */
static char *
to_line(const char *name, char *out, size_t n)
{
	struct keel_mail_msg	 m = { .to = "a@b.example", .to_name = name,
	    .subject = "s", .text = "t", .idem_key = "k" };
	struct keel_buf		 b = { NULL, 0, 0 };
	const char		*p, *e;

	keel_mail_build(&b, "no@keel.example", &m, 0);
	p = strstr(b.data, "\r\nTo: ") + 6;
	e = strstr(p, "\r\n");
	snprintf(out, n, "%.*s", (int)(e - p), p);
	keel_buf_free(&b);
	return out;
}

static void
test_display_names_are_quoted_or_encoded(void **state)
{
	char	 l[256];

	(void)state;
	assert_string_equal(to_line("Ann Lee", l, sizeof(l)),
	    "Ann Lee <a@b.example>");
	/* A comma or a quote would start another address unquoted. */
	assert_string_equal(to_line("O'Brien, Ann \"Nan\"", l, sizeof(l)),
	    "\"O'Brien, Ann \\\"Nan\\\"\" <a@b.example>");
	assert_string_equal(to_line("Bob <evil@x.y>", l, sizeof(l)),
	    "\"Bob <evil@x.y>\" <a@b.example>");
	/* No control character reaches a header. */
	assert_string_equal(to_line("Ann\r\nBcc: x@y.z", l, sizeof(l)),
	    "\"Ann  Bcc: x@y.z\" <a@b.example>");
	assert_non_null(strstr(to_line("Zo\xc3\xab", l, sizeof(l)),
	    "=?UTF-8?B?"));
}

/* RFC 5322 §3.2.5: '.' is no atext, so a name holding one is quoted. */
static void
test_display_name_with_dots_is_quoted(void **state)
{
	char	 l[256];

	(void)state;
	assert_string_equal(to_line("J. R. R. Tolkien", l, sizeof(l)),
	    "\"J. R. R. Tolkien\" <a@b.example>");
	assert_string_equal(to_line(".Bob", l, sizeof(l)),
	    "\".Bob\" <a@b.example>");
}

static void
test_display_name_of_a_lone_dot_is_quoted(void **state)
{
	char	 l[256];

	(void)state;
	assert_string_equal(to_line(".", l, sizeof(l)),
	    "\".\" <a@b.example>");
}

/* Spaces alone are no phrase: "To:   <a@b.example>" has no name. */
static void
test_display_name_of_spaces_is_quoted(void **state)
{
	char	 l[256];

	(void)state;
	assert_string_equal(to_line("  ", l, sizeof(l)),
	    "\"  \" <a@b.example>");
}

static void
test_display_name_quotes_and_backslashes_escaped(void **state)
{
	char	 l[256];

	(void)state;
	assert_string_equal(to_line("A. \"B\" C\\", l, sizeof(l)),
	    "\"A. \\\"B\\\" C\\\\\" <a@b.example>");
}

/*
 * A name typed as an encoded-word ("=?UTF-8?B?QWRtaW4=?=" is "Admin")
 * is encoded whole: quoted, a lenient reader would decode it (RFC 2047
 * §5 forbids the word there, not the reader), and the To line would show
 * a name its owner never typed.  Inside the encoding it is plain text.
 */
static void
test_name_like_an_encoded_word_encoded_whole(void **state)
{
	char	 l[256];

	(void)state;
	assert_string_equal(to_line("=?UTF-8?B?QWRtaW4=?= Support", l,
	    sizeof(l)), "=?UTF-8?B?PT9VVEYtOD9CP1FXUnRhVzQ9Pz0gU3VwcG9ydA==?= "
	    "<a@b.example>");
	/* "=?" alone is enough: what follows is the reader's to guess. */
	assert_non_null(strstr(to_line("a=?b", l, sizeof(l)), "=?UTF-8?B?"));
	/* A '=' or a '?' alone is no word's start: quoted as before. */
	assert_string_equal(to_line("a=b?", l, sizeof(l)),
	    "\"a=b?\" <a@b.example>");
}

/* The same for a subject: a test's title typed as an encoded-word. */
static void
test_subject_like_an_encoded_word_encoded(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	keel_mail_encode_header(&b, "=?UTF-8?B?QWRtaW4=?=");
	assert_string_equal(b.data, "=?UTF-8?B?PT9VVEYtOD9CP1FXUnRhVzQ9Pz0=?=");
	keel_buf_free(&b);
}

/* email: the first try, a retry after 2 s, the last after 4 s. */
static void
test_backoff_doubles_from_the_base(void **state)
{
	const struct keel_queue	*q = keel_queue_find("email");

	(void)state;
	assert_non_null(q);
	assert_int_equal(q->attempts, 3);
	assert_int_equal(keel_queue_backoff_ms(q, 2), 2000);
	assert_int_equal(keel_queue_backoff_ms(q, 3), 4000);
	assert_int_equal(keel_queue_backoff_ms(q, 4), 8000);
	assert_int_equal(q->inflight, 5);
	assert_int_equal(q->rate, 10);
	assert_int_equal(q->rate_ms, 1000);
	assert_int_equal(q->keep_completed, 100);
	assert_int_equal(q->completed_age, 86400);
	assert_int_equal(q->keep_failed, 500);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii_subject_left_alone),
		cmocka_unit_test(test_utf8_subject_encoded_words),
		cmocka_unit_test(test_long_subject_split_between_characters),
		cmocka_unit_test(test_message_id_from_key_and_sender_domain),
		cmocka_unit_test(test_message_id_from_key_and_origin),
		cmocka_unit_test(test_build_multipart_with_both_parts),
		cmocka_unit_test(test_build_carries_a_valid_request_id_only),
		cmocka_unit_test(test_address_validation),
		cmocka_unit_test(test_render_refuses_what_the_api_refuses),
		cmocka_unit_test(test_render_rejects_bad_payloads),
		cmocka_unit_test(test_render_attempt_result),
		cmocka_unit_test(test_display_names_are_quoted_or_encoded),
		cmocka_unit_test(test_display_name_with_dots_is_quoted),
		cmocka_unit_test(test_display_name_of_a_lone_dot_is_quoted),
		cmocka_unit_test(test_display_name_of_spaces_is_quoted),
		cmocka_unit_test(
		    test_display_name_quotes_and_backslashes_escaped),
		cmocka_unit_test(test_name_like_an_encoded_word_encoded_whole),
		cmocka_unit_test(test_subject_like_an_encoded_word_encoded),
		cmocka_unit_test(test_backoff_doubles_from_the_base),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
