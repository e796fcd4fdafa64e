/* SPDX-License-Identifier: ISC */
/*
 * limit.c -- sliding-window rate limits in Redis (DESIGN.md, "Rate
 * limits"; API.md, "Rate limits").
 *
 * Each limiter of each client is a sorted set of the requests it admitted
 * inside the window, scored by Redis's clock in milliseconds.  One Lua
 * script checks every limiter that applies to a request and admits it
 * only when all agree, so 200 concurrent requests against a limit of 50
 * admit exactly 50 whatever the number of workers and hosts: Redis runs
 * the script atomically.  A denied request is not recorded (retrying
 * while limited does not push the wait further).  The auth limiter counts
 * failures only: the script merely reads it, and keel_limit_step_after()
 * records the attempt once the handler has answered with a failure.
 *
 * The same script reads the caller's session hash when the request has a
 * bearer token, so that limits key on the user and "who is calling" costs
 * no second round trip.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/redis.h"

#define KEY_PREFIX	"keel:rl:"
#define SESS_PREFIX	"keel:sess:"
#define TOKEN_MAX	256	/* longest bearer token we look up */
#define ADDR_MAX	64	/* "a:" + an address and its prefix length */

static const char *const names[KEEL_LIMIT__MAX] = {
	[KEEL_LIMIT_API] = "api",
	[KEEL_LIMIT_AUTH] = "auth",
	[KEEL_LIMIT_WRITE] = "write",
	[KEEL_LIMIT_READ] = "read",
};

/*
 * KEYS[1]: the session key or ""; KEYS[1 + i]: limiter i's key for an
 * anonymous caller.  ARGV[1]: this request's member (its id); ARGV[2]:
 * the number of limiters; ARGV[3]: the key prefix; then per limiter its
 * name, limit, window (ms) and flags (1: admitting consumes; 2: key on
 * the session's user when there is one).  Returns {admitted, uid, role,
 * exp, read-your-writes ms, then remaining and ms-to-reset per limiter};
 * uid, role and exp are nil without a live session.
 */
static struct keel_rscript check_script = { "limit_check",
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local uid, role, exp, ryw = false, false, false, 0\n"
"if KEYS[1] ~= '' then\n"
"  local s = redis.call('HMGET', KEYS[1], 'uid', 'role', 'exp')\n"
"  local e = tonumber(s[3])\n"
"  if s[1] and e and e > tonumber(t[1]) then\n"
"    uid, role, exp = s[1], s[2] or '', s[3]\n"
"    ryw = redis.call('PTTL', 'keel:ryw:' .. uid)\n"
"    if ryw < 0 then ryw = 0 end\n"
"  end\n"
"end\n"
"local n = tonumber(ARGV[2])\n"
"local keys, cnt, ok = {}, {}, 1\n"
"for i = 1, n do\n"
"  local b = 4 + (i - 1) * 4\n"
"  local k = KEYS[i + 1]\n"
"  if uid and tonumber(ARGV[b + 3]) >= 2 then\n"
"    k = ARGV[3] .. ARGV[b] .. ':u:' .. uid\n"
"  end\n"
"  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - tonumber(ARGV[b + 2]))\n"
"  keys[i] = k\n"
"  cnt[i] = redis.call('ZCARD', k)\n"
"  if cnt[i] >= tonumber(ARGV[b + 1]) then ok = 0 end\n"
"end\n"
"local out = {ok, uid, role, exp, ryw}\n"
"for i = 1, n do\n"
"  local b = 4 + (i - 1) * 4\n"
"  local lim, win = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])\n"
"  local k, c, rem, reset = keys[i], cnt[i], 0, win\n"
"  if c >= lim then\n"
"    local o = redis.call('ZRANGE', k, c - lim, c - lim, 'WITHSCORES')\n"
"    reset = tonumber(o[2]) + win - now\n"
"  else\n"
"    if ok == 1 and tonumber(ARGV[b + 3]) % 2 == 1 then\n"
"      redis.call('ZADD', k, now, ARGV[1])\n"
"      redis.call('PEXPIRE', k, win)\n"
"      c = c + 1\n"
"    end\n"
"    rem = lim - c\n"
"    if c > 0 then\n"
"      local o = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')\n"
"      reset = tonumber(o[2]) + win - now\n"
"    end\n"
"  end\n"
"  out[#out + 1] = rem\n"
"  out[#out + 1] = reset\n"
"end\n"
"return out\n",
	"" };

