/* SPDX-License-Identifier: ISC */
/*
 * keel-admin.c -- operator commands: create the first admin, hash a
 * password, make the stores agree with a database restored from a backup.
 *
 *	keel-admin create-admin --email E --username U --name N [--force]
 *	keel-admin hash-password
 *	keel-admin restored [--gap N]
 *
 * Passwords are read from standard input (prompted for twice, without
 * echo, on a terminal), never from the command line, where ps and shell
 * history would show them.  create-admin refuses when an active admin
 * exists already, unless --force: after the first, admins invite admins
 * through POST /api/users.
 *
 * What it stores passes the checks the users API makes: the same field
 * rows, through the same lib check, so an account made here is one the
 * API could have made.  A password is the whole line, or refused: a NUL
 * or a carriage return inside it is never where it silently ends.  As
 * the API does, it ends any session Redis holds for the new id before it
 * commits, and creates nothing without Redis (users.c).
 *
 * restored is the restore runbook's step (README, "Restoring PostgreSQL
 * from a backup"): a database put back to an earlier point would hand
 * out again the ids the lost writes used, while Redis and memcached
 * still hold what named them.  It advances every sequence of keel's
 * schema by a gap (one statement), deletes keel's Redis keys that name
 * database rows, by prefix (SCAN and UNLINK, never FLUSHALL: the Redis
 * may be shared), and bumps every cache generation memcached holds.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "keel/auth.h"
#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/text.h"

static const struct keel_query q_admin_exists = { .name = "admin_exists",
	.sql = "SELECT EXISTS (SELECT FROM users WHERE role = 'admin' "
	"AND is_active)",
	.target = KEEL_DB_PRIMARY };

static const struct keel_query q_admin_insert = { .name = "admin_insert",
	.sql = "INSERT INTO users (email, username, name, role, password_hash) "
	"VALUES (lower($1), $2, $3, 'admin', $4) RETURNING id",
	.target = KEEL_DB_PRIMARY };

/*
 * The users API's rows for these fields (auth.h), checked with
 * keel_field_check_text(): what POST and PATCH /api/users answer 422 to,
 * create-admin refuses.
 */
enum admin_field { ADMIN_EMAIL, ADMIN_USERNAME, ADMIN_NAME, ADMIN__MAX };

static const struct keel_field admin_fields[ADMIN__MAX] = {
	[ADMIN_EMAIL] = KEEL_AUTH_FIELD_EMAIL,
	[ADMIN_USERNAME] = KEEL_AUTH_FIELD_USERNAME,
	[ADMIN_NAME] = KEEL_AUTH_FIELD_NAME,
};

/* How a line of standard input ended; indexes line_why. */
enum line { LINE_OK, LINE_EOF, LINE_NUL, LINE_CR, LINE_LONG, LINE__MAX };

#define STR(x)	XSTR(x)
#define XSTR(x)	#x

static const char *const line_why[LINE__MAX] = {
	[LINE_OK] = "",
	[LINE_EOF] = "no password on standard input",
	[LINE_NUL] = "the password holds a NUL byte (refused, not cut there)",
	[LINE_CR] = "the password holds a carriage return before its end "
	    "(refused, not cut there)",
	[LINE_LONG] = "the password must be at most "
	    STR(KEEL_AUTH_PASSWORD_MAX) " bytes",
};

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: keel-admin create-admin --email EMAIL "
	    "--username NAME --name \"FULL NAME\" [--force]\n"
	    "       keel-admin hash-password\n"
	    "       keel-admin restored [--gap N]\n"
	    "The password is read from standard input (prompted for on a "
	    "terminal).\n");
	exit(2);
}

/*
 * Reads one line into buf (size n > 0, NUL-terminated) without its end,
 * "\n" or "\r\n" (or EOF).  LINE_EOF when there was no line at all.  A
 * NUL, a carriage return before the end, or more than n - 1 bytes is
 * LINE_NUL, LINE_CR or LINE_LONG, never a line cut there: the bytes are
 * read to the line's end all the same, so a terminal is left clean.
 */
