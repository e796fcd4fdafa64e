/* SPDX-License-Identifier: ISC */
/*
 * limit.c -- sliding-window rate limits in Redis (DESIGN.md, "Rate
 * limits"; API.md, "Rate limits").
 *
 * Each limiter of each client is a list of the requests it admitted
 * inside the window, newest first, each stamped with Redis's clock in
 * milliseconds (lib/lua/limit_check.lua: O(1) a step).  One Lua
 * script checks every limiter that applies to a request and admits it
 * only when all agree, so 200 concurrent requests against a limit of 50
 * admit exactly 50 whatever the number of workers and hosts: Redis runs
 * the script atomically.  A denied request is not recorded (retrying
 * while limited does not push the wait further).  The auth limiter counts
 * attempts: the script merely reads it, and keel_limit_after() records
 * the attempt once the handler has answered, as the route's class says.
 *
 * Which limiters apply is read off the route's class and the method,
 * never off the path.  The script also runs a read for another module
 * (struct keel_limit_ride: auth's session read), so that limits key on
 * the user and "who is calling" costs no second round trip; what it
 * reads is that module's business, not this one's.
 *
 * Redis Cluster (REDIS_CLUSTER=1): a script's keys must share a slot, and
 * a session's and a client's do not, so there the pipeline identifies
 * the caller first (auth's own read) and the check runs without a ride,
 * every key declared: a user's lists tagged with the user
 * ("keel:rate:api:u:{42}"), an address's with the address.  When a
 * request's limiters still span slots (a signed-in user on an auth
 * route: the user's api list and the address's auth list), each slot's
 * group is checked and consumed in turn, and a group that refuses gives
 * back the places the earlier groups took (limit_release.lua): never
 * more admitted than a limit, though a concurrent request may for that
 * moment see one place fewer.  A single Redis keeps the one round trip.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/limit.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/rcluster.h"
#include "keel/redis.h"
#include "keel/router.h"
#include "keel/text.h"
#include "lua_scripts.h"

#define KEY_PREFIX	"keel:rate:"	/* lists; "keel:rl:" held sorted sets */

/*
 * The check (lib/lua/limit_check.lua) runs after the fragment of the
 * ride its caller hands over; the script is made on first use.
 */
static struct keel_rscript check_script = { .name = "limit_check" };
static const char *check_ride;		/* the fragment it was made with */

static struct keel_rscript release_script = { .name = "limit_release",
	.lua = keel_lua_limit_release };

/* Cluster mode's check: no ride (KEYS[1] is then the first limiter's
 * key, for the slot, and ride() reads nothing). */
static struct keel_rscript check_bare = { .name = "limit_check_bare" };

static unsigned long	 failed_open;	/* process lifetime, for the log */

/*
 * Results a request may hold: each limiter, and the account's two
 * buckets; while KEEL_SECRET_FALLBACK is set, a twin of each list named
 * by a login's hash (the address's auth list, the spelling's, and the
 * account's when no user answers), keyed under the fallback.
 */
#define NRES	(KEEL_LIMIT__MAX + 2 + 3)

/* What one request's checks found; lives in the request's arena. */
struct keel_limit_state {
	bool			 ran;		/* the script answered */
	bool			 attempt;	/* a password checked on a route
						   of another class (below) */
	enum keel_limit_class	 cls;
	size_t			 n;
	struct keel_limit_result res[NRES];
	const char		*keys[NRES];	/* each result's list */
	bool			 held[NRES];	/* we hold a place in it */
	bool			 quiet[NRES];	/* headers show it only spent */
	const char		*login;		/* the body's login, folded;
						   NULL: none */
};

unsigned long
keel_limit_failed_open(void)
{
	return failed_open;
}

/* ------------------------------------------------------ pure helpers */

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
	char	 num[KEEL_TEXT_INT_MAX];

	hb_put(b, num, keel_text_int(num, v));
}

static void
hb_init(struct hbuf *b, char *p, size_t cap)
{
	b->p = p;
	b->cap = cap;
	b->len = 0;
	p[0] = '\0';
}

/* The name r goes by in the headers. */
static const char *
result_name(const struct keel_limit_result *r)
{
	return r->name != NULL ? r->name : keel_config_limiter_name(r->which);
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
		hb_str(&pol, result_name(&res[i]));
		hb_put(&pol, "\";q=", 4);
		hb_int(&pol, res[i].limit);
		hb_put(&pol, ";w=", 3);
		hb_int(&pol, res[i].window);
		hb_put(&fld, "\"", 1);
		hb_str(&fld, result_name(&res[i]));
		hb_put(&fld, "\";r=", 4);
		hb_int(&fld, res[i].remaining);
		hb_put(&fld, ";t=", 3);
		hb_int(&fld, ceil_s(res[i].reset_ms));
	}
}

