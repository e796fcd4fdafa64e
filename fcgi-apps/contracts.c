/* SPDX-License-Identifier: ISC */
/*
 * contracts.c -- rental contracts (API.md "Fleet").
 *
 * The database guards double booking: contracts_no_overlap (an exclusion
 * constraint over the car and the inclusive date range of active
 * contracts, sql/003_contracts.sql) refuses the second of two racing
 * inserts, which answers 409 here.  Each contract embeds its car and its
 * customer.  Customers see only their own contracts; another's is a 404.
 * A new contract queues its customer's notification in its transaction
 * (contract_created: cron/drain-notifications.c).
 *
 * An active contract is on a car in service, for an active customer.
 * Inserting one, or changing its dates, checks the car is not archived
 * and the customer is an active customer, and holds both rows FOR SHARE
 * to the commit: an archive (cars.c) or a deactivation or role change
 * (users.c) racing it either went first, and the lock's recheck of the
 * newest row finds it, or waits for the commit and then sees the
 * contract.  Ending a contract needs neither, so one on a car archived,
 * or of a customer deactivated, before the rule winds down.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "keel/auth.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/outbox.h"
#include "keel/resource.h"
#include "keel/router.h"
#include "keel/serve.h"

#define CONTRACT_COLS "id, car_id AS \"carId\", " \
	"customer_id AS \"customerId\", start_date::text AS \"startDate\", " \
	"end_date::text AS \"endDate\", status, " \
	KEEL_SQL_TIME("created_at", "createdAt") ", " \
	KEEL_SQL_TIME("updated_at", "updatedAt")

static const struct keel_col contract_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("carId", INT),
	KEEL_COL("customerId", INT), KEEL_COL("startDate", TEXT),
	KEEL_COL("endDate", TEXT), KEEL_COL("status", TEXT),
	KEEL_COL("createdAt", TEXT), KEEL_COL("updatedAt", TEXT),
};

/* The embedded car and customer: one query each per reply. */
static const struct keel_col car_cols[] = {
	KEEL_COL("id", INT), KEEL_COL("licensePlate", TEXT),
	KEEL_COL("manufacturer", TEXT), KEEL_COL("model", TEXT),
};

static const struct keel_loader car_loader = {
	.q = { .name = "contracts_cars", .sql = "SELECT id, license_plate AS "
	    "\"licensePlate\", manufacturer, model FROM cars "
	    "WHERE id = ANY($1::bigint[])", .target = KEEL_DB_READ },
	.cols = car_cols, .ncols = KEEL_NELEM(car_cols),
};

static const struct keel_relation contract_rels[] = {
	{ .name = "car", .id = "carId", .load = &car_loader },
	{ .name = "customer", .id = "customerId",
	    .load = &keel_auth_user_loader },
};

static const struct keel_constraint contract_cons[] = {
	{ .name = "contracts_no_overlap", .reply = { .status = 409,
	    .message = "the car is already booked for some of these dates" } },
	{ .name = "contracts_dates_check", .reply = { .status = 422,
	    .message = "some fields are not valid", .field = "endDate",
	    .why = "must not be before startDate" } },
};

static const struct keel_resource contract_res = { .name = "contract",
	.cols = contract_cols, .ncols = KEEL_NELEM(contract_cols),
	.cons = contract_cons, .ncons = KEEL_NELEM(contract_cons),
	.rels = contract_rels, .nrels = KEEL_NELEM(contract_rels),
};

static const char *const contract_statuses[] = { "active", "cancelled",
    "completed", NULL };
/* A PATCH may end a contract, not revive one: all but "active". */
#define contract_endings	(contract_statuses + 1)

enum contract_field {
	CON_CAR, CON_CUSTOMER, CON_START, CON_END, CON_STATUS, CON__MAX
};

static const struct keel_field contract_fields[CON__MAX] = {
	[CON_CAR] = { .name = "carId", .type = KEEL_FIELD_ID,
	    .required = true },
	[CON_CUSTOMER] = { .name = "customerId", .type = KEEL_FIELD_ID,
	    .required = true },
	[CON_START] = { .name = "startDate", .type = KEEL_FIELD_DATE,
	    .required = true },
	[CON_END] = { .name = "endDate", .type = KEEL_FIELD_DATE,
	    .required = true },
	[CON_STATUS] = { .name = "status", .type = KEEL_FIELD_ENUM,
	    .values = contract_endings },
};

