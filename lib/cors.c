/* SPDX-License-Identifier: ISC */
/*
 * cors.c -- KEEL_CORS_ORIGINS: read at start, matched per request.
 *
 * An origin is matched byte for byte against the request's Origin
 * header, never by pattern or suffix (a suffix match lets
 * app.example.com.evil.test in), so the setting must be written as a
 * browser writes the header, and a value a browser could never send (a
 * trailing '/', upper case, a default port) is refused at start rather
 * than left to fail silently in the browser.  The list stays the string
 * it was set to: a request walks it, a few origins long.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "keel/cors.h"
#include "keel/text.h"

/* What keel_cors_origins_valid() writes its reason into. */
struct why {
	char	*buf;
	size_t	 n;
};

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static const char *
skip_blanks(const char *s)
{
	while (is_blank(*s))
		s++;
	return s;
}

/* True when the list, blanks trimmed, is exactly "*". */
static bool
is_any(const char *list)
{
	list = skip_blanks(list);
	return *list == '*' && *skip_blanks(list + 1) == '\0';
}

static bool
host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '.';
}

static bool
v6_char(char c)
{
	return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9') ||
	    c == ':' || c == '.';
}

/*
 * The host at *p (before e): a bracketed IPv6 address or a name (an IPv4
 * address is one too) of non-empty dot-separated labels.  Moves *p past
 * it; NULL, or why it is not one.
 */
static const char *
host_skip(const char **p, const char *e)
{
	const char	*s = *p, *h;

	if (s < e && *s == '[') {
		for (h = ++s; s < e && v6_char(*s); s++)
			continue;
		if (s == h || s == e || *s != ']')
			return "expected an IPv6 address in lower case "
			    "between [ and ]";
		*p = s + 1;
		return NULL;
	}
	for (h = s; s < e && host_char(*s); s++)
		if (*s == '.' && (s == h || s[-1] == '.'))
			return "the host has an empty label";
	if (s == h)
		return "expected a host after the scheme";
	if (s[-1] == '.')
		return "the host ends with a '.', which browsers drop";
	*p = s;
	return NULL;
}

/* The ":port" at *p, if any: 1..65535, not def.  NULL, or why not. */
static const char *
port_skip(const char **p, const char *e, long def)
{
	const char	*s = *p;
	long		 port = 0;
	int		 digits = 0;

	if (s == e || *s != ':')
		return NULL;
	for (s++; s < e && *s >= '0' && *s <= '9' && digits < 6; s++) {
		port = port * 10 + (*s - '0');
		digits++;
	}
	if (digits == 0 || digits == 6 || port < 1 || port > 65535 ||
	    (*p)[1] == '0')
		return "expected a port from 1 to 65535 after ':'";
	/* Fetch's origin serialization leaves the default port out. */
	if (port == def)
		return "the scheme's default port is left out of an origin "
		    "(browsers never send it)";
	*p = s;
	return NULL;
}

/* Why the n bytes at s are not an origin a browser sends, or NULL. */
static const char *
origin_why(const char *s, size_t n)
{
	const char	*p, *e = s + n, *why;
	long		 def;

	for (p = s; p < e; p++)
		if (*p >= 'A' && *p <= 'Z')
			return "an origin is in lower case, as browsers send "
			    "it";
	if (n >= 7 && memcmp(s, "http://", 7) == 0) {
		p = s + 7;
		def = 80;
	} else if (n >= 8 && memcmp(s, "https://", 8) == 0) {
		p = s + 8;
		def = 443;
	} else
		return "expected http://host[:port] or https://host[:port] "
		    "(scheme in lower case)";
	if ((why = host_skip(&p, e)) != NULL ||
	    (why = port_skip(&p, e, def)) != NULL)
		return why;
	if (p == e)
		return NULL;
	if (*p == '/')
		return "an origin has no path, not even a trailing '/'";
	return "expected scheme://host[:port] and nothing else (no user, "
	    "path, query or blank)";
}

static bool
origin_item(const char *s, size_t n, void *arg)
{
	struct why	*w = arg;
	const char	*why;

	if ((why = origin_why(s, n)) == NULL)
		return true;
	snprintf(w->buf, w->n, "\"%.*s\": %s", n > 80 ? 80 : (int)n, s, why);
	return false;
}

/* True when some item of the list is empty ("a,,b", "a,"). */
static bool
has_empty_item(const char *s)
{
	const char	*c;

	for (;;) {
		s = skip_blanks(s);
		if (*s == ',' || *s == '\0')
			return true;
		if ((c = strchr(s, ',')) == NULL)
			return false;
		s = c + 1;
	}
}

bool
keel_cors_origins_valid(const char *list, char *why, size_t n)
{
	struct why	 w = { why, n };

	if (*skip_blanks(list) == '\0' || is_any(list))
		return true;
	if (strchr(list, '*') != NULL) {
		snprintf(why, n, "\"*\" stands alone (any origin), never in "
		    "a list");
		return false;
	}
	if (has_empty_item(list)) {
		snprintf(why, n, "an empty item in the list");
		return false;
	}
	return keel_text_each(list, origin_item, &w);
}

/* keel_text_each()'s walk looking for one origin. */
struct find {
	const char	*origin;
	size_t		 len;
};

static bool
not_it(const char *s, size_t n, void *arg)
{
	const struct find	*f = arg;

	return n != f->len || memcmp(s, f->origin, n) != 0;
}

const char *
keel_cors_allow_origin(const char *list, const char *origin)
{
	struct find	 f;

	if (origin == NULL || *skip_blanks(list) == '\0')
		return NULL;
	if (is_any(list))
		return "*";
	f.origin = origin;
	f.len = strlen(origin);
	/* The walk stops (false) at the origin. */
	if (f.len == 0 || keel_text_each(list, not_it, &f))
		return NULL;
	return origin;
}

bool
keel_cors_varies(const char *list)
{
	return *skip_blanks(list) != '\0' && !is_any(list);
}
