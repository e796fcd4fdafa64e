/* SPDX-License-Identifier: ISC */
/*
 * config.c -- environment configuration: one table row per variable.
 *
 * Each row names the variable, its type, its default, its bounds and where
 * it lands in struct keel_config.  keel_config_load() walks the table once
 * at start; a bad value stops the program with the variable's name.
 */
#include "config.h"

#include <sys/resource.h>

#include <assert.h>
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "keel/addr.h"
#include "keel/config.h"
#include "keel/cors.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/sentinel.h"
#include "keel/text.h"
#include "keel/url.h"

enum cfg_type {
	CFG_INT,		/* integer within min..max */
	CFG_STR,		/* any string */
	CFG_PATH,		/* an absolute path; "" too unless min is 1 */
	CFG_URL_PG,		/* one postgres:// or postgresql:// URL;
				   "" too unless min is 1 */
	CFG_URL_PGS,		/* CFG_URL_PG's, comma-separated, or "" */
	CFG_URL_REDIS,		/* redis:// or unix:// URL (a comma list:
				   redis_valid decides, knowing
				   REDIS_CLUSTER) */
	CFG_URL_SMTP,		/* smtp:// or smtps:// URL */
	CFG_URL_HTTP,		/* https:// URL, no query; http:// only to
				   a loopback host (http_url_private) */
	CFG_SERVERS,		/* memcached host:port comma list, or "" */
	CFG_SENTINELS,		/* a host:port comma list, or "" */
	CFG_SECRET,		/* at least min characters */
	CFG_SECRET_OPT,		/* "" (none), or at least min characters */
	CFG_LEVEL,		/* a log level name */
	CFG_RATE,		/* "N/SECONDS" or "off": a struct keel_rate */
	CFG_LIMITERS,		/* a comma list of limiter names: a bit mask */
	CFG_NETS,		/* a comma list of addresses or CIDR blocks:
				   a struct keel_addr_rule's trusted list */
	CFG_RATIO,		/* a decimal from 0 to 1: a double */
	CFG_ORIGINS,		/* "", "*" or a comma list of exact
				   origins (cors.c) */
	CFG_SWITCH,		/* on or 1, off or 0: an int 1 or 0 */
	CFG_TYPE__MAX
};

struct cfg_row {
	const char	*name;
	enum cfg_type	 type;
	const char	*def;		/* NULL: computed (see cfg_default) */
	int64_t		 min, max;	/* CFG_PATH, CFG_URL_PG: min 1 is
					   "required" */
	size_t		 off;		/* offset in struct keel_config */
	const char	*what;		/* one line for --help and the README */
};

#define OFF(f)	offsetof(struct keel_config, f)

