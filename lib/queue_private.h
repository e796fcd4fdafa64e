/* SPDX-License-Identifier: ISC */
/*
 * queue_private.h -- what outbox.c and drain.c share with queue.c and
 * nothing else may use: the argument vector every queue script takes,
 * the key names, and the scripts that add jobs and retry dead letters.
 *
 * A script call is KEYS s d a c x r (queue.c's list), ARGV[1] the job
 * hash prefix, ARGV[2..10] the queue's policy, then the script's own
 * arguments (see the top of each lib/lua/queue_*.lua).
 */
#ifndef KEEL_QUEUE_PRIVATE_H
#define KEEL_QUEUE_PRIVATE_H

#include <stddef.h>

#include "keel/err.h"
#include "keel/redis.h"

struct keel_queue;
struct keel_redis;
struct keel_rreply;
struct keel_rscript;

/*
 * Queue name's key with suffix sfx ("s", "x", "j:", "*"), formatted with
 * KEEL_QUEUE_KEY_ARGS(r, name, sfx): in cluster mode the name is the
 * hash tag, "keel:q:{email}:s", so a queue's keys and its jobs' hashes
 * share a slot (redis.h).
 */
#define KEEL_QUEUE_KEY	"keel:q:%s%s%s:%s"
#define KEEL_QUEUE_KEY_ARGS(r, name, sfx) \
	KEEL_RTAG_L(r), (name), KEEL_RTAG_R(r), (sfx)

/* The arguments of one script call; the strings it points at are either
 * the caller's (keel_queue_args_str) or its own (keel_queue_args_fmt). */
struct keel_queue_args {
	const char	**av;
	size_t		 *al;
	int		  n, cap;
	char		**own;		/* strings we allocated */
	int		  nown;
};

/*
 * Starts a with queue name's keys, job prefix and policy q (name, not
 * q->name, so an outbox row naming an unknown queue keeps its name under
 * the default policy).  Free with keel_queue_args_free().
 */
void		 keel_queue_args_init(struct keel_queue_args *a,
		    const struct keel_redis *r, const struct keel_queue *q,
		    const char *name);
/* Appends s, borrowed: it must live until the call is made. */
void		 keel_queue_args_str(struct keel_queue_args *a, const char *s);
/* Appends a formatted copy that a owns. */
void		 keel_queue_args_fmt(struct keel_queue_args *a,
		    const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees what a holds and zeroes it; a zeroed a is fine too. */
void		 keel_queue_args_free(struct keel_queue_args *a);
/*
 * Runs script with a.  On KEEL_OK *out (caller frees) is the reply; a
 * script's error reply is logged and becomes KEEL_EINTERNAL, so *out is
 * never KEEL_R_ERROR.  KEEL_EUNAVAIL when Redis can't be reached.
 */
enum keel_err	 keel_queue_args_eval(struct keel_redis *r,
		    struct keel_rscript *script, struct keel_queue_args *a,
		    struct keel_rreply **out);

/* Element i of an array reply as an integer (0 when absent). */
long long	 keel_queue_reply_int(const struct keel_rreply *rep, size_t i);

/* The policy for name: its row, or the default for a queue the table
 * doesn't know (an outbox row may name one).  Never NULL. */
const struct keel_queue *keel_queue_policy(const char *name);

/* lib/lua/queue_enqueue.lua, shared so it is loaded once per
 * connection: ARGV the grace (KEEL_QUEUE_REUSE_GRACE_MS), then (key,
 * kind, payload, delay_ms, request id, origin) per job.  Answers per job
 * 1 added, 0 known and to run, 2 completed, 3 dead, 4 another origin's
 * job not replaceable yet (KEEL_QUEUE_ADD_*). */
extern struct keel_rscript keel_queue_script_enqueue;

/* The enqueue script's answers, per job. */
#define KEEL_QUEUE_ADD_KNOWN	0	/* known, still to run */
#define KEEL_QUEUE_ADD_ADDED	1
#define KEEL_QUEUE_ADD_DONE	2	/* known, completed */
#define KEEL_QUEUE_ADD_DEAD	3	/* known, dead-lettered */
#define KEEL_QUEUE_ADD_BUSY	4	/* another origin's, leased or just
					   completed or dead: ask again later */

/*
 * How long after another origin's job completed or died the enqueue
 * script may replace it (ms) when older code finished it: that code's
 * drainer marked outbox rows by key alone right after the finish or the
 * death -- one statement, bounded by KEEL_DB_STATEMENT_TIMEOUT (30 s by
 * default) and a reconnect (KEEL_DB_CONNECT_TIMEOUT), so ten minutes
 * leaves that mark no row of a new origin to hit.  This code's drainer
 * marks by key and origin (lib/drain.c) and says so in the hash (marks,
 * queue_prelude.lua), and its jobs are replaced at once: the grace
 * serves only a rolling upgrade and the day its hashes live after it.
 * Only a key whose id PostgreSQL reused waits for it.
 */
#define KEEL_QUEUE_REUSE_GRACE_MS	600000
/* lib/lua/queue_retry_failed.lua, outbox.c's: no ARGV of its own;
 * returns { dead letters read, then the key and origin ("" none) of
 * each job moved back... }. */
extern struct keel_rscript keel_queue_script_retry_failed;

#endif /* KEEL_QUEUE_PRIVATE_H */
