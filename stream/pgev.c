/* SPDX-License-Identifier: ISC */
/*
 * pgev.c -- one libpq connection on a libevent loop.
 *
 * The connection is opened on the first query and kept; a failure drops
 * it and the next query opens another.  One event watches the socket
 * (re-armed for reading or writing as libpq asks: PQconnectPoll while
 * connecting, PQflush while sending, PQconsumeInput while waiting) and
 * one timer bounds the connect and the query.  A query that meets a
 * dead connection before anything came back is sent once more on a new
 * one -- the stream app's queries are reads, so sending again is safe --
 * which is what a PostgreSQL restart between two queries looks like
 * (the server's FATAL farewell, read first, is no answer to the query).
 * Callbacks run from a zero-delay timer, never inside pgev_query, so a
 * caller can start the next query from its callback.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/mem.h"
#include "pgev.h"

#define MAX_PARAMS	8

enum pg_state {
	PG_IDLE,	/* no query */
	PG_CONNECTING,	/* PQconnectPoll until OK */
	PG_SENDING,	/* PQflush until everything went */
	PG_WAITING,	/* PQconsumeInput until the results end */
	PG_DONE,	/* the callback is due (from the zero timer) */
};

struct pgev {
	struct event_base	*base;
	char			*keys[PGEV_PARAMS_MAX + 1];	/* libpq's */
	char			*vals[PGEV_PARAMS_MAX + 1];
	int			 connect_s, query_ms;
	PGconn			*conn;		/* NULL when down */
	bool			 reused;	/* conn served a query before */
	enum pg_state		 state;
	struct event		*io;		/* conn's socket */
	struct event		*timer;		/* deadline, or the zero delay */
	const char		*sql;
	int			 nparams;
	char			*params[MAX_PARAMS];
	pgev_done_fn		*done;
	void			*arg;
	PGresult		*res;		/* the last result, for done */
	char			 err[256];
};

static void	on_io(evutil_socket_t fd, short what, void *arg);
static void	on_timer(evutil_socket_t fd, short what, void *arg);

struct pgev *
pgev_new(struct event_base *base, const char *const *keys,
    const char *const *vals, int connect_s, int query_ms)
{
	struct pgev	*pg;
	int		 i;

	pg = keel_calloc(1, sizeof(*pg));
	pg->base = base;
	for (i = 0; keys[i] != NULL; i++) {
		if (i == PGEV_PARAMS_MAX)
			abort();	/* the caller's mistake */
		pg->keys[i] = keel_strdup(keys[i]);
		pg->vals[i] = vals[i] != NULL ? keel_strdup(vals[i]) : NULL;
	}
	pg->connect_s = connect_s;
	pg->query_ms = query_ms;
	pg->timer = evtimer_new(base, on_timer, pg);
	if (pg->timer == NULL)
		abort();
	return pg;
}

static void
drop(struct pgev *pg)
{
	if (pg->io != NULL) {
		event_free(pg->io);
		pg->io = NULL;
	}
	if (pg->conn != NULL) {
		PQfinish(pg->conn);
		pg->conn = NULL;
	}
	pg->reused = false;
}

static void
clear_query(struct pgev *pg)
{
	int	 i;

	for (i = 0; i < pg->nparams; i++) {
		free(pg->params[i]);
		pg->params[i] = NULL;
	}
	pg->nparams = 0;
	PQclear(pg->res);
	pg->res = NULL;
}

void
pgev_free(struct pgev *pg)
{
	int	 i;

	if (pg == NULL)
		return;
	drop(pg);
	clear_query(pg);
	event_free(pg->timer);
	for (i = 0; pg->keys[i] != NULL; i++) {
		free(pg->keys[i]);
		free(pg->vals[i]);
	}
	free(pg);
}

bool
pgev_busy(const struct pgev *pg)
{
	return pg->state != PG_IDLE;
}

/* Watches the socket for what (EV_READ or EV_WRITE). */
static bool
watch(struct pgev *pg, short what)
{
	if (pg->io != NULL)
		event_free(pg->io);
	pg->io = event_new(pg->base, PQsocket(pg->conn), what, on_io, pg);
	return pg->io != NULL && event_add(pg->io, NULL) == 0;
}

/* Ends the query: done runs from the loop with res or err. */
static void
finish(struct pgev *pg, const char *err)
{
	struct timeval	 zero = { 0, 0 };

	if (err != NULL) {
		snprintf(pg->err, sizeof(pg->err), "%s", err);
		pg->err[strcspn(pg->err, "\n")] = '\0';
		PQclear(pg->res);
		pg->res = NULL;
	}
	if (pg->io != NULL)
		event_del(pg->io);
	pg->state = PG_DONE;
	evtimer_add(pg->timer, &zero);
}

static void	start(struct pgev *pg);

/*
 * The connection failed: drop it; send the query again on a new one if
 * the old one had served before and nothing of the query came back yet.
 * A FATAL error read just before the connection ended is the server's
 * farewell (a restart's "terminating connection due to administrator
 * command", sent while the connection sat idle), not the query's answer.
 */