static enum line
read_line(const char *prompt, char *buf, size_t n)
{
	struct termios	 old, quiet;
	int		 tty = isatty(STDIN_FILENO), restore = 0;
	int		 c, cr = 0, any = 0;
	size_t		 len = 0;
	enum line	 why = LINE_OK;

	if (tty) {
		fputs(prompt, stderr);
		if (tcgetattr(STDIN_FILENO, &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) ==
			    0;
		}
	}
	while ((c = getc(stdin)) != EOF && c != '\n') {
		any = 1;
		/* A CR is held back: only "\r\n" or "\r" EOF may end a line. */
		if (cr && why == LINE_OK)
			why = LINE_CR;
		if ((cr = c == '\r'))
			continue;
		if (c == '\0') {
			if (why == LINE_OK)
				why = LINE_NUL;
		} else if (len + 1 < n)
			buf[len++] = (char)c;
		else if (why == LINE_OK)
			why = LINE_LONG;
	}
	buf[len] = '\0';
	if (restore) {
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	return !any && c == EOF ? LINE_EOF : why;
}

/* A new password from stdin, checked and (on a terminal) confirmed. */
static int
read_password(char *pw, size_t n)
{
	char		 again[KEEL_AUTH_PASSWORD_MAX + 1];
	const char	*msg;
	enum line	 l;
	int		 ok;

	if ((l = read_line("Password: ", pw, n)) != LINE_OK) {
		fprintf(stderr, "keel-admin: %s\n", line_why[l]);
		return -1;
	}
	if ((msg = keel_auth_password_check(pw)) != NULL) {
		fprintf(stderr, "keel-admin: the password %s\n", msg);
		return -1;
	}
	if (!isatty(STDIN_FILENO))
		return 0;
	if ((l = read_line("Again: ", again, sizeof(again))) != LINE_OK)
		fprintf(stderr, "keel-admin: %s\n", line_why[l]);
	ok = l == LINE_OK && strcmp(pw, again) == 0;
	sodium_memzero(again, sizeof(again));
	if (l == LINE_OK && !ok)
		fprintf(stderr, "keel-admin: the passwords differ\n");
	return ok ? 0 : -1;
}

static int
hash_password(void)
{
	char	 pw[KEEL_AUTH_PASSWORD_MAX + 1], hash[KEEL_AUTH_HASH_MAX];
	int	 rc = 1;

	if (read_password(pw, sizeof(pw)) == 0 &&
	    keel_auth_hash(pw, hash) == KEEL_OK) {
		printf("%s\n", hash);
		rc = 0;
	}
	sodium_memzero(pw, sizeof(pw));
	return rc;
}

/*
 * Sets *dst to val, or stops with the usage when an earlier --opt set
 * it: "--email a --email b" is a typo or a script's bug, and taking the
 * last would make an admin nobody meant.
 */
static void
option_once(const char **dst, const char *opt, const char *val)
{
	if (*dst != NULL) {
		fprintf(stderr, "keel-admin: --%s given twice\n", opt);
		usage();
	}
	*dst = val;
}

static int
create_admin(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "email", required_argument, NULL, 'e' },
		{ "username", required_argument, NULL, 'u' },
		{ "name", required_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct keel_config	 cfg;
	struct keel_db		*db = NULL;
	struct keel_redis	*r = NULL;
	struct keel_rows	*rows = NULL;
	const char		*email = NULL, *username = NULL, *name = NULL;
	struct keel_db_params	 p;
	struct keel_value	 v;
	char			 pw[KEEL_AUTH_PASSWORD_MAX + 1];
	char			 hash[KEEL_AUTH_HASH_MAX], err[256];
	const char		*vals[ADMIN__MAX], *msg;
	int			 c, force = 0, rc = 1, i;
	enum keel_err		 er;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'e':
			option_once(&email, "email", optarg);
			break;
		case 'u':
			option_once(&username, "username", optarg);
			break;
		case 'n':
			option_once(&name, "name", optarg);
			break;
		case 'f':
			force = 1;
			break;
		default:
			usage();
		}
	}
	if (email == NULL || username == NULL || name == NULL ||
	    optind != argc)
		usage();
	/* The API's checks: an admin the mailer can't reach gets no reset,
	 * a name with a newline or an escape breaks every page and email. */
	vals[ADMIN_EMAIL] = email;
	vals[ADMIN_USERNAME] = username;
	vals[ADMIN_NAME] = name;
	for (i = 0; i < ADMIN__MAX; i++)
		if ((msg = keel_field_check_text(&admin_fields[i], vals[i],
		    &v)) != NULL) {
			fprintf(stderr, "keel-admin: --%s: %s\n",
			    admin_fields[i].name, msg);
			return 1;
		}
	if (!keel_config_load(&cfg, err, sizeof(err))) {
		fprintf(stderr, "keel-admin: %s\n", err);
		return 1;
	}
	hash[0] = pw[0] = '\0';
	db = keel_db_open(&cfg);
	if ((er = keel_db_query(db, &q_admin_exists, NULL, &rows)) != KEEL_OK)
		goto fail;
	if (keel_rows_bool(rows, 0, 0) && !force) {
		fprintf(stderr, "keel-admin: an active admin exists; admins "
		    "invite others with POST /api/users (or use --force)\n");
		goto out;
	}
	if (read_password(pw, sizeof(pw)) == -1 ||
	    keel_auth_hash(pw, hash) != KEEL_OK)
		goto out;
	keel_rows_free(rows);
	rows = NULL;
	keel_db_params_init(&p);
	keel_db_param_text(&p, email);
	keel_db_param_text(&p, username);
	keel_db_param_text(&p, name);
	keel_db_param_text(&p, hash);
	if ((er = keel_db_begin(db)) != KEEL_OK ||
	    (er = keel_db_query(db, &q_admin_insert, &p, &rows)) != KEEL_OK)
		goto fail;
	/* A restored database may give the new admin an id someone's
	 * session names: it ends before the commit, or nothing is made. */
	r = keel_redis_open(&cfg);
	if ((er = keel_auth_sessions_end_all(r, keel_rows_int64(rows, 0, 0),
	    NULL)) != KEEL_OK) {
		fprintf(stderr, "keel-admin: Redis: %s (%s); no admin was "
		    "created: a session Redis holds for the new id must end "
		    "first\n", keel_strerror(er), keel_redis_errstr(r));
		goto out;
	}
	if ((er = keel_db_commit(db)) != KEEL_OK)
		goto fail;
	printf("created admin %s (id %lld)\n", username,
	    (long long)keel_rows_int64(rows, 0, 0));
	rc = 0;
	goto out;
