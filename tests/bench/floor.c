/* SPDX-License-Identifier: ISC */
/*
 * floor.c -- the benchmark's floors: a minimal preforked libfcgi
 * responder that does exactly the unavoidable I/O of one keel path and
 * nothing else (no routing, parsing, JSON, logging), answering a body of
 * the same size as keel's.  It links no libkeel on purpose.
 *
 *	/_floor/null		no I/O: the transport floor
 *	/_floor/mc		one memcached get (the cached body)
 *	/_floor/mc-sess		one memcached get + one Redis HMGET (session)
 *	/_floor/pg-sess		one Redis HMGET (session) + the cars query
 *	/_floor/mc-script	one memcached get + one EVALSHA (session and
 *				two sliding windows, as keel's limiter does)
 *
 * Environment: the stack's (DATABASE_*, REDIS_URL, MEMCACHED_SERVERS,
 * KEEL_WORKERS) and BENCH_DIR, where tests/bench/run leaves "body" (the
 * bytes keel answers) and "session" (the Redis key of the bench user's
 * session) before the first request.  Usage: keel-bench-floor --socket P
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <hiredis/hiredis.h>
#include <libdeflate.h>
#include <libmemcached/memcached.h>
#include <libpq-fe.h>

#define BODY_MAX	(1 << 20)

/*
 * The first page of GET /api/cars with no filter, as lib/db.c prepares it
 * (lib/sqlspec.c: each absent filter's arm gone, LIMIT written in, so
 * PostgreSQL can keep a generic plan) and with the timestamps as plain
 * values, which keel formats itself.
 */
static const char cars_sql[] =
	"SELECT id, license_plate, manufacturer, model, category, status, "
	"year, is_archived, created_at, updated_at FROM cars "
	"WHERE is_archived = $1 "
	"ORDER BY created_at DESC, id DESC LIMIT 21";

/* The Redis work of keel's limiter for a GET with a session: a list per
 * limiter, the aged cut from its tail (one LTRIM after a doubling and
 * halving search when a run aged), the request pushed at its head,
 * none of it written to the AOF (lib/lua/limit_check.lua). */
static const char window_lua[] =
	"redis.set_repl(redis.REPL_NONE)\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local function stamp(o) return tonumber(string.match(o, '^%d+')) end\n"
	"local s = redis.call('HMGET', KEYS[1], 'uid', 'role', 'exp')\n"
	"local out = {s[1], s[2], s[3]}\n"
	"for i = 2, 3 do\n"
	"  local k, cut = KEYS[i] .. s[1], now - 60000\n"
	"  local o = redis.call('LINDEX', k, -1)\n"
	"  local n = redis.call('LLEN', k)\n"
	"  if o and stamp(o) <= cut then\n"
	"    local lo, hi = 1, 2\n"
	"    while hi <= n and stamp(redis.call('LINDEX', k, -hi)) <= cut do\n"
	"      lo, hi = hi, hi * 2\n"
	"    end\n"
	"    if hi > n then hi = n + 1 end\n"
	"    while hi - lo > 1 do\n"
	"      local mid = math.floor((lo + hi) / 2)\n"
	"      if stamp(redis.call('LINDEX', k, -mid)) > cut then hi = mid\n"
	"      else lo = mid end\n"
	"    end\n"
	"    if lo == n then redis.call('DEL', k)\n"
	"    else redis.call('LTRIM', k, 0, n - lo - 1) end\n"
	"    n = n - lo\n"
	"    o = redis.call('LINDEX', k, -1)\n"
	"  end\n"
	"  redis.call('LPUSH', k, now .. ':' .. ARGV[1])\n"
	"  redis.call('PEXPIRE', k, 60000)\n"
	"  out[#out + 1] = o and string.match(o, '^%d+') or now\n"
	"  out[#out + 1] = n\n"
	"end\n"
	"return out\n";

static char		*body, *sess_key, sha[41];
static size_t		 body_len;
static memcached_st	*mc;
static redisContext	*rc;
static PGconn		*pg;

