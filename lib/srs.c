/* SPDX-License-Identifier: ISC */
/*
 * srs.c -- spaced repetition: SM-2 scheduling (srs.h).
 *
 * The algorithm as its 1990 description states it, with two choices
 * written down here.  A failing grade (below 3) restarts the repetitions
 * "without changing the E-Factor" (step 6): Wikipedia's pseudocode and
 * some libraries apply the step 5 update on every grade, which would
 * lower EF by up to 0.8 on a blackout; we follow the original text.
 * The interval is round(I x EF), halves up, as the issue asks (the 1990
 * text says fractions are "rounded up"), using the E-Factor from before
 * the review, as the text's I(n) := I(n-1) x EF reads, then EF moves.
 */
#include "config.h"

#include "keel/srs.h"

/*
 * EF' - EF in hundredths for grade q: 100 x (0.1 - d(0.08 + 0.02d))
 * with d = 5 - q, which is 10 - 8d - 2d^2: +10, 0, -14, -32, -54, -80.
 */
static int
ease_delta(int q)
{
	int	 d = KEEL_SRS_GRADE_MAX - q;

	return 10 - 8 * d - 2 * d * d;
}

bool
keel_srs_grade_valid(int64_t grade)
{
	return grade >= 0 && grade <= KEEL_SRS_GRADE_MAX;
}

bool
keel_srs_review(struct keel_srs *s, int64_t grade)
{
	int64_t	 next;
	int	 q;

	if (!keel_srs_grade_valid(grade) || s->ease < KEEL_SRS_EASE_MIN ||
	    s->interval < 0 || s->reps < 0)
		return false;
	q = (int)grade;
	if (q < 3) {
		s->reps = 0;
		s->interval = 1;
		return true;
	}
	if (s->reps == 0)
		next = 1;
	else if (s->reps == 1)
		next = 6;
	else {
		/* interval <= INT_MAX and ease < 2^31: no int64 overflow. */
		next = ((int64_t)s->interval * s->ease + 50) / 100;
		if (next < 1)
			next = 1;
	}
	s->interval = next > KEEL_SRS_INTERVAL_MAX ? KEEL_SRS_INTERVAL_MAX :
	    (int)next;
	if (s->reps < INT32_MAX)
		s->reps++;
	/* The delta is at most +10: stop short of int overflow. */
	if (s->ease <= INT32_MAX - 10)
		s->ease += ease_delta(q);
	if (s->ease < KEEL_SRS_EASE_MIN)
		s->ease = KEEL_SRS_EASE_MIN;
	return true;
}
