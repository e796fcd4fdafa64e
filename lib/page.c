/* SPDX-License-Identifier: ISC */
/*
 * page.c -- keyset cursors.
 *
 * A cursor carries the sort keys of the row a page ended at, so the next
 * page is "WHERE (created_at, id) < ($1, $2) ORDER BY ... LIMIT n": an
 * index range scan whose cost does not grow with the page number, unlike
 * OFFSET.  Clients must not forge keys, so each cursor is signed with
 * HMAC-SHA256 under the server secret.  The MAC also covers what the
 * cursor is for -- the list's scope, its filters (the request's other
 * query parameters, sorted by name, so their order doesn't matter) and,
 * for a list of one user's rows, that user -- so a cursor used on another
 * list, with other filters, or by another user fails its MAC.  None of
 * that is in the token: it stays the keys and a 16-byte MAC whatever the
 * filters.  The MAC input is scope NUL, the number of filters (8 bytes),
 * each filter as name NUL value NUL, the owner (8 bytes), then the keys:
 * every part is delimited, so no two bindings feed it the same bytes.
 */
#include "config.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/mem.h"
#include "keel/page.h"
#include "keel/text.h"

#define MAC_LEN		16		/* truncated HMAC-SHA256, bytes */
#define CURSOR_MAX	(KEEL_PAGE_MAXPAYLOAD + MAC_LEN)

/*
 * HMAC's keyed state (the key's inner and outer pads, two SHA-256 blocks)
 * depends only on the secret, so it is computed once per process and
 * copied for each cursor.  Like the configuration it comes from, it lives
 * as long as the process.  Two of them: KEEL_SECRET's and, during a
 * rotation, KEEL_SECRET_FALLBACK's (a cursor signed under the other must
 * not rebuild the first on every page).
 */
#define MAC_KEYS	2
static struct mac_key {
	crypto_auth_hmacsha256_state	 base;
	char				 secret[128];	/* "" until set */
} mac_keys[MAC_KEYS];
static size_t				 mac_next;	/* the one to
							   replace next */

/* The query parameters that page a list, not filter it. */
static const char *const paging[] = { "limit", "after", "before" };

static bool
is_paging(const char *name)
{
	size_t	 i;

	for (i = 0; i < KEEL_NELEM(paging); i++)
		if (strcmp(name, paging[i]) == 0)
			return true;
	return false;
}

/*
 * The filters of qs[0..n) in name order, as indexes from a: *nf of them.
 * The sort is stable, so a name given twice keeps its values' order
 * (the first is the one a list reads: keel_http_query).
 */
static size_t *
sig_filters(struct keel_arena *a, const struct keel_param *qs, size_t n,
    size_t *nf)
{
	size_t	*ix, i, j, k;

	ix = keel_arena_alloc(a, (n > 0 ? n : 1) * sizeof(*ix));
	for (i = 0, k = 0; i < n; i++) {
		if (is_paging(qs[i].name))
			continue;
		/* Insertion sort: a query holds at most 64 pairs. */
		for (j = k; j > 0 && strcmp(qs[ix[j - 1]].name,
		    qs[i].name) > 0; j--)
			ix[j] = ix[j - 1];
		ix[j] = i;
		k++;
	}
	*nf = k;
	return ix;
}

static void
mac_u64(crypto_auth_hmacsha256_state *st, uint64_t v)
{
	unsigned char	 b[8];
	size_t		 i;

	for (i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (56 - 8 * i));
	crypto_auth_hmacsha256_update(st, b, sizeof(b));
}

static void
mac_str(crypto_auth_hmacsha256_state *st, const char *s)
{
	/* With its NUL, which no parameter holds (http.c refuses %00). */
	crypto_auth_hmacsha256_update(st, (const unsigned char *)s,
	    strlen(s) + 1);
}

/*
 * The keyed state of secret, from the cache or made into it.  Tests
 * switch secrets: a secret not cached replaces the older entry.  One too
 * long to cache is keyed at every call, in an entry left empty, so that
 * no other secret is later taken for it.
 */
static const crypto_auth_hmacsha256_state *
mac_key(const char *secret)
{
	struct mac_key	*k;
	size_t		 len = strlen(secret), i;

	for (i = 0; len > 0 && i < MAC_KEYS; i++)
		if (strcmp(secret, mac_keys[i].secret) == 0)
			return &mac_keys[i].base;
	k = &mac_keys[mac_next];
	mac_next = (mac_next + 1) % MAC_KEYS;
	crypto_auth_hmacsha256_init(&k->base, (const unsigned char *)secret,
	    len);
	if (len < sizeof(k->secret))
		memcpy(k->secret, secret, len + 1);
	else
		k->secret[0] = '\0';
	return &k->base;
}

