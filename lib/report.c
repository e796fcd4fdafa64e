/* SPDX-License-Identifier: ISC */
/*
 * report.c -- Sentry-compatible error reports, spooled locally.
 *
 * An unexpected failure (a 500, a worker that died, a job dead-lettered
 * for an internal reason) becomes a Sentry event: built here from plain
 * data, every header and name scrubbed before anything is serialised,
 * written as an envelope (one item) into the spool directory -- a file
 * in tmp/, then rename(2) into new/, so a reader never sees half of one.
 * Nothing on a request's path touches the network: keel-report-ship
 * (cron) sends the files to the DSN's envelope endpoint and deletes what
 * was taken.  The spool is bounded by files and bytes; past either the
 * newest event is dropped and counted (a byte appended to "dropped"),
 * and transactions (the sampled requests) only ever take the first half
 * of it, so they can't crowd errors out.  When Sentry asks for a pause
 * (429, X-Sentry-Rate-Limits, Retry-After) the shipper writes the
 * deadline into the spool's "backoff" file, which every process of the
 * host reads: the shipper sends nothing before it, producers spool no
 * transactions meanwhile and keep spooling errors within the bound.
 *
 * curl lives here and in mail.c, each for its own protocol.
 */
#include "config.h"

#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "keel/config.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/report.h"
#include "keel/text.h"

#define VALUE_MAX	8192	/* bytes of an exception's value */
#define HEADER_MAX	1024	/* bytes of a header's value */
#define HEADERS_MAX	64	/* headers of a request */
#define TAG_KEY_MAX	32	/* Sentry's limits */
#define TAG_VALUE_MAX	200
#define BACKOFF_MAX	86400	/* seconds: a day at most */
#define NAME_MAX_LEN	128	/* a spool file's name */
#define TXN_BATCH	32	/* transactions a process holds, then writes
				   as one file */
#define TXN_AGE		10.0	/* seconds the oldest of them may wait */

/* The process's reporting: set once by keel_report_init(). */
static struct {
	bool			 on;
	const struct keel_config *cfg;
	const char		*prog;
	struct keel_report_dsn	 dsn;
	char			 host[256];
	char			 dir[1024];	/* the spool (KEEL_REPORT_SPOOL) */
	long			 drops;		/* this process's, for logs */
	struct keel_buf		 txns;		/* transactions not written */
	int			 ntxns;
	double			 txn_first;	/* when the oldest was added */
	CURL			*curl;		/* the shipper's handle */
} st;

/* ------------------------------------------------------------ the DSN */

/* Copies n bytes of s into dst (size dstn); false when they don't fit. */
static bool
copy_part(char *dst, size_t dstn, const char *s, size_t n)
{
	if (n >= dstn)
		return false;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return true;
}

bool
keel_report_dsn_parse(const char *s, struct keel_report_dsn *out)
{
	const char	*p, *at, *slash, *last, *c;
	size_t		 n;

	memset(out, 0, sizeof(*out));
	if (strncmp(s, "https://", 8) == 0) {
		memcpy(out->scheme, "https", 6);
		p = s + 8;
	} else if (strncmp(s, "http://", 7) == 0) {
		memcpy(out->scheme, "http", 5);
		p = s + 7;
	} else
		return false;
	if ((slash = strchr(p, '/')) == NULL ||
	    (at = memchr(p, '@', (size_t)(slash - p))) == NULL)
		return false;
	/* key[:secret]: the secret is old, unneeded, and not kept. */
	n = strcspn(p, ":@");
	if (n == 0 || !copy_part(out->key, sizeof(out->key), p, n))
		return false;
	for (c = p; c < p + n; c++)
		if (!isalnum((unsigned char)*c))
			return false;
	if (slash == at + 1 || !copy_part(out->host, sizeof(out->host),
	    at + 1, (size_t)(slash - at - 1)))
		return false;
	for (c = at + 1; c < slash; c++)
		if (!isalnum((unsigned char)*c) && strchr(".-:[]", *c) == NULL)
			return false;
	last = strrchr(slash, '/');
	if (last[1] == '\0' || strspn(last + 1, "0123456789") !=
	    strlen(last + 1) || !copy_part(out->project,
	    sizeof(out->project), last + 1, strlen(last + 1)))
		return false;
	if (!copy_part(out->path, sizeof(out->path), slash,
	    (size_t)(last - slash)))
		return false;
	return strpbrk(out->path, "?#% ") == NULL;
}

void
keel_report_dsn_url(const struct keel_report_dsn *d, char *buf, size_t n)
{
	snprintf(buf, n, "%s://%s%s/api/%s/envelope/", d->scheme, d->host,
	    d->path, d->project);
}

void
keel_report_auth_header(const struct keel_report_dsn *d, char *buf,
    size_t n)
{
	snprintf(buf, n, "Sentry sentry_version=7, sentry_key=%s, "
	    "sentry_client=keel/%s", d->key, PACKAGE_VERSION);
}

/* ---------------------------------------------------------- scrubbing */

static const char *const secret_words[] = {
	"pass", "secret", "token", "auth", "cookie", "session", "key",
	"signature", "credit", "card",
	"ticket",	/* a stream ticket opens a user's stream (lighttpd.conf) */
};