static void
fail(struct pgev *pg, const char *err)
{
	bool	 again = pg->reused && pg->state != PG_CONNECTING &&
		    (pg->res == NULL ||
		    PQresultStatus(pg->res) == PGRES_FATAL_ERROR);
	char	 msg[sizeof(pg->err)];

	snprintf(msg, sizeof(msg), "%s", err);	/* err may be conn's */
	drop(pg);
	if (again) {
		PQclear(pg->res);
		pg->res = NULL;
		start(pg);
		return;
	}
	finish(pg, msg);
}

static void
send_query(struct pgev *pg)
{
	if (PQsendQueryParams(pg->conn, pg->sql, pg->nparams, NULL,
	    (const char *const *)pg->params, NULL, NULL, 0) == 0) {
		fail(pg, PQerrorMessage(pg->conn));
		return;
	}
	pg->state = PG_SENDING;
	on_io(-1, EV_WRITE, pg);
}

static void
connect_step(struct pgev *pg)
{
	switch (PQconnectPoll(pg->conn)) {
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(pg->conn, 1) != 0) {
			fail(pg, PQerrorMessage(pg->conn));
			return;
		}
		send_query(pg);
		return;
	case PGRES_POLLING_READING:
		if (!watch(pg, EV_READ))
			fail(pg, "event_add failed");
		return;
	case PGRES_POLLING_WRITING:
		if (!watch(pg, EV_WRITE))
			fail(pg, "event_add failed");
		return;
	default:
		fail(pg, PQerrorMessage(pg->conn));
		return;
	}
}

/* Connects if need be, then sends; the deadline covers both. */
static void
start(struct pgev *pg)
{
	struct timeval	 tv;
	int		 ms = pg->query_ms;

	if (pg->conn == NULL)
		ms += pg->connect_s * 1000;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(pg->timer, &tv);
	if (pg->conn != NULL) {
		pg->reused = true;
		send_query(pg);
		return;
	}
	pg->state = PG_CONNECTING;
	pg->conn = PQconnectStartParams((const char *const *)pg->keys,
	    (const char *const *)pg->vals, 1);
	if (pg->conn == NULL || PQstatus(pg->conn) == CONNECTION_BAD) {
		fail(pg, pg->conn != NULL ? PQerrorMessage(pg->conn) :
		    "out of memory");
		return;
	}
	if (!watch(pg, EV_WRITE))
		fail(pg, "event_add failed");
}

bool
pgev_query(struct pgev *pg, const char *sql, int nparams,
    const char *const *params, pgev_done_fn *done, void *arg)
{
	int	 i;

	if (pg->state != PG_IDLE || nparams > MAX_PARAMS)
		return false;
	pg->sql = sql;
	pg->nparams = nparams;
	for (i = 0; i < nparams; i++)
		pg->params[i] = keel_strdup(params[i]);
	pg->done = done;
	pg->arg = arg;
	pg->err[0] = '\0';
	start(pg);
	return true;
}

/* Reads what arrived; finishes when the last result is in. */
static void
receive(struct pgev *pg)
{
	PGresult	*r;

	if (PQconsumeInput(pg->conn) == 0) {
		fail(pg, PQerrorMessage(pg->conn));
		return;
	}
	while (!PQisBusy(pg->conn)) {
		if ((r = PQgetResult(pg->conn)) == NULL) {
			/* Ended by the connection's end, not the query's. */
			if ((pg->res == NULL || PQresultStatus(pg->res) ==
			    PGRES_FATAL_ERROR) && PQstatus(pg->conn) ==
			    CONNECTION_BAD)
				fail(pg, PQerrorMessage(pg->conn));
			else if (pg->res == NULL)
				finish(pg, "no result");
			else if (PQresultStatus(pg->res) == PGRES_TUPLES_OK ||
			    PQresultStatus(pg->res) == PGRES_COMMAND_OK)
				finish(pg, NULL);
			else
				finish(pg, PQresultErrorMessage(pg->res));
			return;
		}
		PQclear(pg->res);
		pg->res = r;
	}
}

static void
on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pgev	*pg = arg;
	int		 r;

	(void)fd;
	switch (pg->state) {
	case PG_CONNECTING:
		connect_step(pg);
		return;
	case PG_SENDING:
		if ((r = PQflush(pg->conn)) < 0) {
			fail(pg, PQerrorMessage(pg->conn));
			return;
		}
		if (r == 1) {
			/* Read too: the server may answer while we send. */
			if (!watch(pg, EV_WRITE | EV_READ))
				fail(pg, "event_add failed");
			return;
		}
		pg->state = PG_WAITING;
		if (!watch(pg, EV_READ | EV_PERSIST))
			fail(pg, "event_add failed");
		else if (what & EV_READ)
			receive(pg);
		return;
	case PG_WAITING:
		receive(pg);
		return;
	default:
		return;
	}
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pgev	*pg = arg;
	pgev_done_fn	*done;
	void		*darg;
	char		 err[sizeof(pg->err)];
	PGresult	*res;

	(void)fd;
	(void)what;
	if (pg->state != PG_DONE) {
		/* The deadline: the connection may be wedged; drop it. */
		drop(pg);
		finish(pg, "timeout");
		return;
	}
	done = pg->done;
	darg = pg->arg;
	res = pg->res;
	pg->res = NULL;
	snprintf(err, sizeof(err), "%s", pg->err);
	clear_query(pg);
	pg->state = PG_IDLE;
	done(darg, res, res == NULL ? err : NULL);
	PQclear(res);
}
