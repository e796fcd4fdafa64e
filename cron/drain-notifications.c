/* SPDX-License-Identifier: ISC */
/*
 * drain-notifications.c -- keel-drain-notifications: turns jobs into
 * users' notifications and publishes each on its user's live channel
 * (DESIGN.md, "Notifications in real time"; lib/notify.h).
 *
 * Every kind is a row of notify_kinds: the payload's fields (userId
 * first; members beyond them are ignored) and how they make the row's
 * title, body and data.  One path inserts them all, in one transaction
 * that first locks the user's row (FOR NO KEY UPDATE: serialises one
 * user's notifications, so their ids are in commit order), reads prev,
 * the user's last notification id, and inserts the row keyed by the
 * job's key (dedup_key, sql/011).  After the commit the user's cached
 * pages are invalidated and {"userId", "prev", "notification"} is
 * published on keel:notify:<userId>.  A job run twice finds its row and
 * publishes it again, with the prev it had; a PUBLISH that fails (Redis
 * down) is logged and the job is done all the same: the row is durable
 * and a stream replays it from PostgreSQL.  A missing or ill-typed
 * field, or a user who doesn't exist, can never work: dead-lettered.
 *
 * A kind whose payload may be stale by the time it is drained says so
 * with a check (holds), run in the transaction after the user's lock:
 * PostgreSQL, not the payload, says whether it is still true.  A job
 * that no longer holds is done with nothing made (logged).  Only the
 * reminder has one: it speaks of the contract as it will be tomorrow,
 * so a contract cancelled or moved since, or a customer deactivated
 * since, makes none.  The others record what happened to the account
 * (a grade, a change of password or role, a new contract): true
 * whatever changed after, and kept for a deactivated user too, whose
 * inbox nobody reads until an administrator reactivates the account --
 * then it is whole.  Nothing of theirs leaves the system: a
 * deactivated user has no session, so no stream to publish to.
 *
 *   attempt_graded {userId, attemptId, testId, testTitle, score,
 *	correct, total, late}: "Result: <title>" (the submit's)
 *   password_changed {userId, via?}: a change or a reset (users, auth)
 *   role_changed {userId, role}: an admin's change (users)
 *   contract_created {userId, contractId, carId, startDate, endDate,
 *	car?}: for the contract's customer (contracts)
 *   contract_starting {userId, contractId, startsAt, car?}: the day
 *	before (keel-notify-contracts)
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/cache.h"
#include "keel/db.h"
#include "keel/drain.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/notify.h"
#include "keel/redis.h"
#include "keel/resource.h"

struct notify_ctx {
	struct keel_db		*db;		/* the drainer's */
	struct keel_redis	*redis;
	struct keel_cache	*cache;
};

/* What a kind makes of its payload: the row's title, body and data. */
struct notify_text {
	struct keel_buf		 title;
	struct keel_buf		 body;
	struct keel_buf		 data;	/* a JSON object */
};

/*
 * A kind: its payload's fields, [0] the user's id, and its words; holds,
 * when not NULL, is its check at drain time (in the transaction, user
 * the locked row: id, is_active): KEEL_OK with why left empty while the
 * notification still holds, else why says what changed.
 */
struct notify_kind {
	const char		*kind;
	const struct keel_field	*fields;
	size_t			 nfields;
	void			(*compose)(const struct keel_value *,
				    struct notify_text *, struct keel_jw *);
	enum keel_err		(*holds)(struct notify_ctx *,
				    const struct keel_value *,
				    const struct keel_rows *user, char *why,
				    size_t n);
};

#define NOTIFY_MAXFIELDS	8

enum graded_field {
	G_USER, G_ATTEMPT, G_TEST, G_TITLE, G_SCORE, G_CORRECT, G_TOTAL,
	G_LATE, G__MAX
};

static const struct keel_field graded_fields[G__MAX] = {
	[G_USER] = { .name = "userId", .type = KEEL_FIELD_ID,
	    .required = true },
	[G_ATTEMPT] = { .name = "attemptId", .type = KEEL_FIELD_ID,
	    .required = true },
	[G_TEST] = { .name = "testId", .type = KEEL_FIELD_ID,
	    .required = true },
	[G_TITLE] = { .name = "testTitle", .type = KEEL_FIELD_STRING,
	    .required = true, .min = 1, .max = 200 },
	[G_SCORE] = { .name = "score", .type = KEEL_FIELD_INT,
	    .required = true, .min = 0, .max = 100 },
	[G_CORRECT] = { .name = "correct", .type = KEEL_FIELD_INT,
	    .required = true, .min = 0, .max = 100000 },
	[G_TOTAL] = { .name = "total", .type = KEEL_FIELD_INT,
	    .required = true, .min = 0, .max = 100000 },
	[G_LATE] = { .name = "late", .type = KEEL_FIELD_BOOL,
	    .required = true },
};

