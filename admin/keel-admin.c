/* SPDX-License-Identifier: ISC */
/*
 * keel-admin.c -- operator commands: create the first admin, hash a
 * password, make the stores agree with a database restored from a backup.
 *
 *	keel-admin create-admin --email E --username U --name N [--force]
 *	keel-admin hash-password
 *	keel-admin restored [--gap N] [--yes] [--force]	(restore.c)
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
 * restored is the restore runbook's step, in restore.c; this file is the
 * table of commands and the account commands.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "keel/auth.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/text.h"

#include "admin.h"

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

void
admin_usage(void)
{
	fprintf(stderr, "usage: keel-admin create-admin --email EMAIL "
	    "--username NAME --name \"FULL NAME\" [--force]\n"
	    "       keel-admin hash-password\n"
	    "       keel-admin restored [--gap N] [--yes] [--force]\n"
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
 * "--email a --email b" is a typo or a script's bug, and taking the
 * last would make an admin nobody meant.
 */
void
admin_option_once(const char **dst, const char *opt, const char *val)
{
	if (*dst != NULL) {
		fprintf(stderr, "keel-admin: --%s given twice\n", opt);
		admin_usage();
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
			admin_option_once(&email, "email", optarg);
			break;
		case 'u':
			admin_option_once(&username, "username", optarg);
			break;
		case 'n':
			admin_option_once(&name, "name", optarg);
			break;
		case 'f':
			force = 1;
			break;
		default:
			admin_usage();
		}
	}
	if (email == NULL || username == NULL || name == NULL ||
	    optind != argc)
		admin_usage();
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

int
main(int argc, char *argv[])
{
	keel_log_init("keel-admin", KEEL_LOG_WARN);
	/* Every command holds a password or the servers' in memory. */
	keel_config_core_limit();
	if (sodium_init() < 0) {
		fprintf(stderr, "keel-admin: libsodium failed to start\n");
		return 1;
	}
	if (argc < 2)
		admin_usage();
	if (strcmp(argv[1], "hash-password") == 0 && argc == 2)
		return hash_password();
	if (strcmp(argv[1], "create-admin") == 0)
		return create_admin(argc - 1, argv + 1);
	if (strcmp(argv[1], "restored") == 0)
		return admin_restored(argc - 1, argv + 1);
	admin_usage();
}
