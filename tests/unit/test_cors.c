/* SPDX-License-Identifier: ISC */
/*
 * test_cors.c -- unit tests for cors.c: which KEEL_CORS_ORIGINS values
 * are taken (origins as browsers write them), and which request Origin
 * gets which Access-Control-Allow-Origin.
 *
 * Two tables, a row per case, each run by one loop that names every
 * failing row.
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

#include "keel/cors.h"
#include "keel/mem.h"

/* A KEEL_CORS_ORIGINS value: taken, or refused with why holding msg. */
struct list_case {
	const char	*list;
	bool		 valid;
	const char	*msg;		/* refused: why holds it, or NULL */
};

static const struct list_case lists[] = {
	{ "", true, NULL },
	{ "  ", true, NULL },
	{ "*", true, NULL },
	{ " * ", true, NULL },
	{ "https://exam.example.com", true, NULL },
	{ "https://exam.example.com, http://localhost:5173", true, NULL },
	{ "http://127.0.0.1:8081,http://[::1]:3000", true, NULL },
	{ "https://a-b.example:8443", true, NULL },
	/* What a browser never sends in Origin, refused at start. */
	{ "https://exam.example.com/", false, "no path" },
	{ "https://exam.example.com/app", false, "no path" },
	{ "https://Exam.example.com", false, "lower case" },
	{ "HTTPS://exam.example.com", false, "lower case" },
	{ "https://exam.example.com:443", false, "default port" },
	{ "http://exam.example.com:80", false, "default port" },
	{ "https://exam.example.com:0", false, "1 to 65535" },
	{ "https://exam.example.com:65536", false, "1 to 65535" },
	{ "https://exam.example.com:0443", false, "1 to 65535" },
	{ "https://exam.example.com:", false, "1 to 65535" },
	{ "https://exam.example.com.", false, "'.'" },
	{ "https://exam..example.com", false, "empty label" },
	{ "https://", false, "a host" },
	{ "exam.example.com", false, "http://" },
	{ "ftp://exam.example.com", false, "http://" },
	{ "https://user@exam.example.com", false, "nothing else" },
	{ "https://exam.example.com?x=1", false, "nothing else" },
	{ "https://exam .example.com", false, "nothing else" },
	{ "https://[::1", false, "IPv6" },
	{ "null", false, "http://" },
	/* "*" is any origin, alone; a list never holds it. */
	{ "*, https://exam.example.com", false, "alone" },
	{ "https://*.example.com", false, "alone" },
	/* A typo's empty item is refused, not skipped. */
	{ "https://a.example,,https://b.example", false, "empty item" },
	{ "https://a.example,", false, "empty item" },
	/* The bad item is named. */
	{ "https://a.example,https://b.example/", false,
	    "\"https://b.example/\"" },
};

static void
test_lists_taken_or_refused(void **state)
{
	char	 why[256];
	size_t	 i, bad = 0;
	bool	 ok;

	(void)state;
	for (i = 0; i < KEEL_NELEM(lists); i++) {
		why[0] = '\0';
		ok = keel_cors_origins_valid(lists[i].list, why, sizeof(why));
		if (ok != lists[i].valid || (!ok && lists[i].msg != NULL &&
		    strstr(why, lists[i].msg) == NULL)) {
			print_error("row %zu \"%s\": %s (%s)\n", i,
			    lists[i].list, ok ? "taken" : "refused", why);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* A request's Origin under a list, and the Allow-Origin it gets. */
struct match_case {
	const char	*list;
	const char	*origin;	/* NULL: no Origin header */
	const char	*allow;		/* NULL: no CORS headers */
};

static const struct match_case matches[] = {
	{ "https://exam.example.com", "https://exam.example.com",
	    "https://exam.example.com" },
	{ "https://a.example, https://exam.example.com",
	    "https://exam.example.com", "https://exam.example.com" },
	{ "https://exam.example.com", NULL, NULL },
	{ "", "https://exam.example.com", NULL },
	{ "  ", "https://exam.example.com", NULL },
	/* Byte for byte: no prefix, suffix, case or port leeway. */
	{ "https://exam.example.com", "https://exam.example.com.evil.test",
	    NULL },
	{ "https://exam.example.com", "https://evil-exam.example.com", NULL },
	{ "https://exam.example.com", "https://exam.example.co", NULL },
	{ "https://exam.example.com", "http://exam.example.com", NULL },
	{ "https://exam.example.com", "https://exam.example.com:8443",
	    NULL },
	{ "https://exam.example.com", "https://EXAM.example.com", NULL },
	{ "https://exam.example.com", "https://exam.example.com/", NULL },
	{ "https://exam.example.com", "", NULL },
	{ "https://exam.example.com", "null", NULL },
	{ "https://a.example,https://b.example",
	    "https://a.example,https://b.example", NULL },
	{ "https://a.example", "https://a.example\r\nX-Evil: 1", NULL },
	/* "*": any origin, "*" back; none without an Origin. */
	{ "*", "https://anyone.example", "*" },
	{ "*", "null", "*" },
	{ "*", NULL, NULL },
};

static void
test_origin_matched_exactly(void **state)
{
	const char	*got;
	size_t		 i, bad = 0;

	(void)state;
	for (i = 0; i < KEEL_NELEM(matches); i++) {
		got = keel_cors_allow_origin(matches[i].list,
		    matches[i].origin);
		if ((got == NULL) != (matches[i].allow == NULL) ||
		    (got != NULL && strcmp(got, matches[i].allow) != 0)) {
			print_error("row %zu: \"%s\" under \"%s\" got %s\n",
			    i, matches[i].origin ? matches[i].origin : "(none)",
			    matches[i].list, got ? got : "(none)");
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* Vary: Origin for a list of origins only: "*" answers every one alike. */
static void
test_varies_for_a_list_only(void **state)
{
	(void)state;
	assert_false(keel_cors_varies(""));
	assert_false(keel_cors_varies(" "));
	assert_false(keel_cors_varies("*"));
	assert_true(keel_cors_varies("https://exam.example.com"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lists_taken_or_refused),
		cmocka_unit_test(test_origin_matched_exactly),
		cmocka_unit_test(test_varies_for_a_list_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
