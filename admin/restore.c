/* SPDX-License-Identifier: ISC */
/*
 * restore.c -- keel-admin restored: make the stores agree with a
 * database restored from a backup.
 *
 *	keel-admin restored [--gap N] [--yes] [--force]
 *
 * The restore runbook's step (README, "Restoring PostgreSQL from a
 * backup"): a database put back to an earlier point would hand out
 * again the ids the lost writes used, while Redis and memcached still
 * hold what named them.  It advances every sequence of keel's schema by
 * a gap (one statement), deletes keel's Redis keys that name database
 * rows, by prefix (SCAN and UNLINK, never FLUSHALL: the Redis may be
 * shared), and bumps every cache generation memcached holds (listed by
 * lib/cache.c).  That ends every session and drops queued jobs, dead
 * letters and idempotent replies, so it asks first: without --yes it
 * only says what it would do, and it refuses while keel's programs are
 * at work (their PostgreSQL sessions, a job a drainer holds) unless
 * --force.
 */
#include "config.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/text.h"

#include "admin.h"

/*
 * restored: every sequence of keel's schema moves gap past its last
 * value, in one statement, so no id the lost writes used (a
 * notification's, which clients hold as Last-Event-ID; an attempt's, an
 * outbox row's, a job key's, a cached page's) is handed out again.  A
 * sequence never used counts from its start.  setval is not undone by a
 * rollback; moving one twice is harmless, so a run that failed part-way
 * is run again.
 */
static const struct keel_query q_restored_seqs = { .name = "restored_seqs",
	.sql = "SELECT sequencename, COALESCE(last_value, start_value), "
	"setval(format('%I.%I', schemaname, sequencename)::regclass, "
	"COALESCE(last_value, start_value) + $1::bigint) "
	"FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1",
	.target = KEEL_DB_PRIMARY };

/* Where q_restored_seqs would move them, moving nothing: the preview. */
static const struct keel_query q_restored_seqs_preview = {
	.name = "restored_seqs_preview",
	.sql = "SELECT sequencename, COALESCE(last_value, start_value), "
	"COALESCE(last_value, start_value) + $1::bigint "
	"FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1",
	.target = KEEL_DB_PRIMARY };

/*
 * The other sessions of keel's programs, counted by name: the apps and
 * cron's programs connect as "keel" (lib/db.c's
 * fallback_application_name), keel-stream as "keel-stream", and all of
 * them as the name DATABASE_URL sets when it sets one (this session has
 * it too: current_setting).  A worker connects on its first query, so
 * these are apps that served a request since PostgreSQL came back,
 * keel-stream's listener and cron's programs at work.
 */
static const struct keel_query q_restored_live = { .name = "restored_live",
	.sql = "SELECT application_name, count(*) FROM pg_stat_activity "
	"WHERE application_name IN ('keel', 'keel-stream', "
	"current_setting('application_name')) "
	"AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
	"GROUP BY 1 ORDER BY 1",
	.target = KEEL_DB_PRIMARY };

#define RESTORED_GAP	1000000	/* ids skipped: more than the lost writes
				   can have used */
#define RESTORED_SCAN	"1000"	/* keys per SCAN step */
#define MC_HINT		"restart memcached instead (it only caches), then " \
			"run restored again, with MEMCACHED_SERVERS=\"\" if " \
			"a server can't list its keys"

/*
 * keel's Redis keys that name database rows (a user's id, an attempt's,
 * a job's key), by prefix: sessions and their indexes and
 * read-your-writes marks (auth.h), stream tickets and leases (notify.h,
 * stream/stream.c), idempotent replies (idem.c), the queues, their jobs
 * and dead letters (queue.c: the relay pushes again what the outbox
 * still holds), leaderboards (board.c: the rebuild makes them again),
 * reset-mail caps (auth.h).  Rate-limit buckets stay: they name clients
 * and last seconds.
 */