/*
 * keel_limit_login_hash()'s key: BLAKE2b of KEEL_SECRET keyed by a label
 * of its own, as idem.c derives its fingerprints' ("keel idempotency"),
 * so neither key says anything of the other or of the secret.  Derived
 * on first use and kept, like the configuration it comes from, for the
 * life of the process: two of them, KEEL_SECRET's and, while a rotation
 * runs, KEEL_SECRET_FALLBACK's, each login hashed under both.  A secret
 * not kept replaces the older (unit tests switch secrets; page.c's
 * cursor keys do the same); one too long to compare this way is derived
 * from at every call, into an entry left empty so that no other secret
 * is later taken for it.
 */
#define LOGIN_KEYS	2
static struct login_key {
	unsigned char	 key[crypto_generichash_KEYBYTES];
	char		 secret[128];	/* "" until derived */
} login_keys[LOGIN_KEYS];
static size_t		 login_next;	/* the entry replaced next */

static const unsigned char *
login_hash_key(const char *secret)
{
	struct login_key	*k;
	size_t			 len = strlen(secret), i;

	for (i = 0; len > 0 && i < LOGIN_KEYS; i++)
		if (strcmp(secret, login_keys[i].secret) == 0)
			return login_keys[i].key;
	k = &login_keys[login_next];
	login_next = (login_next + 1) % LOGIN_KEYS;
	crypto_generichash(k->key, sizeof(k->key),
	    (const unsigned char *)secret, len,
	    (const unsigned char *)"keel rate logins", 16);
	if (len < sizeof(k->secret))
		memcpy(k->secret, secret, len + 1);
	else
		k->secret[0] = '\0';
	return k->key;
}

void
keel_limit_login_hash(const char *secret, const char *s, size_t n,
    char out[KEEL_LIMIT_LOGIN_HEX + 1])
{
	unsigned char	 h[KEEL_LIMIT_LOGIN_HEX / 2];

	crypto_generichash(h, sizeof(h), (const unsigned char *)s, n,
	    login_hash_key(secret), crypto_generichash_KEYBYTES);
	sodium_bin2hex(out, KEEL_LIMIT_LOGIN_HEX + 1, h, sizeof(h));
}

/* Whether req's configuration has a secret that verifies only. */
static bool
rotating(const struct keel_req *req)
{
	return req->cfg->secret_fallback[0] != '\0';
}

/* The name folded goes by under secret (in hex), from req's arena. */
static const char *
login_name(struct keel_req *req, const char *secret, const char *folded)
{
	char	*out = keel_arena_alloc(req->arena, KEEL_LIMIT_LOGIN_HEX + 1);

	keel_limit_login_hash(secret, folded, strlen(folded), out);
	return out;
}

/* ------------------------------------------------------- the step */

/*
 * The account an auth attempt names ("login" or "email" of its JSON
 * body), lower-cased, from req's arena; NULL when there is none.  It
 * parses before the limiter decides, so a refused client pays for it
 * too: keel_json_parse() bounds that to a scan (json.h
 * KEEL_JSON_MAXVALUES).
 */
static const char *
auth_account(struct keel_req *req)
{
	struct json_object	*doc, *v;
	const char		*s;
	char			*low = NULL, err[64];
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
	}
	json_object_put(doc);
	return low;
}

/*
 * API.md: auth attempts count per client address + account (login, the
 * body's folded, or NULL), the account named by its hash under secret
 * (keel_limit_login_hash()).
 */
static const char *
auth_key(struct keel_req *req, const char *login, const char *secret)
{
	const char	*acct = login != NULL ? login_name(req, secret, login) :
			    NULL;

	return keel_arena_cat(req->arena, KEY_PREFIX "auth:a:",
	    keel_http_client_addr(req), acct != NULL ? ":" : "",
	    acct != NULL ? acct : "", NULL);
}

void
keel_limit_headers_each(const struct keel_limit_headers *h,
    void (*add)(void *, const char *, const char *), void *arg)
{
	add(arg, "RateLimit-Limit", h->limit);
	add(arg, "RateLimit-Remaining", h->remaining);
	add(arg, "RateLimit-Reset", h->reset);
	add(arg, "RateLimit-Policy", h->policy);
	add(arg, "RateLimit", h->fields);
}

static void
http_add(void *req, const char *name, const char *value)
{
	keel_http_add_header(req, name, value);
}

/*
 * Into res, st's results the headers show, *n of them: one per name, a
 * list and its twin under KEEL_SECRET_FALLBACK (which shares its name)
 * shown as the one of the two with less left, then the longer wait.
 */
