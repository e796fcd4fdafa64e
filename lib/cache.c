/* SPDX-License-Identifier: ISC */
/*
 * cache.c -- memcached through libmemcached: namespaces, generations,
 * single-flight refills.
 *
 * Servers come from MEMCACHED_SERVERS and keys spread over them by
 * consistent hashing (ketama), so adding a server moves few keys.  Short
 * timeouts everywhere: losing the cache must only cost speed.  At its
 * end, the operator's listing of the generations each server holds.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmemcached/memcached.h>
#include <sodium.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/gzip.h"
#include "keel/http.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"

#define CACHE_TIMEOUT_MS	250

/* The one lookup a prefetch may leave pending (keel_cache_prefetch). */
enum pf_state {
	PF_NONE,
	PF_SENT,	/* mget sent, answer unread */
	PF_FAILED,	/* mget failed: the lookup is KEEL_EUNAVAIL */
};

struct keel_cache {
	memcached_st	*mc;
	bool		 on;		/* KEEL_CACHE: answers are cached */
	enum pf_state	 pf;
	size_t		 pf_lens[2];
	char		 pf_gk[KEEL_CACHE_KEY_MAX];
	char		 pf_ek[KEEL_CACHE_KEY_MAX];
};

static void	 pf_drain(struct keel_cache *);

struct keel_cache *
keel_cache_open(const struct keel_config *cfg)
{
	struct keel_cache	*c;
	memcached_server_st	*list;
	memcached_return_t	 rc;

	c = keel_calloc(1, sizeof(*c));
	c->on = cfg->cache != 0;
	if ((c->mc = memcached_create(NULL)) == NULL)
		keel_log_fatalx("memcached_create failed");
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_DISTRIBUTION,
	    MEMCACHED_DISTRIBUTION_CONSISTENT);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
	/*
	 * The text protocol: libmemcached sends a binary multi-get as quiet
	 * gets and then a NOOP in a second write, so memcached wakes twice
	 * and answers in two pieces; the text "get k1 k2" is one write each
	 * way, like a single get (strace of a cached GET: 2+2 -> 1+1).
	 */
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 0);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
	    CACHE_TIMEOUT_MS);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
	    CACHE_TIMEOUT_MS);
	/* A dead server is retried after 2 s rather than on every call. */
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 2);
	list = memcached_servers_parse(cfg->memcached_servers);
	if (list == NULL)
		keel_log_warnx("cache: MEMCACHED_SERVERS lists no server");
	else {
		if ((rc = memcached_server_push(c->mc, list)) !=
		    MEMCACHED_SUCCESS)
			keel_log_warnx("cache: %s", memcached_strerror(c->mc,
			    rc));
		memcached_server_list_free(list);
	}
	return c;
}

void
keel_cache_close(struct keel_cache *c)
{
	if (c == NULL)
		return;
	memcached_free(c->mc);
	free(c);
}

enum keel_err
keel_cache_ping(struct keel_cache *c, int timeout_ms)
{
	memcached_return_t	 rc;
	uint32_t		 flags;
	size_t			 len;
	char			*v;

	if (memcached_server_count(c->mc) == 0)
		return KEEL_EUNAVAIL;
	pf_drain(c);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
	    (uint64_t)timeout_ms);
	/* A get of a key nobody sets: NOTFOUND proves a round trip. */
	v = memcached_get(c->mc, "keel:ping", 9, &len, &flags, &rc);
	free(v);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
	    CACHE_TIMEOUT_MS);
	if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND)
		return KEEL_OK;
	return KEEL_EUNAVAIL;
}

enum keel_err
keel_cache_stats(struct keel_cache *c, uint64_t *hits, uint64_t *misses)
{
	memcached_stat_st	*st;
	memcached_return_t	 rc;
	uint32_t		 i, n;

	*hits = *misses = 0;
	if ((n = memcached_server_count(c->mc)) == 0)
		return KEEL_EUNAVAIL;
	pf_drain(c);
	st = memcached_stat(c->mc, NULL, &rc);
	if (st == NULL)
		return KEEL_EUNAVAIL;
	for (i = 0; i < n; i++) {
		*hits += st[i].get_hits;
		*misses += st[i].get_misses;
	}
	memcached_stat_free(c->mc, st);
	return rc == MEMCACHED_SUCCESS ? KEEL_OK : KEEL_EUNAVAIL;
}

