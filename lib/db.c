/* SPDX-License-Identifier: ISC */
/*
 * db.c -- PostgreSQL through libpq.
 *
 * A worker holds one connection to the primary and one per replica, each
 * opened on first use with a connect timeout and a server-side
 * statement_timeout.  Statements are prepared once per connection under
 * their name and run with text parameters, so no value is ever spliced
 * into SQL.  Results are copied out and PQclear'ed here: PGresult never
 * leaves this file.
 *
 * Reads (KEEL_DB_READ) go to a replica, round robin, unless the request
 * is pinned to the primary (read-your-writes: the caller wrote moments
 * ago, see auth.c) or runs inside a transaction.  A replica that can't be
 * reached is skipped for REPLICA_RETRY_MS; one whose replay lag, checked
 * at most every LAG_CHECK_MS, passes KEEL_DB_REPLICA_MAX_LAG is skipped
 * until the next check.  With no usable replica the primary serves, so
 * a replica failure costs speed, never an answer (DESIGN.md's table).
 *
 * Every statement is timed; past KEEL_DB_SLOW_MS it is logged by its
 * statement name, never with its parameters.
 *
 * Nothing waits on the server without a deadline, since a server that
 * stops answering (stopped, a storage stall, a network gone) would pin
 * the worker, and every request queued behind it.  Connections are
 * opened with PQconnectStartParams/PQconnectPoll within
 * KEEL_DB_CONNECT_TIMEOUT (a stopped server still accepts TCP connects
 * into its backlog, then never answers the startup); statements,
 * BEGIN/COMMIT/ROLLBACK and the health probes go through exec_bounded(),
 * libpq's non-blocking API with a poll on the socket, until
 * KEEL_DB_DEADLINE_MARGIN past the statement_timeout.  A missed deadline
 * cancels the statement (within KEEL_DB_CANCEL_MAX) and drops the
 * connection; the next statement reconnects.  TCP keepalives and
 * tcp_user_timeout let the kernel notice a dead network under an idle
 * connection too.  A statement that was sent is never sent again unless
 * it only reads (keel_db_may_resend()): the server may have committed it.
 *
 * A statement with optional filters, arms "($N::type IS NULL OR cond)",
 * is prepared once per set of filters a run leaves out, with no arm in
 * it (sqlspec.h), and its LIMIT written in: a plan that PostgreSQL may
 * cache (plan_cache_mode auto: five runs planned with their values, then
 * the generic plan unless its estimate is worse).  Planning each run cost
 * more than running it (tests/bench/RESULTS.md, "The uncached list's
 * planning").  A worker keeps at most SPEC_MAX such forms; past them,
 * statements with arms run unnamed, planned with their values as
 * before; so do a statement marked replan (whose best plan depends on a
 * value: a text search's words choose between its index and a scan, and
 * only a plan made for them evaluates the search's function once) and
 * one whose arms sqlspec.c can't read.
 *
 * Timestamps (KEEL_SQL_TIME: type timestamp, DateStyle ISO, which keel
 * sets with statement_timeout) are written as the API's RFC 3339 text
 * as the result is copied (keel_db_time_rfc3339): cheaper here than
 * to_char() on the server.  Every session runs in TimeZone UTC, whatever
 * the server's configuration says: the API's day is UTC's, so
 * current_date (a booked car, a contract still running) and a whole
 * number of days added to now() (a flashcard's next review, across a
 * daylight-saving change) mean the same on every server.
 *
 * KEEL_DB_PREPARED=0 is for a pooler between keel and PostgreSQL that
 * hands each transaction whatever server connection is free (PgBouncer's
 * transaction pooling; before 1.21 it knows nothing of named prepared
 * statements, and it refuses startup options it doesn't know).  Nothing
 * is then left on a server connection past a transaction: statements
 * are sent unnamed (Parse, Bind, Execute and Sync at once: parsed and
 * planned with their values every time), nothing goes in the startup
 * packet, and statement_timeout, DateStyle and TimeZone are set for each
 * transaction: by BEGIN's SET LOCAL, or, for a statement outside one,
 * by a set_config(..., true) sent in front of it in one pipeline with
 * one Sync, so both run in one implicit transaction, on one server
 * connection, in one round trip (keel_db_send_as()).
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/sqlspec.h"
#include "keel/text.h"

#define MAX_PREPARED	128	/* statements prepared per connection */
#define SPEC_SHAPES	128	/* statements read for arms, per worker */
#define SPEC_MAX	256	/* their specialised forms, per worker */
#define TEXTOID		25	/* pg_type.h: declares unnamed parameters */
#define TIMESTAMPOID	1114	/* pg_type.h: KEEL_SQL_TIME's columns */
#define REPLICA_RETRY_MS 5000	/* a failed replica rests this long */
#define LAG_CHECK_MS	1000	/* replay lag is rechecked this often */
#define LAG_QUERY_MS	500	/* the lag check's own time bound */

/*
 * TCP keepalives: an idle connection whose network went away is found
 * dead in about 25 s, and data unacknowledged for 10 s breaks a
 * connection (a live server's kernel acknowledges at once, however busy
 * the server).  libpq's defaults come before the URL, so
 * DATABASE_URL's own (?keepalives_idle=60) win.
 */
#define KEEPALIVES_IDLE		"10"	/* s idle before the first probe */
#define KEEPALIVES_INTERVAL	"5"	/* s between probes */
#define KEEPALIVES_COUNT	"3"	/* probes lost before it is dead */
#define TCP_USER_TIMEOUT	"10000"	/* ms */

/*
 * How often a backend running one of our statements checks that we are
 * still there (client_connection_check_interval, PostgreSQL 14).  A
 * worker killed mid-statement (the supervisor's SIGKILL past
 * KEEL_SHUTDOWN_TIMEOUT, a crash) closes its socket, but a backend
 * waiting on a lock would only see that once its statement had run, and
 * a lone write would commit after its client was told 500.  With the
 * check it cancels the statement within this bound instead.
 */
#define CLIENT_CHECK_MS		1000

/* A statement prepared on a connection, and the parameters it takes. */
struct prepared {
	const char	*name;
	size_t		 nparams;
	bool		 writes;	/* see sql_scan() */
};

struct pgconn {
	PGconn		*conn;		/* NULL until first use */
	char		*url;		/* owned */
	struct prepared	 prepared[MAX_PREPARED];
	size_t		 nprepared;
	const char	*label;		/* "primary", "replica" for logs */
	double		 down_until;	/* ms (monotonic): skip until then */
	double		 lag_checked;	/* ms (monotonic) of the last check */
	int		 lagging;	/* the last check found it too far behind */
	bool		 fatal;		/* the server said goodbye (FATAL) */
	unsigned long	 vouched;	/* the db->asked conn_alive() passed
					   in, nothing sent since; 0: none */
};

/* A statement with arms, written for one key (sqlspec.h). */
struct spec {
	struct keel_sqlspec_key	 key;
	char			*name;		/* "cars_list_after~11~21" */
	char			*sql;
	Oid			 types[KEEL_DB_MAXPARAMS]; /* 0: inferred */
	size_t			 n;
	struct spec		*next;
};

