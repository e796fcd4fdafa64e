/* SPDX-License-Identifier: ISC */
/* auth.h -- passwords, sessions, one-time tokens, roles, the caller. */
#ifndef KEEL_AUTH_H
#define KEEL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "keel/err.h"
#include "keel/http.h"
#include "keel/resource.h"

struct keel_buf;
struct keel_db;
struct keel_redis;
struct keel_rows;

/*
 * Sessions live in Redis only, keyed by the SHA-256 of the token, so a
 * copy of Redis holds nothing a client could present.  The format is
 * this module's alone; another script that reads a session in passing
 * (the limiter's) runs auth's fragment, keel_auth_session_ride:
 *
 *	keel:sess:<64 hex>	HASH uid <decimal>, role <name>, exp <unix s>;
 *				key TTL = the session's remaining life
 *	keel:user-sess:<uid>	SET of that user's 64-hex session ids, at
 *				most KEEL_SESSION_MAX: a new one ends the
 *				oldest
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
 * Each session that ends (a logout, the end of all, the oldest past
 * KEEL_SESSION_MAX at a login) is announced, by the script that ends
 * it, on its user's live channel "keel:notify:<uid>" (notify.h) as
 * {"userId": <uid>, "sessionEnded": "<its 64-hex id>"}: every stream
 * process closes the streams that session opened (stream/stream.c).  A
 * session that expires is not announced; its streams end at its exp.
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
/* The user's live channel's prefix, notify.h's too (auth is below it). */
#define KEEL_AUTH_USER_CHANNEL	"keel:notify:"

/*
 * A user as API.md shows one (id, email, username, name, role, isActive,
 * createdAt, updatedAt; never the password hash): the columns every
 * statement returning a user selects (FROM users), and the resource
 * table that writes them (resource.h), shared by the auth and users
 * apps.
 */
#define KEEL_AUTH_USER_COLS "id, email, username, name, role, " \
	"is_active AS \"isActive\", " \
	KEEL_SQL_TIME("created_at", "createdAt") ", " \
	KEEL_SQL_TIME("updated_at", "updatedAt")
extern const struct keel_resource keel_auth_users;
/*
 * The users loader (resource.h): a user embedded in another resource's
 * objects as {"id", "name", "email"}, loaded once per reply whatever
 * the number of rows.
 */
extern const struct keel_loader keel_auth_user_loader;

/* Role bit (KEEL_ROLE_*) for "admin".."student"; 0 when unknown. */
unsigned	 keel_auth_role_parse(const char *name);
/* The name of one role bit; "" when not exactly one known bit. */
const char	*keel_auth_role_name(unsigned role);

/*
 * True for an email address the API takes: keel_text_email_valid(), the
 * check the mailer makes, so no account holds an address mail refuses.
 */
bool		 keel_auth_email_valid(const char *s);
/* True for a username of letters, digits, '_', '.' and '-' only. */
bool		 keel_auth_username_valid(const char *s);

/*
 * A user's email, username and name as field rows (struct keel_field,
 * json.h), one definition for every table that takes them: the users
 * API's and keel-admin's create-admin, so neither takes what the other
 * refuses.  Initializers, as a static table needs constants.
 */
#define KEEL_AUTH_FIELD_EMAIL { .name = "email", .type = KEEL_FIELD_STRING, \
	.required = true, .min = 3, .max = KEEL_TEXT_EMAIL_MAX,		\
	.check = keel_auth_email_valid,					\
	.check_msg = "must be an email address" }
#define KEEL_AUTH_FIELD_USERNAME { .name = "username",			\
	.type = KEEL_FIELD_STRING, .required = true, .min = 3, .max = 32, \
	.check = keel_auth_username_valid,				\
	.check_msg = "must be 3-32 letters, digits, '_', '.' or '-'" }
#define KEEL_AUTH_FIELD_NAME { .name = "name", .type = KEEL_FIELD_STRING, \
	.required = true, .min = 1, .max = 100, .check = keel_text_one_line, \
	.check_msg = "must be one line, without control characters" }

/*
 * NULL when pw is acceptable as a new password (10+ characters, at most
 * KEEL_AUTH_PASSWORD_MAX bytes, valid UTF-8), else a static message.
 */