/* True when s[0..n) contains one of secret_words, in any case. */
static bool
secret_span(const char *s, size_t n)
{
	size_t	 i, j, w;

	for (i = 0; i < KEEL_NELEM(secret_words); i++) {
		w = strlen(secret_words[i]);
		for (j = 0; j + w <= n; j++)
			if (strncasecmp(s + j, secret_words[i], w) == 0)
				return true;
	}
	return false;
}

bool
keel_report_secret_name(const char *name)
{
	return secret_span(name, strlen(name));
}

/* Three base64url parts, the first a JSON object's ("eyJ"). */
static bool
looks_jwt(const char *s)
{
	size_t	 dots = 0;

	if (strncmp(s, "eyJ", 3) != 0)
		return false;
	for (; *s != '\0'; s++) {
		if (*s == '.')
			dots++;
		else if (!isalnum((unsigned char)*s) && *s != '-' &&
		    *s != '_' && *s != '=')
			return false;
	}
	return dots == 2;
}

/* 13 to 19 digits (blanks and dashes between) passing Luhn's check. */
static bool
looks_card(const char *s)
{
	int	 digits[32], n = 0, i, sum = 0, d;

	for (; *s != '\0'; s++) {
		if (*s >= '0' && *s <= '9') {
			if (n == 32)
				return false;
			digits[n++] = *s - '0';
		} else if (*s != ' ' && *s != '-')
			return false;
	}
	if (n < 13 || n > 19)
		return false;
	for (i = 0; i < n; i++) {
		d = digits[n - 1 - i];
		if (i % 2 == 1 && (d *= 2) > 9)
			d -= 9;
		sum += d;
	}
	return sum % 10 == 0;
}

/* "...token=abc": a name=value pair inside the value, with a secret name. */
static bool
secret_pair(const char *s)
{
	const char	*eq, *k;

	for (eq = strchr(s, '='); eq != NULL; eq = strchr(eq + 1, '=')) {
		for (k = eq; k > s && (isalnum((unsigned char)k[-1]) ||
		    k[-1] == '_' || k[-1] == '-' || k[-1] == '.'); k--)
			continue;
		if (k < eq && secret_span(k, (size_t)(eq - k)))
			return true;
	}
	return false;
}

/* A mail address inside s: "local@domain.tld" (reports name no one). */
static bool
has_email(const char *s)
{
	const char	*at, *p;

	for (at = strchr(s, '@'); at != NULL; at = strchr(at + 1, '@')) {
		if (at == s || !(isalnum((unsigned char)at[-1]) ||
		    strchr("._+-", at[-1]) != NULL))
			continue;
		/* A domain with a dot and a letter after it (not keel@0.1.0). */
		for (p = at + 1; isalnum((unsigned char)*p) || *p == '-' ||
		    (*p == '.' && isalnum((unsigned char)p[1])); p++)
			if (*p == '.' && isalpha((unsigned char)p[1]))
				return true;
	}
	return false;
}

bool
keel_report_secret_value(const char *v)
{
	static const char *const schemes[] = {
		"bearer ", "basic ", "digest ", "token ", "negotiate ",
	};
	size_t	 i;

	while (*v == ' ' || *v == '\t')
		v++;
	for (i = 0; i < KEEL_NELEM(schemes); i++)
		if (strncasecmp(v, schemes[i], strlen(schemes[i])) == 0)
			return true;
	return looks_jwt(v) || looks_card(v) || secret_pair(v) || has_email(v);
}

void
keel_report_scrub_text(struct keel_buf *out, const char *s)
{
	static const char	 seps[] = " \t\r\n,;()<>[]{}\"'";
	char			 word[512];
	size_t			 n;
	bool			 credential = false;

	while (*s != '\0') {
		if ((n = strcspn(s, seps)) == 0) {
			keel_buf_putc(out, *s++);
			continue;
		}
		snprintf(word, sizeof(word), "%.*s", (int)(n < sizeof(word) ?
		    n : sizeof(word) - 1), s);
		/* The word after "Bearer" is the credential. */
		if (credential || keel_report_secret_value(word))
			keel_buf_puts(out, KEEL_REPORT_FILTERED);
		else
			keel_buf_append(out, s, n);
		credential = strcasecmp(word, "bearer") == 0 ||
		    strcasecmp(word, "basic") == 0 ||
		    strcasecmp(word, "token") == 0;
		s += n;
	}
}

const char *
keel_report_scrub(const char *name, const char *value)
{
	if (value == NULL)
		return NULL;
	if ((name != NULL && keel_report_secret_name(name)) ||
	    keel_report_secret_value(value))
		return KEEL_REPORT_FILTERED;
	return value;
}

/* Headers that hold the client's address: never reported. */
static bool
address_header(const char *cgi)
{
	static const char *const names[] = {
		"HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED",
		"HTTP_CF_CONNECTING_IP", "HTTP_TRUE_CLIENT_IP",
		"HTTP_X_CLIENT_IP",
	};
	size_t	 i, n = strcspn(cgi, "=");

	for (i = 0; i < KEEL_NELEM(names); i++)
		if (strlen(names[i]) == n && strncmp(cgi, names[i], n) == 0)
			return true;
	return false;
}

