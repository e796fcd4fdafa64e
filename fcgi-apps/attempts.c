/* SPDX-License-Identifier: ISC */
/*
 * attempts.c -- students' attempts at tests: submitting and grading,
 * and reading them back (API.md "Exam prep").
 *
 * An attempt is started by POST /api/tests/{id}/attempts (tests.c),
 * which fixes its questions as the student is shown them, each with its
 * answer and explanation (sql/016_attempt_shown.sql; a row of
 * attempt_snapshots the attempt names, shared by every attempt shown
 * the same, sql/019_attempt_snapshots.sql): an edit of the question bank
 * after the start changes neither the grade nor the review.  An attempt
 * without that copy (started before 016, or written by the demo seed or
 * a benchmark) is read from the bank as it is now (ATTEMPT_SHOWN).
 *
 * Submitting grades it on the server in one transaction: the attempt's
 * row is locked (SELECT ... FOR UPDATE), so of any number of submits
 * racing only the first finds it unsubmitted and the others wait for
 * it, then answer 409; the answers are checked against the attempt's
 * own questions as shown (a bad one is a 422 naming
 * "answers.<questionId>", and nothing is stored), the grade is stored,
 * and three jobs go into the outbox in the same transaction: the result
 * email, the leaderboard update and the notification.  They are pushed
 * to their queues after the commit (the relay pushes what that misses).
 * Past expiresAt an attempt still grades, flagged late.
 *
 * A student sees their own attempts only (another's is a 404); staff and
 * admins see everyone's.  Each attempt embeds its test's title, loaded
 * for a whole page with one = ANY($1) statement (batch.c).  Before it is
 * submitted an attempt shows its questions without answers; after, each
 * question's chosen option, the correct one (as it was when graded) and
 * its explanation.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/serve.h"
#include "keel/text.h"

#define ATTEMPT_ANSWERS_MAX	200	/* a test's questions at most */

#define ATTEMPT_COLS "a.id, a.test_id AS \"testId\", " \
	"a.user_id AS \"userId\", " \
	KEEL_SQL_TIME("a.started_at", "startedAt") ", " \
	KEEL_SQL_TIME("a.expires_at", "expiresAt") ", " \
	KEEL_SQL_TIME("a.submitted_at", "submittedAt") ", " \
	"a.score, a.correct, a.total, a.late"

static const struct keel_col attempt_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("testId", INT), KEEL_COL("userId", INT),
	KEEL_COL("startedAt", TEXT), KEEL_COL("expiresAt", TEXT),
	KEEL_COL("submittedAt", TEXT), KEEL_COL("score", INT),
	KEEL_COL("correct", INT), KEEL_COL("total", INT),
	KEEL_COL("late", BOOL),
};

/* One attempt adds its questions (attempts_get's statement). */
static const struct keel_col attempt_full_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("testId", INT), KEEL_COL("userId", INT),
	KEEL_COL("startedAt", TEXT), KEEL_COL("expiresAt", TEXT),
	KEEL_COL("submittedAt", TEXT), KEEL_COL("score", INT),
	KEEL_COL("correct", INT), KEEL_COL("total", INT),
	KEEL_COL("late", BOOL), KEEL_COL("questions", JSON),
};

/* The embedded test: one query per reply, whatever the page's size. */
static const struct keel_col test_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("title", TEXT),
	KEEL_COL("subject", TEXT),
};

static const struct keel_loader test_loader = {
	.q = { .name = "attempts_tests", .sql = "SELECT id, title, subject "
	    "FROM tests WHERE id = ANY($1::bigint[])", .target = KEEL_DB_READ },
	.cols = test_cols, .ncols = KEEL_NELEM(test_cols),
};

static const struct keel_relation attempt_rels[] = {
	{ .name = "test", .id = "testId", .load = &test_loader },
};

static const struct keel_resource attempt_res = { .name = "attempt",
	.cols = attempt_cols, .ncols = KEEL_NELEM(attempt_cols),
	.rels = attempt_rels, .nrels = KEEL_NELEM(attempt_rels) };
static const struct keel_resource attempt_full_res = { .name = "attempt",
	.cols = attempt_full_cols, .ncols = KEEL_NELEM(attempt_full_cols),
	.rels = attempt_rels, .nrels = KEEL_NELEM(attempt_rels) };

/* What a submit answers. */
static const struct keel_col result_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("score", INT), KEEL_COL("correct", INT),
	KEEL_COL("total", INT), KEEL_COL("late", BOOL),
};

static const struct keel_resource result_res = { .name = "attempt",
	.cols = result_cols, .ncols = KEEL_NELEM(result_cols) };

