/* SPDX-License-Identifier: ISC */
/* resource.h -- a resource as tables; rows, pages and writes alike. */
#ifndef KEEL_RESOURCE_H
#define KEEL_RESOURCE_H

/*
 * An app describes its resource with data -- the columns of its JSON
 * object, the constraints whose violations clients hear about, the
 * related rows it embeds -- and answers with the helpers below, so every
 * app writes rows, pages, errors and writes the same way, through one
 * JSON writer (json.h's keel_jw_*).
 *
 * Statements name each result column as its JSON member ("is_archived
 * AS \"isArchived\"", KEEL_SQL_TIME below), in the order of the column
 * table; the table says how each is written.  Every reply checks the
 * result's names against the table, so a statement and its table that
 * drift apart fail loudly (500, logged) on the first request of a test,
 * instead of shifting fields.  Columns a statement returns past the
 * table's are for the handler (keel_rows_col()) and never written.
 */
#include <stddef.h>
#include <stdint.h>

#include "keel/db.h"
#include "keel/err.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/router.h"

/*
 * A timestamptz as API.md's RFC 3339 UTC text with microseconds, named
 * for its JSON member: KEEL_SQL_TIME("created_at", "createdAt").  (A
 * different name than the column's keeps ORDER BY created_at on the
 * column, and on its index.)  PostgreSQL sends it as a timestamp in
 * DateStyle ISO; db.c writes it as "2026-12-06T02:30:00.000000Z" when it
 * copies the result (keel_db_time_rfc3339): to_char() cost the server
 * about a microsecond a value, most of a page's execution.
 */
#define KEEL_SQL_TIME(expr, name) "(" expr " AT TIME ZONE 'UTC') AS \"" \
	name "\""

/* How a column's text becomes JSON. */
enum keel_col_type {
	KEEL_COL_TEXT,		/* a string; SQL NULL is null */
	KEEL_COL_INT,		/* an integer */
	KEEL_COL_BOOL,		/* true or false */
	KEEL_COL_JSON,		/* JSON PostgreSQL made (json_agg...), as is */
	KEEL_COL_TYPE__MAX
};

/* One member of the object: result column i is the table's row i. */
struct keel_col {
	const char		*name;	/* JSON member = result column name */
	size_t			 len;	/* strlen(name); 0: not known */
	enum keel_col_type	 type;
};
/* A row of a column table: KEEL_COL("createdAt", TEXT) (a literal). */
#define KEEL_COL(n, t)	{ .name = (n), .len = sizeof("" n) - 1, \
	.type = KEEL_COL_ ## t }

/* A constraint whose violation is the client's to hear (API.md codes). */
struct keel_constraint {
	const char		*name;	/* PostgreSQL's constraint name */
	struct keel_http_error	 reply;
};

/*
 * A loader (the seeds' DataLoader): rows by id for a whole reply in one
 * statement (batch.h).  q takes the ids as $1::bigint[] and returns the
 * id first; cols say how each row is written.  With caller, q also
 * takes the caller's user id as $2 (0 for no session): rows of the
 * caller's own, such as their attempts at the tests a reply names.
 */
struct keel_loader {
	struct keel_query	 q;
	const struct keel_col	*cols;
	size_t			 ncols;
	bool			 caller;
};

/*
 * A related row embedded in each object: "car": {...}, or null.  With
 * in set, the ids are inside a JSON column instead: each element of
 * that column's array (objects, as a KEEL_FIELD_ARRAY stored them) names
 * its row by its member id, and gets the row as its member name, or
 * null: "items": [{"testId": 3, ..., "test": {...}}].  Either way one
 * statement per relation loads every row a reply needs.
 */
struct keel_relation {
	const char			*name;	/* the member: "car" */
	const char			*id;	/* its id's column: "carId";
						   with in, the element's
						   member: "testId" */
	const struct keel_loader	*load;
	const char			*in;	/* a KEEL_COL_JSON column
						   holding an array, or NULL */
};

#define KEEL_RES_MAXRELS	4

