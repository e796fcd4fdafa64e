/* SPDX-License-Identifier: ISC */
/*
 * drain-email.c -- keel-drain-email: sends the email queue's jobs over
 * SMTP (lib/mail.c renders them).  cron starts it every minute; the
 * queue's policy (3 attempts, 2 s backoff, 5 in flight, 10/s) is in
 * lib/queue.c and holds across every drainer on every host.
 *
 * A set-password email (an invitation, a reset) is queued as a request
 * naming who it is for; the link and its single-use token are made here,
 * at sending, so none is ever stored in the outbox, in Redis or in a
 * dead letter (auth.h).  A new token per attempt: a retry after a failed
 * send doesn't depend on any stored secret.
 *
 * A result email (test_result, attempt_result) goes to its account as
 * it is at sending, looked up the way the links' is (keel_auth_mail_user):
 * the address and name the payload carries are the submit's, and the
 * student may since have changed the one or been deactivated.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/auth.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/drain.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mail.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/text.h"

#define ATTEMPT_KEY	"email:attempt:"	/* attempts.c's result emails */

/* The student of a graded attempt (its result email's account). */
static const struct keel_query q_attempt_user = {
	.name = "email_attempt_user",
	.sql = "SELECT user_id FROM test_attempts WHERE id = $1",
	.target = KEEL_DB_PRIMARY };

struct email_ctx {
	const struct keel_config *cfg;
	struct keel_mail	*mail;
	struct keel_db		*db;		/* the drainer's; for links */
	struct keel_redis	*redis;		/* the reset cap's */
	struct keel_arena	*arena;
};

static void *
email_setup(const struct keel_config *cfg, struct keel_db *db)
{
	struct email_ctx	*c;

	c = keel_calloc(1, sizeof(*c));
	c->cfg = cfg;
	c->mail = keel_mail_open(cfg);
	c->db = db;
	c->redis = keel_redis_open(cfg);
	c->arena = keel_arena_new();
	return c;
}

static void
email_teardown(void *arg)
{
	struct email_ctx	*c = arg;

	keel_mail_close(c->mail);
	keel_redis_close(c->redis);
	keel_arena_free(c->arena);
	free(c);
}

/* Renders kind's payload for job (its key and origin name the
 * Message-ID) and sends it; the job's result. */
static enum keel_job_result
email_deliver(struct email_ctx *c, const char *kind, const char *payload,
    const struct keel_job *job, char *why, size_t n)
{
	struct keel_mail_msg	 msg;
	enum keel_err		 er;

	/* A payload that can't make a message is dead-lettered at once, and
	 * so is a message the server rejects (5yz): both fail every time.  A
	 * server that refuses for now (4yz), can't be reached or times out
	 * is retried. */
	if (keel_mail_render(c->arena, kind, payload, job->key, &msg, why,
	    n) != KEEL_OK)
		return KEEL_JOB_FAIL;
	/* The same job, retried, is the same message; a job of another
	 * outbox row under a reused key is another. */
	msg.origin = job->origin;
	/* The job's request (lib/drain.c set it for the job's log lines). */
	msg.request_id = keel_log_request();
	if ((er = keel_mail_send(c->mail, &msg)) != KEEL_OK) {
		snprintf(why, n, "%s", keel_mail_errstr(c->mail));
		return er == KEEL_EINVAL ? KEEL_JOB_FAIL : KEEL_JOB_RETRY;
	}
	return KEEL_JOB_DONE;
}

/* Every kind whose payload is the message's: sent as it is. */
static enum keel_job_result
email_send(void *arg, const struct keel_job *job, char *why, size_t n)
{
	struct email_ctx	*c = arg;

	keel_arena_reset(c->arena);
	return email_deliver(c, job->kind, job->payload, job, why, n);
}

/*
 * invitation_request {"userId"}, password_reset_request {"email"}: the
 * account, a fresh single-use token and its link, then the email.  No
 * active account: done, nothing sent (the request said nothing either).
 * A reset past its account's cap (KEEL_RESET_MAIL_MAX) is done unsent
 * too; with Redis unable to say, retried, as a failed send is.
 */
static enum keel_job_result
email_link(void *arg, const struct keel_job *job, char *why, size_t n)
{
	struct email_ctx	*c = arg;
	struct keel_auth_link	 l = { .site = c->cfg->public_url,
	    .invite_ttl = c->cfg->invite_ttl, .key = job->key,
	    .redis = c->redis, .reset_max = c->cfg->reset_mail_max.limit,
	    .reset_window = c->cfg->reset_mail_max.window };
	struct keel_buf		 payload = { NULL, 0, 0 };
	struct json_object	*o = NULL, *v;
	enum keel_job_result	 res;
	enum keel_err		 er;
	bool			 invite = job->kind[0] == 'i';
	char			 err[64];

	keel_arena_reset(c->arena);
	if (keel_json_parse(job->payload, strlen(job->payload), &o, err,
	    sizeof(err)) != KEEL_OK || !json_object_object_get_ex(o,
	    invite ? "userId" : "email", &v) || (invite ?
	    (l.uid = json_object_get_int64(v)) < 1 :
	    (l.email = json_object_get_string(v)) == NULL)) {
		snprintf(why, n, "payload: no %s", invite ? "userId" : "email");
		json_object_put(o);
		return KEEL_JOB_FAIL;
	}
	er = keel_auth_link_job(c->db, &l, &payload);
	json_object_put(o);
	if (er == KEEL_ENOENT || er == KEEL_ETOOBIG)
		return KEEL_JOB_DONE;
	if (er != KEEL_OK) {
		/* The account's lookup (PostgreSQL) or its cap (Redis). */
		snprintf(why, n, "account: %s", keel_strerror(er));
		return KEEL_JOB_RETRY;
	}
	res = email_deliver(c, invite ? "invitation" : "password_reset",
	    payload.data, job, why, n);
	explicit_bzero(payload.data, payload.len);
	keel_buf_free(&payload);
	return res;
}