/* What a statement's SQL holds, read once per worker (spec_for). */
struct shape {
	const struct keel_query	*q;		/* NULL: a free slot */
	struct keel_sqlspec_shape sh;
	bool			 arms;		/* sh holds some */
	bool			 unread;	/* arms sqlspec.c can't read:
						   planned each run, unnamed */
	struct spec		*specs;
};

/* One statement as libpq sends it (see exec_bounded). */
enum stmt_kind {
	STMT_SQL,		/* PQsendQuery: no parameters */
	STMT_PREPARE,		/* PQsendPrepare */
	STMT_PREPARED,		/* PQsendQueryPrepared */
	STMT_PARAMS,		/* PQsendQueryParams: unprepared */
};

struct stmt {
	enum stmt_kind		 kind;
	const char		*name;		/* prepared name; logs */
	const char		*sql;
	const char		*set;		/* NULL, or run first in the same
						   implicit transaction (see
						   exec_bounded) */
	const Oid		*types;		/* STMT_PREPARE (NULL: all
						   inferred) */
	int			 n;
	const char *const	*params;
};

struct keel_db {
	const struct keel_config *cfg;
	struct pgconn		 primary;
	struct pgconn		*replicas;
	int			 nreplicas;
	int			 in_tx;		/* inside BEGIN on the primary */
	int			 next;		/* round robin over replicas */
	unsigned long		 asked;		/* queries and requests, from 1 */
	/* The current request (keel_db_request_reset clears them). */
	bool			 pinned;	/* reads go to the primary */
	bool			 wrote;		/* a statement changed rows */
	unsigned		 nqueries;
	double			 query_ms;
	char			 errstr[256];
	char			 constraint[64];
	unsigned long		 refusals;	/* statements the server
						   refused, ever (result_err) */
	/* KEEL_DB_PREPARED=0: the settings of each transaction. */
	char			 set_sql[256];	/* before a lone statement */
	char			 begin_sql[256]; /* BEGIN, then SET LOCAL */
	/* Statements with arms: their forms (sqlspec.h), per worker. */
	struct shape		 shapes[SPEC_SHAPES];
	size_t			 nspecs;
};

/*
 * A replica's replay lag in ms: caught up when everything received is
 * replayed, else the age of the last replayed transaction.
 */
/*
 * Caught up when everything received is replayed.  Right after a replica
 * restart, before new WAL arrives, the receive position can read below the
 * replay position (or NULL): that is caught up too, not "lagging since the
 * last commit".
 */
#define LAG_SQL	"SELECT CASE WHEN pg_last_wal_receive_lsn() IS NULL OR " \
	"pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0 " \
	"ELSE COALESCE(EXTRACT(EPOCH FROM now() - " \
	"pg_last_xact_replay_timestamp()) * 1000, 0) END"

struct keel_rows {
	size_t	 nrows, ncols;
	char	**names;		/* ncols column names */
	char	**vals;			/* nrows * ncols; NULL is SQL NULL */
};

static struct pgconn *keel_db_pick(struct keel_db *, enum keel_db_target);

struct keel_db *
keel_db_open(const struct keel_config *cfg)
{
	struct keel_db	*db;
	const char	*s, *comma;
	int		 i;

	db = keel_calloc(1, sizeof(*db));
	db->asked = 1;		/* 0 is no connection's vouched */
	db->cfg = cfg;
	snprintf(db->set_sql, sizeof(db->set_sql), "SELECT set_config("
	    "'statement_timeout', '%d', true), set_config('DateStyle', 'ISO', "
	    "true), set_config('TimeZone', 'UTC', true), "
	    "set_config('client_connection_check_interval', '%d', true)",
	    cfg->db_statement_timeout, CLIENT_CHECK_MS);
	snprintf(db->begin_sql, sizeof(db->begin_sql), cfg->db_prepared ?
	    "BEGIN" : "BEGIN; SET LOCAL statement_timeout = %d; "
	    "SET LOCAL DateStyle = ISO; SET LOCAL TimeZone = UTC; "
	    "SET LOCAL client_connection_check_interval = %d",
	    cfg->db_statement_timeout, CLIENT_CHECK_MS);
	db->primary.url = keel_strdup(cfg->database_url);
	db->primary.label = "primary";
	for (s = cfg->replica_urls; *s != '\0'; s = comma + 1) {
		db->nreplicas++;
		if ((comma = strchr(s, ',')) == NULL)
			break;
	}
	db->replicas = keel_calloc(db->nreplicas + 1, sizeof(*db->replicas));
	for (i = 0, s = cfg->replica_urls; i < db->nreplicas; i++) {
		comma = strchr(s, ',');
		db->replicas[i].url = comma == NULL ? keel_strdup(s) :
		    keel_strndup(s, (size_t)(comma - s));
		db->replicas[i].label = "replica";
		s = comma == NULL ? s : comma + 1;
	}
	return db;
}

static void
conn_drop(struct pgconn *c)
{
	PQfinish(c->conn);
	c->conn = NULL;
	c->nprepared = 0;
	c->vouched = 0;
}

void
keel_db_close(struct keel_db *db)
{
	struct spec	*sp;
	int		 i;

	if (db == NULL)
		return;
	conn_drop(&db->primary);
	free(db->primary.url);
	for (i = 0; i < db->nreplicas; i++) {
		conn_drop(&db->replicas[i]);
		free(db->replicas[i].url);
	}
	free(db->replicas);
	for (i = 0; i < SPEC_SHAPES; i++)
		while ((sp = db->shapes[i].specs) != NULL) {
			db->shapes[i].specs = sp->next;
			free(sp->name);
			free(sp->sql);
			free(sp);
		}
	free(db);
}

static void
set_err(struct keel_db *db, const char *msg)
{
	size_t	 n;

	snprintf(db->errstr, sizeof(db->errstr), "%s", msg);
	/* libpq messages end in a newline; a log line must not. */
	n = strlen(db->errstr);
	while (n > 0 && (db->errstr[n - 1] == '\n' || db->errstr[n - 1] == ' '))
		db->errstr[--n] = '\0';
}

static double
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double
keel_db_deadline(double now, int timeout_ms)
{
	return now + timeout_ms + KEEL_DB_DEADLINE_MARGIN;
}

int
keel_db_ms_left(double deadline, double now)
{
	double	 left = ceil(deadline - now);

	if (left <= 0)
		return 0;
	return left >= INT_MAX ? INT_MAX : (int)left;
}

bool
keel_db_may_resend(enum keel_err er, enum keel_db_reach reach, bool had_conn,
    bool read_only, bool in_tx)
{
	/*
	 * A transaction died with its connection; a timeout spent the
	 * time; a connection just made that fails won't be mended by
	 * another made at once.
	 */
	if (er != KEEL_EUNAVAIL || in_tx || !had_conn)
		return false;
	return reach == KEEL_DB_UNSENT || (reach == KEEL_DB_SENT && read_only);
}

enum keel_db_send
keel_db_send_as(bool named, bool prepared, bool room, bool in_tx)
{
	if (named && prepared)
		return KEEL_DB_SEND_PREPARED;
	if (named && room)
		return KEEL_DB_SEND_PREPARE;
	/* Named past the table: unprepared, under the session's settings. */
	if (named || in_tx)
		return KEEL_DB_SEND_UNNAMED;
	return KEEL_DB_SEND_UNNAMED_SET;
}

