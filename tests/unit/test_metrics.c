/* SPDX-License-Identifier: ISC */
/*
 * test_metrics.c -- unit tests for metrics.c: label text, series in a
 * slot, sums over slots, the text format of a scrape.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/mem.h"
#include "keel/metrics.h"

static char	 dir[64];

static int
setup(void **state)
{
	char	 err[256];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/keel-metrics-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	return keel_metrics_open(dir, "unit", 2, err, sizeof(err)) ? 0 : -1;
}

static int
teardown(void **state)
{
	char	 cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* The scrape as one string (the caller frees it). */
static char *
scrape(void)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	char		 err[256];

	assert_true(keel_metrics_scrape(dir, &b, err, sizeof(err)));
	keel_buf_putc(&b, '\0');
	return b.data;
}

static void
test_labels_escape_quotes_backslashes_newlines(void **state)
{
	char	 l[KEEL_METRICS_LABELS_MAX];

	(void)state;
	assert_string_equal(keel_metrics_labels(l, "a", "x\"y", "b", "p\\q\nr",
	    (char *)NULL), "a=\"x\\\"y\",b=\"p\\\\q\\nr\"");
	assert_string_equal(keel_metrics_labels(l, (char *)NULL), "");
}

static void
test_labels_leave_out_what_does_not_fit(void **state)
{
	char	 l[KEEL_METRICS_LABELS_MAX], big[200];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_string_equal(keel_metrics_labels(l, "a", "1", "b", big, "c",
	    "3", (char *)NULL), "a=\"1\",c=\"3\"");
}

static void
test_counters_sum_over_slots(void **state)
{
	char	*s;

	(void)state;
	keel_metrics_use(0);
	keel_metrics_add(KEEL_M_JOBS, "queue=\"q\",outcome=\"done\"", 3);
	keel_metrics_use(1);
	keel_metrics_add(KEEL_M_JOBS, "queue=\"q\",outcome=\"done\"", 4);
	keel_metrics_add(KEEL_M_JOBS, "queue=\"q\",outcome=\"retried\"", 1);
	s = scrape();
	assert_non_null(strstr(s, "# TYPE keel_jobs_total counter\n"));
	assert_non_null(strstr(s, "keel_jobs_total{app=\"unit\",queue=\"q\","
	    "outcome=\"done\"} 7\n"));
	assert_non_null(strstr(s, "keel_jobs_total{app=\"unit\",queue=\"q\","
	    "outcome=\"retried\"} 1\n"));

	/* Nothing lost yet: the series is there, at 0. */
	assert_non_null(strstr(s, "# TYPE keel_metrics_dropped_total counter\n"
	    "keel_metrics_dropped_total{app=\"unit\"} 0\n"));
	free(s);
}

