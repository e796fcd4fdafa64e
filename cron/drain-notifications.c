/* SPDX-License-Identifier: ISC */
/*
 * drain-notifications.c -- keel-drain-notifications: turns jobs into
 * users' notifications (DESIGN.md, "Notifications in real time").
 *
 * attempt_graded {"userId", "attemptId", "testId", "testTitle",
 * "score", "correct", "total", "late"} (the submit transaction's):
 * one notifications row, kind attempt_graded, "Result: <title>", its
 * data {attemptId, testId, score, late}.  The row carries the job's key
 * (sql/011), so a job run twice inserts it once.  Members the payload
 * has beyond these are ignored; a missing or ill-typed one, or a user
 * who doesn't exist, can never work: dead-lettered.  (Publishing to the
 * live stream comes with the stream's issue.)
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/db.h"
#include "keel/drain.h"
#include "keel/json.h"
#include "keel/mem.h"

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

/* The row, once per job key; the title cut to the column's 200. */
static const struct keel_query q_graded = { .name = "notify_graded",
	.sql = "INSERT INTO notifications (user_id, kind, title, body, data, "
	"dedup_key) VALUES ($1, 'attempt_graded', "
	"left('Result: ' || $2::text, 200), "
	"format('You scored %s%% (%s of %s correct)%s.', $3::integer, "
	"$4::integer, $5::integer, CASE WHEN $6::boolean "
	"THEN ', submitted late' ELSE '' END), "
	"jsonb_build_object('attemptId', $7::bigint, 'testId', $8::bigint, "
	"'score', $3::integer, 'late', $6::boolean), $9) "
	"ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
	.target = KEEL_DB_PRIMARY };

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

static enum keel_job_result
notify_graded(void *arg, const struct keel_job *job, char *why, size_t n)
{
	struct keel_db		*db = arg;
	struct keel_value	 v[G__MAX];
	struct keel_db_params	 p;
	struct json_object	*doc;
	enum keel_err		 er;

	if (!notify_payload(job->payload, graded_fields, G__MAX, v, &doc, why,
	    n)) {
		json_object_put(doc);
		return KEEL_JOB_FAIL;
	}
	keel_db_params_init(&p);
	keel_db_param_int(&p, v[G_USER].i);
	keel_db_param_text(&p, v[G_TITLE].s);
	keel_db_param_int(&p, v[G_SCORE].i);
	keel_db_param_int(&p, v[G_CORRECT].i);
	keel_db_param_int(&p, v[G_TOTAL].i);
	keel_db_param_bool(&p, v[G_LATE].b);
	keel_db_param_int(&p, v[G_ATTEMPT].i);
	keel_db_param_int(&p, v[G_TEST].i);
	keel_db_param_text(&p, job->key);
	er = keel_db_query(db, &q_graded, &p, NULL);
	json_object_put(doc);
	if (er == KEEL_OK)
		return KEEL_JOB_DONE;
	snprintf(why, n, "database: %s", keel_strerror(er));
	/* No such user (a foreign key), or a check: never will work. */
	return er == KEEL_EINVAL ? KEEL_JOB_FAIL : KEEL_JOB_RETRY;
}

/* The handlers' context is the drainer's own connection. */
static void *
notify_setup(const struct keel_config *cfg, struct keel_db *db)
{
	(void)cfg;
	return db;
}

static const struct keel_job_kind notifications_kinds[] = {
	{ .kind = "attempt_graded", .fn = notify_graded },
};

static const struct keel_drainer notifications_drainer = {
	.name = "keel-drain-notifications", .queue = "notifications",
	.kinds = notifications_kinds,
	.nkinds = KEEL_NELEM(notifications_kinds),
	.setup = notify_setup,
};

int
main(int argc, char *argv[])
{
	return keel_drain_main(argc, argv, &notifications_drainer);
}