static const struct cfg_row rows[] = {
	{ .name = "KEEL_WORKERS", .type = CFG_INT, .def = NULL,
	    .min = 1, .max = 256, .off = OFF(workers),
	    .what = "worker processes per app (default: 4 per CPU)" },
	{ .name = "KEEL_MAX_REQUESTS", .type = CFG_INT, .def = "10000",
	    .min = 0, .max = 1000000000, .off = OFF(max_requests),
	    .what = "requests a worker serves before it is replaced "
	    "(0: never)" },
	{ .name = "KEEL_SHUTDOWN_TIMEOUT", .type = CFG_INT, .def = "35",
	    .min = 1, .max = 3600, .off = OFF(shutdown_timeout),
	    .what = "seconds a worker told to leave (SIGTERM, or a SIGHUP "
	    "roll) may take to finish its request before it is killed" },
	/* The pool (serve.c, README "Processes and signals"). */
	{ .name = "KEEL_PM", .type = CFG_STR, .def = "static",
	    .off = OFF(pm),
	    .what = "static (KEEL_WORKERS workers) or dynamic (between "
	    "KEEL_PM_MIN_SPARE idle workers and KEEL_PM_MAX_CHILDREN)" },
	{ .name = "KEEL_PM_MAX_CHILDREN", .type = CFG_INT, .def = "16",
	    .min = 1, .max = 256, .off = OFF(pm_max_children),
	    .what = "dynamic: most workers an app runs at once" },
	{ .name = "KEEL_PM_START", .type = CFG_INT, .def = "2",
	    .min = 1, .max = 256, .off = OFF(pm_start),
	    .what = "dynamic: workers forked at start" },
	{ .name = "KEEL_PM_MIN_SPARE", .type = CFG_INT, .def = "1",
	    .min = 1, .max = 256, .off = OFF(pm_min_spare),
	    .what = "dynamic: fewest idle workers; fewer and more are "
	    "forked (1, 2, 4 ... 32 a tick)" },
	{ .name = "KEEL_PM_MAX_SPARE", .type = CFG_INT, .def = "4",
	    .min = 1, .max = 256, .off = OFF(pm_max_spare),
	    .what = "dynamic: most idle workers; the surplus is retired, "
	    "one a second" },
	{ .name = "KEEL_PM_IDLE_TIMEOUT", .type = CFG_INT, .def = "10",
	    .min = 1, .max = 86400, .off = OFF(pm_idle_timeout),
	    .what = "dynamic: seconds the pool may keep more than "
	    "KEEL_PM_MIN_SPARE idle workers before it retires them, one a "
	    "second" },
	{ .name = "KEEL_ENV_FILE", .type = CFG_PATH, .def = "",
	    .off = OFF(env_file),
	    .what = "absolute path of a file of export NAME=value lines "
	    "that SIGHUP sources (sh) before it runs the binary again: "
	    "changed values take effect (\"\": the environment as it is)" },
	/* Core files (keel_config_core_limit(), README "Processes and
	 * signals"). */
	{ .name = "KEEL_CORE_DUMPS", .type = CFG_SWITCH, .def = "off",
	    .off = OFF(core_dumps),
	    .what = "off: a crash leaves no core file or systemd-coredump "
	    "entry, which would hold what the process held (passwords, "
	    "tokens, KEEL_SECRET); on: keep the core size limit the "
	    "program inherited, to debug a crash on a machine you trust" },
	{ .name = "KEEL_BODY_MAX", .type = CFG_INT, .def = "1048576",
	    .min = 1024, .max = 67108864, .off = OFF(body_max),
	    .what = "largest request body in bytes (413 past it)" },
	{ .name = "KEEL_LOG_LEVEL", .type = CFG_LEVEL, .def = "info",
	    .off = OFF(log_level),
	    .what = "debug, info, warn or error" },
	{ .name = "DATABASE_URL", .type = CFG_URL_PG, .def = "", .min = 1,
	    .off = OFF(database_url),
	    .what = "the PostgreSQL primary "
	    "(postgresql://user:pw@host:port/db); required" },
	{ .name = "DATABASE_READ_REPLICA_URL", .type = CFG_URL_PGS, .def = "",
	    .off = OFF(replica_urls),
	    .what = "read replicas, comma-separated (optional)" },
	{ .name = "KEEL_DB_CONNECT_TIMEOUT", .type = CFG_INT, .def = "5",
	    .min = 1, .max = 60, .off = OFF(db_connect_timeout),
	    .what = "seconds to connect to PostgreSQL (the whole startup: "
	    "TCP, TLS, authentication)" },
	{ .name = "KEEL_DB_STATEMENT_TIMEOUT", .type = CFG_INT,
	    .def = "30000", .min = 100, .max = 3600000,
	    .off = OFF(db_statement_timeout),
	    .what = "milliseconds a statement may run (the server's "
	    "statement_timeout; the client gives up 1 s later: 503)" },
	{ .name = "KEEL_DB_PREPARED", .type = CFG_INT, .def = "1",
	    .min = 0, .max = 1, .off = OFF(db_prepared),
	    .what = "1: each statement prepared once per connection under "
	    "its name; 0: unnamed statements and no session state, for "
	    "PgBouncer's transaction pooling (before 1.21)" },
	{ .name = "REDIS_URL", .type = CFG_URL_REDIS,
	    .def = "redis://127.0.0.1:6379/0", .off = OFF(redis_url),
	    .what = "Redis: redis://[:password@]host[:port][/db] (port "
	    "1-65535, default 6379; db 0-2147483647, default 0), or "
	    "unix:///path/to/redis.sock[?db=N]" },
	{ .name = "REDIS_CLUSTER", .type = CFG_INT, .def = "0", .min = 0,
	    .max = 1, .off = OFF(redis_cluster),
	    .what = "1: REDIS_URL names nodes of a Redis Cluster, "
	    "comma-separated (db 0, redis:// only); keys carry hash tags and "
	    "commands follow the cluster's slot map and its MOVED and ASK "
	    "redirects" },
	{ .name = "REDIS_SENTINELS", .type = CFG_SENTINELS, .def = "",
	    .off = OFF(redis_sentinels),
	    .what = "Redis Sentinel: the sentinels, host:port, "
	    "comma-separated; set, keel asks them where the master is at "
	    "every (re)connection and REDIS_URL gives only the password and "
	    "the db (empty: REDIS_URL's host is the master)" },
	{ .name = "REDIS_SENTINEL_MASTER", .type = CFG_STR, .def = "mymaster",
	    .off = OFF(redis_sentinel_master),
	    .what = "the name the sentinels know the master by (their "
	    "sentinel monitor line)" },
	{ .name = "REDIS_SENTINEL_PASSWORD", .type = CFG_STR, .def = "",
	    .off = OFF(redis_sentinel_password),
	    .what = "the sentinels' own password (their requirepass), sent "
	    "with AUTH to each; empty: none (the master's is REDIS_URL's)" },
	{ .name = "MEMCACHED_SERVERS", .type = CFG_SERVERS,
	    .def = "127.0.0.1:11211", .off = OFF(memcached_servers),
	    .what = "memcached servers, host:port (the port required), "
	    "comma-separated (consistent hashing); \"\": none, no cache" },
	{ .name = "KEEL_SECRET", .type = CFG_SECRET, .def = "", .min = 32,
	    .off = OFF(secret),
	    .what = "server secret signing cursors (at least 32 characters)" },
	{ .name = "KEEL_SECRET_FALLBACK", .type = CFG_SECRET_OPT, .def = "",
	    .min = 32, .off = OFF(secret_fallback),
	    .what = "a previous (or next) KEEL_SECRET, verify-only: cursors, "
	    "idempotent requests' fingerprints and login windows of either "
	    "are accepted while a rotation runs (\"\": none)" },
	{ .name = "KEEL_ROUTES_FILE", .type = CFG_STR,
	    .def = PKGDATADIR "/routes.json", .off = OFF(routes_file),
	    .what = "the route list the build generates (the routes app "
	    "stops at start if it can't read it)" },
	{ .name = "KEEL_HEALTH_TIMEOUT", .type = CFG_INT, .def = "1000",
	    .min = 50, .max = 10000, .off = OFF(health_timeout),
	    .what = "milliseconds each /health check may take" },
	{ .name = "SMTP_URL", .type = CFG_URL_SMTP,
	    .def = "smtp://127.0.0.1:25",
	    .off = OFF(smtp_url),
	    .what = "mail server: smtp://[user:pw@]host:port (STARTTLS when "
	    "offered; required when a user is given), smtps:// for TLS" },
	{ .name = "MAIL_FROM", .type = CFG_STR,
	    .def = "keel <keel@localhost>", .off = OFF(mail_from),
	    .what = "sender of every email; its domain names the Message-IDs" },
	{ .name = "SMTP_CA_FILE", .type = CFG_STR, .def = "",
	    .off = OFF(smtp_ca_file),
	    .what = "CA certificates (PEM) the SMTP server's is checked "
	    "against; empty: the system's" },
	{ .name = "SMTP_TIMEOUT", .type = CFG_INT, .def = "10",
	    .min = 1, .max = 300, .off = OFF(smtp_timeout),
	    .what = "seconds one message may take to send" },
	{ .name = "KEEL_JOB_VISIBILITY", .type = CFG_INT, .def = "60",
	    .min = 1, .max = 3600, .off = OFF(job_visibility),
	    .what = "seconds a leased job may run before another consumer "
	    "reclaims it (keep above SMTP_TIMEOUT)" },
	{ .name = "KEEL_DRAIN_BUDGET", .type = CFG_INT, .def = "45",
	    .min = 1, .max = 3600, .off = OFF(drain_budget),
	    .what = "seconds a cron drainer works before it exits (under the "
	    "cron period)" },
	{ .name = "KEEL_RELAY_RECHECK", .type = CFG_INT, .def = "30",
	    .min = 1, .max = 86400, .off = OFF(relay_recheck),
	    .what = "seconds between the relay's questions to Redis about a "
	    "pushed job not yet finished (pushed again if Redis lost it)" },
	{ .name = "KEEL_METRICS", .type = CFG_INT, .def = "1", .min = 0,
	    .max = 1, .off = OFF(metrics),
	    .what = "metrics on (0: off, for measuring what they cost)" },
	{ .name = "KEEL_METRICS_DIR", .type = CFG_STR,
	    .def = "/run/keel/metrics", .off = OFF(metrics_dir),
	    .what = "where each app and cron program keeps its metrics "
	    "file (one per name, shared memory); \"\" turns metrics off" },
	{ .name = "KEEL_METRICS_TOKEN", .type = CFG_STR, .def = "",
	    .off = OFF(metrics_token),
	    .what = "bearer token that lets a scraper off this host read "
	    "/api/metrics (\"\": loopback only)" },
	{ .name = "KEEL_LOCK_DIR", .type = CFG_PATH, .def = "/run/lock",
	    .min = 1, .off = OFF(lock_dir),
	    .what = "directory of the cron programs' lock files (an "
	    "absolute path; each cron program stops at start if it can't "
	    "lock there)" },
	{ .name = "KEEL_DB_RYW_WINDOW", .type = CFG_INT, .def = "5",
	    .min = 0, .max = 3600, .off = OFF(db_ryw_window),
	    .what = "seconds a user's reads go to the primary after they "
	    "write (read-your-writes; 0: off)" },
	{ .name = "KEEL_DB_REPLICA_MAX_LAG", .type = CFG_INT, .def = "2000",
	    .min = 0, .max = 3600000, .off = OFF(db_replica_max_lag),
	    .what = "milliseconds of replay lag past which a replica is "
	    "skipped for the primary" },
	{ .name = "KEEL_DB_SLOW_MS", .type = CFG_INT, .def = "200",
	    .min = 0, .max = 3600000, .off = OFF(db_slow_ms),
	    .what = "milliseconds past which a query is logged by statement "
	    "name (0: every query)" },
	{ .name = "KEEL_SESSION_TTL", .type = CFG_INT, .def = "86400",
	    .min = 60, .max = 31536000, .off = OFF(session_ttl),
	    .what = "seconds a login session lives" },
	{ .name = "KEEL_SESSION_MAX", .type = CFG_INT, .def = "20",
	    .min = 1, .max = 1000, .off = OFF(session_max),
	    .what = "sessions a user may hold at once; a new login ends "
	    "the oldest past it" },
	{ .name = "KEEL_STREAM_MAX", .type = CFG_INT, .def = "10000",
	    .min = 1, .max = 1000000, .off = OFF(stream_max),
	    .what = "notification streams one stream process holds; past "
	    "it 503 with Retry-After" },
	{ .name = "KEEL_STREAM_PER_USER", .type = CFG_INT, .def = "5",
	    .min = 1, .max = 1000, .off = OFF(stream_per_user),
	    .what = "notification streams a user may have open at once, "
	    "over every process and host (429 past it)" },
	{ .name = "KEEL_STREAM_HEARTBEAT", .type = CFG_INT, .def = "15",
	    .min = 1, .max = 300, .off = OFF(stream_heartbeat),
	    .what = "seconds between a stream's heartbeat comments" },
	{ .name = "KEEL_INVITE_TTL", .type = CFG_INT, .def = "259200",
	    .min = 3600, .max = 2592000, .off = OFF(invite_ttl),
	    .what = "seconds an invitation's set-password link stays valid" },
	{ .name = "KEEL_RESET_MAIL_MAX", .type = CFG_RATE, .def = "3/900",
	    .off = OFF(reset_mail_max),
	    .what = "password-reset emails one account is sent, however many "
	    "addresses ask: emails/seconds, or off (past it a request is "
	    "answered as ever and nothing is sent)" },
	{ .name = "KEEL_PUBLIC_URL", .type = CFG_URL_HTTP,
	    .def = "http://127.0.0.1:8080", .off = OFF(public_url),
	    .what = "the site's public base URL, for links in emails: "
	    "https://host[:port][/path], no query or fragment (http:// "
	    "only to a loopback host)" },
	/* Browsers on other origins (cors.c, README "Cross-origin"). */
	{ .name = "KEEL_CORS_ORIGINS", .type = CFG_ORIGINS, .def = "",
	    .off = OFF(cors_origins),
	    .what = "origins whose pages may call the API from a browser, "
	    "exactly as browsers send them (https://host[:port]), "
	    "comma-separated; * alone: any (public reads); empty: none" },
	{ .name = "KEEL_CACHE", .type = CFG_INT, .def = "1",
	    .min = 0, .max = 1, .off = OFF(cache),
	    .what = "response cache in memcached on (1) or off (0: every "
	    "read goes to the database, X-Cache: BYPASS)" },
	{ .name = "KEEL_RATELIMIT", .type = CFG_INT, .def = "1",
	    .min = 0, .max = 1, .off = OFF(ratelimit),
	    .what = "rate limits on (1) or off (0)" },
	{ .name = "KEEL_RATELIMIT_API", .type = CFG_RATE, .def = "100/900",
	    .off = OFF(rates[KEEL_LIMIT_API]),
	    .what = "global limiter per client: requests/seconds, or off" },
	{ .name = "KEEL_RATELIMIT_AUTH", .type = CFG_RATE, .def = "5/900",
	    .off = OFF(rates[KEEL_LIMIT_AUTH]),
	    .what = "failed logins and password resets per address and "
	    "login (as the account lookup folds it): attempts/seconds, "
	    "or off" },
	{ .name = "KEEL_RATELIMIT_AUTH_ACCOUNT", .type = CFG_RATE,
	    .def = "100/900", .off = OFF(auth_account),
	    .what = "failed logins per account from all addresses together "
	    "(bounds a guesser with many addresses; high, as anyone can "
	    "spend it): attempts/seconds, or off" },
	{ .name = "KEEL_RATELIMIT_WRITE", .type = CFG_RATE, .def = "50/900",
	    .off = OFF(rates[KEEL_LIMIT_WRITE]),
	    .what = "POST/PUT/PATCH/DELETE per client: requests/seconds, "
	    "or off" },
	{ .name = "KEEL_RATELIMIT_READ", .type = CFG_RATE, .def = "200/900",
	    .off = OFF(rates[KEEL_LIMIT_READ]),
	    .what = "GET per client: requests/seconds, or off" },
	{ .name = "KEEL_RATELIMIT_FAIL_CLOSED", .type = CFG_LIMITERS,
	    .def = "auth", .off = OFF(rate_fail_closed),
	    .what = "limiters that refuse requests (503) while Redis is "
	    "down; the others let them through (auth: on the routes that "
	    "check a password or a token)" },
	{ .name = "KEEL_RATELIMIT_IPV6_PREFIX", .type = CFG_INT, .def = "56",
	    .min = 16, .max = 128, .off = OFF(client.v6_prefix),
	    .what = "IPv6 clients are limited per prefix of this many bits" },
	{ .name = "TRUSTED_PROXIES", .type = CFG_NETS, .def = "",
	    .off = OFF(client),
	    .what = "addresses or CIDR blocks whose X-Forwarded-For is "
	    "believed (comma-separated; empty: none)" },
	/* What one client's Idempotency-Keys may hold in Redis (idem.c). */
	{ .name = "KEEL_IDEM_MAX", .type = CFG_INT, .def = "1000",
	    .min = 1, .max = 1000000, .off = OFF(idem_max),
	    .what = "answers kept for one client's Idempotency-Keys; keeping "
	    "one more drops the oldest (its retry then runs again)" },
	/* Error reports (report.c, README "Error reports (Sentry)"). */
	{ .name = "SENTRY_DSN", .type = CFG_STR, .def = "",
	    .off = OFF(sentry_dsn),
	    .what = "where error reports go: https://KEY@HOST/PROJECT "
	    "(empty: no reports)" },
	{ .name = "SENTRY_ENVIRONMENT", .type = CFG_STR, .def = "production",
	    .off = OFF(sentry_environment),
	    .what = "the environment every report names" },
	{ .name = "SENTRY_RELEASE", .type = CFG_STR,
	    .def = PACKAGE_NAME "@" PACKAGE_VERSION, .off = OFF(sentry_release),
	    .what = "the release every report names" },
	{ .name = "SENTRY_SAMPLE_RATE", .type = CFG_RATIO, .def = "1.0",
	    .off = OFF(sentry_sample_rate),
	    .what = "share of error events reported (0 to 1)" },
	{ .name = "SENTRY_TRACES_SAMPLE_RATE", .type = CFG_RATIO, .def = "0.1",
	    .off = OFF(sentry_traces_sample_rate),
	    .what = "share of requests reported as transactions (0 to 1)" },
	{ .name = "KEEL_REPORT_SPOOL", .type = CFG_STR,
	    .def = "/var/spool/keel/report", .off = OFF(report_spool),
	    .what = "directory reports wait in until keel-report-ship "
	    "sends them" },
	{ .name = "KEEL_REPORT_SPOOL_MAX", .type = CFG_INT, .def = "1000",
	    .min = 1, .max = 1000000, .off = OFF(report_spool_max),
	    .what = "reports the spool holds; past it new ones are dropped "
	    "and counted (transactions: half of it)" },
	{ .name = "KEEL_REPORT_SPOOL_BYTES", .type = CFG_INT,
	    .def = "67108864", .min = 65536, .max = 1073741824,
	    .off = OFF(report_spool_bytes),
	    .what = "bytes the spool holds; past it new reports are "
	    "dropped and counted" },
};

