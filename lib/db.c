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
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/text.h"

#define MAX_PREPARED	64
#define REPLICA_RETRY_MS 5000	/* a failed replica rests this long */
#define LAG_CHECK_MS	1000	/* replay lag is rechecked this often */
#define LAG_QUERY_MS	500	/* the lag check's own time bound */

/* A statement prepared on a connection, and the parameters it takes. */
struct prepared {
	const char	*name;
	size_t		 nparams;
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
};

struct keel_db {
	const struct keel_config *cfg;
	struct pgconn		 primary;
	struct pgconn		*replicas;
	int			 nreplicas;
	int			 in_tx;		/* inside BEGIN on the primary */
	int			 next;		/* round robin over replicas */
	/* The current request (keel_db_request_reset clears them). */
	bool			 pinned;	/* reads go to the primary */
	bool			 wrote;		/* a statement changed rows */
	unsigned		 nqueries;
	double			 query_ms;
	char			 errstr[256];
	char			 constraint[64];
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
	db->cfg = cfg;
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
}

void
keel_db_close(struct keel_db *db)
{
	int	 i;

	if (db == NULL)
		return;
	conn_drop(&db->primary);
	free(db->primary.url);
	for (i = 0; i < db->nreplicas; i++) {
		conn_drop(&db->replicas[i]);
		free(db->replicas[i].url);
	}
	free(db->replicas);
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

/*
 * Connects c if it has no healthy connection.  An idle connection whose
 * socket is readable was closed by the server (restart, failover,
 * idle timeout), so it is replaced before anything is sent on it.
 */
static enum keel_err
conn_ensure(struct keel_db *db, struct pgconn *c, int timeout_s)
{
	const char	*keys[] = { "dbname", "connect_timeout", "options",
	    "fallback_application_name", NULL };
	const char	*vals[5];
	char		 tmo[16], opts[96];
	struct pollfd	 pfd;

	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK &&
	    !db->in_tx) {
		pfd.fd = PQsocket(c->conn);
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 0) == 1 && (PQconsumeInput(c->conn) == 0 ||
		    PQstatus(c->conn) != CONNECTION_OK)) {
			keel_log_warnx("db: connection closed by the server; "
			    "reconnecting");
			conn_drop(c);
		}
	}
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK)
		return KEEL_OK;
	conn_drop(c);
	if (c->url[0] == '\0') {
		set_err(db, "DATABASE_URL is not set");
		return KEEL_EUNAVAIL;
	}
	snprintf(tmo, sizeof(tmo), "%d", timeout_s);
	/* Plan each execution: optional filters (NULL params) fold away. */
	snprintf(opts, sizeof(opts), "-c statement_timeout=%d "
	    "-c plan_cache_mode=force_custom_plan",
	    db->cfg->db_statement_timeout);
	vals[0] = c->url;
	vals[1] = tmo;
	vals[2] = opts;
	vals[3] = "keel";
	vals[4] = NULL;
	c->conn = PQconnectdbParams(keys, vals, 1);
	if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK) {
		set_err(db, c->conn != NULL ? PQerrorMessage(c->conn) :
		    "out of memory");
		conn_drop(c);
		return KEEL_EUNAVAIL;
	}
	return KEEL_OK;
}


/* The statement called name as prepared on c, or NULL. */
static const struct prepared *
prepared_on(const struct pgconn *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->nprepared; i++)
		if (c->prepared[i].name == name ||
		    strcmp(c->prepared[i].name, name) == 0)
			return &c->prepared[i];
	return NULL;
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
	return KEEL_EINTERNAL;
}

static struct keel_rows *
rows_copy(PGresult *res)
{
	struct keel_rows	*rows;
	size_t			 r, c, nr, nc, bytes = 0, len;
	char			*p;

	nr = (size_t)PQntuples(res);
	nc = (size_t)PQnfields(res);
	for (c = 0; c < nc; c++)
		bytes += strlen(PQfname(res, (int)c)) + 1;
	for (r = 0; r < nr; r++)
		for (c = 0; c < nc; c++)
			if (!PQgetisnull(res, (int)r, (int)c))
				bytes += (size_t)PQgetlength(res, (int)r,
				    (int)c) + 1;
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
			if (PQgetisnull(res, (int)r, (int)c)) {
				rows->vals[r * nc + c] = NULL;
				continue;
			}
			len = (size_t)PQgetlength(res, (int)r, (int)c);
			memcpy(p, PQgetvalue(res, (int)r, (int)c), len);
			p[len] = '\0';
			rows->vals[r * nc + c] = p;
			p += len + 1;
		}
	return rows;
}

