/* SPDX-License-Identifier: ISC */
/*
 * metrics-cost.c -- keel-bench-metrics: what lib/metrics.c adds to one
 * cached GET, measured alone.  The series a request of row d touches
 * (tests/bench/run): its count and its time by route, method and code,
 * the cache lookup, and the api and read limiters' decisions -- with
 * their label text built as the callers build it -- a million times,
 * into a file of its own.  Prints nanoseconds per request.
 *
 *	keel-bench-metrics [DIR]	(default: a fresh directory in /tmp)
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "keel/metrics.h"

#define ROUNDS	1000000

static double
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int
main(int argc, char *argv[])
{
	char	 tmpl[] = "/tmp/keel-bench-metrics-XXXXXX", err[256];
	char	 l[KEEL_METRICS_LABELS_MAX];
	char	*dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
	double	 t0;
	int	 i;

	if (dir == NULL || !keel_metrics_open(dir, "bench", 2, err,
	    sizeof(err))) {
		fprintf(stderr, "keel-bench-metrics: %s\n", dir ? err : "mkdtemp");
		return 1;
	}
	t0 = now_ns();
	for (i = 0; i < ROUNDS; i++) {
		keel_metrics_add(KEEL_M_HTTP_REQUESTS, keel_metrics_labels(l,
		    "route", "/api/cars", "method", "GET", "code", "200",
		    (char *)NULL), 1);
		keel_metrics_observe(KEEL_M_HTTP_DURATION, keel_metrics_labels(
		    l, "route", "/api/cars", "method", "GET", (char *)NULL),
		    0.001);
		keel_metrics_add(KEEL_M_CACHE, keel_metrics_labels(l,
		    "namespace", "cars", "result", "hit", (char *)NULL), 1);
		keel_metrics_add(KEEL_M_RATE_LIMIT, keel_metrics_labels(l,
		    "limiter", "api", "decision", "allow", (char *)NULL), 1);
		keel_metrics_add(KEEL_M_RATE_LIMIT, keel_metrics_labels(l,
		    "limiter", "read", "decision", "allow", (char *)NULL), 1);
	}
	printf("%.0f ns per request (5 series, %d requests, dir %s)\n",
	    (now_ns() - t0) / ROUNDS, ROUNDS, dir);
	return 0;
}
