/* SPDX-License-Identifier: ISC */
/* fuzz_query.c -- libFuzzer driver: query strings and path decoding. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "keel/http.h"
#include "keel/mem.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static struct keel_arena *a;
	struct keel_param	*qs;
	const char		*bad;
	char			*s, *d;
	size_t			 nqs, i;

	if (a == NULL)
		a = keel_arena_new();
	keel_arena_reset(a);
	/* lighttpd hands over NUL-terminated text. */
	s = keel_arena_strndup(a, (const char *)data, n);
	if (keel_http_parse_query(a, s, &qs, &nqs, &bad) == KEEL_OK)
		for (i = 0; i < nqs; i++)
			if (!keel_utf8_valid(qs[i].name, strlen(qs[i].name)) ||
			    !keel_utf8_valid(qs[i].value, strlen(qs[i].value)))
				__builtin_trap();	/* promised valid */
	if ((d = keel_http_decode(a, s, strlen(s), 0)) != NULL &&
	    strlen(d) > strlen(s))
		__builtin_trap();		/* decoding never grows */
	return 0;
}
