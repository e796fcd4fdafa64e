/* SPDX-License-Identifier: ISC */
/*
 * leaderboard.c -- the leaderboards (API.md, "Exam prep"; DESIGN.md,
 * "Leaderboards").
 *
 * A board is a scope (testId, or none for the global one, whose score
 * is the sum of each test's best) and a period (all, this ISO week,
 * this month, in UTC).  Pages come from the board's Redis sorted set
 * (lib/board.c): one script, O(log N + limit), ranks shared by equal
 * scores (1, 2, 2, 4), equal scores ordered by who reached them first;
 * names and attempt counts by one batched query per page.  When Redis
 * has lost the board, or is down, the same answer comes from
 * leaderboard_entries (slower: the scope is ranked in PostgreSQL) and
 * the next rebuild restores the board.  Pages are cached 5 min, each
 * scope's in its own namespace ("leaderboard:t42", lib/board.c), which
 * the drainer and the rebuild invalidate when they change that scope's
 * boards, and a rename every scope the user is on (users.c,
 * keel_board_invalidate_user); the key carries the UTC day, so no page
 * outlives its period.
 * The caller's own entry is never cached.
 */
#include "config.h"

#include <time.h>

#include "keel/batch.h"
#include "keel/board.h"
#include "keel/cache.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/resource.h"
#include "keel/serve.h"
#include "keel/text.h"

#define LB_LIMIT_MAX	100
#define LB_OFFSET_MAX	10000

enum lb_field { LB_TEST, LB_PERIOD, LB_LIMIT, LB_OFFSET, LB__MAX };

/* The query of a page; the caller's entry takes the first two. */
static const struct keel_field lb_fields[LB__MAX] = {
	[LB_TEST] = { .name = "testId", .type = KEEL_FIELD_ID },
	[LB_PERIOD] = { .name = "period", .type = KEEL_FIELD_ENUM,
	    .values = keel_board_periods, .def = "all" },
	[LB_LIMIT] = { .name = "limit", .type = KEEL_FIELD_INT, .min = 1,
	    .max = LB_LIMIT_MAX, .def = "20" },
	[LB_OFFSET] = { .name = "offset", .type = KEEL_FIELD_INT, .min = 0,
	    .max = LB_OFFSET_MAX, .def = "0" },
};

/* The scope's rows in leaderboard_entries: test (0: global), period,
 * its first day, as the parameters named. */
#define LB_SCOPE(a, t, p, d) "COALESCE(" a ".test_id, 0) = " t " AND " \
	a ".period = " p " AND " a ".period_start = " d "::date"

/* Names and attempts of a page's users (the DataLoader): $1 the ids. */
static const struct keel_query q_lb_users = { .name = "lb_users",
	.sql = "SELECT u.id, u.name, e.attempts FROM users u "
	"LEFT JOIN leaderboard_entries e ON e.user_id = u.id AND "
	LB_SCOPE("e", "$2", "$3", "$4") " WHERE u.id = ANY($1::bigint[])",
	.target = KEEL_DB_PRIMARY };

/*
 * A page from PostgreSQL, in Redis's order (score, then the second it
 * was reached, then the user id as text, descending as ZREVRANGE has
 * equal values): the size, then the page's rows ($4 limit, $5 offset).
 */
static const struct keel_query q_lb_page = { .name = "lb_page",
	.sql = "WITH s AS (SELECT e.user_id, e.score, e.attempts, "
	"floor(extract(epoch FROM e.reached_at)) AS t, "
	"rank() OVER (ORDER BY e.score DESC) AS rank "
	"FROM leaderboard_entries e WHERE " LB_SCOPE("e", "$1", "$2", "$3")
	") SELECT n.total, p.user_id, p.score, p.rank, p.attempts, u.name "
	"FROM (SELECT count(*) AS total FROM s) n LEFT JOIN LATERAL "
	"(SELECT * FROM s ORDER BY score DESC, t, "
	"user_id::text COLLATE \"C\" DESC LIMIT $4 OFFSET $5) p ON true "
	"LEFT JOIN users u ON u.id = p.user_id "
	"ORDER BY p.score DESC, p.t, p.user_id::text COLLATE \"C\" DESC",
	.target = KEEL_DB_READ };

