/* SPDX-License-Identifier: ISC */
/*
 * flashcards.c -- a user's own flashcards and their SM-2 reviews (API.md
 * "Exam prep").
 *
 * Every statement is scoped to the caller (user_id = the session's
 * user), so another user's card is a 404, never a 403: its existence is
 * theirs.  Nothing is cached: the cards are private, and the shared
 * memcached namespaces are keyed by path, not by user.
 *
 * A review reads the card's schedule, lets lib/srs.c compute the next
 * one, and writes it in one UPDATE that holds only if the row is still
 * the version read (xmin): two reviews of one card racing can't both
 * start from the same state, the loser reads again (a few times, then
 * 409).  The E-Factor travels in hundredths, so the real column stores
 * exactly what srs.c computed.
 */
#include "config.h"

#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/serve.h"
#include "keel/srs.h"

/* The card object: every statement returns these, in this order. */
#define CARD_COLS "id, front, back, topic, " \
	"round(ease::numeric, 2)::float8 AS ease, " \
	"interval_days AS \"intervalDays\", repetitions, " \
	KEEL_SQL_TIME("due_at", "dueAt") ", " \
	KEEL_SQL_TIME("created_at", "createdAt") ", " \
	KEEL_SQL_TIME("updated_at", "updatedAt")

static const struct keel_col card_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("front", TEXT), KEEL_COL("back", TEXT),
	KEEL_COL("topic", TEXT), KEEL_COL("ease", JSON),
	KEEL_COL("intervalDays", INT), KEEL_COL("repetitions", INT),
	KEEL_COL("dueAt", TEXT), KEEL_COL("createdAt", TEXT),
	KEEL_COL("updatedAt", TEXT),
};

static const struct keel_resource card_res = { .name = "flashcard",
	.cols = card_cols, .ncols = KEEL_NELEM(card_cols),
};

enum card_field { CARD_FRONT, CARD_BACK, CARD_TOPIC, CARD__MAX };

static const struct keel_field card_fields[CARD__MAX] = {
	[CARD_FRONT] = { .name = "front", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 2000 },
	[CARD_BACK] = { .name = "back", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 2000 },
	[CARD_TOPIC] = { .name = "topic", .type = KEEL_FIELD_STRING,
	    .nullable = true, .min = 1, .max = 100 },
};

static const struct keel_field review_fields[] = {
	{ .name = "grade", .type = KEEL_FIELD_INT, .required = true,
	    .min = 0, .max = KEEL_SRS_GRADE_MAX },
};

/* The list's filter, $4; the caller is $5 (.owner: every role). */
static const struct keel_field card_filters[] = {
	{ .name = "topic", .type = KEEL_FIELD_STRING, .min = 1, .max = 100 },
};

#define CARDS_LIST "SELECT " CARD_COLS " FROM flashcards " \
	"WHERE ($4::text IS NULL OR topic = $4) AND user_id = $5 "