enum contract_filter {
	FILTER_CAR, FILTER_CUSTOMER, FILTER_FROM, FILTER_TO, FILTER_STATUS,
	FILTER__MAX
};

static const struct keel_field contract_filters[FILTER__MAX] = {
	[FILTER_CAR] = { .name = "carId", .type = KEEL_FIELD_ID },
	[FILTER_CUSTOMER] = { .name = "customerId", .type = KEEL_FIELD_ID },
	[FILTER_FROM] = { .name = "from", .type = KEEL_FIELD_DATE },
	[FILTER_TO] = { .name = "to", .type = KEEL_FIELD_DATE },
	[FILTER_STATUS] = { .name = "status", .type = KEEL_FIELD_ENUM,
	    .values = contract_statuses },
};

/*
 * Overlap with [from, to] is start <= to AND end >= from (both ends
 * inclusive), which contracts_dates_idx and contracts_car_dates_idx
 * serve.  A NULL filter's arm goes (db.c prepares one per filter set).
 */
#define CONTRACTS_LIST "SELECT " CONTRACT_COLS " FROM contracts " \
	"WHERE ($4::bigint IS NULL OR car_id = $4) " \
	"AND ($5::bigint IS NULL OR customer_id = $5) " \
	"AND ($6::date IS NULL OR end_date >= $6) " \
	"AND ($7::date IS NULL OR start_date <= $7) " \
	"AND ($8::text IS NULL OR status = $8) " \
	"AND ($9::bigint IS NULL OR customer_id = $9) "

static const struct keel_list contracts_list_rows = { .scope = "contracts",
	.after = { .name = "contracts_list_after", .sql = CONTRACTS_LIST
	    KEEL_SQL_AFTER, .target = KEEL_DB_READ },
	.before = { .name = "contracts_list_before", .sql = CONTRACTS_LIST
	    KEEL_SQL_BEFORE, .target = KEEL_DB_READ },
	.keys = { "createdAt", "id" },
	.filters = contract_filters, .nfilters = FILTER__MAX,
	/* A customer sees their own: asking for another's lists nothing. */
	.owner = KEEL_ROLE_CUSTOMER,
};

/* $2: the customer who asks, or NULL for staff (who see every one). */
static const struct keel_query q_contract_get = { .name = "contracts_get",
	.sql = "SELECT " CONTRACT_COLS " FROM contracts WHERE id = $1 "
	"AND ($2::bigint IS NULL OR customer_id = $2)",
	.target = KEEL_DB_READ };

/*
 * The car must be in service and the customer an active customer, both
 * rows held against archiving and deactivation (users.c) to the commit.
 * "car" names it for the customer's notification (never written).
 */