static const char *const limiter_names[KEEL_LIMIT__MAX] = {
	[KEEL_LIMIT_API] = "api",
	[KEEL_LIMIT_AUTH] = "auth",
	[KEEL_LIMIT_WRITE] = "write",
	[KEEL_LIMIT_READ] = "read",
};

/* Whether the n bytes at p are the name s. */
static bool
name_is(const char *p, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(p, s, n) == 0;
}

char *
keel_config_env_names(const char *text)
{
	struct keel_buf	 out = { NULL, 0, 0 };
	const char	*p = text, *eol, *name;
	size_t		 n;

	for (; *p != '\0'; p = *eol != '\0' ? eol + 1 : eol) {
		if ((eol = strchr(p, '\n')) == NULL)
			eol = p + strlen(p);
		p += strspn(p, " \t");
		if (strncmp(p, "export", 6) != 0 || (p[6] != ' ' &&
		    p[6] != '\t'))
			continue;
		p += 6;
		p += strspn(p, " \t");
		name = p;
		while (p < eol && (isalnum((unsigned char)*p) || *p == '_'))
			p++;
		n = (size_t)(p - name);
		if (n == 0 || isdigit((unsigned char)name[0]) || *p != '=' ||
		    name_is(name, n, "KEEL_ENV_FILE") ||
		    name_is(name, n, "PATH"))
			continue;
		keel_buf_printf(&out, "%s%.*s", out.len > 0 ? " " : "",
		    (int)n, name);
	}
	return out.data != NULL ? out.data : keel_strdup("");
}

