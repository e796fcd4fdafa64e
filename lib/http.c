/* SPDX-License-Identifier: ISC */
/*
 * http.c -- one request/response over libfcgi.
 *
 * lib fills a struct keel_req from the FastCGI parameters before the
 * handler runs and buffers the handler's reply, sending it whole after the
 * handler returns, so headers can be added at any point and a handler that
 * fails before replying still gets a proper JSON 500.  FCGX_Request never
 * leaves this file and serve.c.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <fcgiapp.h>
#include <sodium.h>

#include "keel/addr.h"
#include "keel/config.h"
#include "keel/cors.h"
#include "keel/gzip.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/text.h"
#include "http_private.h"

#define URI_MAX		16384	/* bytes of path and query we accept */
#define QUERY_MAXPAIRS	64
#define MAX_DOCS	4	/* parsed JSON documents per request */
#define ID_POOL		256	/* random bytes drawn at once for request ids */

/* A reply body's content coding. */
enum coding {
	CODING_OPEN,		/* not chosen: keel_http_finish may code it */
	CODING_IDENTITY,	/* identity, chosen for Accept-Encoding */
	CODING_GZIP		/* gzip */
};

struct keel_http_conn {
	FCGX_Request		*fr;
	int			 status;	/* 0 until replied */
	struct keel_buf		 status_head;	/* status and lib's headers */
	struct keel_buf		 head;		/* extra header lines */
	struct keel_buf		 body;
	struct keel_buf		 coded;		/* body's coding goes here */
	enum coding		 coding;	/* the body's, see code_reply */
	const char		*vary;		/* keel_http_vary's, or NULL */
	const char		*location;	/* keel_http_location's (arena),
						   or NULL */
	const char		*ctype;		/* static or arena */
	struct json_object	*docs[MAX_DOCS]; /* freed at finish */
	size_t			 ndocs;
	unsigned char		 pool[ID_POOL];	/* unused random bytes ... */
	size_t			 pool_used;	/* ... from here on */
};

static const struct {
	int		 code;
	const char	*text;
} reasons[] = {
	{ .code = 200, .text = "OK" },
	{ .code = 201, .text = "Created" },
	{ .code = 202, .text = "Accepted" },
	{ .code = 204, .text = "No Content" },
	{ .code = 304, .text = "Not Modified" },
	{ .code = 400, .text = "Bad Request" },
	{ .code = 401, .text = "Unauthorized" },
	{ .code = 403, .text = "Forbidden" },
	{ .code = 404, .text = "Not Found" },
	{ .code = 405, .text = "Method Not Allowed" },
	{ .code = 409, .text = "Conflict" },
	{ .code = 410, .text = "Gone" },
	{ .code = 413, .text = "Content Too Large" },
	{ .code = 414, .text = "URI Too Long" },
	{ .code = 415, .text = "Unsupported Media Type" },
	{ .code = 422, .text = "Unprocessable Content" },
	{ .code = 429, .text = "Too Many Requests" },
	{ .code = 500, .text = "Internal Server Error" },
	{ .code = 502, .text = "Bad Gateway" },
	{ .code = 503, .text = "Service Unavailable" },
	{ .code = 504, .text = "Gateway Timeout" },
};

static const char *
reason(int code)
{
	size_t	 i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == code)
			return reasons[i].text;
	return "Unknown";
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
keel_http_decode(struct keel_arena *a, const char *src, size_t n,
    int plus_space)
{
	char	*out, *o;
	size_t	 i;
	int	 hi, lo;

	out = o = keel_arena_alloc(a, n + 1);
	for (i = 0; i < n; i++) {
		if (src[i] == '%') {
			if (i + 2 >= n)
				return NULL;	/* truncated escape */
			if ((hi = hexval((unsigned char)src[i + 1])) < 0 ||
			    (lo = hexval((unsigned char)src[i + 2])) < 0)
				return NULL;
			if ((*o = (char)(hi << 4 | lo)) == '\0')
				return NULL;
			o++;
			i += 2;
		} else if (src[i] == '+' && plus_space)
			*o++ = ' ';
		else if (src[i] == '\0')
			return NULL;
		else
			*o++ = src[i];
	}
	*o = '\0';
	return out;
}

