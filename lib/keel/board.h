/* SPDX-License-Identifier: ISC */
/* board.h -- leaderboards: score encoding, periods, the Redis boards. */
#ifndef KEEL_BOARD_H
#define KEEL_BOARD_H

/*
 * A board is one scope (global, or one test) and one period (all time,
 * this ISO week, this month, each starting on its first day UTC).  Its
 * durable copy is leaderboard_entries; Redis holds it as a sorted set
 * of user ids scored by keel_board_encode(), plus one sentinel member
 * scored -1, so an empty board still exists and a missing key means
 * "lost or never built": readers then answer from PostgreSQL.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "keel/db.h"
#include "keel/err.h"

struct keel_cache;
struct keel_redis;

/*
 * The encoding: score * 2^32 + (2^32 - 1 - t), t the second the score
 * was first reached counted from KEEL_BOARD_EPOCH, so a higher score
 * always sorts higher and, for equal scores, an earlier time does.  The
 * largest value is (2^21 - 1) * 2^32 + 2^32 - 1 = 2^53 - 1: every value
 * is an integer a double holds exactly (Redis's sorted-set scores).
 */
#define KEEL_BOARD_TIME_BITS	32
#define KEEL_BOARD_EPOCH	INT64_C(1577836800)	/* 2020-01-01 UTC */
#define KEEL_BOARD_TIME_MAX	((INT64_C(1) << KEEL_BOARD_TIME_BITS) - 1)
#define KEEL_BOARD_SCORE_MAX	((INT64_C(1) << (53 - KEEL_BOARD_TIME_BITS)) \
				    - 1)

/*
 * The value of score (0..KEEL_BOARD_SCORE_MAX) first reached at
 * reached (Unix seconds), times before the epoch counted as the epoch
 * and after its range as its end.  False (and *out untouched) for a
 * score out of range.
 */
bool		 keel_board_encode(int64_t score, int64_t reached,
		    double *out);
/* The score and the reaching second (Unix) of an encoded value v >= 0. */
void		 keel_board_decode(double v, int64_t *score,
		    int64_t *reached);
/*
 * The lowest value of score's band: members with a value >= the band
 * of score + 1 are exactly those with a higher score (competition rank
 * is 1 + their count).
 */
double		 keel_board_band(int64_t score);

enum keel_board_period {
	KEEL_BOARD_ALL,
	KEEL_BOARD_WEEK,		/* ISO week: Monday 00:00 UTC */
	KEEL_BOARD_MONTH,
	KEEL_BOARD_PERIOD__MAX
};

/* "all", "week", "month"; NULL-terminated, for field tables. */
extern const char *const keel_board_periods[];
/* The period named s, or KEEL_BOARD_PERIOD__MAX. */
enum keel_board_period keel_board_period_find(const char *s);

/*
 * The period p holding Unix second t: its first day as YYYY-MM-DD into
 * day (11 bytes), 1970-01-01 for all time, and *end (may be NULL) the
 * Unix second it ends (0 for all time).
 */
void		 keel_board_period(enum keel_board_period p, int64_t t,
		    char day[11], int64_t *end);

/* One board: test 0 is the global scope. */
struct keel_board {
	int64_t			 test;
	enum keel_board_period	 period;
	char			 start[11];	/* YYYY-MM-DD */
	int64_t			 end;		/* Unix s; 0: all time */
};

/* Board b of test (0: global) for the period holding Unix second t. */
void		 keel_board_at(struct keel_board *b, int64_t test,
		    enum keel_board_period p, int64_t t);
/*
 * b's Redis key into buf (size n >= KEEL_BOARD_KEY_MAX):
 * "keel:lb:g:all:1970-01-01", "keel:lb:t42:week:2026-11-30"; with
 * fresh, the key a rebuild fills before swapping it in (":new").  For
 * r in cluster mode (redis.h; r may be NULL) the board is the hash tag,
 * "keel:lb:{t42:week:2026-11-30}:new", so both keys share a slot.
 */
#define KEEL_BOARD_KEY_MAX	64
void		 keel_board_key(char *buf, size_t n,
		    const struct keel_board *b, bool fresh,
		    const struct keel_redis *r);