enum attempt_filter { FILTER_USER, FILTER_TEST, FILTER__MAX };

static const struct keel_field attempt_filters[FILTER__MAX] = {
	[FILTER_USER] = { .name = "userId", .type = KEEL_FIELD_ID },
	[FILTER_TEST] = { .name = "testId", .type = KEEL_FIELD_ID },
};

/*
 * $4 userId, $5 testId, $6 the caller when a student (their own only: a
 * student's userId of someone else lists nothing), else NULL.  Newest
 * first by start, over test_attempts_user_started_idx for a student.
 */
#define ATTEMPTS_LIST "SELECT " ATTEMPT_COLS " FROM test_attempts a " \
	"WHERE ($4::bigint IS NULL OR a.user_id = $4) " \
	"AND ($5::bigint IS NULL OR a.test_id = $5) " \
	"AND ($6::bigint IS NULL OR a.user_id = $6) "
#define ATTEMPTS_AFTER "AND ($1::timestamptz IS NULL OR " \
	"(a.started_at, a.id) < ($1::timestamptz, $2::bigint)) " \
	"ORDER BY a.started_at DESC, a.id DESC LIMIT $3"
#define ATTEMPTS_BEFORE "AND (a.started_at, a.id) > ($1::timestamptz, " \
	"$2::bigint) ORDER BY a.started_at ASC, a.id ASC LIMIT $3"

static const struct keel_list attempts_list_rows = { .scope = "attempts",
	.after = { .name = "attempts_list_after", .sql = ATTEMPTS_LIST
	    ATTEMPTS_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "attempts_list_before", .sql = ATTEMPTS_LIST
	    ATTEMPTS_BEFORE, .target = KEEL_DB_READ },
	.keys = { "startedAt", "id" },
	.filters = attempt_filters, .nfilters = FILTER__MAX,
	.owner = KEEL_ROLE_STUDENT,
};

/*
 * Attempt a's questions as its student was shown them, in order: a jsonb
 * array of {"id", "body", "options", "answer", "explanation"}, as
 * tests.c's start stores it in the snapshot a.snapshot_id names (a.shown
 * for an attempt started between sql/016 and sql/019); for a row with
 * neither, the same built from the bank as it is now.  A question gone
 * from the bank since (never through the API: deleting archives) has
 * only its id there.
 */
#define ATTEMPT_SHOWN "COALESCE(a.shown, (SELECT x.shown " \
	"FROM attempt_snapshots x WHERE x.id = a.snapshot_id), " \
	"(SELECT jsonb_agg(" \
	"jsonb_build_object('id', u.x, 'body', q.body, 'options', q.options, " \
	"'answer', q.answer, 'explanation', q.explanation) ORDER BY u.n) " \
	"FROM unnest(a.question_ids) WITH ORDINALITY AS u(x, n) " \
	"LEFT JOIN questions q ON q.id = u.x))"

/*
 * $2: the student who asks, or NULL for staff.  The questions in the
 * attempt's order, as shown (a gone one left out); the grade's members
 * only once it is submitted, the answer the key it was graded with.
 */
static const struct keel_query q_attempt_get = { .name = "attempts_get",
	.sql = "SELECT " ATTEMPT_COLS ", (SELECT COALESCE(json_agg("
	"jsonb_build_object('id', s.q -> 'id', 'body', s.q -> 'body', "
	"'options', s.q -> 'options') || CASE WHEN a.submitted_at IS NULL "
	"THEN '{}'::jsonb ELSE jsonb_build_object("
	"'chosen', a.answers -> (s.q ->> 'id'), "
	"'answer', a.answer_key -> (s.q ->> 'id'), "
	"'correct', COALESCE((a.answers -> (s.q ->> 'id')) = "
	"(a.answer_key -> (s.q ->> 'id')), false), "
	"'explanation', s.q -> 'explanation') END ORDER BY s.n), '[]') "
	"FROM jsonb_array_elements(" ATTEMPT_SHOWN ") "
	"WITH ORDINALITY AS s(q, n) "
	"WHERE jsonb_typeof(s.q -> 'options') = 'array') AS questions "
	"FROM test_attempts a WHERE a.id = $1 "
	"AND ($2::bigint IS NULL OR a.user_id = $2)",
	.target = KEEL_DB_READ };

/*
 * The submit's first statement: the owner's attempt, locked until the
 * commit, with what the grade and its jobs need.  A racing submit waits
 * here and then sees submitted.
 */
