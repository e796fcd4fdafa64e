/* SPDX-License-Identifier: ISC */
/*
 * contracts.c -- rental contracts (API.md "Fleet").
 *
 * The database guards double booking: contracts_no_overlap (an exclusion
 * constraint over the car and the inclusive date range of active
 * contracts, sql/003_contracts.sql) refuses the second of two racing
 * inserts, which answers 409 here.  Lists are keyset-paginated newest
 * first over (created_at, id) and embed each contract's car and customer,
 * loaded with one batched query per relation (lib/batch.c), never one
 * per row.  Customers see only their own contracts; another's answers
 * 404.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "keel/batch.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/page.h"
#include "keel/router.h"
#include "keel/serve.h"

#define CONTRACT_COLS "id, car_id, customer_id, start_date::text, " \
	"end_date::text, status, " \
	"to_char(created_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), " \
	"to_char(updated_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

enum contract_col {
	COL_ID, COL_CAR, COL_CUSTOMER, COL_START, COL_END, COL_STATUS,
	COL_CREATED, COL_UPDATED
};

static const char *const contract_statuses[] = { "active", "cancelled",
    "completed", NULL };
/* A PATCH may end a contract, not revive one. */
static const char *const contract_endings[] = { "cancelled", "completed",
    NULL };

enum contract_field {
	CON_CAR, CON_CUSTOMER, CON_START, CON_END, CON_STATUS, CON__MAX
};

static const struct keel_field contract_fields[CON__MAX] = {
	[CON_CAR] = { "carId", KEEL_FIELD_ID, 1, 0, 0, 0, NULL, NULL, NULL },
	[CON_CUSTOMER] = { "customerId", KEEL_FIELD_ID, 1, 0, 0, 0, NULL,
	    NULL, NULL },
	[CON_START] = { "startDate", KEEL_FIELD_DATE, 1, 0, 0, 0, NULL, NULL,
	    NULL },
	[CON_END] = { "endDate", KEEL_FIELD_DATE, 1, 0, 0, 0, NULL, NULL,
	    NULL },
	[CON_STATUS] = { "status", KEEL_FIELD_ENUM, 0, 0, 0, 0,
	    contract_endings, NULL, NULL },
};

enum contract_filter {
	FILTER_CAR, FILTER_CUSTOMER, FILTER_FROM, FILTER_TO, FILTER_STATUS,
	FILTER__MAX
};

static const struct keel_field contract_filters[FILTER__MAX] = {
	[FILTER_CAR] = { "carId", KEEL_FIELD_ID, 0, 0, 0, 0, NULL, NULL,
	    NULL },
	[FILTER_CUSTOMER] = { "customerId", KEEL_FIELD_ID, 0, 0, 0, 0, NULL,
	    NULL, NULL },
	[FILTER_FROM] = { "from", KEEL_FIELD_DATE, 0, 0, 0, 0, NULL, NULL,
	    NULL },
	[FILTER_TO] = { "to", KEEL_FIELD_DATE, 0, 0, 0, 0, NULL, NULL, NULL },
	[FILTER_STATUS] = { "status", KEEL_FIELD_ENUM, 0, 0, 0, 0,
	    contract_statuses, NULL, NULL },
};

/*
 * Overlap with [from, to] is start <= to AND end >= from (both ends
 * inclusive), which contracts_dates_idx and contracts_car_dates_idx
 * serve.  A NULL filter folds away (the connection plans each run).
 */
#define CONTRACTS_WHERE "WHERE ($1::bigint IS NULL OR car_id = $1) " \
	"AND ($2::bigint IS NULL OR customer_id = $2) " \
	"AND ($3::date IS NULL OR end_date >= $3) " \
	"AND ($4::date IS NULL OR start_date <= $4) " \
	"AND ($5::text IS NULL OR status = $5) "

static const struct keel_query q_contracts_after = { "contracts_list_after",
	"SELECT " CONTRACT_COLS " FROM contracts " CONTRACTS_WHERE
	"AND ($6::timestamptz IS NULL OR "
	"(created_at, id) < ($6::timestamptz, $7::bigint)) "
	"ORDER BY created_at DESC, id DESC LIMIT $8", 8, KEEL_DB_READ };