bool
keel_http_path_escapes_ok(const char *src, size_t n)
{
	size_t	 i;
	int	 hi, lo;

	for (i = 0; i + 2 < n; i++) {
		if (src[i] != '%')
			continue;
		hi = hexval((unsigned char)src[i + 1]);
		lo = hexval((unsigned char)src[i + 2]);
		if (hi == 2 && lo == 0xf)
			return false;		/* %2F: '/' */
		if (hi == 5 && lo == 0xc)
			return false;		/* %5C: '\\' */
	}
	return true;
}

enum keel_err
keel_http_parse_query(struct keel_arena *a, const char *qs,
    struct keel_param **out, size_t *n, const char **bad)
{
	struct keel_param	*pairs;
	const char		*p, *amp, *eq;
	size_t			 np = 0, len;
	char			*name, *value;

	*out = NULL;
	*n = 0;
	*bad = "query";
	pairs = keel_arena_alloc(a, QUERY_MAXPAIRS * sizeof(*pairs));
	for (p = qs; *p != '\0'; p = *amp == '\0' ? amp : amp + 1) {
		amp = strchr(p, '&');
		if (amp == NULL)
			amp = p + strlen(p);
		len = (size_t)(amp - p);
		if (len == 0)
			continue;		/* "a=1&&b=2" */
		if (np == QUERY_MAXPAIRS)
			return KEEL_ETOOBIG;
		eq = memchr(p, '=', len);
		if (eq == NULL)
			eq = amp;
		name = keel_http_decode(a, p, (size_t)(eq - p), 1);
		if (name == NULL || !keel_utf8_valid(name, strlen(name)))
			return KEEL_EINVAL;
		value = eq == amp ? keel_arena_strdup(a, "") :
		    keel_http_decode(a, eq + 1, (size_t)(amp - eq - 1), 1);
		if (value == NULL || !keel_utf8_valid(value, strlen(value))) {
			*bad = name;
			return KEEL_EINVAL;
		}
		pairs[np].name = name;
		pairs[np].value = value;
		np++;
	}
	*out = pairs;
	*n = np;
	*bad = NULL;
	return KEEL_OK;
}

const char *
keel_http_query(const struct keel_req *req, const char *name)
{
	size_t	 i;

	for (i = 0; i < req->nqs; i++)
		if (strcmp(req->qs[i].name, name) == 0)
			return req->qs[i].value;
	return NULL;
}

const char *
keel_http_param(const struct keel_req *req, const char *name)
{
	size_t	 i;

	for (i = 0; i < req->nparams; i++)
		if (strcmp(req->params[i].name, name) == 0)
			return req->params[i].value;
	return NULL;
}

int64_t
keel_http_param_int(const struct keel_req *req, const char *name)
{
	const char	*v;
	int64_t		 out;

	v = keel_http_param(req, name);
	assert(v != NULL);
	if (!keel_parse_int64(v, 1, INT64_MAX, &out))
		return 0;
	return out;
}

const char *
keel_http_header(const struct keel_req *req, const char *name)
{
	char	 var[128];
	size_t	 i, n;

	if (req->conn == NULL || req->conn->fr == NULL)
		return NULL;
	/* RFC 3875 §4.1.18: HTTP_ + the name upper-cased, '-' as '_'. */
	n = strlen(name);
	if (n + 6 > sizeof(var))
		return NULL;
	memcpy(var, "HTTP_", 5);
	for (i = 0; i < n; i++)
		var[5 + i] = name[i] == '-' ? '_' :
		    (char)toupper((unsigned char)name[i]);
	var[5 + n] = '\0';
	return FCGX_GetParam(var, req->conn->fr->envp);
}

const char *
keel_http_client_addr(struct keel_req *req)
{
	char	 addr[KEEL_ADDR_MAX];

	if (req->addr != NULL)
		return req->addr;
	if (req->cfg == NULL || !keel_addr_client(&req->cfg->client,
	    req->remote_addr, keel_http_header(req, "X-Forwarded-For"), addr))
		memcpy(addr, "unknown", sizeof("unknown"));
	req->addr = keel_arena_strdup(req->arena, addr);
	return req->addr;
}

const char *
keel_http_client(struct keel_req *req)
{
	char	 id[KEEL_TEXT_INT_MAX + 2];

	if (req->user == NULL)
		return keel_arena_cat(req->arena, "a:",
		    keel_http_client_addr(req), NULL);
	memcpy(id, "u:", 2);
	keel_text_int(id + 2, req->user->id);
	return keel_arena_strdup(req->arena, id);
}

