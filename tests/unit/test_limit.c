/* SPDX-License-Identifier: ISC */
/*
 * test_limit.c -- unit tests for the pure parts of limit.c, cache.c and
 * idem.c: the RateLimit header values, cache keys, idempotency keys and
 * the auth limiter's names for logins.
 * (Limiter settings are config.c's: test_config.c; client addresses are
 * addr.c's: test_addr.c.)
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "keel/cache.h"
#include "keel/idem.h"
#include "keel/limit.h"

static void
test_headers(void **state)
{
	struct keel_limit_result	 r[2];
	struct keel_limit_headers	 h;

	(void)state;
	memset(r, 0, sizeof(r));
	r[0] = (struct keel_limit_result){ .which = KEEL_LIMIT_API,
	    .limit = 100, .window = 900, .remaining = 99, .reset_ms = 899001 };
	r[1] = (struct keel_limit_result){ .which = KEEL_LIMIT_READ,
	    .limit = 200, .window = 900, .remaining = 150, .reset_ms = 900000 };
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

/* A bucket with a name of its own goes by it, not by its limiter's. */
static void
test_headers_named_bucket(void **state)
{
	struct keel_limit_result	 r[2];
	struct keel_limit_headers	 h;

	(void)state;
	r[0] = (struct keel_limit_result){ .which = KEEL_LIMIT_AUTH,
	    .limit = 5, .window = 900, .remaining = 4, .reset_ms = 900000 };
	r[1] = r[0];
	r[1].name = "auth-login";
	r[1].remaining = 3;
	keel_limit_format(r, 2, &h);
	assert_string_equal(h.policy, "\"auth\";q=5;w=900, "
	    "\"auth-login\";q=5;w=900");
	assert_string_equal(h.fields, "\"auth\";r=4;t=900, "
	    "\"auth-login\";r=3;t=900");
	assert_string_equal(h.remaining, "3");
}

/* A check another client sends: the keys keel_limit_check() uses for a
 * signed-in user, and the script's argument layout. */
static void
test_call_args(void **state)
{
	struct keel_config	 cfg;
	struct keel_limit_call	 c;
	const long long		 ok[] = { 1, 0, 99, 899000, 0, 1000 };
	const long long		 no[] = { 0, 0, 0, 5000, 150, 900000 };
	bool			 admitted;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	keel_limit_call_init(&c, &cfg, 42, "m", false);
	assert_int_equal(c.n, 0);		/* limits off */
	cfg.ratelimit = 1;
	cfg.rates[KEEL_LIMIT_API] = (struct keel_rate){ 100, 900 };
	cfg.rates[KEEL_LIMIT_READ] = (struct keel_rate){ 200, 900 };
	cfg.rates[KEEL_LIMIT_WRITE] = (struct keel_rate){ 50, 900 };
	keel_limit_call_init(&c, &cfg, 42, "host:1:7", false);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.argc, 15);
	assert_string_equal(c.argv[0], "3");
	assert_string_equal(c.argv[1], "keel:rate:api:u:42");
	assert_string_equal(c.argv[2], "keel:rate:api:u:42");
	assert_string_equal(c.argv[3], "keel:rate:read:u:42");
	assert_string_equal(c.argv[4], "host:1:7");
	assert_string_equal(c.argv[5], "2");
	assert_string_equal(c.argv[6], "keel:rate:");
	assert_string_equal(c.argv[7], "api");
	assert_string_equal(c.argv[8], "100");
	assert_string_equal(c.argv[9], "900000");
	assert_string_equal(c.argv[10], "1");
	assert_string_equal(c.argv[11], "read");
	assert_string_equal(c.argv[12], "200");
	keel_limit_call_init(&c, &cfg, 42, "m", true);
	assert_string_equal(c.argv[1], "keel:rate:api:u:{42}");
	assert_string_equal(c.argv[3], "keel:rate:read:u:{42}");
	/* Off limiters are left out. */
	cfg.rates[KEEL_LIMIT_API].limit = 0;
	keel_limit_call_init(&c, &cfg, 42, "m", false);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.res[0].which, KEEL_LIMIT_READ);
	assert_int_equal(c.argc, 10);
	/* The answer. */
	cfg.rates[KEEL_LIMIT_API].limit = 100;
	keel_limit_call_init(&c, &cfg, 42, "m", false);
	assert_true(keel_limit_call_reply(c.res, c.n, ok, 6, &admitted));
	assert_true(admitted);
	assert_int_equal(c.res[0].remaining, 99);
	assert_int_equal(c.res[1].reset_ms, 1000);
	assert_true(keel_limit_call_reply(c.res, c.n, no, 6, &admitted));
	assert_false(admitted);
	assert_int_equal(c.res[0].reset_ms, 5000);
	assert_false(keel_limit_call_reply(c.res, c.n, ok, 5, &admitted));
	assert_true(keel_limit_call_lua() != NULL);
	/* Redis away: open unless a limiter is set to fail closed. */
	assert_false(keel_limit_call_down(&cfg, c.res, c.n));
	cfg.rate_fail_closed = 1u << KEEL_LIMIT_READ;
	assert_true(keel_limit_call_down(&cfg, c.res, c.n));
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

