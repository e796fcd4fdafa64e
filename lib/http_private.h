/* SPDX-License-Identifier: ISC */
/* http_private.h -- the FastCGI side of http.c, for serve.c only. */
#ifndef KEEL_HTTP_PRIVATE_H
#define KEEL_HTTP_PRIVATE_H

#include <stddef.h>

#include "keel/http.h"

struct FCGX_Request;
struct keel_arena;
struct keel_http_conn;
struct keel_req;

/* One per worker; keeps its buffers between requests. */
struct keel_http_conn *keel_http_conn_new(void);
void		 keel_http_conn_free(struct keel_http_conn *);

/*
 * Fills req from the accepted FastCGI request fr: method, path, query,
 * headers, a fresh request id, and the body bounded at body_max bytes.
 * A step: KEEL_STEP_REPLIED after replying with the error (413, 400,
 * 414), when the pipeline is skipped and keel_http_finish() still sends
 * the reply.
 */
enum keel_step	 keel_http_begin(struct keel_req *req, struct keel_http_conn *c,
		    struct FCGX_Request *fr, struct keel_arena *a,
		    size_t body_max);

/*
 * Whether c's request has been read to its end, the FastCGI end of its
 * input included (lighttpd sends it with the request: reading it does not
 * wait).  Only after a keel_http_begin() that returned KEEL_STEP_GO, which
 * read the whole body: one that replied early may have left the body
 * unread, and this would wait for it.  Then nothing is left unread, and
 * the connection may close at once, without libfcgi's lingering close
 * (serve.c).
 */
bool		 keel_http_input_ended(struct keel_http_conn *c);

/* Sends req's reply (500 if the handler made none) and releases the
 * request's JSON documents. */
void		 keel_http_finish(struct keel_req *req);

#endif /* KEEL_HTTP_PRIVATE_H */
