/* SPDX-License-Identifier: ISC */
/*
 * resource.c -- rows, pages and writes answered from a resource's tables.
 *
 * Each object is written straight into the reply buffer by the JSON
 * writer, column by column as the table says, no object per value.  A
 * column's text goes out as PostgreSQL gave it where JSON has the same
 * form (integers, JSON built by the statement), quoted and escaped
 * where it is a string.  Relations are loaded once per reply with one
 * = ANY($1) statement each (batch.c), for the rows about to be written,
 * never once per row.
 */
#include "config.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "keel/batch.h"
#include "keel/cache.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/page.h"
#include "keel/resource.h"
#include "keel/router.h"

/* The related rows of one reply, a batch per relation of the resource. */
struct refs {
	struct keel_batch	 b[KEEL_RES_MAXRELS];
	size_t			 n;
};

void
keel_res_param(struct keel_db_params *p, const struct keel_value *v)
{
	if (!v->present || v->is_null) {
		keel_db_param_null(p);
		return;
	}
	switch (v->type) {
	case KEEL_FIELD_INT:
	case KEEL_FIELD_ID:
		keel_db_param_int(p, v->i);
		break;
	case KEEL_FIELD_BOOL:
		keel_db_param_bool(p, v->b);
		break;
	case KEEL_FIELD_ARRAY:
		/* The text lives as long as the parsed body. */
		keel_db_param_text(p, json_object_to_json_string_ext(v->o,
		    JSON_C_TO_STRING_PLAIN));
		break;
	default:
		keel_db_param_text(p, v->s);
		break;
	}
}

/* True when rows' first ncols columns are cols, by name. */
static bool
cols_fit(const char *what, const struct keel_col *cols, size_t ncols,
    const struct keel_rows *rows)
{
	const char	*got;
	size_t		 i;

	if (keel_rows_ncols(rows) < ncols) {
		keel_log_error("resource %s: the statement returns %zu "
		    "columns, the table has %zu", what, keel_rows_ncols(rows),
		    ncols);
		return false;
	}
	for (i = 0; i < ncols; i++)
		if (strcmp(got = keel_rows_name(rows, i), cols[i].name) != 0) {
			keel_log_error("resource %s: column %zu is \"%s\" in "
			    "the statement, \"%s\" in the table", what, i, got,
			    cols[i].name);
			return false;
		}
	return true;
}

bool
keel_res_check(const struct keel_resource *res, const struct keel_rows *rows)
{
	return cols_fit(res->name, res->cols, res->ncols, rows);
}

/* col's member: its name and v (NULL: SQL NULL) as its type says. */
static void
write_col(struct keel_jw *w, const struct keel_col *col, const char *v)
{
	size_t	 n = col->len != 0 ? col->len : strlen(col->name);

	if (v == NULL) {
		keel_jw_member(w, col->name, n, NULL, 0, true);
		return;
	}
	switch (col->type) {
	case KEEL_COL_INT:
	case KEEL_COL_JSON:
		/* PostgreSQL's text of both is JSON's. */
		keel_jw_member(w, col->name, n, v, strlen(v), true);
		break;
	case KEEL_COL_BOOL:
		if (v[0] == 't')
			keel_jw_member(w, col->name, n, "true", 4, true);
		else
			keel_jw_member(w, col->name, n, "false", 5, true);
		break;
	default:
		keel_jw_member(w, col->name, n, v, strlen(v), false);
		break;
	}
}

/* The members of row r, cols over rows' first columns. */
static void
write_cols(struct keel_jw *w, const struct keel_col *cols, size_t ncols,
    const struct keel_rows *rows, size_t r)
{
	size_t	 i;

	for (i = 0; i < ncols; i++)
		write_col(w, &cols[i], keel_rows_value(rows, r, i));
}