static const char *const password_vias[] = { "profile", "reset", NULL };

enum password_field { P_USER, P_VIA, P__MAX };

static const struct keel_field password_fields[P__MAX] = {
	[P_USER] = { .name = "userId", .type = KEEL_FIELD_ID,
	    .required = true },
	[P_VIA] = { .name = "via", .type = KEEL_FIELD_ENUM,
	    .values = password_vias },
};

static const char *const role_names[] = { "admin", "staff", "customer",
    "student", NULL };

enum role_field { R_USER, R_ROLE, R__MAX };

static const struct keel_field role_fields[R__MAX] = {
	[R_USER] = { .name = "userId", .type = KEEL_FIELD_ID,
	    .required = true },
	[R_ROLE] = { .name = "role", .type = KEEL_FIELD_ENUM,
	    .required = true, .values = role_names },
};

enum created_field {
	C_USER, C_CONTRACT, C_CAR, C_START, C_END, C_NAME, C__MAX
};

static const struct keel_field created_fields[C__MAX] = {
	[C_USER] = { .name = "userId", .type = KEEL_FIELD_ID,
	    .required = true },
	[C_CONTRACT] = { .name = "contractId", .type = KEEL_FIELD_ID,
	    .required = true },
	[C_CAR] = { .name = "carId", .type = KEEL_FIELD_ID,
	    .required = true },
	[C_START] = { .name = "startDate", .type = KEEL_FIELD_DATE,
	    .required = true },
	[C_END] = { .name = "endDate", .type = KEEL_FIELD_DATE,
	    .required = true },
	[C_NAME] = { .name = "car", .type = KEEL_FIELD_STRING,
	    .min = 1, .max = 300 },
};

enum starting_field { S_USER, S_CONTRACT, S_STARTS, S_NAME, S__MAX };

static const struct keel_field starting_fields[S__MAX] = {
	[S_USER] = { .name = "userId", .type = KEEL_FIELD_ID,
	    .required = true },
	[S_CONTRACT] = { .name = "contractId", .type = KEEL_FIELD_ID,
	    .required = true },
	[S_STARTS] = { .name = "startsAt", .type = KEEL_FIELD_DATE,
	    .required = true },
	[S_NAME] = { .name = "car", .type = KEEL_FIELD_STRING,
	    .min = 1, .max = 300 },
};

static void
compose_graded(const struct keel_value *v, struct notify_text *t,
    struct keel_jw *w)
{
	keel_buf_printf(&t->title, "Result: %s", v[G_TITLE].s);
	keel_buf_printf(&t->body, "You scored %lld%% (%lld of %lld "
	    "correct)%s.", (long long)v[G_SCORE].i, (long long)v[G_CORRECT].i,
	    (long long)v[G_TOTAL].i, v[G_LATE].b ? ", submitted late" : "");
	keel_jw_key(w, "attemptId");
	keel_jw_int(w, v[G_ATTEMPT].i);
	keel_jw_key(w, "testId");
	keel_jw_int(w, v[G_TEST].i);
	keel_jw_key(w, "score");
	keel_jw_int(w, v[G_SCORE].i);
	keel_jw_key(w, "late");
	keel_jw_bool(w, v[G_LATE].b);
}

static void
compose_password(const struct keel_value *v, struct notify_text *t,
    struct keel_jw *w)
{
	keel_buf_puts(&t->title, "Your password was changed");
	keel_buf_puts(&t->body, "Your other sessions were ended. If you "
	    "didn't change it, reset your password now and tell an "
	    "administrator.");
	if (v[P_VIA].present) {
		keel_jw_key(w, "via");
		keel_jw_str(w, v[P_VIA].s);
	}
}

static void
compose_role(const struct keel_value *v, struct notify_text *t,
    struct keel_jw *w)
{
	keel_buf_printf(&t->title, "Your role is now %s", v[R_ROLE].s);
	keel_buf_printf(&t->body, "An administrator changed your role to "
	    "%s. Sign in again to use it.", v[R_ROLE].s);
	keel_jw_key(w, "role");
	keel_jw_str(w, v[R_ROLE].s);
}