void
keel_report_headers(const char *const *envp, size_t max,
    keel_report_header_fn *fn, void *arg)
{
	char		 name[128];
	const char	*e, *eq;
	size_t		 i, n, done = 0;
	bool		 up;

	for (; envp != NULL && *envp != NULL && done < max; envp++) {
		e = *envp;
		if (strncmp(e, "HTTP_", 5) != 0 || address_header(e) ||
		    (eq = strchr(e, '=')) == NULL)
			continue;
		n = (size_t)(eq - e) - 5;
		/* CGI names are letters, digits and '_' (lighttpd maps the
		 * rest): anything else is not a header we name. */
		if (n == 0 || n >= sizeof(name) || strspn(e + 5,
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789_") != n)
			continue;
		/* HTTP_USER_AGENT: User-Agent. */
		for (i = 0, up = true; i < n; i++) {
			name[i] = e[5 + i] == '_' ? '-' : up ?
			    e[5 + i] : (char)tolower((unsigned char)e[5 + i]);
			up = e[5 + i] == '_';
		}
		name[n] = '\0';
		fn(name, keel_report_scrub(name, eq + 1), arg);
		done++;
	}
}

/* ----------------------------------------------------------- back-off */

/* Seconds of one X-Sentry-Rate-Limits entry "60:cat;cat:scope...". */
static long
limit_entry(const char *s, size_t n)
{
	int64_t	 v;
	char	 num[16];
	size_t	 d = strspn(s, "0123456789");

	if (d == 0 || d > n || d >= sizeof(num))
		return 0;
	memcpy(num, s, d);
	num[d] = '\0';
	return keel_parse_int64(num, 0, BACKOFF_MAX, &v) ? (long)v :
	    BACKOFF_MAX;
}

long
keel_report_backoff(int status, const char *rate_limits,
    const char *retry_after)
{
	const char	*p, *comma;
	long		 best = 0, v;
	int64_t		 ra;
	size_t		 n;

	for (p = rate_limits; p != NULL && *p != '\0';
	    p = comma == NULL ? NULL : comma + 1) {
		while (*p == ' ')
			p++;
		comma = strchr(p, ',');
		n = comma == NULL ? strlen(p) : (size_t)(comma - p);
		if ((v = limit_entry(p, n)) > best)
			best = v;
	}
	if (best > 0)
		return best;
	if (retry_after != NULL) {
		while (*retry_after == ' ')
			retry_after++;
		if (keel_parse_int64(retry_after, 0, INT64_MAX, &ra) && ra > 0)
			return ra > BACKOFF_MAX ? BACKOFF_MAX : (long)ra;
	}
	return status == 429 ? 60 : 0;
}

/* ------------------------------------------------------ serialisation */

/* s cut to at most max bytes, never inside a character; from b. */
static const char *
cut(struct keel_buf *b, const char *s, size_t max)
{
	size_t	 n = strlen(s);

	if (!keel_utf8_valid(s, n))
		return "[not UTF-8]";
	if (n <= max)
		return s;
	while (n > max || (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80))
		n--;
	keel_buf_reset(b);
	keel_buf_append(b, s, n);
	return b->data;
}

static void
put_str(struct keel_jw *w, const char *key, const char *v, size_t max)
{
	struct keel_buf	 tmp = { NULL, 0, 0 };

	if (v == NULL)
		return;
	keel_jw_key(w, key);
	keel_jw_str(w, cut(&tmp, v, max));
	keel_buf_free(&tmp);
}

/* RFC 3339 UTC with milliseconds. */
static void
format_time(double t, char *buf, size_t n)
{
	struct tm	 tm;
	time_t		 s = (time_t)t;
	size_t		 len;

	gmtime_r(&s, &tm);
	len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + len, n - len, ".%03dZ", (int)((t - (double)s) * 1000));
}

/* A timestamp as Sentry takes it: an RFC 3339 string. */
static void
put_time(struct keel_jw *w, const char *key, double t)
{
	char	 ts[40];

	format_time(t, ts, sizeof(ts));
	keel_jw_key(w, key);
	keel_jw_str(w, ts);
}

/* A tag, its key and value cut to Sentry's limits and scrubbed. */
static void
put_tag(struct keel_jw *w, const char *key, const char *v)
{
	struct keel_buf	 k = { NULL, 0, 0 };

	if (v == NULL || *v == '\0')
		return;
	keel_jw_key(w, cut(&k, key, TAG_KEY_MAX));
	keel_buf_free(&k);
	keel_jw_str(w, cut(&k, keel_report_scrub(key, v), TAG_VALUE_MAX));
	keel_buf_free(&k);
}

static void
put_int_tag(struct keel_jw *w, const char *key, int64_t v)
{
	char	 num[KEEL_TEXT_INT_MAX];

	keel_text_int(num, v);
	put_tag(w, key, num);
}

/* The tags every event and transaction of a request carries; the
 * object is left open for more. */
struct req_tags {
	const char	*app;
	const char	*route;
	const char	*method;
	const char	*status_key;
	int		 status;
	const char	*request_id;
};

static void
put_tags_open(struct keel_jw *w, const struct req_tags *t)
{
	keel_jw_key(w, "tags");
	keel_jw_obj_open(w);
	put_tag(w, "app", t->app);
	put_tag(w, "route", t->route);
	put_tag(w, "method", t->method);
	if (t->status > 0)
		put_int_tag(w, t->status_key, t->status);
	put_tag(w, "request_id", t->request_id);
}

/* "user": {"id": "<id>"} -- the id only, never an email or address. */
static void
put_user(struct keel_jw *w, int64_t id)
{
	char	 num[KEEL_TEXT_INT_MAX];

	if (id <= 0)
		return;
	keel_text_int(num, id);
	keel_jw_key(w, "user");
	keel_jw_obj_open(w);
	keel_jw_key(w, "id");
	keel_jw_str(w, num);
	keel_jw_obj_close(w);
}

/* What every event and transaction starts with. */
static void
put_common(struct keel_jw *w, const struct keel_report_meta *m,
    const char *event_id)
{
	keel_jw_key(w, "event_id");
	keel_jw_str(w, event_id);
	keel_jw_key(w, "platform");
	keel_jw_str(w, "c");
	put_str(w, "environment", m->environment, TAG_VALUE_MAX);
	put_str(w, "release", m->release, TAG_VALUE_MAX);
	put_str(w, "server_name", m->server, TAG_VALUE_MAX);
	keel_jw_key(w, "sdk");
	keel_jw_obj_open(w);
	keel_jw_key(w, "name");
	keel_jw_str(w, "keel");
	keel_jw_key(w, "version");
	keel_jw_str(w, PACKAGE_VERSION);
	keel_jw_obj_close(w);
}

static void
header_out(const char *name, const char *value, void *arg)
{
	struct keel_jw	*w = arg;
	struct keel_buf	 b = { NULL, 0, 0 };

	keel_jw_key(w, name);
	keel_jw_str(w, cut(&b, value, HEADER_MAX));
	keel_buf_free(&b);
}

/* "GET /api/cars/{id}", or the route alone, or NULL. */
static const char *
route_name(struct keel_buf *b, const char *method, const char *route)
{
	if (route == NULL)
		return NULL;
	keel_buf_reset(b);
	if (method != NULL)
		keel_buf_printf(b, "%.16s ", method);
	keel_buf_puts(b, route);
	return b->data;
}

void
keel_report_event_json(struct keel_buf *b, const struct keel_report_event *ev,
    const struct keel_report_meta *m, const char *event_id, double now)
{
	struct keel_buf	 tmp = { NULL, 0, 0 };
	struct keel_jw	 w;
	const char	*app = ev->app != NULL ? ev->app : m->prog;
	size_t		 i;

	keel_jw_init(&w, b);
	keel_jw_obj_open(&w);
	put_common(&w, m, event_id);
	put_time(&w, "timestamp", now);
	keel_jw_key(&w, "level");
	keel_jw_str(&w, ev->level != NULL ? ev->level : "error");
	put_str(&w, "logger", app, TAG_VALUE_MAX);
	put_str(&w, "transaction", route_name(&tmp, ev->method, ev->route),
	    TAG_VALUE_MAX);
	keel_jw_key(&w, "exception");
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "values");
	keel_jw_arr_open(&w);
	keel_jw_obj_open(&w);
	put_str(&w, "type", ev->type, TAG_VALUE_MAX);
	if (ev->value != NULL) {
		keel_buf_reset(&tmp);
		keel_report_scrub_text(&tmp, ev->value);
		put_str(&w, "value", tmp.data, VALUE_MAX);
	}
	keel_jw_obj_close(&w);
	keel_jw_arr_close(&w);
	keel_jw_obj_close(&w);

	put_tags_open(&w, &(const struct req_tags){ .app = app,
	    .route = ev->route, .method = ev->method, .status_key = "status",
	    .status = ev->status, .request_id = ev->request_id });
	for (i = 0; i < ev->ntags; i++)
		put_tag(&w, ev->tags[i].key, ev->tags[i].value);
	keel_jw_obj_close(&w);
	put_user(&w, ev->user_id);

	if (ev->method != NULL || ev->envp != NULL) {
		keel_jw_key(&w, "request");
		keel_jw_obj_open(&w);
		put_str(&w, "method", ev->method, 16);
		/* The pattern, never the path: ids are not for reports. */
		put_str(&w, "url", ev->route, TAG_VALUE_MAX);
		if (ev->envp != NULL) {
			keel_jw_key(&w, "headers");
			keel_jw_obj_open(&w);
			keel_report_headers(ev->envp, HEADERS_MAX, header_out,
			    &w);
			keel_jw_obj_close(&w);
		}
		keel_jw_obj_close(&w);
	}
	keel_jw_obj_close(&w);
	keel_buf_free(&tmp);
}