/* Row r's JSON column col parsed, when it holds an array (caller puts). */
static struct json_object *
array_at(const struct keel_rows *rows, size_t r, size_t col)
{
	struct json_object	*o;
	const char		*v = keel_rows_value(rows, r, col);
	char			 err[160];

	if (v == NULL || keel_json_parse(v, strlen(v), &o, err,
	    sizeof(err)) != KEEL_OK)
		return NULL;
	if (!json_object_is_type(o, json_type_array)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* The id an array element names by its member name, or 0 for none. */
static int64_t
element_id(struct json_object *e, const char *name)
{
	struct json_object	*v;

	if (!json_object_is_type(e, json_type_object) ||
	    !json_object_object_get_ex(e, name, &v) ||
	    !json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_int64(v);
}

void
keel_res_write(struct keel_jw *w, const struct keel_resource *res,
    const struct keel_rows *rows, size_t r)
{
	keel_jw_obj_open(w);
	write_cols(w, res->cols, res->ncols, rows, r);
	keel_jw_obj_close(w);
}

static void
refs_free(struct refs *refs)
{
	size_t	 i;

	for (i = 0; i < refs->n; i++)
		keel_batch_free(&refs->b[i]);
	refs->n = 0;
}

/*
 * Loads the related rows of rows[at[0..n)] (at NULL: rows 0..n): one
 * statement per relation, whatever n is.
 */
static enum keel_err
refs_load(struct keel_req *req, const struct keel_resource *res,
    const struct keel_rows *rows, const struct keel_page_window *win,
    size_t n, struct refs *refs)
{
	const struct keel_relation	*rel;
	struct keel_db_params		 p;
	struct json_object		*arr;
	size_t				 i, j, k, r, col;
	enum keel_err			 er;

	memset(refs, 0, sizeof(*refs));
	for (k = 0; k < res->nrels && k < KEEL_RES_MAXRELS; k++) {
		rel = &res->rels[k];
		keel_batch_init(&refs->b[k]);
		refs->n = k + 1;
		col = keel_rows_col(rows, rel->in != NULL ? rel->in : rel->id);
		if (col == KEEL_ROWS_NOCOL) {
			keel_log_error("resource %s: no column %s for %s",
			    res->name, rel->in != NULL ? rel->in : rel->id,
			    rel->name);
			return KEEL_EINTERNAL;
		}
		for (i = 0; i < n; i++) {
			r = win != NULL ? keel_page_at(win, i) : i;
			if (rel->in == NULL) {
				keel_batch_add(&refs->b[k],
				    keel_rows_int64(rows, r, col));
				continue;
			}
			if ((arr = array_at(rows, r, col)) == NULL)
				continue;
			for (j = 0; j < json_object_array_length(arr); j++)
				keel_batch_add(&refs->b[k], element_id(
				    json_object_array_get_idx(arr, j), rel->id));
			json_object_put(arr);
		}
		keel_db_params_init(&p);
		if (rel->load->caller)
			keel_db_param_int(&p, req->user != NULL ?
			    req->user->id : 0);
		if ((er = keel_batch_load_with(&refs->b[k], req->db,
		    &rel->load->q, &p)) != KEEL_OK)
			return er;
		if (keel_batch_rows(&refs->b[k]) != NULL &&
		    !cols_fit(rel->name, rel->load->cols, rel->load->ncols,
		    keel_batch_rows(&refs->b[k])))
			return KEEL_EINTERNAL;
	}
	return KEEL_OK;
}

/* rel's member: the row of b holding id, or null. */
static void
write_rel(struct keel_jw *w, const struct keel_relation *rel,
    const struct keel_batch *b, int64_t id)
{
	long	 at;

	keel_jw_key(w, rel->name);
	if ((at = keel_batch_find(b, id)) < 0) {
		keel_jw_null(w);
		return;
	}
	keel_jw_obj_open(w);
	write_cols(w, rel->load->cols, rel->load->ncols, keel_batch_rows(b),
	    (size_t)at);
	keel_jw_obj_close(w);
}

/*
 * Row r's JSON column col as a member, an array whose elements get the
 * relations that live in it (keel_relation's in); as it is when not an
 * array.
 */
static void
write_in(struct keel_jw *w, const struct keel_resource *res,
    const struct keel_rows *rows, size_t r, size_t col,
    const struct refs *refs)
{
	struct json_object	*arr, *e;
	size_t			 j, k;

	if ((arr = array_at(rows, r, col)) == NULL) {
		write_col(w, &res->cols[col], keel_rows_value(rows, r, col));
		return;
	}
	keel_jw_key(w, res->cols[col].name);
	keel_jw_arr_open(w);
	for (j = 0; j < json_object_array_length(arr); j++) {
		e = json_object_array_get_idx(arr, j);
		if (!json_object_is_type(e, json_type_object)) {
			keel_jw_obj(w, e);
			continue;
		}
		keel_jw_obj_open(w);
		json_object_object_foreach(e, key, val) {
			keel_jw_key(w, key);
			keel_jw_obj(w, val);
		}
		for (k = 0; k < refs->n; k++)
			if (res->rels[k].in != NULL &&
			    strcmp(res->rels[k].in, res->cols[col].name) == 0)
				write_rel(w, &res->rels[k], &refs->b[k],
				    element_id(e, res->rels[k].id));
		keel_jw_obj_close(w);
	}
	keel_jw_arr_close(w);
	json_object_put(arr);
}

/* True when a relation of res lives in column name (keel_relation). */
static bool
holds_rels(const struct keel_resource *res, const char *name)
{
	size_t	 k;

	for (k = 0; k < res->nrels && k < KEEL_RES_MAXRELS; k++)
		if (res->rels[k].in != NULL && strcmp(res->rels[k].in,
		    name) == 0)
			return true;
	return false;
}

/* Row r as res's object, each relation's row or null embedded. */
static void
write_object(struct keel_jw *w, const struct keel_resource *res,
    const struct keel_rows *rows, size_t r, const struct refs *refs)
{
	const struct keel_relation	*rel;
	size_t				 i, k;

	keel_jw_obj_open(w);
	for (i = 0; i < res->ncols; i++) {
		if (holds_rels(res, res->cols[i].name))
			write_in(w, res, rows, r, i, refs);
		else
			write_col(w, &res->cols[i], keel_rows_value(rows, r,
			    i));
	}
	for (k = 0; k < refs->n; k++) {
		rel = &res->rels[k];
		if (rel->in == NULL)
			write_rel(w, rel, &refs->b[k], keel_rows_int64(rows,
			    r, keel_rows_col(rows, rel->id)));
	}
	keel_jw_obj_close(w);
}

enum keel_err
keel_res_reply_row(struct keel_req *req, const struct keel_resource *res,
    int status, const struct keel_rows *rows)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	struct refs	 refs;
	enum keel_err	 er;

	if (keel_rows_count(rows) == 0) {
		keel_http_reply_error(req, 404, "not_found",
		    keel_arena_printf(req->arena, "no such %s", res->name));
		return KEEL_OK;
	}
	if (!keel_res_check(res, rows))
		return KEEL_EINTERNAL;
	if ((er = refs_load(req, res, rows, NULL, 1, &refs)) == KEEL_OK) {
		keel_jw_init(&w, &b);
		write_object(&w, res, rows, 0, &refs);
		keel_http_reply_buf(req, status, &b);
	}
	refs_free(&refs);
	keel_buf_free(&b);
	return er;
}

enum keel_err
keel_res_get(struct keel_req *req, const struct keel_resource *res,
    const struct keel_query *q, struct keel_db_params *p)
{
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	/* One row takes no parameter: none may shape its cache key. */
	if (keel_http_query_known(req, NULL, 0, NULL) != KEEL_STEP_GO)
		return KEEL_OK;
	if ((er = keel_db_query(req->db, q, p, &rows)) == KEEL_OK)
		er = keel_res_reply_row(req, res, 200, rows);
	keel_rows_free(rows);
	return er;
}

/* The page's rows, their relations and the page object, as the reply. */
static enum keel_err
reply_page(struct keel_req *req, const struct keel_resource *res,
    const struct keel_page *pg, const struct keel_rows *rows,
    const struct keel_page_window *win)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	struct refs	 refs;
	size_t		 i;
	enum keel_err	 er;

	if ((er = refs_load(req, res, rows, win, win->n, &refs)) != KEEL_OK)
		goto out;
	/* Written as it is read: no object per value (json.h). */
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "data");
	keel_jw_arr_open(&w);
	for (i = 0; i < win->n; i++)
		write_object(&w, res, rows, keel_page_at(win, i), &refs);
	keel_jw_arr_close(&w);
	keel_jw_key(&w, "page");
	keel_page_write(&w, pg, win->next, win->prev);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
out:
	refs_free(&refs);
	keel_buf_free(&b);
	return er;
}