const char *
keel_config_limiter_name(enum keel_limiter l)
{
	return l < KEEL_LIMIT__MAX ? limiter_names[l] : "";
}

/*
 * Calls fn on each item of the comma list s (the n bytes at it), stopping
 * at the first it refuses; true when none did.  The URL lists walk this
 * way, not with keel_text_each(), which trims blanks and skips empty
 * items: db.c (replicas) and redis.c (cluster seeds) split at every comma
 * and hand each item on as it is, so fn must see what they will -- "a,,b"
 * gives it an empty item and "a, b" one with a blank, for it to refuse.
 * Whether an empty s is "none" or one empty item is the setting's, so the
 * caller decides before it walks.
 */
static bool
url_list_each(const char *s, keel_text_item_fn *fn, void *arg)
{
	const char	*end;

	for (;;) {
		end = strchr(s, ',');
		if (!fn(s, end != NULL ? (size_t)(end - s) : strlen(s), arg))
			return false;
		if (end == NULL)
			return true;
		s = end + 1;
	}
}

/* One replica: a URL libpq understands (url_list_each's fn). */
static bool
pg_url_item(const char *s, size_t n, void *arg)
{
	(void)arg;
	return keel_url_pg_valid(s, n);
}

/* The n bytes at s read as redis.c will (free *a after, also on false). */
static bool
redis_url_read(const char *s, size_t n, struct keel_url_redis *a)
{
	char	*one = keel_strndup(s, n);
	bool	 ok;

	ok = keel_url_redis_parse(one, a);
	explicit_bzero(one, n);
	free(one);
	return ok;
}

