/* SPDX-License-Identifier: ISC */
/*
 * cars.c -- the fleet's cars (API.md, "Fleet").
 *
 * Lists are keyset-paginated newest first over (created_at, id), which the
 * index cars_page_idx serves as a range scan.  Deleting archives.  Reads
 * are cached in the "cars" namespace (5 min, API.md); every write that
 * changes a row bumps the namespace after it commits, so the next read
 * misses.  One namespace for lists and items: a write changes both.
 *
 * A car with an active contract whose period has not ended stays in
 * service: archiving it is a 409.  The car's row orders archiving against
 * a contract being written (contracts.c locks the row FOR SHARE to insert
 * one or change its dates): the archive updates the row first, which
 * waits for such a writer to commit, and only then looks for active
 * contracts, in a statement of its own and so, under READ COMMITTED, a
 * snapshot that sees what the writer committed.  A writer that comes
 * after the update waits on the row and then finds the car archived.  One
 * UPDATE ... WHERE NOT EXISTS would not do: its snapshot is taken before
 * it waits on the row, and misses the contract it waited for.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include "keel/cache.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/resource.h"
#include "keel/text.h"
#include "keel/serve.h"

/* The car object: every statement returns these, in this order. */
#define CAR_COLS "id, license_plate AS \"licensePlate\", manufacturer, " \
	"model, category, status, year, is_archived AS \"isArchived\", " \
	KEEL_SQL_TIME("created_at", "createdAt") ", " \
	KEEL_SQL_TIME("updated_at", "updatedAt")

static const struct keel_col car_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("licensePlate", TEXT),
	KEEL_COL("manufacturer", TEXT), KEEL_COL("model", TEXT),
	KEEL_COL("category", TEXT), KEEL_COL("status", TEXT),
	KEEL_COL("year", INT), KEEL_COL("isArchived", BOOL),
	KEEL_COL("createdAt", TEXT), KEEL_COL("updatedAt", TEXT),
};

static const struct keel_constraint car_cons[] = {
	{ .name = "cars_license_plate_key", .reply = { .status = 409,
	    .message = "a car with this license plate exists",
	    .field = "licensePlate", .why = "is already registered" } },
};

static const struct keel_resource car_res = { .name = "car", .ns = "cars",
	.cols = car_cols, .ncols = KEEL_NELEM(car_cols),
	.cons = car_cons, .ncons = KEEL_NELEM(car_cons),
};

static const char *const car_statuses[] = { "available", "rented",
    "maintenance", NULL };
static const char *const car_categories[] = { "economy", "compact",
    "midsize", "fullsize", "suv", "van", "luxury", "truck", NULL };

