/* SPDX-License-Identifier: ISC */
/*
 * tests.c -- exam-prep tests, and starting an attempt at one (API.md
 * "Exam prep").
 *
 * A test is a row of tests and its questions in order, test_questions'
 * rows.  Students and customers see published tests only (another is a
 * 404, as if it did not exist) and never a question's answer or
 * explanation; staff and admins see every test, answers included.  So
 * the answer depends on the caller's role, and nothing here is cached:
 * a staff view must never be served to a student.
 *
 * A write is one transaction: the test's row, then (when questionIds is
 * given) its questions replaced, positions from the array's order, so a
 * test never shows half of an edit.  A published test has at least one
 * question: publishing an empty test, or emptying a published one, is a
 * 422 and changes nothing.  Writes of one test are serialised by its
 * row: every write updates (so locks) it before touching its questions,
 * and what the rule counts is read after that lock, never from the
 * UPDATE's own snapshot, which predates any wait for it.  The questions
 * named are held FOR SHARE while they are checked, so an archive racing
 * the write either comes first (the write is a 422) or waits for it.
 *
 * Starting an attempt copies onto the attempt the test's question ids
 * (sql/010_attempt_questions.sql) and fixes each question as the student
 * is shown it, with its answer and explanation (sql/016_attempt_shown.sql):
 * the attempt is graded and reviewed against them whatever later happens
 * to the test or to the question bank.  That copy is a row of
 * attempt_snapshots shared by every attempt shown the same versions of
 * the same questions (sql/019_attempt_snapshots.sql); the attempt holds
 * its id.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "keel/batch.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/serve.h"
#include "keel/text.h"

#define TEST_QUESTIONS_MAX	200	/* questionIds per test */

/*
 * The test object.  questionIds is the test's questions in order; a
 * write returns the ids it is about to store ($n, a bigint[]), since its
 * RETURNING can't see the rows the same transaction writes next.
 */
#define TEST_COLS_HEAD "t.id, t.title, t.subject, " \
	"t.duration_minutes AS \"durationMinutes\", t.published, "
#define TEST_COLS_TAIL ", " KEEL_SQL_TIME("t.created_at", "createdAt") \
	", " KEEL_SQL_TIME("t.updated_at", "updatedAt")
#define TEST_QIDS "(SELECT COALESCE(json_agg(tq.question_id " \
	"ORDER BY tq.position), '[]') FROM test_questions tq " \
	"WHERE tq.test_id = t.id)"
#define TEST_COLS TEST_COLS_HEAD TEST_QIDS " AS \"questionIds\"" \
	TEST_COLS_TAIL

static const struct keel_col test_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("title", TEXT),
	KEEL_COL("subject", TEXT), KEEL_COL("durationMinutes", INT),
	KEEL_COL("published", BOOL), KEEL_COL("questionIds", JSON),
	KEEL_COL("createdAt", TEXT), KEEL_COL("updatedAt", TEXT),
};

/* One test adds its questions; answers only where $2 (staff) is true. */
static const struct keel_col test_full_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("title", TEXT),
	KEEL_COL("subject", TEXT), KEEL_COL("durationMinutes", INT),
	KEEL_COL("published", BOOL), KEEL_COL("questionIds", JSON),
	KEEL_COL("createdAt", TEXT), KEEL_COL("updatedAt", TEXT),
	KEEL_COL("questions", JSON),
};

static const struct keel_resource test_res = { .name = "test",
	.cols = test_cols, .ncols = KEEL_NELEM(test_cols) };
static const struct keel_resource test_full_res = { .name = "test",
	.cols = test_full_cols, .ncols = KEEL_NELEM(test_full_cols) };

/* What POST /api/tests/{id}/attempts answers. */
static const struct keel_col attempt_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("testId", INT),
	KEEL_COL("startedAt", TEXT), KEEL_COL("expiresAt", TEXT),
};

static const struct keel_resource attempt_res = { .name = "test",
	.cols = attempt_cols, .ncols = KEEL_NELEM(attempt_cols) };

enum test_field {
	TEST_TITLE, TEST_SUBJECT, TEST_DURATION, TEST_QUESTIONS,
	TEST_PUBLISHED, TEST__MAX
};

/* Each of questionIds: an id (the table's one unnamed field). */
static const struct keel_field test_question_id = { .type = KEEL_FIELD_ID };