const char	*keel_auth_password_check(const char *pw);

/*
 * A step for a user changing their own password (API.md: "with current
 * password"): pw must pass the policy (422 naming "password"), current
 * must be given and match req->user's stored hash (422 naming
 * "currentPassword"); then hash receives pw's Argon2id hash.
 * KEEL_STEP_REPLIED after a 422, or with *er set when a dependency
 * failed (nothing replied: the caller returns *er).
 */
enum keel_step	 keel_auth_new_password(struct keel_req *req, const char *pw,
		    const char *current, char hash[KEEL_AUTH_HASH_MAX],
		    enum keel_err *er);

/*
 * Hashes pw with Argon2id (libsodium crypto_pwhash_str, interactive
 * limits) into out (KEEL_AUTH_HASH_MAX bytes).  KEEL_EINTERNAL when
 * libsodium can't get the memory.
 */
enum keel_err	 keel_auth_hash(const char *pw, char out[KEEL_AUTH_HASH_MAX]);

/*
 * True when pw matches hash.  hash may be NULL (no such user, or no
 * password set yet): pw is then checked against a fixed dummy hash made
 * with the same parameters and false returned, so an unknown login costs
 * exactly what a wrong password does.
 */
bool		 keel_auth_verify(const char *hash, const char *pw);

/* A fresh token (KEEL_AUTH_TOKEN_LEN chars + NUL) from the kernel CSPRNG. */
void		 keel_auth_token_new(char tok[KEEL_AUTH_TOKEN_LEN + 1]);
/* The id under which tok is stored: SHA-256 in lower-case hex. */
void		 keel_auth_token_id(const char *tok,
		    char id[KEEL_AUTH_ID_LEN + 1]);
/* True when tok has the shape of a token (43 base64url chars). */
bool		 keel_auth_token_valid(const char *tok);

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
 * Starts a session for uid with role, living KEEL_SESSION_TTL, in req's
 * Redis: writes the session hash and the user's index in one script,
 * ending the user's oldest sessions past KEEL_SESSION_MAX.  tok receives
 * the token for the client, *exp (may be NULL) its expiry.
 */
enum keel_err	 keel_auth_session_new(struct keel_req *req, int64_t uid,
		    unsigned role, char tok[KEEL_AUTH_TOKEN_LEN + 1],
		    time_t *exp);

/*
 * Looks up tok in one round trip.  KEEL_ENOENT when it is malformed,
 * unknown or expired; KEEL_EUNAVAIL when Redis can't be reached.
 */
enum keel_err	 keel_auth_session_get(struct keel_redis *r, const char *tok,
		    struct keel_session *out);

/* Ends the session id (hex) of uid at once, and announces it (above). */
enum keel_err	 keel_auth_session_end(struct keel_redis *r, int64_t uid,
		    const char *id);

/*
 * Ends every session of uid at once except keep (an id, or NULL for
 * all): logout everywhere, deactivation, password change; each one
 * announced (above).
 */
enum keel_err	 keel_auth_sessions_end_all(struct keel_redis *r, int64_t uid,
		    const char *keep);

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

/*
 * Set-password links are never stored: a request queues a job that names
 * who the email is for (an invitation: {"userId"}; a reset request:
 * {"email"}), and the email drainer makes the single-use token and its
 * link when it sends (keel_auth_link_job), so no outbox row, Redis job or
 * dead letter ever holds a link.
 *
 * The invitation of user uid: call it inside the transaction that
 * creates the user; *job gets the outbox id to push after the commit.
 * Errors are keel_outbox_add()'s.
 */
enum keel_err	 keel_auth_queue_invite(struct keel_db *db, int64_t uid,
		    int64_t *job);

/*
 * A password-reset request for email: one outbox row whether or not an
 * active account has that address, so the answer and its time say
 * nothing.  Needs no Redis.  *job gets the outbox id.  Errors are
 * keel_db_query()'s.
 */
enum keel_err	 keel_auth_queue_reset(struct keel_db *db, const char *email,
		    int64_t *job);

/* The account an email is for, as it is now (keel_auth_mail_user). */
struct keel_auth_recipient {
	int64_t		 uid;
	char		*to;		/* its address now; owned */
	char		*name;		/* owned */
};

