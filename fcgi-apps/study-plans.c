/* SPDX-License-Identifier: ISC */
/*
 * study-plans.c -- a user's own study plans (API.md "Exam prep").
 *
 * A plan is a title, an optional target date and up to 100 items
 * {topic, testId?, done}, stored as one jsonb array.  Every statement is
 * scoped to the caller, so another user's plan is a 404.  An item's
 * testId new to the plan must name a published test (the tests a student
 * can see), else 422 naming items[i].testId; one the plan already holds
 * stays acceptable after its test was unpublished, so the plan can still
 * be edited and its progress kept.  The write itself checks it, against
 * the items it read under the plan row's lock (a concurrent patch of the
 * same plan is waited for, and its items are the ones held), so a plan
 * is written whole or not at all.  Each item that names a test embeds it,
 * {"id", "title"} (null once the test is unpublished), loaded for a
 * whole reply -- a page of plans included -- by one = ANY($1) statement
 * (resource.h, a relation "in" the items column); and so does the
 * caller's latest submitted attempt at it, {"testId", "id", "score",
 * "submittedAt"} or null (the test attempts loader).  Nothing is cached:
 * the plans are private, and the shared namespaces are keyed by path.
 */
#include "config.h"

#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/serve.h"

#define PLAN_COLS "id, title, target_date::text AS \"targetDate\", items, " \
	KEEL_SQL_TIME("created_at", "createdAt") ", " \
	KEEL_SQL_TIME("updated_at", "updatedAt")

static const struct keel_col plan_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("title", TEXT),
	KEEL_COL("targetDate", TEXT), KEEL_COL("items", JSON),
	KEEL_COL("createdAt", TEXT), KEEL_COL("updatedAt", TEXT),
};

/* The tests loader: the tests a reply's items name, published only. */
static const struct keel_col test_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("title", TEXT),
};

static const struct keel_loader test_loader = {
	.q = { .name = "study_plans_tests", .sql = "SELECT id, title "
	    "FROM tests WHERE id = ANY($1::bigint[]) AND published",
	    .target = KEEL_DB_READ },
	.cols = test_cols, .ncols = KEEL_NELEM(test_cols),
};

/*
 * The test attempts loader: the caller's latest submitted attempt at
 * each test the reply's items name (the plan's progress), by the
 * (user_id, test_id) index.
 */
static const struct keel_col attempt_cols[] = {
	KEEL_COL("testId", INT), KEEL_COL("id", INT), KEEL_COL("score", INT),
	KEEL_COL("submittedAt", TEXT),
};

static const struct keel_loader attempt_loader = {
	.q = { .name = "study_plans_attempts", .sql = "SELECT DISTINCT ON "
	    "(test_id) test_id AS \"testId\", id, score, "
	    KEEL_SQL_TIME("submitted_at", "submittedAt") " FROM test_attempts "
	    "WHERE test_id = ANY($1::bigint[]) AND user_id = $2 AND "
	    "submitted_at IS NOT NULL ORDER BY test_id, submitted_at DESC, "
	    "id DESC", .target = KEEL_DB_READ },
	.cols = attempt_cols, .ncols = KEEL_NELEM(attempt_cols),
	.caller = true,
};

static const struct keel_relation plan_rels[] = {
	{ .name = "test", .id = "testId", .in = "items", .load = &test_loader },
	{ .name = "lastAttempt", .id = "testId", .in = "items",
	    .load = &attempt_loader },
};

static const struct keel_resource plan_res = { .name = "study plan",
	.cols = plan_cols, .ncols = KEEL_NELEM(plan_cols),
	.rels = plan_rels, .nrels = KEEL_NELEM(plan_rels),
};

#define PLAN_ITEMS_MAX	100

static const struct keel_field item_fields[] = {
	{ .name = "topic", .type = KEEL_FIELD_STRING, .required = true,
	    .min = 1, .max = 100 },
	{ .name = "testId", .type = KEEL_FIELD_ID, .nullable = true },
	{ .name = "done", .type = KEEL_FIELD_BOOL },
};

enum plan_field { PLAN_TITLE, PLAN_TARGET, PLAN_ITEMS, PLAN__MAX };

static const struct keel_field plan_fields[PLAN__MAX] = {
	[PLAN_TITLE] = { .name = "title", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 200 },
	[PLAN_TARGET] = { .name = "targetDate", .type = KEEL_FIELD_DATE,
	    .nullable = true },
	[PLAN_ITEMS] = { .name = "items", .type = KEEL_FIELD_ARRAY,
	    .max = PLAN_ITEMS_MAX, .of = item_fields,
	    .nof = KEEL_NELEM(item_fields) },
};

