/* SPDX-License-Identifier: ISC */
/*
 * notify.c -- keel-bench-notify: creates notifications the way issue 11's
 * contract says keel-drain-notifications does, and says when each one
 * committed, for tests/bench/stream.py's commit-to-arrival latency.
 *
 * For every user id read from stdin (one a line), in one transaction:
 * lock the user's row (SELECT ... FOR NO KEY UPDATE), read prev (the
 * user's newest notification id, or 0), insert the notification; COMMIT;
 * read CLOCK_REALTIME; then PUBLISH keel:notify:<uid> the contract's
 * message {"userId", "prev", "notification": <item as GET
 * /api/notifications lists it>}.  Writes one line per notification:
 *
 *	<notification id> <user id> <commit returned, epoch s> <PUBLISH
 *	returned, epoch s> <receivers PUBLISH reported>
 *
 * Environment: the stack's DATABASE_URL and REDIS_URL
 * (redis://host:port/db).  Links no libkeel, like floor.c: what it does
 * is the contract, spelled out here.  Exit 1 on any error.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#define KEEL_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

static const char lock_sql[] =
	"SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE";
static const char prev_sql[] =
	"SELECT coalesce(max(id), 0) FROM notifications WHERE user_id = $1";
/* The message, built by PostgreSQL in the contract's member order. */
static const char insert_sql[] =
	"INSERT INTO notifications (user_id, kind, title, body, data) "
	"VALUES ($1, 'bench', 'Bench notification', "
	"'Sent by tests/bench/stream.py', jsonb_build_object('bench', true)) "
	"RETURNING id, json_build_object('userId', user_id, 'prev', "
	"$2::bigint, 'notification', json_build_object('id', id, 'kind', "
	"kind, 'title', title, 'body', body, 'data', data, 'readAt', "
	KEEL_TIME("read_at") ", 'createdAt', " KEEL_TIME("created_at")
	"))::text";

static double
now_real(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One statement; false (and the error on stderr) unless it went well. */
static bool
exec(PGconn *db, const char *sql, int n, const char *const *vals,
    PGresult **out)
{
	PGresult	*r;
	ExecStatusType	 st;

	r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
	st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "keel-bench-notify: %s", PQerrorMessage(db));
		PQclear(r);
		return false;
	}
	if (out != NULL)
		*out = r;
	else
		PQclear(r);
	return true;
}

static redisContext *
redis_open(void)
{
	const char	*url, *p;
	char		 host[128] = "127.0.0.1";
	int		 port = 6379;
	redisContext	*rc;

	if ((url = getenv("REDIS_URL")) != NULL &&
	    (p = strstr(url, "://")) != NULL)
		sscanf(p + 3, "%127[^:/]:%d", host, &port);
	rc = redisConnect(host, port);
	if (rc == NULL || rc->err) {
		fprintf(stderr, "keel-bench-notify: redis: %s\n",
		    rc != NULL ? rc->errstr : "out of memory");
		return NULL;
	}
	return rc;
}

/* One notification for uid, committed then published; its line out. */
static bool
notify(PGconn *db, redisContext *rc, const char *uid)
{
	PGresult	*r = NULL;
	redisReply	*rep;
	char		 prev[32], chan[96];
	const char	*vals[2];
	double		 committed, published;
	long long	 receivers;

	vals[0] = uid;
	if (!exec(db, "BEGIN", 0, NULL, NULL))
		return false;
	if (!exec(db, lock_sql, 1, vals, &r) || PQntuples(r) != 1)
		goto fail;
	PQclear(r);
	if (!exec(db, prev_sql, 1, vals, &r))
		goto fail;
	snprintf(prev, sizeof(prev), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	vals[1] = prev;
	if (!exec(db, insert_sql, 2, vals, &r))
		goto fail;
	if (!exec(db, "COMMIT", 0, NULL, NULL))
		goto fail;
	committed = now_real();
	snprintf(chan, sizeof(chan), "keel:notify:%s", uid);
	rep = redisCommand(rc, "PUBLISH %s %s", chan, PQgetvalue(r, 0, 1));
	published = now_real();
	if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
		fprintf(stderr, "keel-bench-notify: PUBLISH failed\n");
		freeReplyObject(rep);
		goto fail;
	}
	receivers = rep->integer;
	freeReplyObject(rep);
	printf("%s %s %.6f %.6f %lld\n", PQgetvalue(r, 0, 0), uid, committed,
	    published, receivers);
	PQclear(r);
	return true;
fail:
	PQclear(r);
	exec(db, "ROLLBACK", 0, NULL, NULL);
	return false;
}

int
main(void)
{
	PGconn		*db;
	redisContext	*rc;
	char		 line[64];
	const char	*url;
	int		 rv = 1;

	if ((url = getenv("DATABASE_URL")) == NULL) {
		fprintf(stderr, "keel-bench-notify: DATABASE_URL is not set\n");
		return 1;
	}
	db = PQconnectdb(url);
	if (PQstatus(db) != CONNECTION_OK) {
		fprintf(stderr, "keel-bench-notify: %s", PQerrorMessage(db));
		PQfinish(db);
		return 1;
	}
	if ((rc = redis_open()) == NULL)
		goto fail;
	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (!notify(db, rc, line))
			goto fail;
	}
	rv = 0;
fail:
	fflush(stdout);
	if (rc != NULL)
		redisFree(rc);
	PQfinish(db);
	return rv;
}