static int
header_ok(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

void
keel_http_add_header(struct keel_req *req, const char *name,
    const char *value)
{
	struct keel_buf	*h = &req->conn->head;

	assert(header_ok(name) && header_ok(value));
	keel_buf_puts(h, name);
	keel_buf_append(h, ": ", 2);
	keel_buf_puts(h, value);
	keel_buf_append(h, "\r\n", 2);
}

void
keel_http_location(struct keel_req *req, const char *uri)
{
	assert(uri == NULL || header_ok(uri));
	req->conn->location = uri != NULL ?
	    keel_arena_strdup(req->arena, uri) : NULL;
}

const char *
keel_http_reply_location(const struct keel_req *req)
{
	return req->conn->location;
}

const char *
keel_http_location_of(struct keel_arena *a, const char *base, const char *id)
{
	char	 num[KEEL_TEXT_INT_MAX];
	int64_t	 v;

	assert(base != NULL && *base != '\0' && base[strlen(base) - 1] == '/');
	/* Written back from the number: "012" or "+1" can't shape a path. */
	if (id == NULL || !keel_parse_int64(id, 1, INT64_MAX, &v))
		return NULL;
	keel_text_int(num, v);
	return keel_arena_cat(a, base, num, NULL);
}

void
keel_http_reply(struct keel_req *req, int status, const char *ctype,
    const char *body, size_t len)
{
	struct keel_http_conn	*c = req->conn;

	assert(status >= 100 && status <= 599);
	c->status = status;
	c->ctype = ctype;
	c->coding = CODING_OPEN;
	keel_buf_reset(&c->body);
	if (len > 0)
		keel_buf_append(&c->body, body, len);
}

void
keel_http_reply_buf(struct keel_req *req, int status, struct keel_buf *b)
{
	struct keel_http_conn	*c = req->conn;
	struct keel_buf		 old = c->body;

	assert(status >= 100 && status <= 599);
	c->status = status;
	c->ctype = "application/json; charset=utf-8";
	c->coding = CODING_OPEN;
	/* Swap: the reply keeps b's bytes, b gets the old body's memory. */
	c->body = *b;
	*b = old;
	keel_buf_reset(b);
}

bool
keel_http_takes_gzip(const struct keel_req *req)
{
	const char	*ae;

	/* Most clients without gzip send no Accept-Encoding: one lookup. */
	return (ae = keel_http_header(req, "Accept-Encoding")) != NULL &&
	    keel_gzip_wanted(ae, keel_http_header(req, "X-No-Compression"));
}

void
keel_http_reply_coded(struct keel_req *req, bool gzip)
{
	req->conn->coding = gzip ? CODING_GZIP : CODING_IDENTITY;
}

void
keel_http_vary(struct keel_req *req, const char *names)
{
	req->conn->vary = names;
}

void
keel_http_reply_empty(struct keel_req *req, int status)
{
	keel_http_reply(req, status, NULL, NULL, 0);
}

/* API.md's code for an error status, when the caller names none. */
static const char *
status_code(int status)
{
	switch (status) {
	case 401:
		return "unauthorized";
	case 403:
		return "forbidden";
	case 404:
		return "not_found";
	case 405:
		return "method_not_allowed";
	case 409:
		return "conflict";
	case 413:
		return "payload_too_large";
	case 415:
		return "unsupported_media_type";
	case 422:
		return "validation_failed";
	case 429:
		return "rate_limited";
	case 503:
		return "unavailable";
	default:
		return status >= 500 ? "internal" : "bad_request";
	}
}

/*
 * The error object up to its "message" (left open for more members),
 * written into b.
 */
static void
error_open(struct keel_jw *w, struct keel_buf *b, const char *code,
    const char *msg)
{
	keel_jw_init(w, b);
	keel_jw_obj_open(w);
	keel_jw_key(w, "error");
	keel_jw_str(w, code);
	keel_jw_key(w, "message");
	keel_jw_str(w, msg);
}

static void
error_send(struct keel_req *req, int status, struct keel_jw *w,
    struct keel_buf *b)
{
	keel_jw_obj_close(w);
	keel_http_reply_buf(req, status, b);
	keel_buf_free(b);
}

void
keel_http_reply_error(struct keel_req *req, int status, const char *code,
    const char *msg)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;

	error_open(&w, &b, code, msg);
	error_send(req, status, &w, &b);
}

