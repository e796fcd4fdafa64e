/* SPDX-License-Identifier: ISC */
/*
 * leaderboard-rebuild.c -- keel-leaderboard-rebuild: recomputes the
 * leaderboards from PostgreSQL (DESIGN.md, "Leaderboards").
 *
 * Every board (the global one and each test's with a submitted attempt,
 * each all-time, this ISO week and this month; or the ones the flags
 * name) is computed at once from PostgreSQL by one pass over the
 * attempts, read board by board (lib/board.c, keel_board_rebuild_set):
 * each board is written into a fresh Redis key by multi-member adds of
 * KEEL_BOARD_BATCH (only while the key holds this run's sentinel: one
 * Redis lost mid-run is never recreated without one), its durable copy
 * in leaderboard_entries rewritten only if it differs (a count and a
 * hash per board tell), and the fresh key renamed over the live board
 * in one step: a reader sees the old board or the new one, never an
 * empty or partial one.  The fresh keys exist before the statement
 * runs, and the drainer writes into them too, so an attempt applied
 * during the rebuild isn't lost by the swap.  A board another run
 * (another host's cron) is filling is skipped; a fresh key that is no
 * run's (no TTL or no sentinel) is taken over (lib/lua/board_begin.lua).
 * A board whose fresh key was lost before its swap fails: the run exits
 * 1.  The cached pages of each scope rebuilt are invalidated, no
 * other's.  cron runs it hourly; it restores boards Redis lost.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/board.h"
#include "keel/cache.h"
#include "keel/cron.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/text.h"

#define KEEL_REBUILD_FRESH_TTL	600	/* s a dead run's fresh key lives */

static const struct keel_query q_tests = { .name = "lb_rebuild_tests",
	.sql = "SELECT id FROM tests t WHERE EXISTS (SELECT 1 FROM "
	"test_attempts a WHERE a.test_id = t.id AND a.submitted_at IS NOT "
	"NULL) ORDER BY id", .target = KEEL_DB_PRIMARY };

struct rebuild {
	struct keel_cron	 c;
	struct keel_db		*db;
	struct keel_redis	*redis;
	char			 run[300];	/* the fresh keys' sentinel */
	struct keel_board	*b;		/* the boards begun */
	size_t			 n, cap;
	long			 boards, entries, skipped, failed;
};

/* Begins test's boards (0: global) of the periods in mask. */
static void
begin_scope(struct rebuild *rb, int64_t test, unsigned mask, int64_t now)
{
	struct keel_board	 b;
	char			 key[KEEL_BOARD_KEY_MAX];
	enum keel_err		 er;
	int			 i;
	bool			 began;

	for (i = 0; i < KEEL_BOARD_PERIOD__MAX; i++) {
		if (!(mask & (1u << i)))
			continue;
		keel_board_at(&b, test, (enum keel_board_period)i, now);
		keel_board_key(key, sizeof(key), &b, false, rb->redis);
		if ((er = keel_board_begin(rb->redis, &b, rb->run,
		    KEEL_REBUILD_FRESH_TTL, &began)) != KEEL_OK) {
			keel_log_warnx("%s: %s", key, keel_strerror(er));
			rb->failed++;
		} else if (!began) {
			keel_log_info("%s: another run is rebuilding it; "
			    "skipped", key);
			rb->skipped++;
		} else {
			if (rb->n == rb->cap) {
				rb->cap = rb->cap > 0 ? rb->cap * 2 : 16;
				rb->b = keel_realloc(rb->b, rb->cap *
				    sizeof(*rb->b));
			}
			rb->b[rb->n++] = b;
		}
	}
}

/* Counts what became of each board, and invalidates the cached pages
 * of each scope with a board swapped in (the boards come scope by
 * scope), no other's. */
static void
tally(struct rebuild *rb, const struct keel_board_set *set,
    enum keel_err all, struct keel_cache *cache)
{
	char		 key[KEEL_BOARD_KEY_MAX], ns[KEEL_BOARD_NS_MAX];
	size_t		 i;
	bool		 changed = false;

	for (i = 0; i < set->n; i++) {
		if (set->boards[i].err != KEEL_OK &&
		    set->boards[i].err == all)
			rb->failed++;	/* said once, by the caller */
		else if (set->boards[i].err != KEEL_OK) {
			keel_board_key(key, sizeof(key), &rb->b[i], false,
			    rb->redis);
			keel_log_warnx("%s: %s", key, set->boards[i].err ==
			    KEEL_ECONFLICT ? "the fresh key was lost before "
			    "the swap (it expired, or Redis was emptied)" :
			    keel_strerror(set->boards[i].err));
			rb->failed++;
		} else {
			rb->boards++;
			rb->entries += set->boards[i].entries;
			changed = true;
		}
		if (changed && (i + 1 == set->n ||
		    rb->b[i + 1].test != rb->b[i].test)) {
			keel_board_ns(ns, sizeof(ns), rb->b[i].test);
			keel_cache_invalidate(cache, ns);
			changed = false;
		}
	}
}

