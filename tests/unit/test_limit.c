/* SPDX-License-Identifier: ISC */
/*
 * test_limit.c -- unit tests for the pure parts of limit.c, cache.c and
 * idem.c: limiter specs, client addresses (IPv6 /56, X-Forwarded-For
 * from trusted proxies only), the RateLimit header values, cache keys
 * and idempotency keys.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keel/cache.h"
#include "keel/idem.h"
#include "keel/limit.h"

static void
addr_is(const char *remote, const char *xff, const char *trusted, int bits,
    const char *want)
{
	char	 out[64];

	assert_int_equal(keel_limit_client_addr(remote, xff, trusted, bits,
	    out, sizeof(out)), 0);
	assert_string_equal(out, want);
}

static void
test_rate_specs(void **state)
{
	int	 l, w;

	(void)state;
	assert_int_equal(keel_limit_parse_rate("100/900", &l, &w), 0);
	assert_int_equal(l, 100);
	assert_int_equal(w, 900);
	assert_int_equal(keel_limit_parse_rate("off", &l, &w), 0);
	assert_int_equal(l, 0);
	assert_int_equal(keel_limit_parse_rate("100", &l, &w), -1);
	assert_int_equal(keel_limit_parse_rate("/900", &l, &w), -1);
	assert_int_equal(keel_limit_parse_rate("0/900", &l, &w), -1);
	assert_int_equal(keel_limit_parse_rate("5/0", &l, &w), -1);
	assert_int_equal(keel_limit_parse_rate("5/86401", &l, &w), -1);
	assert_int_equal(keel_limit_parse_rate("5/9x", &l, &w), -1);
	assert_int_equal(keel_limit_parse_rate("99999999999/9", &l, &w), -1);
}

static void
test_names_and_proxies(void **state)
{
	(void)state;
	assert_int_equal(keel_limit_names_valid(""), 0);
	assert_int_equal(keel_limit_names_valid("auth"), 0);
	assert_int_equal(keel_limit_names_valid("auth, write,read,api"), 0);
	assert_int_equal(keel_limit_names_valid("auth,login"), -1);
	assert_int_equal(keel_limit_proxies_valid(""), 0);
	assert_int_equal(keel_limit_proxies_valid("127.0.0.1, 10.0.0.0/8, "
	    "::1, 2001:db8::/32"), 0);
	assert_int_equal(keel_limit_proxies_valid("10.0.0.0/33"), -1);
	assert_int_equal(keel_limit_proxies_valid("2001:db8::/129"), -1);
	assert_int_equal(keel_limit_proxies_valid("proxy.example"), -1);
}

static void
test_addr_plain(void **state)
{
	(void)state;
	addr_is("192.0.2.7", NULL, "", 56, "192.0.2.7");
	addr_is("::ffff:192.0.2.7", NULL, "", 56, "192.0.2.7");
	/* One /56 is one client however its low bits rotate. */
	addr_is("2001:db8:0:ab12:1:2:3:4", NULL, "", 56,
	    "2001:db8:0:ab00::/56");
	addr_is("2001:db8:0:abff::9", NULL, "", 56, "2001:db8:0:ab00::/56");
	addr_is("2001:db8:0:ab12:1:2:3:4", NULL, "", 64,
	    "2001:db8:0:ab12::/64");
	addr_is("2001:db8::1", NULL, "", 128, "2001:db8::1/128");
	/* Not an address at all (a unix socket peer): made safe. */
	addr_is("un ix\n", NULL, "", 56, "un_ix_");
}

static void
test_addr_forwarded(void **state)
{
	const char	*t = "127.0.0.1, 10.1.0.0/16";

	(void)state;
	/* Untrusted peer: its X-Forwarded-For is a claim, ignored. */
	addr_is("192.0.2.7", "203.0.113.9", t, 56, "192.0.2.7");
	/* Trusted peer: the rightmost hop it did not add itself. */
	addr_is("127.0.0.1", "203.0.113.9", t, 56, "203.0.113.9");
	addr_is("127.0.0.1", "6.6.6.6, 203.0.113.9", t, 56, "203.0.113.9");
	addr_is("127.0.0.1", "6.6.6.6,203.0.113.9 , 10.1.2.3", t, 56,
	    "203.0.113.9");
	/* Only proxies: the leftmost is as far as we can see. */
	addr_is("127.0.0.1", "10.1.9.9, 10.1.2.3", t, 56, "10.1.9.9");
	/* Junk stops the walk at the last good hop. */
	addr_is("127.0.0.1", "203.0.113.9, junk", t, 56, "127.0.0.1");
	addr_is("127.0.0.1", "", t, 56, "127.0.0.1");
	addr_is("127.0.0.1", "2001:db8:0:ab12::5", t, 56,
	    "2001:db8:0:ab00::/56");
	addr_is("::1", "203.0.113.9", "::1", 56, "203.0.113.9");
}

