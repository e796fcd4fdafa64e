/* SPDX-License-Identifier: ISC */
/* addr.h -- client addresses: CIDR blocks, trusted proxies, X-Forwarded-For. */
#ifndef KEEL_ADDR_H
#define KEEL_ADDR_H

#include <stdbool.h>
#include <stddef.h>

/* An address or a block: IPv4 as IPv4-mapped IPv6, so one compare serves. */
struct keel_net {
	unsigned char	 ip[16];
	int		 bits;		/* prefix length, of 128 */
};

/* How the address of a request's client is found (TRUSTED_PROXIES...). */
struct keel_addr_rule {
	struct keel_net	*trusted;	/* proxies whose X-Forwarded-For is
					   believed; owned by the config */
	size_t		 ntrusted;
	int		 v6_prefix;	/* bits an IPv6 client is counted by */
};

/* Room for any client text keel_addr_client() writes. */
#define KEEL_ADDR_MAX	64

/*
 * Parses "addr" or "addr/bits" (s, n bytes; IPv4 or IPv6) into *net.
 * False when it is neither.
 */
bool		 keel_addr_net_parse(const char *s, size_t n,
		    struct keel_net *net);

/*
 * Parses a comma-separated list of addresses and CIDR blocks ("" is an
 * empty list) into a new array *nets (caller frees with free(3)) of *n.
 * False, with nothing allocated, when an item is neither.
 */
bool		 keel_addr_nets_parse(const char *list, struct keel_net **nets,
		    size_t *n);

/* True when ip (16 bytes, as in struct keel_net) is inside net. */
bool		 keel_addr_in(const unsigned char ip[16],
		    const struct keel_net *net);

/* True when remote (the peer lighttpd saw) is one of rule's trusted
 * proxies. */
bool		 keel_addr_trusted(const struct keel_addr_rule *rule,
		    const char *remote);

/*
 * For a process behind lighttpd's mod_proxy (the stream app), whose peer
 * is lighttpd itself: true when the last entry of xff, the address
 * lighttpd saw and appended, is one of rule's trusted proxies -- what
 * keel_addr_trusted() tells an app of its REMOTE_ADDR.  False for a
 * missing header or an entry that is no address.
 */
bool		 keel_addr_last_hop_trusted(const struct keel_addr_rule *rule,
		    const char *xff);

/*
 * The client address for keys, into out.  remote is the peer lighttpd
 * saw; xff the X-Forwarded-For header (may be NULL), believed only when
 * remote is one of rule's trusted proxies: then the rightmost entry that
 * is not a trusted proxy is the client.  IPv6 addresses are cut to their
 * first rule->v6_prefix bits ("2001:db8::/56"); IPv4-mapped IPv6 counts
 * as IPv4.  A peer that is no address (a unix socket) is used as it is,
 * with unsafe bytes replaced.  False when the result does not fit.
 */
bool		 keel_addr_client(const struct keel_addr_rule *rule,
		    const char *remote, const char *xff,
		    char out[KEEL_ADDR_MAX]);

/*
 * The request headers besides X-Forwarded-For that a proxy forwarding a
 * request sets (RFC 7239's Forwarded; X-Real-IP; X-Forwarded-Host and
 * -Proto), NULL-terminated.  keel reads the client from none of them:
 * a request carrying one was forwarded by something that names its
 * client in a way keel doesn't read.
 */
extern const char *const keel_addr_forward_headers[];

/*
 * True when the client, found as keel_addr_client() finds it (through
 * the trusted proxies' X-Forwarded-For), is this host: 127.0.0.0/8 or
 * ::1.  A request a local proxy forwards for someone else is not local,
 * and neither is one forwarded by a proxy not trusted (a non-empty xff
 * from an untrusted peer: the client can't be known), nor one with
 * other set (it carries a non-empty keel_addr_forward_headers[] header,
 * trusted peer or not: its client can't be known either).  False for a
 * peer that is no address.
 */
bool		 keel_addr_client_local(const struct keel_addr_rule *rule,
		    const char *remote, const char *xff, bool other);

#endif /* KEEL_ADDR_H */