static const struct keel_query q_submit_lock = { .name = "attempts_lock",
	.sql = "SELECT a.submitted_at IS NOT NULL AS submitted, "
	"now() > a.expires_at AS late, "
	"a.test_id AS \"testId\", t.title, u.email, u.name "
	"FROM test_attempts a JOIN tests t ON t.id = a.test_id "
	"JOIN users u ON u.id = a.user_id "
	"WHERE a.id = $1 AND a.user_id = $2 FOR UPDATE OF a",
	.target = KEEL_DB_PRIMARY };

/*
 * Attempt $1's questions in order, as shown: each one's number of options
 * and its answer (both NULL for one gone from the bank).  Read after the
 * lock, from the row it holds.
 */
static const struct keel_query q_submit_questions = {
	.name = "attempts_questions",
	.sql = "SELECT (s.q ->> 'id')::bigint AS id, "
	"CASE jsonb_typeof(s.q -> 'options') WHEN 'array' "
	"THEN jsonb_array_length(s.q -> 'options') END AS options, "
	"(s.q ->> 'answer')::integer AS answer FROM test_attempts a, "
	"jsonb_array_elements(" ATTEMPT_SHOWN ") WITH ORDINALITY AS s(q, n) "
	"WHERE a.id = $1 ORDER BY s.n",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_submit_store = { .name = "attempts_store",
	.sql = "UPDATE test_attempts SET submitted_at = now(), "
	"answers = $2::jsonb, answer_key = $3::jsonb, score = $4::integer, "
	"correct = $5::integer, total = $6::integer, late = $7::boolean "
	"WHERE id = $1 AND submitted_at IS NULL "
	"RETURNING id, score, correct, total, late",
	.target = KEEL_DB_PRIMARY };

enum submit_field { SUBMIT_ANSWERS, SUBMIT__MAX };

static const struct keel_field submit_fields[SUBMIT__MAX] = {
	[SUBMIT_ANSWERS] = { .name = "answers", .type = KEEL_FIELD_OBJECT,
	    .required = true, .max = ATTEMPT_ANSWERS_MAX },
};

/* One answer of a submit: "<qid>": option. */
struct answer {
	const char	*key;		/* as the client wrote it */
	int64_t		 qid;
	int64_t		 option;
};

/* What grading found. */
struct grade {
	int64_t		 correct, total, score;
	bool		 late;
};

static enum keel_err
attempts_list(struct keel_req *req)
{
	return keel_res_list(req, &attempt_res, &attempts_list_rows, NULL);
}

static enum keel_err
attempts_get(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	/* A student sees their own only: another's is not found. */
	keel_res_param_owner(req, &p, KEEL_ROLE_STUDENT);
	return keel_res_get(req, &attempt_full_res, &q_attempt_get, &p);
}

/* 422 naming the answer: "answers.<key>". */
static void
attempts_bad_answer(struct keel_req *req, const char *key, const char *why)
{
	keel_http_reply_field(req, keel_arena_printf(req->arena,
	    "answers.%s", key), why);
}

/*
 * A step: the answers' shape, before any statement -- each key a
 * question id as a plain decimal, each value an option index -- into
 * out[0..*n) from the request's arena.
 */
static enum keel_step
attempts_answers(struct keel_req *req, struct json_object *obj,
    struct answer **out, size_t *n)
{
	struct answer	*a;
	char		 canon[KEEL_TEXT_INT_MAX];
	size_t		 i = 0;
	bool		 ok;

	a = keel_arena_alloc(req->arena, (json_object_object_length(obj) + 1) *
	    sizeof(*a));
	json_object_object_foreach(obj, key, val) {
		a[i].key = key;
		ok = keel_parse_int64(key, 1, INT64_MAX - 1, &a[i].qid);
		/* "01" would be a second name for question 1. */
		if (ok) {
			keel_text_int(canon, a[i].qid);
			ok = strcmp(canon, key) == 0;
		}
		if (!ok) {
			attempts_bad_answer(req, key, "is not a question id");
			return KEEL_STEP_REPLIED;
		}
		if (!json_object_is_type(val, json_type_int) ||
		    (a[i].option = json_object_get_int64(val)) < 0 ||
		    a[i].option == INT64_MAX) {
			attempts_bad_answer(req, key, "must be an option index "
			    "(an integer >= 0)");
			return KEEL_STEP_REPLIED;
		}
		i++;
	}
	*out = a;
	*n = i;
	return KEEL_STEP_GO;
}

/*
 * Grades answers against the attempt's questions (rows of
 * q_submit_questions): 422 for an answer naming a question the attempt
 * doesn't hold or an option it doesn't have.  Else g, and the answers
 * and the answer key as JSON objects into ans and key.
 */
static enum keel_step
attempts_grade(struct keel_req *req, const struct keel_rows *qs,
    const struct answer *a, size_t n, struct grade *g,
    struct keel_buf *ans, struct keel_buf *key)
{
	struct keel_jw	 wa, wk;
	const char	*opts;
	size_t		 i, r, nq = keel_rows_count(qs);
	int64_t		 nopt;

	g->correct = 0;
	for (i = 0; i < n; i++) {
		for (r = 0; r < nq; r++)
			if (keel_rows_int64(qs, r, 0) == a[i].qid)
				break;
		if (r == nq || (opts = keel_rows_value(qs, r, 1)) == NULL) {
			attempts_bad_answer(req, a[i].key,
			    "is not a question of this attempt");
			return KEEL_STEP_REPLIED;
		}
		nopt = keel_rows_int64(qs, r, 1);
		if (a[i].option >= nopt) {
			attempts_bad_answer(req, a[i].key, keel_arena_printf(
			    req->arena, "must be an option index below %lld",
			    (long long)nopt));
			return KEEL_STEP_REPLIED;
		}
		if (a[i].option == keel_rows_int64(qs, r, 2))
			g->correct++;
	}
	/* Unanswered questions count as wrong: total is every question. */
	g->total = (int64_t)nq;
	/* round(100 * correct / total), halves up, in integers. */
	g->score = nq == 0 ? 0 : (200 * g->correct + g->total) /
	    (2 * g->total);
	keel_jw_init(&wa, ans);
	keel_jw_obj_open(&wa);
	for (i = 0; i < n; i++) {
		keel_jw_key(&wa, a[i].key);
		keel_jw_int(&wa, a[i].option);
	}
	keel_jw_obj_close(&wa);
	keel_jw_init(&wk, key);
	keel_jw_obj_open(&wk);
	for (r = 0; r < nq; r++)
		if (keel_rows_value(qs, r, 2) != NULL) {
			keel_jw_key(&wk, keel_rows_value(qs, r, 0));
			keel_jw_int(&wk, keel_rows_int64(qs, r, 2));
		}
	keel_jw_obj_close(&wk);
	return KEEL_STEP_GO;
}

/* The grade's members of a job's payload. */
static void
attempts_grade_members(struct keel_jw *w, const struct grade *g)
{
	keel_jw_key(w, "score");
	keel_jw_int(w, g->score);
	keel_jw_key(w, "correct");
	keel_jw_int(w, g->correct);
	keel_jw_key(w, "total");
	keel_jw_int(w, g->total);
	keel_jw_key(w, "late");
	keel_jw_bool(w, g->late);
}

/*
 * The submit's three jobs, in its transaction (outbox.h): the result
 * email (lib/mail.c's attempt_result), the leaderboard's update and the
 * notification.  Each key names the attempt, so each job exists once.
 */
static enum keel_err
attempts_jobs(struct keel_req *req, int64_t id, const struct keel_rows *at,
    const struct grade *g, int64_t jobs[3])
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	char		 key[64];
	const char	*title = keel_rows_value(at, 0, keel_rows_col(at,
	    "title"));
	enum keel_err	 er;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "userId");
	keel_jw_int(&w, req->user->id);
	keel_jw_key(&w, "to");
	keel_jw_str(&w, keel_rows_value(at, 0, keel_rows_col(at, "email")));
	keel_jw_key(&w, "name");
	keel_jw_str(&w, keel_rows_value(at, 0, keel_rows_col(at, "name")));
	keel_jw_key(&w, "testTitle");
	keel_jw_str(&w, title);
	attempts_grade_members(&w, g);
	keel_jw_obj_close(&w);
	snprintf(key, sizeof(key), "email:attempt:%lld", (long long)id);
	if ((er = keel_outbox_add(req->db, "email", "attempt_result", b.data,
	    key, &jobs[0])) != KEEL_OK)
		goto out;

	keel_buf_reset(&b);
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "attemptId");
	keel_jw_int(&w, id);
	keel_jw_obj_close(&w);
	snprintf(key, sizeof(key), "leaderboard:attempt:%lld", (long long)id);
	if ((er = keel_outbox_add(req->db, "leaderboard", "attempt_submitted",
	    b.data, key, &jobs[1])) != KEEL_OK)
		goto out;

	keel_buf_reset(&b);
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "userId");
	keel_jw_int(&w, req->user->id);
	keel_jw_key(&w, "attemptId");
	keel_jw_int(&w, id);
	keel_jw_key(&w, "testId");
	keel_jw_int(&w, keel_rows_int64(at, 0, keel_rows_col(at, "testId")));
	keel_jw_key(&w, "testTitle");
	keel_jw_str(&w, title);
	attempts_grade_members(&w, g);
	keel_jw_obj_close(&w);
	snprintf(key, sizeof(key), "notification:attempt:%lld",
	    (long long)id);
	er = keel_outbox_add(req->db, "notifications", "attempt_graded",
	    b.data, key, &jobs[2]);