void
keel_http_reply_problem(struct keel_req *req, const struct keel_http_error *e)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;

	error_open(&w, &b, e->code != NULL ? e->code : status_code(e->status),
	    e->message);
	if (e->field != NULL) {
		keel_jw_key(&w, "fields");
		keel_jw_obj_open(&w);
		keel_jw_key(&w, e->field);
		keel_jw_str(&w, e->why);
		keel_jw_obj_close(&w);
	}
	error_send(req, e->status, &w, &b);
}

void
keel_http_reply_field(struct keel_req *req, const char *field,
    const char *why)
{
	const struct keel_http_error e = {
		.status = 422,
		.message = "some fields are not valid",
		.field = field,
		.why = why,
	};

	keel_http_reply_problem(req, &e);
}

void
keel_http_reply_query_field(struct keel_req *req, const char *field,
    const char *why)
{
	const struct keel_http_error e = {
		.status = 400,
		.code = "validation_failed",
		.message = "some query parameters are not valid",
		.field = field,
		.why = why,
	};

	keel_http_reply_problem(req, &e);
}

/* A validation error with every field's problem (json.h's errors). */
static void
reply_fields(struct keel_req *req, int status, const char *msg,
    struct json_object *errors)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;

	error_open(&w, &b, "validation_failed", msg);
	keel_jw_key(&w, "fields");
	keel_jw_obj(&w, errors);
	error_send(req, status, &w, &b);
}

void
keel_http_reply_err(struct keel_req *req, enum keel_err er)
{
	switch (er) {
	case KEEL_OK:
		break;
	case KEEL_EINVAL:
		keel_http_reply_error(req, 400, "bad_request",
		    "the request is not valid");
		break;
	case KEEL_ENOENT:
		keel_http_reply_error(req, 404, "not_found",
		    "no such resource");
		break;
	case KEEL_ECONFLICT:
		keel_http_reply_error(req, 409, "conflict",
		    "the request conflicts with the current state");
		break;
	case KEEL_ETOOBIG:
		keel_http_reply_error(req, 413, "payload_too_large",
		    "the request is too large");
		break;
	case KEEL_EUNAVAIL:
	case KEEL_ETIMEOUT:
		keel_http_add_header(req, "Retry-After", "5");
		keel_http_reply_error(req, 503, "unavailable",
		    "a service this request needs is unavailable; retry "
		    "later");
		break;
	case KEEL_EINTERNAL:
	case KEEL_ERR__MAX:
		keel_http_reply_error(req, 500, "internal",
		    "an internal error occurred");
		break;
	}
}

bool
keel_http_replied(const struct keel_req *req)
{
	return req->conn->status != 0;
}

int
keel_http_status(const struct keel_req *req)
{
	return req->conn->status;
}

const char *
keel_http_reply_body(const struct keel_req *req, size_t *len,
    const char **ctype)
{
	const struct keel_http_conn	*c = req->conn;

	*len = c->body.len;
	if (ctype != NULL)
		*ctype = c->ctype;
	return c->body.len > 0 ? c->body.data : NULL;
}

/* Keeps a parsed document alive until the request ends. */
static void
keep_doc(struct keel_req *req, struct json_object *doc)
{
	struct keel_http_conn	*c = req->conn;

	if (c->ndocs == MAX_DOCS) {
		json_object_put(c->docs[0]);
		memmove(c->docs, c->docs + 1, (MAX_DOCS - 1) * sizeof(c->docs[0]));
		c->ndocs--;
	}
	c->docs[c->ndocs++] = doc;
}

static int
is_json_type(const char *ct)
{
	size_t	 n;

	/* RFC 8259 §11 plus structured +json types; parameters allowed. */
	if (ct == NULL)
		return 0;
	n = strcspn(ct, "; \t");
	if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
		return 1;
	return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
	    strncasecmp(ct + n - 5, "+json", 5) == 0;
}

