/* SPDX-License-Identifier: ISC */
/* gzip.h -- the gzip content coding: who accepts it, and making it. */
#ifndef KEEL_GZIP_H
#define KEEL_GZIP_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/err.h"

struct keel_buf;

/*
 * Bodies of at most this many bytes are sent as they are, as
 * lighttpd.conf's deflate.min-compress-size has it for the page's files.
 */
#define KEEL_GZIP_MIN		1024
/* The level, as lighttpd.conf's deflate.compression-level. */
#define KEEL_GZIP_LEVEL		6

/*
 * True when an answer to a request with these header values (NULL:
 * absent) may be sent gzip-coded: accept_encoding accepts gzip (RFC 9110
 * §12.5.3: "gzip" or "x-gzip" with a q-value above 0, else "*" with
 * one), and no_compression (the x-no-compression header of API.md) is
 * absent or empty.  No Accept-Encoding means identity, as lighttpd has
 * it; an element that does not parse counts as absent; gzip is chosen
 * whenever acceptable, whatever q "identity" has.  Pure: unit-tested.
 */
bool		 keel_gzip_wanted(const char *accept_encoding,
		    const char *no_compression);

/*
 * True when an answer of type ctype (NULL: none) with a body of len
 * bytes is coded for a client that takes gzip: more than KEEL_GZIP_MIN
 * bytes of application/json or text/... (each a prefix of the type, as
 * mod_deflate matches deflate.mimetypes).  Pure: unit-tested.
 */
bool		 keel_gzip_codes(const char *ctype, size_t len);

/*
 * Appends the gzip coding (RFC 1952, libdeflate at KEEL_GZIP_LEVEL) of
 * src (n bytes; NULL when n is 0) to out, which the caller owns.
 * KEEL_OK, or KEEL_ETOOBIG past 4 GiB and KEEL_EINTERNAL when libdeflate
 * fails (logged), with out as it was.  The same bytes for the same input.
 * The process's one compressor is made on the first call and kept: not
 * for threads.  Unit-tested.
 */
enum keel_err	 keel_gzip_compress(struct keel_buf *out, const void *src,
		    size_t n);

#endif /* KEEL_GZIP_H */
