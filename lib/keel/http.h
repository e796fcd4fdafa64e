/* SPDX-License-Identifier: ISC */
/* http.h -- one request and its response, as handlers see them. */
#ifndef KEEL_HTTP_H
#define KEEL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"
#include "keel/text.h"

struct keel_arena;
struct keel_buf;
struct keel_db;
struct keel_redis;
struct keel_cache;
struct keel_config;
struct keel_field;
struct keel_value;
struct keel_route;
struct keel_http_conn;		/* opaque: the FastCGI side, in http.c */
struct keel_limit_state;	/* opaque: rate-limit results (limit.c) */
struct keel_idem_state;		/* opaque: idempotency (idem.c) */

/* A name/value pair from the query string or the path pattern. */
struct keel_param {
	const char	*name;
	const char	*value;		/* decoded, NUL-terminated, valid UTF-8 */
};

#define KEEL_HTTP_MAXPARAMS	8	/* typed path parameters per route */

/*
 * What a step of a request's life did (pipeline.c runs them; the input
 * parsers below are steps too): let the request go on, or answered it
 * (an error, a replayed or cached answer) and ended it.
 */
enum keel_step {
	KEEL_STEP_GO,
	KEEL_STEP_REPLIED,
};

/*
 * The authenticated caller, filled by auth before the handler runs when
 * the request carries a valid session; NULL for anonymous requests.
 */
struct keel_user {
	int64_t		 id;
	unsigned	 role;		/* one KEEL_ROLE_* bit (router.h) */
	const char	*session;	/* the session's id (token hash, hex) */
};

/* The longest X-Request-Id accepted from a trusted proxy. */
#define KEEL_HTTP_ID_MAX	KEEL_TEXT_REQUEST_ID_MAX

/*
 * The request as handlers see it: plain data filled by lib before the
 * handler runs, all of it living in arena until the request ends.
 */
struct keel_req {
	const char	*method;	/* "GET", "POST", ... */
	const char	*path;		/* decoded path, without the query */
	const char	*query;		/* raw query string, "" when none */
	const char	*content_type;	/* NULL when absent */
	const char	*remote_addr;	/* the peer lighttpd saw */
	const char	*body;		/* NUL-terminated; NULL when empty */
	size_t		 body_len;	/* bytes */
	char		 id[KEEL_HTTP_ID_MAX + 1]; /* request id: 16 hex
					   digits, or a trusted proxy's */

	struct keel_param params[KEEL_HTTP_MAXPARAMS]; /* from the route */
	size_t		 nparams;
	struct keel_param *qs;		/* parsed query, in order */
	size_t		 nqs;
	const struct keel_route *route;	/* the matched route, or NULL */
	struct keel_user *user;		/* the caller, or NULL (anonymous) */
	struct keel_limit_state *limit;	/* limit.c's, NULL until it runs */
	struct keel_idem_state *idem;	/* idem.c's, NULL unless a POST */

	const char	*addr;		/* the client's address, once asked
					   (keel_http_client_addr) */

	struct keel_arena *arena;	/* request lifetime */
	const struct keel_config *cfg;	/* process lifetime, like: */
	struct keel_db	*db;		/* the worker's handles */
	struct keel_redis *redis;
	struct keel_cache *cache;

	struct keel_http_conn *conn;	/* response state; lib only */
};

/*
 * Takes the request's X-Request-Id as its id when the peer is one of
 * TRUSTED_PROXIES and the id is valid (req->cfg must be set); otherwise
 * the id keel drew stays.
 */
void		 keel_http_adopt_request_id(struct keel_req *req);

/* Request header by its HTTP name ("Authorization"); NULL when absent. */
const char	*keel_http_header(const struct keel_req *, const char *name);

/* First value of query parameter name, or NULL when absent. */
const char	*keel_http_query(const struct keel_req *, const char *name);

/* Path parameter name from the route pattern, or NULL. */
const char	*keel_http_param(const struct keel_req *, const char *name);
/* The same, for an {name:int} parameter (the router checked its form). */
int64_t		 keel_http_param_int(const struct keel_req *, const char *name);

/*
 * Parses a raw query string into pairs allocated from a.  Percent-escapes
 * and '+' are decoded; a pair without '=' gets the value "".  KEEL_EINVAL
 * on a bad escape, a NUL byte or invalid UTF-8 (*bad names the offending
 * parameter, or "query"); KEEL_ETOOBIG past 64 pairs.
 */
enum keel_err	 keel_http_parse_query(struct keel_arena *a, const char *qs,
		    struct keel_param **out, size_t *n, const char **bad);

/*
 * The client's address as the limits and keys see it: the peer, or the
 * first untrusted hop of X-Forwarded-For from TRUSTED_PROXIES, IPv6 cut
 * to its prefix (addr.h).  Computed once per request, from req's arena.
 */
const char	*keel_http_client_addr(struct keel_req *);
/*
 * Who the client is, for keys scoped to it (limits, idempotency):
 * "u:<id>" with a session, else "a:<address>".  From req's arena.
 */
const char	*keel_http_client(struct keel_req *);

/*
 * Decodes %XX escapes of src (length n) into a new string from a;
 * plus_space turns '+' into ' ' (query strings).  NULL on a bad escape
 * or an embedded NUL.
 */
char		*keel_http_decode(struct keel_arena *a, const char *src,
		    size_t n, int plus_space);
/*
 * True when no %XX escape of the path src (length n) encodes a path
 * separator, '/' (%2F) or '\' (%5C), in either case of hex.  lighttpd
 * routes, and an operator's mod_access rule denies, the path with %2F
 * still encoded; decoded here it would route a path lighttpd never saw.
 */
bool		 keel_http_path_escapes_ok(const char *src, size_t n);

