/* SPDX-License-Identifier: ISC */
/*
 * jobs.c -- the job outbox.
 *
 * A job is a row of the outbox table first (sql/006_outbox.sql), written in
 * the caller's transaction, so no job is lost between the database and the
 * queue: the relay moves rows left behind onto their Redis stream.
 */
#include "config.h"

#include <stddef.h>

#include "keel/db.h"
#include "keel/jobs.h"

static const struct keel_query q_outbox_add = { "jobs_outbox_add",
	"INSERT INTO outbox (queue, kind, payload, idempotency_key) "
	"VALUES ($1, $2, $3::jsonb, $4) RETURNING id", 4, KEEL_DB_PRIMARY };

enum keel_err
keel_jobs_outbox_add(struct keel_db *db, const char *queue, const char *kind,
    const char *payload, const char *idem_key, int64_t *id)
{
	struct keel_rows	*rows = NULL;
	const char		*params[4];
	enum keel_err		 er;

	params[0] = queue;
	params[1] = kind;
	params[2] = payload;
	params[3] = idem_key;
	if ((er = keel_db_query(db, &q_outbox_add, params, &rows)) == KEEL_OK &&
	    id != NULL)
		*id = keel_rows_int64(rows, 0, 0);
	keel_rows_free(rows);
	return er;
}