static const struct keel_query q_contracts_before = {
	"contracts_list_before",
	"SELECT " CONTRACT_COLS " FROM contracts " CONTRACTS_WHERE
	"AND (created_at, id) > ($6::timestamptz, $7::bigint) "
	"ORDER BY created_at ASC, id ASC LIMIT $8", 8, KEEL_DB_READ };

static const struct keel_query q_contract_get = { "contracts_get",
	"SELECT " CONTRACT_COLS " FROM contracts WHERE id = $1", 1,
	KEEL_DB_READ };

/* The embedded relations, one query each per page (lib/batch.c). */
static const struct keel_query q_cars_batch = { "contracts_cars",
	"SELECT id, license_plate, manufacturer, model FROM cars "
	"WHERE id = ANY($1::bigint[])", 1, KEEL_DB_READ };

static const struct keel_query q_customers_batch = { "contracts_customers",
	"SELECT id, name, email FROM users WHERE id = ANY($1::bigint[])", 1,
	KEEL_DB_READ };

/* The car must be in service and the customer an active customer. */
static const struct keel_query q_contract_insert = { "contracts_insert",
	"INSERT INTO contracts (car_id, customer_id, start_date, end_date) "
	"SELECT c.id, u.id, $3::date, $4::date FROM cars c, users u "
	"WHERE c.id = $1 AND NOT c.is_archived AND u.id = $2 "
	"AND u.role = 'customer' AND u.is_active "
	"RETURNING " CONTRACT_COLS, 4, KEEL_DB_PRIMARY };

static const struct keel_query q_contract_refs = { "contracts_refs",
	"SELECT EXISTS (SELECT FROM cars WHERE id = $1 AND NOT is_archived), "
	"EXISTS (SELECT FROM users WHERE id = $2 AND role = 'customer' "
	"AND is_active)", 2, KEEL_DB_PRIMARY };

/* Only an active contract changes; $5 is the status it may end with. */
static const struct keel_query q_contract_update = { "contracts_update",
	"UPDATE contracts SET start_date = COALESCE($2::date, start_date), "
	"end_date = COALESCE($3::date, end_date), "
	"status = COALESCE($4, status), updated_at = now() "
	"WHERE id = $1 AND status = 'active' RETURNING " CONTRACT_COLS, 4,
	KEEL_DB_PRIMARY };

static const struct keel_query q_contract_status = { "contracts_status",
	"SELECT status FROM contracts WHERE id = $1", 1, KEEL_DB_PRIMARY };

/* The embedded relations of one reply. */
struct contract_refs {
	struct keel_batch	 cars;
	struct keel_batch	 customers;
};

static struct json_object *
contract_json(const struct keel_rows *rows, size_t r,
    const struct contract_refs *refs)
{
	struct json_object	*o, *e;
	const struct keel_rows	*rel;
	long			 i;

	o = json_object_new_object();
	json_object_object_add(o, "id",
	    json_object_new_int64(keel_rows_int64(rows, r, COL_ID)));
	json_object_object_add(o, "carId",
	    json_object_new_int64(keel_rows_int64(rows, r, COL_CAR)));
	json_object_object_add(o, "customerId",
	    json_object_new_int64(keel_rows_int64(rows, r, COL_CUSTOMER)));
	json_object_object_add(o, "startDate",
	    keel_json_str(keel_rows_value(rows, r, COL_START)));
	json_object_object_add(o, "endDate",
	    keel_json_str(keel_rows_value(rows, r, COL_END)));
	json_object_object_add(o, "status",
	    keel_json_str(keel_rows_value(rows, r, COL_STATUS)));
	json_object_object_add(o, "createdAt",
	    keel_json_str(keel_rows_value(rows, r, COL_CREATED)));
	json_object_object_add(o, "updatedAt",
	    keel_json_str(keel_rows_value(rows, r, COL_UPDATED)));

	e = NULL;
	rel = keel_batch_rows(&refs->cars);
	if ((i = keel_batch_find(&refs->cars,
	    keel_rows_int64(rows, r, COL_CAR))) >= 0) {
		e = json_object_new_object();
		json_object_object_add(e, "id", json_object_new_int64(
		    keel_rows_int64(rel, (size_t)i, 0)));
		json_object_object_add(e, "licensePlate",
		    keel_json_str(keel_rows_value(rel, (size_t)i, 1)));
		json_object_object_add(e, "manufacturer",
		    keel_json_str(keel_rows_value(rel, (size_t)i, 2)));
		json_object_object_add(e, "model",
		    keel_json_str(keel_rows_value(rel, (size_t)i, 3)));
	}
	json_object_object_add(o, "car", e);

	e = NULL;
	rel = keel_batch_rows(&refs->customers);
	if ((i = keel_batch_find(&refs->customers,
	    keel_rows_int64(rows, r, COL_CUSTOMER))) >= 0) {
		e = json_object_new_object();
		json_object_object_add(e, "id", json_object_new_int64(
		    keel_rows_int64(rel, (size_t)i, 0)));
		json_object_object_add(e, "name",
		    keel_json_str(keel_rows_value(rel, (size_t)i, 1)));
		json_object_object_add(e, "email",
		    keel_json_str(keel_rows_value(rel, (size_t)i, 2)));
	}
	json_object_object_add(o, "customer", e);
	return o;
}

