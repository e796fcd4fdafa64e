/* SPDX-License-Identifier: ISC */
/* auth.h -- passwords, sessions, one-time tokens, roles, the caller. */
#ifndef KEEL_AUTH_H
#define KEEL_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "keel/err.h"

struct json_object;
struct keel_buf;
struct keel_db;
struct keel_redis;
struct keel_req;
struct keel_rows;
struct keel_user;

/*
 * Sessions live in Redis only, keyed by the SHA-256 of the token, so a
 * copy of Redis holds nothing a client could present (the format is a
 * contract with the rate limiter, which reads it in its own script):
 *
 *	keel:sess:<64 hex>	HASH uid <decimal>, role <name>, exp <unix s>;
 *				key TTL = the session's remaining life
 *	keel:user-sess:<uid>	SET of that user's 64-hex session ids
 *	keel:ryw:<uid>		present while the user's reads must go to
 *				the primary (read-your-writes window)
 *
 * Single-use reset and invitation tokens live in PostgreSQL
 * (one_time_tokens, sql/008), by the same SHA-256 id, so that a token and
 * the outbox row carrying its link commit together and a reset can be
 * requested while Redis is down.
 *
 * Ending sessions: a change that must end a user's sessions (password,
 * role, deactivation) ends them in Redis before its transaction commits
 * and rolls back when it can't (503, nothing changed); a login re-reads
 * the account with FOR SHARE after creating its session (which waits for
 * such a transaction) and ends the session when the account changed.  So
 * no session outlives the change, whichever finishes first.
 *
 * Tokens reach clients as url-safe base64 (no padding) of 32 random bytes.
 */
#define KEEL_AUTH_TOKEN_BYTES	32
#define KEEL_AUTH_TOKEN_LEN	43	/* base64url chars, without the NUL */
#define KEEL_AUTH_ID_LEN	64	/* hex chars of SHA-256 */
#define KEEL_AUTH_HASH_MAX	128	/* crypto_pwhash_STRBYTES */
#define KEEL_AUTH_PASSWORD_MIN	10	/* characters (API.md) */
#define KEEL_AUTH_PASSWORD_MAX	1024	/* bytes: bounds the hashing work */
#define KEEL_AUTH_RESET_TTL	3600	/* seconds a reset link lives */

/*
 * The columns of a user as every statement that returns one selects them
 * (FROM users), in the order keel_auth_user_json() reads them.  The
 * password hash is never among them.
 */
#define KEEL_AUTH_USER_COLS "id, email, username, name, role, is_active, " \
	"to_char(created_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), " \
	"to_char(updated_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define KEEL_AUTH_USER_NCOLS	8

/*
 * Row r of rows (from col on, KEEL_AUTH_USER_COLS) as API.md's user
 * object: id, email, username, name, role, isActive, createdAt,
 * updatedAt.  Returns a new reference.
 */
struct json_object *keel_auth_user_json(const struct keel_rows *rows,
		    size_t r, size_t col);

/* Role bit (KEEL_ROLE_*) for "admin".."student"; 0 when unknown. */
unsigned	 keel_auth_role_parse(const char *name);
/* The name of one role bit; "" when not exactly one known bit. */
const char	*keel_auth_role_name(unsigned role);

/*
 * NULL when pw is acceptable as a new password (10+ characters, at most
 * KEEL_AUTH_PASSWORD_MAX bytes, valid UTF-8), else a static message.
 */
const char	*keel_auth_password_check(const char *pw);

/*
 * Hashes pw with Argon2id (libsodium crypto_pwhash_str, interactive
 * limits) into out (KEEL_AUTH_HASH_MAX bytes).  KEEL_EINTERNAL when
 * libsodium can't get the memory.
 */
enum keel_err	 keel_auth_hash(const char *pw, char out[KEEL_AUTH_HASH_MAX]);

/*
 * 1 when pw matches hash.  hash may be NULL (no such user, or no password
 * set yet): pw is then checked against a fixed dummy hash made with the
 * same parameters and 0 returned, so an unknown login costs exactly what
 * a wrong password does.
 */
int		 keel_auth_verify(const char *hash, const char *pw);

/* A fresh token (KEEL_AUTH_TOKEN_LEN chars + NUL) from the kernel CSPRNG. */
void		 keel_auth_token_new(char tok[KEEL_AUTH_TOKEN_LEN + 1]);
/* The id under which tok is stored: SHA-256 in lower-case hex. */
void		 keel_auth_token_id(const char *tok,
		    char id[KEEL_AUTH_ID_LEN + 1]);
/* 1 when tok has the shape of a token (43 base64url chars). */
int		 keel_auth_token_valid(const char *tok);

/* A session as stored in Redis. */
struct keel_session {
	int64_t	 uid;
	unsigned role;			/* one KEEL_ROLE_* bit */
	time_t	 exp;			/* unix seconds */
	char	 id[KEEL_AUTH_ID_LEN + 1];
	int64_t	 ryw_ms;		/* ms the user's reads stay on the
					   primary; 0 when none */
};