/*
 * Waits until conn's socket is ready for events or deadline (ms) passes:
 * 1 ready, 0 timed out, -1 no socket or poll failed.
 */
static int
wait_socket(PGconn *conn, short events, double deadline)
{
	struct pollfd	 pfd = { .fd = PQsocket(conn), .events = events };
	int		 n;

	if (pfd.fd < 0)
		return -1;
	for (;;) {
		n = poll(&pfd, 1, keel_db_ms_left(deadline, now_ms()));
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/*
 * Notices and errors the server sends outside a statement's result (a
 * WARNING, or the FATAL it sends before closing the connection: a
 * restart, pg_terminate_backend, idle_session_timeout) come here instead
 * of libpq's print to stderr.  A FATAL marks the connection dead before
 * libpq has read the end of it.
 */
static void
notice_seen(void *arg, const PGresult *res)
{
	struct pgconn	*c = arg;
	const char	*sev, *msg;
	char		 esc[256];

	sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (sev == NULL)
		sev = "NOTICE";
	keel_log_escape(esc, sizeof(esc), msg != NULL ? msg : "");
	if (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)
		c->fatal = true;
	if (c->fatal || strcmp(sev, "WARNING") == 0 ||
	    strcmp(sev, "ERROR") == 0)
		keel_log_warnx("db: %s says %s: %s", c->label, sev, esc);
	else
		keel_log_debug("db: %s says %s: %s", c->label, sev, esc);
}

/*
 * False when c's idle connection is gone.  An idle connection has
 * nothing to read but the server's goodbye (a FATAL, then EOF) or a
 * harmless message, so what is readable is read now, before a statement
 * is sent on a connection that can't take it.
 */
static bool
conn_alive(struct pgconn *c)
{
	struct pollfd	 pfd = { .fd = PQsocket(c->conn), .events = POLLIN };
	int		 i;

	for (i = 0; i < 4 && poll(&pfd, 1, 0) == 1; i++)
		if (!PQconsumeInput(c->conn))
			break;
	return PQstatus(c->conn) == CONNECTION_OK && !c->fatal;
}

void
keel_db_conn_params_init(struct keel_db_conn_params *c,
    const struct keel_config *cfg, const char *url, const char *name)
{
	/*
	 * Defaults before dbname (the URL may override), keel's after;
	 * the session's settings last, left out with KEEL_DB_PREPARED=0
	 * (see the top of this file).
	 */
	static const char *const keys[KEEL_DB_CONN_PARAMS] = {
	    "keepalives", "keepalives_idle", "keepalives_interval",
	    "keepalives_count", "tcp_user_timeout", "dbname",
	    "fallback_application_name", "options", NULL };

	/*
	 * plan_cache_mode: PostgreSQL's default, whatever the server's
	 * configuration says: optional filters are prepared per set
	 * (spec_for), so a cached plan serves them well.
	 */
	snprintf(c->opts, sizeof(c->opts), "-c statement_timeout=%d "
	    "-c plan_cache_mode=auto -c DateStyle=ISO -c TimeZone=UTC "
	    "-c client_connection_check_interval=%d",
	    cfg->db_statement_timeout, CLIENT_CHECK_MS);
	memcpy(c->keys, keys, sizeof(c->keys));
	c->vals[0] = "1";
	c->vals[1] = KEEPALIVES_IDLE;
	c->vals[2] = KEEPALIVES_INTERVAL;
	c->vals[3] = KEEPALIVES_COUNT;
	c->vals[4] = TCP_USER_TIMEOUT;
	c->vals[5] = url;
	c->vals[6] = name;
	c->vals[7] = c->opts;
	c->vals[8] = NULL;
	if (!cfg->db_prepared)
		c->keys[7] = NULL;
}

/*
 * Opens c's connection within timeout_ms.  PQconnectdbParams would wait
 * connect_timeout per address, in whole seconds and at least 2; polled
 * here, the bound is the caller's, in ms, for the whole startup.
 * (Resolving a host name, inside libpq, is not bounded: use addresses.)
 */
static enum keel_err
conn_open(struct keel_db *db, struct pgconn *c, int timeout_ms)
{
	struct keel_db_conn_params p;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	double			 deadline = now_ms() + timeout_ms;
	char			 esc[256];
	int			 w;

	keel_db_conn_params_init(&p, db->cfg, c->url, "keel");
	c->fatal = false;
	if ((c->conn = PQconnectStartParams(p.keys, p.vals, 1)) == NULL) {
		set_err(db, "out of memory");
		return KEEL_EUNAVAIL;
	}
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED ||
		    PQstatus(c->conn) == CONNECTION_BAD) {
			set_err(db, PQerrorMessage(c->conn));
			goto fail;
		}
		w = wait_socket(c->conn, st == PGRES_POLLING_READING ? POLLIN :
		    POLLOUT, deadline);
		if (w <= 0) {
			snprintf(db->errstr, sizeof(db->errstr),
			    "no connection within %d ms", timeout_ms);
			goto fail;
		}
		st = PQconnectPoll(c->conn);
	}
	/* Sends never block either: exec_bounded flushes by poll. */
	if (PQsetnonblocking(c->conn, 1) != 0) {
		set_err(db, PQerrorMessage(c->conn));
		goto fail;
	}
	PQsetNoticeReceiver(c->conn, notice_seen, c);
	return KEEL_OK;
fail:
	/* libpq's messages run over several lines; a log line must not. */
	keel_log_warnx("db: %s: cannot connect: %s", c->label,
	    keel_log_escape(esc, sizeof(esc), db->errstr));
	conn_drop(c);
	return KEEL_EUNAVAIL;
}

/*
 * Connects c within timeout_ms if it has no healthy connection.  An
 * idle connection the server closed (restart, failover, idle timeout) is
 * replaced before anything is sent on it (see conn_alive).
 */
static enum keel_err
conn_ensure(struct keel_db *db, struct pgconn *c, int timeout_ms)
{
	enum keel_err	 er;

	/* Once per statement: picking a replica asked already. */
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK &&
	    !db->in_tx && c->vouched != db->asked && !conn_alive(c)) {
		keel_log_warnx("db: %s: connection closed by the server; "
		    "reconnecting", c->label);
		conn_drop(c);
	}
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK) {
		c->vouched = db->asked;
		return KEEL_OK;
	}
	conn_drop(c);
	/* A transaction dies with its connection: never go on without it. */
	if (db->in_tx && c == &db->primary) {
		set_err(db, "the transaction's connection was lost");
		return KEEL_EUNAVAIL;
	}
	if (c->url[0] == '\0') {
		set_err(db, "DATABASE_URL is not set");
		return KEEL_EUNAVAIL;
	}
	if ((er = conn_open(db, c, timeout_ms)) == KEEL_OK)
		c->vouched = db->asked;
	return er;
}

/*
 * Asks the server to cancel c's statement, giving up after
 * KEEL_DB_CANCEL_MAX.  PQcancel has no timeout: it connects, sends the
 * request and waits for the server to close, and a stopped server takes
 * the connect into its backlog and never closes.  So a child process
 * runs it, killed if time is up; the child dies with this process too.
 */