/*
 * The items as stored, from the validated array $n: members in a fixed
 * set, done false when absent, no testId when it was null.
 */
#define ITEMS(n) "(SELECT COALESCE(jsonb_agg(jsonb_strip_nulls(" \
	"jsonb_build_object('topic', e->'topic', 'testId', e->'testId', " \
	"'done', COALESCE(e->'done', 'false'))) ORDER BY i), '[]') " \
	"FROM jsonb_array_elements(" n ") WITH ORDINALITY AS x(e, i))"
/*
 * The positions (0-based) of the items of $n naming a test that is
 * neither one the items held (the plan's as stored; NULL: none) name nor
 * a published one.
 */
#define BAD_ITEMS(n, held) "SELECT i - 1 AS at FROM " \
	"jsonb_array_elements(" n ") WITH ORDINALITY AS x(e, i) WHERE " \
	"jsonb_typeof(e->'testId') = 'number' AND NOT COALESCE(" held \
	" @> jsonb_build_array(jsonb_build_object('testId', e->'testId')), " \
	"false) AND NOT EXISTS (SELECT FROM tests t WHERE " \
	"t.id = (e->>'testId')::bigint AND t.published)"

#define PLANS_LIST "SELECT " PLAN_COLS " FROM study_plans WHERE user_id = $4 "

