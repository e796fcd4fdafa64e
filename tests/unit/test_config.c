/* SPDX-License-Identifier: ISC */
/*
 * test_config.c -- unit tests for config.c: typed values parsed once at
 * start (limiter rates, limiter lists, proxies, URLs, server lists,
 * paths), and errors that name the variable.
 *
 * Whether a value is taken or refused is one table, settings[], a row per
 * case, run by one loop that names every failing row; what a taken value
 * is read into, and the env file's names, have a test each.
 */
#include "config.h"

#include <sys/resource.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/config.h"
#include "keel/url.h"

static struct keel_config	 cfg;
static char			 err[256];

/* Loads the configuration with name=value; true when it is valid. */
static bool
load_with(const char *name, const char *value)
{
	bool	 ok;

	setenv("KEEL_SECRET", "0123456789abcdef0123456789abcdef", 1);
	setenv("DATABASE_URL", "postgresql://keel:pw@127.0.0.1:5432/keel", 1);
	setenv(name, value, 1);
	err[0] = '\0';
	ok = keel_config_load(&cfg, err, sizeof(err));
	unsetenv(name);
	return ok;
}

/*
 * One setting's value and what keel_config_load() makes of it: valid, or
 * refused with a message naming the variable and holding msg too.  with,
 * "NAME=value", is another variable the row needs (REDIS_CLUSTER=1, say);
 * unset after the row like name itself.
 */
struct setting_case {
	const char	*name;
	const char	*value;
	bool		 valid;
	const char	*msg;		/* refused: err holds it too, or NULL */
	const char	*with;		/* "NAME=value" set as well, or NULL */
};

/* The rows that need neither msg nor with. */
#define TAKEN(n, v)	{ (n), (v), true, NULL, NULL }
#define REFUSED(n, v)	{ (n), (v), false, NULL, NULL }