static void
compose_created(const struct keel_value *v, struct notify_text *t,
    struct keel_jw *w)
{
	keel_buf_printf(&t->title, "New rental contract #%lld",
	    (long long)v[C_CONTRACT].i);
	if (v[C_NAME].present)
		keel_buf_printf(&t->body, "%s is booked for you from %s to "
		    "%s.", v[C_NAME].s, v[C_START].s, v[C_END].s);
	else
		keel_buf_printf(&t->body, "Car #%lld is booked for you from "
		    "%s to %s.", (long long)v[C_CAR].i, v[C_START].s,
		    v[C_END].s);
	keel_jw_key(w, "contractId");
	keel_jw_int(w, v[C_CONTRACT].i);
	keel_jw_key(w, "carId");
	keel_jw_int(w, v[C_CAR].i);
	keel_jw_key(w, "startDate");
	keel_jw_str(w, v[C_START].s);
	keel_jw_key(w, "endDate");
	keel_jw_str(w, v[C_END].s);
}

static void
compose_starting(const struct keel_value *v, struct notify_text *t,
    struct keel_jw *w)
{
	keel_buf_puts(&t->title, "Your rental starts tomorrow");
	keel_buf_printf(&t->body, "Contract #%lld%s%s starts on %s.",
	    (long long)v[S_CONTRACT].i, v[S_NAME].present ? " for " : "",
	    v[S_NAME].present ? v[S_NAME].s : "", v[S_STARTS].s);
	keel_jw_key(w, "contractId");
	keel_jw_int(w, v[S_CONTRACT].i);
	keel_jw_key(w, "startsAt");
	keel_jw_str(w, v[S_STARTS].s);
}

/* The contract now, locked against a change until the commit. */
static const struct keel_query q_contract = { .name = "notify_contract",
	.sql = "SELECT status, start_date::text FROM contracts "
	"WHERE id = $1 AND customer_id = $2 FOR SHARE",
	.target = KEEL_DB_PRIMARY };

/*
 * A reminder holds while its customer is active and its contract active,
 * theirs and starting on the date it names.
 */
static enum keel_err
holds_starting(struct notify_ctx *c, const struct keel_value *v,
    const struct keel_rows *user, char *why, size_t n)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	const char		*status, *start;
	enum keel_err		 er;

	*why = '\0';
	if (!keel_rows_bool(user, 0, 1)) {
		snprintf(why, n, "customer inactive");
		return KEEL_OK;
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, v[S_CONTRACT].i);
	keel_db_param_int(&p, v[S_USER].i);
	if ((er = keel_db_query(c->db, &q_contract, &p, &rows)) != KEEL_OK)
		return er;
	if (keel_rows_count(rows) == 0)
		snprintf(why, n, "contract not the customer's");
	else if (strcmp((status = keel_rows_value(rows, 0, 0)),
	    "active") != 0)
		snprintf(why, n, "contract %s", status);
	else if (strcmp((start = keel_rows_value(rows, 0, 1)),
	    v[S_STARTS].s) != 0)
		snprintf(why, n, "contract starts on %s now", start);
	keel_rows_free(rows);
	return KEEL_OK;
}

static const struct notify_kind notify_kinds[] = {
	{ .kind = "attempt_graded", .fields = graded_fields,
	    .nfields = G__MAX, .compose = compose_graded },
	{ .kind = "password_changed", .fields = password_fields,
	    .nfields = P__MAX, .compose = compose_password },
	{ .kind = "role_changed", .fields = role_fields,
	    .nfields = R__MAX, .compose = compose_role },
	{ .kind = "contract_created", .fields = created_fields,
	    .nfields = C__MAX, .compose = compose_created },
	{ .kind = "contract_starting", .fields = starting_fields,
	    .nfields = S__MAX, .compose = compose_starting,
	    .holds = holds_starting },
};