static const char *const restored_prefixes[] = {
	"keel:sess:", "keel:user-sess:", "keel:ryw:", "keel:sse:",
	"keel:idem:", "keel:q:", "keel:lb:", "keel:reset-mail:",
};

/* What a SCAN step's keys are handed to (restored_scan); arg is its. */
typedef enum keel_err (*restored_scan_fn)(struct keel_redis *r,
    const struct keel_rreply *keys, void *arg);

/*
 * Advances the sequences (q_restored_seqs) and lists them, or with
 * !apply lists where they would go and changes nothing.
 */
static int
restored_sequences(struct keel_db *db, long long gap, bool apply)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	size_t			 i;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_int(&p, gap);
	if ((er = keel_db_query(db, apply ? &q_restored_seqs :
	    &q_restored_seqs_preview, &p, &rows)) != KEEL_OK) {
		fprintf(stderr, "keel-admin: %s the sequences: %s: %s\n",
		    apply ? "advancing" : "reading", keel_strerror(er),
		    keel_db_errstr(db));
		return -1;
	}
	for (i = 0; i < keel_rows_count(rows); i++)
		printf("sequence %s: %s -> %s\n", keel_rows_value(rows, i, 0),
		    keel_rows_value(rows, i, 1), keel_rows_value(rows, i, 2));
	keel_rows_free(rows);
	return 0;
}

/* UNLINKs the keys of a SCAN step; adds them to *(long long *)arg. */
static enum keel_err
restored_unlink(struct keel_redis *r, const struct keel_rreply *keys,
    void *arg)
{
	struct keel_rreply	*rep = NULL;
	const char		**av;
	long long		*n = arg;
	size_t			 i;
	enum keel_err		 er;

	if (keys->nelem == 0)
		return KEEL_OK;
	av = keel_calloc(keys->nelem + 1, sizeof(*av));
	av[0] = "UNLINK";
	for (i = 0; i < keys->nelem; i++)
		av[i + 1] = keys->elem[i].str != NULL ? keys->elem[i].str : "";
	if ((er = keel_redis_cmd(r, (int)keys->nelem + 1, av, NULL, &rep)) ==
	    KEEL_OK) {
		if (rep->type == KEEL_R_INT)
			*n += rep->integer;
		else
			er = KEEL_EINTERNAL;
	}
	keel_rreply_free(rep);
	free(av);
	return er;
}

/* Counts the keys of a SCAN step into *(long long *)arg (the preview:
 * SCAN may return a key twice, so about that many). */
static enum keel_err
restored_count(struct keel_redis *r, const struct keel_rreply *keys,
    void *arg)
{
	long long	*n = arg;

	(void)r;
	*n += (long long)keys->nelem;
	return KEEL_OK;
}

/*
 * SCANs the keys matching match (and of type type; NULL: any), handing
 * each step's keys to fn with arg; stops at the first error, Redis's or
 * fn's.
 */
static enum keel_err
restored_scan(struct keel_redis *r, const char *match, const char *type,
    restored_scan_fn fn, void *arg)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[8];
	char			 cursor[32] = "0";
	int			 ac;
	enum keel_err		 er;

	do {
		ac = 0;
		av[ac++] = "SCAN";
		av[ac++] = cursor;
		av[ac++] = "MATCH";
		av[ac++] = match;
		av[ac++] = "COUNT";
		av[ac++] = RESTORED_SCAN;
		if (type != NULL) {
			av[ac++] = "TYPE";
			av[ac++] = type;
		}
		if ((er = keel_redis_cmd(r, ac, av, NULL, &rep)) != KEEL_OK)
			return er;
		if (rep->type != KEEL_R_ARRAY || rep->nelem != 2 ||
		    rep->elem[0].type != KEEL_R_STR ||
		    rep->elem[1].type != KEEL_R_ARRAY ||
		    rep->elem[0].len >= sizeof(cursor)) {
			keel_rreply_free(rep);
			return KEEL_EINTERNAL;
		}
		memcpy(cursor, rep->elem[0].str, rep->elem[0].len + 1);
		er = fn(r, &rep->elem[1], arg);
		keel_rreply_free(rep);
		rep = NULL;
	} while (er == KEEL_OK && strcmp(cursor, "0") != 0);
	return er;
}