/* Plates: letters, digits, inner spaces and dashes (sql/001_cars.sql). */
static bool
cars_plate_check(const char *s)
{
	size_t	 i, n = strlen(s);

	if (n < 2 || n > 16 || !isalnum((unsigned char)s[0]) ||
	    !isalnum((unsigned char)s[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != ' ' && s[i] != '-')
			return false;
	return true;
}

enum car_field {
	CAR_PLATE, CAR_MANUFACTURER, CAR_MODEL, CAR_CATEGORY, CAR_STATUS,
	CAR_YEAR, CAR_ARCHIVED, CAR__MAX
};

static const struct keel_field car_fields[CAR__MAX] = {
	[CAR_PLATE] = { .name = "licensePlate", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 2, .max = 16, .check = cars_plate_check,
	    .check_msg = "must be 2-16 letters, digits, spaces or dashes" },
	[CAR_MANUFACTURER] = { .name = "manufacturer",
	    .type = KEEL_FIELD_STRING, .required = true, .min = 1, .max = 100,
	    .check = keel_text_one_line, .check_msg = "must be one line, "
	    "without control characters" },
	[CAR_MODEL] = { .name = "model", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 100,
	    .check = keel_text_one_line, .check_msg = "must be one line, "
	    "without control characters" },
	[CAR_CATEGORY] = { .name = "category", .type = KEEL_FIELD_ENUM,
	    .required = true, .values = car_categories },
	[CAR_STATUS] = { .name = "status", .type = KEEL_FIELD_ENUM,
	    .values = car_statuses },
	[CAR_YEAR] = { .name = "year", .type = KEEL_FIELD_INT,
	    .required = true, .min = 1900, .max = 2100 },
	[CAR_ARCHIVED] = { .name = "isArchived", .type = KEEL_FIELD_BOOL },
};

/* The list's filters, $4..$8 of its statements (resource.h). */
static const struct keel_field car_filters[] = {
	{ .name = "archived", .type = KEEL_FIELD_BOOL, .def = "false" },
	{ .name = "status", .type = KEEL_FIELD_ENUM, .values = car_statuses },
	{ .name = "manufacturer", .type = KEEL_FIELD_STRING, .min = 1,
	    .max = 100 },
	{ .name = "model", .type = KEEL_FIELD_STRING, .min = 1, .max = 100 },
	{ .name = "category", .type = KEEL_FIELD_ENUM,
	    .values = car_categories },
};

/* A NULL filter's arm goes: lib/db.c prepares a statement per set. */
#define CARS_LIST "SELECT " CAR_COLS " FROM cars WHERE is_archived = $4 " \
	"AND ($5::text IS NULL OR status = $5) " \
	"AND ($6::text IS NULL OR manufacturer = $6) " \
	"AND ($7::text IS NULL OR model = $7) " \
	"AND ($8::text IS NULL OR category = $8) "

static const struct keel_list cars_list_rows = { .scope = "cars",
	.after = { .name = "cars_list_after", .sql = CARS_LIST
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "cars_list_before", .sql = CARS_LIST
	    KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.filters = car_filters, .nfilters = KEEL_NELEM(car_filters),
};

static const struct keel_query q_car_get = { .name = "cars_get",
	.sql = "SELECT " CAR_COLS " FROM cars WHERE id = $1",
	.target = KEEL_DB_READ };

static const struct keel_query q_car_insert = { .name = "cars_insert",
	.sql = "INSERT INTO cars (license_plate, manufacturer, model, "
	"category, status, year) VALUES (upper($1), $2, $3, $4, "
	"COALESCE($5, 'available'), $6::integer) RETURNING " CAR_COLS,
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_car_update = { .name = "cars_update",
	.sql = "UPDATE cars SET "
	"license_plate = COALESCE(upper($2), license_plate), "
	"manufacturer = COALESCE($3, manufacturer), "
	"model = COALESCE($4, model), category = COALESCE($5, category), "
	"status = COALESCE($6, status), year = COALESCE($7::integer, year), "
	"is_archived = COALESCE($8::boolean, is_archived), updated_at = now() "
	"WHERE id = $1 RETURNING " CAR_COLS, .target = KEEL_DB_PRIMARY };

static const struct keel_query q_car_archive = { .name = "cars_archive",
	.sql = "UPDATE cars SET is_archived = true, updated_at = now() "
	"WHERE id = $1 RETURNING " CAR_COLS, .target = KEEL_DB_PRIMARY };

/* An active contract of car $1 not yet ended: the car stays in service. */
static const struct keel_query q_car_booked = { .name = "cars_booked",
	.sql = "SELECT FROM contracts WHERE car_id = $1 AND status = 'active' "
	"AND end_date >= current_date LIMIT 1", .target = KEEL_DB_PRIMARY };

static enum keel_err
cars_list(struct keel_req *req)
{
	return keel_res_list(req, &car_res, &cars_list_rows, NULL);
}

static enum keel_err
cars_get(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	return keel_res_get(req, &car_res, &q_car_get, &p);
}

/* $1..$6 of the insert, $2..$8 of the update: car_fields in order. */
static void
cars_params(struct keel_db_params *p, const struct keel_value *v,
    size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		keel_res_param(p, &v[i]);
}

static enum keel_err
cars_create(struct keel_req *req)
{
	struct keel_value	 v[CAR__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_car_insert, .p = &p,
	    .status = 201, .location = "/api/cars/" };

	if (keel_http_body_fields(req, car_fields, CAR__MAX, KEEL_FIELDS_ALL,
	    v) != KEEL_STEP_GO)
		return KEEL_OK;
	if (v[CAR_ARCHIVED].present) {
		keel_http_reply_field(req, "isArchived",
		    "can't be set on creation");
		return KEEL_OK;
	}
	keel_db_params_init(&p);
	cars_params(&p, v, CAR_ARCHIVED);
	return keel_res_change(req, &car_res, &w);
}

/*
 * In the archive's transaction, after its UPDATE locked the car's row:
 * 409 (rolled back) when the car has an active contract not yet ended.
 */
static enum keel_err
cars_unbooked(struct keel_req *req, const struct keel_rows *rows,
    struct keel_res_write *w)
{
	struct keel_db_params	 p;
	struct keel_rows	*booked = NULL;
	enum keel_err		 er;

	(void)w;
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_rows_int64(rows, 0, 0));	/* its id */
	if ((er = keel_db_query(req->db, &q_car_booked, &p, &booked)) ==
	    KEEL_OK && keel_rows_count(booked) > 0)
		keel_http_reply_error(req, 409, "conflict", "the car has "
		    "active contracts; cancel or complete them first");
	keel_rows_free(booked);
	return er;
}

static enum keel_err
cars_patch(struct keel_req *req)
{
	struct keel_value	 v[CAR__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_car_update, .p = &p,
	    .status = 200 };

	if (keel_http_body_fields(req, car_fields, CAR__MAX, KEEL_FIELDS_SOME,
	    v) != KEEL_STEP_GO)
		return KEEL_OK;
	/* isArchived true archives, as DELETE does: the same refusal. */
	if (v[CAR_ARCHIVED].present && v[CAR_ARCHIVED].b)
		w.in_tx = cars_unbooked;
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	cars_params(&p, v, CAR__MAX);
	return keel_res_change(req, &car_res, &w);
}

static enum keel_err
cars_archive(struct keel_req *req)
{
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_car_archive, .p = &p,
	    .status = 200, .in_tx = cars_unbooked };

	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	return keel_res_change(req, &car_res, &w);
}

/* Reads are cached: the pipeline serves them through memcached. */
#define CARS_CACHE	{ .ns = "cars", .ttl = KEEL_CACHE_TTL_CARS }

static const struct keel_route cars_routes[] = {
	{ .method = "GET", .pattern = "/api/cars", .handler = cars_list,
	    .access = KEEL_ACCESS_USER, .cache = CARS_CACHE,
	    .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/cars", .handler = cars_create,
	    .access = KEEL_ACCESS_STAFF },
	{ .method = "GET", .pattern = "/api/cars/{id:int}",
	    .handler = cars_get, .access = KEEL_ACCESS_USER,
	    .cache = CARS_CACHE },
	{ .method = "PATCH", .pattern = "/api/cars/{id:int}",
	    .handler = cars_patch, .access = KEEL_ACCESS_STAFF },
	{ .method = "DELETE", .pattern = "/api/cars/{id:int}",
	    .handler = cars_archive, .access = KEEL_ACCESS_STAFF },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "cars",
	    .routes = cars_routes, .nroutes = KEEL_NELEM(cars_routes) };

	return keel_serve(argc, argv, &app);
}
