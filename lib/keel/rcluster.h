/* SPDX-License-Identifier: ISC */
/*
 * rcluster.h -- Redis Cluster's pure parts, for redis.c's cluster mode
 * (REDIS_CLUSTER=1): a key's hash slot, the key a command routes by, a
 * MOVED or ASK redirect, and the map of slots to nodes.  No I/O.
 */
#ifndef KEEL_RCLUSTER_H
#define KEEL_RCLUSTER_H

#include <stddef.h>
#include <stdint.h>

#define KEEL_RC_SLOTS		16384
#define KEEL_RC_NODES_MAX	64	/* masters a process talks to */
#define KEEL_RC_HOST_MAX	256	/* bytes of a node's host, NUL too */

/*
 * The hash slot of key (len bytes), as the cluster specification says:
 * CRC16 (XMODEM) of the key mod 16384, or of its hash tag when it has
 * one (the bytes between the first '{' and the next '}', when there are
 * some), so keys with the same tag share a slot.
 */
unsigned	keel_rc_slot(const char *key, size_t len);

/*
 * Which argument of a command names the key it must run with: 1 for
 * most commands, the first key of EVAL/EVALSHA (none when numkeys is
 * 0), the first stream of XREAD/XREADGROUP, SCAN's MATCH pattern when it
 * has a hash tag (a pattern without one has no slot).  -1: none (PING,
 * SCRIPT, INFO, ...): any node will do.
 */
int		keel_rc_cmd_key(int argc, const char *const *argv,
		    const size_t *argvlen);

enum keel_rc_redir {
	KEEL_RC_NONE,		/* not a redirect */
	KEEL_RC_MOVED,		/* the slot lives there now: update the map */
	KEEL_RC_ASK,		/* this once, there (a slot being migrated) */
};

struct keel_rc_redirect {
	unsigned	 slot;
	char		 host[KEEL_RC_HOST_MAX];
	int		 port;
};

/*
 * An error reply's text (len bytes): "MOVED <slot> <host>:<port>" or
 * "ASK <slot> <host>:<port>" (the host may be empty: the node that
 * answered, whose host the caller knows) into *out.  KEEL_RC_NONE for
 * anything else, malformed ones included.
 */
enum keel_rc_redir keel_rc_redirect_parse(const char *err, size_t len,
		    struct keel_rc_redirect *out);

struct keel_rc_node {
	char	 host[KEEL_RC_HOST_MAX];
	int	 port;
};

/* The slot map: which node (an index into node) serves each slot. */
struct keel_rc_map {
	int16_t			 slot[KEEL_RC_SLOTS];	/* -1: unknown */
	struct keel_rc_node	 node[KEEL_RC_NODES_MAX];
	int			 nnodes;
};

/* Forgets every slot, keeping the nodes (callers index by them). */
void		keel_rc_map_clear_slots(struct keel_rc_map *m);
/* Forgets everything. */
void		keel_rc_map_reset(struct keel_rc_map *m);
/* The index of node host:port, added if new; -1 when the table is full. */
int		keel_rc_map_node(struct keel_rc_map *m, const char *host,
		    int port);
/* Slots lo..hi (inclusive, clamped) are served by node n. */
void		keel_rc_map_assign(struct keel_rc_map *m, unsigned lo,
		    unsigned hi, int n);
/* The node serving slot, or -1 when unknown. */
int		keel_rc_map_lookup(const struct keel_rc_map *m, unsigned slot);
/* How many slots have a node (16384 when the map is whole). */
unsigned	keel_rc_map_covered(const struct keel_rc_map *m);

#endif /* KEEL_RCLUSTER_H */
