/* SPDX-License-Identifier: ISC */
/*
 * keel-queues.c -- the queues from a shell: stats, retry dead letters,
 * purge, and enqueue (a test email, or any job, for tests and benches).
 *
 *	keel-queues stats [QUEUE]
 *	keel-queues retry-failed QUEUE
 *	keel-queues purge QUEUE completed|failed|all
 *	keel-queues test-email ADDRESS
 *	keel-queues enqueue [--outbox] [--key KEY] [--delay-ms N]
 *	    [--count N] QUEUE KIND PAYLOAD
 *
 * enqueue refuses what a drainer would only dead-letter or what would
 * name another job: a KIND that is not a name (QUEUES_KIND_MAX), a
 * PAYLOAD that is not a JSON object, a job key past the outbox's bound
 * (QUEUES_KEY_MAX), never cut to fit.  One rule with or without
 * --outbox, checked before anything is written.
 *
 * retry-failed moves the dead letters back only with their outbox rows
 * (cmd_retry_failed()): exit 1, nothing moved, while PostgreSQL can't be
 * reached; 3 when the jobs moved and the rows' update failed after all.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/cron.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mail.h"
#include "keel/outbox.h"
#include "keel/queue.h"
#include "keel/redis.h"
#include "keel/text.h"

/* Bytes of a job's key: outbox.idempotency_key's CHECK (sql/006_outbox.sql),
 * with or without --outbox, so a job key means one job either way. */
#define QUEUES_KEY_MAX	200
/* Bytes of a job's kind: outbox.kind's CHECK (sql/006_outbox.sql). */
#define QUEUES_KIND_MAX	64

static void
usage(void)
{
	fprintf(stderr,
	    "usage: keel-queues stats [QUEUE]\n"
	    "       keel-queues retry-failed QUEUE\n"
	    "       keel-queues purge QUEUE completed|failed|all\n"
	    "       keel-queues test-email ADDRESS\n"
	    "       keel-queues enqueue [--outbox] [--key KEY] [--delay-ms N]"
	    " [--count N]\n"
	    "           QUEUE KIND PAYLOAD\n"
	    "exit status: 0 done, 1 failed, 2 usage; retry-failed moves "
	    "nothing (1) while\n"
	    "PostgreSQL can't be reached, and exits 3 when jobs moved but "
	    "their outbox\n"
	    "rows were not updated\n");
	exit(2);
}

static const struct keel_queue *
queue_arg(const char *name)
{
	const struct keel_queue	*q;

	if ((q = keel_queue_find(name)) == NULL) {
		fprintf(stderr, "keel-queues: no queue %s\n", name);
		exit(2);
	}
	return q;
}

static int
fail(const char *what, enum keel_err er)
{
	fprintf(stderr, "keel-queues: %s: %s\n", what, keel_strerror(er));
	return 1;
}

static int
cmd_stats(struct keel_redis *r, int argc, char *argv[])
{
	const struct keel_queue	*qs;
	struct keel_queue_stats	 st;
	enum keel_err		 er;
	size_t			 n, i;

	if (argc > 1)
		usage();
	if (argc == 1) {
		qs = queue_arg(argv[0]);
		n = 1;
	} else
		qs = keel_queue_all(&n);
	printf("%-16s %8s %8s %8s %10s %8s\n", "queue", "waiting", "active",
	    "delayed", "completed", "failed");
	for (i = 0; i < n; i++) {
		if ((er = keel_queue_stats(r, &qs[i], &st)) != KEEL_OK)
			return fail("stats", er);
		printf("%-16s %8lld %8lld %8lld %10lld %8lld\n", qs[i].name,
		    (long long)st.waiting, (long long)st.active,
		    (long long)st.delayed, (long long)st.completed,
		    (long long)st.failed);
	}
	return 0;
}

/*
 * Moves q's dead letters back, and their outbox rows with them (a dead
 * row must not stop them; an unfinished one keeps the relay watching and
 * prune away).  Nothing moves while PostgreSQL can't be reached: a job
 * back on the queue with a row that says finished is one a Redis crash
 * loses for good.  Exit status 1 for that or any failure, 3 when the
 * jobs moved but PostgreSQL failed their rows' update after all.
 */
