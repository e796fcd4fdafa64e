/* SPDX-License-Identifier: ISC */
/*
 * cars.c -- the fleet's cars (API.md, "Fleet").
 *
 * Lists are keyset-paginated newest first over (created_at, id), which the
 * index cars_page_idx serves as a range scan.  Deleting archives.  Reads
 * are cached in the "cars" namespace (5 min, API.md); every write that
 * changes a row bumps the namespace after it commits, so the next read
 * misses.  One namespace for lists and items: a write changes both.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/page.h"
#include "keel/serve.h"

/* Columns every statement returns, in this order (see car_write). */
#define CAR_COLS "id, license_plate, manufacturer, model, category, status, " \
	"year, is_archived, " \
	"to_char(created_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), " \
	"to_char(updated_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

enum car_col {
	COL_ID, COL_PLATE, COL_MANUFACTURER, COL_MODEL, COL_CATEGORY,
	COL_STATUS, COL_YEAR, COL_ARCHIVED, COL_CREATED, COL_UPDATED
};

static const char *const car_statuses[] = { "available", "rented",
    "maintenance", NULL };
static const char *const car_categories[] = { "economy", "compact",
    "midsize", "fullsize", "suv", "van", "luxury", "truck", NULL };

/* Plates: letters, digits, inner spaces and dashes (sql/001_cars.sql). */
static int
cars_plate_check(const char *s)
{
	size_t	 i, n = strlen(s);

	if (n < 2 || n > 16 || !isalnum((unsigned char)s[0]) ||
	    !isalnum((unsigned char)s[n - 1]))
		return -1;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != ' ' && s[i] != '-')
			return -1;
	return 0;
}

enum car_field {
	CAR_PLATE, CAR_MANUFACTURER, CAR_MODEL, CAR_CATEGORY, CAR_STATUS,
	CAR_YEAR, CAR_ARCHIVED, CAR__MAX
};

static const struct keel_field car_fields[CAR__MAX] = {
	[CAR_PLATE] = { "licensePlate", KEEL_FIELD_STRING, 1, 0, 2, 16, NULL,
	    cars_plate_check, "must be 2-16 letters, digits, spaces or dashes" },
	[CAR_MANUFACTURER] = { "manufacturer", KEEL_FIELD_STRING, 1, 0, 1, 100,
	    NULL, NULL, NULL },
	[CAR_MODEL] = { "model", KEEL_FIELD_STRING, 1, 0, 1, 100, NULL, NULL,
	    NULL },
	[CAR_CATEGORY] = { "category", KEEL_FIELD_ENUM, 1, 0, 0, 0,
	    car_categories, NULL, NULL },
	[CAR_STATUS] = { "status", KEEL_FIELD_ENUM, 0, 0, 0, 0, car_statuses,
	    NULL, NULL },
	[CAR_YEAR] = { "year", KEEL_FIELD_INT, 1, 0, 1900, 2100, NULL, NULL,
	    NULL },
	[CAR_ARCHIVED] = { "isArchived", KEEL_FIELD_BOOL, 0, 0, 0, 0, NULL,
	    NULL, NULL },
};

enum car_filter {
	FILTER_STATUS, FILTER_MANUFACTURER, FILTER_MODEL, FILTER_CATEGORY,
	FILTER_ARCHIVED, FILTER__MAX
};

static const struct keel_field car_filters[FILTER__MAX] = {
	[FILTER_STATUS] = { "status", KEEL_FIELD_ENUM, 0, 0, 0, 0,
	    car_statuses, NULL, NULL },
	[FILTER_MANUFACTURER] = { "manufacturer", KEEL_FIELD_STRING, 0, 0, 1,
	    100, NULL, NULL, NULL },
	[FILTER_MODEL] = { "model", KEEL_FIELD_STRING, 0, 0, 1, 100, NULL,
	    NULL, NULL },
	[FILTER_CATEGORY] = { "category", KEEL_FIELD_ENUM, 0, 0, 0, 0,
	    car_categories, NULL, NULL },
	[FILTER_ARCHIVED] = { "archived", KEEL_FIELD_BOOL, 0, 0, 0, 0, NULL,
	    NULL, NULL },
};

/*
 * One statement per direction; a NULL filter or cursor is folded away by
 * the planner (the connection plans each execution: plan_cache_mode).
 */
#define CARS_WHERE "WHERE is_archived = $1 " \
	"AND ($2::text IS NULL OR status = $2) " \
	"AND ($3::text IS NULL OR manufacturer = $3) " \
	"AND ($4::text IS NULL OR model = $4) " \
	"AND ($5::text IS NULL OR category = $5) "

