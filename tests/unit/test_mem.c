/* SPDX-License-Identifier: ISC */
/*
 * test_mem.c -- unit tests for mem.c: arenas, growable buffers and the
 * allocation wrappers.
 *
 * Arenas hold every request's data, so a bug here corrupts other
 * allocations silently: the tests fill what they allocate and check it is
 * still intact after later allocations, and the sanitizer build checks
 * every byte written is inside a block.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/mem.h"

#define ALIGN	16		/* mem.h: "aligned for any type" */

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

static int
aligned(const void *p)
{
	return ((uintptr_t)p % ALIGN) == 0;
}

/* 1 when all n bytes of p are c. */
static int
all_bytes(const unsigned char *p, size_t n, unsigned char c)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (p[i] != c)
			return 0;
	return 1;
}

static void
test_arena_many_small_allocations_intact(void **state)
{
	unsigned char	*p[2000];
	size_t		 i;

	/* Enough to span several blocks; each filled with its index. */
	for (i = 0; i < 2000; i++) {
		p[i] = keel_arena_alloc(*state, 1 + i % 40);
		assert_non_null(p[i]);
		memset(p[i], (int)(i & 0xff), 1 + i % 40);
	}
	for (i = 0; i < 2000; i++)
		assert_true(all_bytes(p[i], 1 + i % 40,
		    (unsigned char)(i & 0xff)));
}

static void
test_arena_allocations_do_not_overlap(void **state)
{
	unsigned char	*a, *b;

	a = keel_arena_alloc(*state, 24);
	b = keel_arena_alloc(*state, 24);
	assert_true(b >= a + 24 || a >= b + 24);
}

static void
test_arena_alignment_16(void **state)
{
	static const size_t sizes[] = {
		1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 4095, 4097, 5000, 20000,
		1, 2, 3
	};
	size_t	 i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		assert_true(aligned(keel_arena_alloc(*state, sizes[i])));
}

static void
test_arena_alignment_16_after_strdup(void **state)
{
	keel_arena_strdup(*state, "odd");
	assert_true(aligned(keel_arena_alloc(*state, 8)));
	keel_arena_printf(*state, "%d", 12345);
	assert_true(aligned(keel_arena_alloc(*state, 1)));
}

static void
test_arena_large_allocation_usable(void **state)
{
	unsigned char	*small, *big;

	small = keel_arena_alloc(*state, 32);
	memset(small, 0x5a, 32);
	big = keel_arena_alloc(*state, 100000);
	assert_true(aligned(big));
	memset(big, 0xa5, 100000);
	assert_true(all_bytes(small, 32, 0x5a));
	assert_true(all_bytes(big, 100000, 0xa5));
}

static void
test_arena_large_allocation_keeps_head_block_in_use(void **state)
{
	unsigned char	*a, *big, *b;

	/* Small allocations after a large one still come from the head. */
	a = keel_arena_alloc(*state, 64);
	memset(a, 1, 64);
	big = keel_arena_alloc(*state, 5000);
	memset(big, 2, 5000);
	big = keel_arena_alloc(*state, 60000);
	memset(big, 3, 60000);
	b = keel_arena_alloc(*state, 64);
	memset(b, 4, 64);
	assert_true(all_bytes(a, 64, 1));
	assert_true(all_bytes(b, 64, 4));
	assert_true(all_bytes(big, 60000, 3));
}

static void
test_arena_large_then_reset_then_reuse(void **state)
{
	unsigned char	*first, *p, *big;
	int		 round;

	first = keel_arena_alloc(*state, 16);
	for (round = 0; round < 3; round++) {
		big = keel_arena_alloc(*state, 50000);
		memset(big, round, 50000);
		p = keel_arena_alloc(*state, 16);
		memset(p, 0xee, 16);
		keel_arena_reset(*state);
		/* Reset keeps the first block: the same memory comes back. */
		p = keel_arena_alloc(*state, 16);
		assert_ptr_equal(p, first);
		memset(p, 0x11, 16);
	}
}

static void
test_arena_reset_after_many_blocks_reuses_first(void **state)
{
	unsigned char	*first, *p;
	size_t		 i;

	first = keel_arena_alloc(*state, 100);
	for (i = 0; i < 100; i++)
		memset(keel_arena_alloc(*state, 1000), 0x77, 1000);
	keel_arena_reset(*state);
	p = keel_arena_alloc(*state, 100);
	assert_ptr_equal(p, first);
	for (i = 0; i < 100; i++)
		memset(keel_arena_alloc(*state, 1000), 0x66, 1000);
}

static void
test_arena_zero_size_allocation_not_null(void **state)
{
	void	*p;

	p = keel_arena_alloc(*state, 0);
	assert_non_null(p);
	assert_true(aligned(p));
}

static void
test_arena_block_sized_allocations(void **state)
{
	unsigned char	*p;
	size_t		 n;

	/* Around a block's size (16 KB) and the large cut-off (4 KB). */
	for (n = 4080; n <= 4112; n += 16) {
		p = keel_arena_alloc(*state, n);
		memset(p, 0x3c, n);
	}
	for (n = 16368; n <= 16400; n += 16) {
		p = keel_arena_alloc(*state, n);
		memset(p, 0x3c, n);
		assert_true(all_bytes(p, n, 0x3c));
	}
}