/*
 * Namespaces and generations (DESIGN.md, "Caching").
 *
 * A namespace's generation is a decimal counter under "keel:g:<ns>"; an
 * entry "keel:v:<ns>:<hash of key>" holds a 24-byte header (the
 * generation it was computed under, the unix second it goes stale and
 * the length of the identity form, all big-endian) and then the answer's
 * forms (struct keel_cache_entry).  A lookup multi-gets both keys in one
 * round trip; the entry counts only when its generation is the current
 * one, so invalidating is one incr, whatever forms the entry holds.  When
 * the generation key is gone (evicted, flushed, never set) it is
 * re-created with a random 62-bit value rather than 0 or 1, so no entry
 * stored under an earlier life of the counter can match it again.  (The
 * entries of a build before the gzip form were "keel:e:" keys: a host
 * still running one during an upgrade reads and writes its own.)
 */
#define ENTRY_KIND	'v'	/* keel_cache_key's kind of an entry */
#define ENTRY_HEAD	24	/* generation, stale-at, identity length */
#define LOCK_EXPIRY	3	/* seconds: a dead filler blocks no longer */
#define WAIT_STEP_MS	20	/* a waiter re-reads this often ... */
#define WAIT_STEPS	5	/* ... this many times, then fills itself */

static int
ns_valid(const char *ns)
{
	size_t	 i, n = strlen(ns);

	if (n == 0 || n > KEEL_CACHE_NS_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)ns[i]) && ns[i] != ':' &&
		    ns[i] != '_' && ns[i] != '.' && ns[i] != '-')
			return 0;
	return 1;
}

size_t
keel_cache_key(char *buf, size_t n, char kind, const char *ns,
    const char *key)
{
	unsigned char	 h[16];
	size_t		 len, i;

	if (n < KEEL_CACHE_KEY_MAX || !ns_valid(ns))
		return 0;
	/* "keel:<kind>:<ns>"; ns_valid bounds ns well below n. */
	memcpy(buf, "keel:", 5);
	buf[5] = kind;
	buf[6] = ':';
	len = strlen(ns);
	memcpy(buf + 7, ns, len + 1);
	len += 7;
	if (kind == 'g')
		return len;
	/* Client text never reaches memcached: 128 bits of BLAKE2b do. */
	crypto_generichash(h, sizeof(h), (const unsigned char *)key,
	    strlen(key), NULL, 0);
	buf[len++] = ':';
	for (i = 0; i < sizeof(h); i++) {
		buf[len++] = "0123456789abcdef"[h[i] >> 4];
		buf[len++] = "0123456789abcdef"[h[i] & 0xf];
	}
	buf[len] = '\0';
	return len;
}

size_t
keel_cache_user_ns(char *buf, size_t n, const char *ns, int64_t uid)
{
	int	 len;

	len = snprintf(buf, n, "%s:user:%lld", ns, (long long)uid);
	if (len < 0 || (size_t)len >= n || len > KEEL_CACHE_NS_MAX) {
		if (n > 0)
			buf[0] = '\0';
		return 0;
	}
	return (size_t)len;
}

static uint64_t
fresh_gen(void)
{
	uint64_t	 g;

	randombytes_buf(&g, sizeof(g));
	/* Room for 2^62 increments, never 0 (0 means "don't store"). */
	return (g >> 2) | 1;
}