/*
 * The memcached namespace of the cached pages of test's boards (0: the
 * global scope), every period's: "leaderboard:global",
 * "leaderboard:t42", into buf (size n >= KEEL_BOARD_NS_MAX).  A writer
 * of a scope's boards invalidates its namespace only.
 */
#define KEEL_BOARD_NS_MAX	40
void		 keel_board_ns(char *buf, size_t n, int64_t test);

/*
 * Invalidates the cached pages of every scope user has an entry in
 * (leaderboard_entries, read on the primary), each scope's namespace
 * once: for a change to what a page shows of the user (their name)
 * rather than to a board.  Call after that change commits: a page
 * filled before it was stored under the generation this bumps.  The
 * error of PostgreSQL (nothing invalidated), else KEEL_EUNAVAIL when a
 * namespace could not be bumped (the others were), else KEEL_OK.
 */
enum keel_err	 keel_board_invalidate_user(struct keel_db *,
		    struct keel_cache *, int64_t user);

/*
 * Recomputes user's entries on boards b[0..n-1] from test_attempts into
 * leaderboard_entries, in one statement (one transaction): on each, the
 * user's best score per test of its scope in its period, and the second
 * it was first reached; a global board sums each test's best, reached
 * when the last of them was.  An entry is only ever replaced by one
 * computed from at least as many attempts, so a slow run can't undo a
 * newer one.  The entries are locked in b's order: pass the boards in
 * the order a rebuild writes them (the global scope's, then a test's,
 * each by period), so the two can't deadlock.  has[i] says whether the
 * user has an entry on b[i], vals[i] (encoded, keel_board_encode) what
 * it now is; an entry past the encoding's range is logged and left out.
 * The error of PostgreSQL (nothing written then).
 */
enum keel_err	 keel_board_compute_user(struct keel_db *db,
		    const struct keel_board *b, size_t n, int64_t user,
		    double *vals, bool *has);

/* Redis. */

/*
 * Adds member user with value v to b when b exists (ZADD GT: never
 * lowers it), and to b's fresh key when a rebuild is filling it (a
 * fresh key with no TTL or no sentinel is no run's: left alone).
 * *stored (not NULL) is false when neither took it: the board is lost
 * or not built yet (the next rebuild builds it; reads use PostgreSQL).
 */
enum keel_err	 keel_board_add(struct keel_redis *r,
		    const struct keel_board *b, int64_t user, double v,
		    bool *stored);

/*
 * A rebuild of b: begin creates b's fresh key (with a sentinel naming
 * run, expiring after ttl seconds); false in *began when another run is
 * filling it.  A fresh key with no TTL or no sentinel is no run's (Redis
 * lost it while an older writer filled it): begin takes it over, logged.
 * fill sends the adding of members (users[i], vals[i]) to the fresh key
 * (ZADD GT, one script), pipelined: keel_redis_wait() reads its reply;
 * it adds nothing once the key no longer holds run's sentinel, so a key
 * Redis lost is never recreated without one.  swap renames the fresh
 * key over b in one step (readers see the old board or the new one,
 * never a part), keeping it until a day after its period ends;
 * *swapped false when the fresh key is no longer run's.
 */
/*
 * A run's sentinel into buf (size n): "~<who>:<host>:<pid>:<time>",
 * never a user id, so it can't be taken for an entry.
 */
void		 keel_board_run(char *buf, size_t n, const char *who);
enum keel_err	 keel_board_begin(struct keel_redis *r,
		    const struct keel_board *b, const char *run, int ttl,
		    bool *began);
enum keel_err	 keel_board_fill(struct keel_redis *r,
		    const struct keel_board *b, const char *run,
		    const int64_t *users, const double *vals, size_t n);
enum keel_err	 keel_board_swap(struct keel_redis *r,
		    const struct keel_board *b, const char *run,
		    bool *swapped);

