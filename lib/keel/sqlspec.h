/* SPDX-License-Identifier: ISC */
/* sqlspec.h -- a statement specialised to the filters a run leaves out. */
#ifndef KEEL_SQLSPEC_H
#define KEEL_SQLSPEC_H

/*
 * Lists take optional filters as arms "($N::type IS NULL OR <cond>)": a
 * NULL $N drops its filter.  Planned with its values, PostgreSQL folds
 * each arm away; a cached generic plan can't (it must serve either), so
 * it can't use an index for <cond>.  Planning every run costs more than
 * the run itself, though, so db.c prepares one statement per set of
 * absent filters instead, each with no arm left in it: an absent arm
 * becomes "true", a present one "($N::type IS NOT NULL AND (<cond>))"
 * (its $N keeps its type; the test is a one-time filter).  Both rewrites
 * are exact: they hold whatever surrounds the arm.
 *
 * "LIMIT $N" is written as its value too, which is what the planner's
 * cost of a generic plan needs (a LIMIT it can't read costs as 10% of
 * the rows, so PostgreSQL would keep planning each run, plan_cache_mode
 * auto; keel_sqlspec_key says when).
 *
 * Pure functions: no I/O, no state.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parameters an arm may test: $1..$KEEL_SQLSPEC_MAXPARAM. */
#define KEEL_SQLSPEC_MAXPARAM	32
/* The biggest LIMIT written into a statement (more: left a parameter). */
#define KEEL_SQLSPEC_MAXLIMIT	1000

/* What of a statement varies with its values. */
struct keel_sqlspec_shape {
	uint32_t	 heads;		/* bit N-1: $N heads an arm */
	int		 limit;		/* N of the one "LIMIT $N", or 0 */
	bool		 unread;	/* the reader gave up (below) */
};

/* One specialised form: the arms whose $N is NULL, the LIMIT's value. */
struct keel_sqlspec_key {
	uint32_t	 nulls;		/* bit N-1: $N's arm is dropped */
	int		 limit;		/* the LIMIT written in, or -1 */
};

/*
 * Reads sql's arms and LIMIT into *sh.  False when sql has no arm, or
 * holds what this reader doesn't follow (comments, dollar quotes, E''
 * strings, an unclosed quote or parenthesis): such a statement is left
 * as it is.
 */
bool	 keel_sqlspec_shape(const char *sql, struct keel_sqlspec_shape *sh);

/* The form for a run with the n values v (NULL is SQL NULL). */
void	 keel_sqlspec_key(const struct keel_sqlspec_shape *sh, size_t n,
	    const char *const *v, struct keel_sqlspec_key *key);

/*
 * sql (whose shape was read) written for key: a string the caller
 * frees, or NULL when sql can't be read.  *unref gets bit N-1 for each
 * $N, N <= n, the result no longer names (the caller declares its type,
 * since the server can't infer one).
 */
char	*keel_sqlspec_write(const char *sql, const struct keel_sqlspec_key *key,
	    size_t n, uint32_t *unref);

#endif /* KEEL_SQLSPEC_H */
