/* SPDX-License-Identifier: ISC */
/*
 * test_notify.c -- unit tests for notify.c's pure parts (the channel, its
 * message, the ticket keys) and the per-user cache namespace they use
 * (cache.c).  Publishing and tickets in Redis run in
 * tests/e2e/test_notifications.py.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keel/auth.h"
#include "keel/cache.h"
#include "keel/mem.h"
#include "keel/notify.h"

static void
test_channel_names_the_user(void **state)
{
	char	 ch[KEEL_NOTIFY_CHANNEL_MAX];

	(void)state;
	assert_int_equal(keel_notify_channel(ch, sizeof(ch), 42), 14);
	assert_string_equal(ch, "keel:notify:42");
}

static void
test_channel_fits_the_largest_id(void **state)
{
	char	 ch[KEEL_NOTIFY_CHANNEL_MAX];

	(void)state;
	assert_int_not_equal(keel_notify_channel(ch, sizeof(ch), INT64_MAX),
	    0);
	assert_string_equal(ch, "keel:notify:9223372036854775807");
}

static void
test_channel_too_small_is_zero(void **state)
{
	char	 ch[8];

	(void)state;
	assert_int_equal(keel_notify_channel(ch, sizeof(ch), 42), 0);
}

static void
test_message_wraps_the_item(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	const char	*item = "{\"id\":7,\"kind\":\"k\"}";

	(void)state;
	keel_notify_message(&b, 42, 5, item, strlen(item));
	assert_string_equal(b.data, "{\"userId\":42,\"prev\":5,"
	    "\"notification\":{\"id\":7,\"kind\":\"k\"}}");
	keel_buf_free(&b);
}

static void
test_message_first_has_prev_0(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	keel_notify_message(&b, 1, 0, "{}", 2);
	assert_string_equal(b.data,
	    "{\"userId\":1,\"prev\":0,\"notification\":{}}");
	keel_buf_free(&b);
}

static void
test_ticket_key_is_the_sha256(void **state)
{
	char	 key[KEEL_NOTIFY_TICKET_KEY_MAX];

	(void)state;
	/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
	keel_notify_ticket_key("abc", key);
	assert_string_equal(key, "keel:sse:ticket:"
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
test_ticket_key_never_holds_the_ticket(void **state)
{
	char	 tok[KEEL_AUTH_TOKEN_LEN + 1], key[KEEL_NOTIFY_TICKET_KEY_MAX];

	(void)state;
	keel_auth_token_new(tok);
	keel_notify_ticket_key(tok, key);
	assert_null(strstr(key, tok));
	assert_int_equal(strlen(key), strlen("keel:sse:ticket:") + 64);
}

static void
test_user_ns(void **state)
{
	char	 ns[KEEL_NOTIFY_NS_MAX];

	(void)state;
	assert_int_equal(keel_cache_user_ns(ns, sizeof(ns), KEEL_NOTIFY_NS,
	    42), strlen("notifications:user:42"));
	assert_string_equal(ns, "notifications:user:42");
}

static void
test_user_ns_differs_per_user(void **state)
{
	char	 a[KEEL_NOTIFY_NS_MAX], b[KEEL_NOTIFY_NS_MAX];

	(void)state;
	keel_cache_user_ns(a, sizeof(a), KEEL_NOTIFY_NS, 4);
	keel_cache_user_ns(b, sizeof(b), KEEL_NOTIFY_NS, 42);
	assert_string_not_equal(a, b);
}

static void
test_user_ns_too_long_is_zero(void **state)
{
	char	 big[KEEL_CACHE_NS_MAX + 1], ns[2 * KEEL_CACHE_NS_MAX];

	(void)state;
	memset(big, 'n', KEEL_CACHE_NS_MAX);
	big[KEEL_CACHE_NS_MAX] = '\0';
	assert_int_equal(keel_cache_user_ns(ns, sizeof(ns), big, 1), 0);
	assert_int_equal(keel_cache_user_ns(ns, 4, "ab", 1), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_channel_names_the_user),
		cmocka_unit_test(test_channel_fits_the_largest_id),
		cmocka_unit_test(test_channel_too_small_is_zero),
		cmocka_unit_test(test_message_wraps_the_item),
		cmocka_unit_test(test_message_first_has_prev_0),
		cmocka_unit_test(test_ticket_key_is_the_sha256),
		cmocka_unit_test(test_ticket_key_never_holds_the_ticket),
		cmocka_unit_test(test_user_ns),
		cmocka_unit_test(test_user_ns_differs_per_user),
		cmocka_unit_test(test_user_ns_too_long_is_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
