/* SPDX-License-Identifier: ISC */
/*
 * test_log.c -- unit tests for log.c's line: its prefix, a caller's own
 * text, a control byte no caller escaped, and the bound that keeps every
 * line inside its buffer, and access lines held (keel_log_hold) until a
 * flush, a line of another kind, a full buffer or their age; warnings
 * that repeat, written once a second per call site with their count.
 * Each test points stderr at a temporary file and reads back what was
 * written.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/log.h"

/* Runs fn with stderr in a temp file; returns what it wrote (caller frees). */
static char *
captured(void (*fn)(void))
{
	FILE	*f;
	char	*out;
	long	 n;
	int	 saved;

	f = tmpfile();
	assert_non_null(f);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved != -1);
	assert_true(dup2(fileno(f), STDERR_FILENO) != -1);
	fn();
	assert_true(dup2(saved, STDERR_FILENO) != -1);
	close(saved);
	n = ftell(f);
	assert_true(n >= 0);
	out = calloc(1, (size_t)n + 1);
	assert_non_null(out);
	rewind(f);
	assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return out;
}

static void
write_text(void)
{
	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_set_request("0123456789abcdef");
	keel_log_text(KEEL_LOG_INFO, "access time=x status=200");
	keel_log_set_request(NULL);
	keel_log_info("n=%d", 7);
	keel_log_text(KEEL_LOG_DEBUG, "not at info");
}

static void
test_log_text_is_written_as_is_after_the_prefix(void **state)
{
	char	*out, want[128];

	(void)state;
	out = captured(write_text);
	snprintf(want, sizeof(want), "cars[%ld] info req=0123456789abcdef "
	    "access time=x status=200\ncars[%ld] info n=7\n", (long)getpid(),
	    (long)getpid());
	assert_string_equal(out, want);
	free(out);
}

static void
write_forged(void)
{
	keel_log_init("drain", KEEL_LOG_INFO);
	keel_log_info("job key=%s", "k\ndrain[1] error forged\x1b[2J\x7f");
	keel_log_text(KEEL_LOG_INFO, "tab\there");
}

/* A value nobody escaped can't end its line or start another. */
static void
test_log_control_bytes_are_escaped_on_the_way_out(void **state)
{
	char	*out, want[192];

	(void)state;
	out = captured(write_forged);
	snprintf(want, sizeof(want), "drain[%ld] info job key=k\\x0adrain[1] "
	    "error forged\\x1b[2J\\x7f\ndrain[%ld] info tab\\x09here\n",
	    (long)getpid(), (long)getpid());
	assert_string_equal(out, want);
	free(out);
}

static void
write_c1(void)
{
	keel_log_init("drain", KEEL_LOG_INFO);
	keel_log_info("k=%s", "\xc2\x9b[2J \xc2\x85 \x9b \xc3\xa9 \xe2\x82\xac "
	    "\xc2\xa0");
}

/*
 * C1 controls, as UTF-8 (U+009B, U+0085) or a raw stray byte, are escaped;
 * characters whose bytes merely include 0x80-0x9f (U+20AC) are not.
 */
static void
test_log_c1_controls_are_escaped_other_utf8_is_not(void **state)
{
	char	*out, want[192];

	(void)state;
	out = captured(write_c1);
	snprintf(want, sizeof(want), "drain[%ld] info k=\\xc2\\x9b[2J "
	    "\\xc2\\x85 \\x9b \xc3\xa9 \xe2\x82\xac \xc2\xa0\n",
	    (long)getpid());
	assert_string_equal(out, want);
	free(out);
}

static char	 huge[3000];