static char *
slurp(const char *name, size_t *len)
{
	char	 path[512], *buf;
	FILE	*f;
	size_t	 n;

	snprintf(path, sizeof(path), "%s/%s", getenv("BENCH_DIR") != NULL ?
	    getenv("BENCH_DIR") : ".", name);
	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	buf = malloc(BODY_MAX + 1);
	n = fread(buf, 1, BODY_MAX, f);
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

/* Connections and files, once per worker, on first use. */
static void
setup(void)
{
	const char	*url, *p;
	char		 host[128] = "127.0.0.1";
	int		 port = 6379;
	redisReply	*r;

	if (body != NULL)
		return;
	body = slurp("body", &body_len);
	sess_key = slurp("session", NULL);
	if (body == NULL || sess_key == NULL) {
		fprintf(stderr, "floor: BENCH_DIR has no body/session\n");
		exit(1);
	}
	sess_key[strcspn(sess_key, "\n")] = '\0';
	mc = memcached_create(NULL);
	memcached_server_push(mc, memcached_servers_parse(
	    getenv("MEMCACHED_SERVERS") != NULL ? getenv("MEMCACHED_SERVERS") :
	    "127.0.0.1:11211"));
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	/* redis://host:port/db */
	if ((url = getenv("REDIS_URL")) != NULL &&
	    (p = strstr(url, "://")) != NULL)
		sscanf(p + 3, "%127[^:/]:%d", host, &port);
	rc = redisConnect(host, port);
	r = redisCommand(rc, "SCRIPT LOAD %s", window_lua);
	snprintf(sha, sizeof(sha), "%s", r != NULL && r->str != NULL ?
	    r->str : "");
	freeReplyObject(r);
	url = getenv("DATABASE_READ_REPLICA_URL");
	if (url == NULL || *url == '\0')
		url = getenv("DATABASE_URL");
	if ((p = strchr(url, ',')) != NULL)
		url = strndup(url, (size_t)(p - url));
	pg = PQconnectdb(url);
	PQclear(PQprepare(pg, "cars", cars_sql, 1, NULL));
}

/* The body, gzip-coded per request (as lighttpd did before the apps
 * coded their own answers) when the client takes gzip: the same
 * libdeflate call at the same level as keel's uncached answers. */
static void
reply(FCGX_Request *fr, const char *b, size_t n)
{
	static struct libdeflate_compressor	*c;
	static char				 gz[BODY_MAX + 1024];
	const char				*ae;
	size_t					 got = 0;

	ae = FCGX_GetParam("HTTP_ACCEPT_ENCODING", fr->envp);
	if (ae != NULL && strstr(ae, "gzip") != NULL && n > 1024) {
		if (c == NULL)
			c = libdeflate_alloc_compressor(6);
		if (c != NULL)
			got = libdeflate_gzip_compress(c, b, n, gz, sizeof(gz));
	}
	if (got > 0) {
		FCGX_FPrintF(fr->out, "Status: 200 OK\r\nContent-Type: "
		    "application/json; charset=utf-8\r\nVary: Accept-Encoding"
		    "\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n",
		    (int)got);
		FCGX_PutStr(gz, (int)got, fr->out);
		return;
	}
	FCGX_FPrintF(fr->out, "Status: 200 OK\r\nContent-Type: "
	    "application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n",
	    (int)n);
	FCGX_PutStr(b, (int)n, fr->out);
}

static void
mc_get(FCGX_Request *fr)
{
	memcached_return_t	 ret;
	uint32_t		 flags;
	size_t			 n;
	char			*v;

	v = memcached_get(mc, "keel:bench:body", 15, &n, &flags, &ret);
	if (v == NULL) {
		FCGX_FPrintF(fr->out, "Status: 500 miss\r\n\r\n");
		return;
	}
	reply(fr, v, n);
	free(v);
}

static void
session(void)
{
	freeReplyObject(redisCommand(rc, "HMGET %s uid role exp", sess_key));
}

static void
serve_one(FCGX_Request *fr)
{
	const char	*uri = FCGX_GetParam("REQUEST_URI", fr->envp);
	const char	*params[1] = { "false" };
	PGresult	*res;

	setup();
	if (uri == NULL)
		uri = "";
	if (strcmp(uri, "/_floor/null") == 0)
		reply(fr, body, body_len);
	else if (strcmp(uri, "/_floor/mc") == 0)
		mc_get(fr);
	else if (strcmp(uri, "/_floor/mc-sess") == 0) {
		session();
		mc_get(fr);
	} else if (strcmp(uri, "/_floor/pg-sess") == 0) {
		session();
		res = PQexecPrepared(pg, "cars", 1, params, NULL, NULL, 0);
		PQclear(res);
		reply(fr, body, body_len);
	} else if (strcmp(uri, "/_floor/mc-script") == 0) {
		freeReplyObject(redisCommand(rc, "EVALSHA %s 3 %s %s %s %s", sha,
		    sess_key, "keel:bench:rl:api:", "keel:bench:rl:read:",
		    "m"));
		mc_get(fr);
	} else
		FCGX_FPrintF(fr->out, "Status: 404 Not Found\r\n\r\n");
}

static void
worker(int fd)
{
	FCGX_Request	 fr;

	FCGX_Init();
	FCGX_InitRequest(&fr, fd, 0);
	while (FCGX_Accept_r(&fr) >= 0) {
		serve_one(&fr);
		/* Input read to its end: close at once, as serve.c does. */
		if (FCGX_GetChar(fr.in) == EOF && FCGX_HasSeenEOF(fr.in))
			(void)FCGX_Detach(&fr);
		FCGX_Finish_r(&fr);
	}
	_exit(0);
}

static volatile sig_atomic_t	 stop;

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char *argv[])
{
	const char	*sock = NULL, *w;
	pid_t		*kids;
	int		 fd, i, n;

	for (i = 1; i < argc - 1; i++)
		if (strcmp(argv[i], "--socket") == 0)
			sock = argv[i + 1];
	if (sock == NULL) {
		fprintf(stderr, "usage: %s --socket PATH\n", argv[0]);
		return 2;
	}
	n = (w = getenv("KEEL_WORKERS")) != NULL ? atoi(w) : 2;
	if (n < 1)
		n = 1;
	FCGX_Init();
	unlink(sock);
	if ((fd = FCGX_OpenSocket(sock, 1024)) < 0) {
		fprintf(stderr, "floor: can't listen on %s\n", sock);
		return 1;
	}
	kids = calloc((size_t)n, sizeof(*kids));
	for (i = 0; i < n; i++)
		if ((kids[i] = fork()) == 0)
			worker(fd);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	while (!stop)
		pause();
	for (i = 0; i < n; i++)
		kill(kids[i], SIGTERM);
	while (wait(NULL) > 0)
		continue;
	unlink(sock);
	return 0;
}
