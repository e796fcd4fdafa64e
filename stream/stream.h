/* SPDX-License-Identifier: ISC */
/*
 * stream.h -- what keel-stream's files share: the worker's state, the
 * stream and connection records, and the functions that cross files.
 * stream.c opens with the design; each file's opening says its part.
 *
 * The state is one global, W, and stays one: libevent's and hiredis's
 * callbacks carry a single pointer, which for a stream is its sid (an
 * answer that comes after the stream closed then finds nothing), so
 * they reach the tables, the connections and the configuration through
 * W; one worker runs one loop, so there is one W per process.  What one
 * file alone uses stays in that file (sentinel.c's lookup).
 */
#ifndef KEEL_STREAM_H
#define KEEL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "keel/auth.h"
#include "keel/config.h"
#include "keel/limit.h"
#include "keel/notify.h"
#include "keel/rcluster.h"
#include "keel/sentinel.h"
#include "keel/text.h"
#include "keel/url.h"
#include "pgev.h"

struct keel_buf;

#define STREAM_PATH	"/api/notifications/stream"
#define STREAM_METHODS	"GET"	/* a 405's Allow, a preflight's methods */
#define NBUCKETS	16384		/* sid and uid hash chains */
#define BATCH_MAX	500		/* streams per catch-up query */
#define SESS_PREFIX	"keel:sess:"
#define SESS_BYTES	32		/* a session's id: SHA-256 */
#define SESS_KEY_MAX	(sizeof(SESS_PREFIX) + KEEL_AUTH_ID_LEN)
#define NOTIFY_PATTERN	KEEL_NOTIFY_CHANNEL_PREFIX "*"	/* lib/notify.h */

/*
 * A request's answer, whichever it is (the 200 that opens a stream, or a
 * refusal): its id on X-Request-Id (README, "Request ids"), then its
 * access line and its count in keel_http_requests_total, as every
 * app's requests have.
 */
struct answer {
	char			 id[KEEL_TEXT_REQUEST_ID_MAX + 1];
	double			 t0;		/* ms, monotonic: it came */
	const char		*route;		/* pattern, or "unmatched" */
	const char		*vary;		/* static: Vary's names beside
						   Origin, or NULL */
};

struct stream {
	uint64_t		 sid;
	int64_t			 uid;		/* 0 until authenticated */
	struct evhttp_request	*req;		/* NULL once the client went */
	struct evhttp_connection *evcon;
	struct answer		 ans;		/* the open's */
	bool			 open;		/* 200 and headers sent */
	bool			 leased;	/* holds a place in the cap */
	bool			 dirty;		/* must catch up from PG */
	bool			 inflight;	/* in the query under way */
	int64_t			 last_id;	/* -1: not known yet */
	int			 auth_wait;	/* Redis answers to come */
	bool			 auth_bad;	/* a credential failed */
	bool			 auth_down;	/* Redis failed */
	bool			 checking;	/* leased, session read again */
	bool			 crowded;	/* the user has the most */
	bool			 limited;	/* a rate window is full */
	bool			 limit_down;	/* ... can't be read, and a
						   limiter fails closed */
	int			 refusal;	/* 401, 405: its answer once
						   the client's limits ran */
	size_t			 nlim;		/* the limiters checked */
	struct keel_limit_result lim[KEEL_LIMIT_CALL_MAX];
	bool			 listed;	/* in its user's list */
	bool			 have_sess;	/* sess is known */
	unsigned char		 sess[SESS_BYTES];	/* its session's id */
	time_t			 exp;		/* its session's end, unix s */
	struct event		*deadline;	/* the open's, until open */
	struct stream		*next, *prev;	/* every stream */
	struct stream		*hnext;		/* sid chain */
	struct stream		*unext, *uprev;	/* the user's streams */
	double			 opened;	/* ms, monotonic */
	long			 sent;		/* events */
};

struct user {
	int64_t		 uid;
	struct stream	*streams;
	struct user	*hnext;
};

/* The scripts a stream runs, by sha once loaded (run_script). */
enum script {
	SCRIPT_LEASE,		/* stream_lease.lua: a place, at open */
	SCRIPT_RENEW,		/* stream_renew.lua: kept, each heartbeat */
	SCRIPT_TICKET,		/* stream_ticket.lua: a ticket and its session */
	SCRIPT_LIMIT,		/* the rate limits' check (limit.c) */
	SCRIPT__MAX
};

/* One Redis connection, reconnected with backoff when it drops. */
struct rconn {
	const char		*name;
	char			 host[KEEL_RC_HOST_MAX];	/* cluster: the */
	int			 port;		/* node's; "": REDIS_URL's */
	bool			 subscriber;
	redisAsyncContext	*ac;		/* NULL while down */
	bool			 up;		/* connected */
	bool			 lost;		/* was up, went down */
	int			 backoff_ms;
	double			 tried;		/* ms, monotonic: last attempt */
	bool			 looking;	/* waits for the lookup */
	struct event		*retry;
	char			 sha[SCRIPT__MAX][41];	/* SCRIPT LOADed on */
};					/* this connection; "" not yet */