/* KEYS[1]: an auth limiter key; ARGV: member, window (ms). */
static struct keel_rscript fail_script = { "limit_fail",
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
"redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
"return 1\n",
	"" };

/* The configuration, parsed once per process (it is const after start). */
static struct {
	int	 ready;
	int	 limit[KEEL_LIMIT__MAX];	/* 0: off */
	int	 window[KEEL_LIMIT__MAX];	/* seconds */
	int	 fail_closed[KEEL_LIMIT__MAX];
} conf;

static unsigned long	 failed_open;	/* process lifetime, for the log */

/* What one request's limit step found; lives in the request's arena. */
struct keel_limit_state {
	int			 ran;		/* the script answered */
	size_t			 n;
	struct keel_limit_result res[KEEL_LIMIT__MAX];
	const char		*client;	/* "u:<id>" or "a:<addr>" */
	const char		*auth_key;	/* set when auth applies */
	int			 sess_asked;	/* a token was looked up */
	int			 sess_found;
	int64_t			 uid, exp, ryw_ms;
	const char		*role;
	const char		*sess_id;	/* token's SHA-256, hex */
};

const char *
keel_limit_name(enum keel_limiter l)
{
	return l < KEEL_LIMIT__MAX ? names[l] : "";
}

unsigned long
keel_limit_failed_open(void)
{
	return failed_open;
}

/* ------------------------------------------------------ pure helpers */

int
keel_limit_parse_rate(const char *s, int *limit, int *window)
{
	const char	*slash;
	char		 num[16];
	int64_t		 l, w;
	size_t		 n;

	if (strcmp(s, "off") == 0) {
		*limit = 0;
		*window = 1;
		return 0;
	}
	if ((slash = strchr(s, '/')) == NULL ||
	    (n = (size_t)(slash - s)) == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, s, n);
	num[n] = '\0';
	if (keel_parse_int64(num, 1, 1000000000, &l) == -1 ||
	    keel_parse_int64(slash + 1, 1, 86400, &w) == -1)
		return -1;
	*limit = (int)l;
	*window = (int)w;
	return 0;
}

/* Calls fn on each comma-separated item of s, trimmed; -1 stops. */
static int
each_item(const char *s, int (*fn)(const char *, size_t, void *), void *arg)
{
	const char	*e;
	size_t		 n;

	while (*s != '\0') {
		while (*s == ' ' || *s == '\t')
			s++;
		e = strchr(s, ',');
		n = e == NULL ? strlen(s) : (size_t)(e - s);
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n > 0 && fn(s, n, arg) == -1)
			return -1;
		if (e == NULL)
			break;
		s = e + 1;
	}
	return 0;
}

static int
name_ok(const char *s, size_t n, void *arg)
{
	int	 i;

	for (i = 0; i < KEEL_LIMIT__MAX; i++)
		if (strlen(names[i]) == n && strncmp(names[i], s, n) == 0) {
			if (arg != NULL)
				((int *)arg)[i] = 1;
			return 0;
		}
	return -1;
}

int
keel_limit_names_valid(const char *s)
{
	return each_item(s, name_ok, NULL);
}

/*
 * Parses an address (s, n bytes) into 16 bytes, IPv4 as IPv4-mapped
 * IPv6, so one comparison serves both.  *v4 tells which it was.
 */
static int
ip_parse(const char *s, size_t n, unsigned char ip[16], int *v4)
{
	char	 buf[INET6_ADDRSTRLEN + 1];

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, ip + 12) == 1) {
		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		*v4 = 1;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, ip) != 1)
		return -1;
	*v4 = ip[0] == 0 && memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) ==
	    0;
	return 0;
}

/* Parses "addr" or "addr/bits" into a network and its bits (of 128). */
static int
net_parse(const char *s, size_t n, unsigned char ip[16], int *bits)
{
	const char	*slash;
	char		 num[4];
	int64_t		 b;
	size_t		 an, bn;
	int		 v4;

	slash = memchr(s, '/', n);
	an = slash != NULL ? (size_t)(slash - s) : n;
	if (ip_parse(s, an, ip, &v4) == -1)
		return -1;
	*bits = 128;
	if (slash == NULL)
		return 0;
	bn = n - an - 1;
	if (bn == 0 || bn >= sizeof(num))
		return -1;
	memcpy(num, slash + 1, bn);
	num[bn] = '\0';
	if (keel_parse_int64(num, 0, v4 ? 32 : 128, &b) == -1)
		return -1;
	*bits = (int)b + (v4 ? 96 : 0);
	return 0;
}