fail:
	if (er == KEEL_ECONFLICT)
		fprintf(stderr, "keel-admin: that email or username is taken\n");
	else if (er == KEEL_EINVAL)
		fprintf(stderr, "keel-admin: the email, username or name is not "
		    "valid (usernames: 3-32 letters, digits, '_', '.', '-')\n");
	else
		fprintf(stderr, "keel-admin: %s: %s\n", keel_strerror(er),
		    keel_db_errstr(db));
out:
	sodium_memzero(pw, sizeof(pw));
	sodium_memzero(hash, sizeof(hash));
	keel_rows_free(rows);
	if (db != NULL)
		keel_db_rollback(db);	/* nothing left open on a failure */
	keel_redis_close(r);
	keel_db_close(db);
	keel_config_free(&cfg);
	return rc;
}

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

#define RESTORED_GAP	1000000	/* ids skipped: more than the lost writes
				   can have used */
#define RESTORED_SCAN	"1000"	/* keys per SCAN step */
#define MC_TIMEOUT_S	10	/* a memcached server's answers */

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

/* Advances the sequences (q_restored_seqs) and lists them. */
static int
restored_sequences(struct keel_db *db, long long gap)
{
	struct keel_db_params	 p;
	struct keel_rows	*rows = NULL;
	size_t			 i;
	enum keel_err		 er;

	keel_db_params_init(&p);
	keel_db_param_int(&p, gap);
	if ((er = keel_db_query(db, &q_restored_seqs, &p, &rows)) !=
	    KEEL_OK) {
		fprintf(stderr, "keel-admin: advancing the sequences: %s: "
		    "%s\n", keel_strerror(er), keel_db_errstr(db));
		return -1;
	}
	for (i = 0; i < keel_rows_count(rows); i++)
		printf("sequence %s: %s -> %s\n", keel_rows_value(rows, i, 0),
		    keel_rows_value(rows, i, 1), keel_rows_value(rows, i, 2));
	keel_rows_free(rows);
	return 0;
}

