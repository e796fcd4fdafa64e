/* SPDX-License-Identifier: ISC */
/* pm.c -- the dynamic pool's decision (pm.h); serve.c acts on it. */
#include "config.h"

#include "keel/pm.h"

static int
min3(int a, int b, int c)
{
	int	 m = a < b ? a : b;

	return m < c ? m : c;
}

struct keel_pm_step
keel_pm_decide(const struct keel_pm_limits *lim, const struct keel_pm_view *v,
    double now, struct keel_pm_state *st)
{
	struct keel_pm_step	 s = { .spawn = 0, .retire = 0 };

	if (st->ramp < 1)
		st->ramp = 1;
	if (v->idle > lim->min_spare) {
		if (st->surplus_since == 0)
			st->surplus_since = now;
	} else
		st->surplus_since = 0;
	if (v->idle < lim->min_spare && v->total < lim->max_children) {
		s.spawn = min3(st->ramp, lim->min_spare - v->idle,
		    lim->max_children - v->total);
		if ((st->ramp *= 2) > KEEL_PM_RAMP_MAX)
			st->ramp = KEEL_PM_RAMP_MAX;
		return s;
	}
	st->ramp = 1;
	if (now - st->last_retire < KEEL_PM_RETIRE_GAP)
		return s;
	if (v->idle > lim->max_spare || (st->surplus_since != 0 &&
	    now - st->surplus_since >= lim->idle_timeout)) {
		s.retire = 1;
		st->last_retire = now;
	}
	return s;
}
