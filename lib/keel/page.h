/* SPDX-License-Identifier: ISC */
/* page.h -- keyset pagination with opaque, tamper-evident cursors. */
#ifndef KEEL_PAGE_H
#define KEEL_PAGE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"
#include "keel/http.h"

struct keel_arena;
struct keel_req;
struct keel_rows;

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
	int64_t			 owner;		/* the user the list's rows
						   belong to, or 0: its
						   cursors are bound to them */
};

/*
 * What a cursor is signed for, so that any other use of it is foreign
 * (API.md "Lists": a 400): the server secret, the list (scope: "cars"),
 * the list's filters -- the query's parameters other than limit, after
 * and before, whatever their order -- and, for a list of one user's own
 * rows, that user.  limit is free to change from page to page.
 */
struct keel_page_sig {
	const char		*secret;	/* KEEL_SECRET: signs */
	const char		*fallback;	/* KEEL_SECRET_FALLBACK: verifies
						   too; NULL or "": none */
	const char		*scope;
	const struct keel_param	*qs;	/* the query's pairs; may be NULL */
	size_t			 nqs;
	int64_t			 owner;	/* the rows' user; 0: anyone's */
};

/*
 * A cursor is base64url(keys joined by NUL || HMAC-SHA256(secret, what
 * sig binds || payload)[0..16)): what it is bound to is in the MAC only,
 * never in the token, so cursors don't grow with the filters.  Encode
 * returns a string from a.  The keys together must stay under
 * KEEL_PAGE_MAXPAYLOAD bytes (sort keys are ids and times).
 */
char		*keel_page_encode_sig(struct keel_arena *a,
		    const struct keel_page_sig *sig, const char *const *keys,
		    size_t nkeys);
/*
 * Decodes tok into keys[0..nkeys) (strings from a).  KEEL_EINVAL when tok
 * is malformed, signed for anything but sig (under sig's secret or, when
 * set, its fallback), or holds a different number of keys.
 */
enum keel_err	 keel_page_decode_sig(struct keel_arena *a,
		    const struct keel_page_sig *sig, const char *tok,
		    const char **keys, size_t nkeys);

/* The same for a cursor bound to scope alone: no filters, no owner. */
char		*keel_page_encode(struct keel_arena *a, const char *secret,
		    const char *scope, const char *const *keys, size_t nkeys);
enum keel_err	 keel_page_decode(struct keel_arena *a, const char *secret,
		    const char *scope, const char *tok, const char **keys,
		    size_t nkeys);

/*
 * A step: reads limit, after and before from req's query for a list of
 * scope whose cursor holds nkeys keys; KEEL_STEP_REPLIED after a 400,
 * for a cursor among others signed for another list or other filters
 * (req's other query parameters).  pg->owner is 0: the list's rows are
 * not one user's, and keel_page_window() signs for any caller.
 */
enum keel_step	 keel_page_from_request(struct keel_req *req,
		    const char *scope, size_t nkeys, struct keel_page *pg);
/*
 * The same for a list of owner's own rows (owner > 0; 0 is the call
 * above): a cursor signed for another user is a 400, and the window's
 * cursors are signed for owner.  Only where an answer holding them is
 * never shared between users (not cached, or cached per user).
 */
enum keel_step	 keel_page_from_request_owner(struct keel_req *req,
		    const char *scope, int64_t owner, size_t nkeys,
		    struct keel_page *pg);

/*
 * What a fetched page shows.  A list query fetches limit + 1 rows in the
 * page's direction (newest first; oldest first for BEFORE, so the rows
 * nearest the cursor come first); the extra row only says that more
 * follow.  keel_page_window() works out how many rows to show, in which
 * order, and the cursors for "next" and "prev" from the sort-key columns
 * key_cols[0..nkeys) of the boundary rows, signed as pg's were read
 * (scope, req's filters, pg->owner).
 */
struct keel_page_window {
	size_t		 n;		/* rows to show */
	int		 reversed;	/* rows came in reverse list order */
	const char	*next;		/* cursor for after=, or NULL */
	const char	*prev;		/* cursor for before=, or NULL */
};

void		 keel_page_window(struct keel_req *req,
		    const struct keel_page *pg, const char *scope,
		    const struct keel_rows *rows, const size_t *key_cols,
		    size_t nkeys, struct keel_page_window *w);
/* The index in rows of the i-th shown row, in list order. */
size_t		 keel_page_at(const struct keel_page_window *w, size_t i);

/*
 * The "page" object of API.md, {"limit", "next", "prev"}, as the next
 * value of w (json.h's writer); next and prev are cursors or NULL for
 * JSON null.
 */
struct keel_jw;
void		 keel_page_write(struct keel_jw *w, const struct keel_page *pg,
		    const char *next, const char *prev);

#endif /* KEEL_PAGE_H */