static const struct keel_query q_cars_after = { "cars_list_after",
	"SELECT " CAR_COLS " FROM cars " CARS_WHERE
	"AND ($6::timestamptz IS NULL OR "
	"(created_at, id) < ($6::timestamptz, $7::bigint)) "
	"ORDER BY created_at DESC, id DESC LIMIT $8", 8, KEEL_DB_READ };

static const struct keel_query q_cars_before = { "cars_list_before",
	"SELECT " CAR_COLS " FROM cars " CARS_WHERE
	"AND (created_at, id) > ($6::timestamptz, $7::bigint) "
	"ORDER BY created_at ASC, id ASC LIMIT $8", 8, KEEL_DB_READ };

static const struct keel_query q_car_get = { "cars_get",
	"SELECT " CAR_COLS " FROM cars WHERE id = $1", 1, KEEL_DB_READ };

static const struct keel_query q_car_insert = { "cars_insert",
	"INSERT INTO cars (license_plate, manufacturer, model, category, "
	"status, year) VALUES ($1, $2, $3, $4, COALESCE($5, 'available'), "
	"$6::integer) RETURNING " CAR_COLS, 6, KEEL_DB_PRIMARY };

static const struct keel_query q_car_update = { "cars_update",
	"UPDATE cars SET license_plate = COALESCE($2, license_plate), "
	"manufacturer = COALESCE($3, manufacturer), "
	"model = COALESCE($4, model), category = COALESCE($5, category), "
	"status = COALESCE($6, status), year = COALESCE($7::integer, year), "
	"is_archived = COALESCE($8::boolean, is_archived), updated_at = now() "
	"WHERE id = $1 RETURNING " CAR_COLS, 8, KEEL_DB_PRIMARY };

static const struct keel_query q_car_archive = { "cars_archive",
	"UPDATE cars SET is_archived = true, updated_at = now() "
	"WHERE id = $1 RETURNING " CAR_COLS, 1, KEEL_DB_PRIMARY };

/* Row r as a car object (API.md, "Fleet"). */
static void
car_write(struct keel_jw *w, const struct keel_rows *rows, size_t r)
{
	keel_jw_obj_open(w);
	keel_jw_key(w, "id");
	keel_jw_int(w, keel_rows_int64(rows, r, COL_ID));
	keel_jw_key(w, "licensePlate");
	keel_jw_str(w, keel_rows_value(rows, r, COL_PLATE));
	keel_jw_key(w, "manufacturer");
	keel_jw_str(w, keel_rows_value(rows, r, COL_MANUFACTURER));
	keel_jw_key(w, "model");
	keel_jw_str(w, keel_rows_value(rows, r, COL_MODEL));
	keel_jw_key(w, "category");
	keel_jw_str(w, keel_rows_value(rows, r, COL_CATEGORY));
	keel_jw_key(w, "status");
	keel_jw_str(w, keel_rows_value(rows, r, COL_STATUS));
	keel_jw_key(w, "year");
	keel_jw_int(w, keel_rows_int64(rows, r, COL_YEAR));
	keel_jw_key(w, "isArchived");
	keel_jw_bool(w, keel_rows_bool(rows, r, COL_ARCHIVED));
	keel_jw_key(w, "createdAt");
	keel_jw_str(w, keel_rows_value(rows, r, COL_CREATED));
	keel_jw_key(w, "updatedAt");
	keel_jw_str(w, keel_rows_value(rows, r, COL_UPDATED));
	keel_jw_obj_close(w);
}