/* A worker's whole state: one per process. */
struct worker {
	const struct keel_config *cfg;
	struct event_base	*base;
	struct evhttp		*http;
	struct evconnlistener	*listener;
	struct evbuffer		*out;		/* a chunk on its way */
	struct keel_url_redis	 raddr;
	struct keel_sentinel	*sentinel;	/* REDIS_SENTINELS, or NULL */
	char			 master[KEEL_SENTINEL_HOST_MAX];	/* their */
	int			 master_port;	/* last lookup's answer, */
	bool			 master_known;	/* if it had one */
	double			 woke;		/* ms, monotonic: an open's wake */
	struct rconn		 cmd, sub;
	struct keel_redis	*rc;		/* cluster: the slot map */
	struct rconn		*nodes[KEEL_RC_NODES_MAX];	/* cluster: a */
	int			 nnodes;	/* command connection per master */
	struct pgev		*pg;
	struct stream		*all;
	struct stream		*sids[NBUCKETS];
	struct user		*users[NBUCKETS];
	int			 nstreams;
	int			 ndirty;
	uint64_t		 next_sid;
	uint64_t		 batch[BATCH_MAX];	/* the query's sids */
	int			 nbatch;
	struct event		*heartbeat, *sigterm, *sigint, *relisten;
	uint64_t		 tick;		/* heartbeat seconds so far */
	bool			 verify;	/* sessions to read again */
	bool			 term;
	char			 member[96];	/* "host:pid:" */
	int			 lease_ms;
};

/* The worker's state (stream.c): what each field is, above. */
extern struct worker	 W;

/* The SCRIPT LOAD texts, by enum script (redis.c; [SCRIPT_LIMIT] is set
 * by stream_loop, from lib/limit.c, before any connection opens). */
extern const char	*scripts[SCRIPT__MAX];

/* ------------------------------------------- stream.c: the loop's clock */

/* The monotonic clock in ms. */
double		 now_ms(void);

/* ms as a struct timeval, for evtimer_add(). */
struct timeval	 tv_ms(int ms);

/* ev, or the end of the process when libevent could not make it (out
 * of memory).  ev stays the caller's to event_free(). */
struct event	*must(struct event *ev);

/* --------------------------------------------- answer.c: every answer */

/*
 * a (the caller's) begins the answer to req: its clock, its route
 * (STREAM_PATH when routed, else "unmatched"), its request id.
 */
void		 answer_begin(struct answer *a, struct evhttp_request *req,
		    bool routed);

/*
 * req's answer with status is about to go: its CORS headers and
 * X-Request-Id added, its access line and its count made.  req stays
 * the caller's, to send.
 */
void		 answered(const struct answer *a, struct evhttp_request *req,
		    int status);

/*
 * Sends the API.md JSON error (code, msg) with status on req, and
 * Retry-After when retry_after is not NULL.  req is libevent's again
 * once this returns.
 */
void		 reply_error(const struct answer *a,
		    struct evhttp_request *req, int status, const char *code,
		    const char *msg, const char *retry_after);

/* ------------------------------------- streams.c: the streams, users */

/* n hex digits (n = 2 * SESS_BYTES) into out; false when not that. */
bool		 sess_parse(const char *hex, size_t n,
		    unsigned char out[SESS_BYTES]);

/* "keel:sess:<64 hex>", the Redis key of session id, into buf. */
void		 sess_key(char buf[SESS_KEY_MAX],
		    const unsigned char id[SESS_BYTES]);

/* "keel:sse:open:<uid>", the user's lease set, into buf (n bytes). */
void		 open_key(char *buf, size_t n, int64_t uid);

/* The stream sid names, or NULL when it closed; W's, never to free. */
struct stream	*stream_find(uint64_t sid);

/* uid's streams, or NULL when it has none here; W's, never to free. */
struct user	*user_find(int64_t uid);

/* s (already in W) joins its user's list (s->uid set). */
void		 user_add(struct stream *s);

/* s must catch up from PostgreSQL (pump() starts it). */
void		 mark_dirty(struct stream *s);

/*
 * A stream for req, not yet open: in W's tables, with its deadline
 * (AUTH_MS) and req's close callback set.  W owns it: it goes with
 * stream_free(), stream_close() or stream_refuse().
 */
struct stream	*stream_new(struct evhttp_request *req);

/*
 * Frees s (no use of it after) and takes it out of W, its lease given
 * back, why in its log line and metrics.  Its connection is left as it
 * is: the caller's (stream_close, stream_refuse) or libevent's.
 */
void		 stream_free(struct stream *s, const char *why);

/*
 * Writes b (the caller's) to open stream s.  False when s was closed
 * (and freed) instead: its client stopped reading, or no memory.
 */
bool		 stream_write(struct stream *s, const struct keel_buf *b);

