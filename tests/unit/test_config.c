/* SPDX-License-Identifier: ISC */
/*
 * test_config.c -- unit tests for config.c: typed values parsed once at
 * start (limiter rates, limiter lists, proxies, URLs, server lists,
 * paths), and errors that name the variable.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
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

/* The API limiter's setting from spec: 0 with *l and *w, else -1. */
static int
rate(const char *spec, int *l, int *w)
{
	if (!load_with("KEEL_RATELIMIT_API", spec))
		return -1;
	*l = cfg.rates[KEEL_LIMIT_API].limit;
	*w = cfg.rates[KEEL_LIMIT_API].window;
	keel_config_free(&cfg);
	return 0;
}

/* KEEL_RATELIMIT_FAIL_CLOSED=s: 0 when valid, else -1. */
static int
names(const char *s)
{
	if (!load_with("KEEL_RATELIMIT_FAIL_CLOSED", s))
		return -1;
	keel_config_free(&cfg);
	return 0;
}

static void
test_rate_specs(void **state)
{
	int	 l, w;

	(void)state;
	assert_int_equal(rate("100/900", &l, &w), 0);
	assert_int_equal(l, 100);
	assert_int_equal(w, 900);
	assert_int_equal(rate("off", &l, &w), 0);
	assert_int_equal(l, 0);
	assert_int_equal(rate("100", &l, &w), -1);
	assert_int_equal(rate("/900", &l, &w), -1);
	assert_int_equal(rate("0/900", &l, &w), -1);
	assert_int_equal(rate("5/0", &l, &w), -1);
	assert_int_equal(rate("5/86401", &l, &w), -1);
	assert_int_equal(rate("5/9x", &l, &w), -1);
	assert_int_equal(rate("99999999999/9", &l, &w), -1);
}

static void
test_limiter_names(void **state)
{
	(void)state;
	assert_int_equal(names(""), 0);
	assert_int_equal(names("auth"), 0);
	assert_int_equal(names("auth, write,read,api"), 0);
	assert_int_equal(names("auth,login"), -1);
}

/* An empty item in a list is a typo, refused, not skipped. */
static void
test_lists_refuse_empty_items(void **state)
{
	(void)state;
	assert_int_equal(names("auth,,"), -1);
	assert_int_equal(names("auth,"), -1);
	assert_int_equal(names(",auth"), -1);
	assert_int_equal(names(" , "), -1);
	assert_int_equal(names("  "), 0);
	assert_false(load_with("TRUSTED_PROXIES", ","));
	assert_non_null(strstr(err, "TRUSTED_PROXIES"));
	assert_false(load_with("TRUSTED_PROXIES", "10.0.0.1,,10.0.0.2"));
}

/* Whether REDIS_URL=v loads; on false err names the variable. */
static bool
redis_url(const char *v)
{
	if (!load_with("REDIS_URL", v)) {
		assert_non_null(strstr(err, "REDIS_URL"));
		return false;
	}
	keel_config_free(&cfg);
	return true;
}

/* REDIS_URL is read by redis.c's own parser: what it takes, we take. */
static void
test_redis_url_valid_forms(void **state)
{
	(void)state;
	assert_true(redis_url("redis://127.0.0.1:6379/0"));
	assert_true(redis_url("redis://redis.internal"));
	assert_true(redis_url("redis://h:6379/"));
	assert_true(redis_url("redis://:s3cr@t@h:1/15"));
	assert_true(redis_url("redis://user:pw@h:65535/2147483647"));
	assert_true(redis_url("unix:///run/redis.sock"));
	assert_true(redis_url("unix:///run/redis.sock?db=3"));
	/* One URL without REDIS_CLUSTER: a comma is its password's. */
	assert_true(redis_url("redis://:pa,ss@h:6379/0"));
	assert_false(redis_url("redis://h:6379,redis://h2:6379"));
	assert_non_null(strstr(err, "only with REDIS_CLUSTER=1"));
	/* With passwords such a list parses (the last '@' ends the user
	 * part): still a list of nodes, not one URL. */
	assert_false(redis_url("redis://:pw@h:1/0,redis://:pw@h2:2/0"));
	assert_non_null(strstr(err, "only with REDIS_CLUSTER=1"));
	assert_false(redis_url("unix:///run/a.sock,unix:///run/b.sock"));
}

