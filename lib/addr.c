/* SPDX-License-Identifier: ISC */
/*
 * addr.c -- client addresses for rate-limit and idempotency keys.
 *
 * Every address is held as 16 bytes, IPv4 as IPv4-mapped IPv6, so a CIDR
 * block test is one prefix compare whatever the family.  The configured
 * proxies are parsed once, at start (config.c), never per request.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/addr.h"
#include "keel/mem.h"
#include "keel/text.h"

/* Parses an address (s, n bytes) into ip; *v4 tells which family. */
static bool
ip_parse(const char *s, size_t n, unsigned char ip[16], bool *v4)
{
	char	 buf[INET6_ADDRSTRLEN + 1];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, ip + 12) == 1) {
		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		*v4 = true;
		return true;
	}
	if (inet_pton(AF_INET6, buf, ip) != 1)
		return false;
	*v4 = memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
	return true;
}

bool
keel_addr_net_parse(const char *s, size_t n, struct keel_net *net)
{
	const char	*slash;
	char		 num[4];
	int64_t		 b;
	size_t		 an, bn;
	bool		 v4;

	slash = memchr(s, '/', n);
	an = slash != NULL ? (size_t)(slash - s) : n;
	if (!ip_parse(s, an, net->ip, &v4))
		return false;
	net->bits = 128;
	if (slash == NULL)
		return true;
	bn = n - an - 1;
	if (bn == 0 || bn >= sizeof(num))
		return false;
	memcpy(num, slash + 1, bn);
	num[bn] = '\0';
	if (!keel_parse_int64(num, 0, v4 ? 32 : 128, &b))
		return false;
	net->bits = (int)b + (v4 ? 96 : 0);
	return true;
}

struct nets {
	struct keel_net	*v;
	size_t		 n, cap;
};

static bool
nets_add(const char *s, size_t n, void *arg)
{
	struct nets	*a = arg;

	if (a->n == a->cap) {
		a->cap = a->cap == 0 ? 4 : a->cap * 2;
		a->v = keel_realloc(a->v, a->cap * sizeof(*a->v));
	}
	if (!keel_addr_net_parse(s, n, &a->v[a->n]))
		return false;
	a->n++;
	return true;
}

bool
keel_addr_nets_parse(const char *list, struct keel_net **nets, size_t *n)
{
	struct nets	 a = { NULL, 0, 0 };

	if (!keel_text_each(list, nets_add, &a)) {
		free(a.v);
		return false;
	}
	*nets = a.v;
	*n = a.n;
	return true;
}

bool
keel_addr_in(const unsigned char ip[16], const struct keel_net *net)
{
	int	 full = net->bits / 8, rest = net->bits % 8;

	if (memcmp(ip, net->ip, (size_t)full) != 0)
		return false;
	return rest == 0 ||
	    ((ip[full] ^ net->ip[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static bool
trusted(const struct keel_addr_rule *rule, const unsigned char ip[16])
{
	size_t	 i;

	for (i = 0; i < rule->ntrusted; i++)
		if (keel_addr_in(ip, &rule->trusted[i]))
			return true;
	return false;
}

/* A peer that is no address (a unix socket): kept, made safe for keys. */
static bool
not_an_address(const char *remote, char out[KEEL_ADDR_MAX])
{
	size_t	 i;

	for (i = 0; remote[i] != '\0' && i + 1 < KEEL_ADDR_MAX; i++)
		out[i] = isalnum((unsigned char)remote[i]) ||
		    strchr(".:_-", remote[i]) != NULL ? remote[i] : '_';
	out[i] = '\0';
	return true;
}

/*
 * Walks X-Forwarded-For from the right while the hops are trusted
 * proxies; ip becomes the first hop that is not (or the last good one).
 */
static void
walk_forwarded(const struct keel_addr_rule *rule, const char *xff,
    unsigned char ip[16], bool *v4)
{
	unsigned char	 hop[16];
	const char	*end, *s, *p;
	size_t		 len;
	bool		 hv4;

	end = xff + strlen(xff);
	for (;;) {
		for (s = end; s > xff && s[-1] != ','; s--)
			continue;
		for (p = s; p < end && (*p == ' ' || *p == '\t'); p++)
			continue;
		len = (size_t)(end - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		/* Junk ends what we can believe: keep the last hop. */
		if (!ip_parse(p, len, hop, &hv4))
			break;
		memcpy(ip, hop, 16);
		*v4 = hv4;
		if (!trusted(rule, ip) || s == xff)
			break;
		end = s - 1;	/* the comma before this item */
	}
}

bool
keel_addr_trusted(const struct keel_addr_rule *rule, const char *remote)
{
	unsigned char	 ip[16];
	bool		 v4;

	return remote != NULL && ip_parse(remote, strlen(remote), ip, &v4) &&
	    trusted(rule, ip);
}

bool
keel_addr_last_hop_trusted(const struct keel_addr_rule *rule, const char *xff)
{
	unsigned char	 ip[16];
	const char	*s, *end;
	bool		 v4;

	if (xff == NULL)
		return false;
	end = xff + strlen(xff);
	for (s = end; s > xff && s[-1] != ','; s--)
		continue;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return ip_parse(s, (size_t)(end - s), ip, &v4) && trusted(rule, ip);
}

/*
 * Host and Proto name no client, but a proxy that sets only them (or
 * only X-Real-IP) would otherwise pass off everyone it forwards as
 * this host.
 */
const char *const keel_addr_forward_headers[] = {
	"Forwarded", "X-Real-IP", "X-Forwarded-Host", "X-Forwarded-Proto",
	NULL
};

bool
keel_addr_client_local(const struct keel_addr_rule *rule, const char *remote,
    const char *xff, bool other)
{
	static const unsigned char loop6[16] = { [15] = 1 };
	unsigned char	 ip[16];
	bool		 v4;

	if (other || remote == NULL ||
	    !ip_parse(remote, strlen(remote), ip, &v4))
		return false;
	if (xff != NULL && *xff != '\0') {
		/* Forwarded: by a proxy we don't believe, for someone we
		 * can't know. */
		if (!trusted(rule, ip))
			return false;
		walk_forwarded(rule, xff, ip, &v4);
	}
	return v4 ? ip[12] == 127 : memcmp(ip, loop6, sizeof(ip)) == 0;
}

bool
keel_addr_client(const struct keel_addr_rule *rule, const char *remote,
    const char *xff, char out[KEEL_ADDR_MAX])
{
	unsigned char	 ip[16];
	char		 txt[INET6_ADDRSTRLEN], bits[KEEL_TEXT_INT_MAX];
	size_t		 i;
	int		 left;
	bool		 v4;

	if (!ip_parse(remote, strlen(remote), ip, &v4))
		return not_an_address(remote, out);
	if (xff != NULL && trusted(rule, ip))
		walk_forwarded(rule, xff, ip, &v4);
	if (v4) {
		inet_ntop(AF_INET, ip + 12, txt, sizeof(txt));
		return snprintf(out, KEEL_ADDR_MAX, "%s", txt) <
		    KEEL_ADDR_MAX;
	}
	/* One allocation rotates its low bits freely: limit the prefix. */
	left = rule->v6_prefix;
	for (i = 0; i < 16; i++) {
		if (left >= 8)
			left -= 8;
		else {
			ip[i] &= (unsigned char)(0xff << (8 - left));
			left = 0;
		}
	}
	inet_ntop(AF_INET6, ip, txt, sizeof(txt));
	keel_text_int(bits, rule->v6_prefix);
	return snprintf(out, KEEL_ADDR_MAX, "%s/%s", txt, bits) <
	    KEEL_ADDR_MAX;
}
