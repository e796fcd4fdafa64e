/* SPDX-License-Identifier: ISC */
/*
 * report-ship.c -- keel-report-ship: sends the error reports the apps,
 * supervisors and drainers spooled (lib/report.c) to SENTRY_DSN's
 * envelope endpoint, oldest first, and deletes each one Sentry took.
 *
 * cron starts it every minute; it looks for new files every second
 * within its budget.  What happens to an envelope by the answer:
 *   2xx                 sent: deleted
 *   no answer, 5xx      kept; the run pauses 5 s (--until-empty: stops)
 *   429, or any answer with X-Sentry-Rate-Limits or Retry-After
 *                       the pause is written to the spool's "backoff"
 *                       file, which every process of the host reads:
 *                       nothing is sent before it (a 429'd envelope is
 *                       kept)
 *   other 4xx           refused for good (malformed, too large, a wrong
 *                       key): deleted, counted failed, logged
 * The summary line's own counts: kept (files left), dropped (events the
 * producers dropped at the spool's bound since the last run), backoff
 * (seconds still to wait).
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/cron.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/report.h"
#include "keel/text.h"

#define PAUSE_MS	5000	/* after a failed send */

struct ship_counts {
	long	 sent;
	long	 refused;	/* a 4xx: deleted */
	long	 unsent;	/* no answer, 5xx, 429: kept for later */
};

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir, sorted (oldest first: they start with the time). */
static char **
list_spool(const char *dir, size_t *n)
{
	struct dirent	*de;
	char		**names = NULL;
	size_t		 cap = 0;
	DIR		*d;

	*n = 0;
	if ((d = opendir(dir)) == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (*n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			names = keel_realloc(names, cap * sizeof(*names));
		}
		names[(*n)++] = keel_strdup(de->d_name);
	}
	closedir(d);
	if (*n > 0)
		qsort(names, *n, sizeof(*names), by_name);
	return names;
}