/*
 * The caller's entry ($4): score and attempts; when Redis gave the rank,
 * nothing more.  On the primary: the drainer has just written what Redis
 * shows.
 */
#define LB_ME_FROM " FROM leaderboard_entries e WHERE " \
	LB_SCOPE("e", "$1", "$2", "$3") " AND e.user_id = $4"
static const struct keel_query q_lb_me = { .name = "lb_me",
	.sql = "SELECT e.score, e.attempts" LB_ME_FROM,
	.target = KEEL_DB_PRIMARY };

/* The same with its rank counted in PostgreSQL (no board in Redis). */
static const struct keel_query q_lb_me_ranked = { .name = "lb_me_ranked",
	.sql = "SELECT e.score, e.attempts, 1 + (SELECT count(*) FROM "
	"leaderboard_entries x WHERE " LB_SCOPE("x", "$1", "$2", "$3")
	" AND x.score > e.score)" LB_ME_FROM,
	.target = KEEL_DB_PRIMARY };

/* The board the query names, now; KEEL_STEP_REPLIED on bad input. */
static enum keel_step
lb_board(struct keel_req *req, size_t nfields, struct keel_value *v,
    struct keel_board *b)
{
	if (keel_http_query_known(req, lb_fields, nfields, NULL) !=
	    KEEL_STEP_GO || keel_http_query_fields(req, lb_fields, nfields,
	    v) != KEEL_STEP_GO)
		return KEEL_STEP_REPLIED;
	keel_board_at(b, v[LB_TEST].present ? v[LB_TEST].i : 0,
	    keel_board_period_find(v[LB_PERIOD].s), (int64_t)time(NULL));
	return KEEL_STEP_GO;
}

/* b's scope, as LB_SCOPE reads it. */
static void
lb_params(struct keel_db_params *p, const struct keel_board *b)
{
	keel_db_params_init(p);
	keel_db_param_int(p, b->test);
	keel_db_param_text(p, keel_board_periods[b->period]);
	keel_db_param_text(p, b->start);
}

/* The reply's head: the board it is, then "data": [. */
static void
lb_open(struct keel_jw *w, const struct keel_board *b)
{
	keel_jw_obj_open(w);
	keel_jw_key(w, "testId");
	if (b->test > 0)
		keel_jw_int(w, b->test);
	else
		keel_jw_null(w);
	keel_jw_key(w, "period");
	keel_jw_str(w, keel_board_periods[b->period]);
	keel_jw_key(w, "periodStart");
	keel_jw_str(w, b->start);
	keel_jw_key(w, "data");
	keel_jw_arr_open(w);
}

static void
lb_entry(struct keel_jw *w, int64_t rank, int64_t user, const char *name,
    int64_t score, int64_t attempts)
{
	keel_jw_obj_open(w);
	keel_jw_key(w, "rank");
	keel_jw_int(w, rank);
	keel_jw_key(w, "userId");
	keel_jw_int(w, user);
	keel_jw_key(w, "name");
	keel_jw_str(w, name != NULL ? name : "");
	keel_jw_key(w, "score");
	keel_jw_int(w, score);
	keel_jw_key(w, "attempts");
	keel_jw_int(w, attempts);
	keel_jw_obj_close(w);
}

/* "]", then the page and the board's size. */
static void
lb_close(struct keel_jw *w, int64_t limit, int64_t offset, int64_t total)
{
	keel_jw_arr_close(w);
	keel_jw_key(w, "page");
	keel_jw_obj_open(w);
	keel_jw_key(w, "limit");
	keel_jw_int(w, limit);
	keel_jw_key(w, "offset");
	keel_jw_int(w, offset);
	keel_jw_key(w, "total");
	keel_jw_int(w, total);
	keel_jw_obj_close(w);
	keel_jw_obj_close(w);
}