/* Loads the cars and customers rows[0..n) refer to: two queries. */
static enum keel_err
contracts_load_refs(struct keel_req *req, const struct keel_rows *rows,
    size_t n, struct contract_refs *refs)
{
	size_t		 i;
	enum keel_err	 er;

	for (i = 0; i < n; i++) {
		keel_batch_add(&refs->cars, keel_rows_int64(rows, i, COL_CAR));
		keel_batch_add(&refs->customers,
		    keel_rows_int64(rows, i, COL_CUSTOMER));
	}
	if ((er = keel_batch_load(&refs->cars, req->db, &q_cars_batch)) !=
	    KEEL_OK)
		return er;
	return keel_batch_load(&refs->customers, req->db, &q_customers_batch);
}

static void
contracts_not_found(struct keel_req *req)
{
	keel_http_reply_error(req, 404, "not_found", "no such contract",
	    NULL);
}

/* 1 when the caller may see contract row r (staff, or its customer). */
static int
contracts_visible(const struct keel_req *req, const struct keel_rows *rows,
    size_t r)
{
	return req->user->role != KEEL_ROLE_CUSTOMER ||
	    keel_rows_int64(rows, r, COL_CUSTOMER) == req->user->id;
}

/* Replies with the one contract in rows, embedded, or 404. */
static enum keel_err
contracts_reply_one(struct keel_req *req, int status, struct keel_rows *rows)
{
	struct contract_refs	 refs;
	struct json_object	*o;
	enum keel_err		 er;

	if (keel_rows_count(rows) == 0 || !contracts_visible(req, rows, 0)) {
		contracts_not_found(req);
		return KEEL_OK;
	}
	keel_batch_init(&refs.cars);
	keel_batch_init(&refs.customers);
	if ((er = contracts_load_refs(req, rows, 1, &refs)) == KEEL_OK) {
		o = contract_json(rows, 0, &refs);
		keel_http_reply_json(req, status, o);
		json_object_put(o);
	}
	keel_batch_free(&refs.cars);
	keel_batch_free(&refs.customers);
	return er;
}

/* Sort keys of a contract row, as the list's cursors carry them. */
static const size_t contracts_keys[] = { COL_CREATED, COL_ID };

