/* SPDX-License-Identifier: ISC */
/*
 * rcluster.c -- Redis Cluster's pure parts: slots, the key a command
 * routes by, redirects, the slot map (rcluster.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/rcluster.h"

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as the cluster
 * specification's keyHashSlot uses; "123456789" gives 0x31c3. */
static unsigned
crc16(const unsigned char *p, size_t len)
{
	unsigned	 crc = 0;
	size_t		 i;
	int		 b;

	for (i = 0; i < len; i++) {
		crc ^= (unsigned)p[i] << 8;
		for (b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) :
			    (crc << 1);
		crc &= 0xffff;
	}
	return crc;
}

unsigned
keel_rc_slot(const char *key, size_t len)
{
	const char	*open, *close;

	/* The tag: from the first '{' to the next '}', when not empty. */
	if ((open = memchr(key, '{', len)) != NULL &&
	    (close = memchr(open + 1, '}', len - (size_t)(open + 1 - key))) !=
	    NULL && close > open + 1)
		return crc16((const unsigned char *)open + 1,
		    (size_t)(close - open - 1)) & (KEEL_RC_SLOTS - 1);
	return crc16((const unsigned char *)key, len) & (KEEL_RC_SLOTS - 1);
}

static size_t
arglen(const char *const *argv, const size_t *argvlen, int i)
{
	return argvlen != NULL ? argvlen[i] : strlen(argv[i]);
}

static int
is(const char *const *argv, const size_t *argvlen, int i, const char *word)
{
	size_t	 n = strlen(word);

	return arglen(argv, argvlen, i) == n &&
	    strncasecmp(argv[i], word, n) == 0;
}

/* True when a glob pattern's hash tag holds no glob character, so every
 * key it matches shares the tag's slot. */
static int
pattern_tagged(const char *p, size_t len)
{
	const char	*open, *close, *c;

	if ((open = memchr(p, '{', len)) == NULL ||
	    (close = memchr(open + 1, '}', len - (size_t)(open + 1 - p))) ==
	    NULL || close == open + 1)
		return 0;
	for (c = p; c < close; c++)
		if (*c == '*' || *c == '?' || *c == '[' || *c == '\\')
			return 0;
	return 1;
}

int
keel_rc_cmd_key(int argc, const char *const *argv, const size_t *argvlen)
{
	static const char *const keyless[] = { "PING", "SCRIPT", "INFO",
	    "CLUSTER", "ASKING", "AUTH", "SELECT", "TIME", "DBSIZE",
	    "FLUSHALL", "FLUSHDB", "CONFIG", "CLIENT", "HELLO", "QUIT" };
	size_t	 i;
	int	 k;
	char	*end;
	long	 nkeys;

	if (argc < 2)
		return -1;
	for (i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++)
		if (is(argv, argvlen, 0, keyless[i]))
			return -1;
	if (is(argv, argvlen, 0, "EVALSHA") || is(argv, argvlen, 0, "EVAL")) {
		if (argc < 4)
			return -1;
		nkeys = strtol(argv[2], &end, 10);
		return nkeys > 0 ? 3 : -1;
	}
	if (is(argv, argvlen, 0, "XREAD") ||
	    is(argv, argvlen, 0, "XREADGROUP")) {
		for (k = 1; k + 1 < argc; k++)
			if (is(argv, argvlen, k, "STREAMS"))
				return k + 1;
		return -1;
	}
	if (is(argv, argvlen, 0, "SCAN")) {
		for (k = 2; k + 1 < argc; k++)
			if (is(argv, argvlen, k, "MATCH"))
				return pattern_tagged(argv[k + 1],
				    arglen(argv, argvlen, k + 1)) ? k + 1 : -1;
		return -1;
	}
	return 1;
}

/* "host:port" (the host may be empty, or an IPv6 address: the port is
 * after the last ':') into out. */
static int
parse_addr(const char *p, size_t len, struct keel_rc_redirect *out)
{
	const char	*colon = NULL, *c;
	long		 port = 0;

	for (c = p; c < p + len; c++)
		if (*c == ':')
			colon = c;
	if (colon == NULL || colon + 1 == p + len ||
	    (size_t)(colon - p) >= sizeof(out->host))
		return 0;
	for (c = colon + 1; c < p + len; c++) {
		if (*c < '0' || *c > '9')
			return 0;
		port = port * 10 + (*c - '0');
		if (port > 65535)
			return 0;
	}
	if (port == 0)
		return 0;
	memcpy(out->host, p, (size_t)(colon - p));
	out->host[colon - p] = '\0';
	out->port = (int)port;
	return 1;
}

enum keel_rc_redir
keel_rc_redirect_parse(const char *err, size_t len,
    struct keel_rc_redirect *out)
{
	enum keel_rc_redir	 kind;
	const char		*p, *end = err + len;
	unsigned long		 slot = 0;

	memset(out, 0, sizeof(*out));
	if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
		kind = KEEL_RC_MOVED;
		p = err + 6;
	} else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
		kind = KEEL_RC_ASK;
		p = err + 4;
	} else
		return KEEL_RC_NONE;
	if (p == end || *p < '0' || *p > '9')
		return KEEL_RC_NONE;
	for (; p < end && *p >= '0' && *p <= '9'; p++)
		if ((slot = slot * 10 + (unsigned long)(*p - '0')) >=
		    KEEL_RC_SLOTS)
			return KEEL_RC_NONE;
	if (p == end || *p != ' ')
		return KEEL_RC_NONE;
	p++;
	if (!parse_addr(p, (size_t)(end - p), out)) {
		memset(out, 0, sizeof(*out));
		return KEEL_RC_NONE;
	}
	out->slot = (unsigned)slot;
	return kind;
}

void
keel_rc_map_clear_slots(struct keel_rc_map *m)
{
	size_t	 i;

	for (i = 0; i < KEEL_RC_SLOTS; i++)
		m->slot[i] = -1;
}

void
keel_rc_map_reset(struct keel_rc_map *m)
{
	keel_rc_map_clear_slots(m);
	memset(m->node, 0, sizeof(m->node));
	m->nnodes = 0;
}

int
keel_rc_map_node(struct keel_rc_map *m, const char *host, int port)
{
	int	 i;

	if (strlen(host) >= KEEL_RC_HOST_MAX)
		return -1;
	for (i = 0; i < m->nnodes; i++)
		if (m->node[i].port == port && strcmp(m->node[i].host,
		    host) == 0)
			return i;
	if (m->nnodes == KEEL_RC_NODES_MAX)
		return -1;
	strcpy(m->node[m->nnodes].host, host);
	m->node[m->nnodes].port = port;
	return m->nnodes++;
}

void
keel_rc_map_assign(struct keel_rc_map *m, unsigned lo, unsigned hi, int n)
{
	unsigned	 s;

	if (n < 0 || n >= m->nnodes)
		return;
	for (s = lo; s <= hi && s < KEEL_RC_SLOTS; s++)
		m->slot[s] = (int16_t)n;
}

int
keel_rc_map_lookup(const struct keel_rc_map *m, unsigned slot)
{
	return slot < KEEL_RC_SLOTS ? m->slot[slot] : -1;
}

unsigned
keel_rc_map_covered(const struct keel_rc_map *m)
{
	unsigned	 s, n = 0;

	for (s = 0; s < KEEL_RC_SLOTS; s++)
		n += m->slot[s] >= 0;
	return n;
}