/*
 * Deletes restored_prefixes' keys, or with !apply counts them.  The
 * caller refused a cluster: a SCAN sees one node's keys.
 */
static int
restored_redis(struct keel_redis *r, bool apply)
{
	char			 match[64];
	long long		 n;
	size_t			 i;
	enum keel_err		 er = KEEL_OK;

	for (i = 0; i < KEEL_NELEM(restored_prefixes) && er == KEEL_OK; i++) {
		n = 0;
		snprintf(match, sizeof(match), "%s*", restored_prefixes[i]);
		if ((er = restored_scan(r, match, NULL, apply ?
		    restored_unlink : restored_count, &n)) == KEEL_OK)
			printf("redis %s: %lld key(s) %s\n", match, n,
			    apply ? "deleted" : "to delete");
	}
	if (er != KEEL_OK)
		fprintf(stderr, "keel-admin: Redis: %s (%s)%s\n",
		    keel_strerror(er), keel_redis_errstr(r), apply ?
		    "; run restored again once Redis answers" : "");
	return er == KEEL_OK ? 0 : -1;
}

/* Leases counted by restored_leased: those running out after now. */
struct restored_leases {
	char		 after[32];	/* ZCOUNT's min: "(" now, in ms */
	long long	 n;
};

/*
 * Adds to the struct restored_leases at arg the jobs of a SCAN step's
 * in-flight sets (keel:q:<q>:a, lib/queue.c) whose lease has not run
 * out: each is scored by its deadline in ms of Redis's clock, so a
 * drainer may be running it now.  A lease past its deadline is a
 * drainer that died; its job is dropped like the waiting ones.
 */
static enum keel_err
restored_leased(struct keel_redis *r, const struct keel_rreply *keys,
    void *arg)
{
	struct restored_leases	*l = arg;
	struct keel_rreply	*rep = NULL;
	const char		*av[4];
	size_t			 i;
	enum keel_err		 er = KEEL_OK;

	for (i = 0; i < keys->nelem && er == KEEL_OK; i++) {
		av[0] = "ZCOUNT";
		av[1] = keys->elem[i].str != NULL ? keys->elem[i].str : "";
		av[2] = l->after;
		av[3] = "+inf";
		if ((er = keel_redis_cmd(r, 4, av, NULL, &rep)) != KEEL_OK)
			break;
		if (rep->type == KEEL_R_INT)
			l->n += rep->integer;
		else
			er = KEEL_EINTERNAL;
		keel_rreply_free(rep);
		rep = NULL;
	}
	return er;
}

/* Redis's clock in ms, as the queue scripts read it (queue_prelude.lua). */
static enum keel_err
redis_now_ms(struct keel_redis *r, int64_t *ms)
{
	const char		*av[] = { "TIME" };
	struct keel_rreply	*rep = NULL;
	int64_t			 s, us;
	enum keel_err		 er;

	if ((er = keel_redis_cmd(r, 1, av, NULL, &rep)) != KEEL_OK)
		return er;
	if (rep->type != KEEL_R_ARRAY || rep->nelem != 2 ||
	    rep->elem[0].type != KEEL_R_STR ||
	    rep->elem[1].type != KEEL_R_STR ||
	    !keel_parse_int64(rep->elem[0].str, 0, INT64_MAX / 1000000, &s) ||
	    !keel_parse_int64(rep->elem[1].str, 0, 999999, &us))
		er = KEEL_EINTERNAL;
	else
		*ms = s * 1000 + us / 1000;
	keel_rreply_free(rep);
	return er;
}

/*
 * Whether keel is live, which the runbook wants stopped: its programs'
 * sessions in PostgreSQL (q_restored_live), jobs a drainer holds in
 * Redis (restored_leased).  Says on stderr what it found.  1 when live,
 * 0 when not, -1 when it couldn't tell.
 */
