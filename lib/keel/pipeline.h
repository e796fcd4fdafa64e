/* SPDX-License-Identifier: ISC */
/* pipeline.h -- one request's steps, read off its route's row. */
#ifndef KEEL_PIPELINE_H
#define KEEL_PIPELINE_H

#include <stddef.h>

#include "keel/err.h"
#include "keel/http.h"
#include "keel/router.h"

/*
 * Runs req through routes[0..n) (DESIGN.md, "One request's life"): the
 * router matches (404, or 405 with Allow; a listed origin's CORS
 * preflight, 204, ends there), then each step runs as the
 * matched row says -- the cached GET's lookup is sent to memcached; the
 * limits of the route's class and the caller's session are read in one
 * Redis round trip; identify, authorize (401, 403); Idempotency-Key on
 * POST; the handler, through the cache when the row declares one.  A
 * step that answers (429, 503, 401, 403, a replayed or cached answer)
 * ends the request there.  Every routed reply gets its RateLimit and
 * Server-Timing headers.  Returns the handler's result (KEEL_OK after
 * any reply).
 */
enum keel_err	 keel_pipeline_run(const struct keel_route *routes, size_t n,
		    struct keel_req *req);

#endif /* KEEL_PIPELINE_H */
