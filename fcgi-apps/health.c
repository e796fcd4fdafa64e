/* SPDX-License-Identifier: ISC */
/*
 * health.c -- GET /health: is every dependency reachable?  GET
 * /health/live: does every app of this host take connections?
 *
 * /health is readiness, for operators and monitoring.  Each check has a
 * short timeout (KEEL_HEALTH_TIMEOUT) so a hung dependency can't hang the
 * probe.  Only a down primary makes the answer 503: the rest degrade keel
 * (DESIGN.md, "When a dependency fails") but it still serves.  A store
 * that answers but refuses writes degrades it too, and its check says
 * "writable": false -- the primary read-only (a standby where it was), or
 * Redis refusing a SET (MISCONF after a save failed on a full disk,
 * NOREPLICAS, OOM, READONLY): every write would fail while PING and
 * SELECT 1 still answer.
 *
 * /health/live is liveness, for a load balancer in front of several hosts
 * (scripts/fleet's HAProxy).  It checks only what is this host's own:
 * lighttpd (it routed the request), this app, and every other app's
 * socket.  No store: the stores are shared, so a host taken out for one
 * of them is taken out with all the others, and the cached reads every
 * host still serves would go with them.  The sockets are every *.sock in
 * the directory of this app's own --socket (scripts/stack's run/), so
 * the list needs no setting of its own; started on fd 0 (spawn-fcgi,
 * lighttpd), no directory is known and only lighttpd and this app are
 * checked.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/serve.h"

static double
health_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One check's outcome. */
struct health {
	const char	*name;
	enum keel_err	 er;
	double		 ms;		/* how long it took */
	double		 lag;		/* replica: replay lag (ms), -1 none */
	int		 writable;	/* 1, 0 (refuses writes), -1 unasked */
	bool		 off;		/* not configured */
};

/* A duration as a JSON number with two decimals ("1.25", not 17 digits). */
static void
health_ms(struct keel_jw *w, const char *key, double ms)
{
	char	 buf[32];
	int	 n;

	n = snprintf(buf, sizeof(buf), "%.2f", ms);
	keel_jw_key(w, key);
	keel_jw_raw(w, buf, (size_t)n);
}

/* "name": {"status": "up"|"down"|"disabled", "ms": ..., "lagMs": ...}. */
static void
health_write(struct keel_jw *w, const struct health *h)
{
	keel_jw_key(w, h->name);
	keel_jw_obj_open(w);
	keel_jw_key(w, "status");
	keel_jw_str(w, h->off ? "disabled" : h->er == KEEL_OK ? "up" : "down");
	if (!h->off)
		health_ms(w, "ms", h->ms);
	if (h->er == KEEL_OK && h->lag >= 0)
		health_ms(w, "lagMs", h->lag);
	if (h->er == KEEL_OK && h->writable >= 0) {
		keel_jw_key(w, "writable");
		keel_jw_bool(w, h->writable == 1);
	}
	keel_jw_obj_close(w);
}

static enum keel_err
health_get(struct keel_req *req)
{
	/* A SET that expires: the write a refusing Redis turns down. */
	const char	*probe[] = { "SET", "keel:health:probe", "1", "PX",
	    "60000" };
	struct health	 h[4] = { { .name = "postgres", .lag = -1,
	    .writable = -1 }, { .name = "replica", .lag = -1, .writable = -1 },
	    { .name = "redis", .lag = -1, .writable = -1 },
	    { .name = "memcached", .lag = -1, .writable = -1 } };
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	double		 t0;
	int		 tmo = req->cfg->health_timeout;
	size_t		 i;
	bool		 ro, refused;

	t0 = health_now();
	h[0].er = keel_db_read_only(req->db, tmo, &ro);
	h[0].writable = !ro;
	h[0].ms = health_now() - t0;
	/* The first replica stands for the replica check. */
	h[1].off = keel_db_replicas(req->db) == 0;
	if (!h[1].off) {
		t0 = health_now();
		h[1].er = keel_db_ping(req->db, 0, tmo, &h[1].lag);
		h[1].ms = health_now() - t0;
	}
	t0 = health_now();
	h[2].er = keel_redis_ping(req->redis, tmo);
	if (h[2].er == KEEL_OK)
		h[2].writable = keel_redis_cmd_timeout(req->redis, tmo,
		    (int)KEEL_NELEM(probe), probe, NULL, NULL) == KEEL_OK;
	h[2].ms = health_now() - t0;
	t0 = health_now();
	h[3].er = keel_cache_ping(req->cache, tmo);
	h[3].ms = health_now() - t0;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "status");
	refused = h[0].writable == 0 || h[2].writable == 0;
	keel_jw_str(&w, h[0].er != KEEL_OK ? "down" : h[1].er != KEEL_OK ||
	    h[2].er != KEEL_OK || h[3].er != KEEL_OK || refused ? "degraded" :
	    "ok");
	keel_jw_key(&w, "checks");
	keel_jw_obj_open(&w);
	for (i = 0; i < 4; i++)
		health_write(&w, &h[i]);
	keel_jw_obj_close(&w);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, h[0].er != KEEL_OK ? 503 : 200, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

