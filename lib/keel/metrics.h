/* SPDX-License-Identifier: ISC */
/*
 * metrics.h -- counters, gauges and histograms in per-host shared memory
 * (DESIGN.md, "Observability"), summed by GET /api/metrics.
 */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_buf;

/*
 * Every metric keel keeps, by Prometheus's conventions.  The labels each
 * takes are in its comment; "app" is added at scrape time (the file the
 * series lives in).  Label values come from code -- route patterns,
 * statement names, namespaces -- never from a request (no user ids, no
 * paths with ids in them).
 */
enum keel_metric {
	KEEL_M_HTTP_REQUESTS,	/* counter: route, method, code */
	KEEL_M_HTTP_DURATION,	/* histogram (s): route, method */
	KEEL_M_DB_QUERY,	/* histogram (s): statement */
	KEEL_M_CACHE,		/* counter: namespace, result */
	KEEL_M_RATE_LIMIT,	/* counter: limiter, decision */
	KEEL_M_JOBS,		/* counter: queue, outcome */
	KEEL_M_ERRORS,		/* counter: kind */
	KEEL_M_WORKER_STARTS,	/* counter: (none) */
	KEEL_M_STREAM_OPENS,	/* counter: (none) */
	KEEL_M_STREAM_CLOSES,	/* counter: reason */
	KEEL_M_STREAM_EVENTS,	/* counter: (none) */
	KEEL_M_CRON_RUNS,	/* counter: result (started, completed) */
	KEEL_M_CRON_START,	/* gauge (unix s): (none) */
	KEEL_M_CRON_DURATION,	/* gauge (s): (none) */
	KEEL_M_CRON_ITEMS,	/* counter: outcome (processed, failed,
				   retried) */
	KEEL_M_METRICS_DROPPED,	/* counter: (none); metrics.c's own, read
				   from the slots at scrape time: a series
				   that found its slot full is counted here,
				   never shown */
	KEEL_M__MAX
};

/* A series' labels as Prometheus text, without braces; see labels(). */
#define KEEL_METRICS_LABELS_MAX	112

/*
 * Maps (creating it if need be) the file <dir>/<name>.metrics with at
 * least nslots slots, before the caller forks: one file per app or
 * program, whatever the restarts.  dir is created (one level).  False,
 * with the reason in err, when it can't; metrics then stay off and every
 * call below does nothing.  The mapping lives as long as the process.
 */
bool	keel_metrics_open(const char *dir, const char *name, int nslots,
	    char *err, size_t n);

/* The slot this process counts into (a worker's index); 0 by default. */
void	keel_metrics_use(int slot);

/* True when keel_metrics_open() succeeded in this process (or parent). */
bool	keel_metrics_on(void);

/*
 * Writes labels (key, value pairs, NULL-terminated) as Prometheus label
 * text into buf (size KEEL_METRICS_LABELS_MAX): k1="v1",k2="v2", with
 * backslash, quote and newline escaped.  Returns buf; a pair that would
 * not fit is left out.
 */
char	*keel_metrics_labels(char buf[KEEL_METRICS_LABELS_MAX], ...)
	    __attribute__((sentinel));

/*
 * On the request path: no lock, no syscall.  A series (metric, labels)
 * is found or made in this process's slot, then updated with an atomic
 * instruction, so processes sharing a slot (a worker and its successor
 * in a SIGHUP roll) never lose a count.
 */
void	keel_metrics_add(enum keel_metric m, const char *labels, uint64_t n);
void	keel_metrics_observe(enum keel_metric m, const char *labels,
	    double seconds);
void	keel_metrics_set(enum keel_metric m, const char *labels, double v);

/*
 * One answered request: keel_http_requests_total{route, method, code} + 1
 * and ms in keel_http_request_duration_seconds{route, method}.  route is
 * a route table's pattern or "unmatched", never a path; a method other
 * than the seven common ones (clients choose it) counts as "other".
 */
void	keel_metrics_request(const char *route, const char *method,
	    int status, double ms);

/* keel_errors_total{kind} + 1; kind is a name from code. */
void	keel_metrics_error(const char *kind);

/*
 * Appends the Prometheus text format 0.0.4 of every *.metrics file in
 * dir to out: each series summed over its file's slots, with
 * app="<file name>" first among its labels; HELP and TYPE once per
 * metric.  Every file also gets keel_metrics_dropped_total{app}: the
 * updates of series that found no room in their slot (0 when none).  False, with the reason in err, when dir can't be read.
 */
bool	keel_metrics_scrape(const char *dir, struct keel_buf *out, char *err,
	    size_t n);

/*
 * Appends one gauge, with its HELP and TYPE lines when help is not NULL
 * (the first series of that name), for values read at scrape time.
 */
void	keel_metrics_gauge(struct keel_buf *out, const char *name,
	    const char *help, const char *labels, double v);

#endif /* KEEL_METRICS_H */
