/* SPDX-License-Identifier: ISC */
/* page.h -- keyset pagination with opaque, tamper-evident cursors. */
#ifndef KEEL_PAGE_H
#define KEEL_PAGE_H

#include <stddef.h>

#include "keel/err.h"

struct json_object;
struct keel_arena;
struct keel_req;

#define KEEL_PAGE_MAXKEYS	4	/* sort-key columns in a cursor */
#define KEEL_PAGE_DEFAULT	20
#define KEEL_PAGE_MAX		100
#define KEEL_PAGE_MAXPAYLOAD	512	/* bytes of keys in one cursor */

enum keel_page_dir {
	KEEL_PAGE_FIRST,	/* no cursor: the first page */
	KEEL_PAGE_AFTER,	/* rows after keys, in list order */
	KEEL_PAGE_BEFORE,	/* rows before keys */
};

struct keel_page {
	int			 limit;		/* 1..KEEL_PAGE_MAX */
	enum keel_page_dir	 dir;
	const char		*keys[KEEL_PAGE_MAXKEYS]; /* from the cursor */
	size_t			 nkeys;
};

/*
 * A cursor is base64url(keys joined by NUL || HMAC-SHA256(secret, scope ||
 * payload)[0..16)).  scope ("cars") makes one resource's cursor foreign
 * to another.  Encode returns a string from a.  The keys together must
 * stay under KEEL_PAGE_MAXPAYLOAD bytes (sort keys are ids and times).
 */
char		*keel_page_encode(struct keel_arena *a, const char *secret,
		    const char *scope, const char *const *keys, size_t nkeys);
/*
 * Decodes tok into keys[0..nkeys) (strings from a).  KEEL_EINVAL when tok
 * is malformed, signed for another scope or secret, or holds a different
 * number of keys.
 */
enum keel_err	 keel_page_decode(struct keel_arena *a, const char *secret,
		    const char *scope, const char *tok, const char **keys,
		    size_t nkeys);

/*
 * Reads limit, after and before from req's query for a list of scope
 * whose cursor holds nkeys keys.  Returns 0, or -1 after replying 400.
 */
int		 keel_page_from_request(struct keel_req *req, const char *scope,
		    size_t nkeys, struct keel_page *pg);

/*
 * The "page" object of API.md: {"limit", "next", "prev"}; next and prev
 * are cursors or NULL for JSON null.  Returns a new reference.
 */
struct json_object *keel_page_json(const struct keel_page *pg,
		    const char *next, const char *prev);

#endif /* KEEL_PAGE_H */