/* The page from PostgreSQL (the board is lost, or Redis is down). */
static enum keel_err
lb_list_db(struct keel_req *req, const struct keel_board *b,
    const struct keel_value *v, struct keel_jw *w)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	enum keel_err		 er;
	size_t			 i;

	lb_params(&p, b);
	keel_db_param_int(&p, v[LB_LIMIT].i);
	keel_db_param_int(&p, v[LB_OFFSET].i);
	if ((er = keel_db_query(req->db, &q_lb_page, &p, &rows)) != KEEL_OK)
		return er;
	lb_open(w, b);
	for (i = 0; i < keel_rows_count(rows); i++)
		if (keel_rows_value(rows, i, 1) != NULL)
			lb_entry(w, keel_rows_int64(rows, i, 3),
			    keel_rows_int64(rows, i, 1),
			    keel_rows_value(rows, i, 5),
			    keel_rows_int64(rows, i, 2),
			    keel_rows_int64(rows, i, 4));
	lb_close(w, v[LB_LIMIT].i, v[LB_OFFSET].i,
	    keel_rows_count(rows) > 0 ? keel_rows_int64(rows, 0, 0) : 0);
	keel_rows_free(rows);
	return KEEL_OK;
}

/* The page from Redis, names and attempts in one query; KEEL_ENOENT:
 * the board is missing. */
static enum keel_err
lb_list_redis(struct keel_req *req, const struct keel_board *b,
    const struct keel_value *v, struct keel_jw *w)
{
	struct keel_board_entry	 e[LB_LIMIT_MAX];
	struct keel_batch	 users;
	struct keel_db_params	 p;
	const struct keel_rows	*rows;
	enum keel_err		 er;
	int64_t			 total;
	size_t			 i, n;
	long			 r;

	if ((er = keel_board_page(req->redis, b, v[LB_OFFSET].i,
	    v[LB_LIMIT].i, e, &n, &total)) != KEEL_OK)
		return er;
	keel_batch_init(&users);
	for (i = 0; i < n; i++)
		keel_batch_add(&users, e[i].user);
	/* The ids are the loader's $1: the scope's three follow. */
	lb_params(&p, b);
	if ((er = keel_batch_load_with(&users, req->db, &q_lb_users, &p)) !=
	    KEEL_OK) {
		keel_batch_free(&users);
		return er;
	}
	rows = keel_batch_rows(&users);
	lb_open(w, b);
	for (i = 0; i < n; i++) {
		r = keel_batch_find(&users, e[i].user);
		lb_entry(w, e[i].rank, e[i].user, r < 0 ? NULL :
		    keel_rows_value(rows, (size_t)r, 1), e[i].score, r < 0 ?
		    0 : keel_rows_int64(rows, (size_t)r, 2));
	}
	lb_close(w, v[LB_LIMIT].i, v[LB_OFFSET].i, total);
	keel_batch_free(&users);
	return KEEL_OK;
}