/* Replies with the single car in rows, or 404 when there is none. */
static enum keel_err
cars_reply_one(struct keel_req *req, int status, struct keel_rows *rows)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;

	if (keel_rows_count(rows) == 0) {
		keel_http_reply_error(req, 404, "not_found", "no such car",
		    NULL);
		return KEEL_OK;
	}
	keel_jw_init(&w, &b);
	car_write(&w, rows, 0);
	keel_http_reply_buf(req, status, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

/* Sort keys of a car row, as the list's cursors carry them. */
static const size_t cars_keys[] = { COL_CREATED, COL_ID };

static enum keel_err
cars_list_fill(struct keel_req *req, void *arg)
{
	struct keel_value	 f[FILTER__MAX];
	struct keel_page	 pg;
	struct keel_rows	*rows = NULL;
	struct keel_buf		 b = { NULL, 0, 0 };
	struct keel_jw		 w;
	struct keel_page_window	 win;
	const char		*params[8];
	char			 limit[16];
	size_t			 i;
	int64_t			 id;
	enum keel_err		 er;

	(void)arg;
	if (keel_http_query_fields(req, car_filters, FILTER__MAX, f) ||
	    keel_page_from_request(req, "cars", 2, &pg))
		return KEEL_OK;
	/* A cursor's id key must be an id: the signature says we made it. */
	if (pg.dir != KEEL_PAGE_FIRST &&
	    keel_parse_int64(pg.keys[1], 1, INT64_MAX, &id) == -1)
		return KEEL_EINTERNAL;
	params[0] = f[FILTER_ARCHIVED].present && f[FILTER_ARCHIVED].b ?
	    "true" : "false";
	params[1] = f[FILTER_STATUS].s;
	params[2] = f[FILTER_MANUFACTURER].s;
	params[3] = f[FILTER_MODEL].s;
	params[4] = f[FILTER_CATEGORY].s;
	params[5] = pg.dir == KEEL_PAGE_FIRST ? NULL : pg.keys[0];
	params[6] = pg.dir == KEEL_PAGE_FIRST ? NULL : pg.keys[1];
	/* One row more than asked tells whether another page follows. */
	snprintf(limit, sizeof(limit), "%d", pg.limit + 1);
	params[7] = limit;
	er = keel_db_query(req->db, pg.dir == KEEL_PAGE_BEFORE ?
	    &q_cars_before : &q_cars_after, params, &rows);
	if (er != KEEL_OK)
		goto out;

	keel_page_window(req, &pg, "cars", rows, cars_keys, 2, &win);
	/* Written as it is read: no object per value (json.h). */
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "data");
	keel_jw_arr_open(&w);
	for (i = 0; i < win.n; i++)
		car_write(&w, rows, keel_page_at(&win, i));
	keel_jw_arr_close(&w);
	keel_jw_key(&w, "page");
	keel_page_write(&w, &pg, win.next, win.prev);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 200, &b);
out:
	keel_buf_free(&b);
	keel_rows_free(rows);
	return er;
}

/* The whole query string is the key (hashed by the cache): filters,
 * limit and cursor all shape the page.  Also the router's prefetch. */
static const char *
cars_list_key(struct keel_req *req, const char **ns)
{
	*ns = "cars";
	return keel_arena_printf(req->arena, "list?%s", req->query);
}

static enum keel_err
cars_list(struct keel_req *req)
{
	const char	*ns;

	return keel_cache_serve(req, "cars", cars_list_key(req, &ns),
	    KEEL_CACHE_TTL_CARS, cars_list_fill, NULL);
}

static enum keel_err
cars_get_fill(struct keel_req *req, void *arg)
{
	struct keel_rows	*rows = NULL;
	const char		*params[1];
	enum keel_err		 er;

	(void)arg;
	params[0] = keel_http_param(req, "id");
	if ((er = keel_db_query(req->db, &q_car_get, params, &rows)) ==
	    KEEL_OK)
		er = cars_reply_one(req, 200, rows);
	keel_rows_free(rows);
	return er;
}

/* One car's key; also the router's prefetch. */
static const char *
cars_get_key(struct keel_req *req, const char **ns)
{
	*ns = "cars";
	return keel_arena_printf(req->arena, "item:%s",
	    keel_http_param(req, "id"));
}

static enum keel_err
cars_get(struct keel_req *req)
{
	const char	*ns;

	return keel_cache_serve(req, "cars", cars_get_key(req, &ns),
	    KEEL_CACHE_TTL_CARS, cars_get_fill, NULL);
}

/*
 * After a write committed: every cached car read may be old now.  A
 * failed bump is logged by the cache; the write still succeeded.
 */
static void
cars_invalidate(struct keel_req *req, struct keel_rows *rows)
{
	if (keel_rows_count(rows) > 0)
		keel_cache_invalidate(req->cache, "cars");
}

/* Plates compare case-insensitively: store them upper-cased. */
static const char *
cars_plate_upper(struct keel_req *req, const char *s)
{
	char	*p, *c;

	if (s == NULL)
		return NULL;
	p = keel_arena_strdup(req->arena, s);
	for (c = p; *c != '\0'; c++)
		*c = (char)toupper((unsigned char)*c);
	return p;
}