/*
 * The active account an email is for, read when it is sent: by uid when
 * uid > 0, else by email (any case).  On KEEL_OK out holds its id, its
 * current address and name (free with keel_auth_recipient_free).
 * KEEL_ENOENT when no active account is behind them: nothing to send.
 * Else keel_db_query()'s errors.  The lookup of the emails that name
 * their user: a reset link's, before its cap (keel_auth_link_job, whose
 * token statement then reads the account again under a lock, as it does
 * for an invitation), and the results' (keel-drain-email).
 */
enum keel_err	 keel_auth_mail_user(struct keel_db *db, const char *email,
		    int64_t uid, struct keel_auth_recipient *out);
/* Frees r's members; r may be NULL. */
void		 keel_auth_recipient_free(struct keel_auth_recipient *r);

/* A link job as the drainer reads it (kind and payload above). */
struct keel_auth_link {
	const char	*email;		/* a reset request's address */
	int64_t		 uid;		/* an invitation's user; 0 for a reset */
	const char	*site;		/* the links' base: KEEL_PUBLIC_URL */
	int		 invite_ttl;	/* seconds: KEEL_INVITE_TTL */
	const char	*key;		/* the job's idempotency key */
	struct keel_redis *redis;	/* for the reset cap */
	int		 reset_max;	/* KEEL_RESET_MAIL_MAX: emails per */
	int		 reset_window;	/* seconds; reset_max 0: no cap */
};

/*
 * For the email drainer: makes the single-use token of l (reset: 1 h;
 * invitation: invite_ttl) and writes to out the payload of the
 * "password_reset" or "invitation" email, {"to", "name", "link"}; the
 * caller sends it and wipes out, to the address the account has as the
 * token is made (read under a lock with it).  KEEL_ENOENT when no active
 * account is behind l, or a reset's account no longer has its address
 * (nothing to send).  A reset counts against its account's cap
 * first (reset_max emails per reset_window, in Redis as
 * "keel:reset-mail:<uid>", the uid its hash tag in cluster mode; a job
 * retried counts once): KEEL_ETOOBIG past it (logged; nothing made,
 * nothing to send), KEEL_EUNAVAIL when Redis can't say (retry: a cap
 * that can't be read is not a reason to send).  Else keel_db_query()'s
 * errors.
 */
enum keel_err	 keel_auth_link_job(struct keel_db *db,
		    const struct keel_auth_link *l, struct keel_buf *out);

/*
 * The session read in passing, for another module's script (limit.h's
 * struct keel_limit_ride): a Lua fragment defining ride(key), which
 * returns uid, role, exp and the read-your-writes window left (ms), as
 * text, or false when key holds no live session.
 */
extern const char *const keel_auth_session_ride;
/*
 * The session key req's bearer token would have ("keel:sess:<64 hex>"),
 * from req's arena; NULL when there is no token or it can't be one.
 */
const char	*keel_auth_session_key(struct keel_req *req);

/*
 * Pipeline steps.  identify fills req->user from the bearer token's
 * session, key (keel_auth_session_key(req), computed once per request;
 * NULL: no token): from seen[0..nseen), what keel_auth_session_ride
 * returned in another script (nseen 0: no session), or, when seen is
 * NULL, from a lookup of its own.  A token naming no live session leaves req->user
 * NULL.  KEEL_STEP_REPLIED after a 503 when Redis can't be reached and
 * the route needs a session (a public route goes on anonymously).
 * While the user's read-your-writes window is open, req's reads go to
 * the primary.  authorize answers 401 without a session on a route that
 * is not KEEL_ACCESS_ANYONE, 403 when the role's bit isn't in the
 * route's access.
 */
enum keel_step	 keel_auth_step_identify(struct keel_req *req,
		    const char *key, const char *const *seen, size_t nseen);
enum keel_step	 keel_auth_step_authorize(struct keel_req *req);

/*
 * After the handler: when req wrote to the primary and has a user, opens
 * the user's read-your-writes window (KEEL_DB_RYW_WINDOW) in Redis, so
 * their next reads, on any worker or host, see the write.  Best effort.
 */
void		 keel_auth_note_writes(struct keel_req *req);

#endif /* KEEL_AUTH_H */