static enum keel_err
contracts_list(struct keel_req *req)
{
	struct keel_value	 f[FILTER__MAX];
	struct keel_page	 pg;
	struct contract_refs	 refs;
	struct keel_rows	*rows = NULL;
	struct json_object	*body, *data;
	struct keel_page_window	 w;
	const char		*params[8];
	size_t			 n, i;
	int64_t			 id;
	int			 back;
	enum keel_err		 er;

	keel_batch_init(&refs.cars);
	keel_batch_init(&refs.customers);
	if (keel_http_query_fields(req, contract_filters, FILTER__MAX, f) ||
	    keel_page_from_request(req, "contracts", 2, &pg))
		return KEEL_OK;
	if (pg.dir != KEEL_PAGE_FIRST &&
	    keel_parse_int64(pg.keys[1], 1, INT64_MAX, &id) == -1)
		return KEEL_EINTERNAL;
	if (f[FILTER_FROM].present && f[FILTER_TO].present &&
	    strcmp(f[FILTER_TO].s, f[FILTER_FROM].s) < 0) {
		struct json_object *fe = json_object_new_object();

		json_object_object_add(fe, "to",
		    json_object_new_string("must not be before from"));
		keel_http_reply_error(req, 400, "validation_failed",
		    "some query parameters are not valid", fe);
		json_object_put(fe);
		return KEEL_OK;
	}
	back = pg.dir == KEEL_PAGE_BEFORE;
	params[0] = f[FILTER_CAR].present ? keel_arena_printf(req->arena,
	    "%lld", (long long)f[FILTER_CAR].i) : NULL;
	/* A customer's list is their own, whatever they ask for. */
	if (req->user->role == KEEL_ROLE_CUSTOMER)
		params[1] = keel_arena_printf(req->arena, "%lld",
		    (long long)req->user->id);
	else
		params[1] = f[FILTER_CUSTOMER].present ?
		    keel_arena_printf(req->arena, "%lld",
		    (long long)f[FILTER_CUSTOMER].i) : NULL;
	if (req->user->role == KEEL_ROLE_CUSTOMER &&
	    f[FILTER_CUSTOMER].present &&
	    f[FILTER_CUSTOMER].i != req->user->id)
		params[1] = "0";	/* nobody's: an empty list, not 403 */
	params[2] = f[FILTER_FROM].s;
	params[3] = f[FILTER_TO].s;
	params[4] = f[FILTER_STATUS].s;
	params[5] = pg.dir == KEEL_PAGE_FIRST ? NULL : pg.keys[0];
	params[6] = pg.dir == KEEL_PAGE_FIRST ? NULL : pg.keys[1];
	params[7] = keel_arena_printf(req->arena, "%d", pg.limit + 1);
	if ((er = keel_db_query(req->db, back ? &q_contracts_before :
	    &q_contracts_after, params, &rows)) != KEEL_OK)
		goto out;
	keel_page_window(req, &pg, "contracts", rows, contracts_keys, 2, &w);
	n = w.n;
	if ((er = contracts_load_refs(req, rows, n, &refs)) != KEEL_OK)
		goto out;
	data = json_object_new_array_ext((int)n);
	for (i = 0; i < n; i++)
		json_object_array_add(data, contract_json(rows,
		    keel_page_at(&w, i), &refs));
	body = json_object_new_object();
	json_object_object_add(body, "data", data);
	json_object_object_add(body, "page", keel_page_json(&pg, w.next,
	    w.prev));
	keel_http_reply_json(req, 200, body);
	json_object_put(body);
out:
	keel_batch_free(&refs.cars);
	keel_batch_free(&refs.customers);
	keel_rows_free(rows);
	return er;
}

static enum keel_err
contracts_get(struct keel_req *req)
{
	struct keel_rows	*rows = NULL;
	const char		*params[1];
	enum keel_err		 er;

	params[0] = keel_http_param(req, "id");
	if ((er = keel_db_query(req->db, &q_contract_get, params, &rows)) ==
	    KEEL_OK)
		er = contracts_reply_one(req, 200, rows);
	keel_rows_free(rows);
	return er;
}

static void
contracts_field_error(struct keel_req *req, const char *field,
    const char *msg)
{
	struct json_object	*f;

	f = json_object_new_object();
	json_object_object_add(f, field, json_object_new_string(msg));
	keel_http_reply_error(req, 422, "validation_failed",
	    "some fields are not valid", f);
	json_object_put(f);
}

/* Maps a write's failure to its reply; KEEL_OK once replied. */
static enum keel_err
contracts_write_failed(struct keel_req *req, enum keel_err er)
{
	const char	*cons = keel_db_constraint(req->db);

	if (er == KEEL_ECONFLICT && strcmp(cons, "contracts_no_overlap") ==
	    0) {
		keel_http_reply_error(req, 409, "conflict",
		    "the car is already booked for some of these dates", NULL);
		return KEEL_OK;
	}
	if (er == KEEL_EINVAL && strcmp(cons, "contracts_dates_check") == 0) {
		contracts_field_error(req, "endDate",
		    "must not be before startDate");
		return KEEL_OK;
	}
	if (er == KEEL_EINVAL) {
		keel_http_reply_error(req, 422, "validation_failed",
		    "the contract breaks a data rule", NULL);
		return KEEL_OK;
	}
	return er;
}