static void
test_arena_strdup_copies(void **state)
{
	char	 src[] = "hello";
	char	*s;

	s = keel_arena_strdup(*state, src);
	assert_ptr_not_equal(s, src);
	src[0] = 'j';
	assert_string_equal(s, "hello");
}

static void
test_arena_strdup_empty(void **state)
{
	assert_string_equal(keel_arena_strdup(*state, ""), "");
}

static void
test_arena_strndup_stops_at_n(void **state)
{
	char	*s;

	s = keel_arena_strndup(*state, "abcdef", 3);
	assert_string_equal(s, "abc");
	s = keel_arena_strndup(*state, "a\0bc", 4);
	assert_memory_equal(s, "a\0bc", 5);
}

static void
test_arena_printf_formats(void **state)
{
	assert_string_equal(keel_arena_printf(*state, "%s=%d;%zu", "n", -4,
	    (size_t)7), "n=-4;7");
	assert_string_equal(keel_arena_printf(*state, "%s", ""), "");
}

static void
test_arena_printf_long_output(void **state)
{
	char	*s;
	size_t	 i;

	/* Longer than a block: goes through the large-allocation path. */
	s = keel_arena_printf(*state, "%20000d|", 7);
	assert_int_equal(strlen(s), 20001);
	for (i = 0; i < 19999; i++)
		assert_true(s[i] == ' ');
	assert_string_equal(s + 19999, "7|");
}

static void
test_arena_cat_joins(void **state)
{
	assert_string_equal(keel_arena_cat(*state, "keel:", "rate:", "api",
	    ":u:", "42", NULL), "keel:rate:api:u:42");
	assert_string_equal(keel_arena_cat(*state, "", "x", "", NULL), "x");
	assert_string_equal(keel_arena_cat(*state, NULL), "");
}

static void
test_arena_cat_long_output(void **state)
{
	char	 big[12001];
	char	*s;

	/* Longer than a block: goes through the large-allocation path. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	s = keel_arena_cat(*state, big, "|", big, NULL);
	assert_int_equal(strlen(s), 24001);
	assert_true(s[11999] == 'a' && s[12000] == '|' && s[12001] == 'a');
}

static void
test_arena_free_null_ok(void **state)
{
	(void)state;
	keel_arena_free(NULL);
}

static void
test_arena_new_free_cycle(void **state)
{
	struct keel_arena	*a;
	int			 i;

	(void)state;
	for (i = 0; i < 50; i++) {
		a = keel_arena_new();
		memset(keel_arena_alloc(a, 30000), 0, 30000);
		keel_arena_strdup(a, "x");
		keel_arena_free(a);
	}
}

static void
test_buf_append_from_empty(void **state)
{
	struct keel_buf	 b = { 0 };

	(void)state;
	keel_buf_append(&b, "abc", 3);
	assert_int_equal(b.len, 3);
	assert_true(b.cap > b.len);
	assert_string_equal(b.data, "abc");
	keel_buf_free(&b);
}

static void
test_buf_append_binary_keeps_nul(void **state)
{
	struct keel_buf	 b = { 0 };

	(void)state;
	keel_buf_append(&b, "a\0b", 3);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "a\0b", 4);
	keel_buf_free(&b);
}

static void
test_buf_growth_across_many_appends(void **state)
{
	struct keel_buf	 b = { 0 };
	size_t		 i;

	(void)state;
	for (i = 0; i < 10000; i++) {
		keel_buf_putc(&b, (char)('a' + i % 26));
		keel_buf_puts(&b, "--");
	}
	assert_int_equal(b.len, 30000);
	assert_true(b.cap > b.len);
	assert_int_equal(b.data[b.len], '\0');
	for (i = 0; i < 10000; i++) {
		assert_int_equal(b.data[3 * i], 'a' + i % 26);
		assert_memory_equal(b.data + 3 * i + 1, "--", 2);
	}
	keel_buf_free(&b);
}

static void
test_buf_large_single_append(void **state)
{
	struct keel_buf	 b = { 0 };
	char		*big;

	(void)state;
	big = keel_malloc(70000);
	memset(big, 'z', 70000);
	keel_buf_puts(&b, "<");
	keel_buf_append(&b, big, 70000);
	keel_buf_puts(&b, ">");
	assert_int_equal(b.len, 70002);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[70000], 'z');
	assert_string_equal(b.data + 70001, ">");
	free(big);
	keel_buf_free(&b);
}

static void
test_buf_printf_appends(void **state)
{
	struct keel_buf	 b = { 0 };

	(void)state;
	keel_buf_puts(&b, "x=");
	keel_buf_printf(&b, "%d,%s", 42, "y");
	keel_buf_printf(&b, "%c", '!');
	assert_string_equal(b.data, "x=42,y!");
	assert_int_equal(b.len, 7);
	keel_buf_free(&b);
}

static void
test_buf_printf_growth(void **state)
{
	struct keel_buf	 b = { 0 };
	size_t		 i;

	(void)state;
	for (i = 0; i < 2000; i++)
		keel_buf_printf(&b, "%04zu;", i);
	assert_int_equal(b.len, 2000 * 5);
	assert_memory_equal(b.data, "0000;0001;", 10);
	assert_string_equal(b.data + b.len - 5, "1999;");
	keel_buf_printf(&b, "%5000s", "");
	assert_int_equal(b.len, 2000 * 5 + 5000);
	assert_int_equal(b.data[b.len], '\0');
	keel_buf_free(&b);
}

static void
test_buf_printf_empty_on_fresh_buf(void **state)
{
	struct keel_buf	 b = { 0 };

	(void)state;
	keel_buf_printf(&b, "%s", "");
	assert_int_equal(b.len, 0);
	assert_non_null(b.data);
	assert_string_equal(b.data, "");
	keel_buf_free(&b);
}

static void
test_buf_reset_keeps_capacity(void **state)
{
	struct keel_buf	 b = { 0 };
	const char	*data;
	size_t		 cap;

	(void)state;
	keel_buf_printf(&b, "%3000s", "x");
	data = b.data;
	cap = b.cap;
	keel_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, cap);
	assert_ptr_equal(b.data, data);
	assert_string_equal(b.data, "");
	keel_buf_puts(&b, "again");
	assert_ptr_equal(b.data, data);
	assert_string_equal(b.data, "again");
	keel_buf_free(&b);
}

static void
test_buf_reset_fresh_buf_ok(void **state)
{
	struct keel_buf	 b = { 0 };

	(void)state;
	keel_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_null(b.data);
}

static void
test_buf_free_null_ok(void **state)
{
	(void)state;
	keel_buf_free(NULL);
}

static void
test_buf_free_then_reuse(void **state)
{
	struct keel_buf	 b = { 0 };

	(void)state;
	keel_buf_puts(&b, "one");
	keel_buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	keel_buf_free(&b);		/* twice is harmless */
	keel_buf_puts(&b, "two");
	assert_string_equal(b.data, "two");
	keel_buf_free(&b);
}

