/* SPDX-License-Identifier: ISC */
/*
 * drain-noop.c -- keel-drain-noop: drains the noop queue, whose jobs do
 * nothing, so what is measured is the queue machinery itself (the
 * benchmark in tests/bench/jobs_bench.py; the retention tests).  Kinds:
 * "noop" completes, "fail" is dead-lettered, "retry" always fails.
 * Built, never installed.
 */
#include "config.h"

#include <stdio.h>

#include "keel/drain.h"
#include "keel/mem.h"

static enum keel_job_result
noop_done(void *ctx, const struct keel_job *job, char *why, size_t n)
{
	(void)ctx;
	(void)job;
	(void)why;
	(void)n;
	return KEEL_JOB_DONE;
}

static enum keel_job_result
noop_fail(void *ctx, const struct keel_job *job, char *why, size_t n)
{
	(void)ctx;
	snprintf(why, n, "fail job %s asked to fail", job->key);
	return KEEL_JOB_FAIL;
}

static enum keel_job_result
noop_retry(void *ctx, const struct keel_job *job, char *why, size_t n)
{
	(void)ctx;
	snprintf(why, n, "retry job %s fails every attempt", job->key);
	return KEEL_JOB_RETRY;
}

static const struct keel_job_kind noop_kinds[] = {
	{ .kind = "noop", .fn = noop_done },
	{ .kind = "fail", .fn = noop_fail },
	{ .kind = "retry", .fn = noop_retry },
};

static const struct keel_drainer noop_drainer = {
	.name = "keel-drain-noop", .queue = "noop",
	.kinds = noop_kinds, .nkinds = KEEL_NELEM(noop_kinds),
};

int
main(int argc, char *argv[])
{
	return keel_drain_main(argc, argv, &noop_drainer);
}
