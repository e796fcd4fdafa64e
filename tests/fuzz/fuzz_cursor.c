/* SPDX-License-Identifier: ISC */
/* fuzz_cursor.c -- libFuzzer driver: cursors from clients must never
 * decode unless we signed them. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "keel/mem.h"
#include "keel/page.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define SECRET	"fuzz-secret-fuzz-secret-fuzz-secret!"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static struct keel_arena *a;
	const char		*keys[2], *in[2];
	char			*tok, *again;

	if (a == NULL) {
		if (sodium_init() < 0)
			__builtin_trap();
		a = keel_arena_new();
	}
	keel_arena_reset(a);
	tok = keel_arena_strndup(a, (const char *)data, n);
	/* A forged cursor decodes only by a 2^-128 accident. */
	if (keel_page_decode(a, SECRET, "cars", tok, keys, 2) == KEEL_OK)
		__builtin_trap();
	/* Our own cursors always round-trip, whatever the keys hold, up to
	 * the payload bound page.c documents. */
	if (strlen(tok) > 256)
		return 0;
	in[0] = tok;
	in[1] = "42";
	again = keel_page_encode(a, SECRET, "cars", in, 2);
	if (keel_page_decode(a, SECRET, "cars", again, keys, 2) != KEEL_OK ||
	    strcmp(keys[0], tok) != 0 || strcmp(keys[1], "42") != 0)
		__builtin_trap();
	return 0;
}
