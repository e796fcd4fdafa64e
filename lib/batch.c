/* SPDX-License-Identifier: ISC */
/*
 * batch.c -- load many rows by id in one query.
 *
 * Ids are deduplicated as they are added (a page of contracts names the
 * same car many times), sent as one bigint[] parameter, and the rows that
 * come back are indexed by id with a sorted permutation, so each lookup
 * is a binary search and nothing depends on the order PostgreSQL chose.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "keel/batch.h"
#include "keel/db.h"
#include "keel/mem.h"

void
keel_batch_init(struct keel_batch *b)
{
	memset(b, 0, sizeof(*b));
}

void
keel_batch_add(struct keel_batch *b, int64_t id)
{
	size_t	 i;

	if (id < 1)
		return;
	/* Pages are at most 100 rows: a linear scan beats a hash here. */
	for (i = 0; i < b->nids; i++)
		if (b->ids[i] == id)
			return;
	if (b->nids == b->cap) {
		b->cap = b->cap == 0 ? 16 : b->cap * 2;
		b->ids = keel_realloc(b->ids, b->cap * sizeof(*b->ids));
	}
	b->ids[b->nids++] = id;
}

char *
keel_batch_array(const int64_t *ids, size_t n)
{
	struct keel_buf	 buf = { NULL, 0, 0 };
	size_t		 i;

	keel_buf_putc(&buf, '{');
	for (i = 0; i < n; i++)
		keel_buf_printf(&buf, "%s%lld", i > 0 ? "," : "",
		    (long long)ids[i]);
	keel_buf_putc(&buf, '}');
	return buf.data;
}

/* qsort has no context argument: the rows being sorted ride here. */
static const struct keel_rows *sort_rows;

static int
by_id(const void *a, const void *b)
{
	int64_t	 x, y;

	x = keel_rows_int64(sort_rows, *(const size_t *)a, 0);
	y = keel_rows_int64(sort_rows, *(const size_t *)b, 0);
	return x < y ? -1 : x > y;
}

enum keel_err
keel_batch_load(struct keel_batch *b, struct keel_db *db,
    const struct keel_query *q)
{
	return keel_batch_load_with(b, db, q, NULL);
}

enum keel_err
keel_batch_load_with(struct keel_batch *b, struct keel_db *db,
    const struct keel_query *q, const struct keel_db_params *more)
{
	struct keel_db_params	 p;
	char			*arr;
	size_t			 i, n;
	enum keel_err		 er;

	keel_rows_free(b->rows);
	b->rows = NULL;
	free(b->order);
	b->order = NULL;
	if (b->nids == 0)
		return KEEL_OK;
	arr = keel_batch_array(b->ids, b->nids);
	keel_db_params_init(&p);
	keel_db_param_text(&p, arr);
	/* more's strings and numbers stay where they are: it outlives q. */
	for (i = 0; more != NULL && i < more->n; i++)
		keel_db_param_text(&p, more->v[i]);
	er = keel_db_query(db, q, &p, &b->rows);
	free(arr);
	if (er != KEEL_OK)
		return er;
	n = keel_rows_count(b->rows);
	b->order = keel_calloc(n + 1, sizeof(*b->order));
	for (i = 0; i < n; i++)
		b->order[i] = i;
	sort_rows = b->rows;
	qsort(b->order, n, sizeof(*b->order), by_id);
	sort_rows = NULL;
	return KEEL_OK;
}

long
keel_batch_find(const struct keel_batch *b, int64_t id)
{
	size_t	 lo = 0, hi, mid;
	int64_t	 v;

	if (b->rows == NULL)
		return -1;
	hi = keel_rows_count(b->rows);
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		v = keel_rows_int64(b->rows, b->order[mid], 0);
		if (v == id)
			return (long)b->order[mid];
		if (v < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

const struct keel_rows *
keel_batch_rows(const struct keel_batch *b)
{
	return b->rows;
}

void
keel_batch_free(struct keel_batch *b)
{
	if (b == NULL)
		return;
	keel_rows_free(b->rows);
	free(b->order);
	free(b->ids);
	memset(b, 0, sizeof(*b));
}