static int
restored_live(struct keel_db *db, struct keel_redis *r)
{
	struct restored_leases	 l;
	struct keel_rows	*rows = NULL;
	int64_t			 now;
	size_t			 i;
	int			 live = 0;
	enum keel_err		 er;

	if ((er = keel_db_query(db, &q_restored_live, NULL, &rows)) !=
	    KEEL_OK) {
		fprintf(stderr, "keel-admin: reading pg_stat_activity: %s: "
		    "%s\n", keel_strerror(er), keel_db_errstr(db));
		return -1;
	}
	for (i = 0; i < keel_rows_count(rows); i++, live = 1)
		fprintf(stderr, "keel-admin: PostgreSQL has %s other "
		    "session(s) named %s\n", keel_rows_value(rows, i, 1),
		    keel_rows_value(rows, i, 0));
	keel_rows_free(rows);
	l.n = 0;
	if ((er = redis_now_ms(r, &now)) == KEEL_OK) {
		snprintf(l.after, sizeof(l.after), "(%lld", (long long)now);
		er = restored_scan(r, "keel:q:*:a", "zset", restored_leased,
		    &l);
	}
	if (er != KEEL_OK) {
		fprintf(stderr, "keel-admin: Redis: %s (%s)\n",
		    keel_strerror(er), keel_redis_errstr(r));
		return -1;
	}
	if (l.n > 0) {
		fprintf(stderr, "keel-admin: Redis has %lld job(s) a drainer "
		    "holds (keel:q:*:a)\n", l.n);
		live = 1;
	}
	return live;
}

/* What restored_cache hands each namespace to (restored_gen). */
struct restored_gens {
	struct keel_cache	*c;	/* bumps through it; NULL: counts only */
	long			 n;	/* namespaces seen */
};

/* Counts ns into the struct restored_gens at arg, bumping its
 * generation first through its c unless that is NULL. */
static enum keel_err
restored_gen(const char *ns, void *arg)
{
	struct restored_gens	*g = arg;
	enum keel_err		 er;

	if (g->c != NULL && (er = keel_cache_invalidate(g->c, ns)) != KEEL_OK)
		return er;
	g->n++;
	return KEEL_OK;
}

/*
 * The generations every server of servers (MEMCACHED_SERVERS) holds,
 * counted into *n and, unless c is NULL, bumped through c: the check
 * before anything changes and the preview pass NULL.  Every server is
 * tried, so each one that fails is named.
 */
static int
restored_cache(const char *servers, struct keel_cache *c, long *n)
{
	struct restored_gens	 g = { c, 0 };
	struct keel_buf		 why = { NULL, 0, 0 };
	size_t			 i, count;
	int			 rc = 0;
	enum keel_err		 er;

	/* restored checked the list: it counts. */
	(void)keel_cache_dump_count(servers, &count, &why);
	for (i = 0; i < count; i++) {
		keel_buf_reset(&why);
		if ((er = keel_cache_dump_gens(servers, i, restored_gen, &g,
		    &why)) == KEEL_OK)
			continue;
		/* A server that fails on its own is restarted (MC_HINT). */
		fprintf(stderr, "keel-admin: %s%s\n", why.data,
		    er == KEEL_EUNAVAIL ? "; " MC_HINT : "");
		rc = -1;
	}
	keel_buf_free(&why);
	*n = g.n;
	return rc;
}

/*
 * What restored --yes would do, doing none of it: the sequences' moves,
 * the keys per prefix, the cache namespaces.  2 when all were read (as
 * admin_usage(): nothing was done), 1 when one could not be.
 */
static int
restored_preview(struct keel_db *db, struct keel_redis *r,
    const char *servers, long long gap)
{
	long	 n;

	printf("restored would do this (nothing changes without --yes):\n");
	if (restored_sequences(db, gap, false) == -1 ||
	    restored_redis(r, false) == -1 ||
	    restored_cache(servers, NULL, &n) == -1)
		return 1;
	printf("memcached: %ld cache namespace(s) to invalidate\n", n);
	return 2;
}