static void
cancel_bounded(struct pgconn *c)
{
	PGcancel	*cn;
	struct pollfd	 pfd;
	double		 deadline;
	char		 buf[256];
	pid_t		 pid, parent = getpid();
	int		 p[2], n;

	if ((cn = PQgetCancel(c->conn)) == NULL)
		return;
	if (pipe(p) == -1) {
		keel_log_warn("db: cancel: pipe");
		PQfreeCancel(cn);
		return;
	}
	if ((pid = fork()) == 0) {
		close(p[0]);
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == parent)
			(void)PQcancel(cn, buf, sizeof(buf));
		_exit(0);
	}
	close(p[1]);
	if (pid == -1)
		keel_log_warn("db: cancel: fork");
	else {
		/* The pipe hangs up when the child exits. */
		deadline = now_ms() + KEEL_DB_CANCEL_MAX;
		pfd.fd = p[0];
		pfd.events = POLLIN;
		while ((n = poll(&pfd, 1, keel_db_ms_left(deadline,
		    now_ms()))) == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			keel_log_warnx("db: %s: cancel not answered within "
			    "%d ms", c->label, KEEL_DB_CANCEL_MAX);
			kill(pid, SIGKILL);
		}
		while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
			continue;
	}
	close(p[0]);
	PQfreeCancel(cn);
}

/* True when res reports success: a statement's rows or command tag. */
static bool
result_ok(const PGresult *res)
{
	return PQresultStatus(res) == PGRES_TUPLES_OK ||
	    PQresultStatus(res) == PGRES_COMMAND_OK;
}

/*
 * Sends s on c and reads its results until deadline (ms, monotonic).
 * KEEL_OK with *res the last result (caller clears it, and checks its
 * status); KEEL_ETIMEOUT when the deadline passed (the statement is
 * cancelled and the connection dropped); KEEL_EUNAVAIL when the
 * connection broke (dropped).  *reach says whether s left whole: until
 * the last byte of its last message is handed to the kernel the server
 * can't run it (an extended-protocol statement commits at its Sync, the
 * last message).
 *
 * With s->set, a pipeline: s->set then s, and one Sync, so that the
 * server runs both in one implicit transaction (a pooler keeps its
 * server connection for it: the Sync ends it) and s->set's
 * set_config(..., true) holds for s alone.  *res is then s's result,
 * or the first error.
 */
static enum keel_err
exec_bounded(struct keel_db *db, struct pgconn *c, const struct stmt *s,
    double deadline, PGresult **res, enum keel_db_reach *reach)
{
	PGresult	*r, *last = NULL;
	char		 esc[256];
	int		 ok = 0, f, w, ends = 0, synced = 0;

	*res = NULL;
	*reach = KEEL_DB_UNSENT;
	c->vouched = 0;
	if (s->set != NULL && (!PQenterPipelineMode(c->conn) ||
	    !PQsendQueryParams(c->conn, s->set, 0, NULL, NULL, NULL, NULL, 0)))
		goto lost;
	switch (s->kind) {
	case STMT_SQL:
		ok = PQsendQuery(c->conn, s->sql);
		break;
	case STMT_PREPARE:
		/* The server infers the types of those s->types leaves 0. */
		ok = PQsendPrepare(c->conn, s->name, s->sql,
		    s->types != NULL ? s->n : 0, s->types);
		break;
	case STMT_PREPARED:
		ok = PQsendQueryPrepared(c->conn, s->name, s->n, s->params,
		    NULL, NULL, 0);
		break;
	case STMT_PARAMS:
		ok = PQsendQueryParams(c->conn, s->sql, s->n, NULL, s->params,
		    NULL, NULL, 0);
		break;
	}
	if (!ok || (s->set != NULL && !PQpipelineSync(c->conn)))
		goto lost;
	/* Non-blocking: what the socket didn't take yet goes as it drains. */
	while ((f = PQflush(c->conn)) == 1) {
		w = wait_socket(c->conn, POLLOUT | POLLIN, deadline);
		if (w == 0)
			goto timeout;
		if (w < 0 || !PQconsumeInput(c->conn))
			goto lost;
	}
	if (f == -1)
		goto lost;
	*reach = KEEL_DB_SENT;
	for (;;) {
		while (PQisBusy(c->conn)) {
			if ((w = wait_socket(c->conn, POLLIN, deadline)) == 0)
				goto timeout;
			if (w < 0 || !PQconsumeInput(c->conn))
				goto lost;
		}
		if ((r = PQgetResult(c->conn)) == NULL) {
			/* In a pipeline a NULL ends one statement's results. */
			if (s->set == NULL || ++ends > 2)
				break;
			continue;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			synced = 1;
			break;
		}
		/* After an error the rest of a pipeline says "aborted". */
		if (last != NULL && !result_ok(last))
			PQclear(r);
		else {
			PQclear(last);
			last = r;
		}
	}
	if (s->set != NULL && (!synced || !PQexitPipelineMode(c->conn)))
		goto lost;
	*res = last;
	return KEEL_OK;
timeout:
	PQclear(last);
	keel_log_warnx("db: %s: no answer from the %s by the statement "
	    "deadline; cancelling, reconnecting next time", s->name, c->label);
	if (*reach == KEEL_DB_SENT)
		cancel_bounded(c);
	snprintf(db->errstr, sizeof(db->errstr), "no answer from the %s in "
	    "time", c->label);
	conn_drop(c);
	return KEEL_ETIMEOUT;
lost:
	PQclear(last);
	set_err(db, PQerrorMessage(c->conn));
	keel_log_warnx("db: %s: connection to the %s lost: %s", s->name,
	    c->label, keel_log_escape(esc, sizeof(esc), db->errstr));
	conn_drop(c);
	return KEEL_EUNAVAIL;
}

/* The statement called name as prepared on c, or NULL. */
static const struct prepared *
prepared_on(const struct pgconn *c, const char *name)
{
	size_t	 i;

	/* Names are constants or the forms' (spec_for): the same pointer. */
	for (i = 0; i < c->nprepared; i++)
		if (c->prepared[i].name == name)
			return &c->prepared[i];
	for (i = 0; i < c->nprepared; i++)
		if (strcmp(c->prepared[i].name, name) == 0)
			return &c->prepared[i];
	return NULL;
}

/* q's entry in db's table of shapes (made on first sight), or NULL. */
static struct shape *
shape_of(struct keel_db *db, const struct keel_query *q)
{
	size_t		 i, h = ((uintptr_t)q >> 3) % SPEC_SHAPES, k;
	struct shape	*sh;

	for (k = 0; k < SPEC_SHAPES; k++) {
		i = (h + k) % SPEC_SHAPES;
		sh = &db->shapes[i];
		if (sh->q == q)
			return sh;
		if (sh->q == NULL) {
			sh->q = q;
			sh->arms = keel_sqlspec_shape(q->sql, &sh->sh);
			sh->unread = sh->sh.unread &&
			    strstr(q->sql, "IS NULL OR") != NULL;
			if (sh->unread)
				keel_log_warnx("db: %s: optional filters "
				    "sqlspec.c can't read: planned each run",
				    q->name);
			return sh;
		}
	}
	return NULL;
}

