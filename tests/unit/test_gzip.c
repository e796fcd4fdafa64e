/* SPDX-License-Identifier: ISC */
/*
 * test_gzip.c -- unit tests for gzip.c: which Accept-Encoding headers
 * get the gzip form of a cached answer (RFC 9110 §12.5.3, q-values and
 * all, and x-no-compression), and the gzip coding itself, read back
 * with zlib's inflate.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "keel/gzip.h"
#include "keel/mem.h"

/* Accept-Encoding alone, no x-no-compression. */
static bool
wants(const char *ae)
{
	return keel_gzip_wanted(ae, NULL);
}

static void
test_no_header_is_identity(void **state)
{
	(void)state;
	assert_false(wants(NULL));
	assert_false(wants(""));
	assert_false(wants(" , ,"));
}

static void
test_gzip_plain(void **state)
{
	(void)state;
	assert_true(wants("gzip"));
	assert_true(wants("gzip, deflate, br"));
	assert_true(wants("br, gzip"));
	assert_true(wants("deflate,gzip"));
}

static void
test_coding_names_ignore_case(void **state)
{
	(void)state;
	assert_true(wants("GZIP"));
	assert_true(wants("GZip;Q=0.5"));
}

static void
test_x_gzip_is_gzip(void **state)
{
	(void)state;
	assert_true(wants("x-gzip"));
	assert_false(wants("x-gzip;q=0"));
}

static void
test_other_codings_only(void **state)
{
	(void)state;
	assert_false(wants("deflate"));
	assert_false(wants("br, zstd"));
	assert_false(wants("identity"));
	assert_false(wants("gzipx"));
	assert_false(wants("gzip2, xgzip"));
}

static void
test_q_zero_refuses(void **state)
{
	(void)state;
	assert_false(wants("gzip;q=0"));
	assert_false(wants("gzip; q=0.0"));
	assert_false(wants("gzip;q=0.000"));
	assert_false(wants("deflate, gzip ; q = 0"));
}

static void
test_q_above_zero_accepts(void **state)
{
	(void)state;
	assert_true(wants("gzip;q=0.001"));
	assert_true(wants("gzip;q=0.5"));
	assert_true(wants("gzip;q=1"));
	assert_true(wants("gzip;q=1.000"));
	assert_true(wants("  gzip\t;\tq=0.8  , br"));
}

static void
test_bad_q_is_not_acceptance(void **state)
{
	(void)state;
	/* Out of range or malformed: the element counts as absent. */
	assert_false(wants("gzip;q=2"));
	assert_false(wants("gzip;q=1.5"));
	assert_false(wants("gzip;q=0.1234"));
	assert_false(wants("gzip;q="));
	assert_false(wants("gzip;q=x"));
	assert_false(wants("gzip;q"));
	assert_false(wants("gzip junk"));
	/* ... and only that element: the list goes on. */
	assert_true(wants("gzip;q=2, *"));
	assert_false(wants("gzip;q=2, identity"));
	assert_true(wants("gzip;q=0.1234, deflate, gzip"));
}

static void
test_other_parameters_skipped(void **state)
{
	(void)state;
	assert_true(wants("gzip;level=9"));
	assert_false(wants("gzip;level=9;q=0"));
}

static void
test_star(void **state)
{
	(void)state;
	assert_true(wants("*"));
	assert_true(wants("br, *;q=0.1"));
	assert_false(wants("*;q=0"));
	/* A named gzip rules over "*", either way. */
	assert_false(wants("gzip;q=0, *"));
	assert_false(wants("*, gzip;q=0"));
	assert_true(wants("gzip, *;q=0"));
}

static void
test_identity_listed_too(void **state)
{
	(void)state;
	/* Acceptable is enough: the server picks among acceptable ones. */
	assert_true(wants("gzip;q=0.5, identity"));
	assert_true(wants("identity;q=1, gzip;q=0.9"));
	assert_true(wants("gzip, identity"));
	assert_true(wants("gzip;q=0.1, identity;q=0"));
	assert_true(wants("*, identity"));
	assert_false(wants("identity, *;q=0"));
}

static void
test_no_compression_header(void **state)
{
	(void)state;
	assert_false(keel_gzip_wanted("gzip", "1"));
	assert_false(keel_gzip_wanted("gzip", "true"));
	/* Empty is absent, as lighttpd.conf's "=~ ." has it. */
	assert_true(keel_gzip_wanted("gzip", ""));
	assert_false(keel_gzip_wanted(NULL, ""));
}

/* A JSON list like a cached page: repetitive, ~5 KB. */
static void
page(struct keel_buf *b)
{
	int	 i;

	keel_buf_puts(b, "{\"data\":[");
	for (i = 0; i < 40; i++)
		keel_buf_printf(b, "%s{\"id\":%d,\"licensePlate\":\"P%04d\","
		    "\"manufacturer\":\"Make%d\",\"model\":\"Model %d\"}",
		    i > 0 ? "," : "", i + 1, i * 7919 % 10000, i % 5, i);
	keel_buf_puts(b, "],\"nextCursor\":null}");
}

