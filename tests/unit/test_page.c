/* SPDX-License-Identifier: ISC */
/*
 * test_page.c -- unit tests for keyset cursors: keel_page_encode() and
 * keel_page_decode().
 *
 * A cursor comes back from the client, so decode must refuse anything it
 * did not sign for this scope, with this secret and this many keys
 * (API.md: "a tampered or foreign cursor is a 400"), and, through
 * keel_page_encode_sig(), for these filters and this owner.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "keel/http.h"
#include "keel/mem.h"
#include "keel/page.h"

#define SECRET	"unit-test-secret-0123456789abcdef"

static const char *const two_keys[] = {
	"2024-05-01T12:00:00.123456Z", "42"
};

static int
group_setup(void **state)
{
	(void)state;
	return sodium_init() < 0 ? -1 : 0;
}

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

static char *
encode2(struct keel_arena *a)
{
	char	*tok;

	tok = keel_page_encode(a, SECRET, "cars", two_keys, 2);
	assert_non_null(tok);
	return tok;
}

static enum keel_err
decode(struct keel_arena *a, const char *tok, size_t nkeys)
{
	const char	*keys[KEEL_PAGE_MAXKEYS + 1];

	return keel_page_decode(a, SECRET, "cars", tok, keys, nkeys);
}

static void
test_page_round_trip_two_keys(void **state)
{
	const char	*keys[2] = { NULL, NULL };
	char		*tok;

	tok = encode2(*state);
	assert_int_equal(keel_page_decode(*state, SECRET, "cars", tok, keys,
	    2), KEEL_OK);
	assert_string_equal(keys[0], two_keys[0]);
	assert_string_equal(keys[1], two_keys[1]);
}

static void
test_page_round_trip_max_keys(void **state)
{
	static const char *const k[KEEL_PAGE_MAXKEYS] = {
		"a", "bb", "ccc", "dddd"
	};
	const char	*out[KEEL_PAGE_MAXKEYS];
	char		*tok;
	size_t		 i;

	tok = keel_page_encode(*state, SECRET, "cars", k, KEEL_PAGE_MAXKEYS);
	assert_int_equal(keel_page_decode(*state, SECRET, "cars", tok, out,
	    KEEL_PAGE_MAXKEYS), KEEL_OK);
	for (i = 0; i < KEEL_PAGE_MAXKEYS; i++)
		assert_string_equal(out[i], k[i]);
}

static void
test_page_round_trip_empty_key(void **state)
{
	static const char *const k[] = { "", "7" };
	const char	*out[2];
	char		*tok;

	tok = keel_page_encode(*state, SECRET, "cars", k, 2);
	assert_int_equal(keel_page_decode(*state, SECRET, "cars", tok, out, 2),
	    KEEL_OK);
	assert_string_equal(out[0], "");
	assert_string_equal(out[1], "7");
}

static void
test_page_round_trip_unusual_utf8(void **state)
{
	static const char *const k[] = {
		/* RTL override; BOM, zero-width space, U+10FFFF */
		"Z\xc3\xbcrich \xe2\x80\xae\xf0\x9f\x9a\x97",
		"\xef\xbb\xbf\xe2\x80\x8b\xf4\x8f\xbf\xbf",
		"a\x01\x7f" "b/+=&?%",
	};
	const char	*out[3];
	char		*tok;
	size_t		 i;

	tok = keel_page_encode(*state, SECRET, "cars", k, 3);
	assert_int_equal(keel_page_decode(*state, SECRET, "cars", tok, out, 3),
	    KEEL_OK);
	for (i = 0; i < 3; i++)
		assert_string_equal(out[i], k[i]);
}