/*
 * The form of q for p (sqlspec.h): *sp NULL when q has no arm; false
 * when q is to be planned with its values (replan, arms unread, or
 * SPEC_MAX reached): then it runs unnamed.
 */
static bool
spec_for(struct keel_db *db, const struct keel_query *q,
    const struct keel_db_params *p, const struct spec **sp)
{
	struct keel_sqlspec_shape	 tmp;
	struct keel_sqlspec_key		 key;
	struct shape			*sh;
	struct spec			*f;
	size_t				 i, n = p != NULL ? p->n : 0;
	uint32_t			 unref;
	char				*sql, name[64];
	int				 w;

	*sp = NULL;
	if (q->replan)
		return false;
	if ((sh = shape_of(db, q)) == NULL)	/* a full table: read again */
		return !keel_sqlspec_shape(q->sql, &tmp) && !(tmp.unread &&
		    strstr(q->sql, "IS NULL OR") != NULL);
	if (!sh->arms)
		return !sh->unread;
	keel_sqlspec_key(&sh->sh, n, p != NULL ? p->v : NULL, &key);
	for (f = sh->specs; f != NULL; f = f->next)
		if (f->key.nulls == key.nulls && f->key.limit == key.limit &&
		    f->n == n) {
			*sp = f;
			return true;
		}
	if (db->nspecs >= SPEC_MAX || n > KEEL_DB_MAXPARAMS ||
	    (sql = keel_sqlspec_write(q->sql, &key, n, &unref)) == NULL)
		return false;
	f = keel_calloc(1, sizeof(*f));
	f->key = key;
	f->sql = sql;
	f->n = n;
	/* A parameter the form no longer names still needs a type. */
	for (i = 0; i < n; i++)
		f->types[i] = (unref & (1u << i)) ? TEXTOID : 0;
	/* Unique per worker as q->name is; PostgreSQL keeps 63 bytes. */
	w = snprintf(name, sizeof(name), "%s~%x~%d", q->name,
	    (unsigned)key.nulls, key.limit);
	if (w < 0 || (size_t)w >= sizeof(name))
		snprintf(name, sizeof(name), "keel_spec~%zu", db->nspecs);
	f->name = keel_strdup(name);
	f->next = sh->specs;
	sh->specs = f;
	db->nspecs++;
	*sp = f;
	return true;
}

/*
 * A server that answers but can't do the work, whatever the statement:
 * out of disk (53100), out of connections (53300) or of resources it
 * doesn't name (53000), an I/O error (class 58), or read-only (25006: a
 * default_transaction_read_only, or a standby where the primary was).
 * Unavailable, as a server that is down (DESIGN.md's table: 503, and a
 * job waits instead of spending its attempts).  Not 53200 (out of
 * memory) or 53400 (a configuration limit such as temp_file_limit):
 * those are usually the statement's own doing, and a 503 would invite
 * retries of a request that fails every time.
 */
static bool
server_refuses(const char *state)
{
	return strcmp(state, "53000") == 0 || strcmp(state, "53100") == 0 ||
	    strcmp(state, "53300") == 0 || strncmp(state, "58", 2) == 0 ||
	    strcmp(state, "25006") == 0;
}

static enum keel_err
result_err(struct keel_db *db, struct pgconn *c, PGresult *res,
    const char *name)
{
	const char	*state, *cons;

	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	set_err(db, res != NULL ? PQresultErrorMessage(res) :
	    PQerrorMessage(c->conn));
	db->constraint[0] = '\0';
	if (PQstatus(c->conn) != CONNECTION_OK || state == NULL ||
	    strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) {
		keel_log_warnx("db: %s: connection lost: %s", name, db->errstr);
		conn_drop(c);
		return KEEL_EUNAVAIL;
	}
	if ((cons = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME)) != NULL)
		snprintf(db->constraint, sizeof(db->constraint), "%s", cons);
	/* SQLSTATE classes: PostgreSQL manual, Appendix A. */
	if (strcmp(state, "23505") == 0 || strcmp(state, "23P01") == 0)
		return KEEL_ECONFLICT;
	if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
		return KEEL_EINVAL;
	if (strcmp(state, "57014") == 0) {
		keel_log_warnx("db: %s: statement timeout", name);
		return KEEL_ETIMEOUT;
	}
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
		return KEEL_ECONFLICT;
	keel_log_error("db: %s: sqlstate=%s %s", name, state, db->errstr);
	if (server_refuses(state)) {
		db->refusals++;
		/* A standby where the primary was: the next statement
		 * connects again, to wherever the URL now leads. */
		if (strcmp(state, "25006") == 0)
			conn_drop(c);
		return KEEL_EUNAVAIL;
	}
	return KEEL_EINTERNAL;
}

bool
keel_db_time_rfc3339(const char *in, size_t len, char out[KEEL_DB_TIME_LEN + 1])
{
	/* "YYYY-MM-DD HH:MM:SS": the digits' offsets. */
	static const unsigned char	 dig[] = { 0, 1, 2, 3, 5, 6, 8, 9, 11,
	    12, 14, 15, 17, 18 };
	size_t				 i;

#define DIGIT(c)	((unsigned char)((c) - '0') <= 9)
	if (len < 19 || len > 26 || in[4] != '-' || in[7] != '-' ||
	    in[10] != ' ' || in[13] != ':' || in[16] != ':' ||
	    (len > 19 && (in[19] != '.' || len == 20)))
		return false;
	for (i = 0; i < sizeof(dig); i++)
		if (!DIGIT(in[dig[i]]))
			return false;
	for (i = 20; i < len; i++)
		if (!DIGIT(in[i]))
			return false;
#undef DIGIT
	memcpy(out, in, 19);
	out[10] = 'T';
	out[19] = '.';
	/* The fraction PostgreSQL trimmed of its trailing zeros. */
	memcpy(out + 20, "000000", 6);
	if (len > 20)
		memcpy(out + 20, in + 20, len - 20);
	out[26] = 'Z';
	out[27] = '\0';
	return true;
}