/* A db past INT_MAX or with junk after it is refused, not read as 0. */
static void
test_redis_url_bad_db(void **state)
{
	(void)state;
	assert_false(redis_url("redis://h:6379/4294967296"));
	assert_false(redis_url("redis://h:6379/2147483648"));
	assert_false(redis_url("redis://h:6379/0abc"));
	assert_false(redis_url("redis://h:6379/-1"));
	assert_false(redis_url("redis://h:6379/0?x=1"));
	assert_false(redis_url("unix:///run/redis.sock?db=x"));
	assert_false(redis_url("unix:///run/redis.sock?dbx=1"));
}

/* A port with junk after it, or out of range, is refused. */
static void
test_redis_url_bad_port(void **state)
{
	(void)state;
	assert_false(redis_url("redis://h:41497x/0"));
	assert_false(redis_url("redis://h:0/0"));
	assert_false(redis_url("redis://h:65536/0"));
	assert_false(redis_url("redis://h:/0"));
	assert_false(redis_url("redis://h:+1/0"));
}

/* No host, another scheme, a relative socket: refused. */
static void
test_redis_url_bad_shape(void **state)
{
	(void)state;
	assert_false(redis_url("redis://"));
	assert_false(redis_url("redis:///0"));
	assert_false(redis_url("redis://:pw@/0"));
	assert_false(redis_url("rediss://h:6379/0"));
	assert_false(redis_url("http://h:6379/0"));
	assert_false(redis_url("unix://"));
	assert_false(redis_url("unix://run/redis.sock"));
	assert_false(redis_url("redis://h h:6379/0"));
	assert_false(redis_url(""));
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

/* Several URLs are a cluster's seeds, so only with REDIS_CLUSTER=1. */
static void
test_redis_url_one_unless_cluster(void **state)
{
	(void)state;
	assert_false(redis_url("redis://a:1/0,redis://b:2/0"));
	assert_non_null(strstr(err, "REDIS_CLUSTER=1"));
	setenv("REDIS_CLUSTER", "1", 1);
	assert_true(redis_url("redis://a:1/0,redis://b:2/0"));
	assert_false(redis_url("redis://a:1/0,redis://b:2x/0"));
	assert_false(redis_url("redis://a:1/0,"));
	/* redis.c splits at every comma and trims nothing: nor do we. */
	assert_false(redis_url(",redis://a:1/0"));
	assert_false(redis_url("redis://a:1/0,,redis://b:2/0"));
	assert_false(redis_url("redis://a:1/0, redis://b:2/0"));
	assert_false(redis_url(""));
	unsetenv("REDIS_CLUSTER");
}

/*
 * MEMCACHED_SERVERS: what libmemcached reads right -- host[:port[:weight]]
 * or a socket path, blanks around an item -- and nothing it misreads.
 */
static void
test_memcached_servers(void **state)
{
	(void)state;
	assert_true(load_with("MEMCACHED_SERVERS", "127.0.0.1:11211"));
	keel_config_free(&cfg);
	assert_true(load_with("MEMCACHED_SERVERS", "mc1:11211,mc-2.lan:1"));
	keel_config_free(&cfg);
	assert_true(load_with("MEMCACHED_SERVERS", ""));
	keel_config_free(&cfg);
	assert_true(load_with("MEMCACHED_SERVERS", "memcached"));
	keel_config_free(&cfg);
	assert_true(load_with("MEMCACHED_SERVERS", "/run/mc.sock"));
	keel_config_free(&cfg);
	assert_true(load_with("MEMCACHED_SERVERS", "a:1:2, b:2:1"));
	keel_config_free(&cfg);
	assert_false(load_with("MEMCACHED_SERVERS", "a:1:x"));
	assert_non_null(strstr(err, "MEMCACHED_SERVERS"));
	assert_false(load_with("MEMCACHED_SERVERS", "a:1,,b:2"));
	assert_false(load_with("MEMCACHED_SERVERS", "a:1,"));
	assert_false(load_with("MEMCACHED_SERVERS", "a:99999"));
	assert_false(load_with("MEMCACHED_SERVERS", "a:11211x"));
	assert_false(load_with("MEMCACHED_SERVERS", "a:1 b:2"));
	assert_false(load_with("MEMCACHED_SERVERS", ":11211"));
}

/* SMTP_URL: smtp:// or smtps://, a host, an optional user and port. */
static void
test_smtp_url(void **state)
{
	(void)state;
	assert_true(load_with("SMTP_URL", "smtp://127.0.0.1:25"));
	keel_config_free(&cfg);
	assert_true(load_with("SMTP_URL", "smtps://u:p@mail.example.com"));
	keel_config_free(&cfg);
	assert_true(load_with("SMTP_URL", "smtp://mail/example.com"));
	keel_config_free(&cfg);
	assert_false(load_with("SMTP_URL", "garbage"));
	assert_non_null(strstr(err, "SMTP_URL"));
	assert_false(load_with("SMTP_URL", "http://x"));
	assert_false(load_with("SMTP_URL", "smtp://"));
	assert_false(load_with("SMTP_URL", "smtp://h:0"));
	assert_false(load_with("SMTP_URL", "smtp://h:25x"));
}

/* KEEL_PUBLIC_URL: http(s)://host[:port][/path], nothing after. */
static void
test_public_url(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_PUBLIC_URL", "https://exams.example.com"));
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_PUBLIC_URL", "http://[::1]:8080/keel"));
	keel_config_free(&cfg);
	assert_false(load_with("KEEL_PUBLIC_URL", "garbage"));
	assert_non_null(strstr(err, "KEEL_PUBLIC_URL"));
	assert_false(load_with("KEEL_PUBLIC_URL", "ftp://h"));
	assert_false(load_with("KEEL_PUBLIC_URL", "https://h/?a=1"));
	assert_false(load_with("KEEL_PUBLIC_URL", "https://h/#top"));
	assert_false(load_with("KEEL_PUBLIC_URL", "https://u@h/"));
	assert_false(load_with("KEEL_PUBLIC_URL", "https://h:99999"));
}

/* DATABASE_URL: required; its port in range; libpq must parse it. */
static void
test_database_url(void **state)
{
	(void)state;
	assert_true(load_with("DATABASE_URL", "postgres://u:p@db:5432/keel"
	    "?sslmode=require"));
	keel_config_free(&cfg);
	assert_true(load_with("DATABASE_URL", "postgresql:///keel?host=/tmp"));
	keel_config_free(&cfg);
	assert_false(load_with("DATABASE_URL", ""));
	assert_non_null(strstr(err, "DATABASE_URL: must be set"));
	assert_false(load_with("DATABASE_URL", "postgresql://h:99999999/k"));
	assert_non_null(strstr(err, "DATABASE_URL"));
	assert_false(load_with("DATABASE_URL", "postgresql://h/k?nosuch=1"));
	assert_false(load_with("DATABASE_URL", "mysql://h/k"));
	/* libpq reads the credentials raw, up to the first '@': a password
	 * may hold '?', '#', a blank or a comma (one URL, not a list). */
	assert_true(load_with("DATABASE_URL", "postgresql://u:p?w#d @db/k"));
	keel_config_free(&cfg);
	assert_true(load_with("DATABASE_URL", "postgresql://u:a,b@db/k"));
	keel_config_free(&cfg);
	assert_false(load_with("DATABASE_URL", "postgresql://u:p@db/k#x"));
	assert_false(load_with("DATABASE_URL", "postgresql://u:p\t@db/k"));
	assert_false(load_with("DATABASE_URL", "postgresql://u:p@d b/k"));
	/* No replica is fine; an empty item of a list is not. */
	assert_true(load_with("DATABASE_READ_REPLICA_URL", ""));
	keel_config_free(&cfg);
	assert_false(load_with("DATABASE_READ_REPLICA_URL",
	    "postgresql://r1/k,"));
	assert_non_null(strstr(err, "DATABASE_READ_REPLICA_URL"));
	/* db.c splits at every comma and trims nothing: nor do we. */
	assert_true(load_with("DATABASE_READ_REPLICA_URL",
	    "postgresql://r1/k,postgres://u:p@r2:5433/k"));
	keel_config_free(&cfg);
	assert_false(load_with("DATABASE_READ_REPLICA_URL",
	    ",postgresql://r1/k"));
	assert_false(load_with("DATABASE_READ_REPLICA_URL",
	    "postgresql://r1/k,,postgresql://r2/k"));
	assert_false(load_with("DATABASE_READ_REPLICA_URL",
	    "postgresql://r1/k, postgresql://r2/k"));
	assert_false(load_with("DATABASE_READ_REPLICA_URL", ","));
}

/* KEEL_LOCK_DIR absolute and set; KEEL_ENV_FILE absolute or "". */
static void
test_paths_absolute(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_LOCK_DIR", "/run/lock"));
	keel_config_free(&cfg);
	assert_false(load_with("KEEL_LOCK_DIR", ""));
	assert_non_null(strstr(err, "KEEL_LOCK_DIR"));
	assert_false(load_with("KEEL_LOCK_DIR", "run/lock"));
	assert_true(load_with("KEEL_ENV_FILE", ""));
	keel_config_free(&cfg);
	assert_true(load_with("KEEL_ENV_FILE", "/etc/keel/env"));
	keel_config_free(&cfg);
	assert_false(load_with("KEEL_ENV_FILE", "env"));
	assert_non_null(strstr(err, "KEEL_ENV_FILE"));
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
	assert_false(load_with("TRUSTED_PROXIES", "10.0.0.0/33"));
}

static void
test_errors_name_the_variable(void **state)
{
	(void)state;
	assert_false(load_with("KEEL_RATELIMIT_WRITE", "fast"));
	assert_non_null(strstr(err, "KEEL_RATELIMIT_WRITE"));
	assert_false(load_with("KEEL_WORKERS", "0"));
	assert_non_null(strstr(err, "KEEL_WORKERS"));
	assert_false(load_with("KEEL_SECRET", "short"));
	assert_non_null(strstr(err, "KEEL_SECRET"));
}

/* REDIS_SENTINELS: empty (REDIS_URL's host is the master) or a list. */
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
	assert_false(load_with("REDIS_SENTINELS", "10.0.0.1:0"));
	assert_non_null(strstr(err, "REDIS_SENTINELS"));
}