/* Sentry's span status for an HTTP status. */
static const char *
span_status(int status)
{
	switch (status) {
	case 401:
		return "unauthenticated";
	case 403:
		return "permission_denied";
	case 404:
		return "not_found";
	case 409:
		return "already_exists";
	case 429:
		return "resource_exhausted";
	case 503:
		return "unavailable";
	case 504:
		return "deadline_exceeded";
	default:
		return status >= 500 ? "internal_error" : status >= 400 ?
		    "invalid_argument" : "ok";
	}
}

void
keel_report_txn_json(struct keel_buf *b, const struct keel_report_txn *t,
    const struct keel_report_meta *m, const char *event_id)
{
	struct keel_buf	 tmp = { NULL, 0, 0 };
	struct keel_jw	 w;
	const char	*app = t->app != NULL ? t->app : m->prog;
	char		 span[17];

	/* The span is the request: its id, 16 hex digits. */
	snprintf(span, sizeof(span), "%s", t->request_id != NULL &&
	    strlen(t->request_id) == 16 ? t->request_id : event_id);
	keel_jw_init(&w, b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "type");
	keel_jw_str(&w, "transaction");
	put_common(&w, m, event_id);
	put_str(&w, "transaction", route_name(&tmp, t->method,
	    t->route != NULL ? t->route : "unrouted"), TAG_VALUE_MAX);
	keel_jw_key(&w, "transaction_info");
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "source");
	keel_jw_str(&w, "route");
	keel_jw_obj_close(&w);
	put_time(&w, "start_timestamp", t->start);
	put_time(&w, "timestamp", t->end);
	keel_jw_key(&w, "contexts");
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "trace");
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "trace_id");
	keel_jw_str(&w, event_id);
	keel_jw_key(&w, "span_id");
	keel_jw_str(&w, span);
	keel_jw_key(&w, "op");
	keel_jw_str(&w, "http.server");
	keel_jw_key(&w, "status");
	keel_jw_str(&w, span_status(t->status));
	keel_jw_obj_close(&w);
	keel_jw_obj_close(&w);
	keel_jw_key(&w, "spans");
	keel_jw_arr_open(&w);
	keel_jw_arr_close(&w);
	put_tags_open(&w, &(const struct req_tags){ .app = app,
	    .route = t->route, .method = t->method,
	    .status_key = "http.status_code", .status = t->status,
	    .request_id = t->request_id });
	keel_jw_obj_close(&w);
	put_user(&w, t->user_id);
	keel_jw_obj_close(&w);
	keel_buf_free(&tmp);
}