static struct keel_rows *
rows_copy(PGresult *res)
{
	struct keel_rows	*rows;
	size_t			 r, c, nr, nc, bytes = 0, len;
	uint64_t		 times = 0;	/* bit c: a timestamp */
	const char		*v;
	char			*p;

	nr = (size_t)PQntuples(res);
	nc = (size_t)PQnfields(res);
	for (c = 0; c < nc && c < 64; c++)
		if (PQftype(res, (int)c) == TIMESTAMPOID)
			times |= (uint64_t)1 << c;
	for (c = 0; c < nc; c++)
		bytes += strlen(PQfname(res, (int)c)) + 1;
	/* A NULL's length is 0: its byte here is spare, and cheaper. */
	for (r = 0; r < nr; r++)
		for (c = 0; c < nc; c++) {
			len = (size_t)PQgetlength(res, (int)r, (int)c);
			/* A time may grow to KEEL_DB_TIME_LEN. */
			if (c < 64 && (times & ((uint64_t)1 << c)) &&
			    len < KEEL_DB_TIME_LEN)
				len = KEEL_DB_TIME_LEN;
			bytes += len + 1;
		}
	/* One block: header, pointer tables, then the strings. */
	rows = keel_malloc(sizeof(*rows) + (nc + nr * nc) * sizeof(char *) +
	    bytes);
	rows->nrows = nr;
	rows->ncols = nc;
	rows->names = (char **)(rows + 1);
	rows->vals = rows->names + nc;
	p = (char *)(rows->vals + nr * nc);
	for (c = 0; c < nc; c++) {
		len = strlen(PQfname(res, (int)c));
		memcpy(p, PQfname(res, (int)c), len + 1);
		rows->names[c] = p;
		p += len + 1;
	}
	for (r = 0; r < nr; r++)
		for (c = 0; c < nc; c++) {
			/* Only an empty value may be a NULL. */
			len = (size_t)PQgetlength(res, (int)r, (int)c);
			if (len == 0 && PQgetisnull(res, (int)r, (int)c)) {
				rows->vals[r * nc + c] = NULL;
				continue;
			}
			v = PQgetvalue(res, (int)r, (int)c);
			rows->vals[r * nc + c] = p;
			if (c < 64 && (times & ((uint64_t)1 << c)) &&
			    keel_db_time_rfc3339(v, len, p)) {
				p += KEEL_DB_TIME_LEN + 1;
				continue;
			}
			memcpy(p, v, len);
			p[len] = '\0';
			p += len + 1;
		}
	return rows;
}

/*
 * True when res reports rows changed: INSERT, UPDATE, DELETE or MERGE
 * with a count above 0, or, for a statement whose SQL writes (writes: a
 * data-modifying WITH under a SELECT, whose tag counts the rows it
 * returns, not those it changed), any row returned.
 */
static bool
changed_rows(PGresult *res, bool writes)
{
	const char	*st = PQcmdStatus(res), *n = PQcmdTuples(res);

	if (strncmp(st, "SELECT", 6) == 0 && !writes)
		return false;
	if (strncmp(st, "SELECT", 6) != 0 && strncmp(st, "INSERT", 6) != 0 &&
	    strncmp(st, "UPDATE", 6) != 0 && strncmp(st, "DELETE", 6) != 0 &&
	    strncmp(st, "MERGE", 5) != 0)
		return false;
	return n[0] != '\0' && strcmp(n, "0") != 0;
}

static bool
word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '$';
}

/*
 * What sql says outside quoted literals and identifiers: its highest $N
 * placeholder (*nparams: the parameters it takes), and whether it holds
 * the word INSERT, UPDATE, DELETE or MERGE (*writes: it may change rows
 * even when its tag is a SELECT's; SELECT ... FOR UPDATE counts too,
 * which costs the caller a read-your-writes window at most).
 */
static void
sql_scan(const char *sql, size_t *nparams, bool *writes)
{
	static const char *const verbs[] = { "insert", "update", "delete",
	    "merge" };
	const char	*s, *w;
	char		 quote = 0;
	size_t		 i, n;

	*nparams = 0;
	*writes = false;
	for (s = sql; *s != '\0'; s++) {
		if (quote != 0) {
			if (*s == quote)
				quote = 0;
			continue;
		}
		if (*s == '\'' || *s == '"') {
			quote = *s;
			continue;
		}
		if (*s == '$' && isdigit((unsigned char)s[1])) {
			for (n = 0; isdigit((unsigned char)s[1]) && n < 100000;
			    s++)
				n = n * 10 + (size_t)(s[1] - '0');
			if (n > *nparams)
				*nparams = n;
			continue;
		}
		if (!word_char(*s))
			continue;
		for (w = s; word_char(*w); w++)
			continue;
		n = (size_t)(w - s);
		for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
			if (strlen(verbs[i]) == n &&
			    strncasecmp(s, verbs[i], n) == 0)
				*writes = true;
		s = w - 1;
	}
}

/*
 * The parameters given must be the ones the statement takes, or it would
 * run with values shifted or missing: a programmer's error, refused
 * (logged, KEEL_EINTERNAL) on the first request that makes it.
 */
static enum keel_err
params_check(struct keel_db *db, const struct keel_query *q, size_t want,
    size_t given)
{
	if (given == want)
		return KEEL_OK;
	snprintf(db->errstr, sizeof(db->errstr), "statement %s takes %zu "
	    "parameters, %zu were given", q->name, want, given);
	keel_log_error("db: %s", db->errstr);
	return KEEL_EINTERNAL;
}

/*
 * Runs q on c, as keel_db_send_as() says (preparing it first on this
 * connection, or unnamed), within one statement deadline.  *reach: how
 * far q got (a failed PREPARE never sent q itself).
 */
static enum keel_err
query_on(struct keel_db *db, struct pgconn *c, const struct keel_query *q,
    const struct keel_db_params *p, struct keel_rows **out,
    enum keel_db_reach *reach)
{
	const struct prepared	*ps;
	const struct spec	*sp = NULL;
	PGresult		*res = NULL;
	struct stmt		 s = { .kind = STMT_PREPARED, .name = q->name,
				    .sql = q->sql };
	size_t			 n = p != NULL ? p->n : 0, want;
	double			 deadline;
	enum keel_db_send	 send;
	enum keel_err		 er;
	bool			 writes, named = db->cfg->db_prepared != 0;
	bool			 room;

	*reach = KEEL_DB_NOCONN;
	if ((er = conn_ensure(db, c, db->cfg->db_connect_timeout * 1000)) !=
	    KEEL_OK)
		return er;
	*reach = KEEL_DB_UNSENT;
	/* Named: the form for these values' filters, if q has arms. */
	room = c->nprepared < MAX_PREPARED;
	if (named && !spec_for(db, q, p, &sp))
		room = false;
	if (sp != NULL) {
		s.name = sp->name;
		s.sql = sp->sql;
		s.types = sp->types;
	}
	ps = named ? prepared_on(c, s.name) : NULL;
	if (ps != NULL) {
		want = ps->nparams;
		writes = ps->writes;
	} else
		sql_scan(q->sql, &want, &writes);	/* q's, not sp's */
	if ((er = params_check(db, q, want, n)) != KEEL_OK)
		return er;
	s.n = (int)n;
	s.params = p != NULL ? p->v : NULL;
	deadline = keel_db_deadline(now_ms(), db->cfg->db_statement_timeout);
	send = keel_db_send_as(named, ps != NULL, room,
	    db->in_tx && c == &db->primary);
	if (send == KEEL_DB_SEND_UNNAMED_SET)
		s.set = db->set_sql;
	if (send == KEEL_DB_SEND_UNNAMED || send == KEEL_DB_SEND_UNNAMED_SET) {
		/* Planned with its values: q's own SQL, arms and all. */
		s.kind = STMT_PARAMS;
		s.sql = q->sql;
		s.types = NULL;
	}
	else if (send == KEEL_DB_SEND_PREPARE) {
		s.kind = STMT_PREPARE;
		if ((er = exec_bounded(db, c, &s, deadline, &res, reach)) !=
		    KEEL_OK) {
			*reach = KEEL_DB_UNSENT;
			return er;
		}
		*reach = KEEL_DB_UNSENT;
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			er = result_err(db, c, res, q->name);
			goto out;
		}
		PQclear(res);
		res = NULL;
		c->prepared[c->nprepared++] = (struct prepared){
			.name = s.name, .nparams = n, .writes = writes };
		s.kind = STMT_PREPARED;
	}
	if ((er = exec_bounded(db, c, &s, deadline, &res, reach)) != KEEL_OK)
		return er;
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK:
		if (out != NULL)
			*out = rows_copy(res);
		if (c == &db->primary && changed_rows(res, writes))
			db->wrote = true;
		er = KEEL_OK;
		break;
	default:
		er = result_err(db, c, res, q->name);
		break;
	}
