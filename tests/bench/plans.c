/* SPDX-License-Identifier: ISC */
/*
 * plans.c -- keel-bench-plans: what planning each run of a list's
 * statement costs, alone.  One client runs cars.c's list statement (the
 * first page of available cars, as tests/bench/peer asks for it) on one
 * connection, N times each way, alternating rounds:
 *
 *   planned  the statement as written, arms and all, its times by
 *            to_char(), under plan_cache_mode=force_custom_plan (keel
 *            before sqlspec.h)
 *   spec     its form for these filters (keel_sqlspec_write), under
 *            plan_cache_mode=auto, as lib/db.c prepares it now
 *   time     the same with its times as KEEL_SQL_TIME has them sent now
 *            (timestamps, which lib/db.c writes as RFC 3339)
 *
 * and prints, per round, the wall time per round trip and the server
 * backend's CPU time per statement (utime + stime of its /proc entry:
 * the server must be on this host), then the medians.  The backend's CPU
 * is the number to quote on a shared machine: other processes lengthen
 * the round trip, not the backend's own CPU time.
 *
 *	keel-bench-plans DATABASE_URL [N [ROUNDS]]	(10000, 5)
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "keel/resource.h"
#include "keel/sqlspec.h"

/* KEEL_SQL_TIME before: the server wrote the text. */
#define TO_CHAR(expr, name) "to_char(" expr " AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS \"" name "\""
/* fcgi-apps/cars.c's list, first page (KEEL_SQL_AFTER). */
#define LIST(time) "SELECT id, license_plate AS \"licensePlate\", " \
	"manufacturer, model, category, status, year, is_archived AS " \
	"\"isArchived\", " time("created_at", "createdAt") ", " \
	time("updated_at", "updatedAt") " FROM cars WHERE " \
	"is_archived = $4 AND ($5::text IS NULL OR status = $5) " \
	"AND ($6::text IS NULL OR manufacturer = $6) " \
	"AND ($7::text IS NULL OR model = $7) " \
	"AND ($8::text IS NULL OR category = $8) " KEEL_SQL_AFTER
#define CARS_LIST	LIST(TO_CHAR)
#define CARS_LIST_NOW	LIST(KEEL_SQL_TIME)
#define NWAYS	3

#define NPARAMS	8

static const char *const params[NPARAMS] = { NULL, NULL, "21", "false",
    "available", NULL, NULL, NULL };

static double
now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The backend's CPU time so far, in microseconds. */
static double
cpu_us(int pid)
{
	char		 path[64], buf[1024], *p;
	unsigned long	 ut, st;
	FILE		*f;
	int		 i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL || fgets(buf, sizeof(buf), f) ==
	    NULL) {
		fprintf(stderr, "plans: %s: can't read (server elsewhere?)\n",
		    path);
		exit(1);
	}
	fclose(f);
	/* After "(comm)": field 3 on; utime and stime are 14 and 15. */
	p = strrchr(buf, ')') + 2;
	for (i = 3; i < 14; i++)
		p = strchr(p, ' ') + 1;
	if (sscanf(p, "%lu %lu", &ut, &st) != 2)
		exit(1);
	return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static PGconn *
open_as(const char *url, const char *mode)
{
	const char	*keys[] = { "dbname", "options", NULL };
	const char	*vals[3];
	char		 opts[64];
	PGconn		*c;

	snprintf(opts, sizeof(opts), "-c plan_cache_mode=%s", mode);
	vals[0] = url;
	vals[1] = opts;
	vals[2] = NULL;
	c = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "plans: %s", PQerrorMessage(c));
		exit(1);
	}
	return c;
}

static int
backend_pid(PGconn *c)
{
	PGresult	*r = PQexec(c, "SELECT pg_backend_pid()");
	int		 pid = atoi(PQgetvalue(r, 0, 0));

	PQclear(r);
	return pid;
}

/* n runs of name: *wall and *cpu get microseconds per run. */
static void
run(PGconn *c, int pid, const char *name, int n, double *wall, double *cpu)
{
	PGresult	*r;
	double		 t0, c0;
	int		 i;

	c0 = cpu_us(pid);
	t0 = now_us();
	for (i = 0; i < n; i++) {
		r = PQexecPrepared(c, name, NPARAMS, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) !=
		    21) {
			fprintf(stderr, "plans: %s: %s (%d rows)\n", name,
			    PQresultErrorMessage(r), PQntuples(r));
			exit(1);
		}
		PQclear(r);
	}
	*wall = (now_us() - t0) / n;
	*cpu = (cpu_us(pid) - c0) / n;
}

static int
cmp(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int
main(int argc, char *argv[])
{
	struct keel_sqlspec_shape	 sh;
	struct keel_sqlspec_key		 key;
	static const char *const	 way[NWAYS] = { "planned", "spec",
	    "time" };
	PGconn				*c[NWAYS];
	PGresult			*r;
	Oid				 types[NPARAMS];
	double				 w[NWAYS][64], u[NWAYS][64];
	char				*spec, *now;
	uint32_t			 unref;
	int				 n, rounds, i, k, pid[NWAYS];

	if (argc < 2) {
		fprintf(stderr, "usage: keel-bench-plans DATABASE_URL "
		    "[N [ROUNDS]]\n");
		return 2;
	}
	n = argc > 2 ? atoi(argv[2]) : 10000;
	rounds = argc > 3 ? atoi(argv[3]) : 5;
	if (n < 1 || rounds < 1 || rounds > 64)
		return 2;
	if (!keel_sqlspec_shape(CARS_LIST, &sh))
		return 1;
	keel_sqlspec_key(&sh, NPARAMS, params, &key);
	spec = keel_sqlspec_write(CARS_LIST, &key, NPARAMS, &unref);
	now = keel_sqlspec_write(CARS_LIST_NOW, &key, NPARAMS, &unref);
	for (i = 0; i < NPARAMS; i++)
		types[i] = (unref & (1u << i)) ? 25 : 0;
	for (k = 0; k < NWAYS; k++) {
		c[k] = open_as(argv[1], k == 0 ? "force_custom_plan" : "auto");
		pid[k] = backend_pid(c[k]);
	}
	PQclear(r = PQprepare(c[0], way[0], CARS_LIST, 0, NULL));
	PQclear(r = PQprepare(c[1], way[1], spec, NPARAMS, types));
	PQclear(r = PQprepare(c[2], way[2], now, NPARAMS, types));
	printf("time: %s\n", now);
	printf("round  planned wall/cpu us  spec wall/cpu us  time wall/cpu us"
	    "\n");
	for (i = 0; i < rounds; i++) {
		printf("%5d", i + 1);
		for (k = 0; k < NWAYS; k++) {
			run(c[k], pid[k], way[k], n, &w[k][i], &u[k][i]);
			printf("  %8.1f %8.1f", w[k][i], u[k][i]);
		}
		printf("\n");
	}
	printf("median");
	for (k = 0; k < NWAYS; k++)
		printf("  %8.1f %8.1f", median(w[k], rounds), median(u[k],
		    rounds));
	printf("\n");
	free(spec);
	free(now);
	for (k = 0; k < NWAYS; k++)
		PQfinish(c[k]);
	return 0;
}