/* The envelope's header line, without its newline. */
static void
envelope_header(struct keel_buf *b, const char *event_id, const char *dsn,
    double sent_at)
{
	struct keel_jw	 w;

	keel_jw_init(&w, b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "event_id");
	keel_jw_str(&w, event_id);
	keel_jw_key(&w, "dsn");
	keel_jw_str(&w, dsn);
	put_time(&w, "sent_at", sent_at);
	keel_jw_obj_close(&w);
}

void
keel_report_envelope(struct keel_buf *b, const char *event_id,
    const char *dsn, double sent_at, const char *type, const char *payload,
    size_t n)
{
	struct keel_jw	 w;

	envelope_header(b, event_id, dsn, sent_at);
	keel_buf_putc(b, '\n');
	keel_jw_init(&w, b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "type");
	keel_jw_str(&w, type);
	keel_jw_key(&w, "length");
	keel_jw_int(&w, (int64_t)n);
	keel_jw_obj_close(&w);
	keel_buf_putc(b, '\n');
	keel_buf_append(b, payload, n);
	keel_buf_putc(b, '\n');
}

bool
keel_report_sampled(const char *request_id, double rate)
{
	char	 head[9];

	if (rate <= 0 || request_id == NULL)
		return false;
	if (rate >= 1)
		return true;
	/* The first 32 bits, as a share of 2^32. */
	if (strspn(request_id, "0123456789abcdefABCDEF") < 8)
		return false;
	memcpy(head, request_id, 8);
	head[8] = '\0';
	return (double)strtoul(head, NULL, 16) < rate * 4294967296.0;
}

/* ---------------------------------------------------------- the spool */

/* mkdir that takes an existing directory. */
static bool
make_dir(const char *path)
{
	return mkdir(path, 0750) == 0 || errno == EEXIST;
}

/* path/sub into buf (size PATH_MAX). */
static void
spool_path(char *buf, const char *sub)
{
	snprintf(buf, PATH_MAX, "%s/%s", st.dir, sub);
}

bool
keel_report_init(const struct keel_config *cfg, const char *prog,
    char *err, size_t n)
{
	char	 path[PATH_MAX], *p;

	memset(&st, 0, sizeof(st));
	st.cfg = cfg;
	st.prog = prog;
	if (cfg->sentry_dsn == NULL || *cfg->sentry_dsn == '\0')
		return true;
	if (!keel_report_dsn_parse(cfg->sentry_dsn, &st.dsn)) {
		snprintf(err, n, "SENTRY_DSN: expected "
		    "https://PUBLIC_KEY@HOST/PROJECT_ID (or empty)");
		return false;
	}
	if (snprintf(st.dir, sizeof(st.dir), "%s", cfg->report_spool) >=
	    (int)sizeof(st.dir) - 32 || st.dir[0] != '/') {
		snprintf(err, n, "KEEL_REPORT_SPOOL: expected an absolute "
		    "path");
		return false;
	}
	/* mkdir -p, then tmp/ and new/. */
	snprintf(path, sizeof(path), "%s", st.dir);
	for (p = path + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		(void)make_dir(path);
		*p = '/';
	}
	if (!make_dir(st.dir) || (spool_path(path, "tmp"), !make_dir(path)) ||
	    (spool_path(path, "new"), !make_dir(path))) {
		snprintf(err, n, "KEEL_REPORT_SPOOL: can't create %s: %s",
		    path, strerror(errno));
		return false;
	}
	if (gethostname(st.host, sizeof(st.host)) == -1)
		snprintf(st.host, sizeof(st.host), "localhost");
	st.host[sizeof(st.host) - 1] = '\0';
	st.on = true;
	return true;
}

