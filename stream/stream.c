/* SPDX-License-Identifier: ISC */
/*
 * stream.c -- keel-stream: GET /api/notifications/stream, Server-Sent
 * Events (DESIGN.md, "Notifications in real time").
 *
 * libfcgi serves one request per process at a time, so this app is the
 * one on an event loop: lib/serve.c supervises it like any app, and each
 * worker runs libevent's HTTP server on the shared unix socket, behind
 * lighttpd's mod_proxy.  A worker holds every stream it accepted, one
 * Redis subscription (PSUBSCRIBE keel:notify:*) fanned out in memory by
 * user, one Redis connection for commands and one PostgreSQL connection.
 *
 *   open     bearer token (HMGET the session) or single-use ticket
 *            (stream_ticket.lua: GETDEL it, read its session), then a
 *            lease among the user's streams (Lua) and the session read
 *            again, then 200 and the replay: the user's notifications
 *            after Last-Event-ID from PostgreSQL, in id order
 *   live     a published notification whose prev is the last id this
 *            stream sent goes out at once; anything else (a gap, a
 *            message that overtook another, a replay under way, the
 *            subscription lost and back) marks the stream dirty, and
 *            dirty streams catch up from PostgreSQL, many per query
 *   close    the client went (lighttpd closes the socket, or on a FIN
 *            shuts it down: tcp-fin-propagate, scripts/stack), it stopped
 *            reading (its output passed OUT_MAX), PostgreSQL failed
 *            mid-replay (an error event), SIGTERM (a reconnect event),
 *            or its session ended or expired (an end event)
 *
 * A 401 (no credential, or one that names no session) and a 405 name no
 * user: as the apps' do, they count in their client address's windows
 * (limit.c's script again) and carry its RateLimit headers.
 *
 * KEEL_CORS_ORIGINS (lib/cors.h) reaches the stream as it does the apps:
 * a listed origin's request gets Access-Control-Allow-Origin on its 200
 * and on every refusal, and its preflight a 204 that no session or
 * limiter sees, so a page on that origin can open the stream; the
 * setting is the process's configuration like any other, so a SIGHUP
 * reads it again (lib/serve.c).
 *
 * A stream belongs to the session that opened it (the bearer's, or the
 * one that took the ticket) and ends with it: auth.c announces each
 * session it ends on the user's channel (auth.h), so every process
 * closes that session's streams at once.  The session is read again
 * after the stream is in its user's list, so a logout that lands while
 * the stream opens is seen either by that read or, later, by the
 * announcement.  A session that expires is not announced: a stream
 * keeps its session's exp and ends at its first heartbeat past it.
 * Sessions never slide (auth.c sets exp once, with the key's TTL), so
 * that costs nothing in Redis, where reading every session again each
 * heartbeat would double an idle stream's commands (docs/capacity.md).
 * When the subscription comes back after a loss, announcements may have
 * been missed: every stream's session is read again then.
 *
 * The drainer serialises a user's notifications (a row lock per user),
 * so per user, ids are in commit order: "after id N" is always complete.
 * Callbacks name a stream by its sid, never by pointer, so an answer
 * that arrives after the stream closed finds nothing and is dropped.
 *
 * Redis Cluster (REDIS_CLUSTER=1): the subscription stays one
 * connection to the REDIS_URL node (Redis 7 broadcasts a PUBLISH to
 * every node); commands go to the master of their key's slot, on a
 * connection per master opened on first use, the slot map being
 * lib/redis.c's (loaded, blocking, on first use and after a redirect).
 * A MOVED or ASK answer fails that one open (503, the client retries)
 * or renewal (the next one goes right): the map is loaded again first.
 *
 * libevent's evhttp (2.1) keeps reading a connection while it writes a
 * chunked reply, to see it close: the EOF or reset reaches on_close at
 * once, which frees the stream and gives its place in the cap back.
 * A Redis connection that drops is tried again with backoff, up to
 * REDIS_BACKOFF_MAX_MS apart; an open that finds it down tries at once
 * (open_wake), so a Redis that is back serves the next open.  Through
 * sentinels only the backoff asks them where the master is, on the loop
 * like any other Redis conversation (hiredis's async API): one lookup at
 * a time, shared by every connection waiting for it, each sentinel
 * given SENTINEL_MS in turn, the answer applied when it comes; an open
 * only connects again to the master their last answer named.
 *
 * The files, in the order a request meets them: this one takes the
 * request (on_request) and runs the loop (stream_loop: the heartbeat,
 * SIGTERM, the listener); open.c checks an open's credentials, lease
 * and limits up to its 200 or refusal; answer.c shapes every answer;
 * streams.c holds the streams and writes to them; replay.c catches
 * them up from PostgreSQL (over pgev.c); live.c fans the subscription's
 * messages out; redis.c keeps the Redis connections, and sentinel.c
 * asks the sentinels where the master is.  stream.h declares what they
 * share, and why the worker's state is one global.
 */
