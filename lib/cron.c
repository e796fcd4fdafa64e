/* SPDX-License-Identifier: ISC */
/*
 * cron.c -- the scaffolding of a batch program started by cron.
 *
 * A run must never overlap the previous one, so it takes an flock(2) lock:
 * the kernel drops it however the holder dies (even SIGKILL), so a crash
 * can't wedge the schedule the way a stale pid file can.  SIGTERM and
 * SIGINT only set a flag; programs check it between units of work and
 * leave nothing half-done.
 */
#include "config.h"

#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/cron.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/report.h"

static volatile sig_atomic_t got_term;

static void
on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

double
keel_cron_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

void
keel_cron_init(struct keel_cron *c, const char *prog, int budget_s)
{
	struct sigaction	 sa;
	char			 err[256];

	memset(c, 0, sizeof(*c));
	c->prog = prog;
	c->lockfd = -1;
	keel_log_init(prog, KEEL_LOG_INFO);
	keel_config_core_limit();	/* before anything holds a secret */
	if (!keel_config_load(&c->cfg, err, sizeof(err)))
		keel_log_fatalx("configuration: %s", err);
	keel_log_init(prog, (enum keel_log_level)c->cfg.log_level);
	if (!keel_report_init(&c->cfg, prog, err, sizeof(err)))
		keel_log_fatalx("configuration: %s", err);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	/* SA_RESTART: libpq and hiredis never see EINTR; every blocking
	 * call we make is bounded (a blocking read waits at most 1 s). */
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	c->tty = isatty(STDERR_FILENO);
	c->t0 = keel_cron_now_ms();
	if (budget_s > 0)
		c->deadline = c->t0 + budget_s * 1000.0;
	/* One metrics file per program, one slot: runs never overlap. */
	if (c->cfg.metrics && *c->cfg.metrics_dir != '\0' &&
	    !keel_metrics_open(
	    c->cfg.metrics_dir, prog, 1, err, sizeof(err)))
		keel_log_warnx("metrics off: %s", err);
}

/* The summary's processed=, failed= and retried= counts, as metrics. */
static void
count_summary(const struct keel_cron *c, const char *summary)
{
	static const char *const outcomes[] = { "processed", "failed",
	    "retried" };
	char		 key[16], labels[KEEL_METRICS_LABELS_MAX];
	const char	*p;
	long long	 v;
	size_t		 i;

	for (i = 0; i < KEEL_NELEM(outcomes); i++) {
		snprintf(key, sizeof(key), "%s=", outcomes[i]);
		if ((p = strstr(summary, key)) == NULL ||
		    (p > summary && p[-1] != ' ') ||
		    sscanf(p + strlen(key), "%lld", &v) != 1 || v < 0)
			continue;
		keel_metrics_add(KEEL_M_CRON_ITEMS, keel_metrics_labels(labels,
		    "outcome", outcomes[i], (char *)NULL), (uint64_t)v);
	}
	keel_metrics_set(KEEL_M_CRON_DURATION, "", keel_cron_elapsed(c));
	keel_metrics_add(KEEL_M_CRON_RUNS, "result=\"completed\"", 1);
}

bool
keel_cron_lock(struct keel_cron *c)
{
	char	 path[1024], buf[32];
	ssize_t	 n;
	int	 fd;

	snprintf(path, sizeof(path), "%s/%s.lock", c->cfg.lock_dir, c->prog);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1)
		keel_log_fatal("lock %s (KEEL_LOCK_DIR)", path);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK)
			keel_log_fatal("flock %s", path);
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		keel_log_info("another run holds %s (pid %s); leaving", path,
		    buf[0] != '\0' ? buf : "?");
		close(fd);
		return false;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n)
		keel_log_warn("writing our pid to %s", path);
	c->lockfd = fd;
	/* A run starts when it holds the lock: a skipped one is no run. */
	keel_metrics_add(KEEL_M_CRON_RUNS, "result=\"started\"", 1);
	keel_metrics_set(KEEL_M_CRON_START, "", (double)time(NULL));
	return true;
}

bool
keel_cron_signalled(void)
{
	return got_term != 0;
}

bool
keel_cron_stopping(const struct keel_cron *c)
{
	return got_term || (c->deadline > 0 &&
	    keel_cron_now_ms() >= c->deadline);
}

double
keel_cron_left_ms(const struct keel_cron *c)
{
	double	 left;

	if (c->deadline <= 0)
		return 1e12;
	left = c->deadline - keel_cron_now_ms();
	return left > 0 ? left : 0;
}

double
keel_cron_elapsed(const struct keel_cron *c)
{
	return (keel_cron_now_ms() - c->t0) / 1000.0;
}

void
keel_cron_progress(struct keel_cron *c, const char *fmt, ...)
{
	va_list	 ap;
	double	 now;

	if (!c->tty)
		return;
	now = keel_cron_now_ms();
	if (now - c->shown < 200)
		return;
	c->shown = now;
	fprintf(stderr, "\r\033[K%s: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

void
keel_cron_done(struct keel_cron *c, const char *fmt, ...)
{
	va_list	 ap;
	char	 summary[1024];

	if (c->tty && c->shown > 0)
		fprintf(stderr, "\r\033[K");
	va_start(ap, fmt);
	vsnprintf(summary, sizeof(summary), fmt, ap);
	va_end(ap);
	printf("%s: %s\n", c->prog, summary);
	if (c->lockfd != -1)
		count_summary(c, summary);
	fflush(stdout);
	if (c->lockfd != -1) {
		/* Closing releases the flock; the file stays for the next. */
		close(c->lockfd);
		c->lockfd = -1;
	}
	keel_config_free(&c->cfg);
}