static enum keel_err
contracts_create(struct keel_req *req)
{
	struct keel_value	 v[CON__MAX];
	struct keel_rows	*rows = NULL, *refs = NULL;
	const char		*params[4];
	enum keel_err		 er;

	if (keel_http_body_fields(req, contract_fields, CON__MAX,
	    KEEL_FIELDS_ALL, v))
		return KEEL_OK;
	if (v[CON_STATUS].present) {
		contracts_field_error(req, "status", "can't be set on "
		    "creation; a new contract is active");
		return KEEL_OK;
	}
	/* YYYY-MM-DD compares as text. */
	if (strcmp(v[CON_END].s, v[CON_START].s) < 0) {
		contracts_field_error(req, "endDate",
		    "must not be before startDate");
		return KEEL_OK;
	}
	params[0] = keel_arena_printf(req->arena, "%lld",
	    (long long)v[CON_CAR].i);
	params[1] = keel_arena_printf(req->arena, "%lld",
	    (long long)v[CON_CUSTOMER].i);
	params[2] = v[CON_START].s;
	params[3] = v[CON_END].s;
	er = keel_db_query(req->db, &q_contract_insert, params, &rows);
	if (er != KEEL_OK) {
		er = contracts_write_failed(req, er);
		goto out;
	}
	if (keel_rows_count(rows) == 1) {
		er = contracts_reply_one(req, 201, rows);
		goto out;
	}
	/* Nothing inserted: say which reference was wrong. */
	if ((er = keel_db_query(req->db, &q_contract_refs, params, &refs)) !=
	    KEEL_OK)
		goto out;
	if (!keel_rows_bool(refs, 0, 0))
		contracts_field_error(req, "carId",
		    "no such car in service");
	else
		contracts_field_error(req, "customerId",
		    "no such active customer");
out:
	keel_rows_free(refs);
	keel_rows_free(rows);
	return er;
}

static enum keel_err
contracts_patch(struct keel_req *req)
{
	struct keel_value	 v[CON__MAX];
	struct keel_rows	*rows = NULL;
	const char		*params[4];
	enum keel_err		 er;

	if (keel_http_body_fields(req, contract_fields, CON__MAX,
	    KEEL_FIELDS_SOME, v))
		return KEEL_OK;
	if (v[CON_CAR].present || v[CON_CUSTOMER].present) {
		contracts_field_error(req, v[CON_CAR].present ? "carId" :
		    "customerId", "can't be changed; cancel the contract and "
		    "create another");
		return KEEL_OK;
	}
	if (v[CON_START].present && v[CON_END].present &&
	    strcmp(v[CON_END].s, v[CON_START].s) < 0) {
		contracts_field_error(req, "endDate",
		    "must not be before startDate");
		return KEEL_OK;
	}
	params[0] = keel_http_param(req, "id");
	params[1] = v[CON_START].s;
	params[2] = v[CON_END].s;
	params[3] = v[CON_STATUS].s;
	er = keel_db_query(req->db, &q_contract_update, params, &rows);
	if (er != KEEL_OK) {
		er = contracts_write_failed(req, er);
		goto out;
	}
	if (keel_rows_count(rows) == 1) {
		er = contracts_reply_one(req, 200, rows);
		goto out;
	}
	/* Not changed: missing, or no longer active. */
	keel_rows_free(rows);
	rows = NULL;
	if ((er = keel_db_query(req->db, &q_contract_status, params, &rows)) !=
	    KEEL_OK)
		goto out;
	if (keel_rows_count(rows) == 0)
		contracts_not_found(req);
	else
		keel_http_reply_error(req, 409, "conflict",
		    keel_arena_printf(req->arena, "the contract is %s; only "
		    "an active contract changes", keel_rows_value(rows, 0, 0)),
		    NULL);
out:
	keel_rows_free(rows);
	return er;
}

static const struct keel_route contracts_routes[] = {
	{ "GET", "/api/contracts", contracts_list,
	    KEEL_ACCESS_STAFF | KEEL_ROLE_CUSTOMER },
	{ "POST", "/api/contracts", contracts_create, KEEL_ACCESS_STAFF },
	{ "GET", "/api/contracts/{id:int}", contracts_get,
	    KEEL_ACCESS_STAFF | KEEL_ROLE_CUSTOMER },
	{ "PATCH", "/api/contracts/{id:int}", contracts_patch,
	    KEEL_ACCESS_STAFF },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { "contracts", contracts_routes,
	    sizeof(contracts_routes) / sizeof(contracts_routes[0]) };

	return keel_serve(argc, argv, &app);
}
