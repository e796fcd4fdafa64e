/* SPDX-License-Identifier: ISC */
/*
 * question-bank.c -- the exam-prep question bank (API.md, "Exam prep").
 *
 * Two views of one row: staff and admins see a question whole; everyone
 * else (students, customers) gets it without "answer" and "explanation",
 * from statements that never select them.  Both views are cached in the
 * "questions" namespace (5 min), under keys that start with the view, so
 * a staff answer can never be served to a student; every write bumps the
 * namespace after it commits.
 *
 * Lists are keyset-paginated newest first over (created_at, id), like
 * cars.  With q (full-text search on the generated, GIN-indexed column
 * "search") they are ranked instead: ts_rank, best first, ties by id
 * descending; the cursor carries (rank, id), rank as an integer (ts_rank
 * scaled by 1e9, so the key round-trips as text exactly), and is signed
 * for that q alone, as every cursor is for its list's filters (page.h: a
 * cursor of another query, or of the unranked list, is a 400).  Deleting
 * archives: tests that hold the question keep it.
 *
 * Search is the one list whose cost a student chooses, so it is bounded
 * twice.  ts_rank reads each match's tsvector: ranking every match cost
 * ~200 ms for 17 words or'ed together over 60,000 questions.  Only the
 * first BANK_RANKED matches the scan reads are ranked, so a broad q
 * ranks a fixed number of rows and its scan stops early; and q holds at
 * most BANK_Q_WORDS words, which bounds the posting lists the index
 * reads and the work of each @@ and ts_rank.  A q matching fewer rows
 * than BANK_RANKED, any realistic one, is answered as if unbounded.
 */
#include "config.h"

#include <stdbool.h>

#include "keel/cache.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/resource.h"
#include "keel/serve.h"

/* A question as anyone sees it; the staff view adds BANK_COLS_KEY. */
#define BANK_COLS "id, subject, topic, difficulty, body, options, " \
	"is_archived AS \"isArchived\", " \
	KEEL_SQL_TIME("created_at", "createdAt") ", " \
	KEEL_SQL_TIME("updated_at", "updatedAt")
#define BANK_COLS_STAFF BANK_COLS ", answer, explanation"

static const struct keel_col bank_cols_staff[] = {
	KEEL_COL("id", INT), KEEL_COL("subject", TEXT),
	KEEL_COL("topic", TEXT), KEEL_COL("difficulty", TEXT),
	KEEL_COL("body", TEXT), KEEL_COL("options", JSON),
	KEEL_COL("isArchived", BOOL), KEEL_COL("createdAt", TEXT),
	KEEL_COL("updatedAt", TEXT),
	/* The student view stops here. */
	KEEL_COL("answer", INT), KEEL_COL("explanation", TEXT),
};
#define BANK_NCOLS_STUDENT	9

/* An answer past the options (sql/004_exam.sql), on create or patch. */
static const struct keel_constraint bank_cons[] = {
	{ .name = "questions_answer_in_options", .reply = { .status = 422,
	    .message = "some fields are not valid", .field = "answer",
	    .why = "must be the index of one of the options" } },
};

static const struct keel_resource bank_res_staff = { .name = "question",
	.ns = "questions", .cols = bank_cols_staff,
	.ncols = KEEL_NELEM(bank_cols_staff),
	.cons = bank_cons, .ncons = KEEL_NELEM(bank_cons),
};
static const struct keel_resource bank_res_student = { .name = "question",
	.ns = "questions", .cols = bank_cols_staff,
	.ncols = BANK_NCOLS_STUDENT,
};

static const char *const bank_difficulties[] = { "easy", "medium", "hard",
    NULL };

#define BANK_Q_MAX		200	/* characters of a search */
#define BANK_Q_WORDS		32	/* words of a search, "or" included */
#define BANK_Q_WORDS_MSG	"must be at most 32 words"
#define BANK_RANKED		"1000"	/* matches a search ranks at most */

/* One option: something besides spaces. */
static bool
bank_option_check(const char *s)
{
	const char	*p;

	for (p = s; *p != '\0'; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return true;
	return false;
}

/*
 * A q of at most BANK_Q_WORDS words: runs of letters and digits, any
 * byte past ASCII a letter, "or" one of them.  websearch_to_tsquery
 * makes at most a few lexemes of each (a hyphenated "a-b" is "a-b",
 * "a" and "b"), so this bounds the lexemes without asking the server.
 */
static bool
bank_q_check(const char *s)
{
	const unsigned char	*p;
	int			 words = 0;
	bool			 in = false;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= 'A' && *p <= 'Z') || *p >= 0x80) {
			if (!in && ++words > BANK_Q_WORDS)
				return false;
			in = true;
		} else
			in = false;
	}
	return true;
}