static void
free_list(char **names, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Events dropped at the bound since the last look: "dropped" is taken
 * away whole (rename), counted by its size, deleted. */
static long
take_dropped(const char *spool)
{
	char		 from[1200], to[1200];
	struct stat	 sb;
	long		 n = 0;

	snprintf(from, sizeof(from), "%s/dropped", spool);
	snprintf(to, sizeof(to), "%s/tmp/dropped.%ld", spool, (long)getpid());
	if (rename(from, to) == -1)
		return 0;
	if (stat(to, &sb) == 0)
		n = (long)sb.st_size;
	(void)unlink(to);
	return n;
}

/*
 * Sends what new/ holds, oldest first, until it is empty, an answer
 * asks for a pause, a send fails, or the run must stop.  True when the
 * spool was emptied; *failed when a send failed.
 */
static bool
ship_pass(struct keel_cron *c, const char *spool, int timeout,
    struct ship_counts *cnt, bool *failed)
{
	char		 dir[1200], path[1400];
	char		**names;
	size_t		 n, i;
	struct keel_report_posted p;
	enum keel_err	 er;
	bool		 empty = true;

	*failed = false;
	snprintf(dir, sizeof(dir), "%s/new", spool);
	names = list_spool(dir, &n);
	for (i = 0; i < n && empty; i++) {
		if (keel_cron_stopping(c) || keel_report_backoff_left() > 0) {
			empty = false;
			break;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		er = keel_report_post(path, timeout, &p);
		if (p.wait > 0) {
			keel_log_warnx("report-ship: the endpoint asks for a "
			    "pause of %ld s (status %d); every process of this "
			    "host backs off", p.wait, p.status);
			keel_report_backoff_for(p.wait);
		}
		cnt->sent += p.sent;
		cnt->refused += p.refused;
		if (p.refused > 0)
			keel_log_warnx("report-ship: %s: %d envelope(s) refused "
			    "for good (status %d)", names[i], p.refused,
			    p.status);
		if (er == KEEL_EINVAL) {
			/* Unreadable: never sendable. */
			keel_log_warnx("report-ship: %s is not an envelope; "
			    "removed", names[i]);
			(void)unlink(path);
			cnt->refused++;
		} else if (p.done) {
			if (unlink(path) == -1 && errno != ENOENT)
				keel_log_warn("report-ship: unlink %s", path);
		} else {
			cnt->unsent++;
			/* A pause asked for is the back-off's business. */
			*failed = p.wait == 0;
			if (*failed)
				keel_log_warnx("report-ship: %s not sent (%s); "
				    "kept", names[i], er != KEEL_OK ?
				    keel_strerror(er) : "server error");
			empty = false;
		}
	}
	free_list(names, n);
	return empty;
}

/* Files still waiting in new/. */
static long
kept(const char *spool)
{
	char		 dir[1200];
	char		**names;
	size_t		 n;

	snprintf(dir, sizeof(dir), "%s/new", spool);
	names = list_spool(dir, &n);
	free_list(names, n);
	return (long)n;
}

static void
ship_sleep(struct keel_cron *c, double ms)
{
	double	 left = keel_cron_left_ms(c);

	if (ms > left)
		ms = left;
	/* Short slices: SIGTERM is seen within 200 ms. */
	while (ms > 0 && !keel_cron_signalled()) {
		poll(NULL, 0, ms < 200 ? (int)ms : 200);
		ms -= 200;
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: keel-report-ship [--budget SECONDS] "
	    "[--until-empty] [--timeout SECONDS]\n"
	    "  --budget SECONDS   stop after this long (KEEL_DRAIN_BUDGET)\n"
	    "  --until-empty      stop once the spool is empty, the endpoint "
	    "asks for a pause or a send fails\n"
	    "  --timeout SECONDS  per envelope (10)\n");
}

int
main(int argc, char *argv[])
{
	struct keel_cron	 c;
	struct ship_counts	 cnt;
	const char		*spool;
	int64_t			 budget = 0, timeout = 10;
	double			 left;
	bool			 until_empty = false, failed;
	long			 dropped;
	int			 i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--until-empty") == 0)
			until_empty = true;
		else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc &&
		    keel_parse_int64(argv[i + 1], 1, 86400, &budget))
			i++;
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc &&
		    keel_parse_int64(argv[i + 1], 1, 300, &timeout))
			i++;
		else if (strcmp(argv[i], "--config") == 0) {
			keel_config_print_table();
			return 0;
		} else {
			usage();
			return 2;
		}
	}
	keel_cron_init(&c, "keel-report-ship", 0);
	if ((spool = keel_report_spool_dir()) == NULL) {
		keel_cron_done(&c, "processed=0 failed=0 retried=0 took=0.00s "
		    "(SENTRY_DSN is empty: nothing is reported)");
		return 0;
	}
	c.deadline = c.t0 + (budget > 0 ? budget : c.cfg.drain_budget) *
	    1000.0;
	if (!keel_cron_lock(&c)) {
		keel_cron_done(&c, "skipped: another run is shipping");
		return 0;
	}
	memset(&cnt, 0, sizeof(cnt));
	while (!keel_cron_stopping(&c)) {
		if ((left = keel_report_backoff_left()) > 0) {
			if (until_empty)
				break;
			ship_sleep(&c, left * 1000);
			continue;
		}
		if (ship_pass(&c, spool, (int)timeout, &cnt, &failed)) {
			if (until_empty)
				break;
			ship_sleep(&c, 1000);
		} else if (failed) {
			if (until_empty)
				break;
			ship_sleep(&c, PAUSE_MS);
		}
		keel_cron_progress(&c, "processed=%ld failed=%ld retried=%ld",
		    cnt.sent, cnt.refused, cnt.unsent);
	}
	keel_report_close();
	dropped = take_dropped(spool);
	keel_cron_done(&c, "processed=%ld failed=%ld retried=%ld took=%.2fs "
	    "kept=%ld dropped=%ld backoff=%.0fs", cnt.sent, cnt.refused,
	    cnt.unsent, keel_cron_elapsed(&c), kept(spool), dropped,
	    keel_report_backoff_left());
	return 0;
}