static void
usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--global] [--test ID] "
	    "[--period all|week|month]\n"
	    "  rebuilds every board, or those of the global scope and/or "
	    "one test,\n  of every period or of one\n"
	    "  --config  print the environment variables and exit\n", prog);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "global", no_argument, NULL, 'g' },
		{ "test", required_argument, NULL, 't' },
		{ "period", required_argument, NULL, 'p' },
		{ "config", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct rebuild		 rb;
	struct keel_rows	*rows = NULL;
	struct keel_cache	*cache;
	struct keel_board_set	 set;
	enum keel_board_period	 per;
	enum keel_err		 er;
	int64_t			 test = 0, now;
	unsigned		 mask = (1u << KEEL_BOARD_PERIOD__MAX) - 1;
	size_t			 i;
	int			 ch, global = 0;

	while ((ch = getopt_long(argc, argv, "gt:p:ch", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'g':
			global = 1;
			break;
		case 't':
			if (!keel_parse_int64(optarg, 1, INT64_MAX, &test)) {
				usage(argv[0]);
				return 2;
			}
			break;
		case 'p':
			if ((per = keel_board_period_find(optarg)) ==
			    KEEL_BOARD_PERIOD__MAX) {
				usage(argv[0]);
				return 2;
			}
			mask = 1u << per;
			break;
		case 'c':
			keel_config_print_table();
			return 0;
		default:
			usage(argv[0]);
			return ch == 'h' ? 0 : 2;
		}
	}
	if (optind != argc) {
		usage(argv[0]);
		return 2;
	}
	memset(&rb, 0, sizeof(rb));
	keel_cron_init(&rb.c, "keel-leaderboard-rebuild", 3000);
	if (!keel_cron_lock(&rb.c)) {
		keel_cron_done(&rb.c, "skipped: another run is rebuilding");
		return 0;
	}
	keel_board_run(rb.run, sizeof(rb.run), "rebuild");
	rb.db = keel_db_open(&rb.c.cfg);
	rb.redis = keel_redis_open(&rb.c.cfg);
	now = (int64_t)time(NULL);

	if (global || (test == 0))
		begin_scope(&rb, 0, mask, now);
	if (test > 0)
		begin_scope(&rb, test, mask, now);
	else if (!global) {
		if ((er = keel_db_query(rb.db, &q_tests, NULL, &rows)) !=
		    KEEL_OK) {
			keel_log_warnx("listing tests: %s", keel_strerror(er));
			rb.failed++;
		}
		for (i = 0; i < keel_rows_count(rows); i++)
			begin_scope(&rb, keel_rows_int64(rows, i, 0), mask,
			    now);
		keel_rows_free(rows);
	}
	/* Every board at once: PostgreSQL, then Redis board by board. */
	keel_cron_progress(&rb.c, "rebuilding %zu boards", rb.n);
	memset(&set, 0, sizeof(set));
	if (rb.n > 0 && keel_cron_stopping(&rb.c)) {
		for (i = 0; i < rb.n; i++)
			keel_board_drop(rb.redis, &rb.b[i]);
		rb.failed += (long)rb.n;
	} else if (rb.n > 0) {
		if ((er = keel_board_rebuild_set(rb.db, rb.redis, rb.b, rb.n,
		    rb.run, &set)) != KEEL_OK)
			keel_log_warnx("rebuilding: %s (every board not swapped "
			    "in yet failed with it)", keel_strerror(er));
		cache = keel_cache_open(&rb.c.cfg);
		tally(&rb, &set, er, cache);
		keel_cache_close(cache);
	}
	free(rb.b);
	keel_redis_close(rb.redis);
	keel_db_close(rb.db);
	keel_cron_done(&rb.c, "processed=%ld failed=%ld retried=0 took=%.2fs "
	    "entries=%ld skipped=%ld written=%ld postgres=%.2fs load=%.2fs "
	    "redis=%.2fs", rb.boards, rb.failed, keel_cron_elapsed(&rb.c),
	    rb.entries, rb.skipped, set.written, set.pg_ms / 1000,
	    set.feed_ms / 1000, set.redis_ms / 1000);
	keel_board_set_free(&set);
	return rb.failed > 0 ? 1 : 0;
}
