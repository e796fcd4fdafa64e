/* SPDX-License-Identifier: ISC */
/*
 * gzip.c -- the gzip content coding: Accept-Encoding, and libdeflate.
 *
 * keel codes its own answers: a cached one once, when it is stored
 * (cache.c), every other one as it is sent (http.c); lighttpd's
 * mod_deflate codes only the page's static files.  So whether an answer
 * is coded is decided by the RFC rather than by lighttpd 1.4.69's
 * reading of the header (which ignores q-values: "gzip;q=0" gets gzip
 * from it), the same way for a cached answer and an uncached one, and a
 * HEAD gets the headers of its GET (lighttpd codes no HEAD: there is no
 * body to code).  libdeflate codes a whole buffer in one call, at
 * lighttpd's level for small answers; on the 4.5 KB car list it takes
 * about a quarter of zlib's time, and a process keeps its compressor.
 */
#include "config.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <libdeflate.h>

#include "keel/err.h"
#include "keel/gzip.h"
#include "keel/log.h"
#include "keel/mem.h"

#define QMAX		1000	/* q=1, in thousandths */

/* OWS (RFC 9110 §5.6.3). */
static const char *
skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * A qvalue (RFC 9110 §12.4.2) at p, "0" [ "." 0*3DIGIT ] or "1" [ "."
 * 0*3"0" ], in thousandths into *q; returns the text after it, or NULL
 * when it doesn't parse.
 */
static const char *
parse_qvalue(const char *p, int *q)
{
	int	 v, scale;

	if (*p != '0' && *p != '1')
		return NULL;
	v = (*p++ - '0') * QMAX;
	if (*p == '.')
		for (p++, scale = QMAX / 10; scale > 0 && *p >= '0' &&
		    *p <= '9'; scale /= 10, p++)
			v += (*p - '0') * scale;
	if (v > QMAX)
		return NULL;
	*q = v;
	return p;
}

/*
 * One element of the list at p, coding *( OWS ";" OWS name "=" value ):
 * its coding into tok (*n bytes) and its q-value in thousandths (QMAX
 * when it has none) into *q, -1 when the element doesn't parse.  Other
 * parameters are skipped.  Returns the text after it: a ',' or the end.
 */
static const char *
parse_element(const char *p, const char **tok, size_t *n, int *q)
{
	const char	*after;
	size_t		 namelen;
	bool		 is_q;

	*q = QMAX;
	p = skip_ows(p);
	*tok = p;
	*n = strcspn(p, ",; \t");
	p += *n;
	for (;;) {
		p = skip_ows(p);
		if (*p == '\0' || *p == ',')
			return p;
		if (*p != ';')
			break;
		p = skip_ows(p + 1);
		namelen = strcspn(p, "=,; \t");
		is_q = namelen == 1 && (*p == 'q' || *p == 'Q');
		p += namelen;
		if (*p != '=')
			break;
		p++;
		if (!is_q)
			p += strcspn(p, ",; \t");
		else if ((after = parse_qvalue(p, q)) != NULL)
			p = after;
		else
			break;
	}
	*q = -1;
	return p + strcspn(p, ",");
}

static bool
coding_is(const char *tok, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(tok, name, n) == 0;
}

static int
max_q(int a, int b)
{
	return a > b ? a : b;
}

bool
keel_gzip_wanted(const char *accept_encoding, const char *no_compression)
{
	const char	*p, *tok;
	size_t		 n;
	int		 q, gzip = -1, any = -1;

	if (accept_encoding == NULL ||
	    (no_compression != NULL && *no_compression != '\0'))
		return false;
	for (p = accept_encoding; *p != '\0'; p += *p == ',') {
		p = parse_element(p, &tok, &n, &q);
		if (q < 0 || n == 0)
			continue;
		/* RFC 9110 §8.4.1.3: x-gzip is gzip. */
		if (coding_is(tok, n, "gzip") || coding_is(tok, n, "x-gzip"))
			gzip = max_q(gzip, q);
		else if (coding_is(tok, n, "*"))
			any = max_q(any, q);
	}
	/*
	 * Named, gzip's own q rules; else "*" speaks for it.  Among
	 * acceptable codings the server chooses (RFC 9110 §12.5.3): gzip,
	 * even below an "identity" of a higher q, as lighttpd chooses for
	 * the answers it codes (and would code keel's identity reply).
	 */
	if (gzip < 0)
		gzip = any;
	return gzip > 0;
}

bool
keel_gzip_codes(const char *ctype, size_t len)
{
	/* mod_deflate matches each entry as a prefix of the type. */
	return len > KEEL_GZIP_MIN && ctype != NULL &&
	    (strncmp(ctype, "application/json", 16) == 0 ||
	    strncmp(ctype, "text/", 5) == 0);
}

enum keel_err
keel_gzip_compress(struct keel_buf *out, const void *src, size_t n)
{
	/* One per process, made on first use: the workers are forked. */
	static struct libdeflate_compressor	*c;
	size_t					 bound, got;

	if (n > UINT_MAX)
		return KEEL_ETOOBIG;
	if (c == NULL &&
	    (c = libdeflate_alloc_compressor(KEEL_GZIP_LEVEL)) == NULL) {
		keel_log_warnx("gzip: libdeflate_alloc_compressor failed");
		return KEEL_EINTERNAL;
	}
	if (src == NULL)
		src = "";
	bound = libdeflate_gzip_compress_bound(c, n);
	keel_buf_reserve(out, bound);
	got = libdeflate_gzip_compress(c, src, n, out->data + out->len,
	    bound);
	if (got == 0) {
		/* Not expected: bound is the worst case. */
		keel_log_warnx("gzip: libdeflate_gzip_compress failed");
		return KEEL_EINTERNAL;
	}
	out->len += got;
	out->data[out->len] = '\0';
	return KEEL_OK;
}