static const struct keel_field test_fields[TEST__MAX] = {
	[TEST_TITLE] = { .name = "title", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 200,
	    .check = keel_text_one_line, .check_msg = "must be one line, "
	    "without control characters" },
	[TEST_SUBJECT] = { .name = "subject", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 100,
	    .check = keel_text_one_line, .check_msg = "must be one line, "
	    "without control characters" },
	[TEST_DURATION] = { .name = "durationMinutes",
	    .type = KEEL_FIELD_INT, .required = true, .min = 1, .max = 600 },
	[TEST_QUESTIONS] = { .name = "questionIds", .type = KEEL_FIELD_ARRAY,
	    .max = TEST_QUESTIONS_MAX, .of = &test_question_id, .nof = 1 },
	[TEST_PUBLISHED] = { .name = "published", .type = KEEL_FIELD_BOOL },
};

enum test_filter { FILTER_SUBJECT, FILTER_PUBLISHED, FILTER__MAX };

static const struct keel_field test_filters[FILTER__MAX] = {
	[FILTER_SUBJECT] = { .name = "subject", .type = KEEL_FIELD_STRING,
	    .min = 1, .max = 100 },
	[FILTER_PUBLISHED] = { .name = "published", .type = KEEL_FIELD_BOOL },
};

/*
 * $4 subject, $5 published, $6 the caller's id when they are a student
 * or a customer (who see published tests only), else NULL.  Newest first
 * over tests_page_idx.
 */
#define TESTS_LIST "SELECT " TEST_COLS " FROM tests t " \
	"WHERE ($4::text IS NULL OR t.subject = $4) " \
	"AND ($5::boolean IS NULL OR t.published = $5) " \
	"AND ($6::bigint IS NULL OR t.published) "