static void
put_be64(unsigned char *p, uint64_t v)
{
	int	 i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

static uint64_t
get_be64(const unsigned char *p)
{
	uint64_t	 v = 0;
	int		 i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int
parse_gen(const char *s, size_t len, uint64_t *out)
{
	char	 tmp[24];
	char	*end;

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	/* memcached pads an incremented value with spaces: stop there. */
	*out = strtoull(tmp, &end, 10);
	return end == tmp ? -1 : 0;
}

/* Re-creates a missing generation; *gen 0 when it can't be known. */
static void
gen_create(struct keel_cache *c, const char *gk, size_t gklen, uint64_t *gen)
{
	memcached_return_t	 rc;
	uint32_t		 flags;
	size_t			 len;
	char			 v[24], *got;
	uint64_t		 g = fresh_gen();

	snprintf(v, sizeof(v), "%llu", (unsigned long long)g);
	rc = memcached_add(c->mc, gk, gklen, v, strlen(v), 0, 0);
	if (rc == MEMCACHED_SUCCESS) {
		*gen = g;
		return;
	}
	*gen = 0;
	/* Another worker created it first: use theirs. */
	got = memcached_get(c->mc, gk, gklen, &len, &flags, &rc);
	if (got != NULL && parse_gen(got, len, &g) == 0)
		*gen = g;
	free(got);
}

static void
entry_reset(struct keel_cache_entry *e)
{
	keel_buf_reset(&e->bytes);
	e->identity_len = 0;
}

/* Sends the multi-get of keys (lens) to their servers. */
static enum keel_err
get_send(struct keel_cache *c, const char *const keys[2],
    const size_t lens[2])
{
	memcached_return_t	 rc;

	if ((rc = memcached_mget(c->mc, keys, lens, 2)) != MEMCACHED_SUCCESS) {
		keel_log_debug("cache: mget: %s", memcached_strerror(c->mc,
		    rc));
		return KEEL_EUNAVAIL;
	}
	return KEEL_OK;
}

/* Reads the answer to get_send(): keel_cache_get's outcome. */
static enum keel_err
get_recv(struct keel_cache *c, const char *gk, size_t gklen,
    struct keel_cache_entry *e, enum keel_cache_found *found, uint64_t *gen)
{
	size_t			 vlen;
	const unsigned char	*v;
	memcached_result_st	 res, *r;
	memcached_return_t	 rc;
	uint64_t		 cur = 0, egen = 0, stale_at = 0, ilen;
	int			 have_gen = 0, have_entry = 0;

	if (memcached_result_create(c->mc, &res) == NULL)
		keel_log_fatalx("memcached_result_create failed");
	while ((r = memcached_fetch_result(c->mc, &res, &rc)) != NULL) {
		v = (const unsigned char *)memcached_result_value(r);
		vlen = memcached_result_length(r);
		if (memcached_result_key_length(r) == gklen &&
		    memcmp(memcached_result_key_value(r), gk, gklen) == 0)
			have_gen = parse_gen((const char *)v, vlen, &cur) == 0;
		else if (vlen >= ENTRY_HEAD &&
		    (ilen = get_be64(v + 16)) <= vlen - ENTRY_HEAD) {
			egen = get_be64(v);
			stale_at = get_be64(v + 8);
			keel_buf_append(&e->bytes, v + ENTRY_HEAD,
			    vlen - ENTRY_HEAD);
			e->identity_len = (size_t)ilen;
			have_entry = 1;
		}
	}
	memcached_result_free(&res);
	if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS &&
	    rc != MEMCACHED_NOTFOUND) {
		keel_log_debug("cache: fetch: %s", memcached_strerror(c->mc,
		    rc));
		entry_reset(e);
		return KEEL_EUNAVAIL;
	}
	if (!have_gen) {
		/* Whatever entry there is predates this generation. */
		gen_create(c, gk, gklen, gen);
		entry_reset(e);
		return KEEL_OK;
	}
	*gen = cur;
	if (!have_entry || egen != cur) {
		entry_reset(e);
		return KEEL_OK;
	}
	*found = (uint64_t)time(NULL) < stale_at ? KEEL_CACHE_FRESH :
	    KEEL_CACHE_STALE;
	return KEEL_OK;
}

/*
 * A pending prefetch's answer, read and thrown away, so the connection
 * is ready for the next command.
 */
static void
pf_drain(struct keel_cache *c)
{
	memcached_result_st	 res;
	memcached_return_t	 rc;

	if (c->pf == PF_SENT) {
		if (memcached_result_create(c->mc, &res) == NULL)
			keel_log_fatalx("memcached_result_create failed");
		while (memcached_fetch_result(c->mc, &res, &rc) != NULL)
			;
		memcached_result_free(&res);
	}
	c->pf = PF_NONE;
}

void
keel_cache_prefetch(struct keel_cache *c, const char *ns, const char *key)
{
	const char	*keys[2];

	if (c == NULL || !c->on)
		return;
	pf_drain(c);
	if ((c->pf_lens[0] = keel_cache_key(c->pf_gk, sizeof(c->pf_gk), 'g',
	    ns, NULL)) == 0 || (c->pf_lens[1] = keel_cache_key(c->pf_ek,
	    sizeof(c->pf_ek), ENTRY_KIND, ns, key)) == 0)
		return;		/* keel_cache_get says EINVAL itself */
	keys[0] = c->pf_gk;
	keys[1] = c->pf_ek;
	c->pf = get_send(c, keys, c->pf_lens) == KEEL_OK ? PF_SENT :
	    PF_FAILED;
}

void
keel_cache_prefetch_drop(struct keel_cache *c)
{
	if (c != NULL)
		pf_drain(c);
}

enum keel_err
keel_cache_get(struct keel_cache *c, const char *ns, const char *key,
    struct keel_cache_entry *e, enum keel_cache_found *found, uint64_t *gen)
{
	char			 gk[KEEL_CACHE_KEY_MAX], ek[KEEL_CACHE_KEY_MAX];
	const char		*keys[2];
	size_t			 lens[2];
	enum pf_state		 pf = c->pf;

	entry_reset(e);
	*found = KEEL_CACHE_MISS;
	*gen = 0;
	if ((lens[0] = keel_cache_key(gk, sizeof(gk), 'g', ns, NULL)) == 0 ||
	    (lens[1] = keel_cache_key(ek, sizeof(ek), ENTRY_KIND, ns,
	    key)) == 0) {
		pf_drain(c);
		return KEEL_EINVAL;
	}
	/* The same lookup, already sent: read its answer. */
	if (pf != PF_NONE && lens[1] == c->pf_lens[1] &&
	    memcmp(ek, c->pf_ek, lens[1]) == 0 && lens[0] == c->pf_lens[0] &&
	    memcmp(gk, c->pf_gk, lens[0]) == 0) {
		c->pf = PF_NONE;
		if (pf == PF_FAILED)
			return KEEL_EUNAVAIL;
		return get_recv(c, gk, lens[0], e, found, gen);
	}
	pf_drain(c);
	keys[0] = gk;
	keys[1] = ek;
	if (get_send(c, keys, lens) != KEEL_OK)
		return KEEL_EUNAVAIL;
	return get_recv(c, gk, lens[0], e, found, gen);
}

enum keel_err
keel_cache_set(struct keel_cache *c, const char *ns, const char *key,
    uint64_t gen, int ttl, const struct keel_cache_entry *e)
{
	char			 ek[KEEL_CACHE_KEY_MAX];
	size_t			 eklen;
	memcached_return_t	 rc;
	char			*v;

	if (gen == 0)
		return KEEL_OK;		/* generation unknown: don't store */
	pf_drain(c);
	if ((eklen = keel_cache_key(ek, sizeof(ek), ENTRY_KIND, ns, key)) == 0)
		return KEEL_EINVAL;
	v = keel_malloc(ENTRY_HEAD + e->bytes.len);
	put_be64((unsigned char *)v, gen);
	put_be64((unsigned char *)v + 8, (uint64_t)time(NULL) + (uint64_t)ttl);
	put_be64((unsigned char *)v + 16, e->identity_len);
	if (e->bytes.len > 0)
		memcpy(v + ENTRY_HEAD, e->bytes.data, e->bytes.len);
	/* Kept twice its TTL: the second half is served only as stale. */
	rc = memcached_set(c->mc, ek, eklen, v, ENTRY_HEAD + e->bytes.len,
	    (time_t)ttl * 2, 0);
	free(v);
	if (rc != MEMCACHED_SUCCESS) {
		keel_log_debug("cache: set: %s", memcached_strerror(c->mc,
		    rc));
		return KEEL_EUNAVAIL;
	}
	return KEEL_OK;
}

/*
 * One bump of the generation at gk.  Missing (evicted): a random start
 * is as good as a bump.  The text protocol has no incr-with-initial:
 * incr, else add a fresh value, else (another worker added one
 * meanwhile) incr that.
 */
static memcached_return_t
bump(struct keel_cache *c, const char *gk, size_t gklen)
{
	char			 num[24];
	uint64_t		 v;
	memcached_return_t	 rc;

	rc = memcached_increment(c->mc, gk, gklen, 1, &v);
	if (rc == MEMCACHED_NOTFOUND) {
		snprintf(num, sizeof(num), "%llu",
		    (unsigned long long)fresh_gen());
		rc = memcached_add(c->mc, gk, gklen, num, strlen(num), 0, 0);
		if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
			rc = memcached_increment(c->mc, gk, gklen, 1, &v);
	}
	return rc;
}

enum keel_err
keel_cache_invalidate(struct keel_cache *c, const char *ns)
{
	const memcached_instance_st	*server;
	char				 gk[KEEL_CACHE_KEY_MAX];
	size_t				 gklen;
	memcached_return_t		 rc, r2;

	if ((gklen = keel_cache_key(gk, sizeof(gk), 'g', ns, NULL)) == 0)
		return KEEL_EINVAL;
	pf_drain(c);
	rc = bump(c, gk, gklen);
	/*
	 * This worker found the server dead a moment ago and skips it until
	 * its retry delay ends, while the other workers may be reading it
	 * again already: a skipped bump leaves them the old entries until
	 * their TTL, to the writer too.  A write is worth one attempt now.
	 */
	if (rc == MEMCACHED_SERVER_TEMPORARILY_DISABLED &&
	    (server = memcached_server_by_key(c->mc, gk, gklen, &r2)) !=
	    NULL) {
		memcached_instance_next_retry(server, 0);
		rc = bump(c, gk, gklen);
	}
	if (rc != MEMCACHED_SUCCESS) {
		/* Readers may keep the old data until its TTL: say so. */
		keel_metrics_error("cache_invalidate_failed");
		keel_log_warnx("cache: invalidating %s failed: %s", ns,
		    memcached_strerror(c->mc, rc));
		return KEEL_EUNAVAIL;
	}
	return KEEL_OK;
}

enum keel_err
keel_cache_lock(struct keel_cache *c, const char *ns, const char *key)
{
	char			 lk[KEEL_CACHE_KEY_MAX];
	size_t			 lklen;
	memcached_return_t	 rc;

	if ((lklen = keel_cache_key(lk, sizeof(lk), 'l', ns, key)) == 0)
		return KEEL_EINVAL;
	pf_drain(c);
	rc = memcached_add(c->mc, lk, lklen, "1", 1, LOCK_EXPIRY, 0);
	if (rc == MEMCACHED_SUCCESS)
		return KEEL_OK;
	if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
		return KEEL_ECONFLICT;
	return KEEL_EUNAVAIL;
}

void
keel_cache_unlock(struct keel_cache *c, const char *ns, const char *key)
{
	char	 lk[KEEL_CACHE_KEY_MAX];
	size_t	 lklen;

	pf_drain(c);
	if ((lklen = keel_cache_key(lk, sizeof(lk), 'l', ns, key)) != 0)
		memcached_delete(c->mc, lk, lklen, 0);
}

/*
 * A lookup's result by namespace; a namespace's name up to its first ':'
 * (one board of many: "leaderboard:test:7") keeps the series few.
 */
static void
count_lookup(const char *ns, const char *result)
{
	char	 name[64], labels[KEEL_METRICS_LABELS_MAX];
	size_t	 n = strcspn(ns, ":");

	if (!keel_metrics_on())
		return;
	/* The namespace's first part, cut to fit (as "%.*s" did). */
	if (n > sizeof(name) - 1)
		n = sizeof(name) - 1;
	memcpy(name, ns, n);
	name[n] = '\0';
	keel_metrics_add(KEEL_M_CACHE, keel_metrics_labels(labels,
	    "namespace", name, "result", result, (char *)NULL), 1);
}

/*
 * e's body for a filler that just made it: the handler's bytes, then
 * their gzip coding when keel_gzip_codes() says so and it shrinks them.
 * Coded here, once per fill, never per hit.
 */
static void
entry_make(struct keel_cache_entry *e, const char *body, size_t len,
    const char *ctype)
{
	struct keel_buf	 gz = { NULL, 0, 0 };

	entry_reset(e);
	keel_buf_append(&e->bytes, body, len);
	e->identity_len = len;
	if (keel_gzip_codes(ctype, len) &&
	    keel_gzip_compress(&gz, body, len) == KEEL_OK && gz.len < len)
		keel_buf_append(&e->bytes, gz.data, gz.len);
	keel_buf_free(&gz);
}

/*
 * Replies with e in the form req wants.  Vary on both: a shared cache
 * must not hand one client's form to another.  An entry whose coding
 * didn't shrink it has none, and goes out as identity.
 */
static void
reply_entry(struct keel_req *req, const struct keel_cache_entry *e,
    const char *ctype)
{
	size_t	 gzlen = e->bytes.len - e->identity_len;
	bool	 gz = gzlen > 0 && keel_http_takes_gzip(req);

	if (gz)
		keel_http_reply(req, 200, ctype, e->bytes.data +
		    e->identity_len, gzlen);
	else
		keel_http_reply(req, 200, ctype, e->bytes.data,
		    e->identity_len);
	keel_http_reply_coded(req, gz);
}

static void
cache_hit(struct keel_req *req, const char *ns,
    const struct keel_cache_entry *e)
{
	count_lookup(ns, "hit");
	keel_http_add_header(req, "X-Cache", "HIT");
	reply_entry(req, e, "application/json; charset=utf-8");
}

enum keel_err
keel_cache_serve(struct keel_req *req, const char *ns, const char *key,
    int ttl, keel_cache_fill_fn *fill, void *arg)
{
	struct keel_cache	*c = req->cache;
	struct keel_cache_entry	 e = { { NULL, 0, 0 }, 0 };
	struct timespec		 ts = { 0, WAIT_STEP_MS * 1000000L };
	enum keel_cache_found	 found;
	enum keel_err		 er;
	const char		*body, *ctype;
	size_t			 len;
	uint64_t		 gen;
	int			 i, locked = 0;

	if (!c->on ||
	    keel_cache_get(c, ns, key, &e, &found, &gen) != KEEL_OK) {
		count_lookup(ns, "bypass");
		keel_http_add_header(req, "X-Cache", "BYPASS");
		er = fill(req, arg);
		goto out;
	}
	if (found == KEEL_CACHE_FRESH) {
		cache_hit(req, ns, &e);
		er = KEEL_OK;
		goto out;
	}
	switch (keel_cache_lock(c, ns, key)) {
	case KEEL_OK:
		locked = 1;
		break;
	case KEEL_ECONFLICT:
		/* Someone is filling: the stale copy is still right. */
		if (found == KEEL_CACHE_STALE) {
			cache_hit(req, ns, &e);
			er = KEEL_OK;
			goto out;
		}
		/* No copy we may serve: give the filler a moment. */
		for (i = 0; i < WAIT_STEPS; i++) {
			nanosleep(&ts, NULL);
			if (keel_cache_get(c, ns, key, &e, &found, &gen) !=
			    KEEL_OK)
				break;
			if (found == KEEL_CACHE_FRESH) {
				cache_hit(req, ns, &e);
				er = KEEL_OK;
				goto out;
			}
		}
		break;
	default:
		break;
	}
	count_lookup(ns, "miss");
	keel_http_add_header(req, "X-Cache", "MISS");
	/*
	 * What we store is served to everyone for ttl seconds, so it must
	 * include every write that bumped the generation: a replica may not
	 * have replayed it yet, the primary has (we bump after commit).
	 */
	keel_db_pin_primary(req->db, true);
	er = fill(req, arg);
	if (er == KEEL_OK && keel_http_status(req) == 200 &&
	    (body = keel_http_reply_body(req, &len, &ctype)) != NULL) {
		entry_make(&e, body, len, ctype);
		keel_cache_set(c, ns, key, gen, ttl, &e);
		/* The filler's client gets what the next hit will. */
		reply_entry(req, &e, ctype);
	}
	if (locked)
		keel_cache_unlock(c, ns, key);
out:
	keel_buf_free(&e.bytes);
	return er;
}

/*
 * Listing the generations memcached holds (keel-admin restored).
 *
 * libmemcached has no command that lists keys, so the listing is
 * memcached's own, the LRU crawler's metadump (1.4.31 and later), read
 * from a socket of its own, one server at a time.  The servers are
 * named by libmemcached's parse of MEMCACHED_SERVERS, as
 * keel_cache_open() names them, so a listed server is the one the apps
 * use; its handle never connects.
 */
#define DUMP_TIMEOUT_S	10	/* seconds a server's answer may take */

/*
 * The servers of servers into *out (caller frees with memcached_free), a
 * handle that never connects; KEEL_EINVAL when libmemcached refuses the
 * list, with its message appended to why.
 */
static enum keel_err
dump_servers(const char *servers, memcached_st **out, struct keel_buf *why)
{
	memcached_server_list_st list = NULL;
	memcached_st		*mc;
	memcached_return_t	 rc = MEMCACHED_SUCCESS;

	*out = NULL;
	if ((mc = memcached_create(NULL)) == NULL)
		keel_log_fatalx("memcached_create failed");
	if (servers != NULL &&
	    (list = memcached_servers_parse(servers)) != NULL) {
		rc = memcached_server_push(mc, list);
		memcached_server_list_free(list);
	}
	if (rc != MEMCACHED_SUCCESS) {
		keel_buf_puts(why, memcached_strerror(mc, rc));
		memcached_free(mc);
		return KEEL_EINVAL;
	}
	*out = mc;
	return KEEL_OK;
}

enum keel_err
keel_cache_dump_count(const char *servers, size_t *n, struct keel_buf *why)
{
	memcached_st	*mc;
	enum keel_err	 er;

	*n = 0;
	if ((er = dump_servers(servers, &mc, why)) != KEEL_OK)
		return er;
	*n = memcached_server_count(mc);
	memcached_free(mc);
	return KEEL_OK;
}

/* The decoded value of metadump's key=... in line into ns (size n), the
 * namespace of a generation key "keel:g:<ns>"; false for other keys. */
static bool
dump_gen_ns(const char *line, char *ns, size_t n)
{
	static const char	 gen[] = "keel:g:";
	char			 key[KEEL_CACHE_KEY_MAX];
	unsigned		 c;
	size_t			 i = 0;

	if (strncmp(line, "key=", 4) != 0)
		return false;
	for (line += 4; *line != '\0' && *line != ' '; line++) {
		if (i + 1 >= sizeof(key))
			return false;
		if (*line == '%' && sscanf(line + 1, "%2x", &c) == 1) {
			key[i++] = (char)c;
			line += 2;
		} else
			key[i++] = *line;
	}
	key[i] = '\0';
	if (strncmp(key, gen, sizeof(gen) - 1) != 0 ||
	    strlen(key + sizeof(gen) - 1) >= n)
		return false;
	snprintf(ns, n, "%s", key + sizeof(gen) - 1);
	return true;
}

static bool
dump_is_socket(const memcached_instance_st *in)
{
	return strcmp(memcached_server_type(in), "SOCKET") == 0;
}

/* in's name for messages (buf, size n): its socket's path, or host:port. */
static void
dump_label(const memcached_instance_st *in, char *buf, size_t n)
{
	if (dump_is_socket(in))
		snprintf(buf, n, "%s", memcached_server_name(in));
	else
		snprintf(buf, n, "%s:%u", memcached_server_name(in),
		    (unsigned)memcached_server_port(in));
}

/* A server that stops answering fails the listing instead of hanging it. */
static void
dump_timeouts(int fd)
{
	struct timeval	 tv = { DUMP_TIMEOUT_S, 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A connected socket to the memcached listening at path, or -1. */
static int
dump_connect_unix(const char *path)
{
	struct sockaddr_un	 sa;
	size_t			 len = strlen(path);
	int			 fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (len >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, len + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		return -1;
	dump_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * A connected socket to host's port, or -1 with *err why (a name that
 * doesn't resolve sets no errno: its reason is getaddrinfo's).
 */
static int
dump_connect_tcp(const char *host, unsigned port, const char **err)
{
	struct addrinfo		 hints, *res = NULL, *ai;
	char			 serv[8];
	int			 fd = -1, rc;

	/* memcached_servers_parse keeps the blanks before the first item. */
	host += strspn(host, " \t");
	snprintf(serv, sizeof(serv), "%u", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, serv, &hints, &res)) != 0) {
		*err = gai_strerror(rc);
		return -1;
	}
	for (ai = res; ai != NULL && fd == -1; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype,
		    ai->ai_protocol)) == -1) {
			*err = strerror(errno);
			continue;
		}
		dump_timeouts(fd);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
			*err = strerror(errno);
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/*
 * Reads a metadump's listing from f, handing fn each namespace whose
 * generation it holds.  0 at its END; 1 when the first line refused the
 * command (ERROR, BADCLASS: no key listed yet, another may be asked);
 * -1 on any other answer or when fn fails.  *line (caller frees) holds
 * the last line read.
 */
static int
dump_listing(FILE *f, keel_cache_gen_fn *fn, void *arg, char **line,
    size_t *cap)
{
	char	 ns[KEEL_CACHE_NS_MAX + 1];
	int	 first = 1;

	for (; getline(line, cap, f) != -1; first = 0) {
		(*line)[strcspn(*line, "\r\n")] = '\0';
		if (strcmp(*line, "END") == 0)
			return 0;
		if (!dump_gen_ns(*line, ns, sizeof(ns))) {
			if (strncmp(*line, "key=", 4) != 0)
				return first ? 1 : -1;	/* not a listing */
			continue;
		}
		if (fn(ns, arg) != KEEL_OK)
			return -1;
	}
	if (*line != NULL)
		**line = '\0';		/* no answer: nothing to quote */
	return -1;
}

/* An open socket to in (named name), or -1 with why appended to why. */
static int
dump_connect(const memcached_instance_st *in, const char *name,
    struct keel_buf *why)
{
	const char	*err = NULL;
	int		 fd;

	fd = dump_is_socket(in) ? dump_connect_unix(memcached_server_name(in)) :
	    dump_connect_tcp(memcached_server_name(in),
	    (unsigned)memcached_server_port(in), &err);
	if (fd == -1)
		keel_buf_printf(why, "memcached %s: can't connect (%s)",
		    name, err != NULL ? err : strerror(errno));
	return fd;
}

enum keel_err
keel_cache_dump_gens(const char *servers, size_t i, keel_cache_gen_fn *fn,
    void *arg, struct keel_buf *why)
{
	static const char *const cmds[] = { "lru_crawler metadump hash\r\n",
	    "lru_crawler metadump all\r\n" };
	const memcached_instance_st *in;
	memcached_st		*mc;
	char			 name[300], *line = NULL;
	size_t			 j, cap = 0;
	FILE			*f = NULL;
	int			 fd, rc = 1;
	enum keel_err		 er;

	if ((er = dump_servers(servers, &mc, why)) != KEEL_OK)
		return er;
	assert(i < memcached_server_count(mc));
	in = memcached_server_instance_by_position(mc, (uint32_t)i);
	dump_label(in, name, sizeof(name));
	fd = dump_connect(in, name, why);
	memcached_free(mc);		/* name holds what messages need */
	if (fd == -1)
		return KEEL_EUNAVAIL;
	if ((f = fdopen(fd, "r")) == NULL) {
		keel_buf_printf(why, "memcached %s: %s", name, strerror(errno));
		close(fd);
		return KEEL_EINTERNAL;
	}
	for (j = 0; j < KEEL_NELEM(cmds) && rc == 1; j++) {
		if (write(fd, cmds[j], strlen(cmds[j])) !=
		    (ssize_t)strlen(cmds[j])) {
			rc = -1;
			break;
		}
		rc = dump_listing(f, fn, arg, &line, &cap);
	}
	if (rc != 0)
		keel_buf_printf(why, "memcached %s: no key list%s%s", name,
		    line != NULL && *line != '\0' ? ": " : "",
		    line != NULL ? line : "");
	free(line);
	fclose(f);
	return rc == 0 ? KEEL_OK : KEEL_EUNAVAIL;
}