/* Each element of options (json.h: an unnamed field, values). */
static const struct keel_field bank_option = { .type = KEEL_FIELD_STRING,
	.min = 1, .max = 1000, .check = bank_option_check,
	.check_msg = "must not be only spaces" };

enum bank_field {
	BANK_SUBJECT, BANK_TOPIC, BANK_DIFFICULTY, BANK_BODY, BANK_OPTIONS,
	BANK_ANSWER, BANK_EXPLANATION, BANK_ARCHIVED, BANK__MAX
};

static const struct keel_field bank_fields[BANK__MAX] = {
	[BANK_SUBJECT] = { .name = "subject", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 100 },
	[BANK_TOPIC] = { .name = "topic", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 100 },
	[BANK_DIFFICULTY] = { .name = "difficulty", .type = KEEL_FIELD_ENUM,
	    .required = true, .values = bank_difficulties },
	[BANK_BODY] = { .name = "body", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 10000 },
	[BANK_OPTIONS] = { .name = "options", .type = KEEL_FIELD_ARRAY,
	    .required = true, .min = 2, .max = 6, .of = &bank_option,
	    .nof = 1 },
	[BANK_ANSWER] = { .name = "answer", .type = KEEL_FIELD_INT,
	    .required = true, .min = 0, .max = 5 },
	[BANK_EXPLANATION] = { .name = "explanation",
	    .type = KEEL_FIELD_STRING, .nullable = true, .max = 10000 },
	[BANK_ARCHIVED] = { .name = "isArchived", .type = KEEL_FIELD_BOOL },
};

/* The list's filters, $4..$8 of its statements (resource.h). */
enum bank_filter {
	BANK_F_ARCHIVED, BANK_F_SUBJECT, BANK_F_TOPIC, BANK_F_DIFFICULTY,
	BANK_F_Q, BANK_F__MAX
};

static const struct keel_field bank_filters[BANK_F__MAX] = {
	[BANK_F_ARCHIVED] = { .name = "archived", .type = KEEL_FIELD_BOOL,
	    .def = "false" },
	[BANK_F_SUBJECT] = { .name = "subject", .type = KEEL_FIELD_STRING,
	    .min = 1, .max = 100 },
	[BANK_F_TOPIC] = { .name = "topic", .type = KEEL_FIELD_STRING,
	    .min = 1, .max = 100 },
	[BANK_F_DIFFICULTY] = { .name = "difficulty", .type = KEEL_FIELD_ENUM,
	    .values = bank_difficulties },
	[BANK_F_Q] = { .name = "q", .type = KEEL_FIELD_STRING, .min = 1,
	    .max = BANK_Q_MAX, .check = bank_q_check,
	    .check_msg = BANK_Q_WORDS_MSG },
};

/* A NULL filter's arm goes (lib/db.c prepares a statement per set). */
#define BANK_WHERE "FROM questions WHERE is_archived = $4 " \
	"AND ($5::text IS NULL OR subject = $5) " \
	"AND ($6::text IS NULL OR topic = $6) " \
	"AND ($7::text IS NULL OR difficulty = $7) "
/* Without q: newest first, on questions_page_idx. */
#define BANK_PLAIN BANK_WHERE "AND $8::text IS NULL "
/*
 * With q: at most BANK_RANKED matches (m), in the order the scan reads
 * them, ranked; planned for its words each run (replan: a rare word is
 * a bitmap scan of the GIN index, a word in most rows a sequential scan
 * that stops at BANK_RANKED).  Not the newest BANK_RANKED: an order on
 * id lets the planner walk the primary key backwards, through every
 * newer question, for words that only old ones hold (a word in the
 * 5,000 oldest of 60,000: 13 ms before the bound, 47 ms so, 7 ms this
 * way).  websearch_to_tsquery takes any text (quotes, "or", "-": web
 * search syntax; garbage is words) and never fails; a q of stop words
 * only matches nothing.
 */