/* KEEL_DB_PREPARED: named statements unless turned off, nothing else. */
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
	assert_false(load_with("KEEL_DB_PREPARED", "2"));
	assert_non_null(strstr(err, "KEEL_DB_PREPARED"));
}

/* SENTRY_*_SAMPLE_RATE: a share from 0 to 1, with its defaults. */
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
	assert_false(load_with("SENTRY_SAMPLE_RATE", "1.5"));
	assert_non_null(strstr(err, "SENTRY_SAMPLE_RATE"));
	assert_false(load_with("SENTRY_SAMPLE_RATE", "-0.1"));
	assert_false(load_with("SENTRY_SAMPLE_RATE", "0.5x"));
	assert_false(load_with("SENTRY_SAMPLE_RATE", "nan"));
}

/* KEEL_PM: static by default, dynamic only with bounds that hold. */
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
	assert_false(load_with("KEEL_PM", "ondemand"));
	assert_non_null(strstr(err, "KEEL_PM"));
}

static void
test_pool_bounds_checked_together(void **state)
{
	(void)state;
	setenv("KEEL_PM", "dynamic", 1);
	assert_false(load_with("KEEL_PM_MAX_CHILDREN", "3"));
	assert_non_null(strstr(err, "KEEL_PM_MAX_SPARE (4) is above "
	    "KEEL_PM_MAX_CHILDREN (3)"));
	assert_false(load_with("KEEL_PM_MIN_SPARE", "5"));
	assert_non_null(strstr(err, "KEEL_PM_MIN_SPARE"));
	assert_false(load_with("KEEL_PM_START", "20"));
	assert_non_null(strstr(err, "KEEL_PM_START"));
	assert_false(load_with("KEEL_PM_MIN_SPARE", "0"));
	/* A static pool ignores them. */
	unsetenv("KEEL_PM");
	assert_true(load_with("KEEL_PM_MAX_CHILDREN", "3"));
	keel_config_free(&cfg);
}

