/* SPDX-License-Identifier: ISC */
/* redis.h -- the worker's Redis connection: connect, timeouts, reconnect. */
#ifndef KEEL_REDIS_H
#define KEEL_REDIS_H

#include <stddef.h>

#include "keel/err.h"

struct keel_config;
struct keel_redis;		/* opaque: owns the hiredis context */

enum keel_rtype {
	KEEL_R_NIL,
	KEEL_R_INT,
	KEEL_R_STR,		/* bulk or status string */
	KEEL_R_ARRAY,
	KEEL_R_ERROR,		/* an error reply (e.g. from a script) */
};

/*
 * A Redis reply copied out of hiredis (plain data: redisReply never leaves
 * redis.c).  One allocation; free with keel_rreply_free().
 */
struct keel_rreply {
	enum keel_rtype		 type;
	long long		 integer;	/* KEEL_R_INT */
	char			*str;		/* STR, ERROR: NUL-terminated */
	size_t			 len;		/* bytes in str */
	struct keel_rreply	*elem;		/* ARRAY: nelem replies */
	size_t			 nelem;
};

/* A Lua script, loaded once per connection and run by EVALSHA. */
struct keel_rscript {
	const char	*name;		/* for logs */
	const char	*lua;
	char		 sha[41];	/* filled by lib on first use */
};

/*
 * Connects lazily on first use.  Never NULL.  With REDIS_CLUSTER=1 the
 * handle is a cluster client (redis.c's top comment): every command,
 * script and pipeline goes to the master of its (first) key's slot.
 */
struct keel_redis *keel_redis_open(const struct keel_config *);
/*
 * True for a cluster handle (r may be NULL: false).  Key names differ by
 * one thing in cluster mode: the part naming what keys belong together
 * (a user, a queue, a board, a client) is wrapped in braces, a hash tag,
 * so a script's keys share one slot: "keel:user-sess:{42}" where a
 * single Redis has "keel:user-sess:42" (names there are unchanged, so
 * an upgrade moves no data).  KEEL_RTAG_L/R give the braces or "".
 */
int		 keel_redis_is_cluster(const struct keel_redis *r);
#define KEEL_RTAG_L(r)	(keel_redis_is_cluster(r) ? "{" : "")
#define KEEL_RTAG_R(r)	(keel_redis_is_cluster(r) ? "}" : "")
/* r may be NULL. */
void		 keel_redis_close(struct keel_redis *r);
/*
 * PING within timeout_ms (connecting if needed).  KEEL_EUNAVAIL when
 * Redis can't be reached; the handle reconnects on the next call.
 */
enum keel_err	 keel_redis_ping(struct keel_redis *r, int timeout_ms);
const char	*keel_redis_errstr(const struct keel_redis *r);

/*
 * Runs one command given as argc arguments (argvlen[i] bytes each; NULL
 * argvlen means NUL-terminated strings).  On KEEL_OK *out (caller frees;
 * may be NULL to ignore the reply) holds the reply, which may itself be
 * KEEL_R_ERROR.  KEEL_EUNAVAIL when Redis can't be reached or timed out
 * (the next call reconnects).
 */
enum keel_err	 keel_redis_cmd(struct keel_redis *r, int argc,
		    const char **argv, const size_t *argvlen,
		    struct keel_rreply **out);

/*
 * EVALSHA of script with nkeys keys then the other arguments, loading the
 * script when Redis doesn't know it (first use, or after a restart or
 * SCRIPT FLUSH).  Same results as keel_redis_cmd().
 */
enum keel_err	 keel_redis_eval(struct keel_redis *r,
		    struct keel_rscript *script, int nkeys, int argc,
		    const char **argv, const size_t *argvlen,
		    struct keel_rreply **out);

/*
 * keel_redis_cmd() with its own timeout (milliseconds) for this command,
 * for blocking reads (XREAD BLOCK n with timeout_ms > n).
 */
enum keel_err	 keel_redis_cmd_timeout(struct keel_redis *r, int timeout_ms,
		    int argc, const char **argv, const size_t *argvlen,
		    struct keel_rreply **out);

/*
 * Pipelining, for bulk loads: keel_redis_send() sends one command
 * without reading its reply, so Redis works on it while the caller
 * does something else; keel_redis_recv() reads the oldest unread reply
 * into *out (caller frees; it may be KEEL_R_ERROR), keel_redis_wait()
 * every unread one (KEEL_EINTERNAL when one was an error, the first is
 * logged), and keel_redis_pending() says how many are unread.  No other
 * command may run while some are (KEEL_EINTERNAL).  KEEL_EUNAVAIL when
 * Redis can't be reached or timed out: the unread commands are lost with
 * the connection (the caller starts over: nothing is resent).
 */
enum keel_err	 keel_redis_send(struct keel_redis *r, int argc,
		    const char **argv, const size_t *argvlen);
enum keel_err	 keel_redis_recv(struct keel_redis *r,
		    struct keel_rreply **out);
size_t		 keel_redis_pending(const struct keel_redis *r);
enum keel_err	 keel_redis_wait(struct keel_redis *r);

/* rep may be NULL. */
void		 keel_rreply_free(struct keel_rreply *rep);

/*
 * Cluster mode, for a client of its own (the stream app's, on hiredis's
 * async API): the master serving key's slot (len bytes), its host into
 * host (n bytes) and its port into *port, the map loaded first when it
 * is stale (blocking, the usual timeouts).  KEEL_EUNAVAIL when no node
 * gave a map; KEEL_EINTERNAL when r is not a cluster handle.
 * keel_redis_map_stale() has the map loaded again at the next call (the
 * caller saw a MOVED or ASK).
 */
enum keel_err	 keel_redis_node_of(struct keel_redis *r, const char *key,
		    size_t len, char *host, size_t n, int *port);
void		 keel_redis_map_stale(struct keel_redis *r);

#endif /* KEEL_REDIS_H */
