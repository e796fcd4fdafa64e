/* SPDX-License-Identifier: ISC */
/*
 * drain-email.c -- keel-drain-email: sends the email queue's jobs over
 * SMTP (lib/mail.c renders them).  cron starts it every minute; the
 * queue's policy (3 attempts, 2 s backoff, 5 in flight, 10/s) is in
 * lib/queue.c and holds across every drainer on every host.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "keel/drain.h"
#include "keel/mail.h"
#include "keel/mem.h"

struct email_ctx {
	struct keel_mail	*mail;
	struct keel_arena	*arena;
};

static void *
email_setup(const struct keel_config *cfg)
{
	struct email_ctx	*c;

	c = keel_calloc(1, sizeof(*c));
	c->mail = keel_mail_open(cfg);
	c->arena = keel_arena_new();
	return c;
}

static void
email_teardown(void *arg)
{
	struct email_ctx	*c = arg;

	keel_mail_close(c->mail);
	keel_arena_free(c->arena);
	free(c);
}

/* Every kind: a payload that can't make a message is dead-lettered at
 * once; a server that refuses or times out is retried. */
static enum keel_job_result
email_send(void *arg, const struct keel_job *job, char *why, size_t n)
{
	struct email_ctx	*c = arg;
	struct keel_mail_msg	 msg;

	keel_arena_reset(c->arena);
	if (keel_mail_render(c->arena, job->kind, job->payload, job->key,
	    &msg, why, n) != KEEL_OK)
		return KEEL_JOB_FAIL;
	if (keel_mail_send(c->mail, &msg) != KEEL_OK) {
		snprintf(why, n, "%s", keel_mail_errstr(c->mail));
		return KEEL_JOB_RETRY;
	}
	return KEEL_JOB_DONE;
}

static const struct keel_job_kind email_kinds[] = {
	{ .kind = "invitation", .fn = email_send },
	{ .kind = "password_reset", .fn = email_send },
	{ .kind = "test_result", .fn = email_send },
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
