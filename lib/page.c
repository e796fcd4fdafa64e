/* SPDX-License-Identifier: ISC */
/*
 * page.c -- keyset cursors.
 *
 * A cursor carries the sort keys of the row a page ended at, so the next
 * page is "WHERE (created_at, id) < ($1, $2) ORDER BY ... LIMIT n": an
 * index range scan whose cost does not grow with the page number, unlike
 * OFFSET.  Clients must not forge keys, so each cursor is signed with
 * HMAC-SHA256 under the server secret and the list's scope.
 */
#include "config.h"

#include <assert.h>
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
 * as long as the process.
 */
static crypto_auth_hmacsha256_state	 mac_base;
static char				 mac_secret[128];	/* "" until set */

static void
cursor_mac(const char *secret, const char *scope, const unsigned char *p,
    size_t n, unsigned char mac[MAC_LEN])
{
	crypto_auth_hmacsha256_state	 st;
	unsigned char			 full[crypto_auth_hmacsha256_BYTES];
	size_t				 len = strlen(secret);

	/* Tests switch secrets: the state is rebuilt when it changes. */
	if (len == 0 || len >= sizeof(mac_secret) ||
	    strcmp(secret, mac_secret) != 0) {
		crypto_auth_hmacsha256_init(&mac_base,
		    (const unsigned char *)secret, len);
		if (len < sizeof(mac_secret))
			memcpy(mac_secret, secret, len + 1);
	}
	st = mac_base;
	/* The scope's NUL separates it from the payload unambiguously. */
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)scope,
	    strlen(scope) + 1);
	crypto_auth_hmacsha256_update(&st, p, n);
	crypto_auth_hmacsha256_final(&st, full);
	memcpy(mac, full, MAC_LEN);
	sodium_memzero(&st, sizeof(st));
}

char *
keel_page_encode(struct keel_arena *a, const char *secret, const char *scope,
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
	cursor_mac(secret, scope, raw, n, raw + n);
	b64len = sodium_base64_ENCODED_LEN(n + MAC_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	out = keel_arena_alloc(a, b64len);
	sodium_bin2base64(out, b64len, raw, n + MAC_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

enum keel_err
keel_page_decode(struct keel_arena *a, const char *secret, const char *scope,
    const char *tok, const char **keys, size_t nkeys)
{
	unsigned char	 mac[MAC_LEN];
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
	cursor_mac(secret, scope, raw, len, mac);
	if (sodium_memcmp(mac, raw + len, MAC_LEN) != 0)
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

enum keel_step
keel_page_from_request(struct keel_req *req, const char *scope, size_t nkeys,
    struct keel_page *pg)
{
	const char	*lim, *after, *before, *tok;
	int64_t		 v;

	memset(pg, 0, sizeof(*pg));
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
	if (nkeys > KEEL_PAGE_MAXKEYS || keel_page_decode(req->arena,
	    req->cfg->secret, scope, tok, pg->keys, nkeys) != KEEL_OK) {
		keel_http_reply_error(req, 400, "bad_request",
		    "the cursor is not valid for this list");
		return KEEL_STEP_REPLIED;
	}
	pg->nkeys = nkeys;
	return KEEL_STEP_GO;
}

/* The cursor made of row r's sort keys. */
static const char *
row_cursor(struct keel_req *req, const char *scope,
    const struct keel_rows *rows, size_t r, const size_t *key_cols,
    size_t nkeys)
{
	const char	*keys[KEEL_PAGE_MAXKEYS];
	size_t		 i;

	assert(nkeys <= KEEL_PAGE_MAXKEYS);
	for (i = 0; i < nkeys; i++)
		keys[i] = keel_rows_value(rows, r, key_cols[i]);
	return keel_page_encode(req->arena, req->cfg->secret, scope,
	    keys, nkeys);
}

void
keel_page_window(struct keel_req *req, const struct keel_page *pg,
    const char *scope, const struct keel_rows *rows, const size_t *key_cols,
    size_t nkeys, struct keel_page_window *w)
{
	size_t	 fetched = keel_rows_count(rows);
	int	 more, back = pg->dir == KEEL_PAGE_BEFORE;

	memset(w, 0, sizeof(*w));
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
		w->next = row_cursor(req, scope, rows, back ? 0 : w->n - 1,
		    key_cols, nkeys);
	if (pg->dir == KEEL_PAGE_AFTER || (back && more))
		w->prev = row_cursor(req, scope, rows, back ? w->n - 1 : 0,
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
