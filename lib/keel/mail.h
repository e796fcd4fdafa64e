/* SPDX-License-Identifier: ISC */
/* mail.h -- building email (MIME, RFC 2047) and sending it over SMTP. */
#ifndef KEEL_MAIL_H
#define KEEL_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "keel/err.h"

struct keel_arena;
struct keel_buf;
struct keel_config;
struct keel_mail;		/* opaque: the libcurl handle and settings */

/* One message; every string UTF-8 and owned by the caller. */
struct keel_mail_msg {
	const char	*to;		/* address only: a@b.example, as
					   keel_text_email_valid() takes */
	const char	*to_name;	/* display name; may be NULL */
	const char	*subject;
	const char	*text;		/* the text/plain part */
	const char	*html;		/* the text/html part; NULL: none */
	const char	*idem_key;	/* the job's key: names the Message-ID */
	const char	*request_id;	/* X-Request-Id header; NULL or "": none */
	const char	*origin;	/* the job's outbox row (lib/outbox.c),
					   names the Message-ID with idem_key;
					   NULL or "": none */
};

/*
 * Appends s to b as a header value: as is when it is printable ASCII
 * with no "=?" (which a reader would take for an encoded-word), else as
 * RFC 2047 "B" encoded-words of UTF-8, each under 76 characters, split
 * between characters and folded with CRLF SP.
 */
void		 keel_mail_encode_header(struct keel_buf *b, const char *s);
/*
 * "<hex@domain>" into dst (size n), a hash of key and origin (NULL or "":
 * of the key alone, as before origins): the same job gives the same id,
 * so a message sent twice after a crash, or by a retry, is recognisably
 * one message, while the jobs of two outbox rows under one key (reused
 * after a restore of PostgreSQL) are two.
 */
void		 keel_mail_message_id(char *dst, size_t n, const char *key,
		    const char *origin, const char *from);
/*
 * Appends the RFC 5322 message (CRLF line ends) to out: headers, then a
 * multipart/alternative of base64 text and HTML (or the text alone).
 * from is MAIL_FROM ("Name <addr>" or addr); date is the Date header.
 */
void		 keel_mail_build(struct keel_buf *out, const char *from,
		    const struct keel_mail_msg *m, time_t date);
/*
 * Fills m from a job: kind is invitation, password_reset, test_result,
 * attempt_result or test; payload its JSON (mail.c documents each).
 * Strings come from a.
 * KEEL_EINVAL with the reason in why (size n) when the payload can never
 * make a message; KEEL_ENOENT for an unknown kind.
 */
enum keel_err	 keel_mail_render(struct keel_arena *a, const char *kind,
		    const char *payload, const char *key,
		    struct keel_mail_msg *m, char *why, size_t n);

/* SMTP_URL, MAIL_FROM, SMTP_TIMEOUT; never NULL. */
struct keel_mail *keel_mail_open(const struct keel_config *);
/* m may be NULL. */
void		 keel_mail_close(struct keel_mail *m);
/*
 * Sends msg within SMTP_TIMEOUT.  KEEL_EINVAL when the server rejects it
 * with a 5yz reply (RFC 5321 §4.2.1: permanent, the same message is
 * refused again); KEEL_EUNAVAIL when the server can't be reached or
 * refuses for now (4yz), KEEL_ETIMEOUT when it times out
 * (keel_mail_errstr() says which).
 */
enum keel_err	 keel_mail_send(struct keel_mail *m,
		    const struct keel_mail_msg *msg);
const char	*keel_mail_errstr(const struct keel_mail *m);

#endif /* KEEL_MAIL_H */