static const struct keel_list plans_list_rows = { .scope = "study-plans",
	.after = { .name = "study_plans_list_after", .sql = PLANS_LIST
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "study_plans_list_before", .sql = PLANS_LIST
	    KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.owner = KEEL_ACCESS_USER,
};

/* $1: the plan, $2: the caller, in every statement on one plan. */
static const struct keel_query q_plan_get = { .name = "study_plans_get",
	.sql = "SELECT " PLAN_COLS " FROM study_plans "
	"WHERE id = $1 AND user_id = $2", .target = KEEL_DB_READ };

static const struct keel_query q_plan_insert = {
	.name = "study_plans_insert",
	.sql = "INSERT INTO study_plans (user_id, title, target_date, items) "
	"SELECT $1, $2, $3::date, " ITEMS("COALESCE($4::jsonb, '[]')")
	" WHERE NOT EXISTS (" BAD_ITEMS("$4::jsonb", "NULL::jsonb")
	") RETURNING "
	PLAN_COLS, .target = KEEL_DB_PRIMARY };

/*
 * $4: whether targetDate was given ($5, null clears it).  The items held
 * are read under the row's lock (held): after a concurrent write of the
 * plan commits, FOR UPDATE returns the row as it left it -- a test that
 * write dropped is new again here.  (Checked against the row the UPDATE
 * scans, the items were those from before that write.)
 */
static const struct keel_query q_plan_update = {
	.name = "study_plans_update",
	.sql = "WITH held AS (SELECT items FROM study_plans "
	"WHERE id = $1 AND user_id = $2 FOR UPDATE) "
	"UPDATE study_plans SET title = COALESCE($3, title), "
	"target_date = CASE WHEN $4::boolean THEN $5::date "
	"ELSE target_date END, "
	"items = CASE WHEN $6::jsonb IS NULL THEN items ELSE "
	ITEMS("$6::jsonb") " END, updated_at = now() "
	"WHERE id = $1 AND user_id = $2 AND NOT EXISTS ("
	BAD_ITEMS("$6::jsonb", "(SELECT items FROM held)") ") RETURNING "
	PLAN_COLS, .target = KEEL_DB_PRIMARY };

static const struct keel_query q_plan_delete = {
	.name = "study_plans_delete",
	.sql = "DELETE FROM study_plans WHERE id = $1 AND user_id = $2 "
	"RETURNING id", .target = KEEL_DB_PRIMARY };

/* $1: the plan (NULL for a create), $2: the caller, $3: the items. */
static const struct keel_query q_plan_bad_item = {
	.name = "study_plans_bad_item",
	.sql = BAD_ITEMS("$3::jsonb", "(SELECT items FROM study_plans "
	"WHERE id = $1 AND user_id = $2)") " ORDER BY i LIMIT 1",
	.target = KEEL_DB_PRIMARY };

static enum keel_err
plans_list(struct keel_req *req)
{
	return keel_res_list(req, &plan_res, &plans_list_rows, NULL);
}

static enum keel_err
plans_get(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_res_params_own(req, &p);
	return keel_res_get(req, &plan_res, &q_plan_get, &p);
}

/*
 * A step, after a write that changed nothing: 422 naming the first item
 * whose testId names no published test the plan (w's, the caller's) did
 * not hold already, when there is one.
 */
static enum keel_err
plans_bad_test(struct keel_req *req, struct keel_res_write *w)
{
	const struct keel_value	*items = w->arg;
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;

	if (!items->present)
		return KEEL_OK;
	if (w->status == 201) {
		/* A create: no plan yet, every testId is new. */
		keel_db_params_init(&p);
		keel_db_param_null(&p);
		keel_db_param_int(&p, req->user->id);
	} else
		keel_res_params_own(req, &p);
	keel_res_param(&p, items);
	if ((er = keel_db_query(req->db, &q_plan_bad_item, &p, &rows)) ==
	    KEEL_OK && keel_rows_count(rows) > 0)
		keel_http_reply_field(req, keel_arena_printf(req->arena,
		    "items[%s].testId", keel_rows_value(rows, 0, 0)),
		    "no such test");
	keel_rows_free(rows);
	return er;
}

/*
 * Nothing written: an item named a test that isn't there; else, for a
 * patch, no such plan of the caller's, and for a create, a test that was
 * unpublished between the write and this look.
 */
static enum keel_err
plans_unchanged(struct keel_req *req, struct keel_res_write *w)
{
	enum keel_err	 er;

	if ((er = plans_bad_test(req, w)) != KEEL_OK ||
	    keel_http_replied(req))
		return er;
	if (w->status == 201)
		keel_http_reply_error(req, 409, "conflict", "a test the plan "
		    "names changed meanwhile; try again");
	else
		keel_http_reply_error(req, 404, "not_found",
		    "no such study plan");
	return KEEL_OK;
}

static enum keel_err
plans_create(struct keel_req *req)
{
	struct keel_value	 v[PLAN__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_plan_insert, .p = &p,
	    .status = 201, .location = "/api/study-plans/",
	    .none = plans_unchanged, .arg = &v[PLAN_ITEMS] };
	size_t			 i;

	if (keel_http_body_fields(req, plan_fields, PLAN__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_db_params_init(&p);
	keel_db_param_int(&p, req->user->id);
	for (i = 0; i < PLAN__MAX; i++)
		keel_res_param(&p, &v[i]);
	return keel_res_change(req, &plan_res, &w);
}

static enum keel_err
plans_patch(struct keel_req *req)
{
	struct keel_value	 v[PLAN__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_plan_update, .p = &p,
	    .status = 200, .none = plans_unchanged, .arg = &v[PLAN_ITEMS] };

	if (keel_http_body_fields(req, plan_fields, PLAN__MAX,
	    KEEL_FIELDS_SOME, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_res_params_own(req, &p);
	keel_res_param(&p, &v[PLAN_TITLE]);
	keel_db_param_bool(&p, v[PLAN_TARGET].present);
	keel_res_param(&p, &v[PLAN_TARGET]);
	keel_res_param(&p, &v[PLAN_ITEMS]);
	return keel_res_change(req, &plan_res, &w);
}

static enum keel_err
plans_delete(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_res_params_own(req, &p);
	return keel_res_delete(req, &plan_res, &q_plan_delete, &p);
}

/* Owner-private: any signed-in user, on their own plans only. */
static const struct keel_route plans_routes[] = {
	{ .method = "GET", .pattern = "/api/study-plans",
	    .handler = plans_list, .access = KEEL_ACCESS_USER,
	    .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/study-plans",
	    .handler = plans_create, .access = KEEL_ACCESS_USER },
	{ .method = "GET", .pattern = "/api/study-plans/{id:int}",
	    .handler = plans_get, .access = KEEL_ACCESS_USER },
	{ .method = "PATCH", .pattern = "/api/study-plans/{id:int}",
	    .handler = plans_patch, .access = KEEL_ACCESS_USER },
	{ .method = "DELETE", .pattern = "/api/study-plans/{id:int}",
	    .handler = plans_delete, .access = KEEL_ACCESS_USER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "study-plans",
	    .routes = plans_routes, .nroutes = KEEL_NELEM(plans_routes) };

	return keel_serve(argc, argv, &app);
}
