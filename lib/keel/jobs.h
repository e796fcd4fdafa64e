/* SPDX-License-Identifier: ISC */
/* jobs.h -- the outbox and the Redis Streams queues (DESIGN.md, "Jobs"). */
#ifndef KEEL_JOBS_H
#define KEEL_JOBS_H

#include <stdint.h>

#include "keel/err.h"

struct keel_db;

/*
 * Writes a job into the outbox table.  Call it inside the transaction of
 * the change that causes the job (keel_db_begin ... keel_db_commit), so
 * the job exists if and only if the change does.  payload is a JSON
 * object's text; idem_key names the job uniquely forever (a second add
 * with the same key is KEEL_ECONFLICT).  *id (may be NULL) gets the
 * outbox row's id.
 */
enum keel_err	keel_jobs_outbox_add(struct keel_db *db, const char *queue,
		    const char *kind, const char *payload, const char *idem_key,
		    int64_t *id);

#endif /* KEEL_JOBS_H */