/* Notification id (item: one line of JSON, the caller's) to s; false
 * when s was closed (and freed) instead. */
bool		 stream_event(struct stream *s, int64_t id,
		    const char *item);

/* An event with no id (event, data: the caller's), then the end of s,
 * which is freed either way. */
void		 stream_last_word(struct stream *s, const char *event,
		    const char *data, const char *why);

/* s's session ended, or expired: the end event, and s freed. */
void		 stream_end(struct stream *s, bool expired);

/* -------------------------------------- replay.c: catching up from PG */

/* Starts the catch-up query of the dirty streams, if none is under way. */
void		 pump(void);

/* -------------------------------------------- live.c: live messages */

/* Every listed stream's session read again (W.verify set again when a
 * command connection is down). */
void		 verify_all(void);

/* The subscription's callback (redis.c sends PSUBSCRIBE with it):
 * a notification or a session's end, fanned out; reply is hiredis's. */
void		 on_pmessage(redisAsyncContext *ac, void *reply,
		    void *privdata);

/* ------------------------------------------ redis.c: the connections */

/* rc's retry timer's callback (arg: the rconn); stream_loop makes the
 * timers of W.cmd and W.sub with it. */
void		 on_rretry(evutil_socket_t fd, short what, void *arg);

/* Connects rc (not NULL, W's) now, or through sentinels once they say
 * where the master is. */
void		 rconn_start(struct rconn *rc);

/* Connects rc now: to the master the sentinels named last, to its
 * cluster node, or to REDIS_URL.  On failure, rconn_later(). */
void		 rconn_connect(struct rconn *rc);

/* rc is tried again after its backoff, doubled (none when leaving). */
void		 rconn_later(struct rconn *rc);

/*
 * The connection for commands on key (the caller's), NULL when none
 * is up or connecting.  W's: never freed by the caller.
 */
struct rconn	*cmd_for(const char *key);

/*
 * Runs script which on rc (from cmd_for) with one key and up to three
 * arguments (NULL: fewer), all copied by hiredis; fn(privdata) gets
 * the answer.  REDIS_OK when sent.
 */
int		 run_script(struct rconn *rc, enum script which,
		    redisCallbackFn *fn, void *privdata, const char *key,
		    const char *a1, const char *a2, const char *a3);

/* As run_script, with its arguments (numkeys first) in argv[argc]. */
int		 run_script_argv(struct rconn *rc, enum script which,
		    redisCallbackFn *fn, void *privdata, int argc,
		    const char **argv);

/* True when r (hiredis's, may be NULL) is a cluster's MOVED or ASK, the
 * slot map then marked to load again. */
bool		 redirected(const redisReply *r);

/* The callback of commands whose answer only matters if a redirect. */
void		 on_redirect(redisAsyncContext *ac, void *reply,
		    void *privdata);

/* An open needs the connections for its keys (either may be ""): those
 * down are tried now, at most every REDIS_WAKE_MS. */
void		 open_wake(const char *skey, const char *tkey);

/* ------------------------------------- sentinel.c: where the master is */

/* The lookup's timer, on base; before the first rconn_start(). */
void		 lookup_init(struct event_base *base);

/* rc (W's) waits for the sentinels' answer, then connects or backs off. */
void		 lookup_start(struct rconn *rc);

/* At exit: the sentinel asked now is left, and the timer freed. */
void		 lookup_stop(void);

/* ------------------------------------------------ open.c: an open */

/* The open's AUTH_MS passed (arg: its sid): 503. */
void		 on_deadline(evutil_socket_t fd, short what, void *arg);

/* The client of the stream arg names (its sid) went: s is freed. */
void		 on_close(struct evhttp_connection *evcon, void *arg);

/*
 * Refuses s (not open yet) with the error as reply_error() sends it,
 * and frees s.
 */
void		 stream_refuse(struct stream *s, int status, const char *code,
		    const char *msg, const char *retry_after);

/*
 * s is refused with status (401, 405) once its client's rate limits
 * are counted; s is freed then, now or from the limits' answer.
 */
void		 refuse_counted(struct stream *s, int status);

/* The answers to a bearer's session (HMGET) and to a ticket: their
 * privdata is the stream's sid. */
void		 on_auth_session(redisAsyncContext *ac, void *reply,
		    void *privdata);
void		 on_auth_ticket(redisAsyncContext *ac, void *reply,
		    void *privdata);

/*
 * The Redis keys of req's credentials into skey and tkey (either ""),
 * from its Authorization and query (the caller's, parsed).  False when
 * there is none, or one is no token.
 */
bool		 credentials(struct evhttp_request *req,
		    const struct evkeyvalq *query, char skey[SESS_KEY_MAX],
		    char tkey[KEEL_NOTIFY_TICKET_KEY_MAX]);

/*
 * True when req is a listed origin's CORS preflight, answered (204) with
 * a; false, nothing sent, for anything else.
 */
bool		 preflight(struct answer *a, struct evhttp_request *req);

#endif /* KEEL_STREAM_H */
