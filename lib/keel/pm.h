/* SPDX-License-Identifier: ISC */
/* pm.h -- the dynamic pool's decision: grow, retire, or wait. */
#ifndef KEEL_PM_H
#define KEEL_PM_H

/*
 * Pure: the caller gives the time and keeps the state.  serve.c counts
 * its workers on a timer (the shared scoreboard says which are idle) and
 * does what the answer says (README "Processes and signals",
 * KEEL_PM=dynamic).
 */

/* The pool's bounds: KEEL_PM_MAX_CHILDREN, _MIN_SPARE, _MAX_SPARE and
 * KEEL_PM_IDLE_TIMEOUT in ms. */
struct keel_pm_limits {
	int	 max_children;
	int	 min_spare;
	int	 max_spare;
	double	 idle_timeout;
};

/*
 * What the supervisor saw at one tick.  A worker still starting counts as
 * idle (it is about to be), one told to leave as neither idle nor busy
 * but still in total (its slot is not free until it has gone).
 */
struct keel_pm_view {
	int	 total;		/* live workers, leaving ones included */
	int	 idle;		/* idle or starting, leaving ones excluded */
};

/* What the decision remembers between ticks; zero it to start. */
struct keel_pm_state {
	int	 ramp;		/* forks on the next tick that finds too few */
	double	 surplus_since;	/* ms: idle > min_spare since; 0: not */
	double	 last_retire;	/* ms */
};

/* The answer: workers to fork now, workers to retire now (0 or 1). */
struct keel_pm_step {
	int	 spawn;
	int	 retire;
};

#define KEEL_PM_RAMP_MAX	32	/* forks per tick at most (PHP-FPM's) */
#define KEEL_PM_RETIRE_GAP	1000	/* ms between two retirements */

/*
 * Decides one tick at time now (ms, monotonic).  Fewer idle workers than
 * min_spare, and room under max_children: fork up to ramp of them, ramp
 * doubling on each tick that still finds too few (1, 2, 4 ...
 * KEEL_PM_RAMP_MAX), back to 1 once there are enough.  More idle than
 * max_spare: retire one.  More idle than min_spare at every tick for the
 * idle timeout: retire one.  At most one retirement per
 * KEEL_PM_RETIRE_GAP, as PHP-FPM, so a burst's surplus goes in seconds
 * and the pool shrinks to min_spare at rest.
 */
struct keel_pm_step	keel_pm_decide(const struct keel_pm_limits *lim,
			    const struct keel_pm_view *v, double now,
			    struct keel_pm_state *st);

#endif /* KEEL_PM_H */
