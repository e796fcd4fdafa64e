/* SPDX-License-Identifier: ISC */
/* idem.h -- Idempotency-Key on POST: a retried request gets the first answer. */
#ifndef KEEL_IDEM_H
#define KEEL_IDEM_H

#include <stdbool.h>

#include "keel/err.h"
#include "keel/http.h"

#define KEEL_IDEM_TTL		86400	/* seconds an answer is kept */
#define KEEL_IDEM_RUNNING_TTL	60	/* seconds a claim outlives a crash */
#define KEEL_IDEM_KEY_MAX	255	/* bytes of an Idempotency-Key */
#define KEEL_IDEM_BODY_MAX	65536	/* bytes of an answer kept whole */

/*
 * The pipeline's step for a POST carrying an Idempotency-Key header
 * (after auth, before the handler), one Redis round trip.  The key is
 * scoped to the client (the user, else the address: keel_http_client())
 * and bound to the request's fingerprint (keyed BLAKE2b of method, path, query
 * and body).  KEEL_STEP_GO runs the handler (first use of the key; or no
 * key; or Redis down, when the request runs unprotected and a warning is
 * logged); KEEL_STEP_REPLIED after replying: the stored answer with
 * "Idempotent-Replayed: true"; 409 conflict while the first request is
 * still running; 422 validation_failed when the key was used with a
 * different request; 400 for a malformed key.
 */
enum keel_step	 keel_idem_step(struct keel_req *req);

/*
 * After the handler (er is its result): keeps the reply's status, content
 * type and body for KEEL_IDEM_TTL seconds, or, for a 5xx or a failed
 * handler, forgets the key so that a retry runs again.  A client keeps
 * at most KEEL_IDEM_MAX answers (cfg->idem_max): keeping one more
 * deletes its oldest, whose retry then runs again.  A body over
 * KEEL_IDEM_BODY_MAX bytes is not kept: a retry gets 422
 * validation_failed naming the key and the first status, and doesn't
 * run again.  Failures are logged; the request's reply is never changed.
 */
void	keel_idem_step_after(struct keel_req *req, enum keel_err er);

/* True when k is an acceptable key: 1..KEEL_IDEM_KEY_MAX printable ASCII. */
bool	 keel_idem_key_valid(const char *k);

#endif /* KEEL_IDEM_H */