/* Maps a write's failure to its reply; KEEL_OK once replied. */
static enum keel_err
cars_write_failed(struct keel_req *req, enum keel_err er)
{
	struct json_object	*fields;

	if (er == KEEL_ECONFLICT &&
	    strcmp(keel_db_constraint(req->db), "cars_license_plate_key") ==
	    0) {
		fields = json_object_new_object();
		json_object_object_add(fields, "licensePlate",
		    json_object_new_string("is already registered"));
		keel_http_reply_error(req, 409, "conflict",
		    "a car with this license plate exists", fields);
		json_object_put(fields);
		return KEEL_OK;
	}
	if (er == KEEL_EINVAL) {
		keel_http_reply_error(req, 422, "validation_failed",
		    "the car breaks a data rule", NULL);
		return KEEL_OK;
	}
	return er;
}

static enum keel_err
cars_create(struct keel_req *req)
{
	struct keel_value	 v[CAR__MAX];
	struct keel_rows	*rows = NULL;
	const char		*params[6];
	enum keel_err		 er;

	if (keel_http_body_fields(req, car_fields, CAR__MAX, KEEL_FIELDS_ALL,
	    v))
		return KEEL_OK;
	if (v[CAR_ARCHIVED].present) {
		struct json_object *f = json_object_new_object();

		json_object_object_add(f, "isArchived",
		    json_object_new_string("can't be set on creation"));
		keel_http_reply_error(req, 422, "validation_failed",
		    "some fields are not valid", f);
		json_object_put(f);
		return KEEL_OK;
	}
	params[0] = cars_plate_upper(req, v[CAR_PLATE].s);
	params[1] = v[CAR_MANUFACTURER].s;
	params[2] = v[CAR_MODEL].s;
	params[3] = v[CAR_CATEGORY].s;
	params[4] = v[CAR_STATUS].s;
	params[5] = keel_arena_printf(req->arena, "%lld",
	    (long long)v[CAR_YEAR].i);
	er = keel_db_query(req->db, &q_car_insert, params, &rows);
	if (er == KEEL_OK) {
		cars_invalidate(req, rows);
		er = cars_reply_one(req, 201, rows);
	}
	else
		er = cars_write_failed(req, er);
	keel_rows_free(rows);
	return er;
}

static enum keel_err
cars_patch(struct keel_req *req)
{
	struct keel_value	 v[CAR__MAX];
	struct keel_rows	*rows = NULL;
	const char		*params[8];
	enum keel_err		 er;

	if (keel_http_body_fields(req, car_fields, CAR__MAX, KEEL_FIELDS_SOME,
	    v))
		return KEEL_OK;
	params[0] = keel_http_param(req, "id");
	params[1] = cars_plate_upper(req, v[CAR_PLATE].s);
	params[2] = v[CAR_MANUFACTURER].s;
	params[3] = v[CAR_MODEL].s;
	params[4] = v[CAR_CATEGORY].s;
	params[5] = v[CAR_STATUS].s;
	params[6] = v[CAR_YEAR].present ? keel_arena_printf(req->arena,
	    "%lld", (long long)v[CAR_YEAR].i) : NULL;
	params[7] = v[CAR_ARCHIVED].present ? (v[CAR_ARCHIVED].b ? "true" :
	    "false") : NULL;
	er = keel_db_query(req->db, &q_car_update, params, &rows);
	if (er == KEEL_OK) {
		cars_invalidate(req, rows);
		er = cars_reply_one(req, 200, rows);
	}
	else
		er = cars_write_failed(req, er);
	keel_rows_free(rows);
	return er;
}

static enum keel_err
cars_archive(struct keel_req *req)
{
	struct keel_rows	*rows = NULL;
	const char		*params[1];
	enum keel_err		 er;

	params[0] = keel_http_param(req, "id");
	if ((er = keel_db_query(req->db, &q_car_archive, params, &rows)) ==
	    KEEL_OK) {
		cars_invalidate(req, rows);
		er = cars_reply_one(req, 200, rows);
	}
	keel_rows_free(rows);
	return er;
}

static const struct keel_route cars_routes[] = {
	{ "GET", "/api/cars", cars_list, KEEL_ACCESS_USER },
	{ "POST", "/api/cars", cars_create, KEEL_ACCESS_STAFF },
	{ "GET", "/api/cars/{id:int}", cars_get, KEEL_ACCESS_USER },
	{ "PATCH", "/api/cars/{id:int}", cars_patch, KEEL_ACCESS_STAFF },
	{ "DELETE", "/api/cars/{id:int}", cars_archive, KEEL_ACCESS_STAFF },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "cars", cars_routes,
	    sizeof(cars_routes) / sizeof(cars_routes[0]) };

	/* Their lookups overlap the Redis round trip (router.h). */
	keel_router_prefetch(cars_list, cars_list_key);
	keel_router_prefetch(cars_get, cars_get_key);
	return keel_serve(argc, argv, &app);
}