static int
prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
	int	 full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)full) != 0)
		return 0;
	return rest == 0 ||
	    ((a[full] ^ b[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static int
proxy_ok(const char *s, size_t n, void *arg)
{
	unsigned char	 ip[16];
	int		 bits;

	(void)arg;
	return net_parse(s, n, ip, &bits);
}

int
keel_limit_proxies_valid(const char *s)
{
	return each_item(s, proxy_ok, NULL);
}

struct trust_match {
	const unsigned char	*ip;
	int			 found;
};

static int
trust_one(const char *s, size_t n, void *arg)
{
	struct trust_match	*m = arg;
	unsigned char		 net[16];
	int			 bits;

	if (net_parse(s, n, net, &bits) == 0 && prefix_eq(m->ip, net, bits)) {
		m->found = 1;
		return -1;		/* stop: found */
	}
	return 0;
}

static int
trusted_ip(const char *trusted, const unsigned char ip[16])
{
	struct trust_match	 m = { ip, 0 };

	if (trusted == NULL || *trusted == '\0')
		return 0;
	each_item(trusted, trust_one, &m);
	return m.found;
}

int
keel_limit_client_addr(const char *remote, const char *xff,
    const char *trusted, int v6_prefix, char *out, size_t n)
{
	unsigned char	 ip[16], hop[16];
	char		 txt[INET6_ADDRSTRLEN];
	const char	*end, *s, *p;
	size_t		 len, i;
	int		 v4, hv4, bits;

	if (ip_parse(remote, strlen(remote), ip, &v4) == -1) {
		/* Not an address (a unix socket peer): use it, made safe. */
		if (n < 3)
			return -1;
		for (i = 0; remote[i] != '\0' && i + 1 < n && i < ADDR_MAX;
		    i++)
			out[i] = isalnum((unsigned char)remote[i]) ||
			    strchr(".:_-", remote[i]) != NULL ? remote[i] : '_';
		out[i] = '\0';
		return 0;
	}
	/* Walk X-Forwarded-For from the right while the hops are ours. */
	if (xff != NULL && trusted_ip(trusted, ip)) {
		end = xff + strlen(xff);
		for (;;) {
			for (s = end; s > xff && s[-1] != ','; s--)
				continue;
			for (p = s; p < end && (*p == ' ' || *p == '\t'); p++)
				continue;
			len = (size_t)(end - p);
			while (len > 0 && (p[len - 1] == ' ' ||
			    p[len - 1] == '\t'))
				len--;
			/* Junk ends what we can believe: keep the last hop. */
			if (ip_parse(p, len, hop, &hv4) == -1)
				break;
			memcpy(ip, hop, 16);
			v4 = hv4;
			if (!trusted_ip(trusted, ip) || s == xff)
				break;
			end = s - 1;	/* the comma before this item */
		}
	}
	if (v4) {
		inet_ntop(AF_INET, ip + 12, txt, sizeof(txt));
		return snprintf(out, n, "%s", txt) < (int)n ? 0 : -1;
	}
	/* One allocation rotates its low bits freely: limit the prefix. */
	bits = v6_prefix;
	for (i = 0; i < 16; i++) {
		if (bits >= 8)
			bits -= 8;
		else {
			ip[i] &= (unsigned char)(0xff << (8 - bits));
			bits = 0;
		}
	}
	inet_ntop(AF_INET6, ip, txt, sizeof(txt));
	return snprintf(out, n, "%s/%d", txt, v6_prefix) < (int)n ? 0 : -1;
}

static long long
ceil_s(long long ms)
{
	return ms <= 0 ? 0 : (ms + 999) / 1000;
}

/*
 * A bounded string builder for the header values: what snprintf would
 * write, truncated alike, without its cost on every /api response.
 */
struct hbuf {
	char	*p;
	size_t	 cap, len;
};

static void
hb_put(struct hbuf *b, const char *s, size_t n)
{
	if (b->len + 1 >= b->cap)
		return;
	if (n > b->cap - 1 - b->len)
		n = b->cap - 1 - b->len;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
hb_str(struct hbuf *b, const char *s)
{
	hb_put(b, s, strlen(s));
}

static void
hb_int(struct hbuf *b, long long v)
{
	char			 num[24], *p = num + sizeof(num);
	unsigned long long	 u = v < 0 ? -(unsigned long long)v :
	    (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		*--p = '-';
	hb_put(b, p, (size_t)(num + sizeof(num) - p));
}

static void
hb_init(struct hbuf *b, char *p, size_t cap)
{
	b->p = p;
	b->cap = cap;
	b->len = 0;
	p[0] = '\0';
}

/* v in decimal into buf (n bytes), as snprintf "%lld" would. */
static void
fmt_ll(char *buf, size_t n, long long v)
{
	struct hbuf	 b;

	hb_init(&b, buf, n);
	hb_int(&b, v);
}

/* a, b and c (NULL: nothing) joined into the request's arena. */
static char *
arena_join(struct keel_arena *ar, const char *a, const char *b,
    const char *c)
{
	size_t	 na, nb, nc;
	char	*out;

	/* memcpy from NULL is undefined even for 0 bytes. */
	a = a != NULL ? a : "";
	b = b != NULL ? b : "";
	c = c != NULL ? c : "";
	na = strlen(a);
	nb = strlen(b);
	nc = strlen(c);

	out = keel_arena_alloc(ar, na + nb + nc + 1);
	memcpy(out, a, na);
	memcpy(out + na, b, nb);
	memcpy(out + na + nb, c, nc);
	out[na + nb + nc] = '\0';
	return out;
}

/* "u:<id>", the client key of a user. */
static char *
user_key(struct keel_arena *ar, int64_t uid)
{
	char	 num[24];

	fmt_ll(num, sizeof(num), (long long)uid);
	return arena_join(ar, "u:", num, NULL);
}

void
keel_limit_format(const struct keel_limit_result *res, size_t n,
    struct keel_limit_headers *h)
{
	struct hbuf	 b, pol, fld;
	size_t		 i, best = 0;

	for (i = 1; i < n; i++)
		if (res[i].remaining < res[best].remaining ||
		    (res[i].remaining == res[best].remaining &&
		    res[i].reset_ms > res[best].reset_ms))
			best = i;
	hb_init(&b, h->limit, sizeof(h->limit));
	hb_int(&b, res[best].limit);
	hb_init(&b, h->remaining, sizeof(h->remaining));
	hb_int(&b, res[best].remaining);
	hb_init(&b, h->reset, sizeof(h->reset));
	hb_int(&b, ceil_s(res[best].reset_ms));
	/* "api";q=100;w=900, ... and "api";r=99;t=900, ... */
	hb_init(&pol, h->policy, sizeof(h->policy));
	hb_init(&fld, h->fields, sizeof(h->fields));
	for (i = 0; i < n; i++) {
		if (i > 0) {
			hb_put(&pol, ", ", 2);
			hb_put(&fld, ", ", 2);
		}
		hb_put(&pol, "\"", 1);
		hb_str(&pol, names[res[i].which]);
		hb_put(&pol, "\";q=", 4);
		hb_int(&pol, res[i].limit);
		hb_put(&pol, ";w=", 3);
		hb_int(&pol, res[i].window);
		hb_put(&fld, "\"", 1);
		hb_str(&fld, names[res[i].which]);
		hb_put(&fld, "\";r=", 4);
		hb_int(&fld, res[i].remaining);
		hb_put(&fld, ";t=", 3);
		hb_int(&fld, ceil_s(res[i].reset_ms));
	}
}

/* ------------------------------------------------------- the step */

static void
conf_load(void)
{
	const struct keel_config *cfg = keel_config();
	const char	*spec[KEEL_LIMIT__MAX];
	int		 i;

	if (conf.ready)
		return;
	spec[KEEL_LIMIT_API] = cfg->rate_api;
	spec[KEEL_LIMIT_AUTH] = cfg->rate_auth;
	spec[KEEL_LIMIT_WRITE] = cfg->rate_write;
	spec[KEEL_LIMIT_READ] = cfg->rate_read;
	/* config.c validated every value at start. */
	for (i = 0; i < KEEL_LIMIT__MAX; i++)
		if (keel_limit_parse_rate(spec[i], &conf.limit[i],
		    &conf.window[i]) == -1)
			conf.limit[i] = 0;
	each_item(cfg->rate_fail_closed, name_ok, conf.fail_closed);
	conf.ready = 1;
}

/* Only /api is limited: /health, /routes and the rest are exempt. */
static int
is_api(const char *path)
{
	return strncmp(path, "/api", 4) == 0 &&
	    (path[4] == '/' || path[4] == '\0');
}

/* Login and password resets: the routes whose failures are counted. */
static int
is_auth_route(const struct keel_req *req)
{
	size_t	 n = strlen(req->path);

	if (strcmp(req->method, "POST") != 0)
		return 0;
	while (n > 1 && req->path[n - 1] == '/')
		n--;
	return (n >= 11 && strncmp(req->path + n - 11, "/auth/login", 11) ==
	    0) || strstr(req->path, "/auth/password-reset") != NULL;
}

/* The request-a-reset route answers 202 whatever happens: every attempt
 * counts there, or it could mail without bound. */
static int
is_reset_request(const struct keel_req *req)
{
	size_t	 n = strlen(req->path);

	while (n > 1 && req->path[n - 1] == '/')
		n--;
	return n >= 20 && strncmp(req->path + n - 20,
	    "/auth/password-reset", 20) == 0;
}

/*
 * The account an auth attempt names ("login" or "email" of its JSON
 * body), lower-cased and hashed; NULL when there is none.
 */
static const char *
auth_account(struct keel_req *req)
{
	struct json_object	*doc, *v;
	const char		*s;
	char			*low, *out = NULL, err[64];
	unsigned char		 h[16];
	size_t			 i, n;

	if (req->body == NULL || keel_json_parse(req->body, req->body_len,
	    &doc, err, sizeof(err)) != KEEL_OK)
		return NULL;
	if ((json_object_object_get_ex(doc, "login", &v) ||
	    json_object_object_get_ex(doc, "email", &v)) &&
	    json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		n = strlen(s);
		low = keel_arena_strndup(req->arena, s, n);
		for (i = 0; i < n; i++)
			low[i] = (char)tolower((unsigned char)low[i]);
		crypto_generichash(h, sizeof(h), (unsigned char *)low, n,
		    NULL, 0);
		out = keel_arena_alloc(req->arena, 2 * sizeof(h) + 1);
		sodium_bin2hex(out, 2 * sizeof(h) + 1, h, sizeof(h));
	}
	json_object_put(doc);
	return out;
}

/* The session key for req's bearer token, or NULL. */
static const char *
session_key(struct keel_req *req)
{
	const char	*auth, *tok;
	unsigned char	 h[crypto_hash_sha256_BYTES];
	char		*key;
	size_t		 i, n;

	if ((auth = keel_http_header(req, "Authorization")) == NULL ||
	    strncasecmp(auth, "Bearer ", 7) != 0)
		return NULL;
	for (tok = auth + 7; *tok == ' '; tok++)
		continue;
	n = strlen(tok);
	if (n == 0 || n > TOKEN_MAX)
		return NULL;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)tok[i]) && tok[i] != '-' &&
		    tok[i] != '_')
			return NULL;
	crypto_hash_sha256(h, (const unsigned char *)tok, n);
	key = keel_arena_alloc(req->arena, sizeof(SESS_PREFIX) + 2 * sizeof(h));
	memcpy(key, SESS_PREFIX, sizeof(SESS_PREFIX) - 1);
	sodium_bin2hex(key + sizeof(SESS_PREFIX) - 1, 2 * sizeof(h) + 1, h,
	    sizeof(h));
	return key;
}

static const char *
client_addr(struct keel_req *req)
{
	const struct keel_config *cfg = keel_config();
	char	 addr[ADDR_MAX];

	if (keel_limit_client_addr(req->remote_addr,
	    keel_http_header(req, "X-Forwarded-For"), cfg->trusted_proxies,
	    cfg->rate_ipv6_prefix, addr, sizeof(addr)) == -1)
		snprintf(addr, sizeof(addr), "unknown");
	return arena_join(req->arena, "a:", addr, NULL);
}

const char *
keel_limit_client(struct keel_req *req)
{
	if (req->limit != NULL && req->limit->client != NULL)
		return req->limit->client;
	if (req->user != NULL)
		return user_key(req->arena, req->user->id);
	return client_addr(req);
}

static void
add_headers(struct keel_req *req, const struct keel_limit_state *st)
{
	struct keel_limit_headers h;

	keel_limit_format(st->res, st->n, &h);
	keel_http_add_header(req, "RateLimit-Limit", h.limit);
	keel_http_add_header(req, "RateLimit-Remaining", h.remaining);
	keel_http_add_header(req, "RateLimit-Reset", h.reset);
	keel_http_add_header(req, "RateLimit-Policy", h.policy);
	keel_http_add_header(req, "RateLimit", h.fields);
}

static void
reply_limited(struct keel_req *req, const struct keel_limit_state *st)
{
	struct json_object	*o;
	long long		 wait = 1;
	size_t			 i;
	char			 s[24];

	/* The longest wait among the limiters that said no. */
	for (i = 0; i < st->n; i++)
		if (st->res[i].remaining == 0 &&
		    ceil_s(st->res[i].reset_ms) > wait)
			wait = ceil_s(st->res[i].reset_ms);
	snprintf(s, sizeof(s), "%lld", wait);
	add_headers(req, st);
	keel_http_add_header(req, "Retry-After", s);
	o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(
	    "rate_limited"));
	json_object_object_add(o, "message", json_object_new_string(
	    "too many requests; retry after the given number of seconds"));
	json_object_object_add(o, "retryAfter", json_object_new_int64(wait));
	keel_http_reply_json(req, 429, o);
	json_object_put(o);
}

/* Redis could not answer: let the request through, or not. */
static int
redis_down(struct keel_req *req, struct keel_limit_state *st)
{
	size_t	 i;

	for (i = 0; i < st->n; i++)
		if (conf.fail_closed[st->res[i].which]) {
			keel_log_warnx("limit: redis unavailable (%s); %s "
			    "limiter fails closed", keel_redis_errstr(
			    req->redis), names[st->res[i].which]);
			keel_http_add_header(req, "Retry-After", "5");
			keel_http_reply_error(req, 503, "unavailable",
			    "rate limits can't be checked right now; retry "
			    "later", NULL);
			return -1;
		}
	/* No metrics module yet: the count rides on the log line. */
	failed_open++;
	keel_log_warnx("limit: redis unavailable (%s); failing open "
	    "failed_open=%lu", keel_redis_errstr(req->redis), failed_open);
	return 0;
}

int
keel_limit_step(struct keel_req *req)
{
	const struct keel_config *cfg = keel_config();
	struct keel_limit_state	*st;
	struct keel_rreply	*rep = NULL;
	enum keel_limiter	 which[KEEL_LIMIT__MAX];
	const char		*argv[4 + 5 * KEEL_LIMIT__MAX], *sess, *acct;
	char			 num[KEEL_LIMIT__MAX][3][24];
	size_t			 n = 0, i;
	int			 argc, rc = 0, by_user;

	if (cfg == NULL || !cfg->ratelimit || !is_api(req->path))
		return 0;
	conf_load();
	if (conf.limit[KEEL_LIMIT_API] > 0)
		which[n++] = KEEL_LIMIT_API;
	if (conf.limit[KEEL_LIMIT_AUTH] > 0 && is_auth_route(req))
		which[n++] = KEEL_LIMIT_AUTH;
	if (strcmp(req->method, "GET") == 0 ||
	    strcmp(req->method, "HEAD") == 0) {
		if (conf.limit[KEEL_LIMIT_READ] > 0)
			which[n++] = KEEL_LIMIT_READ;
	} else if (conf.limit[KEEL_LIMIT_WRITE] > 0)
		which[n++] = KEEL_LIMIT_WRITE;
	if (n == 0)
		return 0;

	st = keel_arena_alloc(req->arena, sizeof(*st));
	memset(st, 0, sizeof(*st));
	req->limit = st;
	st->n = n;
	st->client = keel_limit_client(req);
	/* Auth's step may have run already; else the script reads it. */
	sess = req->user == NULL ? session_key(req) : NULL;
	st->sess_asked = sess != NULL;
	if (sess != NULL)
		st->sess_id = sess + sizeof(SESS_PREFIX) - 1;
	by_user = req->user == NULL;

	/* KEYS: the session, then each limiter's key for this client. */
	argc = 0;
	argv[argc++] = sess != NULL ? sess : "";
	for (i = 0; i < n; i++) {
		st->res[i].which = which[i];
		st->res[i].limit = conf.limit[which[i]];
		st->res[i].window = conf.window[which[i]];
		if (which[i] == KEEL_LIMIT_AUTH) {
			/* API.md: per client address + account. */
			acct = auth_account(req);
			st->auth_key = keel_arena_printf(req->arena,
			    KEY_PREFIX "auth:%s%s%s", client_addr(req),
			    acct != NULL ? ":" : "", acct != NULL ? acct : "");
			argv[argc++] = st->auth_key;
		} else
			argv[argc++] = arena_join(req->arena, KEY_PREFIX,
			    names[which[i]], arena_join(req->arena, ":",
			    st->client, NULL));
	}
	argv[argc++] = req->id;
	fmt_ll(num[0][0], sizeof(num[0][0]), (long long)n);
	argv[argc++] = num[0][0];
	argv[argc++] = KEY_PREFIX;
	for (i = 0; i < n; i++) {
		argv[argc++] = names[which[i]];
		fmt_ll(num[i][1], sizeof(num[i][1]), st->res[i].limit);
		argv[argc++] = num[i][1];
		fmt_ll(num[i][2], sizeof(num[i][2]),
		    (long long)st->res[i].window * 1000);
		argv[argc++] = num[i][2];
		argv[argc++] = which[i] == KEEL_LIMIT_AUTH ? "0" :
		    by_user ? "3" : "1";
	}
	if (keel_redis_eval(req->redis, &check_script, (int)n + 1, argc,
	    argv, NULL, &rep) != KEEL_OK || rep->type != KEEL_R_ARRAY ||
	    rep->nelem != 5 + 2 * n) {
		if (rep != NULL && rep->type == KEEL_R_ERROR)
			keel_log_error("limit: script: %s", rep->str);
		rc = redis_down(req, st);
		goto out;
	}
	st->ran = 1;
	if (rep->elem[1].type == KEEL_R_STR) {
		st->sess_found = 1;
		st->uid = strtoll(rep->elem[1].str, NULL, 10);
		st->role = keel_arena_strdup(req->arena, rep->elem[2].type ==
		    KEEL_R_STR ? rep->elem[2].str : "");
		st->exp = strtoll(rep->elem[3].str != NULL ? rep->elem[3].str :
		    "0", NULL, 10);
		st->ryw_ms = rep->elem[4].integer;
		st->client = user_key(req->arena, st->uid);
	}
	for (i = 0; i < n; i++) {
		st->res[i].remaining = rep->elem[5 + 2 * i].integer;
		st->res[i].reset_ms = rep->elem[6 + 2 * i].integer;
	}
	if (rep->elem[0].integer != 1) {
		reply_limited(req, st);
		rc = -1;
	}
out:
	keel_rreply_free(rep);
	return rc;
}

void
keel_limit_step_after(struct keel_req *req)
{
	struct keel_limit_state	*st = req->limit;
	struct keel_limit_headers h;
	struct keel_rreply	*rep = NULL;
	const char		*argv[3];
	char			 win[24];
	size_t			 i;
	int			 status;

	if (st == NULL)
		return;
	if (!st->ran) {
		/* Failed open: the policy is known, the counts are not. */
		keel_limit_format(st->res, st->n, &h);
		keel_http_add_header(req, "RateLimit-Policy", h.policy);
		return;
	}
	status = keel_http_status(req);
	for (i = 0; i < st->n; i++) {
		if (st->res[i].which != KEEL_LIMIT_AUTH)
			continue;
		if (!is_reset_request(req) && (status < 400 || status >= 500 ||
		    status == 429))
			continue;
		argv[0] = st->auth_key;
		argv[1] = req->id;
		snprintf(win, sizeof(win), "%lld",
		    (long long)st->res[i].window * 1000);
		argv[2] = win;
		if (keel_redis_eval(req->redis, &fail_script, 1, 3, argv, NULL,
		    &rep) == KEEL_OK && st->res[i].remaining > 0)
			st->res[i].remaining--;
		keel_rreply_free(rep);
		rep = NULL;
	}
	add_headers(req, st);
}

enum keel_err
keel_limit_session(const struct keel_req *req, struct keel_limit_session *out)
{
	const struct keel_limit_state *st = req->limit;

	if (st == NULL || !st->ran || !st->sess_asked)
		return KEEL_EUNAVAIL;
	if (!st->sess_found)
		return KEEL_ENOENT;
	out->uid = st->uid;
	out->role = st->role;
	out->exp = st->exp;
	out->ryw_ms = st->ryw_ms;
	out->id = st->sess_id;
	return KEEL_OK;
}