/*
 * The apps' sockets' directory into dir (size n): that of this app's own
 * --socket (keel_serve_socket()).  False when it took fd 0: not known.
 */
static bool
health_sock_dir(char *dir, size_t n)
{
	const char	*path = keel_serve_socket(), *slash;

	if (path == NULL)
		return false;
	if ((slash = strrchr(path, '/')) == NULL)
		(void)snprintf(dir, n, ".");
	else if (slash == path)
		(void)snprintf(dir, n, "/");
	else
		(void)snprintf(dir, n, "%.*s", (int)(slash - path), path);
	return true;
}

/*
 * True when a process listens on the unix socket dir/name.  A full listen
 * queue (EAGAIN) counts as up: the app is there, only busy, and a host
 * taken out for its load would pass the load to the others.  The
 * connection is closed unsent; libfcgi's accept drops it unanswered.
 */
static bool
health_sock_up(const char *dir, const char *name)
{
	struct sockaddr_un	 sun;
	int			 fd, n, rc, err;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", dir, name);
	/* Too long to bind, so no app listens there. */
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path))
		return false;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		keel_log_warn("health: socket");
		return false;
	}
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	err = errno;
	close(fd);
	if (rc == -1 && err != EAGAIN)
		keel_log_debug("health: %s: %s", name, strerror(err));
	return rc == 0 || err == EAGAIN;
}

/* Only the apps' sockets: "name.sock", nothing hidden. */
static int
health_sock_name(const struct dirent *d)
{
	size_t	 n = strlen(d->d_name);

	return d->d_name[0] != '.' && n > 5 &&
	    strcmp(d->d_name + n - 5, ".sock") == 0;
}

/*
 * "apps": {"cars": "up", ...} for every socket in health_sock_dir(), in name
 * order; true when every one is up.  A directory that can't be read is
 * reported down: the host can't say its apps are there.
 */
static bool
health_apps_write(struct keel_jw *w)
{
	struct dirent	**names = NULL;
	char		  dir[PATH_MAX];
	bool		  all = true, up;
	int		  i, n;

	keel_jw_key(w, "apps");
	keel_jw_obj_open(w);
	if (!health_sock_dir(dir, sizeof(dir))) {
		keel_jw_obj_close(w);
		return true;
	}
	if ((n = scandir(dir, &names, health_sock_name,
	    alphasort)) == -1) {
		keel_log_warn("health: %s", dir);
		keel_jw_obj_close(w);
		return false;
	}
	for (i = 0; i < n; i++) {
		up = health_sock_up(dir, names[i]->d_name);
		all = all && up;
		/* The app's name: its socket's, less ".sock". */
		names[i]->d_name[strlen(names[i]->d_name) - 5] = '\0';
		keel_jw_key(w, names[i]->d_name);
		keel_jw_str(w, up ? "up" : "down");
		free(names[i]);
	}
	free(names);
	keel_jw_obj_close(w);
	return all;
}

/* {"status": "ok"|"down", "apps": {...}}: 503 when any app is down. */
static enum keel_err
health_live(struct keel_req *req)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	bool		 ok;

	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	ok = health_apps_write(&w);
	keel_jw_key(&w, "status");
	keel_jw_str(&w, ok ? "ok" : "down");
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, ok ? 200 : 503, &b);
	keel_buf_free(&b);
	return KEEL_OK;
}

static const struct keel_route health_routes[] = {
	{ .method = "GET", .pattern = "/health", .handler = health_get,
	    .access = KEEL_ACCESS_ANYONE, .limit = KEEL_LIMIT_CLASS_NONE,
	    .query = KEEL_QUERY_IGNORED },
	{ .method = "GET", .pattern = "/health/live", .handler = health_live,
	    .access = KEEL_ACCESS_ANYONE, .limit = KEEL_LIMIT_CLASS_NONE,
	    .query = KEEL_QUERY_IGNORED },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "health",
	    .routes = health_routes, .nroutes = KEEL_NELEM(health_routes) };

	return keel_serve(argc, argv, &app);
}