#define BANK_TSQ "websearch_to_tsquery('english', $8)"
#define BANK_RANK "(ts_rank(search, " BANK_TSQ ")::float8 * 1e9)::bigint"
#define BANK_SEARCH "FROM (SELECT * " BANK_WHERE "AND search @@ " \
	BANK_TSQ " LIMIT " BANK_RANKED ") m WHERE true "
#define BANK_SEARCH_AFTER "AND ($1::bigint IS NULL OR (" BANK_RANK ", id) " \
	"< ($1::bigint, $2::bigint)) ORDER BY rank DESC, id DESC LIMIT $3"
#define BANK_SEARCH_BEFORE "AND (" BANK_RANK ", id) > ($1::bigint, " \
	"$2::bigint) ORDER BY rank ASC, id ASC LIMIT $3"

/* The lists of a view, cols its columns: by date, and ranked by q. */
#define BANK_LISTS(view, cols) \
static const struct keel_list bank_plain_ ## view = { \
	.scope = "questions", \
	.after = { .name = "bank_" #view "_after", .sql = "SELECT " cols \
	    " " BANK_PLAIN KEEL_SQL_AFTER, .target = KEEL_DB_READ }, \
	.before = { .name = "bank_" #view "_before", .sql = "SELECT " cols \
	    " " BANK_PLAIN KEEL_SQL_BEFORE, .target = KEEL_DB_READ }, \
	.keys = { "createdAt", "id" }, \
	.filters = bank_filters, .nfilters = BANK_F__MAX, \
}; \
static const struct keel_list bank_search_ ## view = { \
	.scope = "questions:q", \
	.after = { .name = "bank_" #view "_search_after", .sql = "SELECT " \
	    cols ", " BANK_RANK " AS rank " BANK_SEARCH BANK_SEARCH_AFTER, \
	    .target = KEEL_DB_READ, .replan = true }, \
	.before = { .name = "bank_" #view "_search_before", .sql = "SELECT " \
	    cols ", " BANK_RANK " AS rank " BANK_SEARCH BANK_SEARCH_BEFORE, \
	    .target = KEEL_DB_READ, .replan = true }, \
	.keys = { "rank", "id" }, \
	.filters = bank_filters, .nfilters = BANK_F__MAX, \
}; \
static const struct keel_query q_bank_get_ ## view = { \
	.name = "bank_" #view "_get", \
	.sql = "SELECT " cols " FROM questions WHERE id = $1", \
	.target = KEEL_DB_READ }

BANK_LISTS(staff, BANK_COLS_STAFF);
BANK_LISTS(student, BANK_COLS);

/* What one caller may read: its columns and the statements that fit. */
struct bank_view {
	const char			*name;	/* cache keys start with it */
	const struct keel_resource	*res;
	const struct keel_list		*plain;
	const struct keel_list		*search;
	const struct keel_query		*get;
};

static const struct bank_view bank_staff = { .name = "staff",
	.res = &bank_res_staff, .plain = &bank_plain_staff,
	.search = &bank_search_staff, .get = &q_bank_get_staff };
static const struct bank_view bank_student = { .name = "student",
	.res = &bank_res_student, .plain = &bank_plain_student,
	.search = &bank_search_student, .get = &q_bank_get_student };

/* Staff and admins see answers; anyone else, or no one yet, does not. */
static const struct bank_view *
bank_view(const struct keel_req *req)
{
	if (req->user != NULL && (req->user->role & KEEL_ACCESS_STAFF) != 0)
		return &bank_staff;
	return &bank_student;
}

/*
 * The cache key: the view, then the path and query.  The early lookup
 * runs before the session is read (req->user NULL) and asks for the
 * student view, the common one; a staff caller's key differs, so that
 * lookup is only ever used to answer a student.
 */
static const char *
bank_cache_key(struct keel_req *req)
{
	return keel_arena_printf(req->arena, "%s:%s?%s", bank_view(req)->name,
	    req->path, req->query);
}

static const struct keel_query q_bank_insert = { .name = "bank_insert",
	.sql = "INSERT INTO questions (subject, topic, difficulty, body, "
	"options, answer, explanation, created_by) VALUES ($1, $2, $3, $4, "
	"$5::jsonb, $6::integer, $7, $8::bigint) RETURNING " BANK_COLS_STAFF,
	.target = KEEL_DB_PRIMARY };