enum keel_step
keel_res_filters(struct keel_req *req, const struct keel_list *l,
    struct keel_value *vals)
{
	static const char *const paging[] = { "limit", "after", "before",
	    NULL };

	if (keel_http_query_known(req, l->filters, l->nfilters, paging) !=
	    KEEL_STEP_GO)
		return KEEL_STEP_REPLIED;
	return keel_http_query_fields(req, l->filters, l->nfilters, vals);
}

void
keel_res_param_owner(struct keel_req *req, struct keel_db_params *p,
    unsigned roles)
{
	if (req->user != NULL && (req->user->role & roles) != 0)
		keel_db_param_int(p, req->user->id);
	else
		keel_db_param_null(p);
}

void
keel_res_params_own(struct keel_req *req, struct keel_db_params *p)
{
	assert(req->user != NULL);
	keel_db_params_init(p);
	keel_db_param_int(p, keel_http_param_int(req, "id"));
	keel_db_param_int(p, req->user->id);
}

/*
 * The user l's cursors are bound to (page.h): the caller when the list
 * shows them their own rows only (l->owner, as keel_res_param_owner()
 * passes it), so their cursor is foreign to anyone else.  Never when the
 * route's cached answers are shared between callers: a cursor in a
 * cached body must serve whoever the body is served to.  0: anyone's.
 */
