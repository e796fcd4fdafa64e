/* SPDX-License-Identifier: ISC */
/* config.h -- environment configuration, read and validated once at start. */
#ifndef KEEL_CONFIG_H
#define KEEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/addr.h"

/*
 * The limiters of API.md "Rate limits", the index of their settings
 * (KEEL_RATELIMIT_<NAME>); limit.c applies them.
 */
enum keel_limiter {
	KEEL_LIMIT_API,		/* every /api route, per client */
	KEEL_LIMIT_AUTH,	/* login, password reset: failures only */
	KEEL_LIMIT_WRITE,	/* POST, PUT, PATCH, DELETE */
	KEEL_LIMIT_READ,	/* GET, HEAD */
	KEEL_LIMIT__MAX
};

/* One limiter's setting: limit requests per window; limit 0 is off. */
struct keel_rate {
	int	 limit;
	int	 window;		/* seconds */
};

/*
 * KEEL_WORKERS's default per CPU: a worker mostly waits on its stores, so
 * a pool the size of the CPUs leaves them idle (README, "Sizing the pool").
 */
#define KEEL_WORKERS_PER_CPU	4

/*
 * Every variable is one row of the table in config.c (name, type, default,
 * bounds, field).  After keel_config_load() succeeds the struct is treated
 * as const; request code never reads the environment.
 */
struct keel_config {
	int	 workers;		/* KEEL_WORKERS: worker processes */
	int	 max_requests;		/* KEEL_MAX_REQUESTS: recycle after; 0 never */
	int	 shutdown_timeout;	/* KEEL_SHUTDOWN_TIMEOUT: seconds */
	char	*pm;			/* KEEL_PM: "static" or "dynamic" */
	int	 pm_dynamic;		/* 1 when KEEL_PM is dynamic */
	int	 pm_max_children;	/* KEEL_PM_MAX_CHILDREN */
	int	 pm_start;		/* KEEL_PM_START */
	int	 pm_min_spare;		/* KEEL_PM_MIN_SPARE */
	int	 pm_max_spare;		/* KEEL_PM_MAX_SPARE */
	int	 pm_idle_timeout;	/* KEEL_PM_IDLE_TIMEOUT: seconds */
	char	*env_file;		/* KEEL_ENV_FILE: sourced on SIGHUP */
	int	 core_dumps;		/* KEEL_CORE_DUMPS: 1 keeps the core
					   size limit inherited, 0 lowers it
					   (keel_config_core_limit) */
	int	 body_max;		/* KEEL_BODY_MAX: bytes */
	int	 log_level;		/* KEEL_LOG_LEVEL: enum keel_log_level */
	char	*database_url;		/* DATABASE_URL: the primary ("" unset) */
	char	*replica_urls;		/* DATABASE_READ_REPLICA_URL: comma list */
	int	 db_connect_timeout;	/* KEEL_DB_CONNECT_TIMEOUT: seconds */
	int	 db_statement_timeout;	/* KEEL_DB_STATEMENT_TIMEOUT: ms */
	int	 db_prepared;		/* KEEL_DB_PREPARED: 1 named prepared
					   statements, 0 unnamed (PgBouncer's
					   transaction pooling) */
	char	*redis_url;		/* REDIS_URL */
	int	 redis_cluster;		/* REDIS_CLUSTER: 1 Redis Cluster */
	char	*redis_sentinels;	/* REDIS_SENTINELS: host:port list, or
					   "" (REDIS_URL's host is the master) */
	char	*redis_sentinel_master;	/* REDIS_SENTINEL_MASTER: its name */
	char	*redis_sentinel_password; /* REDIS_SENTINEL_PASSWORD: the
					   sentinels' own, or "" */
	char	*memcached_servers;	/* MEMCACHED_SERVERS: host:port list */
	char	*secret;		/* KEEL_SECRET: signs cursors; >= 32 chars */
	char	*secret_fallback;	/* KEEL_SECRET_FALLBACK: "" or >= 32
					   chars, never secret; only verifies */
	char	*routes_file;		/* KEEL_ROUTES_FILE: built route list */
	int	 health_timeout;	/* KEEL_HEALTH_TIMEOUT: ms per check */
	char	*smtp_url;		/* SMTP_URL: smtp:// or smtps:// */
	char	*mail_from;		/* MAIL_FROM: "Name <addr>" or addr */
	int	 smtp_timeout;		/* SMTP_TIMEOUT: seconds per message */
	char	*smtp_ca_file;		/* SMTP_CA_FILE: "" for the system's */
	int	 job_visibility;	/* KEEL_JOB_VISIBILITY: seconds a lease
					   lasts before it may be reclaimed */
	int	 drain_budget;		/* KEEL_DRAIN_BUDGET: seconds a cron
					   run works (under the cron period) */
	int	 relay_recheck;		/* KEEL_RELAY_RECHECK: seconds between
					   the relay's checks of a pushed job */
	char	*lock_dir;		/* KEEL_LOCK_DIR: cron programs' locks */
	int	 metrics;		/* KEEL_METRICS: 1 on, 0 off */
	char	*metrics_dir;		/* KEEL_METRICS_DIR: "" off */
	char	*metrics_token;		/* KEEL_METRICS_TOKEN: "" loopback only */
	int	 db_ryw_window;		/* KEEL_DB_RYW_WINDOW: seconds a writer's
					   reads stay on the primary */
	int	 db_replica_max_lag;	/* KEEL_DB_REPLICA_MAX_LAG: ms */
	int	 db_slow_ms;		/* KEEL_DB_SLOW_MS: log queries slower */
	int	 session_ttl;		/* KEEL_SESSION_TTL: seconds */
	int	 session_max;		/* KEEL_SESSION_MAX: sessions a user
					   may hold at once */
	int	 stream_max;		/* KEEL_STREAM_MAX: streams a stream
					   process holds */
	int	 stream_per_user;	/* KEEL_STREAM_PER_USER */
	int	 stream_heartbeat;	/* KEEL_STREAM_HEARTBEAT: seconds */
	int	 invite_ttl;		/* KEEL_INVITE_TTL: seconds */
	struct keel_rate reset_mail_max; /* KEEL_RESET_MAIL_MAX: reset
					   emails per account per window */
	char	*public_url;		/* KEEL_PUBLIC_URL: links in emails */
	char	*cors_origins;		/* KEEL_CORS_ORIGINS: "" none, "*" any,
					   or exact origins (cors.h) */
	int	 cache;		/* KEEL_CACHE: 1 on, 0 off */
	int	 ratelimit;		/* KEEL_RATELIMIT: 1 on, 0 off */
	struct keel_rate rates[KEEL_LIMIT__MAX]; /* KEEL_RATELIMIT_API ... */
	struct keel_rate auth_account;	/* KEEL_RATELIMIT_AUTH_ACCOUNT: failed
					   logins per account, from every
					   address together */
	unsigned rate_fail_closed;	/* KEEL_RATELIMIT_FAIL_CLOSED: bit
					   1 << KEEL_LIMIT_* per limiter */
	struct keel_addr_rule client;	/* TRUSTED_PROXIES (parsed) and
					   KEEL_RATELIMIT_IPV6_PREFIX */
	int	 idem_max;		/* KEEL_IDEM_MAX: answers one client's
					   Idempotency-Keys keep in Redis */
	char	*sentry_dsn;		/* SENTRY_DSN: "" reports nothing */
	char	*sentry_environment;	/* SENTRY_ENVIRONMENT */
	char	*sentry_release;	/* SENTRY_RELEASE */
	double	 sentry_sample_rate;	/* SENTRY_SAMPLE_RATE: 0..1 */
	double	 sentry_traces_sample_rate; /* SENTRY_TRACES_SAMPLE_RATE */
	char	*report_spool;		/* KEEL_REPORT_SPOOL: a directory */
	int	 report_spool_max;	/* KEEL_REPORT_SPOOL_MAX: files */
	int	 report_spool_bytes;	/* KEEL_REPORT_SPOOL_BYTES */
};

