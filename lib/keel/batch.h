/* SPDX-License-Identifier: ISC */
/* batch.h -- load many rows by id in one query (the DataLoader idea). */
#ifndef KEEL_BATCH_H
#define KEEL_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"

struct keel_db;
struct keel_db_params;
struct keel_query;
struct keel_rows;

/*
 * A list that embeds related rows collects their ids first, loads them
 * all with one statement, then looks each up: one extra query per
 * relation, not one per row (the seeds' N+1).  The statement takes the
 * ids as $1, a bigint[] ("WHERE id = ANY($1::bigint[])"), and returns
 * the id in column 0.
 */
struct keel_batch {
	int64_t			*ids;		/* distinct, in add order */
	size_t			 nids, cap;
	struct keel_rows	*rows;		/* after load; owned */
	size_t			*order;		/* rows sorted by id */
};

/* An empty batch; or memset to 0. */
void		 keel_batch_init(struct keel_batch *b);
/* Adds id (ids < 1, such as a NULL reference's 0, are ignored). */
void		 keel_batch_add(struct keel_batch *b, int64_t id);
/*
 * Runs q once with every id added (no query at all when there is none).
 * Errors are keel_db_query()'s.
 */
enum keel_err	 keel_batch_load(struct keel_batch *b, struct keel_db *db,
		    const struct keel_query *q);
/*
 * The same for a statement that takes more parameters after the ids:
 * more's $1.. become its $2.. (more may be NULL).
 */
enum keel_err	 keel_batch_load_with(struct keel_batch *b, struct keel_db *db,
		    const struct keel_query *q,
		    const struct keel_db_params *more);
/* The row holding id after a load, or -1 when none came back. */
long		 keel_batch_find(const struct keel_batch *b, int64_t id);
/* The loaded rows (NULL before a load); owned by b. */
const struct keel_rows *keel_batch_rows(const struct keel_batch *b);
/* Releases everything b holds; b may be NULL. */
void		 keel_batch_free(struct keel_batch *b);

/*
 * The PostgreSQL array literal of ids[0..n), "{1,2,3}", in a string the
 * caller frees.
 */
char		*keel_batch_array(const int64_t *ids, size_t n);

#endif /* KEEL_BATCH_H */