/* The MAC of payload p[0..n) as sig binds it, under secret. */
static void
cursor_mac(struct keel_arena *a, const struct keel_page_sig *sig,
    const char *secret, const unsigned char *p, size_t n,
    unsigned char mac[MAC_LEN])
{
	crypto_auth_hmacsha256_state	 st;
	unsigned char			 full[crypto_auth_hmacsha256_BYTES];
	size_t				 nf, i;
	size_t				*ix;

	st = *mac_key(secret);
	mac_str(&st, sig->scope);
	ix = sig_filters(a, sig->qs, sig->qs != NULL ? sig->nqs : 0, &nf);
	mac_u64(&st, nf);
	for (i = 0; i < nf; i++) {
		mac_str(&st, sig->qs[ix[i]].name);
		mac_str(&st, sig->qs[ix[i]].value);
	}
	mac_u64(&st, (uint64_t)sig->owner);
	crypto_auth_hmacsha256_update(&st, p, n);
	crypto_auth_hmacsha256_final(&st, full);
	memcpy(mac, full, MAC_LEN);
	sodium_memzero(&st, sizeof(st));
}

/*
 * Whether the MAC after raw[0..len) is the payload's under sig's secret
 * or, while a rotation runs, its fallback: a cursor handed out before
 * the secret changed (or by a host of a fleet not yet rolled) still
 * pages.
 */
static bool
mac_verifies(struct keel_arena *a, const struct keel_page_sig *sig,
    const unsigned char *raw, size_t len)
{
	unsigned char	 mac[MAC_LEN];

	cursor_mac(a, sig, sig->secret, raw, len, mac);
	if (sodium_memcmp(mac, raw + len, MAC_LEN) == 0)
		return true;
	if (sig->fallback == NULL || sig->fallback[0] == '\0')
		return false;
	cursor_mac(a, sig, sig->fallback, raw, len, mac);
	return sodium_memcmp(mac, raw + len, MAC_LEN) == 0;
}