/* UNLINKs the keys of a SCAN step's reply (keys); adds them to *n. */
static enum keel_err
restored_unlink(struct keel_redis *r, const struct keel_rreply *keys,
    long long *n)
{
	struct keel_rreply	*rep = NULL;
	const char		**av;
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

/* Deletes every key under prefix, a SCAN step at a time; *n counts them. */
static enum keel_err
restored_drop(struct keel_redis *r, const char *prefix, long long *n)
{
	struct keel_rreply	*rep = NULL;
	const char		*av[6];
	char			 cursor[32] = "0", match[64];
	enum keel_err		 er;

	*n = 0;
	snprintf(match, sizeof(match), "%s*", prefix);
	do {
		av[0] = "SCAN";
		av[1] = cursor;
		av[2] = "MATCH";
		av[3] = match;
		av[4] = "COUNT";
		av[5] = RESTORED_SCAN;
		if ((er = keel_redis_cmd(r, 6, av, NULL, &rep)) != KEEL_OK)
			return er;
		if (rep->type != KEEL_R_ARRAY || rep->nelem != 2 ||
		    rep->elem[0].type != KEEL_R_STR ||
		    rep->elem[1].type != KEEL_R_ARRAY ||
		    rep->elem[0].len >= sizeof(cursor)) {
			keel_rreply_free(rep);
			return KEEL_EINTERNAL;
		}
		memcpy(cursor, rep->elem[0].str, rep->elem[0].len + 1);
		er = restored_unlink(r, &rep->elem[1], n);
		keel_rreply_free(rep);
		rep = NULL;
	} while (er == KEEL_OK && strcmp(cursor, "0") != 0);
	return er;
}

/* Drops restored_prefixes' keys; refuses a cluster (one node's SCAN). */
static int
restored_redis(const struct keel_config *cfg)
{
	struct keel_redis	*r;
	long long		 n;
	size_t			 i;
	enum keel_err		 er = KEEL_OK;

	r = keel_redis_open(cfg);
	for (i = 0; i < KEEL_NELEM(restored_prefixes) && er == KEEL_OK; i++)
		if ((er = restored_drop(r, restored_prefixes[i], &n)) ==
		    KEEL_OK)
			printf("redis %s*: %lld key(s) deleted\n",
			    restored_prefixes[i], n);
	if (er != KEEL_OK)
		fprintf(stderr, "keel-admin: Redis: %s (%s); run restored "
		    "again once Redis answers\n", keel_strerror(er),
		    keel_redis_errstr(r));
	keel_redis_close(r);
	return er == KEEL_OK ? 0 : -1;
}

/* The decoded value of metadump's key=... in line into ns (size n), the
 * namespace of a generation key "keel:g:<ns>"; false for other keys. */
static bool
mc_gen_ns(const char *line, char *ns, size_t n)
{
	static const char	 gen[] = "keel:g:";
	char			 key[KEEL_CACHE_KEY_MAX];
	unsigned		 c;
	size_t			 i = 0;

	if (strncmp(line, "key=", 4) != 0)
		return false;
	for (line += 4; *line != '\0' && *line != ' '; line++) {
		if (i + 1 >= sizeof(key))
			return false;
		if (*line == '%' && sscanf(line + 1, "%2x", &c) == 1) {
			key[i++] = (char)c;
			line += 2;
		} else
			key[i++] = *line;
	}
	key[i] = '\0';
	if (strncmp(key, gen, sizeof(gen) - 1) != 0 ||
	    strlen(key + sizeof(gen) - 1) >= n)
		return false;
	snprintf(ns, n, "%s", key + sizeof(gen) - 1);
	return true;
}

/* A connected socket to host:port ("[v6]:port" too), or -1. */
static int
mc_connect(const char *server)
{
	struct addrinfo		 hints, *res = NULL, *ai;
	struct timeval		 tv = { MC_TIMEOUT_S, 0 };
	char			 host[256];
	const char		*colon = strrchr(server, ':');
	size_t			 len;
	int			 fd = -1;

	if (colon == NULL || (len = (size_t)(colon - server)) >= sizeof(host))
		return -1;
	if (len >= 2 && server[0] == '[' && server[len - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)len - 2, server + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)len, server);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	for (ai = res; ai != NULL && fd == -1; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype,
		    ai->ai_protocol)) == -1)
			continue;
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/*
 * One memcached server: lists its keys (the LRU crawler's metadump,
 * memcached 1.4.31 and later) and bumps, through lib's cache, every
 * namespace whose generation it holds; *n counts them.  A namespace
 * with no generation has nothing cached under one that could match.
 */
