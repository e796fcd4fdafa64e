/* SPDX-License-Identifier: ISC */
/*
 * text.c -- UTF-8, bounded integers, dates, comma lists, decimals.
 *
 * The bottom of lib: what the parsers of client bytes (http, json) and of
 * the configuration (config, addr) share, with no allocation and no other
 * module beneath it, so that nothing above has to reach sideways for it.
 */
#include "config.h"

#include <string.h>

#include "keel/text.h"

bool
keel_utf8_valid(const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	const unsigned char	*end = p + n;
	unsigned int		 c, need, min;

	while (p < end) {
		c = *p++;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			min = 0x80;
			c &= 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			min = 0x800;
			c &= 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			min = 0x10000;
			c &= 0x07;
		} else
			return false;
		if ((size_t)(end - p) < need)
			return false;
		for (; need > 0; need--, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (*p & 0x3f);
		}
		/* Overlongs, surrogates and past U+10FFFF (RFC 3629 §3). */
		if (c < min || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
			return false;
	}
	return true;
}

size_t
keel_utf8_chars(const char *s)
{
	size_t	 n = 0;

	/* Every byte but a continuation byte starts a character. */
	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

bool
keel_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	const char	*p = s;
	int64_t		 v = 0;
	int		 neg = 0, digits = 0, d;

	if (*p == '-') {
		neg = 1;
		p++;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		d = *p - '0';
		/* Accumulate negatively so INT64_MIN parses too. */
		if (v < (INT64_MIN + d) / 10)
			return false;
		v = v * 10 - d;
		if (++digits > 19)
			return false;
	}
	if (digits == 0 || *p != '\0')
		return false;
	if (!neg) {
		if (v == INT64_MIN)
			return false;
		v = -v;
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

/*
 * True when p starts a code point keel_text_one_line() refuses past
 * ASCII: a C1 control U+0080-009F (C2 80-9F; U+0085 NEL ends a line,
 * U+009B is an 8-bit CSI that terminals take for ESC [), the line and
 * paragraph separators U+2028-2029 (E2 80 A8-A9), the bidi embeddings
 * and overrides U+202A-202E (E2 80 AA-AE) and isolates U+2066-2069
 * (E2 81 A6-A9; Unicode TR #9 §2), which turn the text shown after a
 * name around: one user's name would rewrite a leaderboard line, a
 * notification or an email someone else reads.  The callers' strings
 * are NUL-terminated, so a byte is read only when the one before it
 * matched (and is not NUL).
 */
static bool
not_one_line_utf8(const unsigned char *p)
{
	if (p[0] == 0xc2)
		return p[1] >= 0x80 && p[1] <= 0x9f;
	if (p[0] != 0xe2)
		return false;
	if (p[1] == 0x80)
		return p[2] >= 0xa8 && p[2] <= 0xae;
	if (p[1] == 0x81)
		return p[2] >= 0xa6 && p[2] <= 0xa9;
	return false;
}

bool
keel_text_one_line(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;

	for (; *p != '\0'; p++)
		if (*p < ' ' || *p == 0x7f || not_one_line_utf8(p))
			return false;
	return true;
}

/* RFC 5322 §3.2.3's atext, the ASCII letters and digits aside. */
static bool
atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-';
}

bool
keel_text_email_valid(const char *s)
{
	const char	*at, *p, *label;
	size_t		 labels = 0;

	if (s == NULL || strlen(s) > KEEL_TEXT_EMAIL_MAX ||
	    (at = strchr(s, '@')) == NULL || at == s || at - s > 64)
		return false;
	/* Local part: atoms joined by single dots. */
	for (p = s; p < at; p++)
		if (*p == '.') {
			if (p == s || p + 1 == at || p[1] == '.')
				return false;
		} else if (!atext((unsigned char)*p))
			return false;
	/* Domain: LDH labels, none empty, none starting or ending '-'. */
	for (label = p = at + 1;; p++) {
		if (*p == '.' || *p == '\0') {
			if (p == label || p - label > 63 || *label == '-' ||
			    p[-1] == '-')
				return false;
			labels++;
			if (*p == '\0')
				break;
			label = p + 1;
		} else if (!ldh((unsigned char)*p))
			return false;
	}
	return labels >= 2;
}

bool
keel_date_valid(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };
	int	 y, m, d, i, leap;

	for (i = 0; i < 10; i++) {
		if (i == 4 || i == 7) {
			if (s[i] != '-')
				return false;
		} else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	if (s[10] != '\0')
		return false;
	y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
	    (s[3] - '0');
	m = (s[5] - '0') * 10 + (s[6] - '0');
	d = (s[8] - '0') * 10 + (s[9] - '0');
	if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m != 2 || d != 29 || leap;
}

void
keel_time_format(time_t t, char buf[KEEL_TIME_LEN + 1])
{
	struct tm	 tm;

	/* Past year 9999 it doesn't fit: an empty string, never garbage. */
	if (gmtime_r(&t, &tm) == NULL || strftime(buf, KEEL_TIME_LEN + 1,
	    "%Y-%m-%dT%H:%M:%S.000000Z", &tm) == 0)
		buf[0] = '\0';
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

bool
keel_text_each(const char *s, keel_text_item_fn *fn, void *arg)
{
	const char	*e;
	size_t		 n;

	while (*s != '\0') {
		while (is_blank(*s))
			s++;
		e = strchr(s, ',');
		n = e == NULL ? strlen(s) : (size_t)(e - s);
		while (n > 0 && is_blank(s[n - 1]))
			n--;
		if (n > 0 && !fn(s, n, arg))
			return false;
		if (e == NULL)
			break;
		s = e + 1;
	}
	return true;
}

size_t
keel_text_int(char out[KEEL_TEXT_INT_MAX], int64_t v)
{
	char		 tmp[KEEL_TEXT_INT_MAX], *p = tmp + sizeof(tmp);
	uint64_t	 u = v < 0 ? -(uint64_t)v : (uint64_t)v;
	size_t		 n;

	/* Backwards from the end, then moved to the front. */
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		*--p = '-';
	n = (size_t)(tmp + sizeof(tmp) - p);
	memcpy(out, p, n);
	out[n] = '\0';
	return n;
}

size_t
keel_text_copy(char *dst, size_t size, const char *s)
{
	size_t	 n;

	for (n = 0; n + 1 < size && s[n] != '\0'; n++)
		continue;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return n;
}

bool
keel_text_request_id_valid(const char *s)
{
	size_t	 n;

	for (n = 0; s[n] != '\0'; n++)
		if (n == KEEL_TEXT_REQUEST_ID_MAX ||
		    !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' &&
		    s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9') ||
		    strchr("._:-", s[n]) != NULL))
			return false;
	return n > 0;
}