struct keel_resource {
	const char			*name;	/* "car": "no such car" */
	const char			*ns;	/* cache namespace its writes
						   invalidate; NULL: none */
	const struct keel_col		*cols;
	size_t				 ncols;
	const struct keel_constraint	*cons;	/* may be NULL */
	size_t				 ncons;
	const struct keel_relation	*rels;	/* may be NULL */
	size_t				 nrels;
};

/*
 * A keyset-paginated list (API.md "Lists"; page.h), newest first over
 * (created_at, id), which an index serves as a range scan.  Its two
 * statements take the cursor's keys as $1, $2 (NULL on the first page)
 * and the number of rows to fetch as $3; then its filters, from the
 * query string by the filters table, in the table's order from $4 on;
 * then, when owner is set, the caller's id if their role is one of
 * owner's, else NULL (a customer sees their own contracts: "AND ($9 IS
 * NULL OR customer_id = $9)").  Each is a SELECT ... WHERE <filters>
 * ending in KEEL_SQL_AFTER (newest first: the first page and after a
 * cursor) or KEEL_SQL_BEFORE (oldest first: before a cursor).  keys
 * name the result columns the cursors carry.  A cursor is signed for
 * scope and the request's filters (page.h), and, when the caller's id
 * went in as the owner, for the caller: another user's is a 400.  (Not
 * on a route whose cached answers all callers share: a cursor in them
 * must work for each.)
 */
struct keel_list {
	const char		*scope;		/* cursors: "cars" */
	struct keel_query	 after;
	struct keel_query	 before;
	const char		*keys[2];	/* { "createdAt", "id" } */
	const struct keel_field	*filters;	/* may be NULL */
	size_t			 nfilters;
	unsigned		 owner;		/* KEEL_ROLE_* bits, or 0 */
};
#define KEEL_SQL_AFTER "AND ($1::timestamptz IS NULL OR " \
	"(created_at, id) < ($1::timestamptz, $2::bigint)) " \
	"ORDER BY created_at DESC, id DESC LIMIT $3"
#define KEEL_SQL_BEFORE "AND (created_at, id) > ($1::timestamptz, " \
	"$2::bigint) ORDER BY created_at ASC, id ASC LIMIT $3"

/*
 * Adds the value v extracted by a field table (json.h) as the next
 * parameter: its text, integer or boolean, an array as its JSON text,
 * or SQL NULL when absent.
 */
void		 keel_res_param(struct keel_db_params *p,
		    const struct keel_value *v);

/*
 * Writes row r of rows as res's object: its columns only (no relations)
 * -- for a handler whose reply wraps the object.  rows must fit res
 * (keel_res_check).
 */
void		 keel_res_write(struct keel_jw *w,
		    const struct keel_resource *res,
		    const struct keel_rows *rows, size_t r);
/* True when rows' first columns are res's, by name; else logs why. */
bool		 keel_res_check(const struct keel_resource *res,
		    const struct keel_rows *rows);

/*
 * Replies status with the one row of rows as res's object, relations
 * embedded, or 404 not_found "no such <name>" when rows has none.  The
 * reply's own errors are returned (KEEL_OK once replied).
 */
enum keel_err	 keel_res_reply_row(struct keel_req *req,
		    const struct keel_resource *res, int status,
		    const struct keel_rows *rows);

/*
 * Runs q with p (a lookup of at most one row) and replies as above; a
 * query string (which one row never takes) is a 400 naming it.
 */
enum keel_err	 keel_res_get(struct keel_req *req,
		    const struct keel_resource *res,
		    const struct keel_query *q, struct keel_db_params *p);

/*
 * Adds who may see a row owned by someone: the caller's id if their role
 * is one of roles' (they see their own), else NULL (they see any).
 */
void		 keel_res_param_owner(struct keel_req *req,
		    struct keel_db_params *p, unsigned roles);

/*
 * Starts p for a row of the caller's own: $1 the route's {id}, $2 the
 * caller's id (the route lets only signed-in users through).
 */
void		 keel_res_params_own(struct keel_req *req,
		    struct keel_db_params *p);