static int64_t
list_owner(const struct keel_req *req, const struct keel_list *l)
{
	const struct keel_route_cache	*c;

	if (l->owner == 0 || req->user == NULL ||
	    (req->user->role & l->owner) == 0)
		return 0;
	c = req->route != NULL ? &req->route->cache : NULL;
	if (c != NULL && (c->ns != NULL || c->ns_of != NULL) && !c->per_user)
		return 0;
	return req->user->id;
}

/* The list's parameters after the cursor's: filters, then the owner. */
static void
list_params(struct keel_req *req, const struct keel_list *l,
    const struct keel_value *vals, struct keel_db_params *p)
{
	size_t	 i;

	for (i = 0; i < l->nfilters; i++)
		keel_res_param(p, &vals[i]);
	if (l->owner != 0)
		keel_res_param_owner(req, p, l->owner);
}

enum keel_err
keel_res_list(struct keel_req *req, const struct keel_resource *res,
    const struct keel_list *l, const struct keel_value *vals)
{
	struct keel_value	 own[KEEL_DB_MAXPARAMS];
	struct keel_db_params	 p;
	struct keel_page	 pg;
	struct keel_page_window	 win;
	struct keel_rows	*rows = NULL;
	size_t			 keys[2], i;
	bool			 first;
	enum keel_err		 er;

	assert(l->nfilters + 4 <= KEEL_DB_MAXPARAMS);
	if (vals == NULL) {
		if (keel_res_filters(req, l, own) != KEEL_STEP_GO)
			return KEEL_OK;
		vals = own;
	}
	if (keel_page_from_request_owner(req, l->scope, list_owner(req, l), 2,
	    &pg) != KEEL_STEP_GO)
		return KEEL_OK;
	first = pg.dir == KEEL_PAGE_FIRST;
	keel_db_params_init(&p);
	keel_db_param_text(&p, first ? NULL : pg.keys[0]);
	keel_db_param_text(&p, first ? NULL : pg.keys[1]);
	/* One row more than asked tells whether another page follows. */
	keel_db_param_int(&p, pg.limit + 1);
	list_params(req, l, vals, &p);
	if ((er = keel_db_query(req->db, pg.dir == KEEL_PAGE_BEFORE ?
	    &l->before : &l->after, &p, &rows)) != KEEL_OK)
		goto out;
	if (!keel_res_check(res, rows)) {
		er = KEEL_EINTERNAL;
		goto out;
	}
	for (i = 0; i < 2; i++)
		if ((keys[i] = keel_rows_col(rows, l->keys[i])) ==
		    KEEL_ROWS_NOCOL) {
			keel_log_error("resource %s: no sort key %s", res->name,
			    l->keys[i]);
			er = KEEL_EINTERNAL;
			goto out;
		}
	keel_page_window(req, &pg, l->scope, rows, keys, 2, &win);
	er = reply_page(req, res, &pg, rows, &win);
out:
	keel_rows_free(rows);
	return er;
}

enum keel_err
keel_res_failed(struct keel_req *req, const struct keel_resource *res,
    enum keel_err er)
{
	const char	*cons = keel_db_constraint(req->db);
	size_t		 i;

	if (er != KEEL_ECONFLICT && er != KEEL_EINVAL)
		return er;
	for (i = 0; i < res->ncons; i++)
		if (strcmp(res->cons[i].name, cons) == 0) {
			keel_http_reply_problem(req, &res->cons[i].reply);
			return KEEL_OK;
		}
	if (er != KEEL_EINVAL)
		return er;
	keel_http_reply_error(req, 422, "validation_failed",
	    keel_arena_printf(req->arena, "the %s breaks a data rule",
	    res->name));
	return KEEL_OK;
}