/*
 * After PostgreSQL was restored from a backup, before traffic (README).
 * Without --yes it only says what it would do.  It refuses, unless
 * --force, while keel is live (restored_live): it ends every session,
 * drops waiting jobs and dead letters and the idempotent replies a retry
 * needs.  It checks that every memcached server lists its keys, the step
 * most likely to fail, before it changes anything; then the sequences,
 * Redis, memcached, in that order, each step's result printed, each one
 * safe to run again.  A cluster is refused before anything changes: lib
 * reaches a key's master, and a SCAN must visit every master.
 */
int
admin_restored(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "gap", required_argument, NULL, 'g' },
		{ "yes", no_argument, NULL, 'y' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct keel_config	 cfg;
	struct keel_db		*db = NULL;
	struct keel_redis	*r = NULL;
	struct keel_cache	*c = NULL;
	struct keel_buf		 why = { NULL, 0, 0 };
	const char		*gaparg = NULL;
	int64_t			 gap = RESTORED_GAP;
	char			 err[256];
	size_t			 count;
	long			 n;
	int			 ch, yes = 0, force = 0, live = 0, rc = 1;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'g':
			admin_option_once(&gaparg, "gap", optarg);
			if (!keel_parse_int64(optarg, 1, INT64_MAX / 4, &gap))
				admin_usage();
			break;
		case 'y':
			yes = 1;
			break;
		case 'f':
			force = 1;
			break;
		default:
			admin_usage();
		}
	}
	if (optind != argc)
		admin_usage();
	if (!keel_config_load(&cfg, err, sizeof(err))) {
		fprintf(stderr, "keel-admin: %s\n", err);
		return 1;
	}
	if (cfg.redis_cluster) {
		fprintf(stderr, "keel-admin: restored can't clear a Redis "
		    "Cluster (README, \"Restoring PostgreSQL from a "
		    "backup\"); nothing changed\n");
		goto out;
	}
	if (keel_cache_dump_count(cfg.memcached_servers, &count, &why) !=
	    KEEL_OK) {
		fprintf(stderr, "keel-admin: MEMCACHED_SERVERS: %s\n",
		    why.data);
		goto out;
	}
	db = keel_db_open(&cfg);
	r = keel_redis_open(&cfg);
	if (!force && (live = restored_live(db, r)) == -1)
		goto out;
	if (!yes) {
		if (live)
			fprintf(stderr, "keel-admin: --yes refuses while keel "
			    "runs (above), unless --force\n");
		rc = restored_preview(db, r, cfg.memcached_servers,
		    (long long)gap);
		goto out;
	}
	if (live) {
		fprintf(stderr, "keel-admin: keel is running (above): stop "
		    "lighttpd, the apps and cron first (README, \"Restoring "
		    "PostgreSQL from a backup\"), or use --force; nothing "
		    "changed\n");
		goto out;
	}
	if (restored_cache(cfg.memcached_servers, NULL, &n) == -1) {
		fprintf(stderr, "keel-admin: nothing changed\n");
		goto out;
	}
	c = keel_cache_open(&cfg);
	if (restored_sequences(db, (long long)gap, true) == -1 ||
	    restored_redis(r, true) == -1)
		goto out;
	if (restored_cache(cfg.memcached_servers, c, &n) == -1) {
		fprintf(stderr, "keel-admin: the sequences and Redis are "
		    "done\n");
		goto out;
	}
	printf("memcached: %ld cache namespace(s) invalidated\n", n);
	printf("done: now run keel-outbox-relay with KEEL_RELAY_RECHECK=1, "
	    "then keel-leaderboard-rebuild\n");
	rc = 0;
out:
	keel_cache_close(c);
	keel_buf_free(&why);
	keel_redis_close(r);
	keel_db_close(db);
	keel_config_free(&cfg);
	return rc;
}