static const struct keel_list cards_list_rows = { .scope = "flashcards",
	.after = { .name = "flashcards_list_after", .sql = CARDS_LIST
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "flashcards_list_before", .sql = CARDS_LIST
	    KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.filters = card_filters, .nfilters = KEEL_NELEM(card_filters),
	.owner = KEEL_ACCESS_USER,
};

/*
 * Due cards, the longest overdue first: keyset over (due_at, id), which
 * flashcards_user_due_idx serves, in the opposite sense of the other
 * lists (a page before a cursor reads backwards; page.c turns it).
 */
#define CARDS_DUE "SELECT " CARD_COLS " FROM flashcards " \
	"WHERE user_id = $4 AND due_at <= now() "

static const struct keel_list cards_due_rows = { .scope = "flashcards-due",
	.after = { .name = "flashcards_due_after", .sql = CARDS_DUE
	    "AND ($1::timestamptz IS NULL OR (due_at, id) > "
	    "($1::timestamptz, $2::bigint)) ORDER BY due_at, id LIMIT $3",
	    .target = KEEL_DB_READ },
	.before = { .name = "flashcards_due_before", .sql = CARDS_DUE
	    "AND (due_at, id) < ($1::timestamptz, $2::bigint) "
	    "ORDER BY due_at DESC, id DESC LIMIT $3",
	    .target = KEEL_DB_READ },
	.keys = { "dueAt", "id" },
	.owner = KEEL_ACCESS_USER,
};

/* $1: the card, $2: the caller, in every statement on one card. */
static const struct keel_query q_card_get = { .name = "flashcards_get",
	.sql = "SELECT " CARD_COLS " FROM flashcards "
	"WHERE id = $1 AND user_id = $2", .target = KEEL_DB_READ };

static const struct keel_query q_card_insert = {
	.name = "flashcards_insert",
	.sql = "INSERT INTO flashcards (user_id, front, back, topic) "
	"VALUES ($1, $2, $3, $4) RETURNING " CARD_COLS,
	.target = KEEL_DB_PRIMARY };

/* $5: whether topic was given ($6, which may be null: no topic). */
static const struct keel_query q_card_update = {
	.name = "flashcards_update",
	.sql = "UPDATE flashcards SET front = COALESCE($3, front), "
	"back = COALESCE($4, back), "
	"topic = CASE WHEN $5::boolean THEN $6 ELSE topic END, "
	"updated_at = now() WHERE id = $1 AND user_id = $2 "
	"RETURNING " CARD_COLS, .target = KEEL_DB_PRIMARY };

static const struct keel_query q_card_delete = {
	.name = "flashcards_delete",
	.sql = "DELETE FROM flashcards WHERE id = $1 AND user_id = $2 "
	"RETURNING id", .target = KEEL_DB_PRIMARY };

/* The schedule a review starts from, and the row version it read. */
static const struct keel_query q_card_schedule = {
	.name = "flashcards_schedule",
	.sql = "SELECT round(ease::numeric * 100)::integer AS ease, "
	"interval_days, repetitions, xmin::text AS version FROM flashcards "
	"WHERE id = $1 AND user_id = $2", .target = KEEL_DB_PRIMARY };

/* $3 ease in hundredths, $4 interval (days), $5 reps, $6 the version. */
static const struct keel_query q_card_review = {
	.name = "flashcards_review",
	.sql = "UPDATE flashcards SET ease = ($3::integer / 100.0)::real, "
	"interval_days = $4::integer, repetitions = $5::integer, "
	"due_at = now() + make_interval(days => $4::integer), "
	"updated_at = now() WHERE id = $1 AND user_id = $2 "
	"AND xmin = $6::xid RETURNING " CARD_COLS,
	.target = KEEL_DB_PRIMARY };

/* Reads that lose this many races in a row answer 409. */
#define REVIEW_TRIES	3

static enum keel_err
flashcards_list(struct keel_req *req)
{
	return keel_res_list(req, &card_res, &cards_list_rows, NULL);
}

static enum keel_err
flashcards_due(struct keel_req *req)
{
	return keel_res_list(req, &card_res, &cards_due_rows, NULL);
}

static enum keel_err
flashcards_get(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_res_params_own(req, &p);
	return keel_res_get(req, &card_res, &q_card_get, &p);
}

static enum keel_err
flashcards_create(struct keel_req *req)
{
	struct keel_value	 v[CARD__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_card_insert, .p = &p,
	    .status = 201, .location = "/api/flashcards/" };
	size_t			 i;

	if (keel_http_body_fields(req, card_fields, CARD__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_db_params_init(&p);
	keel_db_param_int(&p, req->user->id);
	for (i = 0; i < CARD__MAX; i++)
		keel_res_param(&p, &v[i]);
	return keel_res_change(req, &card_res, &w);
}

static enum keel_err
flashcards_patch(struct keel_req *req)
{
	struct keel_value	 v[CARD__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_card_update, .p = &p,
	    .status = 200 };

	if (keel_http_body_fields(req, card_fields, CARD__MAX,
	    KEEL_FIELDS_SOME, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_res_params_own(req, &p);
	keel_res_param(&p, &v[CARD_FRONT]);
	keel_res_param(&p, &v[CARD_BACK]);
	keel_db_param_bool(&p, v[CARD_TOPIC].present);
	keel_res_param(&p, &v[CARD_TOPIC]);
	return keel_res_change(req, &card_res, &w);
}

static enum keel_err
flashcards_delete(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_res_params_own(req, &p);
	return keel_res_delete(req, &card_res, &q_card_delete, &p);
}

/*
 * One try of a review: the schedule read, the next one computed, the
 * UPDATE if the row is still the one read.  *lost is set when it was
 * not (nothing replied then).
 */
static enum keel_err
review_try(struct keel_req *req, int64_t grade, bool *lost)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL, *done = NULL;
	struct keel_srs		 s;
	enum keel_err		 er;

	*lost = false;
	keel_res_params_own(req, &p);
	if ((er = keel_db_query(req->db, &q_card_schedule, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	if (keel_rows_count(rows) == 0) {
		keel_http_reply_error(req, 404, "not_found",
		    "no such flashcard");
		goto out;
	}
	s.ease = (int)keel_rows_int64(rows, 0, 0);
	s.interval = (int)keel_rows_int64(rows, 0, 1);
	s.reps = (int)keel_rows_int64(rows, 0, 2);
	if (!keel_srs_review(&s, grade)) {
		/* The grade was checked: the stored schedule is broken. */
		er = KEEL_EINTERNAL;
		goto out;
	}
	keel_res_params_own(req, &p);
	keel_db_param_int(&p, s.ease);
	keel_db_param_int(&p, s.interval);
	keel_db_param_int(&p, s.reps);
	keel_db_param_text(&p, keel_rows_value(rows, 0, 3));
	if ((er = keel_db_query(req->db, &q_card_review, &p, &done)) !=
	    KEEL_OK) {
		er = keel_res_failed(req, &card_res, er);
		goto out;
	}
	if (keel_rows_count(done) == 0)
		*lost = true;
	else
		er = keel_res_reply_row(req, &card_res, 200, done);
out:
	keel_rows_free(done);
	keel_rows_free(rows);
	return er;
}

static enum keel_err
flashcards_review(struct keel_req *req)
{
	struct keel_value	 v[1];
	enum keel_err		 er;
	bool			 lost;
	int			 i;

	if (keel_http_body_fields(req, review_fields, 1, KEEL_FIELDS_ALL,
	    v) != KEEL_STEP_GO)
		return KEEL_OK;
	for (i = 0; i < REVIEW_TRIES; i++)
		if ((er = review_try(req, v[0].i, &lost)) != KEEL_OK || !lost)
			return er;
	keel_http_reply_error(req, 409, "conflict", "the flashcard was "
	    "reviewed at the same time by another request; try again");
	return KEEL_OK;
}

/*
 * Owner-private: any signed-in user, on their own cards only.  The due
 * list comes before {id:int}, which would not match "due" anyway.
 */
static const struct keel_route flashcards_routes[] = {
	{ .method = "GET", .pattern = "/api/flashcards",
	    .handler = flashcards_list, .access = KEEL_ACCESS_USER,
	    .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/flashcards",
	    .handler = flashcards_create, .access = KEEL_ACCESS_USER },
	{ .method = "GET", .pattern = "/api/flashcards/due",
	    .handler = flashcards_due, .access = KEEL_ACCESS_USER,
	    .query = KEEL_QUERY_HANDLER },
	{ .method = "GET", .pattern = "/api/flashcards/{id:int}",
	    .handler = flashcards_get, .access = KEEL_ACCESS_USER },
	{ .method = "PATCH", .pattern = "/api/flashcards/{id:int}",
	    .handler = flashcards_patch, .access = KEEL_ACCESS_USER },
	{ .method = "DELETE", .pattern = "/api/flashcards/{id:int}",
	    .handler = flashcards_delete, .access = KEEL_ACCESS_USER },
	{ .method = "POST", .pattern = "/api/flashcards/{id:int}/review",
	    .handler = flashcards_review, .access = KEEL_ACCESS_USER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "flashcards",
	    .routes = flashcards_routes,
	    .nroutes = KEEL_NELEM(flashcards_routes) };

	return keel_serve(argc, argv, &app);
}