/* REDIS_CLUSTER=1: a redis:// URL of database 0 only. */
static void
test_redis_cluster(void **state)
{
	(void)state;
	assert_true(load_with("KEEL_LOG_LEVEL", "info"));
	assert_int_equal(cfg.redis_cluster, 0);
	keel_config_free(&cfg);
	setenv("REDIS_URL", "redis://10.0.0.1:7000/0", 1);
	assert_true(load_with("REDIS_CLUSTER", "1"));
	assert_int_equal(cfg.redis_cluster, 1);
	keel_config_free(&cfg);
	setenv("REDIS_URL", "redis://:pw@10.0.0.1:7000", 1);
	assert_true(load_with("REDIS_CLUSTER", "1"));
	keel_config_free(&cfg);
	/* Several seeds. */
	setenv("REDIS_URL", "redis://10.0.0.1:7000/0,redis://10.0.0.2:7000,"
	    "redis://10.0.0.3:7000/", 1);
	assert_true(load_with("REDIS_CLUSTER", "1"));
	keel_config_free(&cfg);
	setenv("REDIS_URL", "redis://10.0.0.1:7000/3", 1);
	assert_false(load_with("REDIS_CLUSTER", "1"));
	assert_non_null(strstr(err, "database must be 0"));
	setenv("REDIS_URL", "redis://10.0.0.1:7000,redis://10.0.0.2:7000/01",
	    1);
	assert_false(load_with("REDIS_CLUSTER", "1"));
	assert_non_null(strstr(err, "database must be 0"));
	setenv("REDIS_URL", "redis://10.0.0.1:7000,unix:///run/r.sock", 1);
	assert_false(load_with("REDIS_CLUSTER", "1"));
	assert_non_null(strstr(err, "REDIS_CLUSTER=1"));
	setenv("REDIS_URL", "unix:///run/redis.sock", 1);
	assert_false(load_with("REDIS_CLUSTER", "1"));
	assert_non_null(strstr(err, "REDIS_CLUSTER=1"));
	/* Without it, anything REDIS_URL accepts. */
	assert_true(load_with("REDIS_CLUSTER", "0"));
	keel_config_free(&cfg);
	unsetenv("REDIS_URL");
	assert_false(load_with("REDIS_CLUSTER", "2"));
	assert_non_null(strstr(err, "REDIS_CLUSTER"));
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
		cmocka_unit_test(test_rate_specs),
		cmocka_unit_test(test_limiter_names),
		cmocka_unit_test(test_limiter_names_become_bits),
		cmocka_unit_test(test_lists_refuse_empty_items),
		cmocka_unit_test(test_redis_url_valid_forms),
		cmocka_unit_test(test_redis_url_bad_db),
		cmocka_unit_test(test_redis_url_bad_port),
		cmocka_unit_test(test_redis_url_bad_shape),
		cmocka_unit_test(test_redis_addr_fields),
		cmocka_unit_test(test_redis_url_one_unless_cluster),
		cmocka_unit_test(test_memcached_servers),
		cmocka_unit_test(test_smtp_url),
		cmocka_unit_test(test_public_url),
		cmocka_unit_test(test_database_url),
		cmocka_unit_test(test_paths_absolute),
		cmocka_unit_test(test_proxies_parsed_once),
		cmocka_unit_test(test_errors_name_the_variable),
		cmocka_unit_test(test_sample_rates),
		cmocka_unit_test(test_db_prepared),
		cmocka_unit_test(test_redis_sentinels),
		cmocka_unit_test(test_workers_default_per_cpu),
		cmocka_unit_test(test_pool_modes),
		cmocka_unit_test(test_pool_bounds_checked_together),
		cmocka_unit_test(test_redis_cluster),
		cmocka_unit_test(test_env_names_exported_lines),
		cmocka_unit_test(test_env_names_skip_the_rest),
		cmocka_unit_test(test_env_names_keep_env_file_and_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