void
keel_res_job(struct keel_res_write *w, int64_t id)
{
	assert(w->njobs < KEEL_RES_MAXJOBS);
	w->jobs[w->njobs++] = id;
}

/* w's statement and what in_tx adds, committed or not at all. */
static enum keel_err
change_tx(struct keel_req *req, const struct keel_resource *res,
    struct keel_res_write *w, struct keel_rows **rows)
{
	enum keel_err	 er;

	if (w->in_tx != NULL && (er = keel_db_begin(req->db)) != KEEL_OK)
		return er;
	if ((er = keel_db_query(req->db, w->q, w->p, rows)) != KEEL_OK) {
		keel_db_rollback(req->db);
		return keel_res_failed(req, res, er);
	}
	if (keel_rows_count(*rows) == 0 && w->none != NULL) {
		keel_db_rollback(req->db);
		return w->none(req, w);
	}
	if (keel_rows_count(*rows) == 0 || w->in_tx == NULL)
		return KEEL_OK;
	if ((er = w->in_tx(req, *rows, w)) != KEEL_OK ||
	    keel_http_replied(req) || (er = keel_db_commit(req->db)) !=
	    KEEL_OK) {
		keel_db_rollback(req->db);
		return er;
	}
	if (w->reply != NULL) {
		keel_rows_free(*rows);
		*rows = w->reply;
		w->reply = NULL;
	}
	return KEEL_OK;
}

/*
 * Where the row w created lives (RFC 9110 §15.3.2: a 201 names its new
 * resource), into *uri: w->location and the row's id, found by its name
 * in the result, as the table names it.  *uri stays NULL when w has no
 * location; a row without an id is the table's fault, logged.
 */
static enum keel_err
change_location(struct keel_req *req, const struct keel_resource *res,
    const struct keel_res_write *w, const struct keel_rows *rows,
    const char **uri)
{
	size_t	 col;

	*uri = NULL;
	if (w->location == NULL)
		return KEEL_OK;
	if ((col = keel_rows_col(rows, "id")) != KEEL_ROWS_NOCOL)
		*uri = keel_http_location_of(req->arena, w->location,
		    keel_rows_value(rows, 0, col));
	if (*uri == NULL) {
		keel_log_error("resource %s: no positive integer id for its "
		    "Location", res->name);
		return KEEL_EINTERNAL;
	}
	return KEEL_OK;
}

enum keel_err
keel_res_change(struct keel_req *req, const struct keel_resource *res,
    struct keel_res_write *w)
{
	struct keel_rows	*rows = NULL;
	const char		*uri = NULL;
	enum keel_err		 er;

	w->njobs = 0;
	w->reply = NULL;
	if ((er = change_tx(req, res, w, &rows)) != KEEL_OK ||
	    keel_http_replied(req))
		goto out;
	if (keel_rows_count(rows) > 0) {
		/* Committed: every cached read may be old now. */
		if (res->ns != NULL)
			keel_cache_invalidate(req->cache, res->ns);
		if (w->njobs > 0)
			(void)keel_outbox_push(req->db, req->redis, w->jobs,
			    w->njobs);
		/* Before the reply: a table without an id answers 500,
		 * not a 201 that points nowhere. */
		if ((er = change_location(req, res, w, rows, &uri)) !=
		    KEEL_OK)
			goto out;
	}
	if ((er = keel_res_reply_row(req, res, w->status, rows)) == KEEL_OK &&
	    uri != NULL)
		keel_http_location(req, uri);
out:
	/* No row: the rollback of a transaction that changed nothing. */
	keel_db_rollback(req->db);
	keel_rows_free(rows);
	keel_rows_free(w->reply);	/* set by an in_tx that failed */
	w->reply = NULL;
	return er;
}

enum keel_err
keel_res_delete(struct keel_req *req, const struct keel_resource *res,
    const struct keel_query *q, struct keel_db_params *p)
{
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	if ((er = keel_db_query(req->db, q, p, &rows)) != KEEL_OK)
		er = keel_res_failed(req, res, er);
	else if (keel_rows_count(rows) == 0)
		keel_http_reply_error(req, 404, "not_found",
		    keel_arena_printf(req->arena, "no such %s", res->name));
	else {
		if (res->ns != NULL)
			keel_cache_invalidate(req->cache, res->ns);
		keel_http_reply_empty(req, 204);
	}
	keel_rows_free(rows);
	return er;
}