out:
	PQclear(res);
	return er;
}

void
keel_db_params_init(struct keel_db_params *p)
{
	p->n = 0;
}

void
keel_db_param_text(struct keel_db_params *p, const char *s)
{
	assert(p->n < KEEL_DB_MAXPARAMS);
	p->v[p->n++] = s;
}

void
keel_db_param_int(struct keel_db_params *p, int64_t v)
{
	assert(p->n < KEEL_DB_MAXPARAMS);
	keel_text_int(p->num[p->n], v);
	p->v[p->n] = p->num[p->n];
	p->n++;
}

void
keel_db_param_bool(struct keel_db_params *p, bool v)
{
	keel_db_param_text(p, v ? "true" : "false");
}

void
keel_db_param_null(struct keel_db_params *p)
{
	keel_db_param_text(p, NULL);
}

/* The statement's time, and a failure that isn't the client's by kind. */
static void
count_query(const char *name, enum keel_err er, double ms)
{
	char	 labels[KEEL_METRICS_LABELS_MAX];

	if (!keel_metrics_on())
		return;
	keel_metrics_observe(KEEL_M_DB_QUERY, keel_metrics_labels(labels,
	    "statement", name, (char *)NULL), ms / 1000.0);
	if (er == KEEL_EUNAVAIL)
		keel_metrics_error("db_unavailable");
	else if (er == KEEL_ETIMEOUT)
		keel_metrics_error("db_timeout");
	else if (er == KEEL_EINTERNAL)
		keel_metrics_error("db_internal");
}

enum keel_err
keel_db_query(struct keel_db *db, const struct keel_query *q,
    const struct keel_db_params *params, struct keel_rows **out)
{
	struct pgconn		*c;
	enum keel_db_reach	 reach;
	enum keel_err		 er;
	double			 t0, ms;
	bool			 had, reads = q->target == KEEL_DB_READ;

	if (out != NULL)
		*out = NULL;
	t0 = now_ms();
	/* A connection vouched for by an earlier call is asked again. */
	db->asked++;
	c = keel_db_pick(db, q->target);
	had = c->conn != NULL;
	er = query_on(db, c, q, params, out, &reach);
	/*
	 * A connection that died while idle without a word (a host gone)
	 * looks healthy until a statement fails on it.  One new connection
	 * is worth a try if the statement can't have run, or only reads; a
	 * write that was sent may have committed, and the caller answers
	 * 503 rather than risk running it twice.
	 */
	if (keel_db_may_resend(er, reach, had, reads, db->in_tx) &&
	    c->conn == NULL) {
		keel_log_warnx("db: %s: connection lost; running it again on "
		    "a new one (%s)", q->name, reach == KEEL_DB_UNSENT ?
		    "it was never sent" : "it only reads");
		had = c->conn != NULL;
		er = query_on(db, c, q, params, out, &reach);
	} else if (er == KEEL_EUNAVAIL && reach == KEEL_DB_SENT)
		keel_log_warnx("db: %s: connection lost after the statement "
		    "was sent; not sent again (it may have run)", q->name);
	if (c != &db->primary && er == KEEL_ETIMEOUT && c->conn == NULL) {
		/*
		 * A replica that doesn't answer rests; the deadline is
		 * spent, so this read is not run again on the primary.
		 */
		c->down_until = now_ms() + REPLICA_RETRY_MS;
	} else if (c != &db->primary && (er == KEEL_EUNAVAIL ||
	    er == KEEL_ECONFLICT)) {
		/*
		 * A replica that went away mid-statement, refused the read
		 * (out of disk), or cancelled a read that conflicted with
		 * recovery, costs a retry on the primary, not an error:
		 * reads are safe to repeat.  Only one that went away rests.
		 */
		if (er == KEEL_EUNAVAIL && c->conn == NULL)
			c->down_until = now_ms() + REPLICA_RETRY_MS;
		keel_log_warnx("db: %s: replica failed (%s); retrying on the "
		    "primary", q->name, keel_strerror(er));
		c = &db->primary;
		er = query_on(db, c, q, params, out, &reach);
	}
	ms = now_ms() - t0;
	db->nqueries++;
	db->query_ms += ms;
	count_query(q->name, er, ms);
	if (ms >= db->cfg->db_slow_ms)
		keel_log_warnx("db: slow query name=%s on=%s ms=%.1f", q->name,
		    c->label, ms);
	else
		keel_log_debug("db: %s on %s took %.2f ms", q->name, c->label,
		    ms);
	return er;
}

void
keel_db_request_reset(struct keel_db *db)
{
	db->pinned = false;
	db->wrote = false;
	db->nqueries = 0;
	db->query_ms = 0;
	db->asked++;		/* no vouching across requests */
}

void
keel_db_pin_primary(struct keel_db *db, bool on)
{
	db->pinned = on;
}

bool
keel_db_wrote(const struct keel_db *db)
{
	return db->wrote;
}

unsigned long
keel_db_refusals(const struct keel_db *db)
{
	return db->refusals;
}

void
keel_db_stats(const struct keel_db *db, unsigned *queries, double *ms)
{
	*queries = db->nqueries;
	*ms = db->query_ms;
}

/* Runs sql (BEGIN, COMMIT, ROLLBACK) on the primary within a deadline. */
static enum keel_err
exec_simple(struct keel_db *db, const char *sql)
{
	struct stmt		 s = { .kind = STMT_SQL, .name = sql,
				    .sql = sql };
	enum keel_db_reach	 reach;
	PGresult		*res;
	enum keel_err		 er;

	if ((er = exec_bounded(db, &db->primary, &s, keel_db_deadline(now_ms(),
	    db->cfg->db_statement_timeout), &res, &reach)) != KEEL_OK)
		return er;
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		er = result_err(db, &db->primary, res, sql);
	PQclear(res);
	return er;
}

enum keel_err
keel_db_begin(struct keel_db *db)
{
	enum keel_err	 er;

	if ((er = conn_ensure(db, &db->primary,
	    db->cfg->db_connect_timeout * 1000)) != KEEL_OK)
		return er;
	if ((er = exec_simple(db, db->begin_sql)) == KEEL_OK)
		db->in_tx = 1;
	return er;
}

enum keel_err
keel_db_commit(struct keel_db *db)
{
	enum keel_err	 er;

	if (!db->in_tx || db->primary.conn == NULL) {
		db->in_tx = 0;
		return KEEL_EUNAVAIL;
	}
	/* Unanswered, a COMMIT may or may not have happened: 503 anyway. */
	er = exec_simple(db, "COMMIT");
	db->in_tx = 0;
	return er;
}

