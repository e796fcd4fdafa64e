/* SPDX-License-Identifier: ISC */
/*
 * pgev.h -- one libpq connection on a libevent loop, one query at a time
 * (libpq's non-blocking API: PQconnectStart/Poll, PQsendQueryParams,
 * PQconsumeInput), for the stream app.
 */
#ifndef KEEL_PGEV_H
#define KEEL_PGEV_H

#include <stdbool.h>

#include <event2/event.h>
#include <libpq-fe.h>

struct pgev;

/*
 * A query's end: res is its result on success (owned by pgev, cleared
 * after the call), or NULL with the reason in err.  Called once per
 * query, from the loop, never from inside pgev_query(); it may start
 * the next query.
 */
typedef void	pgev_done_fn(void *arg, const PGresult *res, const char *err);

/*
 * A connection opened with libpq's keys and vals (NULL-terminated, at
 * most PGEV_PARAMS_MAX; copied), as PQconnectStartParams takes them with
 * expand_dbname 1 -- keel_db_conn_params_init() makes keel's -- not
 * opened until the first query; its connect may take connect_s seconds
 * and each query query_ms ms before it fails with "timeout" (and the
 * connection is dropped).  Owned by the caller; release with
 * pgev_free(), which fails no pending callback.
 */
#define PGEV_PARAMS_MAX	16
struct pgev	*pgev_new(struct event_base *base, const char *const *keys,
		    const char *const *vals, int connect_s, int query_ms);
void		 pgev_free(struct pgev *pg);

/* True while a query is under way (pgev_query would refuse). */
bool		 pgev_busy(const struct pgev *pg);

/*
 * Sends sql with nparams text parameters (copied), connecting first if
 * need be.  A read-only query on a connection that turns out dead
 * before any answer is sent again once on a fresh one.  done(arg, ...)
 * follows.  False, with nothing started, when busy.
 */
bool		 pgev_query(struct pgev *pg, const char *sql, int nparams,
		    const char *const *params, pgev_done_fn *done, void *arg);

#endif /* KEEL_PGEV_H */