/*
 * Reads every variable from the environment into cfg, applying defaults.
 * True when every value is valid, else false with a message naming the
 * variable in err (size n).
 * Strings in cfg are owned by cfg; release with keel_config_free().
 */
bool	keel_config_load(struct keel_config *cfg, char *err, size_t n);
void	keel_config_free(struct keel_config *cfg);

/*
 * Keeps this process's memory -- passwords being hashed, session and
 * reset tokens, KEEL_SECRET and the servers' passwords in its environment
 * -- out of core files and systemd-coredump's store: unless
 * KEEL_CORE_DUMPS is on, lowers RLIMIT_CORE's soft limit so that a crash
 * dumps nothing.  Reads KEEL_CORE_DUMPS alone (by its table row), so a
 * program that loads no configuration calls it too.  Every program calls
 * it once, at start, after keel_log_init() (keel_serve, keel_cron_init,
 * keel-admin); forked workers and a reload's execve() inherit the limit.
 * Exits naming the variable on a bad value, and exits when the limit
 * can't be lowered: a program that can't keep its secrets out of a core
 * does not start.
 */
void	keel_config_core_limit(void);

/* "api", "auth", "write", "read": a limiter's name in settings and headers. */
const char	*keel_config_limiter_name(enum keel_limiter);

/*
 * The names an env file's "export NAME=..." lines set, space-separated,
 * in order (KEEL_ENV_FILE and PATH left out): what a reload unsets before
 * it sources the file again, so a variable taken out of the file goes.
 * Caller frees.
 */
char	*keel_config_env_names(const char *text);

/*
 * Writes the table as "NAME<TAB>default<TAB>what" lines to stdout, for
 * --help and the README's configuration table.
 */
void	keel_config_print_table(void);

#endif /* KEEL_CONFIG_H */