bool
keel_report_enabled(void)
{
	return st.on;
}

const char *
keel_report_spool_dir(void)
{
	return st.on ? st.dir : NULL;
}

static double
now_real(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
new_event_id(char id[KEEL_REPORT_ID_LEN + 1])
{
	unsigned char	 raw[KEEL_REPORT_ID_LEN / 2];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(id, KEEL_REPORT_ID_LEN + 1, raw, sizeof(raw));
}

static void
meta(struct keel_report_meta *m)
{
	/* An empty setting is left out rather than sent as "". */
	m->environment = *st.cfg->sentry_environment != '\0' ?
	    st.cfg->sentry_environment : NULL;
	m->release = *st.cfg->sentry_release != '\0' ?
	    st.cfg->sentry_release : NULL;
	m->server = st.host;
	m->prog = st.prog;
}

/* Wraps the payload in it->env as an envelope; false if it is too big. */
static bool
wrap(struct keel_report_item *it, struct keel_buf *payload,
    const char *type)
{
	if (payload->len > KEEL_REPORT_EVENT_MAX) {
		keel_log_warnx("report: a %zu-byte %s not spooled (Sentry "
		    "takes at most %d)", payload->len, type,
		    KEEL_REPORT_EVENT_MAX);
		keel_buf_free(payload);
		return false;
	}
	keel_buf_reset(&it->env);
	keel_report_envelope(&it->env, it->id, st.cfg->sentry_dsn, now_real(),
	    type, payload->data, payload->len);
	keel_buf_free(payload);
	return true;
}

bool
keel_report_build(struct keel_report_item *it,
    const struct keel_report_event *ev)
{
	struct keel_report_meta	 m;
	struct keel_buf		 p = { NULL, 0, 0 };
	double			 rate;

	if (!st.on)
		return false;
	rate = st.cfg->sentry_sample_rate;
	if (rate < 1 && (rate <= 0 ||
	    randombytes_uniform(1000000) >= (uint32_t)(rate * 1e6)))
		return false;
	meta(&m);
	new_event_id(it->id);
	it->txn = false;
	keel_report_event_json(&p, ev, &m, it->id, now_real());
	return wrap(it, &p, "event");
}

bool
keel_report_build_txn(struct keel_report_item *it,
    const struct keel_report_txn *t)
{
	struct keel_report_meta	 m;
	struct keel_buf		 p = { NULL, 0, 0 };

	if (!st.on || !keel_report_sampled(t->request_id,
	    st.cfg->sentry_traces_sample_rate))
		return false;
	meta(&m);
	new_event_id(it->id);
	it->txn = true;
	keel_report_txn_json(&p, t, &m, it->id);
	return wrap(it, &p, "transaction");
}

/* Files and bytes in new/ (the bytes are in the names: no stat). */
static bool
spool_usage(long *files, long long *bytes)
{
	char		 path[PATH_MAX];
	struct dirent	*de;
	const char	*dash;
	DIR		*d;

	*files = 0;
	*bytes = 0;
	spool_path(path, "new");
	if ((d = opendir(path)) == NULL)
		return false;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' ||
		    (dash = strrchr(de->d_name, '-')) == NULL)
			continue;
		(*files)++;
		*bytes += strtoll(dash + 1, NULL, 10);
	}
	closedir(d);
	return true;
}

/* One more event dropped at the bound: a byte in "dropped". */
static void
count_drop(const char *id, long files)
{
	char	 path[PATH_MAX];
	int	 fd;

	spool_path(path, "dropped");
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0640)) != -1) {
		if (write(fd, "x", 1) != 1)
			keel_log_warn("report: counting a drop in %s", path);
		close(fd);
	}
	/* A flood must not flood the log too: the 1st, 10th, 100th ... */
	if (++st.drops == 1 || st.drops % 100 == 0 || st.drops == 10)
		keel_log_warnx("report: spool full (%ld files, at most %d, "
		    "%d bytes); event %s dropped, dropped=%ld", files,
		    st.cfg->report_spool_max, st.cfg->report_spool_bytes,
		    id, st.drops);
}

/* Writes all n bytes of p to fd; false on an error. */
static bool
write_all(int fd, const char *p, size_t n)
{
	ssize_t	 w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/*
 * One spool file of n bytes (an error's envelope, or a batch of
 * transactions' envelopes), named by id, within the bound.
 */
static enum keel_err
spool_write(const char *data, size_t n, bool txn, const char *id)
{
	char		 tmp[PATH_MAX], dst[PATH_MAX + NAME_MAX_LEN];
	long		 files, limit;
	long long	 bytes;
	int		 fd;

	if (!spool_usage(&files, &bytes)) {
		keel_log_warn("report: reading the spool %s", st.dir);
		return KEEL_EINTERNAL;
	}
	limit = txn ? st.cfg->report_spool_max / 2 : st.cfg->report_spool_max;
	if (files >= limit || bytes + (long long)n > (long long)(txn ?
	    st.cfg->report_spool_bytes / 2 : st.cfg->report_spool_bytes)) {
		/* Transactions past their half are merely not sampled. */
		if (!txn)
			count_drop(id, files);
		return KEEL_ETOOBIG;
	}
	snprintf(tmp, sizeof(tmp), "%s/tmp/%s", st.dir, id);
	snprintf(dst, sizeof(dst), "%s/new/%013lld-%c-%s-%zu", st.dir,
	    (long long)(now_real() * 1000), txn ? 't' : 'e', id, n);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0640)) == -1) {
		keel_log_warn("report: %s", tmp);
		return KEEL_EINTERNAL;
	}
	if (!write_all(fd, data, n) || close(fd) == -1 ||
	    rename(tmp, dst) == -1) {
		keel_log_warn("report: writing %s", tmp);
		(void)unlink(tmp);
		return KEEL_EINTERNAL;
	}
	return KEEL_OK;
}