#include "config.h"

#include <sys/resource.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <hiredis/async.h>

#include "keel/db.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"
#include "keel/resource.h"
#include "keel/sentinel.h"
#include "keel/serve.h"
#include "keel/sse.h"
#include "keel/text.h"
#include "keel/url.h"
#include "stream.h"

#define STREAM_BODY_MAX	(1024 * 1024 + 1) /* past lighttpd's bound */
#define TERM_GRACE_MS	1000		/* final events' time to leave */

/* The worker's state: stream.h says what and why. */
struct worker	 W;

/* ------------------------------------------------------------ helpers */

double
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

struct timeval
tv_ms(int ms)
{
	struct timeval	 tv = { .tv_sec = ms / 1000,
	    .tv_usec = (ms % 1000) * 1000 };

	return tv;
}

struct event *
must(struct event *ev)
{
	if (ev == NULL)
		keel_log_fatalx("libevent: out of memory");
	return ev;
}

/* ---------------------------------------------------------- a request */

/*
 * Every request on the socket: 404 off STREAM_PATH, a preflight's 204,
 * the cap's 503, a 405 or a 401 counted in the client's windows, or an
 * open whose credentials' commands are sent now and answered in open.c.
 */
static void
on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq	 query = { NULL, NULL };
	const char		*path, *last;
	struct stream		*s;
	struct answer		 a;
	struct rconn		*rs = NULL, *rt = NULL;
	char			 skey[SESS_KEY_MAX];
	char			 tkey[KEEL_NOTIFY_TICKET_KEY_MAX];
	void			*sid;
	int64_t			 after = -1;
	int			 want;

	(void)arg;
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	answer_begin(&a, req, path != NULL && strcmp(path, STREAM_PATH) == 0);
	if (path == NULL || strcmp(path, STREAM_PATH) != 0) {
		reply_error(&a, req, 404, "not_found", "No such resource.", NULL);
		return;
	}
	if (preflight(&a, req))
		return;
	/*
	 * The cap first: a counted refusal costs a stream object and a
	 * round trip to Redis, which a server at its cap must not spend on
	 * a flood of wrong methods.
	 */
	if (W.term || W.nstreams >= W.cfg->stream_max) {
		reply_error(&a, req, 503, "unavailable", W.term ?
		    "This server is restarting." :
		    "This server holds all the streams it can.", "5");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		s = stream_new(req);
		s->ans = a;
		refuse_counted(s, 405);
		return;
	}
	if (evhttp_uri_get_query(uri) != NULL &&
	    evhttp_parse_query_str(evhttp_uri_get_query(uri), &query) != 0) {
		reply_error(&a, req, 400, "bad_request",
		    "The query string could not be parsed.", NULL);
		return;
	}
	if (!credentials(req, &query, skey, tkey)) {
		s = stream_new(req);
		s->ans = a;
		refuse_counted(s, 401);
		goto out;
	}
	open_wake(skey, tkey);
	if ((skey[0] != '\0' && (rs = cmd_for(skey)) == NULL) ||
	    (tkey[0] != '\0' && (rt = cmd_for(tkey)) == NULL)) {
		reply_error(&a, req, 503, "unavailable",
		    "Sessions cannot be checked right now.", "1");
		goto out;
	}
	/* A Last-Event-ID that is not an id is ignored: no replay. */
	if ((last = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Last-Event-ID")) == NULL)
		last = evhttp_find_header(&query, "lastEventId");
	if (last != NULL && !keel_sse_last_id(last, &after))
		after = -1;
	s = stream_new(req);
	s->ans = a;
	s->last_id = after;
	sid = (void *)(uintptr_t)s->sid;
	want = (skey[0] != '\0') + (tkey[0] != '\0');
	/* A token's session is the stream's; a ticket must be of it too. */
	if (skey[0] != '\0')
		s->have_sess = sess_parse(skey + sizeof(SESS_PREFIX) - 1,
		    KEEL_AUTH_ID_LEN, s->sess);
	if (skey[0] != '\0' && redisAsyncCommand(rs->ac, on_auth_session,
	    sid, "HMGET %s uid role exp", skey) == REDIS_OK)
		s->auth_wait++;
	/*
	 * A ticket is used up even when the session fails.  A single Redis
	 * takes it and reads its session in one script; a cluster holds
	 * them in two slots, a command each.
	 */
	if (tkey[0] != '\0' && (W.rc == NULL ? run_script(rt, SCRIPT_TICKET,
	    on_auth_ticket, sid, tkey, NULL, NULL, NULL) :
	    redisAsyncCommand(rt->ac, on_auth_ticket, sid, "GETDEL %s",
	    tkey)) == REDIS_OK)
		s->auth_wait++;
	if (s->auth_wait < want)
		s->auth_down = true;
	if (s->auth_wait == 0)
		stream_refuse(s, 503, "unavailable",
		    "Sessions cannot be checked right now.", "1");
out:
	evhttp_clear_headers(&query);
}

/* ----------------------------------------------------------- the loop */

/*
 * Once a second: the heartbeat of the streams whose turn it is (a
 * stream's every KEEL_STREAM_HEARTBEAT seconds, spread over the seconds
 * by its sid, so 10,000 streams never beat in one callback that holds
 * up live events), and their leases renewed; a stream whose session's
 * exp has passed ends instead, so within a heartbeat of it.
 */
static void
on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct keel_buf	 hb = { NULL, 0, 0 };
	struct stream	*s, *next;
	struct rconn	*rc;
	char		 key[64], member[128], lease[16];
	uint64_t	 every = (uint64_t)W.cfg->stream_heartbeat;
	time_t		 now = time(NULL);

	(void)fd;
	(void)what;
	(void)arg;
	W.tick++;
	if (W.verify)
		verify_all();
	keel_buf_puts(&hb, ": hb\n\n");
	snprintf(lease, sizeof(lease), "%d", W.lease_ms);
	for (s = W.all; s != NULL; s = next) {
		next = s->next;
		if (!s->open || (s->sid + W.tick) % every != 0)
			continue;
		if (s->exp <= now) {
			stream_end(s, true);
			continue;
		}
		if (!stream_write(s, &hb))
			continue;
		if (!s->leased)
			continue;
		open_key(key, sizeof(key), s->uid);
		if ((rc = cmd_for(key)) != NULL) {
			snprintf(member, sizeof(member), "%s%" PRIu64,
			    W.member, s->sid);
			(void)run_script(rc, SCRIPT_RENEW, on_redirect, NULL,
			    key, member, lease, NULL);
		}
	}
	keel_buf_free(&hb);
}