static void
test_page_token_is_url_safe(void **state)
{
	static const char *const k[] = { "\xff\xfe\xfd\xfc", "?>?>?>~~" };
	const char	*p;
	char		*tok;

	tok = keel_page_encode(*state, SECRET, "cars", k, 2);
	for (p = tok; *p != '\0'; p++)
		assert_true((*p >= 'A' && *p <= 'Z') ||
		    (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_');
}

static void
test_page_encode_is_deterministic(void **state)
{
	assert_string_equal(encode2(*state), encode2(*state));
}

static void
test_page_every_flipped_char_rejected(void **state)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char	*tok, saved;
	size_t	 i, len;

	tok = encode2(*state);
	len = strlen(tok);
	for (i = 0; i < len; i++) {
		saved = tok[i];
		/* Another base64url character: the next one, wrapping. */
		tok[i] = b64[(strchr(b64, saved) - b64 + 1) % 64];
		if (decode(*state, tok, 2) != KEEL_EINVAL)
			fail_msg("flipping position %zu of %s was accepted",
			    i, tok);
		tok[i] = saved;
	}
	assert_int_equal(decode(*state, tok, 2), KEEL_OK);
}

static void
test_page_forged_payload_with_genuine_mac_rejected(void **state)
{
	unsigned char		 raw[256];
	char			 forged[512];
	const char		*tok, *end;
	size_t			 len;

	tok = encode2(*state);
	assert_int_equal(sodium_base642bin(raw, sizeof(raw), tok, strlen(tok),
	    NULL, &len, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	/* "42" becomes "43": a later page than the one we signed for. */
	assert_int_equal(raw[len - 16 - 2], '2');
	raw[len - 16 - 2] = '3';
	sodium_bin2base64(forged, sizeof(forged), raw, len,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	assert_int_equal(decode(*state, forged, 2), KEEL_EINVAL);
}

static void
test_page_truncated_token_rejected(void **state)
{
	char	*tok;
	size_t	 len;

	tok = encode2(*state);
	len = strlen(tok);
	tok[len - 1] = '\0';
	assert_int_equal(decode(*state, tok, 2), KEEL_EINVAL);
	tok[len - 4] = '\0';
	assert_int_equal(decode(*state, tok, 2), KEEL_EINVAL);
}

static void
test_page_appended_char_rejected(void **state)
{
	const char	*tok;

	tok = encode2(*state);
	assert_int_equal(decode(*state, keel_arena_printf(*state, "%sA", tok),
	    2), KEEL_EINVAL);
	assert_int_equal(decode(*state, keel_arena_printf(*state, "%s=", tok),
	    2), KEEL_EINVAL);
	assert_int_equal(decode(*state, keel_arena_printf(*state, "%s ", tok),
	    2), KEEL_EINVAL);
}

static void
test_page_other_scope_rejected(void **state)
{
	const char	*keys[2];
	char		*tok;

	tok = encode2(*state);
	assert_int_equal(keel_page_decode(*state, SECRET, "contracts", tok,
	    keys, 2), KEEL_EINVAL);
}

static void
test_page_scope_prefix_rejected(void **state)
{
	const char	*keys[2];
	char		*tok;

	tok = encode2(*state);
	assert_int_equal(keel_page_decode(*state, SECRET, "car", tok, keys,
	    2), KEEL_EINVAL);
	assert_int_equal(keel_page_decode(*state, SECRET, "carsx", tok, keys,
	    2), KEEL_EINVAL);
	assert_int_equal(keel_page_decode(*state, SECRET, "", tok, keys, 2),
	    KEEL_EINVAL);
}

static void
test_page_scope_boundary_unambiguous(void **state)
{
	static const char *const k[] = { "s1", "2" };
	unsigned char	 raw[256];
	char		 moved[512];
	const char	*tok, *end;
	size_t		 len;

	/*
	 * Move the payload's first byte into the scope: "car" + "s1\0 2\0"
	 * and "cars" + "1\0 2\0" are the same bytes unless the MAC
	 * separates scope from payload.
	 */
	tok = keel_page_encode(*state, SECRET, "car", k, 2);
	assert_int_equal(sodium_base642bin(raw, sizeof(raw), tok, strlen(tok),
	    NULL, &len, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	assert_int_equal(raw[0], 's');
	sodium_bin2base64(moved, sizeof(moved), raw + 1, len - 1,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	assert_int_equal(decode(*state, moved, 2), KEEL_EINVAL);
}

static void
test_page_other_secret_rejected(void **state)
{
	const char	*keys[2];
	char		*tok;

	tok = encode2(*state);
	assert_int_equal(keel_page_decode(*state, SECRET "x", "cars", tok,
	    keys, 2), KEEL_EINVAL);
	assert_int_equal(keel_page_decode(*state, "", "cars", tok, keys, 2),
	    KEEL_EINVAL);
}

/* A cursor signed under secret for the cars list, unfiltered. */
static char *
encode_under(struct keel_arena *a, const char *secret)
{
	struct keel_page_sig	 sig = { .secret = secret, .scope = "cars" };

	return keel_page_encode_sig(a, &sig, two_keys, 2);
}

/* Decodes tok as the cars list's under secret, with fallback. */
static enum keel_err
decode_under(struct keel_arena *a, const char *tok, const char *secret,
    const char *fallback)
{
	struct keel_page_sig	 sig = { .secret = secret, .fallback = fallback,
	    .scope = "cars" };
	const char		*keys[2];
	enum keel_err		 er;

	if ((er = keel_page_decode_sig(a, &sig, tok, keys, 2)) == KEEL_OK) {
		assert_string_equal(keys[0], two_keys[0]);
		assert_string_equal(keys[1], two_keys[1]);
	}
	return er;
}

/*
 * tok with one bit of the last byte of its MAC (the raw payload's last
 * MAC_LEN bytes, as lib/page.c signs it) flipped: still well-formed
 * base64 of the same length, so only the MAC check can refuse it.
 */
static char *
mac_flipped(struct keel_arena *a, const char *tok)
{
	unsigned char	 raw[256];
	char		*out;
	const char	*end;
	size_t		 len, olen;

	assert_int_equal(sodium_base642bin(raw, sizeof(raw), tok, strlen(tok),
	    NULL, &len, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	assert_true(len > 16);
	raw[len - 1] ^= 0x01;
	olen = sodium_base64_ENCODED_LEN(len,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	out = keel_arena_alloc(a, olen);
	sodium_bin2base64(out, olen, raw, len,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	assert_string_not_equal(out, tok);
	return out;
}

/*
 * KEEL_SECRET_FALLBACK: a cursor of the previous secret still pages, one
 * of neither doesn't, and none is ever signed under the fallback.  The
 * old secret is too long for the key cache, so a cache that kept the
 * wrong state for it (or took another secret for it) shows here.
 */
static void
test_page_fallback_secret_verifies(void **state)
{
	char	 old[200];
	char	*tok_old, *tok_new, *tok_other;

	memset(old, 'o', sizeof(old) - 1);
	old[sizeof(old) - 1] = '\0';
	tok_old = encode_under(*state, old);
	tok_new = encode_under(*state, SECRET);
	tok_other = encode_under(*state, SECRET "x");
	/* Without the fallback, the previous secret's cursor is foreign. */
	assert_int_equal(decode_under(*state, tok_old, SECRET, NULL),
	    KEEL_EINVAL);
	assert_int_equal(decode_under(*state, tok_old, SECRET, ""),
	    KEEL_EINVAL);
	/* With it, both secrets' cursors page, in any order of use. */
	assert_int_equal(decode_under(*state, tok_old, SECRET, old), KEEL_OK);
	assert_int_equal(decode_under(*state, tok_new, SECRET, old), KEEL_OK);
	assert_int_equal(decode_under(*state, tok_old, SECRET, old), KEEL_OK);
	/* A third secret's doesn't; nor does either secret's cursor with
	 * one bit of its MAC flipped, which neither check may accept. */
	assert_int_equal(decode_under(*state, tok_other, SECRET, old),
	    KEEL_EINVAL);
	assert_int_equal(decode_under(*state, mac_flipped(*state, tok_old),
	    SECRET, old), KEEL_EINVAL);
	assert_int_equal(decode_under(*state, mac_flipped(*state, tok_new),
	    SECRET, old), KEEL_EINVAL);
	/* Signing uses the current secret only: a cursor handed out while
	 * the fallback is set is the current secret's alone. */
	assert_string_equal(encode_under(*state, SECRET), tok_new);
	assert_int_equal(decode_under(*state, tok_new, old, NULL),
	    KEEL_EINVAL);
	/* The fallback removed: the old cursor is foreign again. */
	assert_int_equal(decode_under(*state, tok_old, SECRET, NULL),
	    KEEL_EINVAL);
	assert_int_equal(decode_under(*state, tok_old, old, NULL), KEEL_OK);
}

static void
test_page_fewer_keys_than_signed_rejected(void **state)
{
	assert_int_equal(decode(*state, encode2(*state), 1), KEEL_EINVAL);
}

static void
test_page_more_keys_than_signed_rejected(void **state)
{
	assert_int_equal(decode(*state, encode2(*state), 3), KEEL_EINVAL);
}

static void
test_page_empty_string_rejected(void **state)
{
	assert_int_equal(decode(*state, "", 2), KEEL_EINVAL);
}

static void
test_page_garbage_rejected(void **state)
{
	assert_int_equal(decode(*state, "not a cursor!", 2), KEEL_EINVAL);
	assert_int_equal(decode(*state, "%00%00", 2), KEEL_EINVAL);
	assert_int_equal(decode(*state, "\xc3\xa9\xc3\xa9", 2), KEEL_EINVAL);
}

static void
test_page_base64_junk_rejected(void **state)
{
	/* Well-formed base64url that no one signed. */
	assert_int_equal(decode(*state, "AAAA", 2), KEEL_EINVAL);
	assert_int_equal(decode(*state,
	    "MjAyNC0wNS0wMQA0MgAAAAAAAAAAAAAAAAAAAAAAAA", 2), KEEL_EINVAL);
	assert_int_equal(decode(*state,
	    "________________________________________", 2), KEEL_EINVAL);
}

static void
test_page_standard_base64_alphabet_rejected(void **state)
{
	char	*tok, *p;

	tok = encode2(*state);
	/* The same bytes in the '+' '/' alphabet are not our encoding. */
	for (p = tok; *p != '\0'; p++)
		if (*p == '-')
			*p = '+';
		else if (*p == '_')
			*p = '/';
	if (strpbrk(tok, "+/") == NULL)
		tok[0] = '+';
	assert_int_equal(decode(*state, tok, 2), KEEL_EINVAL);
}

static void
test_page_mac_only_token_rejected(void **state)
{
	char	*tok;

	/* No keys: a payload of nothing but a MAC. */
	tok = keel_page_encode(*state, SECRET, "cars", NULL, 0);
	assert_int_equal(decode(*state, tok, 0), KEEL_EINVAL);
	assert_int_equal(decode(*state, tok, 1), KEEL_EINVAL);
}

static void
test_page_very_long_token_rejected(void **state)
{
	char	*tok;

	tok = keel_arena_alloc(*state, 100001);
	memset(tok, 'A', 100000);
	tok[100000] = '\0';
	assert_int_equal(decode(*state, tok, 2), KEEL_EINVAL);
}

static void
test_page_max_payload_round_trips(void **state)
{
	const char	*k[2], *out[2];
	char		*big, *tok;

	/* Keys of exactly KEEL_PAGE_MAXPAYLOAD bytes, NULs included. */
	big = keel_arena_alloc(*state, KEEL_PAGE_MAXPAYLOAD);
	memset(big, 'k', KEEL_PAGE_MAXPAYLOAD - 3);
	big[KEEL_PAGE_MAXPAYLOAD - 3] = '\0';
	k[0] = big;
	k[1] = "1";
	tok = keel_page_encode(*state, SECRET, "cars", k, 2);
	assert_int_equal(keel_page_decode(*state, SECRET, "cars", tok, out, 2),
	    KEEL_OK);
	assert_string_equal(out[0], big);
	assert_string_equal(out[1], "1");
}

static void
test_page_realistic_long_keys_round_trip(void **state)
{
	const char	*k[2], *out[2];
	char		*mid, *tok;

	/* A 200-byte text sort key, well inside the bound. */
	mid = keel_arena_alloc(*state, 201);
	memset(mid, 'm', 200);
	mid[200] = '\0';
	k[0] = mid;
	k[1] = "123456789012345678";
	tok = keel_page_encode(*state, SECRET, "cars", k, 2);
	assert_int_equal(keel_page_decode(*state, SECRET, "cars", tok, out, 2),
	    KEEL_OK);
	assert_string_equal(out[0], mid);
	assert_string_equal(out[1], k[1]);
}

/* A query's pairs, as http.c parses them: "name=value" strings. */
static struct keel_param *
pairs(struct keel_arena *a, size_t n, const char *const *nv)
{
	struct keel_param	*qs;
	size_t			 i;

	qs = keel_arena_alloc(a, (n > 0 ? n : 1) * sizeof(*qs));
	for (i = 0; i < n; i++) {
		qs[i].name = nv[2 * i];
		qs[i].value = nv[2 * i + 1];
	}
	return qs;
}

/* Decode under qs[0..n) and owner a cursor signed for the cars filters. */
static enum keel_err
decode_for(struct keel_arena *a, const char *tok, size_t n,
    const char *const *nv, int64_t owner)
{
	struct keel_page_sig	 sig = { .secret = SECRET, .scope = "cars",
	    .owner = owner };
	const char		*keys[2];

	sig.qs = pairs(a, n, nv);
	sig.nqs = n;
	return keel_page_decode_sig(a, &sig, tok, keys, 2);
}

static char *
encode_for(struct keel_arena *a, size_t n, const char *const *nv,
    int64_t owner)
{
	struct keel_page_sig	 sig = { .secret = SECRET, .scope = "cars",
	    .owner = owner };

	sig.qs = pairs(a, n, nv);
	sig.nqs = n;
	return keel_page_encode_sig(a, &sig, two_keys, 2);
}

/* The query of a filtered first page: ?status=available&model=X&limit=5 */
static const char *const filtered[] = {
	"status", "available", "model", "X", "limit", "5"
};

static void
test_page_filter_order_irrelevant(void **state)
{
	static const char *const moved[] = {
		"after", "tok", "model", "X", "limit", "5",
		"status", "available"
	};
	char	*tok;

	tok = encode_for(*state, 3, filtered, 0);
	assert_int_equal(decode_for(*state, tok, 4, moved, 0), KEEL_OK);
}

static void
test_page_changed_filter_rejected(void **state)
{
	static const char *const other[] = {
		"status", "rented", "model", "X", "after", "tok"
	};
	static const char *const fewer[] = { "model", "X", "after", "tok" };
	static const char *const more[] = {
		"status", "available", "model", "X", "category", "suv"
	};
	char	*tok;

	tok = encode_for(*state, 3, filtered, 0);
	assert_int_equal(decode_for(*state, tok, 3, other, 0), KEEL_EINVAL);
	assert_int_equal(decode_for(*state, tok, 2, fewer, 0), KEEL_EINVAL);
	assert_int_equal(decode_for(*state, tok, 3, more, 0), KEEL_EINVAL);
	/* And the unfiltered list's cursor is not the filtered one's. */
	assert_int_equal(decode_for(*state, encode2(*state), 3, filtered, 0),
	    KEEL_EINVAL);
}

static void
test_page_repeated_filter_keeps_its_order(void **state)
{
	static const char *const ab[] = { "status", "a", "status", "b" };
	static const char *const ba[] = { "status", "b", "status", "a" };

	/* The first value is the one a list reads: a different filter. */
	assert_int_equal(decode_for(*state, encode_for(*state, 2, ab, 0), 2,
	    ba, 0), KEEL_EINVAL);
}

static void
test_page_filter_boundaries_unambiguous(void **state)
{
	static const char *const one[] = { "a", "bc" };
	static const char *const two[] = { "ab", "c" };
	static const char *const split[] = { "a", "b", "c", "" };

	assert_int_equal(decode_for(*state, encode_for(*state, 1, one, 0), 1,
	    two, 0), KEEL_EINVAL);
	assert_int_equal(decode_for(*state, encode_for(*state, 1, one, 0), 2,
	    split, 0), KEEL_EINVAL);
}

static void
test_page_limit_change_allowed(void **state)
{
	static const char *const paged[] = {
		"limit", "50", "status", "available", "before", "tok",
		"model", "X"
	};
	static const char *const nolimit[] = {
		"status", "available", "model", "X"
	};
	char	*tok;

	tok = encode_for(*state, 3, filtered, 0);
	assert_int_equal(decode_for(*state, tok, 4, paged, 0), KEEL_OK);
	assert_int_equal(decode_for(*state, tok, 2, nolimit, 0), KEEL_OK);
}

static void
test_page_other_owner_rejected(void **state)
{
	char	*tok;

	tok = encode_for(*state, 3, filtered, 7);
	assert_int_equal(decode_for(*state, tok, 3, filtered, 7), KEEL_OK);
	assert_int_equal(decode_for(*state, tok, 3, filtered, 8), KEEL_EINVAL);
	/* Nor is it anyone's, and an unbound cursor is not user 7's. */
	assert_int_equal(decode_for(*state, tok, 3, filtered, 0), KEEL_EINVAL);
	assert_int_equal(decode_for(*state, encode_for(*state, 3, filtered,
	    0), 3, filtered, 7), KEEL_EINVAL);
}

static void
test_page_binding_does_not_grow_cursor(void **state)
{
	static const char *const many[] = {
		"status", "available", "model", "a long model name, say",
		"manufacturer", "a long manufacturer name too",
		"category", "compact"
	};

	assert_int_equal(strlen(encode_for(*state, 4, many, 42)),
	    strlen(encode2(*state)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_page_round_trip_two_keys),
		T(test_page_round_trip_max_keys),
		T(test_page_round_trip_empty_key),
		T(test_page_round_trip_unusual_utf8),
		T(test_page_token_is_url_safe),
		T(test_page_encode_is_deterministic),
		T(test_page_every_flipped_char_rejected),
		T(test_page_forged_payload_with_genuine_mac_rejected),
		T(test_page_truncated_token_rejected),
		T(test_page_appended_char_rejected),
		T(test_page_other_scope_rejected),
		T(test_page_scope_prefix_rejected),
		T(test_page_scope_boundary_unambiguous),
		T(test_page_other_secret_rejected),
		T(test_page_fallback_secret_verifies),
		T(test_page_fewer_keys_than_signed_rejected),
		T(test_page_more_keys_than_signed_rejected),
		T(test_page_empty_string_rejected),
		T(test_page_garbage_rejected),
		T(test_page_base64_junk_rejected),
		T(test_page_standard_base64_alphabet_rejected),
		T(test_page_mac_only_token_rejected),
		T(test_page_very_long_token_rejected),
		T(test_page_max_payload_round_trips),
		T(test_page_realistic_long_keys_round_trip),
		T(test_page_filter_order_irrelevant),
		T(test_page_changed_filter_rejected),
		T(test_page_repeated_filter_keeps_its_order),
		T(test_page_filter_boundaries_unambiguous),
		T(test_page_limit_change_allowed),
		T(test_page_other_owner_rejected),
		T(test_page_binding_does_not_grow_cursor),
#undef T
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