static void
shown(const struct keel_limit_state *st, struct keel_limit_result *res,
    size_t *n)
{
	size_t	 i, j;

	*n = 0;
	for (i = 0; i < st->n; i++) {
		/*
		 * An account's all-addresses count, shown on every login,
		 * would say which login strings name one account (an
		 * email's try takes one from its username's count too)
		 * and how many others guessed at it: it shows only once
		 * spent, when the 429 says as much.
		 */
		if (st->quiet[i] && st->res[i].remaining > 0)
			continue;
		for (j = 0; j < *n && strcmp(result_name(&res[j]),
		    result_name(&st->res[i])) != 0; j++)
			continue;
		if (j == *n)
			res[(*n)++] = st->res[i];
		else if (st->res[i].remaining < res[j].remaining ||
		    (st->res[i].remaining == res[j].remaining &&
		    st->res[i].reset_ms > res[j].reset_ms))
			res[j] = st->res[i];
	}
}

static void
add_headers(struct keel_req *req, const struct keel_limit_state *st)
{
	struct keel_limit_headers h;
	struct keel_limit_result res[NRES];
	size_t			 n;

	shown(st, res, &n);
	if (n == 0)
		return;
	keel_limit_format(res, n, &h);
	keel_limit_headers_each(&h, http_add, req);
}

/* 429; with_headers: its RateLimit fields too (else after() adds them). */
static void
reply_limited(struct keel_req *req, const struct keel_limit_state *st,
    bool with_headers)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	long long	 wait = 1;
	size_t		 i;
	char		 s[KEEL_TEXT_INT_MAX];

	/* The longest wait among the limiters that said no. */
	for (i = 0; i < st->n; i++)
		if (st->res[i].remaining == 0 &&
		    ceil_s(st->res[i].reset_ms) > wait)
			wait = ceil_s(st->res[i].reset_ms);
	keel_text_int(s, wait);
	if (with_headers)
		add_headers(req, st);
	keel_http_add_header(req, "Retry-After", s);
	keel_jw_init(&w, &b);
	keel_jw_obj_open(&w);
	keel_jw_key(&w, "error");
	keel_jw_str(&w, "rate_limited");
	keel_jw_key(&w, "message");
	keel_jw_str(&w, "too many requests; retry after the given number of "
	    "seconds");
	keel_jw_key(&w, "retryAfter");
	keel_jw_int(&w, wait);
	keel_jw_obj_close(&w);
	keel_http_reply_buf(req, 429, &b);
	keel_buf_free(&b);
}

/*
 * Whether limiter l fails closed for st's route.  The auth limiter does
 * only where it guards a check of a secret (KEEL_LIMIT_CLASS_AUTH: a
 * login, a token): failing open there would let anyone guess without
 * limit while Redis is away, and tell a right guess by its 503.  A route
 * that answers alike whatever happens (a reset request) has nothing to
 * give away and must work while Redis is down (DESIGN.md's table).
 */
static bool
fails_closed(const struct keel_req *req, const struct keel_limit_state *st,
    enum keel_limiter l)
{
	if (!(req->cfg->rate_fail_closed & (1u << l)))
		return false;
	return l != KEEL_LIMIT_AUTH || st->cls == KEEL_LIMIT_CLASS_AUTH ||
	    st->attempt;
}

/* keel_rate_limit_decisions_total{limiter, decision} + 1. */
static void
count_decision(enum keel_limiter l, const char *decision)
{
	char	 labels[KEEL_METRICS_LABELS_MAX];

	keel_metrics_add(KEEL_M_RATE_LIMIT, keel_metrics_labels(labels,
	    "limiter", keel_config_limiter_name(l), "decision", decision,
	    (char *)NULL), 1);
}

/* Redis could not answer: let the request through, or not. */
static enum keel_step
redis_down(struct keel_req *req, const struct keel_limit_state *st)
{
	size_t	 i;

	/* A password attempt's buckets, dropped with the check that could
	 * not run: the auth limiter's policy is still the one to apply. */
	if (st->attempt && fails_closed(req, st, KEEL_LIMIT_AUTH)) {
		count_decision(KEEL_LIMIT_AUTH, "fail_closed");
		keel_log_warnx("limit: redis unavailable (%s); auth limiter "
		    "fails closed", keel_redis_errstr(req->redis));
		keel_http_add_header(req, "Retry-After", "5");
		keel_http_reply_error(req, 503, "unavailable",
		    "rate limits can't be checked right now; retry later");
		return KEEL_STEP_REPLIED;
	}
	for (i = 0; i < st->n; i++)
		if (fails_closed(req, st, st->res[i].which)) {
			count_decision(st->res[i].which, "fail_closed");
			keel_log_warnx("limit: redis unavailable (%s); %s "
			    "limiter fails closed", keel_redis_errstr(
			    req->redis), keel_config_limiter_name(
			    st->res[i].which));
			keel_http_add_header(req, "Retry-After", "5");
			keel_http_reply_error(req, 503, "unavailable",
			    "rate limits can't be checked right now; retry "
			    "later");
			return KEEL_STEP_REPLIED;
		}
	for (i = 0; i < st->n; i++)
		count_decision(st->res[i].which, "fail_open");
	failed_open++;
	keel_metrics_error("ratelimit_unavailable");
	keel_log_warnx("limit: redis unavailable (%s); failing open "
	    "failed_open=%lu", keel_redis_errstr(req->redis), failed_open);
	return KEEL_STEP_GO;
}