/* Where redis_seed_item() writes why it refused a seed. */
struct seed_err {
	char	*buf;
	size_t	 size;
};

/*
 * One cluster seed (url_list_each's fn, arg a struct seed_err): a node a
 * cluster can be reached by, TCP (nodes announce addresses, not sockets)
 * and database 0 (a cluster has no other).
 */
static bool
redis_seed_item(const char *s, size_t len, void *arg)
{
	struct seed_err		*e = arg;
	struct keel_url_redis	 a;
	bool			 ok, sock;
	int			 db;

	ok = redis_url_read(s, len, &a);
	sock = a.path != NULL;
	db = a.db;
	keel_url_redis_free(&a);
	if (!ok) {
		snprintf(e->buf, e->size, "REDIS_URL: expected redis://"
		    "[:password@]host[:port][/db], comma-separated "
		    "(port 1-65535)");
		return false;
	}
	if (sock) {
		snprintf(e->buf, e->size, "REDIS_CLUSTER=1: REDIS_URL must be "
		    "redis://host:port (cluster nodes, comma-separated), "
		    "not a unix socket");
		return false;
	}
	if (db != 0) {
		snprintf(e->buf, e->size, "REDIS_CLUSTER=1: REDIS_URL's "
		    "database must be 0 (a cluster has no other)");
		return false;
	}
	return true;
}

/*
 * Whether a comma list holds an empty item ("a,,b", "a,", " , "):
 * keel_text_each() skips them, but one is a typo, not a meaning.
 */
static bool
list_has_empty(const char *s)
{
	const char	*p;

	if (s[strspn(s, " \t")] == '\0')
		return false;		/* the whole list empty: none */
	for (;;) {
		s += strspn(s, " \t");
		if (*s == ',' || *s == '\0')
			return true;
		if ((p = strchr(s, ',')) == NULL)
			return false;
		s = p + 1;
	}
}

/* "N/SECONDS" (N 1..1e9, SECONDS 1..86400) or "off" (limit 0). */
static bool
parse_rate(const char *s, struct keel_rate *rate)
{
	const char	*slash;
	char		 num[16];
	int64_t		 l, w;
	size_t		 n;

	if (strcmp(s, "off") == 0) {
		rate->limit = 0;
		rate->window = 1;
		return true;
	}
	if ((slash = strchr(s, '/')) == NULL ||
	    (n = (size_t)(slash - s)) == 0 || n >= sizeof(num))
		return false;
	memcpy(num, s, n);
	num[n] = '\0';
	if (!keel_parse_int64(num, 1, 1000000000, &l) ||
	    !keel_parse_int64(slash + 1, 1, 86400, &w))
		return false;
	rate->limit = (int)l;
	rate->window = (int)w;
	return true;
}