out:
	keel_buf_free(&b);
	return er;
}

static enum keel_err
attempts_submit(struct keel_req *req)
{
	struct keel_value	 v[SUBMIT__MAX];
	struct keel_db_params	 p;
	struct keel_rows	*at = NULL, *qs = NULL, *done = NULL;
	struct keel_buf		 ans = { NULL, 0, 0 }, key = { NULL, 0, 0 };
	struct answer		*a;
	struct grade		 g;
	int64_t			 id = keel_http_param_int(req, "id"), jobs[3];
	size_t			 n;
	enum keel_err		 er = KEEL_OK;

	if (keel_http_body_fields(req, submit_fields, SUBMIT__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO ||
	    attempts_answers(req, v[SUBMIT_ANSWERS].o, &a, &n) !=
	    KEEL_STEP_GO)
		return KEEL_OK;
	if ((er = keel_db_begin(req->db)) != KEEL_OK)
		goto out;
	keel_db_params_init(&p);
	keel_db_param_int(&p, id);
	keel_db_param_int(&p, req->user->id);
	if ((er = keel_db_query(req->db, &q_submit_lock, &p, &at)) != KEEL_OK)
		goto out;
	/* Someone else's attempt does not exist, as far as they can tell. */
	if (keel_rows_count(at) == 0) {
		keel_http_reply_error(req, 404, "not_found",
		    "no such attempt");
		goto out;
	}
	if (keel_rows_bool(at, 0, keel_rows_col(at, "submitted"))) {
		keel_http_reply_error(req, 409, "conflict",
		    "the attempt was submitted already");
		goto out;
	}
	g.late = keel_rows_bool(at, 0, keel_rows_col(at, "late"));
	keel_db_params_init(&p);
	keel_db_param_int(&p, id);
	if ((er = keel_db_query(req->db, &q_submit_questions, &p, &qs)) !=
	    KEEL_OK)
		goto out;
	if (attempts_grade(req, qs, a, n, &g, &ans, &key) != KEEL_STEP_GO)
		goto out;
	keel_db_params_init(&p);
	keel_db_param_int(&p, id);
	keel_db_param_text(&p, ans.data);
	keel_db_param_text(&p, key.data);
	keel_db_param_int(&p, g.score);
	keel_db_param_int(&p, g.correct);
	keel_db_param_int(&p, g.total);
	keel_db_param_bool(&p, g.late);
	if ((er = keel_db_query(req->db, &q_submit_store, &p, &done)) !=
	    KEEL_OK)
		goto out;
	if (keel_rows_count(done) != 1) {
		/* The lock says this can't be: not a client's error. */
		keel_log_error("attempts: attempt %lld locked unsubmitted but "
		    "not stored", (long long)id);
		er = KEEL_EINTERNAL;
		goto out;
	}
	if ((er = attempts_jobs(req, id, at, &g, jobs)) != KEEL_OK ||
	    (er = keel_db_commit(req->db)) != KEEL_OK)
		goto out;
	/* Best effort: what isn't pushed now, the relay pushes. */
	(void)keel_outbox_push(req->db, req->redis, jobs, 3);
	er = keel_res_reply_row(req, &result_res, 200, done);
out:
	/* Nothing stored unless committed: a 404, 409 or 422 rolls back. */
	keel_db_rollback(req->db);
	keel_buf_free(&ans);
	keel_buf_free(&key);
	keel_rows_free(at);
	keel_rows_free(qs);
	keel_rows_free(done);
	return er;
}

#define STUDENT_OR_STAFF	(KEEL_ACCESS_STAFF | KEEL_ROLE_STUDENT)
static const struct keel_route attempts_routes[] = {
	{ .method = "GET", .pattern = "/api/attempts",
	    .handler = attempts_list, .access = STUDENT_OR_STAFF,
	    .query = KEEL_QUERY_HANDLER },
	{ .method = "GET", .pattern = "/api/attempts/{id:int}",
	    .handler = attempts_get, .access = STUDENT_OR_STAFF },
	{ .method = "POST", .pattern = "/api/attempts/{id:int}/submit",
	    .handler = attempts_submit, .access = KEEL_ROLE_STUDENT },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "attempts",
	    .routes = attempts_routes,
	    .nroutes = KEEL_NELEM(attempts_routes) };

	return keel_serve(argc, argv, &app);
}