static const struct keel_query q_contract_insert = {
	.name = "contracts_insert",
	.sql = "INSERT INTO contracts (car_id, customer_id, start_date, "
	"end_date) SELECT c.id, u.id, $3::date, $4::date FROM cars c, users u "
	"WHERE c.id = $1 AND NOT c.is_archived AND u.id = $2 "
	"AND u.role = 'customer' AND u.is_active FOR SHARE OF c, u "
	"RETURNING " CONTRACT_COLS
	", (SELECT left(manufacturer || ' ' || model || ' (' || "
	"license_plate || ')', 300) FROM cars WHERE id = car_id) AS car",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_contract_car = { .name = "contracts_car",
	.sql = "SELECT FROM cars WHERE id = $1 AND NOT is_archived",
	.target = KEEL_DB_PRIMARY };

/*
 * Only an active contract changes; $4 is the status it may end with.
 * One that stays active needs its car in service, the row held as an
 * insert holds it; ending one (a $4) needs no car.
 */
static const struct keel_query q_contract_update = {
	.name = "contracts_update",
	.sql = "WITH held AS (SELECT FROM contracts k JOIN cars c "
	"ON c.id = k.car_id JOIN users u ON u.id = k.customer_id "
	"WHERE k.id = $1 AND NOT c.is_archived AND u.is_active "
	"AND u.role = 'customer' FOR SHARE OF c, u) "
	"UPDATE contracts SET start_date = COALESCE($2::date, "
	"start_date), end_date = COALESCE($3::date, end_date), "
	"status = COALESCE($4, status), updated_at = now() "
	"WHERE id = $1 AND status = 'active' "
	"AND ($4::text IS NOT NULL OR EXISTS (SELECT FROM held)) "
	"RETURNING " CONTRACT_COLS, .target = KEEL_DB_PRIMARY };

/*
 * Why an update changed nothing: its status; an active one was re-dated
 * with its car archived or its customer no longer an active customer.
 */
static const struct keel_query q_contract_state = {
	.name = "contracts_state",
	.sql = "SELECT k.status, c.is_archived, "
	"NOT (u.is_active AND u.role = 'customer') FROM contracts k "
	"JOIN cars c ON c.id = k.car_id JOIN users u ON u.id = k.customer_id "
	"WHERE k.id = $1",
	.target = KEEL_DB_PRIMARY };

static enum keel_err
contracts_list(struct keel_req *req)
{
	struct keel_value	 f[FILTER__MAX];

	if (keel_res_filters(req, &contracts_list_rows, f) != KEEL_STEP_GO)
		return KEEL_OK;
	if (f[FILTER_FROM].present && f[FILTER_TO].present &&
	    strcmp(f[FILTER_TO].s, f[FILTER_FROM].s) < 0) {
		keel_http_reply_query_field(req, "to",
		    "must not be before from");
		return KEEL_OK;
	}
	return keel_res_list(req, &contract_res, &contracts_list_rows, f);
}

static enum keel_err
contracts_get(struct keel_req *req)
{
	struct keel_db_params	 p;

	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	/* A customer sees their own only: another's is not found. */
	keel_res_param_owner(req, &p, KEEL_ROLE_CUSTOMER);
	return keel_res_get(req, &contract_res, &q_contract_get, &p);
}

/* Nothing inserted: say which reference was wrong. */
static enum keel_err
contracts_bad_refs(struct keel_req *req, struct keel_res_write *w)
{
	struct keel_db_params	 p;
	struct keel_rows	*car = NULL;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_text(&p, w->p->v[0]);	/* the car, $1 of the insert */
	if ((er = keel_db_query(req->db, &q_contract_car, &p, &car)) ==
	    KEEL_OK && keel_rows_count(car) == 0)
		keel_http_reply_field(req, "carId", "no such car in service");
	else if (er == KEEL_OK)
		keel_http_reply_field(req, "customerId",
		    "no such active customer");
	keel_rows_free(car);
	return er;
}

/*
 * In the new contract's transaction: its customer's notification
 * (contract_created, keyed by the contract), queued in the outbox.
 */
static enum keel_err
contracts_notify(struct keel_req *req, const struct keel_rows *rows,
    struct keel_res_write *w)
{
	static const char *const dates[] = { "startDate", "endDate" };
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 jw;
	char		 key[64];
	int64_t		 id = keel_rows_int64(rows, 0, 0), job;
	size_t		 i;
	enum keel_err	 er;

	keel_jw_init(&jw, &b);
	keel_jw_obj_open(&jw);
	keel_jw_key(&jw, "userId");
	keel_jw_int(&jw, keel_rows_int64(rows, 0, keel_rows_col(rows,
	    "customerId")));
	keel_jw_key(&jw, "contractId");
	keel_jw_int(&jw, id);
	keel_jw_key(&jw, "carId");
	keel_jw_int(&jw, keel_rows_int64(rows, 0, keel_rows_col(rows,
	    "carId")));
	for (i = 0; i < KEEL_NELEM(dates); i++) {
		keel_jw_key(&jw, dates[i]);
		keel_jw_str(&jw, keel_rows_value(rows, 0, keel_rows_col(rows,
		    dates[i])));
	}
	keel_jw_key(&jw, "car");
	keel_jw_str(&jw, keel_rows_value(rows, 0, keel_rows_col(rows,
	    "car")));
	keel_jw_obj_close(&jw);
	snprintf(key, sizeof(key), "notification:contract-created:%lld",
	    (long long)id);
	if ((er = keel_outbox_add(req->db, "notifications",
	    "contract_created", b.data, key, &job)) == KEEL_OK)
		keel_res_job(w, job);
	keel_buf_free(&b);
	return er;
}

/* A step: the dates the request gives, end on or after start. */
static enum keel_step
contracts_dates(struct keel_req *req, const struct keel_value *v)
{
	if (!v[CON_START].present || !v[CON_END].present ||
	    strcmp(v[CON_END].s, v[CON_START].s) >= 0)
		return KEEL_STEP_GO;
	keel_http_reply_field(req, "endDate", "must not be before startDate");
	return KEEL_STEP_REPLIED;
}

static enum keel_err
contracts_create(struct keel_req *req)
{
	struct keel_value	 v[CON__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_contract_insert, .p = &p,
	    .status = 201, .location = "/api/contracts/",
	    .in_tx = contracts_notify, .none = contracts_bad_refs };
	size_t			 i;

	if (keel_http_body_fields(req, contract_fields, CON__MAX,
	    KEEL_FIELDS_ALL, v) != KEEL_STEP_GO)
		return KEEL_OK;
	if (v[CON_STATUS].present) {
		keel_http_reply_field(req, "status", "can't be set on "
		    "creation; a new contract is active");
		return KEEL_OK;
	}
	if (contracts_dates(req, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_db_params_init(&p);
	for (i = CON_CAR; i <= CON_END; i++)
		keel_res_param(&p, &v[i]);
	return keel_res_change(req, &contract_res, &w);
}

/*
 * Not changed: missing, no longer active, or its car archived.  Asked of
 * the primary, which the update just read: a replica's lag could tell an
 * old status.
 */
static enum keel_err
contracts_unchanged(struct keel_req *req, struct keel_res_write *w)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	const char		*status;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_text(&p, w->p->v[0]);	/* the contract, $1 */
	if ((er = keel_db_query(req->db, &q_contract_state, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	if (keel_rows_count(rows) == 0) {
		keel_http_reply_error(req, 404, "not_found",
		    "no such contract");
		goto out;
	}
	status = keel_rows_value(rows, 0, 0);
	if (strcmp(status, "active") != 0)
		keel_http_reply_error(req, 409, "conflict",
		    keel_arena_printf(req->arena, "the contract is %s; only "
		    "an active contract changes", status));
	else if (keel_rows_bool(rows, 0, 1))
		keel_http_reply_error(req, 409, "conflict", "the car is "
		    "archived; its contract can only be cancelled or "
		    "completed");
	else
		keel_http_reply_error(req, 409, "conflict", "the customer's "
		    "account is deactivated or no longer a customer's; its "
		    "contract can only be cancelled or completed");
out:
	keel_rows_free(rows);
	return er;
}

static enum keel_err
contracts_patch(struct keel_req *req)
{
	struct keel_value	 v[CON__MAX];
	struct keel_db_params	 p;
	struct keel_res_write	 w = { .q = &q_contract_update, .p = &p,
	    .status = 200, .none = contracts_unchanged };
	size_t			 i;

	if (keel_http_body_fields(req, contract_fields, CON__MAX,
	    KEEL_FIELDS_SOME, v) != KEEL_STEP_GO)
		return KEEL_OK;
	if (v[CON_CAR].present || v[CON_CUSTOMER].present) {
		keel_http_reply_field(req, v[CON_CAR].present ? "carId" :
		    "customerId", "can't be changed; cancel the contract and "
		    "create another");
		return KEEL_OK;
	}
	if (contracts_dates(req, v) != KEEL_STEP_GO)
		return KEEL_OK;
	keel_db_params_init(&p);
	keel_db_param_int(&p, keel_http_param_int(req, "id"));
	for (i = CON_START; i < CON__MAX; i++)
		keel_res_param(&p, &v[i]);
	return keel_res_change(req, &contract_res, &w);
}

#define STAFF_OR_OWNER	(KEEL_ACCESS_STAFF | KEEL_ROLE_CUSTOMER)
static const struct keel_route contracts_routes[] = {
	{ .method = "GET", .pattern = "/api/contracts",
	    .handler = contracts_list, .access = STAFF_OR_OWNER,
	    .query = KEEL_QUERY_HANDLER },
	{ .method = "POST", .pattern = "/api/contracts",
	    .handler = contracts_create, .access = KEEL_ACCESS_STAFF },
	{ .method = "GET", .pattern = "/api/contracts/{id:int}",
	    .handler = contracts_get, .access = STAFF_OR_OWNER },
	{ .method = "PATCH", .pattern = "/api/contracts/{id:int}",
	    .handler = contracts_patch, .access = KEEL_ACCESS_STAFF },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "contracts",
	    .routes = contracts_routes,
	    .nroutes = KEEL_NELEM(contracts_routes) };

	return keel_serve(argc, argv, &app);
}
