/* SPDX-License-Identifier: ISC */
/* srs.h -- spaced repetition: SM-2 scheduling, in exact integers. */
#ifndef KEEL_SRS_H
#define KEEL_SRS_H

/*
 * SuperMemo 2 (P. A. Wozniak, "Optimization of Learning", 1990): a
 * card's next review after a grade q in 0..5.  The E-Factor is kept in
 * hundredths (250 is 2.5): every step of the update formula is a whole
 * number of hundredths, so the arithmetic is exact and the same on
 * every machine, and the flashcards' `ease real` column holds exactly
 * what was computed (any multiple of 0.01 under 10000 survives real's
 * six significant digits).
 */
#include <stdbool.h>
#include <stdint.h>

#define KEEL_SRS_EASE_START	250	/* a new card's E-Factor, 2.5 */
#define KEEL_SRS_EASE_MIN	130	/* the floor, 1.3 */
/*
 * The longest interval, days (100 years): SM-2 has no ceiling, but
 * intervals grow geometrically (a card graded 5 every time passes 2^31
 * days within 25 reviews); the cap keeps due_at a valid timestamp and
 * the arithmetic far from overflow.
 */
#define KEEL_SRS_INTERVAL_MAX	36500
#define KEEL_SRS_GRADE_MAX	5

/* A card's scheduling state. */
struct keel_srs {
	int	 ease;		/* E-Factor, hundredths: >= KEEL_SRS_EASE_MIN */
	int	 interval;	/* days until the next review, >= 0 */
	int	 reps;		/* successful reviews in a row, >= 0 */
};

/* True when grade is an SM-2 quality, 0..5. */
bool		 keel_srs_grade_valid(int64_t grade);

/*
 * Applies a review graded grade to *s.  Grade >= 3: the interval is 1
 * day after the first success in a row, 6 after the second, then
 * round(interval x EF) with the E-Factor the card had before this
 * review (halves round up); reps counts up; then EF' = EF + (0.1 -
 * (5-q)(0.08 + (5-q)0.02)), never under 1.3.  Grade < 3: reps 0,
 * interval 1 day, the E-Factor unchanged (the 1990 text's step 6,
 * "without changing the E-Factor").  Returns false, *s untouched, when
 * grade is not 0..5 or *s is out of its ranges.
 */
bool		 keel_srs_review(struct keel_srs *s, int64_t grade);

#endif /* KEEL_SRS_H */