/* "0", "1", "0.25", "1.0": a share from 0 to 1 into *out. */
static bool
parse_ratio(const char *s, double *out)
{
	char	*end;
	double	 d;

	if (*s < '0' || *s > '9')
		return false;
	d = strtod(s, &end);
	if (*end != '\0' || !(d >= 0 && d <= 1))
		return false;
	*out = d;
	return true;
}

/* One limiter name into the mask *arg. */
static bool
limiter_bit(const char *s, size_t n, void *arg)
{
	unsigned	*mask = arg;
	int		 i;

	for (i = 0; i < KEEL_LIMIT__MAX; i++)
		if (strlen(limiter_names[i]) == n &&
		    strncmp(limiter_names[i], s, n) == 0) {
			*mask |= 1u << i;
			return true;
		}
	return false;
}

static const char *const smtp_schemes[] = { "smtp", "smtps", NULL };
static const char *const http_schemes[] = { "http", "https", NULL };

/*
 * Whether v, an http(s) URL keel_url_valid() took, keeps what its links
 * carry (reset and invitation tokens) off the network: https://, or
 * http:// to a loopback host (127.0.0.0/8, [::1], localhost), where a
 * development stack serves.  An http:// link anywhere else sends its
 * token in clear to whoever is on the path.
 */
static bool
http_url_private(const char *v)
{
	static const char *const loopback[] = { "127.0.0.0/8", "::1" };
	const char	*h, *e;
	struct keel_net	 host, net;
	size_t		 i;

	if (strncmp(v, "http://", 7) != 0)
		return true;
	/* No user: keel_url_valid() refused one.  "[::1]" is bracketed. */
	h = v + 7;
	if (*h == '[')
		e = strchr(++h, ']');
	else
		e = h + strcspn(h, ":/");
	if (e == NULL)
		return false;
	if ((size_t)(e - h) == strlen("localhost") &&
	    strncasecmp(h, "localhost", e - h) == 0)
		return true;
	if (!keel_addr_net_parse(h, e - h, &host) || host.bits != 128)
		return false;
	for (i = 0; i < KEEL_NELEM(loopback); i++)
		if (keel_addr_net_parse(loopback[i], strlen(loopback[i]),
		    &net) && keel_addr_in(host.ip, &net))
			return true;
	return false;
}

/* Parses v for row r into cfg; false with a message naming it in err. */
static bool
cfg_set(struct keel_config *cfg, const struct cfg_row *r, const char *v,
    char *err, size_t n)
{
	void			*field = (char *)cfg + r->off;
	struct keel_addr_rule	*rule;
	struct keel_sentinel_addr sentinels[KEEL_SENTINEL_MAX];
	enum keel_log_level	 level;
	int64_t			 iv;
	char			 why[160];

	switch (r->type) {
	case CFG_INT:
		if (!keel_parse_int64(v, r->min, r->max, &iv)) {
			snprintf(err, n, "%s: expected an integer from %lld "
			    "to %lld", r->name, (long long)r->min,
			    (long long)r->max);
			return false;
		}
		*(int *)field = (int)iv;
		return true;
	case CFG_SWITCH:
		if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0)
			*(int *)field = 1;
		else if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0)
			*(int *)field = 0;
		else {
			snprintf(err, n, "%s: expected on, off, 1 or 0",
			    r->name);
			return false;
		}
		return true;
	case CFG_LEVEL:
		if (!keel_log_level_parse(v, &level)) {
			snprintf(err, n, "%s: expected debug, info, warn or "
			    "error", r->name);
			return false;
		}
		*(int *)field = (int)level;
		return true;
	case CFG_RATE:
		if (!parse_rate(v, field)) {
			snprintf(err, n, "%s: expected REQUESTS/SECONDS (e.g. "
			    "100/900) or off", r->name);
			return false;
		}
		return true;
	case CFG_LIMITERS:
		*(unsigned *)field = 0;
		if (list_has_empty(v) || !keel_text_each(v, limiter_bit,
		    field)) {
			snprintf(err, n, "%s: expected a comma-separated list "
			    "of api, auth, write, read", r->name);
			return false;
		}
		return true;
	case CFG_NETS:
		rule = field;
		if (list_has_empty(v) || !keel_addr_nets_parse(v,
		    &rule->trusted, &rule->ntrusted)) {
			snprintf(err, n, "%s: expected comma-separated IP "
			    "addresses or CIDR blocks", r->name);
			return false;
		}
		return true;
	case CFG_RATIO:
		if (!parse_ratio(v, field)) {
			snprintf(err, n, "%s: expected a number from 0 to 1 "
			    "(e.g. 0.1)", r->name);
			return false;
		}
		return true;
	case CFG_PATH:
		if (*v == '\0' && r->min > 0) {
			snprintf(err, n, "%s: must be set (an absolute path)",
			    r->name);
			return false;
		}
		if (*v != '\0' && *v != '/') {
			snprintf(err, n, "%s: expected an absolute path",
			    r->name);
			return false;
		}
		break;
	case CFG_URL_PG:
		if (*v == '\0' && r->min > 0) {
			snprintf(err, n, "%s: must be set (postgresql://user:"
			    "password@host:port/db)", r->name);
			return false;
		}
		if (*v != '\0' && !keel_url_pg_valid(v, strlen(v))) {
			snprintf(err, n, "%s: expected postgresql://[user[:"
			    "password]@]host[:port][/db][?param=value] (port "
			    "1-65535)", r->name);
			return false;
		}
		break;
	case CFG_URL_PGS:
		/* "" is no replica; past that, no empty item. */
		if (*v != '\0' && !url_list_each(v, pg_url_item, NULL)) {
			snprintf(err, n, "%s: expected postgresql://[user[:"
			    "password]@]host[:port][/db][?param=value] (port "
			    "1-65535), comma-separated", r->name);
			return false;
		}
		break;
	case CFG_URL_REDIS:
		break;		/* redis_valid(), once REDIS_CLUSTER is read */
	case CFG_URL_SMTP:
		if (!keel_url_valid(v, strlen(v), smtp_schemes,
		    KEEL_URL_USERINFO)) {
			snprintf(err, n, "%s: expected smtp://[user:password@]"
			    "host[:port] or smtps://... (port 1-65535)",
			    r->name);
			return false;
		}
		break;
	case CFG_URL_HTTP:
		if (!keel_url_valid(v, strlen(v), http_schemes, 0)) {
			snprintf(err, n, "%s: expected http://host[:port]"
			    "[/path] or https://... (port 1-65535; no user, "
			    "?query or #fragment)", r->name);
			return false;
		}
		if (!http_url_private(v)) {
			snprintf(err, n, "%s: http:// only to a loopback host "
			    "(127.0.0.0/8, [::1], localhost: a development "
			    "stack); links in emails carry tokens, use "
			    "https://", r->name);
			return false;
		}
		break;
	case CFG_SERVERS:
		if (!keel_url_memcached_valid(v)) {
			snprintf(err, n, "%s: expected host:port[,host:port"
			    "...] (port 1-65535)", r->name);
			return false;
		}
		break;
	case CFG_SENTINELS:
		if (*v != '\0' && keel_sentinel_parse(v, sentinels,
		    KEEL_NELEM(sentinels)) < 0) {
			snprintf(err, n, "%s: expected host:port[,host:port"
			    "...] (at most %d)", r->name, KEEL_SENTINEL_MAX);
			return false;
		}
		break;
	case CFG_ORIGINS:
		if (!keel_cors_origins_valid(v, why, sizeof(why))) {
			snprintf(err, n, "%s: %s", r->name, why);
			return false;
		}
		break;
	case CFG_SECRET_OPT:
		if (*v == '\0')
			break;
		/* FALLTHROUGH */
	case CFG_SECRET:
		if (strlen(v) < (size_t)r->min) {
			snprintf(err, n, "%s: must be set to at least %lld "
			    "characters (e.g. openssl rand -hex 32)", r->name,
			    (long long)r->min);
			return false;
		}
		break;
	case CFG_STR:
	case CFG_TYPE__MAX:
		break;
	}
	*(char **)field = keel_strdup(v);
	return true;
}