static const struct keel_list tests_list_rows = { .scope = "tests",
	.after = { .name = "tests_list_after", .sql = TESTS_LIST
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "tests_list_before", .sql = TESTS_LIST
	    KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.filters = test_filters, .nfilters = FILTER__MAX,
	.owner = KEEL_ROLE_STUDENT | KEEL_ROLE_CUSTOMER,
};

/* $2: the caller is staff (every test; answers shown). */
static const struct keel_query q_test_get = { .name = "tests_get",
	.sql = "SELECT " TEST_COLS ", (SELECT COALESCE(json_agg("
	"jsonb_build_object('id', q.id, 'subject', q.subject, "
	"'topic', q.topic, 'difficulty', q.difficulty, 'body', q.body, "
	"'options', q.options) || CASE WHEN $2::boolean "
	"THEN jsonb_build_object('answer', q.answer, "
	"'explanation', q.explanation) ELSE '{}'::jsonb END "
	"ORDER BY tq.position), '[]') FROM test_questions tq "
	"JOIN questions q ON q.id = tq.question_id "
	"WHERE tq.test_id = t.id) AS questions "
	"FROM tests t WHERE t.id = $1 AND (t.published OR $2::boolean)",
	.target = KEEL_DB_READ };

/* $6: the question ids about to be stored ('{}' for none). */
static const struct keel_query q_test_insert = { .name = "tests_insert",
	.sql = "INSERT INTO tests AS t (title, subject, duration_minutes, "
	"published, created_by) VALUES ($1, $2, $3::integer, "
	"COALESCE($4::boolean, false), $5) RETURNING " TEST_COLS_HEAD
	"to_json($6::bigint[]) AS \"questionIds\"" TEST_COLS_TAIL,
	.target = KEEL_DB_PRIMARY };

/*
 * $6: the new question ids, or NULL to keep them (then questionIds is
 * NULL here, and the reply is q_test_now's).
 */
static const struct keel_query q_test_update = { .name = "tests_update",
	.sql = "UPDATE tests AS t SET title = COALESCE($2, title), "
	"subject = COALESCE($3, subject), "
	"duration_minutes = COALESCE($4::integer, duration_minutes), "
	"published = COALESCE($5::boolean, published), updated_at = now() "
	"WHERE t.id = $1 RETURNING " TEST_COLS_HEAD
	"to_json($6::bigint[]) AS \"questionIds\"" TEST_COLS_TAIL,
	.target = KEEL_DB_PRIMARY };

/*
 * The test as it is now: a statement of its own, run once the write's
 * UPDATE holds the test's row, so it sees the questions a write that
 * held the row before committed (the UPDATE's own subqueries would read
 * its snapshot, taken before it waited).
 */
static const struct keel_query q_test_now = { .name = "tests_now",
	.sql = "SELECT " TEST_COLS " FROM tests t WHERE t.id = $1",
	.target = KEEL_DB_PRIMARY };

/*
 * The first of the ids that is not a question in the bank (archived),
 * the others held FOR SHARE until the write commits: an archive waits
 * for it, and one that committed while this waited is seen (the lock
 * rechecks the row as it is now).  When no id is missing, the NOT IN has
 * read each of held's rows, so each is locked; a missing one is a 422,
 * rolled back.
 */
static const struct keel_query q_test_unknown = {
	.name = "tests_unknown_question",
	.sql = "WITH held AS MATERIALIZED (SELECT q.id FROM questions q "
	"WHERE q.id = ANY($1::bigint[]) AND NOT q.is_archived FOR SHARE) "
	"SELECT x FROM unnest($1::bigint[]) WITH ORDINALITY AS u(x, n) "
	"WHERE x NOT IN (SELECT id FROM held) ORDER BY u.n LIMIT 1",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_test_clear = { .name = "tests_clear",
	.sql = "DELETE FROM test_questions WHERE test_id = $1",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_test_fill = { .name = "tests_fill",
	.sql = "INSERT INTO test_questions (test_id, question_id, position) "
	"SELECT $1, u.x, u.n - 1 FROM unnest($2::bigint[]) "
	"WITH ORDINALITY AS u(x, n)", .target = KEEL_DB_PRIMARY };

/*
 * A published test's questions, in order: their ids, and the key of the
 * snapshot of them as shown -- sha256 over each one's id and revision
 * (sql/019_attempt_snapshots.sql), which reads no question's text.
 */
#define ATTEMPT_KEY "SELECT t.id, t.duration_minutes, s.ids, s.key " \
	"FROM tests t CROSS JOIN LATERAL (SELECT " \
	"COALESCE(array_agg(q.id ORDER BY tq.position), '{}') AS ids, " \
	"sha256(convert_to(COALESCE(string_agg(q.id || ':' || q.revision, " \
	"',' ORDER BY tq.position), ''), 'UTF8')) AS key " \
	"FROM test_questions tq JOIN questions q ON q.id = tq.question_id " \
	"WHERE tq.test_id = t.id) s WHERE t.id = $1 AND t.published"

/*
 * Test k's questions as the student is shown them, each with its answer
 * and explanation (attempts.c's ATTEMPT_SHOWN reads this shape, and
 * builds it alike from the bank for an attempt without it).  Read in
 * the statement's one snapshot, as k was, so it is the versions k's key
 * names.
 */
#define ATTEMPT_BUILD "(SELECT COALESCE(jsonb_agg(jsonb_build_object(" \
	"'id', q.id, 'body', q.body, 'options', q.options, " \
	"'answer', q.answer, 'explanation', q.explanation) " \
	"ORDER BY tq.position), '[]') FROM test_questions tq " \
	"JOIN questions q ON q.id = tq.question_id WHERE tq.test_id = k.id)"

/*
 * A published test only; its questions, in order, fixed on the attempt:
 * their ids, and a reference to the snapshot of them as shown, which
 * every attempt shown the same versions shares (5 MB at most, once, not
 * per start).  The snapshot is built only when no row has its key yet;
 * a start that races another to make it finds the other's row through
 * ON CONFLICT, which under READ COMMITTED sees rows committed after the
 * statement began (a lookup would not), and takes its id from there.
 * One statement, so one round trip; it expires durationMinutes after it
 * started.
 */
static const struct keel_query q_attempt_start = {
	.name = "tests_attempt_start",
	.sql = "WITH k AS MATERIALIZED (" ATTEMPT_KEY "), "
	"made AS (INSERT INTO attempt_snapshots AS x (key, shown) "
	"SELECT k.key, " ATTEMPT_BUILD " FROM k WHERE NOT EXISTS "
	"(SELECT FROM attempt_snapshots o WHERE o.key = k.key) "
	"ON CONFLICT (key) DO UPDATE SET key = x.key RETURNING x.id) "
	"INSERT INTO test_attempts (test_id, user_id, started_at, "
	"expires_at, question_ids, snapshot_id) SELECT k.id, $2, now(), "
	"now() + make_interval(mins => k.duration_minutes), k.ids, "
	"COALESCE((SELECT id FROM made), (SELECT o.id FROM "
	"attempt_snapshots o WHERE o.key = k.key)) FROM k "
	"RETURNING id, test_id AS \"testId\", "
	KEEL_SQL_TIME("started_at", "startedAt") ", "
	KEEL_SQL_TIME("expires_at", "expiresAt"),
	.target = KEEL_DB_PRIMARY };

static bool
tests_staff(const struct keel_req *req)
{
	return (req->user->role & KEEL_ACCESS_STAFF) != 0;
}

static enum keel_err
tests_list(struct keel_req *req)
{
	return keel_res_list(req, &test_res, &tests_list_rows, NULL);
}

static enum keel_err
tests_get(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	keel_db_param_bool(&p, tests_staff(req));
	return keel_res_get(req, &test_full_res, &q_test_get, &p);
}

/* What a write learned from its body, for its transaction. */
struct test_write {
	const char	*ids;		/* "{1,2}", or NULL: not given */
	size_t		 nids;
	bool		 published_given;
	bool		 keeps;		/* a PATCH that keeps the questions */
};

/*
 * A step: questionIds (ids already, by the field table) as a PostgreSQL
 * array literal into tw, from the request's arena; 422 when one repeats.
 */
static enum keel_step
tests_ids(struct keel_req *req, const struct keel_value *v,
    struct test_write *tw)
{
	int64_t		*ids;
	char		*arr;
	size_t		 i, j, n;

	tw->ids = NULL;
	tw->nids = 0;
	if (!v->present)
		return KEEL_STEP_GO;
	n = json_object_array_length(v->o);
	ids = keel_calloc(n + 1, sizeof(*ids));
	for (i = 0; i < n; i++) {
		ids[i] = json_object_get_int64(json_object_array_get_idx(v->o,
		    i));
		for (j = 0; j < i; j++)
			if (ids[j] == ids[i]) {
				free(ids);
				keel_http_reply_field(req, keel_arena_printf(
				    req->arena, "questionIds[%zu]", i),
				    "names a question already in the list");
				return KEEL_STEP_REPLIED;
			}
	}
	arr = keel_batch_array(ids, n);
	tw->ids = keel_arena_strdup(req->arena, arr);
	tw->nids = n;
	free(arr);
	free(ids);
	return KEEL_STEP_GO;
}

/*
 * In the write's transaction, after the test's row (locked now): the
 * questions replaced when given (each one in the bank), and a published
 * test left with one at least.  A PATCH that keeps the questions reads
 * the test again, now, for both the rule and its reply.  A 422 replied
 * here rolls the whole write back.
 */
static enum keel_err
tests_questions_tx(struct keel_req *req, const struct keel_rows *rows,
    struct keel_res_write *w)
{
	const struct test_write	*tw = w->arg;
	struct keel_db_params	 p;
	struct keel_rows	*bad = NULL;
	const char		*id, *kept;
	bool			 published, empty;
	enum keel_err		 er = KEEL_OK;

	id = keel_rows_value(rows, 0, keel_rows_col(rows, "id"));
	published = keel_rows_bool(rows, 0, keel_rows_col(rows, "published"));
	empty = tw->nids == 0;
	if (tw->keeps) {
		keel_db_params_init(&p);
		keel_db_param_text(&p, id);
		if ((er = keel_db_query(req->db, &q_test_now, &p, &w->reply)) !=
		    KEEL_OK)
			goto out;
		if (keel_rows_count(w->reply) != 1) {
			er = KEEL_EINTERNAL;	/* the row is ours, locked */
			goto out;
		}
		/* TEST_QIDS' text of no question. */
		kept = keel_rows_value(w->reply, 0,
		    keel_rows_col(w->reply, "questionIds"));
		empty = strcmp(kept, "[]") == 0;
	}
	if (empty && published) {
		keel_http_reply_field(req, tw->published_given ? "published" :
		    "questionIds", tw->published_given ? "a test without "
		    "questions can't be published" : "a published test keeps "
		    "one question at least");
		goto out;
	}
	if (tw->ids == NULL)
		goto out;
	keel_db_params_init(&p);
	keel_db_param_text(&p, tw->ids);
	if ((er = keel_db_query(req->db, &q_test_unknown, &p, &bad)) !=
	    KEEL_OK)
		goto out;
	if (keel_rows_count(bad) > 0) {
		keel_http_reply_field(req, "questionIds", keel_arena_printf(
		    req->arena, "no such question: %s",
		    keel_rows_value(bad, 0, 0)));
		goto out;
	}
	keel_db_params_init(&p);
	keel_db_param_text(&p, id);
	if ((er = keel_db_query(req->db, &q_test_clear, &p, NULL)) != KEEL_OK)
		goto out;
	keel_db_param_text(&p, tw->ids);
	er = keel_db_query(req->db, &q_test_fill, &p, NULL);
out:
	keel_rows_free(bad);
	return er;
}

static enum keel_err
tests_create(struct keel_req *req)
{
	struct keel_value	 v[TEST__MAX];
	struct keel_db_params	 p;
	struct test_write	 tw;
	struct keel_res_write	 w = { .q = &q_test_insert, .p = &p,
	    .status = 201, .location = "/api/tests/",
	    .in_tx = tests_questions_tx, .arg = &tw };
	size_t			 i;

	if (keel_http_body_fields(req, test_fields, TEST__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO ||
	    tests_ids(req, &v[TEST_QUESTIONS], &tw) != KEEL_STEP_GO)
		return KEEL_OK;
	tw.published_given = v[TEST_PUBLISHED].present;
	tw.keeps = false;
	keel_db_params_init(&p);
	for (i = TEST_TITLE; i <= TEST_DURATION; i++)
		keel_res_param(&p, &v[i]);
	keel_res_param(&p, &v[TEST_PUBLISHED]);
	keel_db_param_int(&p, req->user->id);
	keel_db_param_text(&p, tw.ids != NULL ? tw.ids : "{}");
	return keel_res_change(req, &test_res, &w);
}

static enum keel_err
tests_patch(struct keel_req *req)
{
	struct keel_value	 v[TEST__MAX];
	struct keel_db_params	 p;
	struct test_write	 tw;
	struct keel_res_write	 w = { .q = &q_test_update, .p = &p,
	    .status = 200, .in_tx = tests_questions_tx, .arg = &tw };
	size_t			 i;

	if (keel_http_body_fields(req, test_fields, TEST__MAX,
	    KEEL_FIELDS_SOME, v) != KEEL_STEP_GO ||
	    tests_ids(req, &v[TEST_QUESTIONS], &tw) != KEEL_STEP_GO)
		return KEEL_OK;
	tw.published_given = v[TEST_PUBLISHED].present;
	tw.keeps = tw.ids == NULL;
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	for (i = TEST_TITLE; i <= TEST_DURATION; i++)
		keel_res_param(&p, &v[i]);
	keel_res_param(&p, &v[TEST_PUBLISHED]);
	keel_db_param_text(&p, tw.ids);
	return keel_res_change(req, &test_res, &w);
}

static enum keel_err
tests_attempt(struct keel_req *req)
{
	struct keel_db_params	 p;
	/* An attempt is read where attempts live, not under its test. */
	struct keel_res_write	 w = { .q = &q_attempt_start, .p = &p,
	    .status = 201, .location = "/api/attempts/" };

	/* The body, if any, says nothing: an attempt has no options. */
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	keel_db_param_int(&p, req->user->id);
	return keel_res_change(req, &attempt_res, &w);
}

/* Never cached: what a test shows depends on the caller's role. */
static const struct keel_route tests_routes[] = {
	{ .method = "GET", .pattern = "/api/tests", .handler = tests_list,
	    .access = KEEL_ACCESS_USER, .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/tests", .handler = tests_create,
	    .access = KEEL_ACCESS_STAFF },
	{ .method = "GET", .pattern = "/api/tests/{id:int}",
	    .handler = tests_get, .access = KEEL_ACCESS_USER },
	{ .method = "PATCH", .pattern = "/api/tests/{id:int}",
	    .handler = tests_patch, .access = KEEL_ACCESS_STAFF },
	{ .method = "POST", .pattern = "/api/tests/{id:int}/attempts",
	    .handler = tests_attempt, .access = KEEL_ROLE_STUDENT },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "tests",
	    .routes = tests_routes, .nroutes = KEEL_NELEM(tests_routes) };

	return keel_serve(argc, argv, &app);
}