/*
 * A step: l's filters from the query into vals; 400 naming each bad one,
 * and each parameter that is neither a filter nor limit/after/before.
 */
enum keel_step	 keel_res_filters(struct keel_req *req,
		    const struct keel_list *l, struct keel_value *vals);

/*
 * Replies with one page of list l: reads limit/after/before from the
 * query (400 on a bad one), runs the list's statement with the cursor,
 * the filters -- vals from keel_res_filters(), or, when vals is NULL,
 * read here -- and the owner, and writes {"data": [...], "page": {...}},
 * each object's relations loaded by one query per relation.
 */
enum keel_err	 keel_res_list(struct keel_req *req,
		    const struct keel_resource *res,
		    const struct keel_list *l, const struct keel_value *vals);

/*
 * Maps a failed write's error to its reply: a violated constraint of
 * res->cons as its row says; another check or foreign key (KEEL_EINVAL)
 * 422 "the <name> breaks a data rule".  KEEL_OK once replied, else er
 * (lib answers it: 409, 503...).
 */
enum keel_err	 keel_res_failed(struct keel_req *req,
		    const struct keel_resource *res, enum keel_err er);

/*
 * What a write does in its transaction after its statement returned its
 * row: more statements, outbox jobs (keel_res_job), ending sessions.
 * KEEL_OK commits; anything else rolls the whole write back and is its
 * answer (a reply made here stands; else lib answers 503 or 500).
 */
struct keel_res_write;
typedef enum keel_err keel_res_tx_fn(struct keel_req *req,
		    const struct keel_rows *rows, struct keel_res_write *w);
/* Explains, with its reply, a write whose statement changed no row. */
typedef enum keel_err keel_res_none_fn(struct keel_req *req,
		    struct keel_res_write *w);

#define KEEL_RES_MAXJOBS	4

/* One write answered the same way everywhere (keel_res_change). */
struct keel_res_write {
	const struct keel_query	*q;	/* RETURNING the resource's columns */
	struct keel_db_params	*p;
	int			 status;	/* of the reply: 200, 201 */
	const char		*location;	/* a create's collection,
					   "/api/cars/": the reply's
					   Location is it and the row's
					   "id" (the route that GETs it);
					   NULL: none */
	keel_res_tx_fn		*in_tx;	/* NULL: q runs on its own */
	keel_res_none_fn	*none;	/* q returned no row: reply why
					   (NULL: 404 "no such <name>") */
	void			*arg;		/* for in_tx and none */
	struct keel_rows	*reply;		/* in_tx may set it: the row
					   replied instead of q's, read in
					   the transaction after q's lock
					   (keel_res_change frees it) */
	int64_t			 jobs[KEEL_RES_MAXJOBS]; /* outbox rows
					   in_tx queued, pushed after the
					   commit (keel_res_job) */
	size_t			 njobs;
};

/*
 * Runs w->q with w->p (in one transaction with w->in_tx when it is set);
 * a failure goes through keel_res_failed(), no row through w->none or a
 * 404; else it
 * commits, pushes w's jobs to their queues (best effort: the relay pushes
 * what fails), invalidates res->ns and replies w->status with the row
 * (in_tx's w->reply when it set one), with w->location and the row's
 * "id" column as its Location when w->location is set (a row without a
 * positive integer id there is a 500, logged: a table to fix).
 */
enum keel_err	 keel_res_change(struct keel_req *req,
		    const struct keel_resource *res, struct keel_res_write *w);

/*
 * Runs q, a DELETE ... RETURNING, with p: 204 when it removed a row
 * (res->ns invalidated), else 404 "no such <name>".  Errors are
 * keel_res_failed()'s.
 */
enum keel_err	 keel_res_delete(struct keel_req *req,
		    const struct keel_resource *res,
		    const struct keel_query *q, struct keel_db_params *p);

/* From in_tx: outbox row id is pushed once the write commits. */
void		 keel_res_job(struct keel_res_write *w, int64_t id);

#endif /* KEEL_RESOURCE_H */
