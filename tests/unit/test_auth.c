/* SPDX-License-Identifier: ISC */
/*
 * test_auth.c -- unit tests for auth's pure logic: roles, the password
 * rule, tokens and their ids, Argon2id hashing and the dummy verify,
 * the email check accounts are made with.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "keel/auth.h"
#include "keel/mem.h"
#include "keel/router.h"
#include "keel/text.h"

static int
group_setup(void **state)
{
	(void)state;
	return sodium_init() < 0 ? -1 : 0;
}

static void
test_roles_round_trip(void **state)
{
	static const char *const names[] = { "admin", "staff", "customer",
	    "student" };
	size_t	 i;

	(void)state;
	for (i = 0; i < 4; i++)
		assert_string_equal(keel_auth_role_name(
		    keel_auth_role_parse(names[i])), names[i]);
	assert_int_equal(keel_auth_role_parse("admin"), KEEL_ROLE_ADMIN);
	assert_int_equal(keel_auth_role_parse("student"), KEEL_ROLE_STUDENT);
	assert_int_equal(keel_auth_role_parse("Admin"), 0);
	assert_int_equal(keel_auth_role_parse(""), 0);
	assert_int_equal(keel_auth_role_parse(NULL), 0);
	assert_string_equal(keel_auth_role_name(0), "");
	assert_string_equal(keel_auth_role_name(KEEL_ACCESS_STAFF), "");
}

static void
test_password_rule(void **state)
{
	char	 big[KEEL_AUTH_PASSWORD_MAX + 2];

	(void)state;
	assert_null(keel_auth_password_check("0123456789"));
	assert_non_null(keel_auth_password_check("012345678"));
	assert_non_null(keel_auth_password_check(""));
	/* Ten characters, not ten bytes: nine two-byte letters are short. */
	assert_non_null(keel_auth_password_check(
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9"));
	assert_null(keel_auth_password_check(
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9"));
	assert_non_null(keel_auth_password_check("0123456789\xff"));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_non_null(keel_auth_password_check(big));
}

static void
test_tokens(void **state)
{
	char	 a[KEEL_AUTH_TOKEN_LEN + 1], b[KEEL_AUTH_TOKEN_LEN + 1];
	char	 id[KEEL_AUTH_ID_LEN + 1];

	(void)state;
	keel_auth_token_new(a);
	keel_auth_token_new(b);
	assert_int_equal(strlen(a), KEEL_AUTH_TOKEN_LEN);
	assert_true(keel_auth_token_valid(a));
	assert_string_not_equal(a, b);
	assert_false(keel_auth_token_valid(""));
	assert_false(keel_auth_token_valid("short"));
	a[5] = '+';		/* not url-safe base64 */
	assert_false(keel_auth_token_valid(a));
	/* SHA-256 of "abc" (FIPS 180-2, appendix B.1). */
	keel_auth_token_id("abc", id);
	assert_string_equal(id, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
}

static void
test_hash_and_verify(void **state)
{
	char	 hash[KEEL_AUTH_HASH_MAX];

	(void)state;
	assert_int_equal(keel_auth_hash("correct horse battery", hash),
	    KEEL_OK);
	assert_true(strncmp(hash, "$argon2id$", 10) == 0);
	assert_true(keel_auth_verify(hash, "correct horse battery"));
	assert_false(keel_auth_verify(hash, "correct horse batterY"));
	/* No account: the dummy hash is checked, and never matches. */
	assert_false(keel_auth_verify(NULL, "correct horse battery"));
	assert_false(keel_auth_verify(NULL, ""));
	assert_false(keel_auth_verify("not a hash", "x"));
}

static void
test_mail_link(void **state)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	/* Trailing slashes of KEEL_PUBLIC_URL don't double up. */
	keel_auth_mail_link(&b, "https://keel.example//", "t0k-_");
	assert_string_equal(b.data,
	    "https://keel.example/set-password?token=t0k-_");
	keel_buf_reset(&b);
	keel_auth_mail_link(&b, "http://127.0.0.1:8080", "abc");
	assert_string_equal(b.data,
	    "http://127.0.0.1:8080/set-password?token=abc");
	keel_buf_free(&b);
}

/* What the security probe created (201) and the mailer then refused. */
static const char *const refused[] = {
	"x<y@e2e.test", "user@localhost", "\xc3\xbc@e2e.test",
	"q\"x\"@e2e.test", "a@e2e.test.", "a(x)@e2e.test",
	/* U+212A KELVIN SIGN for 'k', U+0130 for 'i': lower() folds them. */
	"\xe2\x84\xaa" "eel@e2e.test", "adm\xc4\xb0n@keel.test",
	"a b@e2e.test", "a@b@e2e.test", "@e2e.test", "a@", "a@.e2e.test",
	"a..b@e2e.test", ".a@e2e.test", "a.@e2e.test", "a@e2e..test",
	"a@-e2e.test", "a@e2e-.test", "a@e2e_x.test", "a,b@e2e.test",
	"a;b@e2e.test", "a:b@e2e.test", "a\\b@e2e.test", "[a]@e2e.test",
	"a@[127.0.0.1]", "a@e2e.test\r\nRCPT TO:<x@y.z>",
};

/* The shapes demo data and the tests' accounts use, and RFC's atext. */
static const char *const taken[] = {
	"admin@keel.test", "student43@keel.test", "customer-0A1B2C@e2e.test",
	"New-0A1B2C@E2E.test", "a.b+tag@sub.example.org",
	"o'brien!#$%&*/=?^_`{|}~@x-y.example", "a@b.co",
};

static void
test_email_check_refuses_what_mail_refuses(void **state)
{
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (keel_auth_email_valid(refused[i]))
			fail_msg("taken: %s", refused[i]);
		assert_false(keel_text_email_valid(refused[i]));
	}
	assert_false(keel_text_email_valid(NULL));
}

static void
test_email_check_takes_ordinary_addresses(void **state)
{
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		if (!keel_auth_email_valid(taken[i]))
			fail_msg("refused: %s", taken[i]);
		assert_true(keel_text_email_valid(taken[i]));
	}
}

/* RFC 5321 §4.5.3.1: 64 for the local part, 63 a label, 254 in all. */
static void
test_email_check_lengths(void **state)
{
	char	 s[300];

	(void)state;
	memset(s, 'a', 64);
	strcpy(s + 64, "@e2e.test");
	assert_true(keel_auth_email_valid(s));
	memset(s, 'a', 65);
	strcpy(s + 65, "@e2e.test");
	assert_false(keel_auth_email_valid(s));
	strcpy(s, "a@");
	memset(s + 2, 'b', 64);
	strcpy(s + 66, ".test");
	assert_false(keel_auth_email_valid(s));
	/* 254 bytes, labels of 63, 63, 63 and 60; then 255. */
	strcpy(s, "a@");
	memset(s + 2, 'b', 63);
	s[65] = '.';
	memset(s + 66, 'c', 63);
	s[129] = '.';
	memset(s + 130, 'd', 63);
	s[193] = '.';
	memset(s + 194, 'e', 60);
	s[254] = '\0';
	assert_int_equal(strlen(s), 254);
	assert_true(keel_auth_email_valid(s));
	s[254] = 'e';
	s[255] = '\0';
	assert_false(keel_auth_email_valid(s));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roles_round_trip),
		cmocka_unit_test(test_password_rule),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_hash_and_verify),
		cmocka_unit_test(test_mail_link),
		cmocka_unit_test(test_email_check_refuses_what_mail_refuses),
		cmocka_unit_test(test_email_check_takes_ordinary_addresses),
		cmocka_unit_test(test_email_check_lengths),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