static void
test_strdup_and_strndup(void **state)
{
	char	*s;

	(void)state;
	s = keel_strdup("keel");
	assert_string_equal(s, "keel");
	free(s);
	s = keel_strndup("keelson", 4);
	assert_string_equal(s, "keel");
	free(s);
	s = keel_strndup("", 0);
	assert_string_equal(s, "");
	free(s);
}

static void
test_calloc_zeroes_and_zero_size_not_null(void **state)
{
	unsigned char	*p;
	void		*q;

	(void)state;
	p = keel_calloc(100, 3);
	assert_true(all_bytes(p, 300, 0));
	free(p);
	q = keel_malloc(0);
	assert_non_null(q);
	free(q);
	q = keel_calloc(0, 8);
	assert_non_null(q);
	free(q);
}

static void
test_realloc_keeps_contents(void **state)
{
	char	*p;

	(void)state;
	p = keel_strdup("abc");
	p = keel_realloc(p, 100000);
	assert_string_equal(p, "abc");
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_arena_many_small_allocations_intact),
		T(test_arena_allocations_do_not_overlap),
		T(test_arena_alignment_16),
		T(test_arena_alignment_16_after_strdup),
		T(test_arena_large_allocation_usable),
		T(test_arena_large_allocation_keeps_head_block_in_use),
		T(test_arena_large_then_reset_then_reuse),
		T(test_arena_reset_after_many_blocks_reuses_first),
		T(test_arena_zero_size_allocation_not_null),
		T(test_arena_block_sized_allocations),
		T(test_arena_strdup_copies),
		T(test_arena_strdup_empty),
		T(test_arena_strndup_stops_at_n),
		T(test_arena_printf_formats),
		T(test_arena_printf_long_output),
		T(test_arena_cat_joins),
		T(test_arena_cat_long_output),
#undef T
		cmocka_unit_test(test_arena_free_null_ok),
		cmocka_unit_test(test_arena_new_free_cycle),
		cmocka_unit_test(test_buf_append_from_empty),
		cmocka_unit_test(test_buf_append_binary_keeps_nul),
		cmocka_unit_test(test_buf_growth_across_many_appends),
		cmocka_unit_test(test_buf_large_single_append),
		cmocka_unit_test(test_buf_printf_appends),
		cmocka_unit_test(test_buf_printf_growth),
		cmocka_unit_test(test_buf_printf_empty_on_fresh_buf),
		cmocka_unit_test(test_buf_reset_keeps_capacity),
		cmocka_unit_test(test_buf_reset_fresh_buf_ok),
		cmocka_unit_test(test_buf_free_null_ok),
		cmocka_unit_test(test_buf_free_then_reuse),
		cmocka_unit_test(test_strdup_and_strndup),
		cmocka_unit_test(test_calloc_zeroes_and_zero_size_not_null),
		cmocka_unit_test(test_realloc_keeps_contents),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