static enum keel_err
lb_list(struct keel_req *req)
{
	struct keel_value	 v[LB__MAX];
	struct keel_board	 b;
	struct keel_buf		 buf = { NULL, 0, 0 };
	struct keel_jw		 w;
	enum keel_err		 er;

	if (lb_board(req, LB__MAX, v, &b) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_jw_init(&w, &buf);
	er = lb_list_redis(req, &b, v, &w);
	if (er == KEEL_ENOENT || er == KEEL_EUNAVAIL) {
		keel_buf_reset(&buf);
		keel_jw_init(&w, &buf);
		er = lb_list_db(req, &b, v, &w);
	}
	if (er == KEEL_OK)
		keel_http_reply_buf(req, 200, &buf);
	keel_buf_free(&buf);
	return er;
}

static enum keel_err
lb_me(struct keel_req *req)
{
	struct keel_value	 v[LB__MAX];
	struct keel_board	 b;
	struct keel_board_entry	 e;
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	struct keel_buf		 buf = { NULL, 0, 0 };
	struct keel_jw		 w;
	enum keel_err		 er;
	bool			 found = false;

	if (lb_board(req, LB_LIMIT, v, &b) != KEEL_STEP_GO)
		return KEEL_OK;
	/* The rank from Redis in O(log N) when it has the board. */
	er = keel_board_rank(req->redis, &b, req->user->id, &e, &found);
	if (er != KEEL_OK && er != KEEL_ENOENT && er != KEEL_EUNAVAIL)
		return er;
	if (er == KEEL_OK && !found) {
		keel_http_reply_error(req, 404, "not_found",
		    "you are not on this leaderboard");
		return KEEL_OK;
	}
	lb_params(&p, &b);
	keel_db_param_int(&p, req->user->id);
	if ((er = keel_db_query(req->db, found ? &q_lb_me : &q_lb_me_ranked,
	    &p, &rows)) != KEEL_OK)
		return er;
	if (keel_rows_count(rows) == 0) {
		keel_rows_free(rows);
		keel_http_reply_error(req, 404, "not_found",
		    "you are not on this leaderboard");
		return KEEL_OK;
	}
	keel_jw_init(&w, &buf);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "userId");
	keel_jw_int(&w, req->user->id);
	keel_jw_key(&w, "rank");
	keel_jw_int(&w, found ? e.rank : keel_rows_int64(rows, 0, 2));
	keel_jw_key(&w, "score");
	keel_jw_int(&w, found ? e.score : keel_rows_int64(rows, 0, 0));
	keel_jw_key(&w, "attempts");
	keel_jw_int(&w, keel_rows_int64(rows, 0, 1));
	keel_jw_obj_close(&w);
	keel_rows_free(rows);
	keel_http_reply_buf(req, 200, &buf);
	keel_buf_free(&buf);
	return KEEL_OK;
}

/* The page's key: the query, and the UTC day (periods end on one). */
static const char *
lb_cache_key(struct keel_req *req)
{
	char	 now[KEEL_TIME_LEN + 1];

	keel_time_format(time(NULL), now);
	/* The date: RFC 3339's first ten characters. */
	return keel_arena_printf(req->arena, "%s?%s|%.10s", req->path,
	    req->query, now);
}

/* The page's namespace: its scope's; NULL (not cached) for a testId
 * the handler will refuse. */
static const char *
lb_cache_ns(struct keel_req *req)
{
	const char	*s = keel_http_query(req, "testId");
	char		*ns;
	int64_t		 test = 0;

	if (s != NULL && !keel_parse_int64(s, 1, INT64_MAX, &test))
		return NULL;
	ns = keel_arena_alloc(req->arena, KEEL_BOARD_NS_MAX);
	keel_board_ns(ns, KEEL_BOARD_NS_MAX, test);
	return ns;
}

static const struct keel_route lb_routes[] = {
	{ .method = "GET", .pattern = "/api/leaderboard", .handler = lb_list,
	    .access = KEEL_ACCESS_USER, .cache = { .ns = "leaderboard",
	    .ttl = KEEL_CACHE_TTL_LEADERBOARD, .key = lb_cache_key,
	    .ns_of = lb_cache_ns }, .query = KEEL_QUERY_HANDLER },
	{ .method = "GET", .pattern = "/api/leaderboard/me",
	    .handler = lb_me, .access = KEEL_ACCESS_USER,
	    .query = KEEL_QUERY_HANDLER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "leaderboard",
	    .routes = lb_routes, .nroutes = KEEL_NELEM(lb_routes) };

	return keel_serve(argc, argv, &app);
}
