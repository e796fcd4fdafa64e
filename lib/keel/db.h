/* SPDX-License-Identifier: ISC */
/* db.h -- PostgreSQL through libpq: parameterized queries, timeouts, rows. */
#ifndef KEEL_DB_H
#define KEEL_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"
#include "keel/text.h"

struct keel_config;
struct keel_db;			/* opaque: the worker's connections */
struct keel_rows;		/* opaque: a result copied out of libpq */

/* Where a statement may run (DESIGN.md: reads on a replica). */
enum keel_db_target {
	KEEL_DB_PRIMARY,	/* writes, and reads that must see them */
	KEEL_DB_READ,		/* reads that may be served by a replica */
};

/*
 * A statement: prepared once per connection under name, run with text
 * parameters $1..$n.  SQL is always a constant; values always go as
 * parameters.  What it takes is read off its SQL (the highest $n).
 */
struct keel_query {
	const char		*name;		/* unique per app, for logs too */
	const char		*sql;
	enum keel_db_target	 target;
	bool			 replan;	/* planned with its values on
						   every run (sent unnamed):
						   its best plan depends on a
						   value, as a text search's
						   on its words (db.c) */
};

/*
 * A statement's parameters, $1..$n in the order they are added: strings
 * are pointed to (they must outlive the query; NULL is SQL NULL),
 * numbers and booleans are formatted into the struct itself.  Start one
 * with keel_db_params_init().  keel_db_query() refuses a count that is
 * not the statement's -- the highest $n of its SQL -- (logged,
 * KEEL_EINTERNAL), so a parameter forgotten or added fails loudly in the
 * tests instead of shifting the others.
 */
#define KEEL_DB_MAXPARAMS	16
struct keel_db_params {
	size_t		 n;
	const char	*v[KEEL_DB_MAXPARAMS];
	char		 num[KEEL_DB_MAXPARAMS][KEEL_TEXT_INT_MAX];
};

void		 keel_db_params_init(struct keel_db_params *);
/* Adds s ($n, text); NULL adds SQL NULL. */
void		 keel_db_param_text(struct keel_db_params *, const char *s);
void		 keel_db_param_int(struct keel_db_params *, int64_t v);
void		 keel_db_param_bool(struct keel_db_params *, bool v);
void		 keel_db_param_null(struct keel_db_params *);

/*
 * Opens a handle; connects lazily on first use, so an app that never
 * queries holds no connection.  Never NULL.
 */
struct keel_db	*keel_db_open(const struct keel_config *);
/* Closes every connection; db may be NULL. */
void		 keel_db_close(struct keel_db *);

/*
 * Runs q with p (NULL for none; exactly the parameters q's SQL takes,
 * else KEEL_EINTERNAL) on the primary or, for KEEL_DB_READ outside a
 * transaction and unless pinned,
 * on a usable replica (falling back to the primary).  On
 * KEEL_OK and out != NULL, *out holds the rows (caller frees).  Errors:
 * KEEL_ECONFLICT (unique or exclusion violation; keel_db_constraint()
 * names it), KEEL_EINVAL (check, foreign key or bad value), KEEL_ETIMEOUT
 * (statement timeout, or no answer by the client's deadline: see
 * keel_db_deadline()), KEEL_EUNAVAIL (no connection, or it broke).
 * Never blocks past KEEL_DB_CONNECT_TIMEOUT plus the deadline, and the
 * bounded cancel after it.  A connection found broken is reopened once
 * before the statement is sent; a statement is sent again only under
 * keel_db_may_resend().
 */
enum keel_err	 keel_db_query(struct keel_db *, const struct keel_query *q,
		    const struct keel_db_params *p, struct keel_rows **out);

/*
 * Per-request state, cleared by the router before each request: whether
 * reads are pinned to the primary, whether a statement changed rows on
 * it, and the number and total time of statements run.
 */
void		 keel_db_request_reset(struct keel_db *);
/* on: this request's KEEL_DB_READ statements go to the primary. */
void		 keel_db_pin_primary(struct keel_db *, bool on);
/* True once an INSERT, UPDATE, DELETE or MERGE changed rows this request. */
bool		 keel_db_wrote(const struct keel_db *);
/* Statements run this request and their total time in ms. */
void		 keel_db_stats(const struct keel_db *, unsigned *queries,
		    double *ms);

/* Transactions on the primary; rollback is safe to call after a failure. */
enum keel_err	 keel_db_begin(struct keel_db *);
enum keel_err	 keel_db_commit(struct keel_db *);
void		 keel_db_rollback(struct keel_db *);

/* The last error's text and the violated constraint ("" when none). */
const char	*keel_db_errstr(const struct keel_db *);
const char	*keel_db_constraint(const struct keel_db *);

/*
 * How many statements on db the server has refused since it was opened
 * though it answered: out of disk or connections, an I/O error, or
 * read-only (KEEL_EUNAVAIL; a lost connection is not one).  A caller
 * compares two readings to learn whether a failure between them was the
 * server's refusal rather than its own doing (lib/drain.c).
 */
unsigned long	 keel_db_refusals(const struct keel_db *);

/*
 * Health: connects if needed (within timeout_ms) and runs a trivial
 * query (within timeout_ms, then the bounded cancel).  replica is -1 for
 * the primary, else the replica's index in DATABASE_READ_REPLICA_URL.
 * KEEL_ENOENT when no such replica is configured.  *lag_ms gets the
 * replica's replay lag (-1 unknown); may be NULL.
 */
enum keel_err	 keel_db_ping(struct keel_db *, int replica, int timeout_ms,
		    double *lag_ms);