/* What became of one board of a set rebuilt together. */
struct keel_board_result {
	enum keel_err	 err;		/* KEEL_OK: swapped in; KEEL_ECONFLICT:
					   the fresh key was lost first
					   (expired, Redis emptied) */
	long		 entries;	/* its size */
	bool		 swapped;
};
struct keel_board_set {
	struct keel_board_result *boards;	/* owned; n, in the order
						   asked */
	size_t		 n;
	long		 written;	/* leaderboard_entries rows written */
	long		 dropped;	/* entries past the encoding's range
					   (logged, left out) */
	double		 pg_ms;		/* computing (until the first
					   entries), writing, committing */
	double		 feed_ms;	/* reading the rest of the entries
					   and loading them */
	double		 redis_ms;	/* of which Redis's (and encoding) */
};

/*
 * Rebuilds boards b[0..n-1] (any scopes and periods, the boards of a
 * period all of the same one, else KEEL_EINVAL; each begun by
 * keel_board_begin as run) together, in one PostgreSQL transaction.
 * First each board's durable copy is counted and hashed; then one
 * statement, read by a cursor board by board, computes every board's
 * entries in one pass over the attempts of their periods (best score
 * per user and test, the second it was first reached, the global
 * boards' sums, as keel_board_compute_user computes one user's), each with
 * its hash.  The entries fill each fresh key KEEL_BOARD_BATCH members
 * per keel_board_fill, pipelined (Redis works while PostgreSQL reads),
 * never into a key that lost the run's sentinel; when a
 * board is whole its count and hashes are compared with its durable
 * copy's, and only a board that differs is written (its changed entries,
 * one statement, never over an entry from more attempts) before it is
 * swapped in: Redis holds one fresh board at a time besides the live
 * ones.  The transaction commits last (a failed commit leaves the boards
 * swapped in, which hold what the attempts say, and the durable copy to
 * the next run).  set (free it with keel_board_set_free) says what
 * became of each board; a board not swapped in is dropped.  The error of
 * PostgreSQL or of reading (every board not yet swapped in failed with
 * it); KEEL_OK otherwise.
 */
enum keel_err	 keel_board_rebuild_set(struct keel_db *db,
		    struct keel_redis *r, const struct keel_board *b,
		    size_t n, const char *run, struct keel_board_set *set);
/* Frees set's results; set may be empty. */
void		 keel_board_set_free(struct keel_board_set *set);
/* Drops b's fresh key (a failed rebuild): writers stop feeding it. */
void		 keel_board_drop(struct keel_redis *r,
		    const struct keel_board *b);
#define KEEL_BOARD_BATCH	1000

/*
 * Rebuilds one board: begins it as run (its fresh key living ttl
 * seconds), then keel_board_rebuild_set of it alone; on a failure the
 * fresh key is dropped.  *entries
 * (not NULL) gets the board's size, or -1 when another run was filling
 * it (skipped).  KEEL_ECONFLICT when the fresh key was lost (expired,
 * Redis emptied) before the swap; else the errors of PostgreSQL and
 * Redis.
 */
enum keel_err	 keel_board_rebuild(struct keel_db *db, struct keel_redis *r,
		    const struct keel_board *b, const char *run, int ttl,
		    long *entries);

/* One entry of a page, as Redis has it. */
struct keel_board_entry {
	int64_t		 user;
	int64_t		 score;
	int64_t		 rank;		/* competition: 1, 2, 2, 4 */
};

/*
 * Entries offset .. offset + limit - 1 of b, best first, with their
 * ranks, into out (limit of them; *n gets how many) and *total the
 * board's size: one script, O(log N + limit).  KEEL_ENOENT when b's key
 * is missing; KEEL_EUNAVAIL when Redis is down.
 */
enum keel_err	 keel_board_page(struct keel_redis *r,
		    const struct keel_board *b, int64_t offset, int64_t limit,
		    struct keel_board_entry *out, size_t *n, int64_t *total);
/*
 * user's entry on b into *e: O(log N).  *found false when user is not
 * on it.  KEEL_ENOENT when b's key is missing.
 */
enum keel_err	 keel_board_rank(struct keel_redis *r,
		    const struct keel_board *b, int64_t user,
		    struct keel_board_entry *e, bool *found);

#endif /* KEEL_BOARD_H */