/* The user's row, locked until the commit: no row, no such user. */
static const struct keel_query q_lock = { .name = "notify_lock",
	.sql = "SELECT id, is_active FROM users WHERE id = $1 "
	"FOR NO KEY UPDATE",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_prev = { .name = "notify_prev",
	.sql = "SELECT coalesce(max(id), 0) FROM notifications "
	"WHERE user_id = $1", .target = KEEL_DB_PRIMARY };

/* Title and body cut to their columns' bounds, in characters. */
static const struct keel_query q_insert = { .name = "notify_insert",
	.sql = "INSERT INTO notifications (user_id, kind, title, body, data, "
	"dedup_key) VALUES ($1, $2, left($3, 200), left($4, 5000), "
	"$5::jsonb, $6) "
	"ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING "
	"RETURNING " KEEL_NOTIFY_COLS, .target = KEEL_DB_PRIMARY };

/* The row a run before this one made, its user and its prev. */
static const struct keel_query q_existing = { .name = "notify_existing",
	.sql = "SELECT " KEEL_NOTIFY_COLS ", user_id, "
	"(SELECT coalesce(max(p.id), 0) FROM notifications p "
	"WHERE p.user_id = n.user_id AND p.id < n.id) AS prev "
	"FROM notifications n WHERE dedup_key = $1",
	.target = KEEL_DB_PRIMARY };

static void *
notify_setup(const struct keel_config *cfg, struct keel_db *db)
{
	struct notify_ctx	*c;

	c = keel_calloc(1, sizeof(*c));
	c->db = db;
	c->redis = keel_redis_open(cfg);
	c->cache = keel_cache_open(cfg);
	return c;
}

static void
notify_teardown(void *arg)
{
	struct notify_ctx	*c = arg;

	keel_redis_close(c->redis);
	keel_cache_close(c->cache);
	free(c);
}

static const struct notify_kind *
notify_kind_find(const char *kind)
{
	size_t	 i;

	for (i = 0; i < KEEL_NELEM(notify_kinds); i++)
		if (strcmp(notify_kinds[i].kind, kind) == 0)
			return &notify_kinds[i];
	return NULL;
}

/*
 * The payload's members of fields[0..n) into vals (whose strings live
 * as long as *doc, which the caller puts); others are ignored.  False
 * with the reason in why when one is missing or wrong.
 */
static bool
notify_payload(const char *payload, const struct keel_field *fields,
    size_t n, struct keel_value *vals, struct json_object **doc, char *why,
    size_t whylen)
{
	struct json_object	*o = NULL, *known, *errs, *v;
	char			 err[64];
	size_t			 i;
	bool			 ok;

	*doc = NULL;
	if (keel_json_parse(payload, strlen(payload), &o, err, sizeof(err)) !=
	    KEEL_OK || !json_object_is_type(o, json_type_object)) {
		snprintf(why, whylen, "payload is not a JSON object");
		json_object_put(o);
		return false;
	}
	known = json_object_new_object();
	for (i = 0; i < n; i++)
		if (json_object_object_get_ex(o, fields[i].name, &v))
			json_object_object_add(known, fields[i].name,
			    json_object_get(v));
	errs = json_object_new_object();
	ok = keel_json_fields(known, fields, n, KEEL_FIELDS_ALL, vals,
	    errs) == KEEL_OK;
	if (!ok)
		snprintf(why, whylen, "payload: %s",
		    json_object_to_json_string_ext(errs,
		    JSON_C_TO_STRING_PLAIN));
	json_object_put(errs);
	json_object_put(o);
	*doc = known;
	return ok;
}

/*
 * In the transaction, the user locked: the job's row, inserted now or
 * by a run before; *rows its columns, *prev the user's notification
 * before it, *uid its user.
 */
static enum keel_err
notify_insert(struct notify_ctx *c, const struct keel_job *job,
    int64_t user, const struct notify_text *t, struct keel_rows **rows,
    int64_t *prev, int64_t *uid)
{
	struct keel_db_params	 p;
	struct keel_rows	*pr = NULL;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_int(&p, user);
	if ((er = keel_db_query(c->db, &q_prev, &p, &pr)) != KEEL_OK)
		return er;
	*prev = keel_rows_int64(pr, 0, 0);
	*uid = user;
	keel_rows_free(pr);
	keel_db_params_init(&p);
	keel_db_param_int(&p, user);
	keel_db_param_text(&p, job->kind);
	keel_db_param_text(&p, t->title.data);
	keel_db_param_text(&p, t->body.data);
	keel_db_param_text(&p, t->data.data);
	keel_db_param_text(&p, job->key);
	if ((er = keel_db_query(c->db, &q_insert, &p, rows)) != KEEL_OK ||
	    keel_rows_count(*rows) > 0)
		return er;
	/* The key's row exists: this job ran before. */
	keel_rows_free(*rows);
	*rows = NULL;
	keel_db_params_init(&p);
	keel_db_param_text(&p, job->key);
	if ((er = keel_db_query(c->db, &q_existing, &p, rows)) != KEEL_OK)
		return er;
	if (keel_rows_count(*rows) == 0)
		return KEEL_EINTERNAL;
	*uid = keel_rows_int64(*rows, 0, keel_rows_col(*rows, "user_id"));
	*prev = keel_rows_int64(*rows, 0, keel_rows_col(*rows, "prev"));
	return KEEL_OK;
}

/* After the commit: pages invalidated, the row published (logged when
 * it can't be: streams replay it). */
static void
notify_publish(struct notify_ctx *c, const struct keel_rows *rows,
    int64_t uid, int64_t prev)
{
	struct keel_buf	 item = { NULL, 0, 0 }, msg = { NULL, 0, 0 };
	struct keel_jw	 w;

	keel_jw_init(&w, &item);
	keel_res_write(&w, &keel_notify_res, rows, 0);
	keel_notify_message(&msg, uid, prev, item.data, item.len);
	(void)keel_notify_publish(c->cache, c->redis, uid, msg.data,
	    msg.len);
	keel_buf_free(&msg);
	keel_buf_free(&item);
}

/* The one handler of every kind: payload, words, row, publish. */
static enum keel_job_result
notify_job(void *arg, const struct keel_job *job, char *why, size_t n)
{
	struct notify_ctx		*c = arg;
	const struct notify_kind	*k = notify_kind_find(job->kind);
	struct keel_value		 v[NOTIFY_MAXFIELDS];
	struct keel_db_params		 p;
	struct keel_rows		*rows = NULL, *lock = NULL;
	struct json_object		*doc = NULL;
	struct notify_text		 t;
	struct keel_jw			 w;
	enum keel_job_result		 res = KEEL_JOB_RETRY;
	enum keel_err			 er;
	int64_t				 prev = 0, uid = 0;
	char				 stale[128];

	memset(&t, 0, sizeof(t));
	if (k == NULL || k->nfields > NOTIFY_MAXFIELDS) {
		snprintf(why, n, "no such kind");
		return KEEL_JOB_FAIL;
	}
	if (!notify_payload(job->payload, k->fields, k->nfields, v, &doc,
	    why, n)) {
		res = KEEL_JOB_FAIL;
		goto out;
	}
	keel_jw_init(&w, &t.data);
	keel_jw_obj_open(&w);
	k->compose(v, &t, &w);
	keel_jw_obj_close(&w);

	if ((er = keel_db_begin(c->db)) != KEEL_OK)
		goto fail;
	keel_db_params_init(&p);
	keel_db_param_int(&p, v[0].i);
	if ((er = keel_db_query(c->db, &q_lock, &p, &lock)) != KEEL_OK)
		goto fail;
	if (keel_rows_count(lock) == 0) {
		snprintf(why, n, "no user %lld", (long long)v[0].i);
		res = KEEL_JOB_FAIL;
		goto out;
	}
	if (k->holds != NULL) {
		if ((er = k->holds(c, v, lock, stale, sizeof(stale))) !=
		    KEEL_OK)
			goto fail;
		if (stale[0] != '\0') {
			keel_log_info("notify: %s: nothing made: %s",
			    job->key, stale);
			res = KEEL_JOB_DONE;
			goto out;
		}
	}
	if ((er = notify_insert(c, job, v[0].i, &t, &rows, &prev, &uid)) !=
	    KEEL_OK || (er = keel_db_commit(c->db)) != KEEL_OK)
		goto fail;
	notify_publish(c, rows, uid, prev);
	res = KEEL_JOB_DONE;
	goto out;
fail:
	snprintf(why, n, "database: %s", keel_strerror(er));
	/* A check the row breaks never will pass. */
	if (er == KEEL_EINVAL)
		res = KEEL_JOB_FAIL;
out:
	keel_db_rollback(c->db);
	keel_rows_free(lock);
	keel_rows_free(rows);
	json_object_put(doc);
	keel_buf_free(&t.title);
	keel_buf_free(&t.body);
	keel_buf_free(&t.data);
	return res;
}

static const struct keel_job_kind notifications_kinds[] = {
	{ .kind = "attempt_graded", .fn = notify_job },
	{ .kind = "password_changed", .fn = notify_job },
	{ .kind = "role_changed", .fn = notify_job },
	{ .kind = "contract_created", .fn = notify_job },
	{ .kind = "contract_starting", .fn = notify_job },
};

static const struct keel_drainer notifications_drainer = {
	.name = "keel-drain-notifications", .queue = "notifications",
	.kinds = notifications_kinds,
	.nkinds = KEEL_NELEM(notifications_kinds),
	.setup = notify_setup, .teardown = notify_teardown,
};

int
main(int argc, char *argv[])
{
	return keel_drain_main(argc, argv, &notifications_drainer);
}