/* The limiters that apply to req, as the route's class and method say. */
static size_t
applicable(const struct keel_req *req, enum keel_limit_class cls,
    enum keel_limiter which[KEEL_LIMIT__MAX])
{
	const struct keel_rate	*rates = req->cfg->rates;
	size_t			 n = 0;

	if (rates[KEEL_LIMIT_API].limit > 0)
		which[n++] = KEEL_LIMIT_API;
	if (rates[KEEL_LIMIT_AUTH].limit > 0 &&
	    cls != KEEL_LIMIT_CLASS_DEFAULT)
		which[n++] = KEEL_LIMIT_AUTH;
	if (strcmp(req->method, "GET") == 0 ||
	    strcmp(req->method, "HEAD") == 0) {
		if (rates[KEEL_LIMIT_READ].limit > 0)
			which[n++] = KEEL_LIMIT_READ;
	} else if (rates[KEEL_LIMIT_WRITE].limit > 0)
		which[n++] = KEEL_LIMIT_WRITE;
	return n;
}

/* The check script for ride's fragment, made once per process. */
static struct keel_rscript *
check_for(const char *ride_lua)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	if (check_script.lua == NULL) {
		/* Kept for the life of the process, like the script's sha. */
		keel_buf_puts(&b, ride_lua != NULL ? ride_lua :
		    "local function ride(key) return false end\n");
		keel_buf_puts(&b, keel_lua_limit_check);
		check_script.lua = b.data;
		check_ride = ride_lua;
	}
	/* One fragment per process: the script is made once. */
	assert(check_ride == ride_lua);
	return &check_script;
}

/* The check whose ride() reads nothing (cluster mode). */
static struct keel_rscript *
bare(void)
{
	struct keel_buf	 b = { NULL, 0, 0 };

	if (check_bare.lua == NULL) {
		keel_buf_puts(&b, "local function ride(key) return false end\n");
		keel_buf_puts(&b, keel_lua_limit_check);
		check_bare.lua = b.data;
	}
	return &check_bare;
}

/* Copies what ride() read (n values at elem[2..]) into ride. */
static void
ride_copy(struct keel_req *req, const struct keel_rreply *rep,
    struct keel_limit_ride *ride)
{
	size_t	 i;

	ride->ran = true;
	ride->n = (size_t)rep->elem[1].integer;
	for (i = 0; i < ride->n; i++)
		ride->vals[i] = keel_arena_strdup(req->arena,
		    rep->elem[2 + i].type == KEEL_R_STR ? rep->elem[2 + i].str :
		    "");
}

/*
 * Runs the check script for st's results [from, st->n) (their keys and
 * settings filled) with ride's read, and fills their counts; the auth
 * limiter's places it admitted are held.  A step: replied on a 429 (with
 * its headers when with_headers) or on a 503 when Redis is away and a
 * limiter fails closed.  A later check (from > 0) that could not run is
 * dropped, and the first one's results stand.
 */
static enum keel_step
check_run(struct keel_req *req, struct keel_limit_state *st, size_t from,
    struct keel_limit_ride *ride, bool with_headers)
{
	struct keel_rreply	*rep = NULL;
	const char		*argv[4 + 5 * NRES];
	char			 num[NRES][3][KEEL_TEXT_INT_MAX];
	size_t			 n = st->n - from, i, seen;
	int			 argc = 0;
	enum keel_step		 step = KEEL_STEP_GO;