enum keel_step
keel_http_body_fields(struct keel_req *req, const struct keel_field *fields,
    size_t n, int mode, struct keel_value *vals)
{
	struct json_object	*doc, *errors;
	const char		*ce;
	char			 err[160];

	if (req->body_len == 0) {
		keel_http_reply_error(req, 400, "bad_request",
		    "a JSON body is required");
		return KEEL_STEP_REPLIED;
	}
	if (!is_json_type(req->content_type)) {
		keel_http_reply_error(req, 415, "unsupported_media_type",
		    "the body must be JSON (Content-Type: application/json)");
		return KEEL_STEP_REPLIED;
	}
	/* A coded body is not decoded here (RFC 9110 §15.5.16: 415, and
	 * Accept-Encoding names the codings that would do). */
	if ((ce = keel_http_header(req, "Content-Encoding")) != NULL &&
	    strcasecmp(ce, "identity") != 0) {
		keel_http_add_header(req, "Accept-Encoding", "identity");
		keel_http_reply_error(req, 415, "unsupported_media_type",
		    "the body must not be content-coded (Content-Encoding)");
		return KEEL_STEP_REPLIED;
	}
	if (keel_json_parse(req->body, req->body_len, &doc, err,
	    sizeof(err)) != KEEL_OK) {
		keel_http_reply_error(req, 400, "bad_request", err);
		return KEEL_STEP_REPLIED;
	}
	keep_doc(req, doc);
	errors = json_object_new_object();
	if (keel_json_fields(doc, fields, n, mode, vals, errors) != KEEL_OK) {
		reply_fields(req, 422, "some fields are not valid", errors);
		json_object_put(errors);
		return KEEL_STEP_REPLIED;
	}
	json_object_put(errors);
	return KEEL_STEP_GO;
}

/* True when name is one of fields[0..n) or of more. */
static bool
known_name(const char *name, const struct keel_field *fields, size_t n,
    const char *const *more)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(fields[i].name, name) == 0)
			return true;
	for (; more != NULL && *more != NULL; more++)
		if (strcmp(*more, name) == 0)
			return true;
	return false;
}

/*
 * Whether the request's query names parameter i's name before it: each
 * takes one value, and which of two the handler would read is no answer
 * a client should have to guess (nor a second cache key for one query).
 */
static bool
given_before(const struct keel_req *req, size_t i)
{
	size_t	 j;

	for (j = 0; j < i; j++)
		if (strcmp(req->qs[j].name, req->qs[i].name) == 0)
			return true;
	return false;
}

enum keel_step
keel_http_query_known(struct keel_req *req, const struct keel_field *fields,
    size_t n, const char *const *more)
{
	struct json_object	*errors = NULL;
	const char		*msg;
	size_t			 i;

	for (i = 0; i < req->nqs; i++) {
		if (!known_name(req->qs[i].name, fields, n, more))
			msg = "is not a known parameter";
		else if (given_before(req, i))
			msg = "is given more than once";
		else
			continue;
		if (errors == NULL)
			errors = json_object_new_object();
		json_object_object_add(errors, req->qs[i].name,
		    keel_json_str(msg));
	}
	if (errors == NULL)
		return KEEL_STEP_GO;
	reply_fields(req, 400, "some query parameters are not valid", errors);
	json_object_put(errors);
	return KEEL_STEP_REPLIED;
}

enum keel_step
keel_http_query_fields(struct keel_req *req, const struct keel_field *fields,
    size_t n, struct keel_value *vals)
{
	struct json_object	*errors = NULL;
	const char		*s, *msg;
	size_t			 i;

	memset(vals, 0, n * sizeof(*vals));
	for (i = 0; i < n; i++) {
		if ((s = keel_http_query(req, fields[i].name)) == NULL &&
		    (s = fields[i].def) == NULL)
			continue;
		if ((msg = keel_field_check_text(&fields[i], s,
		    &vals[i])) == NULL)
			continue;
		if (errors == NULL)
			errors = json_object_new_object();
		json_object_object_add(errors, fields[i].name,
		    json_object_new_string(msg));
	}
	if (errors == NULL)
		return KEEL_STEP_GO;
	reply_fields(req, 400, "some query parameters are not valid", errors);
	json_object_put(errors);
	return KEEL_STEP_REPLIED;
}

struct keel_http_conn *
keel_http_conn_new(void)
{
	struct keel_http_conn	*c;

	c = keel_calloc(1, sizeof(*c));
	c->pool_used = ID_POOL;		/* drawn on first use */
	return c;
}

/*
 * A new request id: 8 bytes from the kernel's generator, as before, but
 * drawn ID_POOL bytes at a time, so a request costs no getrandom(2) of
 * its own.  The pool lives in the connection, which each worker makes
 * after fork: two workers never share bytes.
 */