/* explanation: absent keeps it, null clears it ($10 says which). */
static const struct keel_query q_bank_update = { .name = "bank_update",
	.sql = "UPDATE questions SET subject = COALESCE($2, subject), "
	"topic = COALESCE($3, topic), "
	"difficulty = COALESCE($4, difficulty), body = COALESCE($5, body), "
	"options = COALESCE($6::jsonb, options), "
	"answer = COALESCE($7::integer, answer), "
	"explanation = CASE WHEN $10::boolean THEN $8 ELSE explanation END, "
	"is_archived = COALESCE($9::boolean, is_archived), "
	"updated_at = now() WHERE id = $1 RETURNING " BANK_COLS_STAFF,
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_bank_archive = { .name = "bank_archive",
	.sql = "UPDATE questions SET is_archived = true, updated_at = now() "
	"WHERE id = $1 RETURNING " BANK_COLS_STAFF,
	.target = KEEL_DB_PRIMARY };

static enum keel_err
bank_list(struct keel_req *req)
{
	const struct bank_view	*v = bank_view(req);
	struct keel_value	 vals[BANK_F__MAX];

	if (keel_res_filters(req, v->plain, vals) != KEEL_STEP_GO)
		return KEEL_OK;
	/*
	 * A rank means something for its own q only: q is a filter, and
	 * every cursor is signed for its list's filters (page.h).
	 */
	return keel_res_list(req, v->res, vals[BANK_F_Q].present ?
	    v->search : v->plain, vals);
}

static enum keel_err
bank_get(struct keel_req *req)
{
	const struct bank_view	*v = bank_view(req);
	struct keel_db_params	 p;

	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	return keel_res_get(req, v->res, v->get, &p);
}

static enum keel_err
bank_create(struct keel_req *req)
{
	struct keel_value	 v[BANK__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_bank_insert, .p = &p,
	    .status = 201, .location = "/api/question-bank/" };
	size_t			 i;

	if (keel_http_body_fields(req, bank_fields, BANK__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	if (v[BANK_ARCHIVED].present) {
		keel_http_reply_field(req, "isArchived",
		    "can't be set on creation");
		return KEEL_OK;
	}
	keel_db_params_init(&p);
	for (i = 0; i < BANK_ARCHIVED; i++)
		keel_res_param(&p, &v[i]);
	keel_db_param_int(&p, req->user->id);
	return keel_res_change(req, &bank_res_staff, &w);
}

static enum keel_err
bank_patch(struct keel_req *req)
{
	struct keel_value	 v[BANK__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_bank_update, .p = &p,
	    .status = 200 };
	size_t			 i;

	if (keel_http_body_fields(req, bank_fields, BANK__MAX,
	    KEEL_FIELDS_SOME, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	for (i = 0; i < BANK__MAX; i++)
		keel_res_param(&p, &v[i]);
	keel_db_param_bool(&p, v[BANK_EXPLANATION].present);
	return keel_res_change(req, &bank_res_staff, &w);
}

static enum keel_err
bank_archive(struct keel_req *req)
{
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_bank_archive, .p = &p,
	    .status = 200 };

	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	return keel_res_change(req, &bank_res_staff, &w);
}

/* Reads are cached per view: the pipeline serves them through memcached. */
#define BANK_CACHE	{ .ns = "questions", \
	.ttl = KEEL_CACHE_TTL_QUESTIONS, .key = bank_cache_key }

static const struct keel_route bank_routes[] = {
	{ .method = "GET", .pattern = "/api/question-bank",
	    .handler = bank_list, .access = KEEL_ACCESS_USER,
	    .cache = BANK_CACHE, .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/question-bank",
	    .handler = bank_create, .access = KEEL_ACCESS_STAFF },
	{ .method = "GET", .pattern = "/api/question-bank/{id:int}",
	    .handler = bank_get, .access = KEEL_ACCESS_USER,
	    .cache = BANK_CACHE },
	{ .method = "PATCH", .pattern = "/api/question-bank/{id:int}",
	    .handler = bank_patch, .access = KEEL_ACCESS_STAFF },
	{ .method = "DELETE", .pattern = "/api/question-bank/{id:int}",
	    .handler = bank_archive, .access = KEEL_ACCESS_STAFF },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "question-bank",
	    .routes = bank_routes, .nroutes = KEEL_NELEM(bank_routes) };

	return keel_serve(argc, argv, &app);
}
