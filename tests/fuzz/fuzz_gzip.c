/* SPDX-License-Identifier: ISC */
/* fuzz_gzip.c -- libFuzzer driver: Accept-Encoding, and gzip's round trip. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "keel/gzip.h"
#include "keel/mem.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	struct keel_buf	 s = { NULL, 0, 0 }, gz = { NULL, 0, 0 };
	unsigned char	*back;
	uLongf		 blen = n;
	z_stream	 z;

	/* lighttpd hands a header over as NUL-terminated text. */
	keel_buf_append(&s, data, n);
	if (keel_gzip_wanted(s.data, "") != keel_gzip_wanted(s.data, NULL))
		__builtin_trap();	/* empty x-no-compression is absent */
	if (keel_gzip_wanted(s.data, "1"))
		__builtin_trap();
	/* Any bytes code and decode to themselves. */
	if (keel_gzip_compress(&gz, data, n) != KEEL_OK)
		__builtin_trap();
	back = keel_malloc(n + 1);
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + 15) != Z_OK)
		__builtin_trap();
	z.next_in = (unsigned char *)gz.data;
	z.avail_in = (uInt)gz.len;
	z.next_out = back;
	z.avail_out = (uInt)n + 1;
	if (inflate(&z, Z_FINISH) != Z_STREAM_END)
		__builtin_trap();
	blen = z.total_out;
	inflateEnd(&z);
	if (blen != n || (n > 0 && memcmp(back, data, n) != 0))
		__builtin_trap();
	free(back);
	keel_buf_free(&s);
	keel_buf_free(&gz);
	return 0;
}