	/* KEYS: ride's, then each limiter's key for this client. */
	if (keel_redis_is_cluster(req->redis))
		argv[argc++] = st->keys[from];	/* (check_bare's ride) */
	else
		argv[argc++] = ride != NULL && ride->key != NULL ? ride->key :
		    "";
	for (i = from; i < st->n; i++)
		argv[argc++] = st->keys[i];
	argv[argc++] = req->id;
	keel_text_int(num[0][0], (int64_t)n);
	argv[argc++] = num[0][0];
	argv[argc++] = KEY_PREFIX;
	for (i = from; i < st->n; i++) {
		argv[argc++] = keel_config_limiter_name(st->res[i].which);
		keel_text_int(num[i][1], st->res[i].limit);
		argv[argc++] = num[i][1];
		keel_text_int(num[i][2], (int64_t)st->res[i].window * 1000);
		argv[argc++] = num[i][2];
		/* Every limiter holds a place for the request it admits;
		 * all but auth's key on the caller ride() found; only
		 * auth's is kept through a Redis restart (the script). */
		argv[argc++] = st->res[i].which == KEEL_LIMIT_AUTH ? "5" : "3";
	}
	if (keel_redis_eval(req->redis, keel_redis_is_cluster(req->redis) ?
	    bare() : check_for(ride != NULL ? ride->lua : check_ride),
	    (int)n + 1, argc, argv, NULL, &rep) != KEEL_OK ||
	    rep->type != KEEL_R_ARRAY || rep->nelem < 2 ||
	    rep->elem[1].type != KEEL_R_INT || rep->elem[1].integer < 0 ||
	    rep->elem[1].integer > KEEL_LIMIT_RIDE_MAX ||
	    rep->nelem != 2 + (size_t)rep->elem[1].integer + 2 * n) {
		if (rep != NULL && rep->type == KEEL_R_ERROR)
			keel_log_error("limit: script: %s", rep->str);
		/* A later check that failed leaves what the first found. */
		st->n = from > 0 ? from : st->n;
		step = redis_down(req, st);
		goto out;
	}
	st->ran = true;
	seen = (size_t)rep->elem[1].integer;
	if (ride != NULL)
		ride_copy(req, rep, ride);
	for (i = from; i < st->n; i++) {
		st->res[i].remaining = rep->elem[2 + seen + 2 * (i - from)].integer;
		st->res[i].reset_ms = rep->elem[3 + seen + 2 * (i - from)].integer;
	}
	for (i = from; i < st->n; i++)
		count_decision(st->res[i].which, rep->elem[0].integer != 1 &&
		    st->res[i].remaining == 0 ? "deny" : "allow");
	if (rep->elem[0].integer != 1) {
		reply_limited(req, st, with_headers);
		step = KEEL_STEP_REPLIED;
	} else
		for (i = from; i < st->n; i++)
			st->held[i] = st->res[i].which == KEEL_LIMIT_AUTH;
out:
	keel_rreply_free(rep);
	return step;
}

/* Limiter l's setting into result i of st, its list's key. */
static void
result_init(struct keel_req *req, struct keel_limit_state *st, size_t i,
    enum keel_limiter l, const char *key)
{
	st->res[i].which = l;
	st->res[i].limit = req->cfg->rates[l].limit;
	st->res[i].window = req->cfg->rates[l].window;
	st->keys[i] = key;
}

/*
 * Limiter l's key for req (a client's, as keel_http_client() names it):
 * on a single Redis KEY_PREFIX "<limiter>:<client>", auth's the address
 * and the account its body names under secret (auth_key()).  In cluster
 * mode the user's when the pipeline identified one (all but auth's),
 * else the client's, each tagged with its owner; auth's tagged with the
 * client, so its twin under KEEL_SECRET_FALLBACK shares its slot.
 */
static const char *
limiter_key(struct keel_req *req, enum keel_limiter l, const char *client,
    const char *secret)
{
	const struct keel_limit_state *st = req->limit;

	if (!keel_redis_is_cluster(req->redis))
		return l == KEEL_LIMIT_AUTH ? auth_key(req, st->login, secret) :
		    keel_arena_cat(req->arena, KEY_PREFIX,
		    keel_config_limiter_name(l), ":", client, NULL);
	if (l == KEEL_LIMIT_AUTH)
		return keel_arena_printf(req->arena, "%s:{%s}",
		    auth_key(req, st->login, secret), client);
	if (req->user != NULL)
		return keel_arena_printf(req->arena, KEY_PREFIX "%s:u:{%lld}",
		    keel_config_limiter_name(l), (long long)req->user->id);
	return keel_arena_printf(req->arena, KEY_PREFIX "%s:{%s}",
	    keel_config_limiter_name(l), client);
}

/* Gives back req's place in keys[0..n) (limit_release.lua), one call
 * per key in cluster mode (the keys may be in several slots). */
static void
release(struct keel_req *req, const char **keys, size_t n)
{
	struct keel_rreply	*rep = NULL;
	const char		*argv[1 + NRES];
	size_t			 i, k, step;

	step = keel_redis_is_cluster(req->redis) ? 1 : n;
	for (i = 0; i < n; i += step) {
		for (k = 0; k < step; k++)
			argv[k] = keys[i + k];
		argv[step] = req->id;
		if (keel_redis_eval(req->redis, &release_script, (int)step,
		    (int)step + 1, argv, NULL, &rep) != KEEL_OK)
			keel_log_warnx("limit: giving back a place failed "
			    "(%s); it ages out with its window",
			    keel_redis_errstr(req->redis));
		keel_rreply_free(rep);
		rep = NULL;
	}
}

/*
 * Cluster mode: st's results [from, st->n) grouped by their keys' slot,
 * in the order the slots first come, each group checked (and consumed)
 * in turn.  One group, the usual case, is one check as on a single Redis.
 * A request's limiters (from 0, with_headers: the 429 carries them): a
 * group that refuses or can't be checked gives back what the earlier
 * groups took.  An attempt's buckets (from past the route's, their
 * headers left to keel_limit_after()): a group that refuses gives back
 * the earlier groups' places, uncounted again; one that could not be
 * checked drops itself and the groups after it (check_run()), the
 * earlier places staying for keel_limit_after() to judge.
 */