static double
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* True when res reports rows changed by INSERT, UPDATE, DELETE or MERGE. */
static bool
changed_rows(PGresult *res)
{
	const char	*st = PQcmdStatus(res), *n = PQcmdTuples(res);

	if (strncmp(st, "INSERT", 6) != 0 && strncmp(st, "UPDATE", 6) != 0 &&
	    strncmp(st, "DELETE", 6) != 0 && strncmp(st, "MERGE", 5) != 0)
		return false;
	return n[0] != '\0' && strcmp(n, "0") != 0;
}

/*
 * The highest $N placeholder of sql, outside quoted literals and
 * identifiers: the number of parameters the statement takes.
 */
static size_t
placeholders(const char *sql)
{
	const char	*s;
	char		 quote = 0;
	size_t		 n, max = 0;

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
		if (*s != '$' || !isdigit((unsigned char)s[1]))
			continue;
		for (n = 0; isdigit((unsigned char)s[1]) && n < 100000; s++)
			n = n * 10 + (size_t)(s[1] - '0');
		if (n > max)
			max = n;
	}
	return max;
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

/* Runs q on c, preparing it first on this connection. */
static enum keel_err
query_on(struct keel_db *db, struct pgconn *c, const struct keel_query *q,
    const struct keel_db_params *p, struct keel_rows **out)
{
	const struct prepared	*ps;
	PGresult		*res = NULL;
	const char *const	*params = p != NULL ? p->v : NULL;
	size_t			 n = p != NULL ? p->n : 0, want;
	enum keel_err		 er;

	if ((er = conn_ensure(db, c, db->cfg->db_connect_timeout)) != KEEL_OK)
		return er;
	ps = prepared_on(c, q->name);
	want = ps != NULL ? ps->nparams : placeholders(q->sql);
	if ((er = params_check(db, q, want, n)) != KEEL_OK)
		return er;
	/* Past MAX_PREPARED names a statement runs unprepared, still safe. */
	if (ps == NULL && c->nprepared == MAX_PREPARED) {
		res = PQexecParams(c->conn, q->sql, (int)n, NULL, params, NULL,
		    NULL, 0);
		goto result;
	}
	if (ps == NULL) {
		/* The server infers the parameters' types. */
		res = PQprepare(c->conn, q->name, q->sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			er = result_err(db, c, res, q->name);
			goto out;
		}
		PQclear(res);
		res = NULL;
		c->prepared[c->nprepared].name = q->name;
		c->prepared[c->nprepared++].nparams = n;
	}
	res = PQexecPrepared(c->conn, q->name, (int)n, params, NULL, NULL, 0);
result:
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK:
		if (out != NULL)
			*out = rows_copy(res);
		if (c == &db->primary && changed_rows(res))
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

enum keel_err
keel_db_query(struct keel_db *db, const struct keel_query *q,
    const struct keel_db_params *params, struct keel_rows **out)
{
	struct pgconn	*c;
	enum keel_err	 er;
	double		 t0, ms;
	int		 had;

	if (out != NULL)
		*out = NULL;
	t0 = now_ms();
	c = keel_db_pick(db, q->target);
	had = c->conn != NULL;
	er = query_on(db, c, q, params, out);
	/*
	 * A connection the server closed while it sat idle (a restart) can
	 * look healthy until a statement fails on it, before running.  Out
	 * of a transaction one new connection is worth a retry.
	 */
	if (er == KEEL_EUNAVAIL && had && c->conn == NULL && !db->in_tx) {
		keel_log_warnx("db: %s: connection lost; retrying on a new "
		    "one", q->name);
		er = query_on(db, c, q, params, out);
	}
	/*
	 * A replica that went away mid-statement, or cancelled a read that
	 * conflicted with recovery, costs a retry on the primary, not an
	 * error: reads are safe to repeat.
	 */
	if (c != &db->primary && (er == KEEL_EUNAVAIL ||
	    er == KEEL_ECONFLICT)) {
		if (er == KEEL_EUNAVAIL)
			c->down_until = now_ms() + REPLICA_RETRY_MS;
		keel_log_warnx("db: %s: replica failed (%s); retrying on the "
		    "primary", q->name, keel_strerror(er));
		c = &db->primary;
		er = query_on(db, c, q, params, out);
	}
	ms = now_ms() - t0;
	db->nqueries++;
	db->query_ms += ms;
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

void
keel_db_stats(const struct keel_db *db, unsigned *queries, double *ms)
{
	*queries = db->nqueries;
	*ms = db->query_ms;
}

static enum keel_err
exec_simple(struct keel_db *db, const char *sql)
{
	PGresult	*res;
	enum keel_err	 er = KEEL_OK;

	res = PQexec(db->primary.conn, sql);
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
	    db->cfg->db_connect_timeout)) != KEEL_OK)
		return er;
	if ((er = exec_simple(db, "BEGIN")) == KEEL_OK)
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
 * Runs sql on c within timeout_ms using the asynchronous API, cancelling
 * it when time runs out, so a hung server can't hang /health.  The first
 * column of the first row goes to *val when val != NULL.
 */