/* KEEL_PM and the dynamic pool's bounds, which hold together. */
static bool
pool_valid(struct keel_config *cfg, char *err, size_t n)
{
	if (strcmp(cfg->pm, "static") == 0)
		return true;
	if (strcmp(cfg->pm, "dynamic") != 0) {
		snprintf(err, n, "KEEL_PM: expected static or dynamic");
		return false;
	}
	cfg->pm_dynamic = 1;
	if (cfg->pm_min_spare > cfg->pm_max_spare) {
		snprintf(err, n, "KEEL_PM_MIN_SPARE (%d) is above "
		    "KEEL_PM_MAX_SPARE (%d)", cfg->pm_min_spare,
		    cfg->pm_max_spare);
		return false;
	}
	if (cfg->pm_max_spare > cfg->pm_max_children) {
		snprintf(err, n, "KEEL_PM_MAX_SPARE (%d) is above "
		    "KEEL_PM_MAX_CHILDREN (%d)", cfg->pm_max_spare,
		    cfg->pm_max_children);
		return false;
	}
	if (cfg->pm_start < cfg->pm_min_spare ||
	    cfg->pm_start > cfg->pm_max_children) {
		snprintf(err, n, "KEEL_PM_START (%d) must be from "
		    "KEEL_PM_MIN_SPARE (%d) to KEEL_PM_MAX_CHILDREN (%d)",
		    cfg->pm_start, cfg->pm_min_spare, cfg->pm_max_children);
		return false;
	}
	return true;
}

/*
 * REDIS_URL as redis.c will read it: one URL (a comma may be its
 * password's); with REDIS_CLUSTER=1 one or several, comma-separated, each
 * a seed redis_seed_item() takes.
 */
static bool
redis_valid(const struct keel_config *cfg, char *err, size_t n)
{
	struct keel_url_redis	 a;
	struct seed_err		 e = { err, n };
	const char		*url = cfg->redis_url;
	bool			 ok;

	if (!cfg->redis_cluster) {
		/*
		 * A list of nodes with REDIS_CLUSTER forgotten: with
		 * passwords it would parse (the last '@' ends the user
		 * part), as a password no one has.
		 */
		if (strstr(url, ",redis://") != NULL ||
		    strstr(url, ",unix://") != NULL) {
			snprintf(err, n, "REDIS_URL: one URL (several, "
			    "comma-separated, only with REDIS_CLUSTER=1)");
			return false;
		}
		ok = redis_url_read(url, strlen(url), &a);
		keel_url_redis_free(&a);
		if (ok)
			return true;
		snprintf(err, n, "REDIS_URL: expected redis://"
		    "[:password@]host[:port][/db] (port 1-65535, db "
		    "0-2147483647; no ?parameters) or "
		    "unix:///path/to/socket[?db=N]");
		return false;
	}
	if (cfg->redis_sentinels[0] != '\0') {
		snprintf(err, n, "REDIS_CLUSTER=1 and REDIS_SENTINELS: a "
		    "cluster fails over by itself; set one or the other");
		return false;
	}
	/*
	 * One node's URL, or several (seeds).  "" is walked too, as one
	 * empty seed: a cluster needs a node to ask for its map.
	 */
	return url_list_each(url, redis_seed_item, &e);
}