static enum keel_step
cluster_check(struct keel_req *req, struct keel_limit_state *st, size_t from,
    bool with_headers)
{
	struct keel_limit_result res[NRES];
	const char		*keys[NRES];
	bool			 quiet[NRES];
	unsigned		 slot[NRES], gs[NRES];
	size_t			 n = st->n, g, to, i, j, k = from;
	enum keel_step		 step;

	for (i = from; i < n; i++)
		slot[i] = keel_rc_slot(st->keys[i], strlen(st->keys[i]));
	/* Each slot's limiters together, in the order the slots come. */
	for (i = from; i < n; i++) {
		for (j = from; j < i && slot[j] != slot[i]; j++)
			continue;
		if (j < i)
			continue;	/* its slot's group is placed */
		for (j = i; j < n; j++)
			if (slot[j] == slot[i]) {
				res[k] = st->res[j];
				keys[k] = st->keys[j];
				quiet[k] = st->quiet[j];
				gs[k++] = slot[j];
			}
	}
	memcpy(st->res + from, res + from, (n - from) * sizeof(res[0]));
	memcpy(st->keys + from, keys + from, (n - from) * sizeof(keys[0]));
	memcpy(st->quiet + from, quiet + from, (n - from) * sizeof(quiet[0]));
	for (g = from; g < n; g = to) {
		for (to = g + 1; to < n && gs[to] == gs[g]; to++)
			continue;
		st->n = to;
		step = check_run(req, st, g, NULL, with_headers);
		if (g == 0 && !st->ran) {
			/* Redis away: the policy (open or closed) spoke. */
			st->n = n;
			return step;
		}
		if (step != KEEL_STEP_GO) {
			/* Refused here: the earlier groups' places go back
			 * (an auth place among them not twice). */
			if (g > from && (with_headers || st->n == to)) {
				release(req, st->keys + from, g - from);
				for (i = from; i < g; i++) {
					st->held[i] = false;
					if (!with_headers)
						st->res[i].remaining++;
				}
			}
			return step;
		}
		if (st->n < to)
			return step;	/* not checked: failed open */
	}
	return KEEL_STEP_GO;
}

enum keel_step
keel_limit_check(struct keel_req *req, enum keel_limit_class cls,
    struct keel_limit_ride *ride)
{
	struct keel_limit_state	*st;
	enum keel_limiter	 which[KEEL_LIMIT__MAX];
	const char		*client;
	size_t			 n, i;

	if (ride != NULL) {
		ride->ran = false;
		ride->n = 0;
	}
	if (!req->cfg->ratelimit || cls == KEEL_LIMIT_CLASS_NONE ||
	    (n = applicable(req, cls, which)) == 0)
		return KEEL_STEP_GO;
	st = keel_arena_alloc(req->arena, sizeof(*st));
	memset(st, 0, sizeof(*st));
	req->limit = st;
	st->cls = cls;
	client = keel_http_client(req);
	for (i = 0; i < n; i++) {
		if (which[i] == KEEL_LIMIT_AUTH)
			st->login = auth_account(req);
		result_init(req, st, st->n++, which[i], limiter_key(req,
		    which[i], client, req->cfg->secret));
		/*
		 * While a rotation runs, the account's list under the other
		 * secret counts too (a twin, same name in the headers):
		 * neither the change nor a fleet half rolled gives a guesser
		 * a fresh window.
		 */
		if (which[i] == KEEL_LIMIT_AUTH && st->login != NULL &&
		    rotating(req))
			result_init(req, st, st->n++, which[i], limiter_key(req,
			    which[i], client, req->cfg->secret_fallback));
	}
	if (keel_redis_is_cluster(req->redis))
		return cluster_check(req, st, 0, true);
	return check_run(req, st, 0, ride, true);
}

/* The spelling bucket's key of spelling for req's address. */
static const char *
spelling_key(struct keel_req *req, const char *spelling)
{
	return keel_arena_cat(req->arena, KEY_PREFIX "auth:",
	    KEEL_RTAG_L(req->redis), "s:", spelling, KEEL_RTAG_R(req->redis),
	    ":", keel_http_client_addr(req), NULL);
}

/* The account bucket's key of account, every address's. */
static const char *
account_key(struct keel_req *req, const char *account)
{
	return keel_arena_cat(req->arena, KEY_PREFIX "auth:",
	    KEEL_RTAG_L(req->redis), "id:", account, KEEL_RTAG_R(req->redis),
	    NULL);
}