static void
new_request_id(struct keel_http_conn *c, char *id)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char	*p;
	size_t			 i;

	if (c->pool_used + 8 > ID_POOL) {
		randombytes_buf(c->pool, ID_POOL);
		c->pool_used = 0;
	}
	p = c->pool + c->pool_used;
	for (i = 0; i < 8; i++) {
		id[2 * i] = hex[p[i] >> 4];
		id[2 * i + 1] = hex[p[i] & 0xf];
	}
	id[16] = '\0';
	/* Used bytes are not left behind for anyone to find. */
	sodium_memzero(c->pool + c->pool_used, 8);
	c->pool_used += 8;
}

void
keel_http_adopt_request_id(struct keel_req *req)
{
	const char	*h;

	if (req->cfg == NULL || req->cfg->client.ntrusted == 0 ||
	    (h = keel_http_header(req, "X-Request-Id")) == NULL ||
	    !keel_text_request_id_valid(h) ||
	    !keel_addr_trusted(&req->cfg->client, req->remote_addr))
		return;
	snprintf(req->id, sizeof(req->id), "%s", h);
}

void
keel_http_conn_free(struct keel_http_conn *c)
{
	if (c == NULL)
		return;
	keel_buf_free(&c->status_head);
	keel_buf_free(&c->head);
	keel_buf_free(&c->body);
	keel_buf_free(&c->coded);
	free(c);
}

/* At most max bytes of UTF-8 s, never cutting a character in two. */
static const char *
utf8_prefix(struct keel_arena *a, const char *s, size_t max)
{
	size_t	 n = strlen(s);

	if (n <= max)
		return s;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return keel_arena_strndup(a, s, n);
}

static const char *
param(FCGX_Request *fr, const char *name)
{
	return FCGX_GetParam(name, fr->envp);
}