static void
on_term(evutil_socket_t fd, short what, void *arg)
{
	struct stream	*s, *next;
	struct timeval	 grace = tv_ms(TERM_GRACE_MS);
	int		 n = 0;

	(void)fd;
	(void)what;
	(void)arg;
	if (W.term)
		return;
	W.term = true;
	evconnlistener_disable(W.listener);
	for (s = W.all; s != NULL; s = next) {
		next = s->next;
		if (s->open) {
			stream_last_word(s, "reconnect", "{}", "shutdown");
			n++;
		} else if (s->req != NULL)
			stream_refuse(s, 503, "unavailable",
			    "This server is restarting.", "1");
	}
	keel_log_info("leaving: told %d streams to reconnect", n);
	event_base_loopexit(W.base, &grace);
}

/* Out of descriptors: stop accepting for a moment instead of spinning. */
static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	struct timeval	 tv = tv_ms(100);

	(void)arg;
	keel_log_warn("accept");
	evconnlistener_disable(l);
	evtimer_add(W.relisten, &tv);
}

static void
on_relisten(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!W.term)
		evconnlistener_enable(W.listener);
}

/* Room for every stream the process may hold, if the hard limit allows. */
static void
raise_fd_limit(int want)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want > rl.rlim_cur)
		keel_log_warnx("KEEL_STREAM_MAX %d needs about %d descriptors; "
		    "the limit is %ju", W.cfg->stream_max, want,
		    (uintmax_t)rl.rlim_cur);
}