static void
test_headers(void **state)
{
	struct keel_limit_result	 r[2];
	struct keel_limit_headers	 h;

	(void)state;
	memset(r, 0, sizeof(r));
	r[0] = (struct keel_limit_result){ KEEL_LIMIT_API, 100, 900, 99,
	    899001 };
	r[1] = (struct keel_limit_result){ KEEL_LIMIT_READ, 200, 900, 150,
	    900000 };
	keel_limit_format(r, 2, &h);
	assert_string_equal(h.limit, "100");
	assert_string_equal(h.remaining, "99");
	assert_string_equal(h.reset, "900");
	assert_string_equal(h.policy, "\"api\";q=100;w=900, "
	    "\"read\";q=200;w=900");
	assert_string_equal(h.fields, "\"api\";r=99;t=900, "
	    "\"read\";r=150;t=900");
	/* Equal remaining: the longer wait is the one to report. */
	r[1].remaining = 99;
	r[1].reset_ms = 1000;
	r[0].reset_ms = 1;
	keel_limit_format(r, 2, &h);
	assert_string_equal(h.limit, "200");
	assert_string_equal(h.reset, "1");
}

static void
test_cache_keys(void **state)
{
	char	 k[KEEL_CACHE_KEY_MAX], k2[KEEL_CACHE_KEY_MAX];
	char	 ns[KEEL_CACHE_NS_MAX + 2];
	size_t	 i, n;

	(void)state;
	assert_int_equal(keel_cache_key(k, sizeof(k), 'g', "cars", NULL), 11);
	assert_string_equal(k, "keel:g:cars");
	n = keel_cache_key(k, sizeof(k), 'e', "notifications:user:42",
	    "list? a b\r\n\x01\xc3\xa9");
	assert_int_equal(n, strlen("keel:e:notifications:user:42:") + 32);
	/* memcached: at most 250 bytes, no spaces or control characters. */
	for (i = 0; i < n; i++)
		assert_true(k[i] > ' ' && k[i] < 0x7f);
	assert_int_equal(keel_cache_key(k2, sizeof(k2), 'e',
	    "notifications:user:42", "list? a b"), n);
	assert_string_not_equal(k, k2);
	assert_int_equal(keel_cache_key(k, sizeof(k), 'e', "bad ns", "x"), 0);
	assert_int_equal(keel_cache_key(k, sizeof(k), 'e', "", "x"), 0);
	memset(ns, 'n', sizeof(ns) - 1);
	ns[sizeof(ns) - 1] = '\0';
	assert_int_equal(keel_cache_key(k, sizeof(k), 'e', ns, "x"), 0);
	ns[KEEL_CACHE_NS_MAX] = '\0';
	assert_true(keel_cache_key(k, sizeof(k), 'e', ns, "x") <= 250);
}

static void
test_idem_keys(void **state)
{
	char	 k[300];

	(void)state;
	assert_true(keel_idem_key_valid("a"));
	assert_true(keel_idem_key_valid("8e03978e-40d5-43e8-bc93-6894a57f9324"));
	assert_false(keel_idem_key_valid(""));
	assert_false(keel_idem_key_valid("caf\xc3\xa9"));
	assert_false(keel_idem_key_valid("a\tb"));
	memset(k, 'k', sizeof(k) - 1);
	k[sizeof(k) - 1] = '\0';
	assert_false(keel_idem_key_valid(k));
	k[KEEL_IDEM_KEY_MAX] = '\0';
	assert_true(keel_idem_key_valid(k));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_specs),
		cmocka_unit_test(test_names_and_proxies),
		cmocka_unit_test(test_addr_plain),
		cmocka_unit_test(test_addr_forwarded),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_cache_keys),
		cmocka_unit_test(test_idem_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