/*
 * The account of a result email that names none (an attempt_result
 * attempts.c queued before its payload carried "userId"): the student of
 * the attempt its key names, into *uid (left 0 for a key that names no
 * attempt).  KEEL_ENOENT when the attempt is gone.
 */
static enum keel_err
email_attempt_user(struct email_ctx *c, const char *key, int64_t *uid)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	int64_t			 aid;
	enum keel_err		 er;

	if (strncmp(key, ATTEMPT_KEY, strlen(ATTEMPT_KEY)) != 0 ||
	    !keel_parse_int64(key + strlen(ATTEMPT_KEY), 1, INT64_MAX, &aid))
		return KEEL_OK;
	keel_db_params_init(&p);
	keel_db_param_int(&p, aid);
	if ((er = keel_db_query(c->db, &q_attempt_user, &p, &rows)) !=
	    KEEL_OK)
		goto out;
	if (keel_rows_count(rows) != 1) {
		er = KEEL_ENOENT;
		goto out;
	}
	*uid = keel_rows_int64(rows, 0, 0);
out:
	keel_rows_free(rows);
	return er;
}

/*
 * test_result, attempt_result {"to", "name", "userId"?, ...}: sent to
 * the account's address and name as they are now.  The account is
 * "userId", else (an older attempt_result) its attempt's; no active
 * account: done, nothing sent, as for a link.  A payload naming no
 * account (an operator's test_result) is sent to its "to".  A payload
 * that isn't an object is the renderer's to refuse.
 */
static enum keel_job_result
email_result(void *arg, const struct keel_job *job, char *why, size_t n)
{
	struct email_ctx		*c = arg;
	struct keel_auth_recipient	 u = { 0, NULL, NULL };
	struct json_object		*o = NULL, *v;
	enum keel_job_result		 res;
	enum keel_err			 er = KEEL_OK;
	int64_t				 uid = 0;
	char				 err[64];

	keel_arena_reset(c->arena);
	if (keel_json_parse(job->payload, strlen(job->payload), &o, err,
	    sizeof(err)) != KEEL_OK || !json_object_is_type(o,
	    json_type_object)) {
		res = email_deliver(c, job->kind, job->payload, job, why, n);
		goto out;
	}
	if (json_object_object_get_ex(o, "userId", &v)) {
		if (!json_object_is_type(v, json_type_int) ||
		    (uid = json_object_get_int64(v)) < 1) {
			snprintf(why, n, "payload: \"userId\" is not an id");
			res = KEEL_JOB_FAIL;
			goto out;
		}
	} else if (strcmp(job->kind, "attempt_result") == 0)
		er = email_attempt_user(c, job->key, &uid);
	if (er == KEEL_OK && uid > 0)
		er = keel_auth_mail_user(c->db, NULL, uid, &u);
	if (er == KEEL_ENOENT) {
		/* The user's id, never the address. */
		keel_log_info("drain-email: %s not sent: no active account "
		    "uid=%lld", job->kind, (long long)uid);
		res = KEEL_JOB_DONE;
		goto out;
	}
	if (er != KEEL_OK) {
		snprintf(why, n, "account: %s", keel_strerror(er));
		res = KEEL_JOB_RETRY;
		goto out;
	}
	if (u.to != NULL) {
		json_object_object_add(o, "to", json_object_new_string(u.to));
		json_object_object_add(o, "name",
		    json_object_new_string(u.name));
	}
	res = email_deliver(c, job->kind, json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN), job, why, n);
out:
	keel_auth_recipient_free(&u);
	json_object_put(o);
	return res;
}

static const struct keel_job_kind email_kinds[] = {
	{ .kind = "invitation_request", .fn = email_link },
	{ .kind = "password_reset_request", .fn = email_link },
	{ .kind = "invitation", .fn = email_send },
	{ .kind = "password_reset", .fn = email_send },
	{ .kind = "test_result", .fn = email_result },
	{ .kind = "attempt_result", .fn = email_result },
	{ .kind = "test", .fn = email_send },
};

static const struct keel_drainer email_drainer = {
	.name = "keel-drain-email", .queue = "email",
	.kinds = email_kinds, .nkinds = KEEL_NELEM(email_kinds),
	.setup = email_setup, .teardown = email_teardown,
};

int
main(int argc, char *argv[])
{
	return keel_drain_main(argc, argv, &email_drainer);
}