static void
stream_loop(const struct keel_config *cfg, int lfd, const sigset_t *waitmask)
{
	struct keel_db_conn_params pgp;
	struct timeval	 hb;
	char		 host[64];
	int		 i;

	W.cfg = cfg;
	W.lease_ms = cfg->stream_heartbeat * 3000;
	scripts[SCRIPT_LIMIT] = keel_limit_call_lua();
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	snprintf(W.member, sizeof(W.member), "%s:%ld:", host, (long)getpid());
	raise_fd_limit(cfg->stream_max + 64);
	if ((W.base = event_base_new()) == NULL ||
	    (W.http = evhttp_new(W.base)) == NULL ||
	    (W.out = evbuffer_new()) == NULL)
		keel_log_fatalx("libevent: cannot start");
	W.listener = evconnlistener_new(W.base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_EXEC, 0, lfd);
	if (W.listener == NULL)
		keel_log_fatalx("libevent: cannot listen");
	evconnlistener_set_error_cb(W.listener, on_accept_error);
	if (evhttp_bind_listener(W.http, W.listener) == NULL)
		keel_log_fatalx("libevent: cannot serve");
	evhttp_set_gencb(W.http, on_request, NULL);
	evhttp_set_timeout(W.http, 10);
	evhttp_set_max_headers_size(W.http, 16384);
	/*
	 * Every method and any body reach on_request, whose 405 is JSON with
	 * Allow: libevent's own answers to a method outside its default set
	 * (OPTIONS, PATCH, TRACE: 501) or a body past its cap (413) are HTML
	 * pages.  lighttpd bounds a body first (server.max-request-size,
	 * 1 MiB, its JSON 413); the stream never reads one.
	 */
	evhttp_set_allowed_methods(W.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(W.http, STREAM_BODY_MAX);
	if (cfg->redis_cluster) {
		/* The first of the seeds (its password is every node's). */
		char	*first = keel_strndup(cfg->redis_url,
			    strcspn(cfg->redis_url, ","));

		keel_url_redis_parse(first, &W.raddr);
		free(first);
	} else
		keel_url_redis_parse(cfg->redis_url, &W.raddr);
	W.sentinel = keel_sentinel_new(cfg->redis_sentinels,
	    cfg->redis_sentinel_master, cfg->redis_sentinel_password);
	W.cmd = (struct rconn){ .name = "commands" };
	W.sub = (struct rconn){ .name = "subscription", .subscriber = true };
	W.cmd.retry = must(evtimer_new(W.base, on_rretry, &W.cmd));
	W.sub.retry = must(evtimer_new(W.base, on_rretry, &W.sub));
	lookup_init(W.base);
	/* Every keel session's settings (lib/db.c): its replay runs as
	 * the apps' reads do, and pg_stat_activity names it. */
	keel_db_conn_params_init(&pgp, cfg, cfg->database_url, "keel-stream");
	W.pg = pgev_new(W.base, pgp.keys, pgp.vals, cfg->db_connect_timeout,
	    cfg->db_statement_timeout);
	W.relisten = must(evtimer_new(W.base, on_relisten, NULL));
	W.heartbeat = must(event_new(W.base, -1, EV_PERSIST, on_heartbeat,
	    NULL));
	hb = tv_ms(1000);
	event_add(W.heartbeat, &hb);
	W.sigterm = must(evsignal_new(W.base, SIGTERM, on_term, NULL));
	W.sigint = must(evsignal_new(W.base, SIGINT, on_term, NULL));
	event_add(W.sigterm, NULL);
	event_add(W.sigint, NULL);
	if (cfg->redis_cluster)
		W.rc = keel_redis_open(cfg);	/* the map; node conns later */
	else
		rconn_start(&W.cmd);
	rconn_start(&W.sub);
	sigprocmask(SIG_SETMASK, waitmask, NULL);

	event_base_dispatch(W.base);

	lookup_stop();
	if (W.cmd.ac != NULL)
		redisAsyncFree(W.cmd.ac);
	for (i = 0; i < W.nnodes; i++) {
		if (W.nodes[i]->ac != NULL)
			redisAsyncFree(W.nodes[i]->ac);
		event_free(W.nodes[i]->retry);
		free(W.nodes[i]);
	}
	if (W.sub.ac != NULL)
		redisAsyncFree(W.sub.ac);	/* on_rdisconnect reads W.rc */
	keel_redis_close(W.rc);
	W.rc = NULL;
	evhttp_free(W.http);
	pgev_free(W.pg);
	event_free(W.heartbeat);
	event_free(W.relisten);
	event_free(W.sigterm);
	event_free(W.sigint);
	event_free(W.cmd.retry);
	event_free(W.sub.retry);
	keel_url_redis_free(&W.raddr);
	keel_sentinel_free(W.sentinel);
	evbuffer_free(W.out);
	event_base_free(W.base);
}

static const struct keel_route routes[] = {
	{ .method = "GET", .pattern = STREAM_PATH, .access = KEEL_ACCESS_USER },
};

int
main(int argc, char *argv[])
{
	static const struct keel_app app = { .name = "stream",
	    .routes = routes, .nroutes = KEEL_NELEM(routes),
	    .loop = stream_loop };

	return keel_serve(argc, argv, &app);
}