#define SECRET_A	"0123456789abcdef0123456789abcdef"
#define SECRET_B	"fedcba9876543210fedcba9876543210"

/* The unkeyed BLAKE2b-128 the auth limiter's keys once named logins by. */
static void
unkeyed(const char *s, char out[KEEL_LIMIT_LOGIN_HEX + 1])
{
	unsigned char	 h[KEEL_LIMIT_LOGIN_HEX / 2];

	crypto_generichash(h, sizeof(h), (const unsigned char *)s, strlen(s),
	    NULL, 0);
	sodium_bin2hex(out, KEEL_LIMIT_LOGIN_HEX + 1, h, sizeof(h));
}

static void
test_login_names_are_keyed_by_the_secret(void **state)
{
	const char	*login = "ann@example.com";
	char		 a[KEEL_LIMIT_LOGIN_HEX + 1], b[KEEL_LIMIT_LOGIN_HEX + 1];
	char		 again[KEEL_LIMIT_LOGIN_HEX + 1];
	char		 plain[KEEL_LIMIT_LOGIN_HEX + 1];
	size_t		 i;

	(void)state;
	keel_limit_login_hash(SECRET_A, login, strlen(login), a);
	assert_int_equal(strlen(a), KEEL_LIMIT_LOGIN_HEX);
	for (i = 0; i < KEEL_LIMIT_LOGIN_HEX; i++)
		assert_non_null(strchr("0123456789abcdef", a[i]));
	/* Not what anyone can compute from a guess of the login ... */
	unkeyed(login, plain);
	assert_string_not_equal(a, plain);
	/* ... and another secret's name for it is another name. */
	keel_limit_login_hash(SECRET_B, login, strlen(login), b);
	assert_string_not_equal(a, b);
	/* The same secret names it alike (the key is rebuilt, not lost). */
	keel_limit_login_hash(SECRET_A, login, strlen(login), again);
	assert_string_equal(a, again);
	keel_limit_login_hash(SECRET_A, "ann@example.co", 14, again);
	assert_string_not_equal(a, again);
}

/*
 * While KEEL_SECRET_FALLBACK is set every login is hashed under two
 * secrets, by turns: each keeps its own name, even when one is too long
 * for the key cache (which must then not take the other for it).
 */
static void
test_login_names_under_two_secrets_by_turns(void **state)
{
	const char	*login = "ann@example.com";
	char		 a[KEEL_LIMIT_LOGIN_HEX + 1], l[KEEL_LIMIT_LOGIN_HEX + 1];
	char		 again[KEEL_LIMIT_LOGIN_HEX + 1], longs[200];
	int		 i;

	(void)state;
	memset(longs, 'L', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	keel_limit_login_hash(SECRET_A, login, strlen(login), a);
	keel_limit_login_hash(longs, login, strlen(login), l);
	assert_string_not_equal(a, l);
	for (i = 0; i < 3; i++) {
		keel_limit_login_hash(SECRET_A, login, strlen(login), again);
		assert_string_equal(again, a);
		keel_limit_login_hash(longs, login, strlen(login), again);
		assert_string_equal(again, l);
		keel_limit_login_hash(SECRET_B, login, strlen(login), again);
		assert_string_not_equal(again, a);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_headers_named_bucket),
		cmocka_unit_test(test_call_args),
		cmocka_unit_test(test_cache_keys),
		cmocka_unit_test(test_idem_keys),
		cmocka_unit_test(test_login_names_are_keyed_by_the_secret),
		cmocka_unit_test(test_login_names_under_two_secrets_by_turns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
