/* SPDX-License-Identifier: ISC */
/*
 * config.c -- environment configuration: one table row per variable.
 *
 * Each row names the variable, its type, its default, its bounds and where
 * it lands in struct keel_config.  keel_config_load() walks the table once
 * at start; a bad value stops the program with the variable's name.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/json.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"

enum cfg_type {
	CFG_INT,		/* integer within min..max */
	CFG_STR,		/* any string */
	CFG_URL_PG,		/* postgres:// or postgresql:// URL, or "" */
	CFG_URL_REDIS,		/* redis:// URL */
	CFG_SECRET,		/* at least min characters */
	CFG_LEVEL,		/* a log level name */
	CFG_RATE,		/* a limiter: "N/SECONDS" or "off" (limit.c) */
	CFG_LIMITERS,		/* a comma list of limiter names */
	CFG_PROXIES,		/* a comma list of addresses or CIDR blocks */
	CFG_TYPE__MAX
};

struct cfg_row {
	const char	*name;
	enum cfg_type	 type;
	const char	*def;		/* NULL: computed (see cfg_default) */
	int64_t		 min, max;
	size_t		 off;		/* offset in struct keel_config */
	const char	*what;		/* one line for --help and the README */
};

#define OFF(f)	offsetof(struct keel_config, f)

