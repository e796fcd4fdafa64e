/* SPDX-License-Identifier: ISC */
/* text.h -- leaf helpers: UTF-8, bounded integers, dates, lists, decimals. */
#ifndef KEEL_TEXT_H
#define KEEL_TEXT_H

/*
 * Nothing here allocates or depends on another keel module: every module
 * that reads client or configuration text may use these.  Predicates
 * return bool, true when the text is acceptable.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* True when s (n bytes) is well-formed UTF-8 (RFC 3629). */
bool		 keel_utf8_valid(const char *s, size_t n);
/* Characters (code points) in the valid UTF-8 string s. */
size_t		 keel_utf8_chars(const char *s);

/*
 * Bounded integer parsing: the whole of s must be an optional '-' and
 * 1..19 digits within [min, max].  True with *out set, else false and
 * *out untouched.
 */
bool		 keel_parse_int64(const char *s, int64_t min, int64_t max,
		    int64_t *out);

/*
 * True when s holds one line of text that shows as it reads: no control
 * character (C0, DEL, C1 U+0080-009F), no line or paragraph separator
 * (U+2028-2029) and no bidi embedding, override or isolate (U+202A-202E,
 * U+2066-2069).  Other code points, bidi marks (U+200E-200F) among
 * them, are left alone.  s is not NULL.
 */
bool		 keel_text_one_line(const char *s);

/*
 * The one email address check, the API's and the mailer's: an addr-spec
 * we will put in a header and an SMTP command, ASCII only.  The local
 * part a dot-atom of atext (RFC 5322 §3.2.3, at most 64 bytes), the
 * domain two or more labels of letters, digits and inner '-' (RFC 5321
 * §4.1.2, each 1..63 bytes), 254 bytes in all (RFC 5321 §4.5.3.1).  No
 * quoted local parts, comments, address literals or trailing dot.
 * s may be NULL (false).
 */
#define KEEL_TEXT_EMAIL_MAX	254
bool		 keel_text_email_valid(const char *s);

/* True when s is a YYYY-MM-DD date that exists in the calendar. */
bool		 keel_date_valid(const char *s);

/*
 * t as every timestamp of the API is written (RFC 3339 UTC with
 * microseconds, as KEEL_SQL_TIME has PostgreSQL write them):
 * "2026-12-06T02:30:00.000000Z", into buf.
 */
#define KEEL_TIME_LEN	27
void		 keel_time_format(time_t t, char buf[KEEL_TIME_LEN + 1]);

/*
 * Comma-separated lists ("a, b,c"): calls fn on each item with its
 * surrounding blanks trimmed (s, n bytes; not NUL-terminated), skipping
 * empty items.  fn returns false to stop.  Returns true when the walk
 * reached the end, false when fn stopped it.
 */
typedef bool	 keel_text_item_fn(const char *s, size_t n, void *arg);
bool		 keel_text_each(const char *list, keel_text_item_fn *fn,
		    void *arg);

/*
 * The one decimal formatter: v in decimal into out, NUL-terminated, as
 * printf's "%lld" writes it.  Returns the length.
 */
#define KEEL_TEXT_INT_MAX	21	/* "-9223372036854775808" and NUL */
size_t		 keel_text_int(char out[KEEL_TEXT_INT_MAX], int64_t v);

/*
 * s into dst[0..size), cut to fit and NUL-terminated (size > 0), as
 * snprintf(dst, size, "%s", s) writes it without parsing a format.
 * Returns the length written.
 */
size_t		 keel_text_copy(char *dst, size_t size, const char *s);

/*
 * A request id a proxy may hand us (X-Request-Id), or a job carries: 1 to
 * KEEL_TEXT_REQUEST_ID_MAX of [A-Za-z0-9._:-] (a UUID, a trace id),
 * nothing that could break a log line or a mail header.
 */
#define KEEL_TEXT_REQUEST_ID_MAX	64
bool		 keel_text_request_id_valid(const char *s);

#endif /* KEEL_TEXT_H */