static enum keel_err
exec_bounded(struct keel_db *db, struct pgconn *c, const char *sql,
    int timeout_ms, double *val)
{
	PGresult	*res, *last = NULL;
	PGcancel	*cancel;
	struct pollfd	 pfd;
	double		 deadline;
	char		 buf[128];
	int		 left;
	enum keel_err	 er = KEEL_OK;

	if (!PQsendQuery(c->conn, sql)) {
		set_err(db, PQerrorMessage(c->conn));
		conn_drop(c);
		return KEEL_EUNAVAIL;
	}
	deadline = now_ms() + timeout_ms;
	pfd.fd = PQsocket(c->conn);
	pfd.events = POLLIN;
	while (PQisBusy(c->conn)) {
		left = (int)(deadline - now_ms());
		if (left <= 0 || poll(&pfd, 1, left) == 0) {
			if ((cancel = PQgetCancel(c->conn)) != NULL) {
				(void)PQcancel(cancel, buf, sizeof(buf));
				PQfreeCancel(cancel);
			}
			set_err(db, "timed out");
			conn_drop(c);
			return KEEL_ETIMEOUT;
		}
		if (!PQconsumeInput(c->conn)) {
			set_err(db, PQerrorMessage(c->conn));
			conn_drop(c);
			return KEEL_EUNAVAIL;
		}
	}
	while ((res = PQgetResult(c->conn)) != NULL) {
		PQclear(last);
		last = res;
	}
	if (PQresultStatus(last) != PGRES_TUPLES_OK)
		er = result_err(db, c, last, "ping");
	else if (val != NULL && PQntuples(last) > 0 && !PQgetisnull(last, 0, 0))
		*val = strtod(PQgetvalue(last, 0, 0), NULL);
	PQclear(last);
	return er;
}

/*
 * Connects c if needed and runs sql bounded by timeout_ms (see
 * exec_bounded), once more on a new connection when the old one turns
 * out to have been closed by the server while idle (a restart).
 */
static enum keel_err
probe(struct keel_db *db, struct pgconn *c, int connect_s, const char *sql,
    int timeout_ms, double *val)
{
	enum keel_err	 er;
	int		 tries, had;

	for (tries = 0; tries < 2; tries++) {
		had = c->conn != NULL;
		if ((er = conn_ensure(db, c, connect_s)) != KEEL_OK)
			return er;
		er = exec_bounded(db, c, sql, timeout_ms, val);
		if (er != KEEL_EUNAVAIL || !had || c->conn != NULL)
			break;
	}
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
	int	 secs;

	if (now < c->down_until)
		return 0;
	secs = db->cfg->db_connect_timeout;
	if (conn_ensure(db, c, secs) != KEEL_OK) {
		keel_log_warnx("db: replica unreachable, reads go to the "
		    "primary for %d s: %s", REPLICA_RETRY_MS / 1000,
		    db->errstr);
		c->down_until = now + REPLICA_RETRY_MS;
		return 0;
	}
	if (db->cfg->db_replica_max_lag > 0 &&
	    now - c->lag_checked >= LAG_CHECK_MS) {
		c->lag_checked = now;
		if (probe(db, c, secs, LAG_SQL, LAG_QUERY_MS, &lag) !=
		    KEEL_OK) {
			c->down_until = now + REPLICA_RETRY_MS;
			return 0;
		}
		if (lag > db->cfg->db_replica_max_lag && !c->lagging)
			keel_log_warnx("db: replica lags %.0f ms (bound %d); "
			    "reads go to the primary", lag,
			    db->cfg->db_replica_max_lag);
		c->lagging = lag > db->cfg->db_replica_max_lag;
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
	int		 secs;

	if (lag_ms != NULL)
		*lag_ms = -1;
	if (replica >= db->nreplicas)
		return KEEL_ENOENT;
	c = replica < 0 ? &db->primary : &db->replicas[replica];
	/* libpq's connect_timeout is whole seconds, and at least 2. */
	secs = (timeout_ms + 999) / 1000;
	return probe(db, c, secs < 2 ? 2 : secs, replica < 0 ? "SELECT 1" :
	    LAG_SQL, timeout_ms, replica < 0 ? NULL : lag_ms);
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