static int
cmd_retry_failed(const struct keel_config *cfg, struct keel_redis *r,
    const struct keel_queue *q)
{
	struct keel_db	*db;
	int64_t		 n = 0, unrevived = 0;
	enum keel_err	 er;
	int		 rc = 0;

	db = keel_db_open(cfg);
	if ((er = keel_db_ping(db, -1, cfg->db_connect_timeout * 1000,
	    NULL)) != KEEL_OK) {
		fprintf(stderr, "keel-queues: retry-failed: PostgreSQL: %s; "
		    "nothing moved\n", keel_strerror(er));
		rc = 1;
	} else if ((er = keel_outbox_retry_failed_rows(db, r, q, &n,
	    &unrevived)) != KEEL_OK)
		rc = fail("retry-failed", er);
	else {
		printf("moved %lld dead letter(s) back to %s\n", (long long)n,
		    q->name);
		if (unrevived > 0) {
			fprintf(stderr, "keel-queues: retry-failed: %lld of "
			    "them kept outbox rows that say finished "
			    "(PostgreSQL failed); they run, unwatched by the "
			    "relay\n", (long long)unrevived);
			rc = 3;
		}
	}
	keel_db_close(db);
	return rc;
}

/* Through the outbox, the way a request does it: a transaction, then the
 * push after commit (the relay covers a push that fails). */
static int
outbox_enqueue(struct keel_db *db, struct keel_redis *r,
    const char *queue, const char *kind, const char *payload,
    const char *key, int64_t delay_ms)
{
	enum keel_err	 er;
	int64_t		 id;

	if ((er = keel_db_begin(db)) != KEEL_OK ||
	    (er = keel_outbox_add_delayed(db, queue, kind, payload, key,
	    delay_ms, &id)) != KEEL_OK ||
	    (er = keel_db_commit(db)) != KEEL_OK) {
		keel_db_rollback(db);
		return fail("outbox", er);
	}
	if (keel_outbox_push(db, r, &id, 1) != KEEL_OK)
		fprintf(stderr, "keel-queues: pushed later by the relay\n");
	return 0;
}

/*
 * Job i's key into buf (QUEUES_KEY_MAX + 1 bytes): key itself when it
 * names one job, else with a suffix unique to this run (t its start) and
 * job.  False when that would pass QUEUES_KEY_MAX or be empty; buf is
 * then not a key.
 */
static bool
job_key(char *buf, const char *key, int64_t count, int64_t i, time_t t)
{
	int	 n;

	if (key != NULL && count == 1)
		n = snprintf(buf, QUEUES_KEY_MAX + 1, "%s", key);
	else
		n = snprintf(buf, QUEUES_KEY_MAX + 1, "%s%scli-%ld-%lld-%lld",
		    key != NULL ? key : "", key != NULL ? "-" : "",
		    (long)getpid(), (long long)t, (long long)i);
	return n > 0 && n <= QUEUES_KEY_MAX;
}

/*
 * True when kind is 1 to QUEUES_KIND_MAX printable ASCII bytes, no
 * blank, as every kind the apps write is ("attempt_result"); else says
 * why on stderr.  Only the outbox's CHECK looked at a kind, and the
 * direct path never meets it: "" or a control byte went onto the queue,
 * for a drainer to dead-letter with it in its log line's kind= and its
 * Sentry event's job_kind tag.
 */
static bool
kind_valid(const char *kind)
{
	const unsigned char	*p = (const unsigned char *)kind;
	size_t			 n;

	for (n = 0; p[n] != '\0'; n++)
		if (n == QUEUES_KIND_MAX || p[n] <= ' ' || p[n] > '~')
			break;
	if (n > 0 && p[n] == '\0')
		return true;
	fprintf(stderr, "keel-queues: KIND must be 1 to %d printable ASCII "
	    "bytes, no blank\n", QUEUES_KIND_MAX);
	return false;
}

/* True when payload is a JSON object, parsed as the drainers parse it;
 * else says why on stderr. */
static bool
payload_valid(const char *payload)
{
	struct json_object	*o = NULL;
	char			 err[128];
	bool			 ok;

	if (keel_json_parse(payload, strlen(payload), &o, err, sizeof(err)) !=
	    KEEL_OK) {
		fprintf(stderr, "keel-queues: PAYLOAD is not a JSON object: "
		    "%s\n", err);
		return false;
	}
	if (!(ok = json_object_is_type(o, json_type_object)))
		fprintf(stderr, "keel-queues: PAYLOAD is not a JSON object\n");
	json_object_put(o);
	return ok;
}