enum keel_err
keel_report_flush(void)
{
	char		 id[KEEL_REPORT_ID_LEN + 1];
	enum keel_err	 er = KEEL_OK;

	if (st.ntxns == 0)
		return KEEL_OK;
	/* While the endpoint asks for a pause they would only wait. */
	if (keel_report_backoff_left() <= 0) {
		new_event_id(id);
		er = spool_write(st.txns.data, st.txns.len, true, id);
	}
	keel_buf_reset(&st.txns);
	st.ntxns = 0;
	return er;
}

enum keel_err
keel_report_spool(struct keel_report_item *it)
{
	enum keel_err	 er = KEEL_OK;

	/* Transactions held too long go out first (an empty it too). */
	if (st.ntxns > 0 && now_real() - st.txn_first >= TXN_AGE)
		er = keel_report_flush();
	if (it->env.len == 0 || !st.on)
		goto out;
	if (!it->txn) {
		er = spool_write(it->env.data, it->env.len, false, it->id);
		goto out;
	}
	if (st.ntxns++ == 0)
		st.txn_first = now_real();
	keel_buf_append(&st.txns, it->env.data, it->env.len);
	if (st.ntxns >= TXN_BATCH)
		er = keel_report_flush();
out:
	keel_buf_free(&it->env);
	return er;
}

void
keel_report_send(const struct keel_report_event *ev)
{
	struct keel_report_item	 it;

	memset(&it, 0, sizeof(it));
	if (keel_report_build(&it, ev))
		(void)keel_report_spool(&it);
	keel_buf_free(&it.env);
}

double
keel_report_backoff_left(void)
{
	double	 until;

	char	 path[PATH_MAX], buf[32];
	ssize_t	 n;
	int	 fd;

	if (!st.on)
		return 0;
	spool_path(path, "backoff");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	until = strtod(buf, NULL) - now_real();
	return until > 0 ? until : 0;
}

void
keel_report_backoff_for(long seconds)
{
	char	 tmp[PATH_MAX], dst[PATH_MAX], buf[32];
	int	 fd, n;

	if (!st.on)
		return;
	snprintf(tmp, sizeof(tmp), "%s/tmp/backoff.%ld", st.dir,
	    (long)getpid());
	spool_path(dst, "backoff");
	n = snprintf(buf, sizeof(buf), "%.0f\n", seconds > 0 ?
	    now_real() + (double)seconds : 0);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0640)) == -1 || !write_all(fd, buf, (size_t)n) || close(fd) == -1 ||
	    rename(tmp, dst) == -1) {
		keel_log_warn("report: writing the back-off %s", dst);
		(void)unlink(tmp);
	}
}

/* ------------------------------------------------------- the shipper */

struct answer {
	char	 rate_limits[512];
	char	 retry_after[32];
};

/* Keeps the two headers that ask for a pause. */
static size_t
on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct answer	*a = arg;
	size_t		 n = size * nmemb, vn;
	char		*dst;
	const char	*v;

	if (n > 21 && strncasecmp(p, "X-Sentry-Rate-Limits:", 21) == 0) {
		dst = a->rate_limits;
		vn = sizeof(a->rate_limits);
		v = p + 21;
	} else if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		dst = a->retry_after;
		vn = sizeof(a->retry_after);
		v = p + 12;
	} else
		return n;
	while (v < p + n && (*v == ' ' || *v == '\t'))
		v++;
	snprintf(dst, vn, "%.*s", (int)(p + n - v), v);
	dst[strcspn(dst, "\r\n")] = '\0';
	return n;
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	(void)p;
	(void)arg;
	return size * nmemb;
}

size_t
keel_report_envelope_len(const char *p, size_t n)
{
	const char	*h, *ih, *len;
	size_t		 at;
	int64_t		 plen;
	char		 num[24];

	if ((h = memchr(p, '\n', n)) == NULL ||
	    (ih = memchr(h + 1, '\n', n - (size_t)(h + 1 - p))) == NULL)
		return 0;
	/* {"type":...,"length":N}: N bytes of payload after the line. */
	len = h + 1;
	while ((len = memchr(len, '"', (size_t)(ih - len))) != NULL &&
	    (size_t)(ih - len) > 9 && strncmp(len, "\"length\":", 9) != 0)
		len++;
	if (len == NULL || (size_t)(ih - len) <= 9)
		return 0;
	snprintf(num, sizeof(num), "%.*s", (int)strspn(len + 9, "0123456789") <
	    20 ? (int)strspn(len + 9, "0123456789") : 20, len + 9);
	if (!keel_parse_int64(num, 0, INT32_MAX, &plen))
		return 0;
	at = (size_t)(ih + 1 - p) + (size_t)plen;
	if (at > n)
		return 0;
	return at < n && p[at] == '\n' ? at + 1 : at;
}