static void
write_huge(void)
{
	memset(huge, 'p', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	keel_log_init(huge, KEEL_LOG_INFO);
	keel_log_set_request("0123456789abcdef");
	keel_log_text(KEEL_LOG_INFO, huge);
	keel_log_info("%s", huge);
	keel_log_set_request(NULL);
	keel_log_init("keel", KEEL_LOG_INFO);
}

/* A name longer than a line: each line is cut, none overruns (ASan). */
static void
test_log_lines_stay_inside_their_buffer(void **state)
{
	char	*out, *nl, *line;
	int	 lines = 0;

	(void)state;
	out = captured(write_huge);
	for (line = out; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		assert_true(nl - line < 2048);
		assert_true(strncmp(line, "ppp", 3) == 0);
		lines++;
	}
	assert_int_equal(lines, 2);
	assert_string_equal(line, "");
	free(out);
}

/* What stderr held at each step of a held write (its offset). */
static long	 seen[4];

static long
written(void)
{
	return (long)lseek(STDERR_FILENO, 0, SEEK_CUR);
}

static void
write_held(void)
{
	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_hold(true);
	keel_log_access("GET", "/api/cars", 200, 1.5);
	keel_log_access("GET", "/api/cars/1", 404, 0.25);
	seen[0] = written();
	keel_log_flush();
	seen[1] = written();
	keel_log_flush();		/* nothing held: nothing written */
	seen[2] = written();
	keel_log_hold(false);
}

/* Held access lines wait for the flush, then go out whole, in order. */
static void
test_log_held_lines_wait_for_the_flush(void **state)
{
	char	*out, *second;

	(void)state;
	out = captured(write_held);
	assert_int_equal(seen[0], 0);
	assert_int_equal(seen[1], (long)strlen(out));
	assert_int_equal(seen[2], seen[1]);
	assert_non_null(strstr(out, " info access time="));
	assert_non_null(strstr(out, "path=/api/cars status=200 ms=1.50\n"));
	second = strstr(out, "path=/api/cars/1 status=404 ms=0.25\n");
	assert_non_null(second);
	assert_true(second > strstr(out, "status=200"));
	free(out);
}

static void
write_held_then_warning(void)
{
	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_hold(true);
	keel_log_access("GET", "/a", 200, 1);
	keel_log_warnx("db: something");
	seen[0] = written();
	keel_log_access("GET", "/b", 200, 1);
	keel_log_hold(false);		/* off: what is held goes */
	seen[1] = written();
}

/* A line of another kind writes what is held first: the order stays. */
static void
test_log_another_line_writes_the_held_ones_first(void **state)
{
	char	*out, *a, *w, *b;

	(void)state;
	out = captured(write_held_then_warning);
	a = strstr(out, "path=/a ");
	w = strstr(out, "warn db: something\n");
	b = strstr(out, "path=/b ");
	assert_non_null(a);
	assert_non_null(w);
	assert_non_null(b);
	assert_true(a < w && w < b);
	/* The warning wrote /a before it, /b waited for the hold's end. */
	assert_int_equal(seen[0], (long)(strchr(w, '\n') + 1 - out));
	assert_int_equal(seen[1], (long)strlen(out));
	free(out);
}

static void
write_many_held(void)
{
	int	 i;

	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_hold(true);
	for (i = 0; i < 200; i++)
		keel_log_access("GET", "/api/cars", 200, i);
	seen[0] = written();
	keel_log_hold(false);
}

/* A full buffer goes out on its own, a whole number of lines at a time. */
static void
test_log_a_full_buffer_writes_whole_lines(void **state)
{
	char	*out, *nl, *line;
	int	 lines = 0;

	(void)state;
	out = captured(write_many_held);
	assert_true(seen[0] > 0);
	assert_true(seen[0] < (long)strlen(out));
	assert_int_equal(out[seen[0] - 1], '\n');
	for (line = out; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		assert_true(strncmp(line, "cars[", 5) == 0);
		lines++;
	}
	assert_int_equal(lines, 200);
	free(out);
}

static void
write_held_aged(void)
{
	struct timespec	 ts = { 0, (KEEL_LOG_HOLD_MS + 20) * 1000000L };

	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_hold(true);
	keel_log_access("GET", "/old", 200, 1);
	nanosleep(&ts, NULL);
	keel_log_access("GET", "/new", 200, 1);
	seen[0] = written();
	keel_log_hold(false);
}

/* A line held KEEL_LOG_HOLD_MS goes out with the next one. */
static void
test_log_an_aged_line_goes_out_with_the_next(void **state)
{
	char	*out;

	(void)state;
	out = captured(write_held_aged);
	assert_non_null(strstr(out, "path=/new "));
	assert_int_equal(seen[0], (long)strlen(out));
	free(out);
}

/* How many times needle occurs in hay. */
static int
count(const char *hay, const char *needle)
{
	int	 n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

static void
sleep_ms(long ms)
{
	struct timespec	 ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
write_repeated(void)
{
	int	 i;

	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_limit(true);
	for (i = 0; i < 100; i++)
		keel_log_warnx("limit: redis down n=%d", i);
	seen[0] = written();
	keel_log_close();
	keel_log_limit(false);
}

/* A hundred at once: the first line, then the count of the others. */
static void
test_log_a_repeated_warning_is_written_once_with_its_count(void **state)
{
	char	*out, want[256];

	(void)state;
	out = captured(write_repeated);
	snprintf(want, sizeof(want), "cars[%ld] warn limit: redis down n=0\n",
	    (long)getpid());
	assert_int_equal(seen[0], (long)strlen(want));
	assert_true(strncmp(out, want, strlen(want)) == 0);
	snprintf(want, sizeof(want), "cars[%ld] warn log: 99 more like "
	    "\"limit: redis down n=0\" since\n", (long)getpid());
	assert_string_equal(out + seen[0], want);
	free(out);
}

static void
write_repeated_past_a_second(void)
{
	int	 i;

	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_limit(true);
	for (i = 0; i < 5; i++)
		keel_log_warnx("db: primary: cannot connect n=%d", i);
	sleep_ms(KEEL_LOG_REPEAT_MS + 50);
	keel_log_warnx("db: primary: cannot connect n=%d", 5);
	keel_log_close();
	keel_log_limit(false);
}

/* The next line written there, a second on, carries the count. */
static void
test_log_the_next_line_after_its_second_carries_the_count(void **state)
{
	char	*out;

	(void)state;
	out = captured(write_repeated_past_a_second);
	assert_int_equal(count(out, "\n"), 2);
	assert_non_null(strstr(out, " warn db: primary: cannot connect n=0\n"));
	assert_non_null(strstr(out, " warn db: primary: cannot connect n=5 "
	    "(4 more like it since)\n"));
	free(out);
}

static void
write_two_sites(void)
{
	int	 i;

	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_limit(true);
	for (i = 0; i < 3; i++) {
		keel_log_warnx("site one %d", i);
		keel_log_error("site two %d", i);
		keel_log_warn("site three %d", i);
	}
	keel_log_close();
	keel_log_limit(false);
}

/* Each call site has a window of its own; errors and warn's too. */
static void
test_log_each_call_site_has_its_own_second(void **state)
{
	char	*out;

	(void)state;
	out = captured(write_two_sites);
	assert_non_null(strstr(out, " warn site one 0\n"));
	assert_non_null(strstr(out, " error site two 0\n"));
	assert_non_null(strstr(out, " warn site three 0: "));
	assert_non_null(strstr(out, "log: 2 more like \"site one 0\" since"));
	assert_non_null(strstr(out, "error log: 2 more like \"site two 0\""));
	assert_int_equal(count(out, "\n"), 6);
	free(out);
}

static void
write_unlimited(void)
{
	int	 i;

	keel_log_init("cars", KEEL_LOG_DEBUG);
	for (i = 0; i < 3; i++) {
		keel_log_info("an info line");
		keel_log_debug("a debug line");
		keel_log_access("GET", "/api/cars", 200, 1);
	}
	keel_log_close();
	keel_log_init("cars", KEEL_LOG_INFO);
}

/* info, debug and access lines are never held back. */
static void
test_log_info_debug_and_access_lines_are_all_written(void **state)
{
	char	*out;

	(void)state;
	out = captured(write_unlimited);
	assert_int_equal(count(out, " info an info line\n"), 3);
	assert_int_equal(count(out, " debug a debug line\n"), 3);
	assert_int_equal(count(out, " access time="), 3);
	assert_null(strstr(out, "more like"));
	free(out);
}

static void
write_fatal_in_a_window(void)
{
	pid_t	 pid;
	int	 st;

	keel_log_init("cars", KEEL_LOG_INFO);
	keel_log_limit(true);
	keel_log_warnx("before the fork");
	fflush(NULL);			/* or the child writes it again */
	if ((pid = fork()) == 0) {
		/* A child's kinds are its own: its first goes out. */
		keel_log_warnx("before the fork");
		keel_log_error("the end is near");
		keel_log_error("the end is near");
		keel_log_fatalx("the end is near");
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	seen[0] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	keel_log_close();
	keel_log_limit(false);
}

/*
 * A fatal line goes out even while an error of the same text waits for
 * its second, and a forked child starts with no kind seen.
 */
static void
test_log_fatal_lines_and_a_childs_first_are_written(void **state)
{
	char	*out;

	(void)state;
	out = captured(write_fatal_in_a_window);
	assert_int_equal(seen[0], 1);
	assert_int_equal(count(out, " warn before the fork\n"), 2);
	assert_int_equal(count(out, " error the end is near\n"), 2);
	/* The child's exit() wrote the count of the one error held. */
	assert_non_null(strstr(out, "log: 1 more like \"the end is near\""));
	free(out);
}

static void
write_lost(void)
{
	int	 fd, ro;

	keel_log_init("cars", KEEL_LOG_INFO);
	fd = dup(STDERR_FILENO);
	ro = open("/dev/null", O_RDONLY);
	assert_true(fd != -1 && ro != -1);
	dup2(ro, STDERR_FILENO);	/* every write fails: EBADF */
	keel_log_info("lost one");
	keel_log_info("lost two");
	keel_log_access("GET", "/lost", 200, 1);
	dup2(fd, STDERR_FILENO);
	close(ro);
	close(fd);
	keel_log_close();
}

/* Lines a failed write lost are counted, and the count is written. */
static void
test_log_lines_lost_to_failed_writes_are_counted(void **state)
{
	char	*out, want[128];

	(void)state;
	out = captured(write_lost);
	snprintf(want, sizeof(want), "cars[%ld] warn log: 3 lines lost to "
	    "failed writes\n", (long)getpid());
	assert_string_equal(out, want);
	free(out);
}

static void
write_repeated_unlimited(void)
{
	int	 i;

	keel_log_init("leaderboard-rebuild", KEEL_LOG_INFO);
	for (i = 0; i < 3; i++)
		keel_log_warnx("board %d: took over a fresh key", i);
	seen[0] = written();
	keel_log_close();
}

/* Without keel_log_limit() (a cron program's batch), each is written. */
static void
test_log_without_the_limit_every_repeat_is_written(void **state)
{
	char	*out;

	(void)state;
	out = captured(write_repeated_unlimited);
	assert_non_null(strstr(out, "warn board 0: took over a fresh key\n"));
	assert_non_null(strstr(out, "warn board 1: took over a fresh key\n"));
	assert_non_null(strstr(out, "warn board 2: took over a fresh key\n"));
	assert_null(strstr(out, "more like"));
	assert_int_equal(seen[0], (long)strlen(out));
	free(out);
}

static void
write_lost_then_warn(void)
{
	struct timespec	 ts = { 1, 100000000L };
	int		 fd, ro;

	keel_log_init("drain", KEEL_LOG_INFO);
	fd = dup(STDERR_FILENO);
	ro = open("/dev/null", O_RDONLY);
	assert_true(fd != -1 && ro != -1);
	dup2(ro, STDERR_FILENO);	/* every write fails: EBADF */
	keel_log_info("lost");
	dup2(fd, STDERR_FILENO);
	close(ro);
	close(fd);
	nanosleep(&ts, NULL);		/* past an earlier report's second */
	keel_log_warnx("a warning after");
	seen[0] = written();
	keel_log_close();
}

/* Without the limit too (a cron program), the next warning reports the
 * lines lost since, not only the exit. */
static void
test_log_lost_lines_are_reported_by_the_next_warning(void **state)
{
	char	*out, *lost, *warn;

	(void)state;
	out = captured(write_lost_then_warn);
	lost = strstr(out, "warn log: 1 lines lost to failed writes\n");
	warn = strstr(out, "warn a warning after\n");
	assert_non_null(lost);
	assert_non_null(warn);
	assert_true(lost < warn);
	assert_int_equal(seen[0], (long)strlen(out));
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_text_is_written_as_is_after_the_prefix),
		cmocka_unit_test(test_log_control_bytes_are_escaped_on_the_way_out),
		cmocka_unit_test(test_log_c1_controls_are_escaped_other_utf8_is_not),
		cmocka_unit_test(test_log_lines_stay_inside_their_buffer),
		cmocka_unit_test(test_log_held_lines_wait_for_the_flush),
		cmocka_unit_test(test_log_another_line_writes_the_held_ones_first),
		cmocka_unit_test(test_log_a_full_buffer_writes_whole_lines),
		cmocka_unit_test(test_log_an_aged_line_goes_out_with_the_next),
		cmocka_unit_test(test_log_a_repeated_warning_is_written_once_with_its_count),
		cmocka_unit_test(test_log_the_next_line_after_its_second_carries_the_count),
		cmocka_unit_test(test_log_each_call_site_has_its_own_second),
		cmocka_unit_test(test_log_info_debug_and_access_lines_are_all_written),
		cmocka_unit_test(test_log_fatal_lines_and_a_childs_first_are_written),
		cmocka_unit_test(test_log_lines_lost_to_failed_writes_are_counted),
		cmocka_unit_test(test_log_without_the_limit_every_repeat_is_written),
		cmocka_unit_test(test_log_lost_lines_are_reported_by_the_next_warning),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