void
keel_db_rollback(struct keel_db *db)
{
	if (db->in_tx && db->primary.conn != NULL &&
	    PQstatus(db->primary.conn) == CONNECTION_OK)
		(void)exec_simple(db, "ROLLBACK");
	db->in_tx = 0;
}

const char *
keel_db_errstr(const struct keel_db *db)
{
	return db->errstr;
}

const char *
keel_db_constraint(const struct keel_db *db)
{
	return db->constraint;
}

int
keel_db_replicas(const struct keel_db *db)
{
	return db->nreplicas;
}

/*
 * Connects c if needed (within connect_ms) and runs sql, a read, within
 * timeout_ms (see exec_bounded); once more on a new connection when the
 * old one turns out to have been closed by the server while idle.  The
 * first column of the first row goes to *val when val != NULL.
 */
static enum keel_err
probe(struct keel_db *db, struct pgconn *c, int connect_ms, const char *sql,
    int timeout_ms, double *val)
{
	struct stmt		 s = { .kind = STMT_SQL, .name = "ping",
				    .sql = sql };
	enum keel_db_reach	 reach;
	PGresult		*res;
	enum keel_err		 er;
	int			 tries;
	bool			 had;

	for (tries = 0; tries < 2; tries++) {
		had = c->conn != NULL;
		if ((er = conn_ensure(db, c, connect_ms)) != KEEL_OK)
			return er;
		er = exec_bounded(db, c, &s, now_ms() + timeout_ms, &res,
		    &reach);
		if (!keel_db_may_resend(er, reach, had, true, false))
			break;
	}
	if (er != KEEL_OK)
		return er;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		er = result_err(db, c, res, "ping");
	else if (val != NULL && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		*val = strtod(PQgetvalue(res, 0, 0), NULL);
	PQclear(res);
	return er;
}

/*
 * 1 when replica c may serve a read now: reachable, and (checked at most
 * every LAG_CHECK_MS) not lagging past KEEL_DB_REPLICA_MAX_LAG.
 */
static int
replica_usable(struct keel_db *db, struct pgconn *c)
{
	double	 now = now_ms(), lag = 0;
	int	 connect_ms = db->cfg->db_connect_timeout * 1000;
	bool	 over;

	if (now < c->down_until)
		return 0;
	if (conn_ensure(db, c, connect_ms) != KEEL_OK) {
		keel_metrics_error("replica_unavailable");
		keel_log_warnx("db: replica unreachable, reads go to the "
		    "primary for %d s", REPLICA_RETRY_MS / 1000);
		c->down_until = now + REPLICA_RETRY_MS;
		return 0;
	}
	if (db->cfg->db_replica_max_lag > 0 &&
	    now - c->lag_checked >= LAG_CHECK_MS) {
		c->lag_checked = now;
		if (probe(db, c, connect_ms, LAG_SQL, LAG_QUERY_MS, &lag) !=
		    KEEL_OK) {
			c->down_until = now + REPLICA_RETRY_MS;
			return 0;
		}
		/*
		 * The lag is the replica's now() less a commit time the
		 * primary's clock stamped: below zero, the replica's clock
		 * is behind by more than the lag, which can't then be read.
		 * Within the bound that is taken as it comes (staleness at
		 * most twice the bound); past it the replica is skipped as
		 * one lagging, else its clock would hide any lag.
		 */
		over = lag > db->cfg->db_replica_max_lag ||
		    lag < -db->cfg->db_replica_max_lag;
		if (over && !c->lagging) {
			keel_metrics_error("replica_lagging");
			if (lag < 0)
				keel_log_warnx("db: replica's clock is behind "
				    "the primary's (lag reads %.0f ms): its "
				    "lag can't be measured; reads go to the "
				    "primary", lag);
			else
				keel_log_warnx("db: replica lags %.0f ms "
				    "(bound %d); reads go to the primary", lag,
				    db->cfg->db_replica_max_lag);
		}
		c->lagging = over;
	}
	return !c->lagging;
}

/* The connection a statement for target runs on. */
static struct pgconn *
keel_db_pick(struct keel_db *db, enum keel_db_target target)
{
	struct pgconn	*c;
	int		 k, i;

	if (target == KEEL_DB_PRIMARY || db->in_tx || db->pinned)
		return &db->primary;
	for (k = 0; k < db->nreplicas; k++) {
		i = (db->next + k) % db->nreplicas;
		c = &db->replicas[i];
		if (replica_usable(db, c)) {
			db->next = (i + 1) % db->nreplicas;
			return c;
		}
	}
	return &db->primary;
}

enum keel_err
keel_db_ping(struct keel_db *db, int replica, int timeout_ms, double *lag_ms)
{
	struct pgconn	*c;

	if (lag_ms != NULL)
		*lag_ms = -1;
	if (replica >= db->nreplicas)
		return KEEL_ENOENT;
	c = replica < 0 ? &db->primary : &db->replicas[replica];
	return probe(db, c, timeout_ms, replica < 0 ? "SELECT 1" : LAG_SQL,
	    timeout_ms, replica < 0 ? NULL : lag_ms);
}

enum keel_err
keel_db_read_only(struct keel_db *db, int timeout_ms, bool *ro)
{
	double		 v = -1;
	enum keel_err	 er;

	*ro = false;
	er = probe(db, &db->primary, timeout_ms, "SELECT CASE WHEN "
	    "current_setting('transaction_read_only') = 'on' THEN 1 ELSE 0 "
	    "END", timeout_ms, &v);
	if (er == KEEL_OK)
		*ro = v == 1;
	return er;
}

size_t
keel_rows_count(const struct keel_rows *rows)
{
	return rows == NULL ? 0 : rows->nrows;
}

size_t
keel_rows_ncols(const struct keel_rows *rows)
{
	return rows == NULL ? 0 : rows->ncols;
}

const char *
keel_rows_name(const struct keel_rows *rows, size_t c)
{
	if (rows == NULL || c >= rows->ncols)
		return NULL;
	return rows->names[c];
}

size_t
keel_rows_col(const struct keel_rows *rows, const char *name)
{
	size_t	 c;

	for (c = 0; rows != NULL && c < rows->ncols; c++)
		if (strcmp(rows->names[c], name) == 0)
			return c;
	return KEEL_ROWS_NOCOL;
}

const char *
keel_rows_value(const struct keel_rows *rows, size_t r, size_t c)
{
	if (rows == NULL || r >= rows->nrows || c >= rows->ncols)
		return NULL;
	return rows->vals[r * rows->ncols + c];
}

int64_t
keel_rows_int64(const struct keel_rows *rows, size_t r, size_t c)
{
	const char	*v;

	if ((v = keel_rows_value(rows, r, c)) == NULL)
		return 0;
	return strtoll(v, NULL, 10);
}

bool
keel_rows_bool(const struct keel_rows *rows, size_t r, size_t c)
{
	const char	*v;

	return (v = keel_rows_value(rows, r, c)) != NULL && v[0] == 't';
}

void
keel_rows_free(struct keel_rows *rows)
{
	free(rows);
}