/* The event id of an envelope's header line (at p, n bytes). */
static bool
header_event_id(const char *p, size_t n, char id[KEEL_REPORT_ID_LEN + 1])
{
	static const char key[] = "{\"event_id\":\"";

	if (n < sizeof(key) - 1 + KEEL_REPORT_ID_LEN ||
	    memcmp(p, key, sizeof(key) - 1) != 0 ||
	    strspn(p + sizeof(key) - 1, "0123456789abcdef") <
	    KEEL_REPORT_ID_LEN)
		return false;
	memcpy(id, p + sizeof(key) - 1, KEEL_REPORT_ID_LEN);
	id[KEEL_REPORT_ID_LEN] = '\0';
	return true;
}

/* POSTs one envelope (p, n bytes) with its header rebuilt: sent_at now
 * and the DSN of today's settings. */
static enum keel_err
post_one(const char *p, size_t n, int timeout_s, int *status, long *wait)
{
	struct keel_buf		 env = { NULL, 0, 0 };
	struct curl_slist	*hdrs = NULL;
	struct answer		 a;
	char			 url[1024], auth[512], id[KEEL_REPORT_ID_LEN + 1];
	const char		*nl;
	enum keel_err		 er = KEEL_OK;
	long			 code = 0;
	CURLcode		 rc;

	*status = 0;
	*wait = 0;
	if (!header_event_id(p, n, id) || (nl = memchr(p, '\n', n)) == NULL)
		return KEEL_EINVAL;
	envelope_header(&env, id, st.cfg->sentry_dsn, now_real());
	keel_buf_append(&env, nl, n - (size_t)(nl - p));
	if (st.curl == NULL) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		if ((st.curl = curl_easy_init()) == NULL) {
			keel_buf_free(&env);
			return KEEL_EUNAVAIL;
		}
	}
	curl_easy_reset(st.curl);
	keel_report_dsn_url(&st.dsn, url, sizeof(url));
	snprintf(auth, sizeof(auth), "X-Sentry-Auth: ");
	keel_report_auth_header(&st.dsn, auth + strlen(auth),
	    sizeof(auth) - strlen(auth));
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs,
	    "Content-Type: application/x-sentry-envelope");
	hdrs = curl_slist_append(hdrs, "Expect:");
	memset(&a, 0, sizeof(a));
	curl_easy_setopt(st.curl, CURLOPT_URL, url);
	curl_easy_setopt(st.curl, CURLOPT_POST, 1L);
	curl_easy_setopt(st.curl, CURLOPT_POSTFIELDS, env.data);
	curl_easy_setopt(st.curl, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)env.len);
	curl_easy_setopt(st.curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(st.curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(st.curl, CURLOPT_HEADERDATA, &a);
	curl_easy_setopt(st.curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(st.curl, CURLOPT_TIMEOUT, (long)timeout_s);
	curl_easy_setopt(st.curl, CURLOPT_CONNECTTIMEOUT, (long)timeout_s);
	curl_easy_setopt(st.curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(st.curl, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(st.curl);
	curl_easy_getinfo(st.curl, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(hdrs);
	keel_buf_free(&env);
	if (rc != CURLE_OK) {
		keel_log_warnx("report: sending to %s: %s", url,
		    curl_easy_strerror(rc));
		er = rc == CURLE_OPERATION_TIMEDOUT ? KEEL_ETIMEOUT :
		    KEEL_EUNAVAIL;
	}
	*status = (int)code;
	*wait = keel_report_backoff((int)code,
	    a.rate_limits[0] != '\0' ? a.rate_limits : NULL,
	    a.retry_after[0] != '\0' ? a.retry_after : NULL);
	return er;
}

enum keel_err
keel_report_post(const char *path, int timeout_s,
    struct keel_report_posted *out)
{
	struct keel_buf	 file = { NULL, 0, 0 };
	enum keel_err	 er = KEEL_OK;
	size_t		 at = 0, n;

	memset(out, 0, sizeof(*out));
	if (!st.on || !keel_buf_read_file(&file, path) || file.len == 0) {
		keel_buf_free(&file);
		return KEEL_EINVAL;
	}
	/* Each envelope of the file in turn, up to the first not taken. */
	while (at < file.len) {
		if ((n = keel_report_envelope_len(file.data + at,
		    file.len - at)) == 0) {
			/* Not an envelope: nothing after it ever will be. */
			if (at == 0)
				er = KEEL_EINVAL;
			at = file.len;
			break;
		}
		er = post_one(file.data + at, n, timeout_s, &out->status,
		    &out->wait);
		if (er == KEEL_EINVAL) {
			out->refused++;
			er = KEEL_OK;
		} else if (er != KEEL_OK)
			break;
		else if (out->status >= 200 && out->status < 300)
			out->sent++;
		else if (out->status >= 400 && out->status < 500 &&
		    out->status != 429)
			out->refused++;
		else
			break;
		at += n;
		if (out->wait > 0)
			break;
	}
	out->done = at >= file.len;
	keel_buf_free(&file);
	return er;
}

void
keel_report_close(void)
{
	if (st.curl != NULL)
		curl_easy_cleanup(st.curl);
	st.curl = NULL;
}