/*
 * keel_limit_account() with, while a rotation runs, the twins of the
 * buckets named by a login's hash: spelling_fb, the spelling under
 * KEEL_SECRET_FALLBACK, and, when account is the spelling (no user
 * answers), account_fb, the spelling again (else NULL).
 *
 * In a cluster each bucket is tagged with what it counts, not with the
 * user's own slot ("{42}"): a script on keys that don't exist yet gets
 * TRYAGAIN while its slot migrates, and a login would fail with the
 * user's sessions moving.  Sharing the account's tag would put the
 * account in the spelling's key, and a spelling's count would start
 * afresh when the account it names comes or goes.  So the buckets sit in
 * two slots (four with the twins) and are checked in turn
 * (cluster_check()); one that refuses gives the earlier places back.
 */
static enum keel_step
account_check(struct keel_req *req, const char *spelling,
    const char *account, const char *spelling_fb, const char *account_fb)
{
	struct keel_limit_state	*st = req->limit;
	size_t			 i, from;

	if (st == NULL || st->n + 4 > NRES)
		return KEEL_STEP_GO;		/* limits off or exempt */
	for (i = 0; i < st->n && st->res[i].which != KEEL_LIMIT_AUTH; i++)
		continue;
	if (i == st->n) {
		/*
		 * A route of another class that checks a password (a
		 * password change's currentPassword): the attempt is a
		 * login's, in the same buckets, its 4xx answers kept,
		 * and with Redis away it fails as the auth limiter does.
		 */
		if (req->cfg->rates[KEEL_LIMIT_AUTH].limit <= 0)
			return KEEL_STEP_GO;
		st->attempt = true;
		if (!st->ran)	/* the route's check failed open */
			return fails_closed(req, st, KEEL_LIMIT_AUTH) ?
			    redis_down(req, st) : KEEL_STEP_GO;
	} else if (!st->ran)
		return KEEL_STEP_GO;	/* auth's check failed open */
	from = st->n;
	/*
	 * Each bucket by a name of its own in the headers: a client maps
	 * the RateLimit field's items to the policy's by name, and three
	 * "auth" items (the address's, these two) named none of them.  A
	 * twin shares its bucket's name: the headers show the two as one.
	 */
	for (i = 0; i < 2; i++) {
		if (i == 1 && spelling_fb == NULL)
			break;
		result_init(req, st, st->n, KEEL_LIMIT_AUTH, spelling_key(req,
		    i == 0 ? spelling : spelling_fb));
		st->res[st->n++].name = "auth-login";
	}
	for (i = 0; i < 2 && req->cfg->auth_account.limit > 0; i++) {
		if (i == 1 && account_fb == NULL)
			break;
		result_init(req, st, st->n, KEEL_LIMIT_AUTH, account_key(req,
		    i == 0 ? account : account_fb));
		st->res[st->n].name = "auth-account";
		st->res[st->n].limit = req->cfg->auth_account.limit;
		st->res[st->n].window = req->cfg->auth_account.window;
		st->quiet[st->n++] = true;
	}
	/* The headers come with after(), as for any other answer. */
	if (keel_redis_is_cluster(req->redis))
		return cluster_check(req, st, from, false);
	return check_run(req, st, from, NULL, false);
}

enum keel_step
keel_limit_account(struct keel_req *req, const char *spelling,
    const char *account)
{
	return account_check(req, spelling, account, NULL, NULL);
}

enum keel_step
keel_limit_login(struct keel_req *req, const char *folded, const char *user)
{
	const char	*spelling, *fb = NULL;

	spelling = keel_arena_cat(req->arena, "login:",
	    login_name(req, req->cfg->secret, folded), NULL);
	if (rotating(req))
		fb = keel_arena_cat(req->arena, "login:",
		    login_name(req, req->cfg->secret_fallback, folded), NULL);
	return account_check(req, spelling, user != NULL ? user : spelling,
	    fb, user != NULL ? NULL : fb);
}

/*
 * Whether the answer is an attempt the auth limiter keeps: every answer
 * of a route of class AUTH_EVERY; on one of class AUTH, or that checked
 * a password (keel_limit_account), a failure (4xx), not a success, not
 * a refusal before any check (429), not a fault of ours (5xx).
 */
static bool
auth_counts(const struct keel_limit_state *st, int status)
{
	if (st->cls == KEEL_LIMIT_CLASS_AUTH_EVERY)
		return true;
	return (st->cls == KEEL_LIMIT_CLASS_AUTH || st->attempt) &&
	    status >= 400 && status < 500 && status != 429;
}

void
keel_limit_after(struct keel_req *req)
{
	struct keel_limit_state	*st = req->limit;
	struct keel_limit_headers h;
	struct keel_limit_result res[NRES];
	const char		*argv[1 + NRES];
	size_t			 i, n;
	int			 nkeys = 0;

	if (st == NULL)
		return;
	if (!st->ran) {
		/* Failed open: the policy is known, the counts are not. */
		shown(st, res, &n);
		keel_limit_format(res, n, &h);
		keel_http_add_header(req, "RateLimit-Policy", h.policy);
		return;
	}
	/* The places an attempt that doesn't count held go back. */
	if (!auth_counts(st, keel_http_status(req)))
		for (i = 0; i < st->n; i++)
			if (st->held[i]) {
				argv[nkeys++] = st->keys[i];
				st->res[i].remaining++;
			}
	if (nkeys > 0)
		release(req, argv, (size_t)nkeys);
	add_headers(req, st);
}