static const struct cfg_row rows[] = {
	{ "KEEL_WORKERS", CFG_INT, NULL, 1, 256, OFF(workers),
	    "worker processes per app (default: number of CPUs)" },
	{ "KEEL_MAX_REQUESTS", CFG_INT, "10000", 0, 1000000000,
	    OFF(max_requests), "requests a worker serves before it is "
	    "replaced (0: never)" },
	{ "KEEL_SHUTDOWN_TIMEOUT", CFG_INT, "35", 1, 3600,
	    OFF(shutdown_timeout), "seconds SIGTERM waits for in-flight "
	    "requests before killing workers" },
	{ "KEEL_BODY_MAX", CFG_INT, "1048576", 1024, 67108864, OFF(body_max),
	    "largest request body in bytes (413 past it)" },
	{ "KEEL_LOG_LEVEL", CFG_LEVEL, "info", 0, 0, OFF(log_level),
	    "debug, info, warn or error" },
	{ "DATABASE_URL", CFG_URL_PG, "", 0, 0, OFF(database_url),
	    "the PostgreSQL primary (postgresql://user:pw@host:port/db)" },
	{ "DATABASE_READ_REPLICA_URL", CFG_URL_PG, "", 0, 0,
	    OFF(replica_urls), "read replicas, comma-separated (optional)" },
	{ "KEEL_DB_CONNECT_TIMEOUT", CFG_INT, "5", 1, 60,
	    OFF(db_connect_timeout), "seconds to connect to PostgreSQL" },
	{ "KEEL_DB_STATEMENT_TIMEOUT", CFG_INT, "30000", 100, 3600000,
	    OFF(db_statement_timeout), "milliseconds a statement may run" },
	{ "REDIS_URL", CFG_URL_REDIS, "redis://127.0.0.1:6379/0", 0, 0,
	    OFF(redis_url), "Redis (redis://[:password@]host:port/db)" },
	{ "MEMCACHED_SERVERS", CFG_STR, "127.0.0.1:11211", 0, 0,
	    OFF(memcached_servers), "memcached servers, host:port, "
	    "comma-separated (consistent hashing)" },
	{ "KEEL_SECRET", CFG_SECRET, "", 32, 0, OFF(secret),
	    "server secret signing cursors (at least 32 characters)" },
	{ "KEEL_ROUTES_FILE", CFG_STR, PKGDATADIR "/routes.json", 0, 0,
	    OFF(routes_file), "the route list the build generates" },
	{ "KEEL_HEALTH_TIMEOUT", CFG_INT, "1000", 50, 10000,
	    OFF(health_timeout), "milliseconds each /health check may take" },
	{ "SMTP_URL", CFG_STR, "smtp://127.0.0.1:25", 0, 0, OFF(smtp_url),
	    "mail server: smtp://[user:pw@]host:port (STARTTLS required when "
	    "a user is given), smtps:// for TLS" },
	{ "MAIL_FROM", CFG_STR, "keel <keel@localhost>", 0, 0, OFF(mail_from),
	    "sender of every email; its domain names the Message-IDs" },
	{ "SMTP_TIMEOUT", CFG_INT, "10", 1, 300, OFF(smtp_timeout),
	    "seconds one message may take to send" },
	{ "KEEL_JOB_VISIBILITY", CFG_INT, "60", 1, 3600, OFF(job_visibility),
	    "seconds a leased job may run before another consumer reclaims "
	    "it (keep above SMTP_TIMEOUT)" },
	{ "KEEL_DRAIN_BUDGET", CFG_INT, "45", 1, 3600, OFF(drain_budget),
	    "seconds a cron drainer works before it exits (under the cron "
	    "period)" },
	{ "KEEL_LOCK_DIR", CFG_STR, "/run/lock", 0, 0, OFF(lock_dir),
	    "directory of the cron programs' lock files" },
	{ "KEEL_DB_RYW_WINDOW", CFG_INT, "5", 0, 3600, OFF(db_ryw_window),
	    "seconds a user's reads go to the primary after they write "
	    "(read-your-writes; 0: off)" },
	{ "KEEL_DB_REPLICA_MAX_LAG", CFG_INT, "2000", 0, 3600000,
	    OFF(db_replica_max_lag), "milliseconds of replay lag past which "
	    "a replica is skipped for the primary" },
	{ "KEEL_DB_SLOW_MS", CFG_INT, "200", 0, 3600000, OFF(db_slow_ms),
	    "milliseconds past which a query is logged by statement name "
	    "(0: every query)" },
	{ "KEEL_SESSION_TTL", CFG_INT, "86400", 60, 31536000,
	    OFF(session_ttl), "seconds a login session lives" },
	{ "KEEL_INVITE_TTL", CFG_INT, "259200", 3600, 2592000,
	    OFF(invite_ttl), "seconds an invitation's set-password link "
	    "stays valid" },
	{ "KEEL_PUBLIC_URL", CFG_STR, "http://127.0.0.1:8080", 0, 0,
	    OFF(public_url), "the site's public base URL, for links in "
	    "emails" },
	{ "KEEL_CACHE", CFG_INT, "1", 0, 1, OFF(cache),
	    "response cache in memcached on (1) or off (0: every read goes "
	    "to the database, X-Cache: BYPASS)" },
	{ "KEEL_RATELIMIT", CFG_INT, "1", 0, 1, OFF(ratelimit),
	    "rate limits on (1) or off (0)" },
	{ "KEEL_RATELIMIT_API", CFG_RATE, "100/900", 0, 0, OFF(rate_api),
	    "global limiter per client: requests/seconds, or off" },
	{ "KEEL_RATELIMIT_AUTH", CFG_RATE, "5/900", 0, 0, OFF(rate_auth),
	    "failed logins and password resets per address and account: "
	    "attempts/seconds, or off" },
	{ "KEEL_RATELIMIT_WRITE", CFG_RATE, "50/900", 0, 0, OFF(rate_write),
	    "POST/PUT/PATCH/DELETE per client: requests/seconds, or off" },
	{ "KEEL_RATELIMIT_READ", CFG_RATE, "200/900", 0, 0, OFF(rate_read),
	    "GET per client: requests/seconds, or off" },
	{ "KEEL_RATELIMIT_FAIL_CLOSED", CFG_LIMITERS, "", 0, 0,
	    OFF(rate_fail_closed), "limiters that refuse requests (503) "
	    "while Redis is down, e.g. auth; the others let them through" },
	{ "KEEL_RATELIMIT_IPV6_PREFIX", CFG_INT, "56", 16, 128,
	    OFF(rate_ipv6_prefix), "IPv6 clients are limited per prefix of "
	    "this many bits" },
	{ "TRUSTED_PROXIES", CFG_PROXIES, "", 0, 0, OFF(trusted_proxies),
	    "addresses or CIDR blocks whose X-Forwarded-For is believed "
	    "(comma-separated; empty: none)" },
};

static const struct keel_config *current;

static int
valid_pg_list(const char *s)
{
	const char	*p;
	size_t		 n;

	/* Each comma-separated item must be a URL libpq understands. */
	while (*s != '\0') {
		p = strchr(s, ',');
		n = p == NULL ? strlen(s) : (size_t)(p - s);
		if (!((n > 13 && strncmp(s, "postgresql://", 13) == 0) ||
		    (n > 11 && strncmp(s, "postgres://", 11) == 0)))
			return 0;
		if (p == NULL)
			break;
		s = p + 1;
	}
	return 1;
}