char *
keel_page_encode_sig(struct keel_arena *a, const struct keel_page_sig *sig,
    const char *const *keys, size_t nkeys)
{
	unsigned char	*raw;
	size_t		 i, n = 0, len, b64len;
	char		*out;

	for (i = 0; i < nkeys; i++)
		n += strlen(keys[i]) + 1;
	/* Sort keys come from our own rows, never from clients. */
	assert(n <= KEEL_PAGE_MAXPAYLOAD);
	raw = keel_arena_alloc(a, n + MAC_LEN);
	for (i = 0, len = 0; i < nkeys; i++) {
		memcpy(raw + len, keys[i], strlen(keys[i]) + 1);
		len += strlen(keys[i]) + 1;
	}
	/* Signed under the current secret only; the fallback verifies. */
	cursor_mac(a, sig, sig->secret, raw, n, raw + n);
	b64len = sodium_base64_ENCODED_LEN(n + MAC_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	out = keel_arena_alloc(a, b64len);
	sodium_bin2base64(out, b64len, raw, n + MAC_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

enum keel_err
keel_page_decode_sig(struct keel_arena *a, const struct keel_page_sig *sig,
    const char *tok, const char **keys, size_t nkeys)
{
	unsigned char	*raw;
	size_t		 len, i, off;
	const char	*end;

	if (strlen(tok) > CURSOR_MAX * 4 / 3 + 4)
		return KEEL_EINVAL;
	raw = keel_arena_alloc(a, strlen(tok) + 1);
	if (sodium_base642bin(raw, strlen(tok), tok, strlen(tok), NULL, &len,
	    &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    *end != '\0' || len <= MAC_LEN)
		return KEEL_EINVAL;
	len -= MAC_LEN;
	if (!mac_verifies(a, sig, raw, len))
		return KEEL_EINVAL;
	/* Signed by us: exactly nkeys NUL-terminated keys. */
	for (i = 0, off = 0; i < nkeys; i++) {
		if (off >= len || memchr(raw + off, '\0', len - off) == NULL)
			return KEEL_EINVAL;
		keys[i] = (const char *)raw + off;
		off += strlen(keys[i]) + 1;
	}
	return off == len ? KEEL_OK : KEEL_EINVAL;
}

char *
keel_page_encode(struct keel_arena *a, const char *secret, const char *scope,
    const char *const *keys, size_t nkeys)
{
	struct keel_page_sig	 sig = { .secret = secret, .scope = scope };

	return keel_page_encode_sig(a, &sig, keys, nkeys);
}

enum keel_err
keel_page_decode(struct keel_arena *a, const char *secret, const char *scope,
    const char *tok, const char **keys, size_t nkeys)
{
	struct keel_page_sig	 sig = { .secret = secret, .scope = scope };

	return keel_page_decode_sig(a, &sig, tok, keys, nkeys);
}

/* What req's cursors for scope are signed for (see the top). */
static void
req_sig(const struct keel_req *req, const char *scope, int64_t owner,
    struct keel_page_sig *sig)
{
	sig->secret = req->cfg->secret;
	sig->fallback = req->cfg->secret_fallback;
	sig->scope = scope;
	sig->qs = req->qs;
	sig->nqs = req->nqs;
	sig->owner = owner;
}

enum keel_step
keel_page_from_request(struct keel_req *req, const char *scope, size_t nkeys,
    struct keel_page *pg)
{
	return keel_page_from_request_owner(req, scope, 0, nkeys, pg);
}

enum keel_step
keel_page_from_request_owner(struct keel_req *req, const char *scope,
    int64_t owner, size_t nkeys, struct keel_page *pg)
{
	struct keel_page_sig	 sig;
	const char		*lim, *after, *before, *tok;
	int64_t			 v;

	assert(owner >= 0);
	memset(pg, 0, sizeof(*pg));
	pg->owner = owner;
	pg->limit = KEEL_PAGE_DEFAULT;
	pg->dir = KEEL_PAGE_FIRST;
	if ((lim = keel_http_query(req, "limit")) != NULL) {
		if (!keel_parse_int64(lim, 1, KEEL_PAGE_MAX, &v)) {
			keel_http_reply_query_field(req, "limit",
			    "must be an integer from 1 to 100");
			return KEEL_STEP_REPLIED;
		}
		pg->limit = (int)v;
	}
	after = keel_http_query(req, "after");
	before = keel_http_query(req, "before");
	if (after != NULL && before != NULL) {
		keel_http_reply_error(req, 400, "bad_request",
		    "give either after or before, not both");
		return KEEL_STEP_REPLIED;
	}
	if ((tok = after != NULL ? after : before) == NULL)
		return KEEL_STEP_GO;
	pg->dir = after != NULL ? KEEL_PAGE_AFTER : KEEL_PAGE_BEFORE;
	req_sig(req, scope, owner, &sig);
	if (nkeys > KEEL_PAGE_MAXKEYS || keel_page_decode_sig(req->arena,
	    &sig, tok, pg->keys, nkeys) != KEEL_OK) {
		keel_http_reply_error(req, 400, "bad_request",
		    "the cursor is not valid for this list");
		return KEEL_STEP_REPLIED;
	}
	pg->nkeys = nkeys;
	return KEEL_STEP_GO;
}

/* The cursor made of row r's sort keys, signed for sig. */
static const char *
row_cursor(struct keel_req *req, const struct keel_page_sig *sig,
    const struct keel_rows *rows, size_t r, const size_t *key_cols,
    size_t nkeys)
{
	const char	*keys[KEEL_PAGE_MAXKEYS];
	size_t		 i;

	assert(nkeys <= KEEL_PAGE_MAXKEYS);
	for (i = 0; i < nkeys; i++)
		keys[i] = keel_rows_value(rows, r, key_cols[i]);
	return keel_page_encode_sig(req->arena, sig, keys, nkeys);
}

void
keel_page_window(struct keel_req *req, const struct keel_page *pg,
    const char *scope, const struct keel_rows *rows, const size_t *key_cols,
    size_t nkeys, struct keel_page_window *w)
{
	struct keel_page_sig	 sig;
	size_t			 fetched = keel_rows_count(rows);
	int			 more, back = pg->dir == KEEL_PAGE_BEFORE;

	memset(w, 0, sizeof(*w));
	/* The request's own filters: a cached answer is the same query's. */
	req_sig(req, scope, pg->owner, &sig);
	more = fetched > (size_t)pg->limit;
	w->n = more ? (size_t)pg->limit : fetched;
	w->reversed = back;
	if (w->n == 0)
		return;
	/*
	 * "next" continues past the last shown row: there is more after it
	 * when the extra row came (forward), and always when we came
	 * backward from a cursor.  "prev" mirrors it at the first row.
	 */
	if (back || more)
		w->next = row_cursor(req, &sig, rows, back ? 0 : w->n - 1,
		    key_cols, nkeys);
	if (pg->dir == KEEL_PAGE_AFTER || (back && more))
		w->prev = row_cursor(req, &sig, rows, back ? w->n - 1 : 0,
		    key_cols, nkeys);
}

size_t
keel_page_at(const struct keel_page_window *w, size_t i)
{
	return w->reversed ? w->n - 1 - i : i;
}

void
keel_page_write(struct keel_jw *w, const struct keel_page *pg,
    const char *next, const char *prev)
{
	keel_jw_obj_open(w);
	keel_jw_key(w, "limit");
	keel_jw_int(w, pg->limit);
	keel_jw_key(w, "next");
	if (next != NULL)
		keel_jw_str(w, next);
	else
		keel_jw_null(w);
	keel_jw_key(w, "prev");
	if (prev != NULL)
		keel_jw_str(w, prev);
	else
		keel_jw_null(w);
	keel_jw_obj_close(w);
}