/* ------------------------------------------- a check sent by others */

/*
 * The call of the limiters api and second (read or write) on the keys
 * of one caller: KEY_PREFIX "<limiter>:" kind id, id in braces in a
 * cluster (a user's "u:{42}", a client's "{a:127.0.0.1}", as
 * keel_limit_check() and limiter_key() key them).
 */
static void
call_init(struct keel_limit_call *c, const struct keel_config *cfg,
    enum keel_limiter second, const char *kind, const char *id,
    const char *member, bool cluster)
{
	const enum keel_limiter	 get[] = { KEEL_LIMIT_API, second };
	size_t			 i, k;

	memset(c, 0, sizeof(*c));
	if (!cfg->ratelimit)
		return;
	for (i = 0; i < KEEL_NELEM(get); i++)
		if (cfg->rates[get[i]].limit > 0) {
			c->res[c->n].which = get[i];
			c->res[c->n].limit = cfg->rates[get[i]].limit;
			c->res[c->n++].window = cfg->rates[get[i]].window;
		}
	if (c->n == 0)
		return;
	/* The keys limit_check.lua makes of a ride's id, or limiter_key's;
	 * one too long for them (no address is) checks nothing. */
	for (i = 0; i < c->n; i++)
		if ((size_t)snprintf(c->keys[i], sizeof(c->keys[i]), KEY_PREFIX
		    "%s:%s%s%s%s", keel_config_limiter_name(c->res[i].which),
		    kind, cluster ? "{" : "", id, cluster ? "}" : "") >=
		    sizeof(c->keys[i])) {
			c->n = 0;
			return;
		}
	snprintf(c->nums[0], sizeof(c->nums[0]), "%zu", c->n + 1);
	c->argv[c->argc++] = c->nums[0];
	/* KEYS[1]: no ride (bare's ride() reads nothing), the slot's key. */
	c->argv[c->argc++] = c->keys[0];
	for (i = 0; i < c->n; i++)
		c->argv[c->argc++] = c->keys[i];
	c->argv[c->argc++] = member;
	snprintf(c->nums[1], sizeof(c->nums[1]), "%zu", c->n);
	c->argv[c->argc++] = c->nums[1];
	c->argv[c->argc++] = KEY_PREFIX;
	for (i = 0, k = 2; i < c->n; i++, k += 2) {
		c->argv[c->argc++] = keel_config_limiter_name(c->res[i].which);
		snprintf(c->nums[k], sizeof(c->nums[k]), "%d", c->res[i].limit);
		c->argv[c->argc++] = c->nums[k];
		snprintf(c->nums[k + 1], sizeof(c->nums[k + 1]), "%lld",
		    (long long)c->res[i].window * 1000);
		c->argv[c->argc++] = c->nums[k + 1];
		c->argv[c->argc++] = "1";	/* admitting consumes */
	}
}

void
keel_limit_call_init(struct keel_limit_call *c, const struct keel_config *cfg,
    int64_t uid, const char *member, bool cluster)
{
	char	 id[KEEL_TEXT_INT_MAX];

	keel_text_int(id, uid);
	call_init(c, cfg, KEEL_LIMIT_READ, "u:", id, member, cluster);
}

void
keel_limit_call_client(struct keel_limit_call *c,
    const struct keel_config *cfg, const char *client, bool read,
    const char *member, bool cluster)
{
	call_init(c, cfg, read ? KEEL_LIMIT_READ : KEEL_LIMIT_WRITE, "",
	    client, member, cluster);
}

const char *
keel_limit_call_lua(void)
{
	return bare()->lua;
}

bool
keel_limit_call_reply(struct keel_limit_result *res, size_t n,
    const long long *vals, size_t nvals, bool *admitted)
{
	size_t	 i;

	/* {admitted, 0 rides, then remaining and reset per limiter} */
	if (nvals != 2 + 2 * n || vals[1] != 0)
		return false;
	*admitted = vals[0] == 1;
	for (i = 0; i < n; i++) {
		res[i].remaining = vals[2 + 2 * i];
		res[i].reset_ms = vals[3 + 2 * i];
		count_decision(res[i].which, !*admitted &&
		    res[i].remaining == 0 ? "deny" : "allow");
	}
	return true;
}

bool
keel_limit_call_down(const struct keel_config *cfg,
    const struct keel_limit_result *res, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (cfg->rate_fail_closed & (1u << res[i].which)) {
			count_decision(res[i].which, "fail_closed");
			return true;
		}
	for (i = 0; i < n; i++)
		count_decision(res[i].which, "fail_open");
	failed_open++;
	return false;
}