static void
test_a_child_counts_into_the_same_file(void **state)
{
	pid_t	 pid;
	int	 st;
	char	*s;

	(void)state;
	keel_metrics_use(0);
	if ((pid = fork()) == 0) {
		keel_metrics_use(1);
		keel_metrics_add(KEEL_M_WORKER_STARTS, "", 5);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	keel_metrics_add(KEEL_M_WORKER_STARTS, "", 1);
	s = scrape();
	assert_non_null(strstr(s, "keel_worker_starts_total{app=\"unit\"} 6\n"));
	free(s);
}

static void
test_histogram_buckets_are_cumulative(void **state)
{
	char	*s;

	(void)state;
	keel_metrics_observe(KEEL_M_DB_QUERY, "statement=\"h\"", 0.0004);
	keel_metrics_observe(KEEL_M_DB_QUERY, "statement=\"h\"", 0.003);
	keel_metrics_observe(KEEL_M_DB_QUERY, "statement=\"h\"", 31);
	s = scrape();
	assert_non_null(strstr(s, "keel_db_query_duration_seconds_bucket{app="
	    "\"unit\",statement=\"h\",le=\"0.0005\"} 1\n"));
	assert_non_null(strstr(s, "keel_db_query_duration_seconds_bucket{app="
	    "\"unit\",statement=\"h\",le=\"0.005\"} 2\n"));
	assert_non_null(strstr(s, "keel_db_query_duration_seconds_bucket{app="
	    "\"unit\",statement=\"h\",le=\"5\"} 2\n"));
	assert_non_null(strstr(s, "keel_db_query_duration_seconds_bucket{app="
	    "\"unit\",statement=\"h\",le=\"30\"} 2\n"));
	assert_non_null(strstr(s, "keel_db_query_duration_seconds_bucket{app="
	    "\"unit\",statement=\"h\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(s, "keel_db_query_duration_seconds_sum{app="
	    "\"unit\",statement=\"h\"} 31.003400000\n"));
	assert_non_null(strstr(s, "keel_db_query_duration_seconds_count{app="
	    "\"unit\",statement=\"h\"} 3\n"));
	free(s);
}

static void
test_gauge_keeps_the_last_value(void **state)
{
	char	*s;

	(void)state;
	keel_metrics_set(KEEL_M_CRON_DURATION, "", 2.5);
	keel_metrics_set(KEEL_M_CRON_DURATION, "", 1.25);
	s = scrape();
	assert_non_null(strstr(s, "# TYPE keel_cron_last_duration_seconds "
	    "gauge\nkeel_cron_last_duration_seconds{app=\"unit\"} 1.25\n"));
	free(s);
}

static void
test_a_full_slot_drops_new_series_only(void **state)
{
	char	 l[KEEL_METRICS_LABELS_MAX], v[16], *s;
	int	 i;

	(void)state;
	keel_metrics_use(1);
	for (i = 0; i < 600; i++) {
		snprintf(v, sizeof(v), "%d", i);
		keel_metrics_add(KEEL_M_ERRORS, keel_metrics_labels(l, "kind", v,
		    (char *)NULL), 1);
	}
	keel_metrics_add(KEEL_M_JOBS, "queue=\"q\",outcome=\"done\"", 1);
	s = scrape();
	/* The series made before the slot filled still count. */
	assert_non_null(strstr(s, "outcome=\"done\"} 8\n"));
	/* Slot 1 held 3 series (jobs done and retried, worker starts), so
	 * 509 of the 600 fit and 91 updates were lost: counted, not hidden. */
	assert_non_null(strstr(s, "keel_metrics_dropped_total{app=\"unit\"} "
	    "91\n"));
	free(s);
}

static void
test_a_reopen_keeps_the_counts(void **state)
{
	char	 err[256], *s;

	(void)state;
	assert_true(keel_metrics_open(dir, "unit", 1, err, sizeof(err)));
	keel_metrics_add(KEEL_M_WORKER_STARTS, "", 1);
	s = scrape();
	assert_non_null(strstr(s, "keel_worker_starts_total{app=\"unit\"} 7\n"));
	free(s);
}

/*
 * The file holds every page it maps, none left a hole: a hole's first
 * store on a full filesystem would be a SIGBUS in a worker.
 */
static void
test_the_file_has_no_holes(void **state)
{
	struct stat	 st;
	char		 path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/unit.metrics", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 0);
	assert_true((off_t)st.st_blocks * 512 >= st.st_size);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_labels_escape_quotes_backslashes_newlines),
		cmocka_unit_test(test_labels_leave_out_what_does_not_fit),
		cmocka_unit_test(test_counters_sum_over_slots),
		cmocka_unit_test(test_a_child_counts_into_the_same_file),
		cmocka_unit_test(test_histogram_buckets_are_cumulative),
		cmocka_unit_test(test_gauge_keeps_the_last_value),
		cmocka_unit_test(test_a_full_slot_drops_new_series_only),
		cmocka_unit_test(test_a_reopen_keeps_the_counts),
		cmocka_unit_test(test_the_file_has_no_holes),
	};

	/* The tests run in order and build on each other's counts. */
	return cmocka_run_group_tests(tests, setup, teardown);
}
