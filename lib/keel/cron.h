/* SPDX-License-Identifier: ISC */
/* cron.h -- what every batch program shares: configuration, a lock so runs
 * never overlap, SIGTERM, a time budget, progress and the summary line. */
#ifndef KEEL_CRON_H
#define KEEL_CRON_H

#include <stdbool.h>

#include "keel/config.h"

struct keel_cron {
	const char		*prog;
	struct keel_config	 cfg;		/* read by keel_cron_init */
	int			 lockfd;	/* -1 until locked */
	double			 t0;		/* ms, monotonic */
	double			 deadline;	/* ms, monotonic; 0: none */
	int			 tty;		/* stderr is a terminal */
	double			 shown;		/* ms, last progress line */
};

/*
 * Reads the configuration (exits 1 naming a bad variable), starts logging
 * as prog and catches SIGTERM and SIGINT (keel_cron_stopping() turns
 * true; the program finishes what it holds and leaves).  budget_s > 0
 * sets the time budget.
 */
void	 keel_cron_init(struct keel_cron *c, const char *prog, int budget_s);
/*
 * Takes $KEEL_LOCK_DIR/<prog>.lock with flock(2), so the kernel releases
 * it whatever kills us, and writes our pid into it.  True when taken;
 * false when another run holds it (logged with that run's pid).
 */
bool	 keel_cron_lock(struct keel_cron *c);
/* True once SIGTERM/SIGINT arrived or the budget is spent. */
bool	 keel_cron_stopping(const struct keel_cron *c);
/* True once SIGTERM/SIGINT arrived. */
bool	 keel_cron_signalled(void);
/* Milliseconds left in the budget (a large number when there is none). */
double	 keel_cron_left_ms(const struct keel_cron *c);
/* Seconds since keel_cron_init. */
double	 keel_cron_elapsed(const struct keel_cron *c);
/* Milliseconds, monotonic. */
double	 keel_cron_now_ms(void);
/* A progress line on a terminal (redrawn in place, at most 5 a second);
 * nothing when stderr is not a terminal. */
void	 keel_cron_progress(struct keel_cron *c, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Prints the one-line summary to stdout (after clearing the progress
 * line), releases the lock and the configuration. */
void	 keel_cron_done(struct keel_cron *c, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif /* KEEL_CRON_H */