/*
 * Starts a session for uid with role, living ttl seconds: writes the
 * session hash and the user's index in one script.  tok receives the
 * token for the client, *exp (may be NULL) its expiry.
 */
enum keel_err	 keel_auth_session_new(struct keel_redis *r, int64_t uid,
		    unsigned role, int ttl, char tok[KEEL_AUTH_TOKEN_LEN + 1],
		    time_t *exp);

/*
 * Looks up tok in one round trip.  KEEL_ENOENT when it is malformed,
 * unknown or expired; KEEL_EUNAVAIL when Redis can't be reached.
 */
enum keel_err	 keel_auth_session_get(struct keel_redis *r, const char *tok,
		    struct keel_session *out);

/* Ends the session id (hex) of uid at once. */
enum keel_err	 keel_auth_session_end(struct keel_redis *r, int64_t uid,
		    const char *id);

/*
 * Ends every session of uid at once except keep (an id, or NULL for
 * all): logout everywhere, deactivation, password change.
 */
enum keel_err	 keel_auth_sessions_end_all(struct keel_redis *r, int64_t uid,
		    const char *keep);

/*
 * A single-use token for purpose ("reset", "invite") of uid living ttl
 * seconds, inserted into one_time_tokens: call it inside the transaction
 * that queues the email carrying it.  tok receives the token, id (may be
 * NULL) its stored id.  Errors are keel_db_query()'s.
 */
enum keel_err	 keel_auth_once_new(struct keel_db *db, const char *purpose,
		    int64_t uid, int ttl, char tok[KEEL_AUTH_TOKEN_LEN + 1],
		    char id[KEEL_AUTH_ID_LEN + 1]);

/*
 * Marks tok used in one UPDATE, so it works once even under concurrent
 * takes.  Call it inside the transaction of the change it allows: a
 * rollback gives the token back.  On KEEL_OK *uid is its user and
 * *purpose (size n) its purpose.  KEEL_ENOENT when it is malformed,
 * unknown, expired or used; else keel_db_query()'s errors.
 */
enum keel_err	 keel_auth_once_take(struct keel_db *db, const char *tok,
		    int64_t *uid, char *purpose, size_t n);

/* Appends base + "/set-password?token=" + tok to b (pure). */
void		 keel_auth_mail_link(struct keel_buf *b, const char *base,
		    const char *tok);

/* An email carrying a single-use set-password link. */
struct keel_auth_mail {
	const char	*kind;		/* "invitation", "password_reset" */
	int64_t		 uid;
	const char	*to;		/* address */
	const char	*name;		/* the addressee's name */
	const char	*token;		/* the once token for the link */
	const char	*token_id;	/* its stored id (idempotency key) */
};

/*
 * Queues m in the outbox (queue "email", payload {"to","name","link"},
 * link KEEL_PUBLIC_URL/set-password?token=...; never a password).  Call
 * inside the transaction of the change that causes it; *job (may be NULL)
 * gets the outbox id to keel_outbox_push() after the commit.  Errors are
 * keel_outbox_add()'s.
 */
enum keel_err	 keel_auth_queue_mail(struct keel_db *db,
		    const struct keel_auth_mail *m, int64_t *job);

/*
 * A password-reset request for email, in one statement that does the
 * same work whether or not an active account has that address: a new
 * reset token (KEEL_AUTH_RESET_TTL) and its email in the outbox only
 * when one does.  *job gets the outbox id, or 0 when there is no such
 * account.  Needs no Redis.  Errors are keel_db_query()'s.
 */
enum keel_err	 keel_auth_queue_reset(struct keel_db *db, const char *email,
		    int64_t *job);

/*
 * Pipeline step "who is calling" (router.c): resolves the bearer token
 * of req into a user allocated from req's arena.  *out is NULL for an
 * anonymous request or a token that is unknown or expired.  KEEL_EUNAVAIL
 * when a token was given and Redis can't be reached.  Also points req's
 * database reads at the primary while the user's read-your-writes window
 * is open.  Usable on its own (the rate limiter wants the user id).
 */
enum keel_err	 keel_auth_identify(struct keel_req *req,
		    struct keel_user **out);

/*
 * The router's two steps.  Each returns 0 to go on, or -1 after replying:
 * identify fills req->user (503 when Redis is down and the route needs a
 * session); authorize answers 401 without a session on a route that is
 * not KEEL_ACCESS_ANYONE, 403 when the role's bit isn't in route->access.
 */
int		 keel_auth_step_identify(struct keel_req *req);
int		 keel_auth_step_authorize(struct keel_req *req);

/*
 * After the handler: when req wrote to the primary and has a user, opens
 * the user's read-your-writes window (KEEL_DB_RYW_WINDOW) in Redis, so
 * their next reads, on any worker or host, see the write.  Best effort.
 */
void		 keel_auth_note_writes(struct keel_req *req);

#endif /* KEEL_AUTH_H */
