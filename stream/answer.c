/* SPDX-License-Identifier: ISC */
/*
 * answer.c -- keel-stream's answers as the apps' are: every request's,
 * the 200 that opens a stream and each refusal alike.
 *
 * An answer begins when its request comes (answer_begin: the clock, the
 * route, the request id, adopted from a trusted proxy as lib/http.c
 * adopts one), and is counted when it goes (answered: CORS headers,
 * X-Request-Id, the access line, keel_http_requests_total).  A refusal
 * is reply_error's JSON, shaped as API.md's errors are, with the
 * headers its status calls for (Allow, WWW-Authenticate, Retry-After).
 * No state of its own: the configuration is W's.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "keel/addr.h"
#include "keel/cors.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/text.h"
#include "stream.h"

/* A request's method as its name (a label, a log field). */
static const char *
method_name(const struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:		return "GET";
	case EVHTTP_REQ_HEAD:		return "HEAD";
	case EVHTTP_REQ_POST:		return "POST";
	case EVHTTP_REQ_PUT:		return "PUT";
	case EVHTTP_REQ_PATCH:		return "PATCH";
	case EVHTTP_REQ_DELETE:		return "DELETE";
	case EVHTTP_REQ_OPTIONS:	return "OPTIONS";
	default:			return "other";
	}
}

/*
 * The answer to req begins: its id is the X-Request-Id lighttpd passed
 * on when the peer lighttpd saw (the last X-Forwarded-For hop, which
 * lighttpd appends) is a trusted proxy and the id is well formed, as
 * the apps adopt one; otherwise 16 hex digits drawn here.
 */
void
answer_begin(struct answer *a, struct evhttp_request *req, bool routed)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	const char		*id;
	unsigned char		 r[8];

	a->t0 = now_ms();
	a->route = routed ? STREAM_PATH : "unmatched";
	a->vary = NULL;
	if (W.cfg->client.ntrusted > 0 &&
	    (id = evhttp_find_header(in, "X-Request-Id")) != NULL &&
	    keel_text_request_id_valid(id) &&
	    keel_addr_last_hop_trusted(&W.cfg->client,
	    evhttp_find_header(in, "X-Forwarded-For"))) {
		keel_text_copy(a->id, sizeof(a->id), id);
		return;
	}
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(a->id, sizeof(a->id), r, sizeof(r));
}

/*
 * CORS (lib/cors.h) as lib/http.c puts it on the apps' answers: with
 * KEEL_CORS_ORIGINS a list, Vary: Origin on every answer (Fetch §3.2.5),
 * in one line with a's own names; to a listed origin's request, its
 * origin (or "*") and the headers a script may read, on the 200 and on
 * every refusal alike, or the browser shows the script a network error
 * where it needs the 401 or the 429's Retry-After.  The origin sent back
 * is the setting's match, never the client's bytes unchecked.
 */
static void
cors_headers(const struct answer *a, struct evhttp_request *req)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);
	const char		*list = W.cfg->cors_origins, *acao;
	char			 vary[128];

	if (keel_cors_varies(list) || a->vary != NULL) {
		snprintf(vary, sizeof(vary), "%s%s%s",
		    keel_cors_varies(list) ? "Origin" : "",
		    keel_cors_varies(list) && a->vary != NULL ? ", " : "",
		    a->vary != NULL ? a->vary : "");
		evhttp_add_header(h, "Vary", vary);
	}
	if ((acao = keel_cors_allow_origin(list, evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Origin"))) == NULL)
		return;
	evhttp_add_header(h, "Access-Control-Allow-Origin", acao);
	evhttp_add_header(h, "Access-Control-Expose-Headers",
	    KEEL_CORS_EXPOSE_HEADERS);
}

/*
 * The answer with status is about to go: its CORS headers, id, access
 * line, count.
 */
void
answered(const struct answer *a, struct evhttp_request *req, int status)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*path = uri != NULL ?
				    evhttp_uri_get_path(uri) : NULL;
	double			 ms = now_ms() - a->t0;

	cors_headers(a, req);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "X-Request-Id", a->id);
	keel_log_set_request(a->id);
	keel_log_access(method_name(req), path, status, ms);
	keel_log_set_request(NULL);
	keel_metrics_request(a->route, method_name(req), status, ms);
}

/* A JSON error as API.md shapes it, with extra headers (may be NULL). */
void
reply_error(const struct answer *a, struct evhttp_request *req, int status,
    const char *code, const char *msg, const char *retry_after)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);
	struct evbuffer		*body;
	struct keel_buf		 b = { NULL, 0, 0 };
	struct keel_jw		 w;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "error");
	keel_jw_str(&w, code);
	keel_jw_key(&w, "message");
	keel_jw_str(&w, msg);
	if (status == 429 && retry_after != NULL) {
		keel_jw_key(&w, "retryAfter");
		keel_jw_raw(&w, retry_after, strlen(retry_after));
	}
	keel_jw_obj_close(&w);
	keel_buf_putc(&b, '\n');
	evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (status == 405)
		evhttp_add_header(h, "Allow", STREAM_METHODS);
	/* RFC 6750 §3, as the FastCGI apps' 401 (lib/auth.c). */
	if (status == 401)
		evhttp_add_header(h, "WWW-Authenticate", "Bearer realm=\"keel\"");
	if (retry_after != NULL)
		evhttp_add_header(h, "Retry-After", retry_after);
	if ((body = evbuffer_new()) == NULL)
		abort();
	evbuffer_add(body, b.data, b.len);
	answered(a, req, status);
	evhttp_send_reply(req, status, NULL, body);
	evbuffer_free(body);
	keel_buf_free(&b);
}