/*
 * A fallback equal to the secret would be a rotation that changes
 * nothing: most likely the old value pasted twice, which would leave
 * the clients of the old secret refused without a word.
 */
static bool
secrets_valid(const struct keel_config *cfg, char *err, size_t n)
{
	if (cfg->secret_fallback[0] == '\0' ||
	    strcmp(cfg->secret, cfg->secret_fallback) != 0)
		return true;
	snprintf(err, n, "KEEL_SECRET_FALLBACK: must differ from KEEL_SECRET "
	    "(the previous secret while a rotation runs, or \"\")");
	return false;
}

static const char *
cfg_default(const struct cfg_row *r, char *tmp, size_t n)
{
	long	 cpus;

	if (r->def != NULL)
		return r->def;
	/*
	 * Only KEEL_WORKERS is computed: four workers per CPU, as a worker
	 * mostly waits on Redis, memcached and PostgreSQL (README, "Sizing
	 * the pool": the sweep's knee on 2 CPUs was 8).
	 */
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	cpus = cpus < 1 ? 1 : cpus > 64 ? 64 : cpus;
	snprintf(tmp, n, "%ld", cpus * KEEL_WORKERS_PER_CPU);
	return tmp;
}

bool
keel_config_load(struct keel_config *cfg, char *err, size_t n)
{
	const char	*v;
	char		 tmp[32];
	size_t		 i;

	memset(cfg, 0, sizeof(*cfg));
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if ((v = getenv(rows[i].name)) == NULL)
			v = cfg_default(&rows[i], tmp, sizeof(tmp));
		if (!cfg_set(cfg, &rows[i], v, err, n)) {
			keel_config_free(cfg);
			return false;
		}
	}
	if (!pool_valid(cfg, err, n) || !redis_valid(cfg, err, n) ||
	    !secrets_valid(cfg, err, n)) {
		keel_config_free(cfg);
		return false;
	}
	return true;
}

/*
 * The core size limit KEEL_CORE_DUMPS=off leaves: 1 byte, not 0.  Both
 * stop a core file (the kernel writes none smaller than a page), but
 * when kernel.core_pattern pipes cores to a helper (systemd-coredump,
 * apport) the kernel ignores the limit save for 1, its "abort this core"
 * value (fs/coredump.c), and a 0 is left to a helper that may not honour
 * it (Debian's systemd-coredump is handed 2^63, not the limit).  Recent
 * ASan's disable_coredump chooses 1 for the same reason.
 */
#define CORE_LIMIT_OFF	1

void
keel_config_core_limit(void)
{
	struct keel_config	 one;
	const struct cfg_row	*r = NULL;
	struct rlimit		 rl;
	const char		*v;
	char			 err[256];
	size_t			 i;

	for (i = 0; i < KEEL_NELEM(rows) && r == NULL; i++)
		if (strcmp(rows[i].name, "KEEL_CORE_DUMPS") == 0)
			r = &rows[i];
	assert(r != NULL);
	/* Its row alone: keel-admin hash-password loads nothing else. */
	memset(&one, 0, sizeof(one));
	if ((v = getenv(r->name)) == NULL)
		v = r->def;
	if (!cfg_set(&one, r, v, err, sizeof(err)))
		keel_log_fatalx("configuration: %s", err);
	if (one.core_dumps)
		return;
	/*
	 * The soft limit only: any process may lower its own, so this can't
	 * fail short of a broken kernel -- and then we don't start, as
	 * secure by default means no secret in a core.  The hard limit is
	 * the operator's, left as it was.
	 */
	if (getrlimit(RLIMIT_CORE, &rl) == -1)
		keel_log_fatal("getrlimit RLIMIT_CORE (KEEL_CORE_DUMPS=off)");
	if (rl.rlim_cur <= CORE_LIMIT_OFF)
		return;
	rl.rlim_cur = rl.rlim_max < CORE_LIMIT_OFF ? rl.rlim_max :
	    CORE_LIMIT_OFF;
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		keel_log_fatal("setrlimit RLIMIT_CORE to %d byte, so that a "
		    "crash leaves no core (KEEL_CORE_DUMPS=off)",
		    CORE_LIMIT_OFF);
}

void
keel_config_free(struct keel_config *cfg)
{
	struct keel_addr_rule	*rule;
	size_t			 i;
	char			**p;

	if (cfg == NULL)
		return;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		switch (rows[i].type) {
		case CFG_INT:
		case CFG_SWITCH:
		case CFG_LEVEL:
		case CFG_RATE:
		case CFG_LIMITERS:
		case CFG_RATIO:
			continue;
		case CFG_NETS:
			rule = (struct keel_addr_rule *)((char *)cfg +
			    rows[i].off);
			free(rule->trusted);
			rule->trusted = NULL;
			rule->ntrusted = 0;
			continue;
		default:
			break;
		}
		p = (char **)((char *)cfg + rows[i].off);
		if (*p != NULL && (rows[i].type == CFG_SECRET ||
		    rows[i].type == CFG_SECRET_OPT))
			explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
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