/*
 * Responses.  A handler replies once; lib sends it after the handler
 * returns.  Header names and values must not contain CR or LF (asserted:
 * they come from code, never from clients unescaped).
 */
void	 keel_http_add_header(struct keel_req *, const char *name,
	    const char *value);
/* Replies with a copy of body (len bytes) and the given content type. */
void	 keel_http_reply(struct keel_req *, int status, const char *ctype,
	    const char *body, size_t len);
/*
 * Replies with the JSON text in b (built with keel_jw_*), taking its bytes
 * without a copy; b is left empty and may be reused or freed.
 */
void	 keel_http_reply_buf(struct keel_req *, int status,
	    struct keel_buf *b);
/*
 * True when the request takes a gzip-coded answer: its Accept-Encoding
 * and x-no-compression as keel_gzip_wanted() reads them.
 */
bool	 keel_http_takes_gzip(const struct keel_req *);
/*
 * Says the reply's body is in the coding chosen for this request's
 * Accept-Encoding already, gzip or identity (a cached answer keeps both
 * forms: cache.c): keel_http_finish() then codes nothing, and sends
 * Vary: Accept-Encoding, and Content-Encoding: gzip when gzip is true.
 * Call it after the reply; a later reply undoes it.  Other replies over
 * 1 KB are coded by keel_http_finish() itself (lib/gzip.c).
 */
void	 keel_http_reply_coded(struct keel_req *, bool gzip);
/*
 * Names request headers the reply depends on beyond those lib adds to
 * its one Vary line itself (Accept-Encoding when it codes, Origin under
 * KEEL_CORS_ORIGINS): names, a static string, replaces an earlier call's.
 */
void	 keel_http_vary(struct keel_req *, const char *names);
/*
 * The reply's Location (RFC 9110 §10.2.2): uri, copied, sent with a 201
 * or a 3xx and with no other status (an error replacing the reply drops
 * it); NULL takes it back.  Must not contain CR or LF (asserted).
 */
void	 keel_http_location(struct keel_req *, const char *uri);
/* The reply's Location as set above (NULL: none): what idempotency keeps. */
const char *keel_http_reply_location(const struct keel_req *);
/*
 * The path of a row created in a collection: base ("/api/cars/", ending
 * in '/') and id, the row's id as PostgreSQL wrote it, a positive
 * decimal integer ("/api/cars/12"), from a.  NULL when id is not one,
 * so a column of another kind never goes into a header.
 */
const char *keel_http_location_of(struct keel_arena *a, const char *base,
	    const char *id);
/* Replies with no body (204, 202 ...). */
void	 keel_http_reply_empty(struct keel_req *, int status);
/* Replies with API.md's error object {"error": code, "message": msg}. */
void	 keel_http_reply_error(struct keel_req *, int status, const char *code,
	    const char *msg);
/*
 * An error naming what is wrong: API.md's error object with "fields":
 * {field: why} when field is not NULL.
 */
struct keel_http_error {
	int		 status;
	const char	*code;		/* API.md's code; NULL: the status's
					   own (422 validation_failed, ...) */
	const char	*message;
	const char	*field;		/* the field in "fields", or NULL */
	const char	*why;		/* what is wrong with it */
};
void	 keel_http_reply_problem(struct keel_req *,
	    const struct keel_http_error *);
/* 422 validation_failed, "some fields are not valid", {field: why}. */
void	 keel_http_reply_field(struct keel_req *, const char *field,
	    const char *why);
/* The same for a query parameter: 400, "some query parameters ...". */
void	 keel_http_reply_query_field(struct keel_req *, const char *field,
	    const char *why);
/* The standard reply for a lib error that reached a handler. */
void	 keel_http_reply_err(struct keel_req *, enum keel_err er);
/* True once a reply has been made. */
bool	 keel_http_replied(const struct keel_req *);
/* The status replied (0 before any reply). */
int	 keel_http_status(const struct keel_req *);
/*
 * The reply's body (*len bytes, NUL-terminated; NULL when empty) and, when
 * ctype is not NULL, its content type (NULL for none): what the cache and
 * idempotency store.  Valid until the reply changes or the request ends.
 */
const char *keel_http_reply_body(const struct keel_req *, size_t *len,
	    const char **ctype);

/*
 * Request bodies and query filters through a field table (json.h).
 * Each is a step: KEEL_STEP_GO with vals filled, or KEEL_STEP_REPLIED
 * after replying with the error (415 for a non-JSON content type, 400
 * for malformed JSON or invalid UTF-8, 422 naming each bad field), so a
 * handler writes
 *
 *	if (keel_http_body_fields(req, fields, F__MAX, KEEL_FIELDS_ALL,
 *	    v) != KEEL_STEP_GO)
 *		return KEEL_OK;
 *
 * mode is KEEL_FIELDS_ALL (required fields must be present: create) or
 * KEEL_FIELDS_SOME (any subset, at least one: patch).
 */
enum keel_step	 keel_http_body_fields(struct keel_req *,
		    const struct keel_field *, size_t n, int mode,
		    struct keel_value *vals);
/*
 * A step: every parameter of req's query must be one of fields[0..n) or
 * of more (NULL-terminated; may be NULL), and given once, else 400
 * validation_failed naming each stranger or repeat, as an unknown JSON
 * field is: a typo must not pass silently, nor make a new cache key.
 */
enum keel_step	 keel_http_query_known(struct keel_req *,
		    const struct keel_field *, size_t n,
		    const char *const *more);
/*
 * The same over the query string; bad values are 400 validation_failed.
 * A field's def stands for its parameter when the query has none.
 */
enum keel_step	 keel_http_query_fields(struct keel_req *,
		    const struct keel_field *, size_t n,
		    struct keel_value *vals);

#endif /* KEEL_HTTP_H */