static int
cfg_set(struct keel_config *cfg, const struct cfg_row *r, const char *v,
    char *err, size_t n)
{
	void	*field = (char *)cfg + r->off;
	int64_t	 iv;
	int	 lv;

	switch (r->type) {
	case CFG_INT:
		if (keel_parse_int64(v, r->min, r->max, &iv) == -1) {
			snprintf(err, n, "%s: expected an integer from %lld "
			    "to %lld", r->name, (long long)r->min,
			    (long long)r->max);
			return -1;
		}
		*(int *)field = (int)iv;
		return 0;
	case CFG_LEVEL:
		if ((lv = keel_log_level_parse(v)) == -1) {
			snprintf(err, n, "%s: expected debug, info, warn or "
			    "error", r->name);
			return -1;
		}
		*(int *)field = lv;
		return 0;
	case CFG_URL_PG:
		if (*v != '\0' && !valid_pg_list(v)) {
			snprintf(err, n, "%s: expected postgresql:// URLs",
			    r->name);
			return -1;
		}
		break;
	case CFG_URL_REDIS:
		if (strncmp(v, "redis://", 8) != 0 &&
		    strncmp(v, "unix://", 7) != 0) {
			snprintf(err, n, "%s: expected redis://host:port/db",
			    r->name);
			return -1;
		}
		break;
	case CFG_SECRET:
		if (strlen(v) < (size_t)r->min) {
			snprintf(err, n, "%s: must be set to at least %lld "
			    "characters (e.g. openssl rand -hex 32)", r->name,
			    (long long)r->min);
			return -1;
		}
		break;
	case CFG_RATE:
		if (keel_limit_parse_rate(v, &lv, &lv) == -1) {
			snprintf(err, n, "%s: expected REQUESTS/SECONDS (e.g. "
			    "100/900) or off", r->name);
			return -1;
		}
		break;
	case CFG_LIMITERS:
		if (keel_limit_names_valid(v) == -1) {
			snprintf(err, n, "%s: expected a comma-separated list "
			    "of api, auth, write, read", r->name);
			return -1;
		}
		break;
	case CFG_PROXIES:
		if (keel_limit_proxies_valid(v) == -1) {
			snprintf(err, n, "%s: expected comma-separated IP "
			    "addresses or CIDR blocks", r->name);
			return -1;
		}
		break;
	case CFG_STR:
	case CFG_TYPE__MAX:
		break;
	}
	*(char **)field = keel_strdup(v);
	return 0;
}

static const char *
cfg_default(const struct cfg_row *r, char *tmp, size_t n)
{
	long	 cpus;

	if (r->def != NULL)
		return r->def;
	/* Only KEEL_WORKERS is computed: one worker per CPU. */
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	snprintf(tmp, n, "%ld", cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
	return tmp;
}

int
keel_config_load(struct keel_config *cfg, char *err, size_t n)
{
	const char	*v;
	char		 tmp[32];
	size_t		 i;

	memset(cfg, 0, sizeof(*cfg));
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if ((v = getenv(rows[i].name)) == NULL)
			v = cfg_default(&rows[i], tmp, sizeof(tmp));
		if (cfg_set(cfg, &rows[i], v, err, n) == -1) {
			keel_config_free(cfg);
			return -1;
		}
	}
	return 0;
}

void
keel_config_free(struct keel_config *cfg)
{
	size_t	 i;
	char	**p;

	if (cfg == NULL)
		return;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (rows[i].type == CFG_INT || rows[i].type == CFG_LEVEL)
			continue;
		p = (char **)((char *)cfg + rows[i].off);
		if (*p != NULL && rows[i].type == CFG_SECRET)
			explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

const struct keel_config *
keel_config(void)
{
	return current;
}

void
keel_config_set(const struct keel_config *cfg)
{
	current = cfg;
}

void
keel_config_print_table(void)
{
	char	 tmp[32];
	size_t	 i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		printf("%s\t%s\t%s\n", rows[i].name,
		    cfg_default(&rows[i], tmp, sizeof(tmp)), rows[i].what);
}