/* Reads exactly len body bytes; -1 if the stream ends early. */
static int
read_body(FCGX_Request *fr, char *buf, size_t len)
{
	size_t	 got = 0;
	int	 n;

	while (got < len) {
		n = FCGX_GetStr(buf + got, (int)(len - got), fr->in);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

enum keel_step
keel_http_begin(struct keel_req *req, struct keel_http_conn *c,
    FCGX_Request *fr, struct keel_arena *a, size_t body_max)
{
	const char	*uri, *s, *bad;
	const char	*q;
	int64_t		 clen = 0;
	size_t		 len;
	char		*path;

	memset(req, 0, sizeof(*req));
	c->fr = fr;
	c->status = 0;
	c->ctype = NULL;
	c->coding = CODING_OPEN;
	c->vary = NULL;
	c->location = NULL;
	c->ndocs = 0;
	keel_buf_reset(&c->head);
	keel_buf_reset(&c->body);
	req->conn = c;
	req->arena = a;

	new_request_id(c, req->id);

	/* Copied: the access log reads it after libfcgi frees its params. */
	req->method = keel_arena_strdup(a,
	    (s = param(fr, "REQUEST_METHOD")) != NULL ? s : "GET");
	req->content_type = param(fr, "CONTENT_TYPE");
	if (req->content_type != NULL && *req->content_type == '\0')
		req->content_type = NULL;
	req->remote_addr = (s = param(fr, "REMOTE_ADDR")) != NULL ? s : "";
	req->path = "/";
	req->query = "";

	/* REQUEST_URI is what the client sent: path, then the query. */
	if ((uri = param(fr, "REQUEST_URI")) == NULL)
		uri = (s = param(fr, "SCRIPT_NAME")) != NULL ? s : "/";
	if (strlen(uri) > URI_MAX) {
		keel_http_reply_error(req, 414, "bad_request",
		    "the request URI is too long");
		return KEEL_STEP_REPLIED;
	}
	q = strchr(uri, '?');
	len = q == NULL ? strlen(uri) : (size_t)(q - uri);
	/*
	 * An encoded separator is refused before routing, as Apache's
	 * AllowEncodedSlashes Off and Tomcat do: the path lighttpd matched
	 * must be the path served.  400, not 404: the route may exist; it
	 * is this spelling of the request that keel won't read.
	 */
	if (!keel_http_path_escapes_ok(uri, len)) {
		keel_http_reply_error(req, 400, "bad_request",
		    "the request path encodes a '/' or '\\' (%2F, %5C)");
		return KEEL_STEP_REPLIED;
	}
	path = keel_http_decode(a, uri, len, 0);
	if (path == NULL || !keel_utf8_valid(path, strlen(path)) ||
	    path[0] != '/') {
		keel_http_reply_error(req, 400, "bad_request",
		    "the request path is not valid");
		return KEEL_STEP_REPLIED;
	}
	req->path = path;
	if ((s = param(fr, "QUERY_STRING")) != NULL)
		req->query = s;
	else if (q != NULL)
		req->query = q + 1;
	switch (keel_http_parse_query(a, req->query, &req->qs, &req->nqs,
	    &bad)) {
	case KEEL_OK:
		break;
	case KEEL_ETOOBIG:
		keel_http_reply_error(req, 400, "bad_request",
		    "the query string has too many parameters");
		return KEEL_STEP_REPLIED;
	default:
		keel_http_reply_error(req, 400, "bad_request",
		    keel_arena_printf(a, "the query parameter \"%s\" is not "
		    "valid percent-encoded UTF-8", utf8_prefix(a, bad, 64)));
		return KEEL_STEP_REPLIED;
	}

	if ((s = param(fr, "CONTENT_LENGTH")) != NULL && *s != '\0' &&
	    !keel_parse_int64(s, 0, INT64_MAX, &clen)) {
		keel_http_reply_error(req, 400, "bad_request",
		    "Content-Length is not valid");
		return KEEL_STEP_REPLIED;
	}
	if (clen > (int64_t)body_max) {
		keel_http_reply_error(req, 413, "payload_too_large",
		    keel_arena_printf(a, "the body may be at most %zu bytes",
		    body_max));
		return KEEL_STEP_REPLIED;
	}
	if (clen > 0) {
		req->body = keel_arena_alloc(a, (size_t)clen + 1);
		if (read_body(fr, (char *)req->body, (size_t)clen) == -1) {
			keel_http_reply_error(req, 400, "bad_request",
			    "the body ended before Content-Length bytes");
			req->body = NULL;
			return KEEL_STEP_REPLIED;
		}
		((char *)req->body)[clen] = '\0';
		req->body_len = (size_t)clen;
	}
	return KEEL_STEP_GO;
}

bool
keel_http_input_ended(struct keel_http_conn *c)
{
	FCGX_Stream	*in = c->fr->in;

	if (!FCGX_HasSeenEOF(in) && FCGX_GetChar(in) != EOF)
		return false;	/* more than Content-Length: linger */
	return FCGX_HasSeenEOF(in) != 0;
}

/*
 * The gzip coding of the reply, for a client that takes it (gzip.c: keel
 * codes its own answers, lighttpd only the page's files).  A reply
 * keel_gzip_codes() would code varies with the request's
 * Accept-Encoding, so it says so (Vary) whether it is coded or not.  A
 * reply whose coding is chosen already (a cached one,
 * keel_http_reply_coded) is left as it is.  HEAD is coded too: its
 * Content-Length is then GET's (RFC 9110 §9.3.2), though its body is
 * never sent.
 */
static void
code_reply(struct keel_req *req)
{
	struct keel_http_conn	*c = req->conn;
	struct keel_buf		 t;

	if (c->coding != CODING_OPEN ||
	    !keel_gzip_codes(c->ctype, c->body.len))
		return;
	c->coding = CODING_IDENTITY;
	if (!keel_http_takes_gzip(req))
		return;
	keel_buf_reset(&c->coded);
	if (keel_gzip_compress(&c->coded, c->body.data, c->body.len) !=
	    KEEL_OK)
		return;		/* sent as identity, as it is */
	/* Swap: both buffers' memory stays for the next requests. */
	t = c->body;
	c->body = c->coded;
	c->coded = t;
	c->coding = CODING_GZIP;
}

/*
 * One Vary line (RFC 9110 §12.5.5) for all the request headers the reply
 * depends on: Accept-Encoding when it is coded for the request, Origin
 * when KEEL_CORS_ORIGINS lists origins (on every answer, with or
 * without CORS headers: Fetch §3.2.5), and what a step named
 * (keel_http_vary).
 */
static void
put_vary(struct keel_req *req, struct keel_buf *h)
{
	struct keel_http_conn	*c = req->conn;
	const char		*sep = "Vary: ";

	if (c->coding != CODING_OPEN) {
		keel_buf_puts(h, sep);
		keel_buf_puts(h, "Accept-Encoding");
		sep = ", ";
	}
	if (req->cfg != NULL && keel_cors_varies(req->cfg->cors_origins)) {
		keel_buf_puts(h, sep);
		keel_buf_puts(h, "Origin");
		sep = ", ";
	}
	if (c->vary != NULL) {
		keel_buf_puts(h, sep);
		keel_buf_puts(h, c->vary);
		sep = ", ";
	}
	if (*sep == ',')
		keel_buf_append(h, "\r\n", 2);
}

/*
 * CORS (cors.h) on every answer to a listed origin's request, errors
 * included: a browser hides an answer without them from the script,
 * which would see a network error for a 401 or a 429.  Added here, per
 * request, never stored with a cached or replayed answer, so the answer
 * one origin filled never carries its name to another.  The origin sent
 * back is one of the setting's (matched byte for byte), never the
 * client's bytes unchecked.  A preflight's own headers are pipeline.c's.
 */
static void
put_cors(struct keel_req *req, struct keel_buf *h)
{
	const char	*acao;

	if (req->cfg == NULL || req->cfg->cors_origins[0] == '\0' ||
	    (acao = keel_cors_allow_origin(req->cfg->cors_origins,
	    keel_http_header(req, "Origin"))) == NULL)
		return;
	keel_buf_puts(h, "Access-Control-Allow-Origin: ");
	keel_buf_puts(h, acao);
	keel_buf_append(h, "\r\n", 2);
	/* On a preflight's 204 too: the browser ignores it there. */
	keel_buf_puts(h, "Access-Control-Expose-Headers: "
	    KEEL_CORS_EXPOSE_HEADERS "\r\n");
}

static void
put_decimal(struct keel_buf *b, size_t v)
{
	char	 num[KEEL_TEXT_INT_MAX];

	keel_buf_append(b, num, keel_text_int(num, (int64_t)v));
}

void
keel_http_finish(struct keel_req *req)
{
	struct keel_http_conn	*c = req->conn;
	FCGX_Stream		*out = c->fr->out;
	struct keel_buf		*h;
	size_t			 i;
	int			 nobody, head;

	if (c->status == 0) {
		keel_log_error("handler for %s made no reply", req->method);
		keel_http_reply_err(req, KEEL_EINTERNAL);
	}
	head = strcmp(req->method, "HEAD") == 0;
	code_reply(req);
	/* Built here, then sent as one piece (libfcgi's printf knows no
	 * %zu, and every request pays for what is done here). */
	h = &c->status_head;
	keel_buf_reset(h);
	keel_buf_append(h, "Status: ", 8);
	put_decimal(h, (size_t)c->status);
	keel_buf_putc(h, ' ');
	keel_buf_puts(h, reason(c->status));
	keel_buf_append(h, "\r\n", 2);
	if (c->ctype != NULL) {
		keel_buf_append(h, "Content-Type: ", 14);
		keel_buf_puts(h, c->ctype);
		keel_buf_append(h, "\r\n", 2);
	}
	/* RFC 9110 §6.4.1: 204 and 304 have no content at all. */
	nobody = c->status == 204 || c->status == 304;
	if (!nobody) {
		keel_buf_append(h, "Content-Length: ", 16);
		put_decimal(h, c->body.len);
		keel_buf_append(h, "\r\n", 2);
	}
	put_vary(req, h);
	put_cors(req, h);
	if (c->coding == CODING_GZIP)
		keel_buf_append(h, "Content-Encoding: gzip\r\n", 24);
	keel_buf_append(h, "X-Request-Id: ", 14);
	keel_buf_puts(h, req->id);
	keel_buf_append(h, "\r\n", 2);
	/* Answers are per caller and may hold a token (a login's): no
	 * cache between keel and the client keeps one (RFC 6749 §5.1). */
	keel_buf_append(h, "Cache-Control: no-store\r\n", 25);
	/* RFC 9110 §10.2.2: a 201's new resource, a 3xx's target; an
	 * error that replaced the reply points nowhere. */
	if (c->location != NULL && (c->status == 201 ||
	    (c->status >= 300 && c->status < 400))) {
		keel_buf_puts(h, "Location: ");
		keel_buf_puts(h, c->location);
		keel_buf_append(h, "\r\n", 2);
	}
	if (c->head.len > 0)
		keel_buf_append(h, c->head.data, c->head.len);
	keel_buf_append(h, "\r\n", 2);
	FCGX_PutStr(h->data, (int)h->len, out);
	/* RFC 9110 §9.3.2: HEAD gets the headers of GET, no content. */
	if (c->body.len > 0 && !nobody && !head)
		FCGX_PutStr(c->body.data, (int)c->body.len, out);
	for (i = 0; i < c->ndocs; i++)
		json_object_put(c->docs[i]);
	c->ndocs = 0;
}