static int
cmd_enqueue(const struct keel_config *cfg, struct keel_redis *r, int argc,
    char *argv[])
{
	const struct keel_queue	*q;
	struct keel_db		*db;
	const char		*key = NULL;
	char			 kbuf[QUEUES_KEY_MAX + 1];
	int64_t			 delay = 0, count = 1, i;
	time_t			 t = time(NULL);
	enum keel_err		 er;
	int			 outbox = 0, a = 0, added, rc;

	for (; a < argc && argv[a][0] == '-'; a++) {
		if (strcmp(argv[a], "--outbox") == 0)
			outbox = 1;
		else if (strcmp(argv[a], "--key") == 0 && a + 1 < argc)
			key = argv[++a];
		else if (strcmp(argv[a], "--delay-ms") == 0 && a + 1 < argc &&
		    keel_parse_int64(argv[a + 1], 0, 86400000, &delay))
			a++;
		else if (strcmp(argv[a], "--count") == 0 && a + 1 < argc &&
		    keel_parse_int64(argv[a + 1], 1, 100000000, &count))
			a++;
		else
			usage();
	}
	if (argc - a != 3)
		usage();
	q = queue_arg(argv[a]);
	/* Before any job: the last job's key is the longest. */
	if (!job_key(kbuf, key, count, count - 1, t)) {
		fprintf(stderr, "keel-queues: --key: a job's key must be 1 to "
		    "%d bytes%s\n", QUEUES_KEY_MAX, count > 1 ? " with its "
		    "suffix (-cli-PID-TIME-N)" : "");
		return 2;
	}
	if (!kind_valid(argv[a + 1]) || !payload_valid(argv[a + 2]))
		return 2;
	/* One connection for every job, as a worker holds one. */
	db = keel_db_open(cfg);
	rc = 0;
	for (i = 0; i < count && rc == 0; i++) {
		/* Without --key: a fresh key per job; fits, as the last's did. */
		(void)job_key(kbuf, key, count, i, t);
		if (outbox)
			rc = outbox_enqueue(db, r, q->name, argv[a + 1],
			    argv[a + 2], kbuf, delay);
		else if ((er = keel_queue_enqueue(r, q, argv[a + 1],
		    argv[a + 2], kbuf, delay, &added)) != KEEL_OK)
			rc = fail("enqueue", er);
	}
	keel_db_close(db);
	if (rc != 0)
		return rc;
	printf("enqueued %lld job(s) on %s\n", (long long)count, q->name);
	return 0;
}

int
main(int argc, char *argv[])
{
	struct keel_cron	 c;
	struct keel_redis	*r;
	struct keel_db		*db;
	const struct keel_queue	*q;
	struct json_object	*o;
	char			 key[128];
	int64_t			 n = 0;
	enum keel_err		 er;
	int			 rc = 0;

	if (argc < 2)
		usage();
	keel_cron_init(&c, "keel-queues", 0);
	r = keel_redis_open(&c.cfg);
	if (strcmp(argv[1], "stats") == 0)
		rc = cmd_stats(r, argc - 2, argv + 2);
	else if (strcmp(argv[1], "retry-failed") == 0 && argc == 3)
		rc = cmd_retry_failed(&c.cfg, r, queue_arg(argv[2]));
	else if (strcmp(argv[1], "purge") == 0 && argc == 4) {
		q = queue_arg(argv[2]);
		if ((er = keel_queue_purge(r, q, argv[3], &n)) == KEEL_EINVAL)
			usage();
		else if (er != KEEL_OK)
			rc = fail("purge", er);
		else {
			printf("purged %lld from %s (%s)\n", (long long)n,
			    q->name, argv[3]);
			/* Jobs purged unfinished: their rows must not bring
			 * them back through the relay. */
			if (strcmp(argv[3], "all") == 0) {
				db = keel_db_open(&c.cfg);
				if ((er = keel_outbox_abandon(db, q->name,
				    &n)) != KEEL_OK)
					rc = fail("purge: marking the outbox "
					    "rows finished", er);
				keel_db_close(db);
			}
		}
	} else if (strcmp(argv[1], "test-email") == 0 && argc == 3) {
		if (!keel_text_email_valid(argv[2])) {
			fprintf(stderr, "keel-queues: %s is not an address\n",
			    argv[2]);
			rc = 2;
		} else {
			o = json_object_new_object();
			json_object_object_add(o, "to",
			    json_object_new_string(argv[2]));
			snprintf(key, sizeof(key), "test-email-%ld-%lld",
			    (long)getpid(), (long long)time(NULL));
			db = keel_db_open(&c.cfg);
			rc = outbox_enqueue(db, r, "email", "test",
			    json_object_to_json_string(o), key, 0);
			keel_db_close(db);
			if (rc == 0)
				printf("test email to %s queued (key %s)\n",
				    argv[2], key);
			json_object_put(o);
		}
	} else if (strcmp(argv[1], "enqueue") == 0)
		rc = cmd_enqueue(&c.cfg, r, argc - 2, argv + 2);
	else
		usage();
	keel_redis_close(r);
	keel_config_free(&c.cfg);
	return rc;
}