static int
restored_mc_server(struct keel_cache *c, const char *server, long *n)
{
	static const char	 cmd[] = "lru_crawler metadump all\r\n";
	char			 ns[KEEL_CACHE_NS_MAX + 1], *line = NULL;
	size_t			 cap = 0;
	FILE			*f;
	int			 fd, rc = -1;

	if ((fd = mc_connect(server)) == -1) {
		fprintf(stderr, "keel-admin: memcached %s: can't connect\n",
		    server);
		return -1;
	}
	if (write(fd, cmd, sizeof(cmd) - 1) != (ssize_t)(sizeof(cmd) - 1) ||
	    (f = fdopen(fd, "r")) == NULL) {
		fprintf(stderr, "keel-admin: memcached %s: can't ask\n",
		    server);
		close(fd);
		return -1;
	}
	while (getline(&line, &cap, f) != -1) {
		line[strcspn(line, "\r\n")] = '\0';
		if (strcmp(line, "END") == 0) {
			rc = 0;
			break;
		}
		if (!mc_gen_ns(line, ns, sizeof(ns))) {
			if (strncmp(line, "key=", 4) != 0)
				break;	/* BUSY, ERROR: not a listing */
			continue;
		}
		if (keel_cache_invalidate(c, ns) != KEEL_OK)
			break;
		(*n)++;
	}
	if (rc == -1)
		fprintf(stderr, "keel-admin: memcached %s: no key list%s%s "
		    "(restart memcached instead: it only caches)\n", server,
		    line != NULL && *line != '\0' ? ": " : "",
		    line != NULL ? line : "");
	free(line);
	fclose(f);
	return rc;
}

/* Every cache generation of every MEMCACHED_SERVERS server, bumped. */
static int
restored_cache(const struct keel_config *cfg)
{
	struct keel_cache	*c;
	char			*list, *server, *save = NULL;
	long			 n = 0;
	int			 rc = 0;

	c = keel_cache_open(cfg);
	list = keel_strdup(cfg->memcached_servers != NULL ?
	    cfg->memcached_servers : "");
	for (server = strtok_r(list, ",", &save); server != NULL;
	    server = strtok_r(NULL, ",", &save))
		if (restored_mc_server(c, server, &n) == -1)
			rc = -1;
	if (rc == 0)
		printf("memcached: %ld cache namespace(s) invalidated\n", n);
	free(list);
	keel_cache_close(c);
	return rc;
}

/*
 * After PostgreSQL was restored from a backup, before traffic (README):
 * the sequences, Redis, memcached, in that order, each step's result
 * printed.  A cluster is refused before anything changes: lib reaches a
 * key's master, and a SCAN must visit every master.
 */
static int
restored(int argc, char *argv[])
{
	struct keel_config	 cfg;
	struct keel_db		*db;
	int64_t			 gap = RESTORED_GAP;
	char			 err[256];
	int			 rc = 1;

	if (argc == 3 && strcmp(argv[1], "--gap") == 0) {
		if (!keel_parse_int64(argv[2], 1, INT64_MAX / 4, &gap))
			usage();
	} else if (argc != 1)
		usage();
	if (!keel_config_load(&cfg, err, sizeof(err))) {
		fprintf(stderr, "keel-admin: %s\n", err);
		return 1;
	}
	if (cfg.redis_cluster) {
		fprintf(stderr, "keel-admin: restored can't clear a Redis "
		    "Cluster (README, \"Restoring PostgreSQL from a "
		    "backup\"); nothing changed\n");
		keel_config_free(&cfg);
		return 1;
	}
	db = keel_db_open(&cfg);
	if (restored_sequences(db, (long long)gap) == 0 &&
	    restored_redis(&cfg) == 0 && restored_cache(&cfg) == 0) {
		printf("done: now run keel-outbox-relay with "
		    "KEEL_RELAY_RECHECK=1, then keel-leaderboard-rebuild\n");
		rc = 0;
	}
	keel_db_close(db);
	keel_config_free(&cfg);
	return rc;
}

int
main(int argc, char *argv[])
{
	keel_log_init("keel-admin", KEEL_LOG_WARN);
	if (sodium_init() < 0) {
		fprintf(stderr, "keel-admin: libsodium failed to start\n");
		return 1;
	}
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "hash-password") == 0 && argc == 2)
		return hash_password();
	if (strcmp(argv[1], "create-admin") == 0)
		return create_admin(argc - 1, argv + 1);
	if (strcmp(argv[1], "restored") == 0)
		return restored(argc - 1, argv + 1);
	usage();
}