static const struct setting_case settings[] = {
	/* KEEL_RATELIMIT_*: REQUESTS/SECONDS within bounds, or off. */
	TAKEN("KEEL_RATELIMIT_API", "100/900"),
	TAKEN("KEEL_RATELIMIT_API", "off"),
	REFUSED("KEEL_RATELIMIT_API", "100"),
	REFUSED("KEEL_RATELIMIT_API", "/900"),
	REFUSED("KEEL_RATELIMIT_API", "0/900"),
	REFUSED("KEEL_RATELIMIT_API", "5/0"),
	REFUSED("KEEL_RATELIMIT_API", "5/86401"),
	REFUSED("KEEL_RATELIMIT_API", "5/9x"),
	REFUSED("KEEL_RATELIMIT_API", "99999999999/9"),
	REFUSED("KEEL_RATELIMIT_WRITE", "fast"),

	/* Limiter names; an empty item in a list is a typo, refused, not
	 * skipped, but a list of blanks is none. */
	TAKEN("KEEL_RATELIMIT_FAIL_CLOSED", ""),
	TAKEN("KEEL_RATELIMIT_FAIL_CLOSED", "auth"),
	TAKEN("KEEL_RATELIMIT_FAIL_CLOSED", "auth, write,read,api"),
	TAKEN("KEEL_RATELIMIT_FAIL_CLOSED", "read, auth"),
	REFUSED("KEEL_RATELIMIT_FAIL_CLOSED", "auth,login"),
	REFUSED("KEEL_RATELIMIT_FAIL_CLOSED", "auth,,"),
	REFUSED("KEEL_RATELIMIT_FAIL_CLOSED", "auth,"),
	REFUSED("KEEL_RATELIMIT_FAIL_CLOSED", ",auth"),
	REFUSED("KEEL_RATELIMIT_FAIL_CLOSED", " , "),
	TAKEN("KEEL_RATELIMIT_FAIL_CLOSED", "  "),
	TAKEN("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
	REFUSED("TRUSTED_PROXIES", ","),
	REFUSED("TRUSTED_PROXIES", "10.0.0.1,,10.0.0.2"),
	REFUSED("TRUSTED_PROXIES", "10.0.0.0/33"),

	/* REDIS_URL is read by redis.c's own parser: what it takes, we take. */
	TAKEN("REDIS_URL", "redis://127.0.0.1:6379/0"),
	TAKEN("REDIS_URL", "redis://redis.internal"),
	TAKEN("REDIS_URL", "redis://h:6379/"),
	TAKEN("REDIS_URL", "redis://:s3cr@t@h:1/15"),
	TAKEN("REDIS_URL", "redis://user:pw@h:65535/2147483647"),
	TAKEN("REDIS_URL", "unix:///run/redis.sock"),
	TAKEN("REDIS_URL", "unix:///run/redis.sock?db=3"),
	/* One URL without REDIS_CLUSTER: a comma is its password's. */
	TAKEN("REDIS_URL", "redis://:pa,ss@h:6379/0"),
	{ "REDIS_URL", "redis://h:6379,redis://h2:6379",
	    false, "only with REDIS_CLUSTER=1", NULL },
	/* With passwords such a list parses (the last '@' ends the user
	 * part): still a list of nodes, not one URL. */
	{ "REDIS_URL", "redis://:pw@h:1/0,redis://:pw@h2:2/0",
	    false, "only with REDIS_CLUSTER=1", NULL },
	REFUSED("REDIS_URL", "unix:///run/a.sock,unix:///run/b.sock"),
	/* A db past INT_MAX or with junk after it is refused, not read as
	 * 0. */
	REFUSED("REDIS_URL", "redis://h:6379/4294967296"),
	REFUSED("REDIS_URL", "redis://h:6379/2147483648"),
	REFUSED("REDIS_URL", "redis://h:6379/0abc"),
	REFUSED("REDIS_URL", "redis://h:6379/-1"),
	REFUSED("REDIS_URL", "redis://h:6379/0?x=1"),
	REFUSED("REDIS_URL", "unix:///run/redis.sock?db=x"),
	REFUSED("REDIS_URL", "unix:///run/redis.sock?dbx=1"),
	/* A port with junk after it, or out of range. */
	REFUSED("REDIS_URL", "redis://h:41497x/0"),
	REFUSED("REDIS_URL", "redis://h:0/0"),
	REFUSED("REDIS_URL", "redis://h:65536/0"),
	REFUSED("REDIS_URL", "redis://h:/0"),
	REFUSED("REDIS_URL", "redis://h:+1/0"),
	/* No host, another scheme, a relative socket. */
	REFUSED("REDIS_URL", "redis://"),
	REFUSED("REDIS_URL", "redis:///0"),
	REFUSED("REDIS_URL", "redis://:pw@/0"),
	REFUSED("REDIS_URL", "rediss://h:6379/0"),
	REFUSED("REDIS_URL", "http://h:6379/0"),
	REFUSED("REDIS_URL", "unix://"),
	REFUSED("REDIS_URL", "unix://run/redis.sock"),
	REFUSED("REDIS_URL", "redis://h h:6379/0"),
	REFUSED("REDIS_URL", ""),

	/* Several URLs are a cluster's seeds, so only with REDIS_CLUSTER=1;
	 * redis.c splits them at every comma and trims nothing: nor do we. */
	{ "REDIS_URL", "redis://a:1/0,redis://b:2/0",
	    false, "REDIS_CLUSTER=1", NULL },
	{ "REDIS_URL", "redis://a:1/0,redis://b:2/0",
	    true, NULL, "REDIS_CLUSTER=1" },
	{ "REDIS_URL", "redis://a:1/0,redis://b:2x/0",
	    false, NULL, "REDIS_CLUSTER=1" },
	{ "REDIS_URL", "redis://a:1/0,", false, NULL, "REDIS_CLUSTER=1" },
	{ "REDIS_URL", ",redis://a:1/0", false, NULL, "REDIS_CLUSTER=1" },
	{ "REDIS_URL", "redis://a:1/0,,redis://b:2/0",
	    false, NULL, "REDIS_CLUSTER=1" },
	{ "REDIS_URL", "redis://a:1/0, redis://b:2/0",
	    false, NULL, "REDIS_CLUSTER=1" },
	{ "REDIS_URL", "", false, NULL, "REDIS_CLUSTER=1" },
	/* REDIS_CLUSTER=1: redis:// URLs of database 0 only. */
	{ "REDIS_CLUSTER", "1",
	    true, NULL, "REDIS_URL=redis://10.0.0.1:7000/0" },
	{ "REDIS_CLUSTER", "1",
	    true, NULL, "REDIS_URL=redis://:pw@10.0.0.1:7000" },
	{ "REDIS_CLUSTER", "1",
	    true, NULL, "REDIS_URL=redis://10.0.0.1:7000/0,"
	    "redis://10.0.0.2:7000,redis://10.0.0.3:7000/" },
	{ "REDIS_CLUSTER", "1",
	    false, "database must be 0", "REDIS_URL=redis://10.0.0.1:7000/3" },
	{ "REDIS_CLUSTER", "1",
	    false, "database must be 0",
	    "REDIS_URL=redis://10.0.0.1:7000,redis://10.0.0.2:7000/01" },
	{ "REDIS_CLUSTER", "1",
	    false, "REDIS_CLUSTER=1",
	    "REDIS_URL=redis://10.0.0.1:7000,unix:///run/r.sock" },
	{ "REDIS_CLUSTER", "1",
	    false, "REDIS_CLUSTER=1", "REDIS_URL=unix:///run/redis.sock" },
	/* Without it, anything REDIS_URL accepts. */
	{ "REDIS_CLUSTER", "0",
	    true, NULL, "REDIS_URL=unix:///run/redis.sock" },
	REFUSED("REDIS_CLUSTER", "2"),
	/* REDIS_SENTINELS: empty (REDIS_URL's host is the master) or a
	 * list. */
	TAKEN("REDIS_SENTINELS", "10.0.0.1:26379, s2"),
	REFUSED("REDIS_SENTINELS", "10.0.0.1:0"),

	/* MEMCACHED_SERVERS: what libmemcached reads right --
	 * host[:port[:weight]] or a socket path, blanks around an item --
	 * and nothing it misreads. */
	TAKEN("MEMCACHED_SERVERS", "127.0.0.1:11211"),
	TAKEN("MEMCACHED_SERVERS", "mc1:11211,mc-2.lan:1"),
	TAKEN("MEMCACHED_SERVERS", ""),
	TAKEN("MEMCACHED_SERVERS", "memcached"),
	TAKEN("MEMCACHED_SERVERS", "/run/mc.sock"),
	TAKEN("MEMCACHED_SERVERS", "a:1:2, b:2:1"),
	REFUSED("MEMCACHED_SERVERS", "a:1:x"),
	REFUSED("MEMCACHED_SERVERS", "a:1,,b:2"),
	REFUSED("MEMCACHED_SERVERS", "a:1,"),
	REFUSED("MEMCACHED_SERVERS", "a:99999"),
	REFUSED("MEMCACHED_SERVERS", "a:11211x"),
	REFUSED("MEMCACHED_SERVERS", "a:1 b:2"),
	REFUSED("MEMCACHED_SERVERS", ":11211"),

	/* SMTP_URL: smtp:// or smtps://, a host, an optional user and
	 * port. */
	TAKEN("SMTP_URL", "smtp://127.0.0.1:25"),
	TAKEN("SMTP_URL", "smtps://u:p@mail.example.com"),
	TAKEN("SMTP_URL", "smtp://mail/example.com"),
	REFUSED("SMTP_URL", "garbage"),
	REFUSED("SMTP_URL", "http://x"),
	REFUSED("SMTP_URL", "smtp://"),
	REFUSED("SMTP_URL", "smtp://h:0"),
	REFUSED("SMTP_URL", "smtp://h:25x"),
	/* KEEL_PUBLIC_URL: http(s)://host[:port][/path], nothing after. */
	TAKEN("KEEL_PUBLIC_URL", "https://exams.example.com"),
	TAKEN("KEEL_PUBLIC_URL", "http://[::1]:8080/keel"),
	REFUSED("KEEL_PUBLIC_URL", "garbage"),
	REFUSED("KEEL_PUBLIC_URL", "ftp://h"),
	REFUSED("KEEL_PUBLIC_URL", "https://h/?a=1"),
	REFUSED("KEEL_PUBLIC_URL", "https://h/#top"),
	REFUSED("KEEL_PUBLIC_URL", "https://u@h/"),
	REFUSED("KEEL_PUBLIC_URL", "https://h:99999"),
	/* Its links carry tokens: http:// only to a loopback host (a
	 * development stack), never in clear over a network. */
	TAKEN("KEEL_PUBLIC_URL", "http://127.0.0.1:8080"),
	TAKEN("KEEL_PUBLIC_URL", "http://127.0.0.11:8080/keel"),
	TAKEN("KEEL_PUBLIC_URL", "http://localhost"),
	TAKEN("KEEL_PUBLIC_URL", "http://LocalHost:8080/"),
	TAKEN("KEEL_PUBLIC_URL", "https://10.0.0.5"),
	{ "KEEL_PUBLIC_URL", "http://exams.example.com", false,
	    "loopback", NULL },
	REFUSED("KEEL_PUBLIC_URL", "http://10.0.0.5:8080"),
	REFUSED("KEEL_PUBLIC_URL", "http://128.0.0.1"),
	REFUSED("KEEL_PUBLIC_URL", "http://[::2]:8080"),
	REFUSED("KEEL_PUBLIC_URL", "http://localhost.example.com"),
	REFUSED("KEEL_PUBLIC_URL", "http://127.0.0.1.example.com"),

	/* KEEL_CORS_ORIGINS: origins as browsers send them (cors.c's own
	 * table has the rest); the message names the variable and item. */
	TAKEN("KEEL_CORS_ORIGINS", ""),
	TAKEN("KEEL_CORS_ORIGINS", "*"),
	TAKEN("KEEL_CORS_ORIGINS", "https://exam.example.com, "
	    "http://localhost:5173"),
	{ "KEEL_CORS_ORIGINS", "https://exam.example.com/", false,
	    "KEEL_CORS_ORIGINS: \"https://exam.example.com/\"", NULL },
	{ "KEEL_CORS_ORIGINS", "*,https://exam.example.com", false,
	    "KEEL_CORS_ORIGINS: \"*\" stands alone", NULL },
	REFUSED("KEEL_CORS_ORIGINS", "https://exam.example.com:443"),
	REFUSED("KEEL_CORS_ORIGINS", "exam.example.com"),

	/* DATABASE_URL: required; its port in range; libpq must parse it. */
	TAKEN("DATABASE_URL", "postgres://u:p@db:5432/keel?sslmode=require"),
	TAKEN("DATABASE_URL", "postgresql:///keel?host=/tmp"),
	{ "DATABASE_URL", "", false, "DATABASE_URL: must be set", NULL },
	REFUSED("DATABASE_URL", "postgresql://h:99999999/k"),
	REFUSED("DATABASE_URL", "postgresql://h/k?nosuch=1"),
	REFUSED("DATABASE_URL", "mysql://h/k"),
	/* libpq reads the credentials raw, up to the first '@': a password
	 * may hold '?', '#', a blank or a comma (one URL, not a list). */
	TAKEN("DATABASE_URL", "postgresql://u:p?w#d @db/k"),
	TAKEN("DATABASE_URL", "postgresql://u:a,b@db/k"),
	REFUSED("DATABASE_URL", "postgresql://u:p@db/k#x"),
	REFUSED("DATABASE_URL", "postgresql://u:p\t@db/k"),
	REFUSED("DATABASE_URL", "postgresql://u:p@d b/k"),
	/* No replica is fine; an empty item of a list is not.  db.c splits
	 * at every comma and trims nothing: nor do we. */
	TAKEN("DATABASE_READ_REPLICA_URL", ""),
	REFUSED("DATABASE_READ_REPLICA_URL", "postgresql://r1/k,"),
	TAKEN("DATABASE_READ_REPLICA_URL",
	    "postgresql://r1/k,postgres://u:p@r2:5433/k"),
	REFUSED("DATABASE_READ_REPLICA_URL", ",postgresql://r1/k"),
	REFUSED("DATABASE_READ_REPLICA_URL",
	    "postgresql://r1/k,,postgresql://r2/k"),
	REFUSED("DATABASE_READ_REPLICA_URL",
	    "postgresql://r1/k, postgresql://r2/k"),
	REFUSED("DATABASE_READ_REPLICA_URL", ","),

	/* KEEL_LOCK_DIR absolute and set; KEEL_ENV_FILE absolute or "". */
	TAKEN("KEEL_LOCK_DIR", "/run/lock"),
	REFUSED("KEEL_LOCK_DIR", ""),
	REFUSED("KEEL_LOCK_DIR", "run/lock"),
	TAKEN("KEEL_ENV_FILE", ""),
	TAKEN("KEEL_ENV_FILE", "/etc/keel/env"),
	REFUSED("KEEL_ENV_FILE", "env"),

	/* Integers within bounds, a secret long enough. */
	TAKEN("KEEL_WORKERS", "3"),
	REFUSED("KEEL_WORKERS", "0"),
	REFUSED("KEEL_SECRET", "short"),
	/* KEEL_SECRET_FALLBACK: none, or a secret as long, not the same. */
	TAKEN("KEEL_SECRET_FALLBACK", ""),
	TAKEN("KEEL_SECRET_FALLBACK", "fedcba9876543210fedcba9876543210"),
	{ "KEEL_SECRET_FALLBACK", "short", false, "at least 32", NULL },
	{ "KEEL_SECRET_FALLBACK", "0123456789abcdef0123456789abcdef", false,
	    "must differ from KEEL_SECRET", NULL },
	TAKEN("KEEL_DB_PREPARED", "0"),
	REFUSED("KEEL_DB_PREPARED", "2"),
	/* KEEL_CORE_DUMPS: on or off, 1 or 0; nothing that might be
	 * either is guessed at. */
	TAKEN("KEEL_CORE_DUMPS", "on"),
	TAKEN("KEEL_CORE_DUMPS", "off"),
	TAKEN("KEEL_CORE_DUMPS", "1"),
	TAKEN("KEEL_CORE_DUMPS", "0"),
	{ "KEEL_CORE_DUMPS", "yes", false, "expected on, off, 1 or 0", NULL },
	REFUSED("KEEL_CORE_DUMPS", ""),
	REFUSED("KEEL_CORE_DUMPS", "ON"),
	REFUSED("KEEL_CORE_DUMPS", "2"),
	/* KEEL_IDEM_MAX: at least one answer per client is kept. */
	TAKEN("KEEL_IDEM_MAX", "1"),
	REFUSED("KEEL_IDEM_MAX", "0"),
	REFUSED("KEEL_IDEM_MAX", "1000001"),
	/* SENTRY_*_SAMPLE_RATE: a share from 0 to 1. */
	TAKEN("SENTRY_TRACES_SAMPLE_RATE", "0.25"),
	TAKEN("SENTRY_SAMPLE_RATE", "0"),
	REFUSED("SENTRY_SAMPLE_RATE", "1.5"),
	REFUSED("SENTRY_SAMPLE_RATE", "-0.1"),
	REFUSED("SENTRY_SAMPLE_RATE", "0.5x"),
	REFUSED("SENTRY_SAMPLE_RATE", "nan"),

	/* KEEL_PM: static or dynamic; a dynamic pool's bounds are checked
	 * together, a static pool ignores them. */
	TAKEN("KEEL_PM", "dynamic"),
	REFUSED("KEEL_PM", "ondemand"),
	{ "KEEL_PM_MAX_CHILDREN", "3",
	    false, "KEEL_PM_MAX_SPARE (4) is above KEEL_PM_MAX_CHILDREN (3)",
	    "KEEL_PM=dynamic" },
	{ "KEEL_PM_MIN_SPARE", "5", false, NULL, "KEEL_PM=dynamic" },
	{ "KEEL_PM_START", "20", false, NULL, "KEEL_PM=dynamic" },
	{ "KEEL_PM_MIN_SPARE", "0", false, NULL, "KEEL_PM=dynamic" },
	TAKEN("KEEL_PM_MAX_CHILDREN", "3"),
};

/*
 * Runs row i; false, with the row printed and why, when it doesn't hold.
 * Every variable it sets is unset again before it judges, so a failing
 * row leaves nothing behind for the next.
 */
static bool
setting_case_holds(size_t i)
{
	const struct setting_case	*c = &settings[i];
	char				 with[64];
	const char			*eq = NULL, *why = NULL;
	bool				 ok;

	if (c->with != NULL) {
		eq = strchr(c->with, '=');
		assert_non_null(eq);
		assert_true((size_t)(eq - c->with) < sizeof(with));
		snprintf(with, sizeof(with), "%.*s", (int)(eq - c->with),
		    c->with);
		setenv(with, eq + 1, 1);
	}
	ok = load_with(c->name, c->value);
	if (c->with != NULL)
		unsetenv(with);
	if (ok)
		keel_config_free(&cfg);
	if (ok != c->valid)
		why = ok ? "taken, but must be refused" :
		    "refused, but must be taken";
	else if (!ok && strstr(err, c->name) == NULL)
		why = "the message doesn't name the variable";
	else if (!ok && c->msg != NULL && strstr(err, c->msg) == NULL)
		why = "the message lacks the expected words";
	if (why == NULL)
		return true;
	print_error("settings[%zu]: %s=\"%s\"%s%s: %s%s%s%s\n", i, c->name,
	    c->value, c->with != NULL ? " with " : "",
	    c->with != NULL ? c->with : "", why, ok ? "" : " (",
	    ok ? "" : err, ok ? "" : ")");
	return false;
}

/* Every row of settings[], each failing one named. */
static void
test_settings_valid_or_refused(void **state)
{
	size_t	 i, failed = 0;

	(void)state;
	for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (!setting_case_holds(i))
			failed++;
	assert_int_equal(failed, 0);
}

/* The API limiter's setting from spec, read into its struct keel_rate. */
static void
test_rate_values(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_RATELIMIT_API", "100/900"));
	assert_int_equal(cfg.rates[KEEL_LIMIT_API].limit, 100);
	assert_int_equal(cfg.rates[KEEL_LIMIT_API].window, 900);
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_RATELIMIT_API", "off"));
	assert_int_equal(cfg.rates[KEEL_LIMIT_API].limit, 0);
	keel_config_free(&cfg);
}

static void
test_limiter_names_become_bits(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_RATELIMIT_FAIL_CLOSED", "read, auth"));
	assert_int_equal(cfg.rate_fail_closed, (1u << KEEL_LIMIT_AUTH) |
	    (1u << KEEL_LIMIT_READ));
	keel_config_free(&cfg);
}

static void
test_proxies_parsed_once(void **state)
{
	(void)state;
	assert_true(load_with("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"));
	assert_int_equal(cfg.client.ntrusted, 2);
	assert_int_equal(cfg.client.trusted[1].bits, 96 + 8);
	assert_int_equal(cfg.client.v6_prefix, 56);
	keel_config_free(&cfg);
	assert_null(cfg.client.trusted);
}

/* What redis.c's parser reads out of a URL config.c let through. */
static void
test_redis_addr_fields(void **state)
{
	struct keel_url_redis	 a;

	(void)state;
	assert_true(keel_url_redis_parse("redis://u:p@w@h:7000/12", &a));
	assert_string_equal(a.host, "h");
	assert_int_equal(a.port, 7000);
	assert_int_equal(a.db, 12);
	assert_string_equal(a.password, "p@w");
	assert_null(a.path);
	keel_url_redis_free(&a);
	assert_true(keel_url_redis_parse("redis://h", &a));
	assert_int_equal(a.port, 6379);
	assert_int_equal(a.db, 0);
	assert_null(a.password);
	keel_url_redis_free(&a);
	assert_true(keel_url_redis_parse("unix:///s.sock?db=2", &a));
	assert_string_equal(a.path, "/s.sock");
	assert_int_equal(a.db, 2);
	keel_url_redis_free(&a);
	/* Refused: a holds nothing. */
	assert_false(keel_url_redis_parse("redis://:pw@h:1/x", &a));
	assert_null(a.host);
	assert_null(a.password);
}

/* REDIS_SENTINELS: empty by default, kept as given when set. */
static void
test_redis_sentinels(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_LOG_LEVEL", "info"));
	assert_string_equal(cfg.redis_sentinels, "");
	assert_string_equal(cfg.redis_sentinel_master, "mymaster");
	keel_config_free(&cfg);
	assert_true(load_with("REDIS_SENTINELS", "10.0.0.1:26379, s2"));
	assert_string_equal(cfg.redis_sentinels, "10.0.0.1:26379, s2");
	keel_config_free(&cfg);
}

/* KEEL_DB_PREPARED: named statements unless turned off. */
static void
test_db_prepared(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_LOG_LEVEL", "info"));
	assert_int_equal(cfg.db_prepared, 1);
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_DB_PREPARED", "0"));
	assert_int_equal(cfg.db_prepared, 0);
	keel_config_free(&cfg);
}

/* KEEL_CORE_DUMPS: off unless set on (or 1). */
static void
test_core_dumps(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_LOG_LEVEL", "info"));
	assert_int_equal(cfg.core_dumps, 0);
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_CORE_DUMPS", "on"));
	assert_int_equal(cfg.core_dumps, 1);
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_CORE_DUMPS", "1"));
	assert_int_equal(cfg.core_dumps, 1);
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_CORE_DUMPS", "off"));
	assert_int_equal(cfg.core_dumps, 0);
	keel_config_free(&cfg);
}

/* This process's core size limit: soft, hard (bytes). */
static struct rlimit
core_limit(void)
{
	struct rlimit	 rl;

	assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
	return rl;
}

/*
 * A soft core limit to start from: more than 1 byte, less than the page
 * the smallest core file takes, so that a crash in the test writes none.
 */
#define CORE_LIMIT_KEPT	2048

/*
 * keel_config_core_limit(): the soft limit lowered to 1 byte by default,
 * kept with KEEL_CORE_DUMPS=on; the hard limit kept either way.
 */
static void
test_core_limit(void **state)
{
	struct rlimit	 was = core_limit(), rl = was;

	(void)state;
	if (was.rlim_max != RLIM_INFINITY && was.rlim_max < CORE_LIMIT_KEPT)
		skip();		/* no room for a limit to keep */
	rl.rlim_cur = CORE_LIMIT_KEPT;
	assert_int_equal(setrlimit(RLIMIT_CORE, &rl), 0);
	setenv("KEEL_CORE_DUMPS", "on", 1);
	keel_config_core_limit();
	assert_true(core_limit().rlim_cur == CORE_LIMIT_KEPT);
	setenv("KEEL_CORE_DUMPS", "0", 1);
	keel_config_core_limit();
	assert_true(core_limit().rlim_cur == 1);
	assert_true(core_limit().rlim_max == was.rlim_max);
	/* Unset is off; a limit already under 1 byte stays. */
	unsetenv("KEEL_CORE_DUMPS");
	assert_int_equal(setrlimit(RLIMIT_CORE, &rl), 0);
	keel_config_core_limit();
	assert_true(core_limit().rlim_cur == 1);
	rl.rlim_cur = 0;
	assert_int_equal(setrlimit(RLIMIT_CORE, &rl), 0);
	keel_config_core_limit();
	assert_true(core_limit().rlim_cur == 0);
	assert_int_equal(setrlimit(RLIMIT_CORE, &was), 0);
}

/* SENTRY_*_SAMPLE_RATE: the share read, and the other's default. */
static void
test_sample_rates(void **state)
{
	(void)state;
	assert_true(load_with("SENTRY_TRACES_SAMPLE_RATE", "0.25"));
	assert_true(cfg.sentry_traces_sample_rate == 0.25);
	assert_true(cfg.sentry_sample_rate == 1.0);
	keel_config_free(&cfg);
	assert_true(load_with("SENTRY_SAMPLE_RATE", "0"));
	assert_true(cfg.sentry_sample_rate == 0.0);
	assert_true(cfg.sentry_traces_sample_rate == 0.1);
	keel_config_free(&cfg);
}

/* KEEL_PM: static by default; dynamic with its defaults in order. */
static void
test_pool_modes(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_WORKERS", "3"));
	assert_int_equal(cfg.pm_dynamic, 0);
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_PM", "dynamic"));
	assert_int_equal(cfg.pm_dynamic, 1);
	assert_true(cfg.pm_min_spare <= cfg.pm_max_spare);
	assert_true(cfg.pm_max_spare <= cfg.pm_max_children);
	keel_config_free(&cfg);
}

/* REDIS_CLUSTER: off by default, on when set. */
static void
test_redis_cluster(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_LOG_LEVEL", "info"));
	assert_int_equal(cfg.redis_cluster, 0);
	keel_config_free(&cfg);
	setenv("REDIS_URL", "redis://10.0.0.1:7000/0", 1);
	assert_true(load_with("REDIS_CLUSTER", "1"));
	unsetenv("REDIS_URL");
	assert_int_equal(cfg.redis_cluster, 1);
	keel_config_free(&cfg);
}

/* KEEL_WORKERS unset: four workers per CPU (the pool waits on I/O). */
static void
test_workers_default_per_cpu(void **state)
{
	long	 cpus = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	unsetenv("KEEL_WORKERS");
	assert_true(load_with("KEEL_LOG_LEVEL", "info"));
	assert_int_equal(cfg.workers, KEEL_WORKERS_PER_CPU *
	    (cpus < 1 ? 1 : cpus > 64 ? 64 : cpus));
	keel_config_free(&cfg);
}

/* env_names: one name per "export NAME=" line, in order. */
static void
test_env_names_exported_lines(void **state)
{
	char	*n;

	(void)state;
	n = keel_config_env_names("export KEEL_WORKERS=2\n"
	    "  export\tREDIS_URL='redis://x'\nexport A_1=\n");
	assert_string_equal(n, "KEEL_WORKERS REDIS_URL A_1");
	free(n);
}

/* Comments, plain assignments and other shell are not exported names. */
static void
test_env_names_skip_the_rest(void **state)
{
	char	*n;

	(void)state;
	n = keel_config_env_names("# export NOPE=1\nPLAIN=1\n"
	    "exporter X=1\nexport 9BAD=1\nexport NOEQ\nexport\n"
	    "echo hi\nexport OK=1");
	assert_string_equal(n, "OK");
	free(n);
}

/* The file's own name and PATH are never unset before sourcing it. */
static void
test_env_names_keep_env_file_and_path(void **state)
{
	char	*n;

	(void)state;
	n = keel_config_env_names("export KEEL_ENV_FILE=/etc/keel/env\n"
	    "export PATH=/usr/bin\nexport KEEL_ENV_FILE_X=1\n");
	assert_string_equal(n, "KEEL_ENV_FILE_X");
	free(n);
	n = keel_config_env_names("");
	assert_string_equal(n, "");
	free(n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settings_valid_or_refused),
		cmocka_unit_test(test_rate_values),
		cmocka_unit_test(test_limiter_names_become_bits),
		cmocka_unit_test(test_proxies_parsed_once),
		cmocka_unit_test(test_redis_addr_fields),
		cmocka_unit_test(test_redis_sentinels),
		cmocka_unit_test(test_db_prepared),
		cmocka_unit_test(test_core_dumps),
		cmocka_unit_test(test_core_limit),
		cmocka_unit_test(test_sample_rates),
		cmocka_unit_test(test_workers_default_per_cpu),
		cmocka_unit_test(test_pool_modes),
		cmocka_unit_test(test_redis_cluster),
		cmocka_unit_test(test_env_names_exported_lines),
		cmocka_unit_test(test_env_names_skip_the_rest),
		cmocka_unit_test(test_env_names_keep_env_file_and_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