/*
 * Health: whether the primary's transactions are read-only (*ro): a
 * standby where the primary was, or default_transaction_read_only set,
 * so every write would fail.  Connects and runs within timeout_ms as
 * keel_db_ping() does; *ro is false unless it answered.
 */
enum keel_err	 keel_db_read_only(struct keel_db *, int timeout_ms, bool *ro);

/* Number of replicas configured. */
int		 keel_db_replicas(const struct keel_db *);

/*
 * The libpq parameters every keel session opens with, for a connection
 * made outside this module (the stream app's own, stream/pgev.c):
 * TCP keepalives and tcp_user_timeout as defaults, then url (a URL or
 * conninfo, whose own settings win over those), then name as
 * fallback_application_name and the session's settings in options --
 * statement_timeout, DateStyle ISO, TimeZone UTC,
 * client_connection_check_interval -- which are left out with
 * KEEL_DB_PREPARED=0 (a pooler refuses them; db.c).  For
 * PQconnectStartParams(keys, vals, 1).  keys and vals end with NULL and
 * point into c itself, url and name: c is not to be copied, and url and
 * name must outlive it.
 */
#define KEEL_DB_CONN_PARAMS	9	/* keys, with the NULL */
struct keel_db_conn_params {
	const char	*keys[KEEL_DB_CONN_PARAMS];
	const char	*vals[KEEL_DB_CONN_PARAMS];
	char		 opts[192];	/* the options value */
};

void		 keel_db_conn_params_init(struct keel_db_conn_params *c,
		    const struct keel_config *cfg, const char *url,
		    const char *name);

/*
 * The pure parts of the deadlines and of the resend rule, exported for
 * the unit tests.
 *
 * How much longer than its statement_timeout the client waits for a
 * statement's answer: the server's own timeout fires first whenever the
 * server runs at all, and its error has this long to arrive.
 */
#define KEEL_DB_DEADLINE_MARGIN	1000	/* ms */
/* The cancel sent after a missed deadline waits at most this long. */
#define KEEL_DB_CANCEL_MAX	500	/* ms */

/*
 * The deadline (ms, on the clock now_ms reads) of a statement sent at
 * now_ms under a statement_timeout of timeout_ms.
 */
double		 keel_db_deadline(double now_ms, int timeout_ms);
/* Whole ms from now_ms until deadline, rounded up; 0 once it passed. */
int		 keel_db_ms_left(double deadline, double now_ms);

/* How far a failed statement got. */
enum keel_db_reach {
	KEEL_DB_NOCONN,		/* no connection could be had */
	KEEL_DB_UNSENT,		/* never left whole: it can't have run */
	KEEL_DB_SENT,		/* the server may have run it, and committed */
};

/*
 * True when a statement that failed with er may run again on a new
 * connection: only after the connection it had before (had_conn) broke
 * (KEEL_EUNAVAIL), outside a transaction, and only if it never reached
 * the server -- or reached it but only reads (read_only).  A write that
 * was sent may have committed: a second run could do it twice.
 */
bool		 keel_db_may_resend(enum keel_err er, enum keel_db_reach reach,
		    bool had_conn, bool read_only, bool in_tx);

/* How a statement goes to the server. */
enum keel_db_send {
	KEEL_DB_SEND_PREPARE,	/* prepared under its name, then run */
	KEEL_DB_SEND_PREPARED,	/* run as prepared on this connection */
	KEEL_DB_SEND_UNNAMED,	/* parsed, bound and run unnamed at once */
	KEEL_DB_SEND_UNNAMED_SET, /* the same, behind the settings of its
				   own transaction (statement_timeout), in
				   one pipeline ending in one Sync */
};

/*
 * How a statement is sent: named (KEEL_DB_PREPARED=1, the session keeps
 * the settings given at connect) when it is already prepared on the
 * connection (prepared) or there is room to prepare it (room), else
 * unnamed; with named off (KEEL_DB_PREPARED=0: nothing lives on a server
 * connection past a transaction, as behind PgBouncer's transaction
 * pooling), always unnamed, with its settings in front of it unless a
 * transaction (in_tx, whose BEGIN set them) holds it.
 */
enum keel_db_send keel_db_send_as(bool named, bool prepared, bool room,
		    bool in_tx);

/*
 * A timestamp (without time zone) as PostgreSQL's DateStyle ISO writes
 * it -- "2026-12-06 02:30:00", with up to six digits of fraction -- in
 * len bytes at in, written into out as the API writes every timestamp,
 * RFC 3339 UTC with microseconds: "2026-12-06T02:30:00.000000Z".  False
 * (out untouched) for any other text: infinity, years past 9999, BC.
 */
#define KEEL_DB_TIME_LEN	27
bool		 keel_db_time_rfc3339(const char *in, size_t len,
		    char out[KEEL_DB_TIME_LEN + 1]);

size_t		 keel_rows_count(const struct keel_rows *);
size_t		 keel_rows_ncols(const struct keel_rows *);
/* Column c's name as the statement gave it ("id", "createdAt"). */
const char	*keel_rows_name(const struct keel_rows *, size_t c);
/* The index of the column called name, or KEEL_ROWS_NOCOL. */
#define KEEL_ROWS_NOCOL	((size_t)-1)
size_t		 keel_rows_col(const struct keel_rows *, const char *name);
/* The value at row r, column c as text; NULL for SQL NULL. */
const char	*keel_rows_value(const struct keel_rows *, size_t r, size_t c);
int64_t		 keel_rows_int64(const struct keel_rows *, size_t r, size_t c);
/* True for 't'. */
bool		 keel_rows_bool(const struct keel_rows *, size_t r, size_t c);
/* rows may be NULL. */
void		 keel_rows_free(struct keel_rows *);

#endif /* KEEL_DB_H */