/* Inflates gzip bytes (RFC 1952 wrapper required) into out. */
static int
gunzip(const char *src, size_t n, struct keel_buf *out)
{
	z_stream	 z;
	unsigned char	 chunk[1024];
	int		 rc;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + 15) != Z_OK)
		return -1;
	z.next_in = (unsigned char *)(uintptr_t)src;
	z.avail_in = (uInt)n;
	do {
		z.next_out = chunk;
		z.avail_out = sizeof(chunk);
		rc = inflate(&z, Z_NO_FLUSH);
		keel_buf_append(out, chunk, sizeof(chunk) - z.avail_out);
	} while (rc == Z_OK);
	inflateEnd(&z);
	return rc == Z_STREAM_END && z.avail_in == 0 ? 0 : -1;
}

/* gz (n bytes) is one gzip member of src's bytes. */
static void
assert_gunzips_to(const char *gz, size_t n, const struct keel_buf *src)
{
	struct keel_buf	 back = { NULL, 0, 0 };

	assert_int_equal(gunzip(gz, n, &back), 0);
	assert_int_equal(back.len, src->len);
	if (src->len > 0)
		assert_memory_equal(back.data, src->data, src->len);
	keel_buf_free(&back);
}

static void
test_compress_round_trip(void **state)
{
	struct keel_buf	 src = { NULL, 0, 0 }, gz = { NULL, 0, 0 };

	(void)state;
	page(&src);
	assert_int_equal(keel_gzip_compress(&gz, src.data, src.len), KEEL_OK);
	/* A gzip member (RFC 1952 §2.3.1: ID1 ID2 CM=deflate). */
	assert_true(gz.len > 18);
	assert_memory_equal(gz.data, "\x1f\x8b\x08", 3);
	assert_true(gz.len < src.len / 2);
	assert_gunzips_to(gz.data, gz.len, &src);
	keel_buf_free(&src);
	keel_buf_free(&gz);
}

static void
test_compress_appends(void **state)
{
	struct keel_buf	 src = { NULL, 0, 0 }, out = { NULL, 0, 0 };

	(void)state;
	page(&src);
	/* The cache entry's layout: identity bytes, then the gzip form. */
	keel_buf_append(&out, src.data, src.len);
	assert_int_equal(keel_gzip_compress(&out, src.data, src.len),
	    KEEL_OK);
	assert_memory_equal(out.data, src.data, src.len);
	assert_gunzips_to(out.data + src.len, out.len - src.len, &src);
	keel_buf_free(&src);
	keel_buf_free(&out);
}

static void
test_compress_deterministic(void **state)
{
	struct keel_buf	 src = { NULL, 0, 0 }, a = { NULL, 0, 0 };
	struct keel_buf	 b = { NULL, 0, 0 };

	(void)state;
	page(&src);
	assert_int_equal(keel_gzip_compress(&a, src.data, src.len), KEEL_OK);
	assert_int_equal(keel_gzip_compress(&b, src.data, src.len), KEEL_OK);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	keel_buf_free(&src);
	keel_buf_free(&a);
	keel_buf_free(&b);
}

static void
test_compress_empty(void **state)
{
	struct keel_buf	 gz = { NULL, 0, 0 }, none = { NULL, 0, 0 };

	(void)state;
	assert_int_equal(keel_gzip_compress(&gz, NULL, 0), KEEL_OK);
	assert_true(gz.len > 0);
	assert_gunzips_to(gz.data, gz.len, &none);
	keel_buf_free(&gz);
}

/* lighttpd.conf: deflate.min-compress-size = 1024, and mod_deflate
 * leaves a body of exactly that size alone. */
static void
test_codes_only_past_the_minimum(void **state)
{
	(void)state;
	assert_false(keel_gzip_codes("application/json", KEEL_GZIP_MIN));
	assert_true(keel_gzip_codes("application/json", KEEL_GZIP_MIN + 1));
	assert_false(keel_gzip_codes("application/json", 0));
}

/* deflate.mimetypes = ("application/json", "text/"), each a prefix. */
static void
test_codes_json_and_text_only(void **state)
{
	(void)state;
	assert_true(keel_gzip_codes("application/json; charset=utf-8", 4096));
	assert_true(keel_gzip_codes("text/plain", 4096));
	assert_false(keel_gzip_codes("text", 4096));
	assert_false(keel_gzip_codes("image/png", 4096));
	assert_false(keel_gzip_codes("application/octet-stream", 4096));
	assert_false(keel_gzip_codes(NULL, 4096));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_header_is_identity),
		cmocka_unit_test(test_gzip_plain),
		cmocka_unit_test(test_coding_names_ignore_case),
		cmocka_unit_test(test_x_gzip_is_gzip),
		cmocka_unit_test(test_other_codings_only),
		cmocka_unit_test(test_q_zero_refuses),
		cmocka_unit_test(test_q_above_zero_accepts),
		cmocka_unit_test(test_bad_q_is_not_acceptance),
		cmocka_unit_test(test_other_parameters_skipped),
		cmocka_unit_test(test_star),
		cmocka_unit_test(test_identity_listed_too),
		cmocka_unit_test(test_no_compression_header),
		cmocka_unit_test(test_compress_round_trip),
		cmocka_unit_test(test_compress_appends),
		cmocka_unit_test(test_compress_deterministic),
		cmocka_unit_test(test_compress_empty),
		cmocka_unit_test(test_codes_only_past_the_minimum),
		cmocka_unit_test(test_codes_json_and_text_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
