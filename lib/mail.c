/* SPDX-License-Identifier: ISC */
/*
 * mail.c -- email: the messages keel sends, MIME, and SMTP over libcurl.
 *
 * A message is multipart/alternative (RFC 2046 §5.1.4) with a text and an
 * HTML part, each UTF-8 in base64, so no line ever passes SMTP's 1000
 * octets and no byte needs escaping.  Non-ASCII header text becomes RFC
 * 2047 encoded-words.  The Message-ID is a hash of the job's idempotency
 * key and origin (its outbox row): a message delivered twice (the drainer
 * died after the server took it, or a retry) carries the same Message-ID
 * both times, which mail clients treat as one message, and the jobs of
 * two rows under one key (ids reused after a restore) two.
 *
 * Payloads (JSON objects), by kind:
 *   invitation       {"to", "name", "link"}   set-password link
 *   password_reset   {"to", "name", "link"}   reset link
 *   test_result      {"to", "name", "testTitle", "score", "correct",
 *                     "total"}                 score: a number, 0..100
 *   attempt_result   {"userId", "to", "name", "testTitle", "score",
 *                     "correct", "total", "late"}  a graded attempt
 *                                              (attempts.c); late: a
 *                                              boolean, absent false;
 *                                              userId: the drainer's
 *                                              (absent before it was)
 *   test             {"to"}                   keel-queues' test message
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "keel/config.h"
#include "keel/json.h"
#include "keel/mail.h"
#include "keel/mem.h"
#include "keel/text.h"

#define B64_LINE	76	/* RFC 2045 §6.8: at most 76 per line */
#define WORD_BYTES	39	/* raw bytes per encoded-word: 52 in base64 */

struct keel_mail {
	CURL		*curl;
	char		*url;
	char		*from;		/* MAIL_FROM as given */
	char		 sender[256];	/* its addr-spec, for MAIL FROM */
	int		 timeout;	/* seconds */
	char		*ca_file;	/* SMTP_CA_FILE; NULL: the system's */
	char		 errstr[CURL_ERROR_SIZE + 64];
};

static int
plain_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < ' ' || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

/*
 * Whether s can go into a header as it is: printable ASCII holding no
 * "=?".  A reader decodes what looks like an encoded-word (RFC 2047 §6.1),
 * and lenient ones do inside a quoted-string too, which §5 forbids: a
 * name typed as "=?UTF-8?B?...?=" would show as whatever it encodes.
 */
static int
header_literal(const char *s)
{
	return plain_ascii(s) && strstr(s, "=?") == NULL;
}

/* Bytes of the UTF-8 sequence starting with c (1 for a stray byte). */
static size_t
utf8_len(unsigned char c)
{
	if (c >= 0xf0)
		return 4;
	if (c >= 0xe0)
		return 3;
	if (c >= 0xc0)
		return 2;
	return 1;
}

static void
b64_append(struct keel_buf *b, const unsigned char *p, size_t n)
{
	size_t	 len = sodium_base64_encoded_len(n,
		    sodium_base64_VARIANT_ORIGINAL);
	char	*tmp = keel_malloc(len);

	sodium_bin2base64(tmp, len, p, n, sodium_base64_VARIANT_ORIGINAL);
	keel_buf_puts(b, tmp);
	free(tmp);
}

void
keel_mail_encode_header(struct keel_buf *b, const char *s)
{
	size_t	 n = strlen(s), i = 0, take, cl;
	int	 first = 1;

	if (header_literal(s)) {
		keel_buf_puts(b, s);
		return;
	}
	/* RFC 2047 §5: never split a character across two words. */
	while (i < n || first) {
		take = 0;
		while (i + take < n) {
			cl = utf8_len((unsigned char)s[i + take]);
			if (i + take + cl > n || take + cl > WORD_BYTES)
				break;
			take += cl;
		}
		if (take == 0 && i < n)
			take = n - i < WORD_BYTES ? n - i : WORD_BYTES;
		if (!first)
			keel_buf_puts(b, "\r\n ");
		keel_buf_puts(b, "=?UTF-8?B?");
		b64_append(b, (const unsigned char *)s + i, take);
		keel_buf_puts(b, "?=");
		i += take;
		first = 0;
	}
}

/* The addr-spec of "Name <addr>" or of a bare addr, into dst. */
static void
addr_of(char *dst, size_t n, const char *from)
{
	const char	*lt, *gt;

	if ((lt = strchr(from, '<')) != NULL &&
	    (gt = strchr(lt, '>')) != NULL)
		snprintf(dst, n, "%.*s", (int)(gt - lt - 1), lt + 1);
	else
		snprintf(dst, n, "%s", from);
}

void
keel_mail_message_id(char *dst, size_t n, const char *key,
    const char *origin, const char *from)
{
	crypto_hash_sha256_state st;
	unsigned char	 h[crypto_hash_sha256_BYTES];
	char		 hex[2 * sizeof(h) + 1], addr[256];
	const char	*dom;

	/* key NUL origin: no key holds a NUL, so no two pairs hash alike;
	 * without an origin, the key alone, as messages had before. */
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)key, strlen(key));
	if (origin != NULL && *origin != '\0') {
		crypto_hash_sha256_update(&st, (const unsigned char *)"", 1);
		crypto_hash_sha256_update(&st, (const unsigned char *)origin,
		    strlen(origin));
	}
	crypto_hash_sha256_final(&st, h);
	sodium_bin2hex(hex, sizeof(hex), h, 16);
	addr_of(addr, sizeof(addr), from);
	dom = strchr(addr, '@');
	snprintf(dst, n, "<%s.keel@%s>", hex, dom != NULL && dom[1] != '\0' ?
	    dom + 1 : "localhost");
}

/*
 * "Name <addr>" with the name as RFC 5322 §3.4 needs it: as it is when
 * it is atoms of letters, digits and '-' between spaces, a quoted-string
 * when it is other printable ASCII (a comma or a quote must not start
 * another address; '.' is no atext: §4.1's obsolete phrase lets a
 * reader take J. R. R. Tolkien bare but forbids writing it, and a lone
 * "." is no phrase at all), RFC 2047 encoded-words when it is not ASCII
 * or holds "=?" (header_literal(): the literal goes inside the encoding,
 * where no reader takes it for a word of its own).  Control characters,
 * which no header may carry, become spaces.
 */
static void
put_mailbox(struct keel_buf *b, const char *name, const char *addr)
{
	const char	*p;
	bool		 simple = false, ascii = true;

	if (name == NULL || *name == '\0') {
		keel_buf_puts(b, addr);
		return;
	}
	/* Simple: at least one atom, nothing but atoms and spaces. */
	for (p = name; *p != '\0'; p++)
		if (isalnum((unsigned char)*p) || *p == '-')
			simple = true;
	for (p = name; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != ' ' && *p != '-')
			simple = false;
		if ((unsigned char)*p >= 0x7f)
			ascii = false;
	}
	if (strstr(name, "=?") != NULL)
		ascii = false;
	if (simple)
		keel_buf_puts(b, name);
	else if (ascii) {
		keel_buf_putc(b, '"');
		for (p = name; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				keel_buf_putc(b, '\\');
			keel_buf_putc(b, (unsigned char)*p < ' ' ? ' ' : *p);
		}
		keel_buf_putc(b, '"');
	} else
		keel_mail_encode_header(b, name);
	keel_buf_printf(b, " <%s>", addr);
}

static void
put_b64_body(struct keel_buf *b, const char *s)
{
	struct keel_buf	 tmp = { NULL, 0, 0 };
	size_t		 i;

	b64_append(&tmp, (const unsigned char *)s, strlen(s));
	for (i = 0; i < tmp.len; i += B64_LINE) {
		keel_buf_append(b, tmp.data + i,
		    tmp.len - i < B64_LINE ? tmp.len - i : B64_LINE);
		keel_buf_puts(b, "\r\n");
	}
	keel_buf_free(&tmp);
}

void
keel_mail_build(struct keel_buf *out, const char *from,
    const struct keel_mail_msg *m, time_t date)
{
	char		 mid[160], dbuf[64], boundary[64], fromaddr[256];
	const char	*lt;
	struct tm	 tm;

	keel_mail_message_id(mid, sizeof(mid), m->idem_key, m->origin, from);
	gmtime_r(&date, &tm);
	strftime(dbuf, sizeof(dbuf), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	/* Derived from the Message-ID: base64 never contains "=_". */
	snprintf(boundary, sizeof(boundary), "=_keel_%.24s", mid + 1);

	addr_of(fromaddr, sizeof(fromaddr), from);
	keel_buf_puts(out, "From: ");
	if ((lt = strchr(from, '<')) != NULL) {
		char	 name[256];

		snprintf(name, sizeof(name), "%.*s", (int)(lt - from), from);
		while (name[0] != '\0' && name[strlen(name) - 1] == ' ')
			name[strlen(name) - 1] = '\0';
		put_mailbox(out, name, fromaddr);
	} else
		keel_buf_puts(out, fromaddr);
	keel_buf_puts(out, "\r\nTo: ");
	put_mailbox(out, m->to_name, m->to);
	keel_buf_puts(out, "\r\nSubject: ");
	keel_mail_encode_header(out, m->subject);
	keel_buf_printf(out, "\r\nDate: %s\r\nMessage-ID: %s\r\n"
	    "MIME-Version: 1.0\r\n", dbuf, mid);
	/* The request the mail comes from, for whoever traces it. */
	if (m->request_id != NULL && keel_text_request_id_valid(m->request_id))
		keel_buf_printf(out, "X-Request-Id: %s\r\n", m->request_id);
	if (m->html == NULL) {
		keel_buf_puts(out, "Content-Type: text/plain; charset=UTF-8\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n");
		put_b64_body(out, m->text);
		return;
	}
	keel_buf_printf(out, "Content-Type: multipart/alternative; "
	    "boundary=\"%s\"\r\n\r\n"
	    "This is a MIME message: text and HTML.\r\n"
	    "--%s\r\nContent-Type: text/plain; charset=UTF-8\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n", boundary, boundary);
	put_b64_body(out, m->text);
	keel_buf_printf(out, "--%s\r\nContent-Type: text/html; charset=UTF-8\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n", boundary);
	put_b64_body(out, m->html);
	keel_buf_printf(out, "--%s--\r\n", boundary);
}

/* ------------------------------------------------------------ messages */

/* s with &<>"' escaped for HTML text and attribute values. */
static const char *
html_esc(struct keel_arena *a, const char *s)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	const char	*r;

	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&': keel_buf_puts(&b, "&amp;"); break;
		case '<': keel_buf_puts(&b, "&lt;"); break;
		case '>': keel_buf_puts(&b, "&gt;"); break;
		case '"': keel_buf_puts(&b, "&quot;"); break;
		case '\'': keel_buf_puts(&b, "&#39;"); break;
		default: keel_buf_putc(&b, *s); break;
		}
	}
	r = keel_arena_strdup(a, b.data != NULL ? b.data : "");
	keel_buf_free(&b);
	return r;
}

/* A link we put in a message: http(s), printable, no spaces or quotes. */
static int
link_valid(const char *s)
{
	if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f ||
		    *s == '"' || *s == '<' || *s == '>')
			return 0;
	return 1;
}

enum mail_field { MF_TO, MF_NAME, MF_LINK, MF_TITLE, MF_SCORE, MF_CORRECT,
	MF_TOTAL, MF_LATE, MF__MAX };

static const char *const mf_names[MF__MAX] = {
	[MF_TO] = "to", [MF_NAME] = "name", [MF_LINK] = "link",
	[MF_TITLE] = "testTitle", [MF_SCORE] = "score",
	[MF_CORRECT] = "correct", [MF_TOTAL] = "total", [MF_LATE] = "late",
};

/* The string field f of o, NULL when absent or not a string. */
static const char *
str_field(struct json_object *o, enum mail_field f)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, mf_names[f], &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int
num_field(struct json_object *o, enum mail_field f, double *out)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, mf_names[f], &v) ||
	    !(json_object_is_type(v, json_type_int) ||
	    json_object_is_type(v, json_type_double)))
		return -1;
	*out = json_object_get_double(v);
	return 0;
}

/* The boolean field f of o; false when absent or not a boolean. */
static bool
bool_field(struct json_object *o, enum mail_field f)
{
	struct json_object	*v;

	return json_object_object_get_ex(o, mf_names[f], &v) &&
	    json_object_is_type(v, json_type_boolean) &&
	    json_object_get_boolean(v);
}

/* s with every control character a space, from a. */
static const char *
one_line(struct keel_arena *a, const char *s)
{
	char	*out, *p;

	out = keel_arena_strdup(a, s);
	for (p = out; *p != '\0'; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			*p = ' ';
	return out;
}

enum keel_err
keel_mail_render(struct keel_arena *a, const char *kind, const char *payload,
    const char *key, struct keel_mail_msg *m, char *why, size_t n)
{
	struct json_object	*o = NULL;
	const char		*to, *name, *link, *title, *hn;
	double			 score, correct, total;
	bool			 late;
	enum keel_err		 er = KEEL_EINVAL;
	char			 perr[128];

	memset(m, 0, sizeof(*m));
	if (keel_json_parse(payload, strlen(payload), &o, perr,
	    sizeof(perr)) != KEEL_OK) {
		snprintf(why, n, "payload is not JSON: %s", perr);
		return KEEL_EINVAL;
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(why, n, "payload is not a JSON object");
		goto out;
	}
	if ((to = str_field(o, MF_TO)) == NULL || !keel_text_email_valid(to)) {
		snprintf(why, n, "payload: \"to\" is not an email address");
		goto out;
	}
	name = str_field(o, MF_NAME);
	if (name != NULL && strlen(name) > 200) {
		snprintf(why, n, "payload: \"name\" is too long");
		goto out;
	}
	m->to = keel_arena_strdup(a, to);
	/* A name stored before the API refused control characters must
	 * not keep every email to its owner from being sent. */
	m->to_name = name != NULL ? one_line(a, name) : NULL;
	name = m->to_name;
	m->idem_key = key;
	hn = html_esc(a, name != NULL && *name != '\0' ? name : "there");
	if (strcmp(kind, "invitation") == 0 ||
	    strcmp(kind, "password_reset") == 0) {
		int	 inv = kind[0] == 'i';

		if ((link = str_field(o, MF_LINK)) == NULL ||
		    !link_valid(link)) {
			snprintf(why, n, "payload: \"link\" is not an http(s) "
			    "URL");
			goto out;
		}
		m->subject = inv ? "You are invited to keel" :
		    "Reset your keel password";
		m->text = keel_arena_printf(a, "Hello %s,\n\n%s\n\n%s\n\n"
		    "%s\n", name != NULL && *name != '\0' ? name : "there",
		    inv ? "An account was created for you. Choose your "
		    "password here (the link works once):" :
		    "Someone asked to reset your password. If it was you, "
		    "choose a new one here (the link works once, for an "
		    "hour):", link, inv ? "Welcome!" :
		    "If it wasn't you, ignore this message.");
		m->html = keel_arena_printf(a, "<!DOCTYPE html><html><body>"
		    "<p>Hello %s,</p><p>%s</p><p><a href=\"%s\">%s</a></p>"
		    "<p>%s</p></body></html>\n", hn, inv ? "An account was "
		    "created for you. Choose your password (the link works "
		    "once):" : "Someone asked to reset your password. If it "
		    "was you, choose a new one (the link works once, for an "
		    "hour):", html_esc(a, link), inv ? "Set my password" :
		    "Reset my password", inv ? "Welcome!" : "If it wasn't "
		    "you, ignore this message.");
	} else if (strcmp(kind, "test_result") == 0 ||
	    strcmp(kind, "attempt_result") == 0) {
		if ((title = str_field(o, MF_TITLE)) == NULL ||
		    strlen(title) > 1000 ||
		    num_field(o, MF_SCORE, &score) == -1 ||
		    num_field(o, MF_CORRECT, &correct) == -1 ||
		    num_field(o, MF_TOTAL, &total) == -1 || total < 0 ||
		    correct < 0 || correct > total) {
			snprintf(why, n, "payload: %s needs testTitle, score, "
			    "correct <= total", kind);
			goto out;
		}
		/* A title is one line in the subject, whatever was stored. */
		title = one_line(a, title);
		late = kind[0] == 'a' && bool_field(o, MF_LATE);
		m->subject = keel_arena_printf(a, "Your result: %s%s", title,
		    late ? " (late)" : "");
		m->text = keel_arena_printf(a, "Hello %s,\n\nYou scored "
		    "%.0f%% on \"%s\": %.0f of %.0f questions right.\n%s",
		    name != NULL && *name != '\0' ? name : "there", score,
		    title, correct, total, late ? "\nYou submitted it after "
		    "its time was up, so it is marked late.\n" : "");
		m->html = keel_arena_printf(a, "<!DOCTYPE html><html><body>"
		    "<p>Hello %s,</p><p>You scored <strong>%.0f%%</strong> "
		    "on &ldquo;%s&rdquo;: %.0f of %.0f questions right.</p>"
		    "%s</body></html>\n", hn, score, html_esc(a, title),
		    correct, total, late ? "<p>You submitted it after its "
		    "time was up, so it is marked late.</p>" : "");
	} else if (strcmp(kind, "test") == 0) {
		m->subject = "keel test message ✓";
		m->text = "This is a test message from keel-queues.\n";
		m->html = "<!DOCTYPE html><html><body><p>This is a test "
		    "message from <code>keel-queues</code>.</p></body></html>\n";
	} else {
		snprintf(why, n, "no email template for kind '%.64s'", kind);
		er = KEEL_ENOENT;
		goto out;
	}
	er = KEEL_OK;
out:
	json_object_put(o);
	return er;
}

/* ---------------------------------------------------------------- SMTP */

struct keel_mail *
keel_mail_open(const struct keel_config *cfg)
{
	struct keel_mail	*m;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	m = keel_calloc(1, sizeof(*m));
	m->url = keel_strdup(cfg->smtp_url);
	m->from = keel_strdup(cfg->mail_from);
	m->timeout = cfg->smtp_timeout;
	m->ca_file = cfg->smtp_ca_file[0] != '\0' ?
	    keel_strdup(cfg->smtp_ca_file) : NULL;
	addr_of(m->sender, sizeof(m->sender), m->from);
	return m;
}

void
keel_mail_close(struct keel_mail *m)
{
	if (m == NULL)
		return;
	curl_easy_cleanup(m->curl);
	/* The URL may hold the SMTP password. */
	explicit_bzero(m->url, strlen(m->url));
	free(m->url);
	free(m->from);
	free(m->ca_file);
	free(m);
}

const char *
keel_mail_errstr(const struct keel_mail *m)
{
	return m->errstr;
}

struct upload {
	const char	*p;
	size_t		 left;
};

static size_t
upload_read(char *dst, size_t size, size_t nmemb, void *arg)
{
	struct upload	*u = arg;
	size_t		 n = size * nmemb;

	if (n > u->left)
		n = u->left;
	memcpy(dst, u->p, n);
	u->p += n;
	u->left -= n;
	return n;
}

/* 1 when the URL carries a user name: then TLS is required for AUTH. */
static int
url_has_user(const char *url)
{
	const char	*p = strstr(url, "://"), *at, *slash;

	if (p == NULL)
		return 0;
	p += 3;
	at = strchr(p, '@');
	slash = strchr(p, '/');
	return at != NULL && (slash == NULL || at < slash);
}

/* Where a send was when the server answered last (smtp_trace). */
enum smtp_step {
	STEP_SETUP,		/* greeting, EHLO, STARTTLS, AUTH, MAIL FROM */
	STEP_RCPT,		/* RCPT TO */
	STEP_DATA		/* DATA, the message, its end */
};

/*
 * curl's debug stream: each command it sends is a CURLINFO_HEADER_OUT
 * (pingpong.c), so the last one it sent is the one the reply that
 * stopped it answers -- the reply code alone says nothing of which.
 * Only the commands that begin a step move it: the message and its end
 * are DATA's (curl sends no other command before the reply to them), a
 * QUIT changes nothing.  Never logs: AUTH lines hold the password.
 */
static int
smtp_trace(CURL *c, curl_infotype type, char *data, size_t size, void *arg)
{
	enum smtp_step	*step = arg;

	(void)c;
	if (type != CURLINFO_HEADER_OUT || size < 4)
		return 0;
	if (strncasecmp(data, "RCPT", 4) == 0)
		*step = STEP_RCPT;
	else if (strncasecmp(data, "DATA", 4) == 0)
		*step = STEP_DATA;
	else if (strncasecmp(data, "MAIL", 4) == 0 ||
	    strncasecmp(data, "EHLO", 4) == 0 ||
	    strncasecmp(data, "HELO", 4) == 0)
		*step = STEP_SETUP;
	return 0;
}

/*
 * What a failed send means for the message.  A 5yz reply to RCPT TO (a
 * mailbox that doesn't exist), to DATA or to the message's end is
 * permanent (RFC 5321 §4.2.1): the server refuses this message every
 * time, so it is KEEL_EINVAL, never retried.  curl stops on one with
 * CURLE_SEND_ERROR, or CURLE_WEIRD_SERVER_REPLY at the message's end,
 * and code is that last reply; step says which command it answered.
 * Everything else may pass and is retried (KEEL_EUNAVAIL, reported if
 * it lasts): a 4yz, a connection that failed, a timeout; a 552 to RCPT
 * TO, which RFC 5321 §4.5.3.1.10 says to treat as temporary; and a 5yz
 * to the greeting (554), to MAIL FROM (SMTP_FROM refused, relaying not
 * allowed), to AUTH or to STARTTLS (curl's LOGIN_DENIED,
 * USE_SSL_FAILED) -- the setup's fault, every message's, for an
 * operator to see rather than a dead letter per message.
 */
static enum keel_err
send_failure(CURLcode rc, long code, enum smtp_step step)
{
	if ((rc == CURLE_SEND_ERROR || rc == CURLE_WEIRD_SERVER_REPLY) &&
	    code >= 500 && code <= 599 &&
	    ((step == STEP_RCPT && code != 552) || step == STEP_DATA))
		return KEEL_EINVAL;
	return rc == CURLE_OPERATION_TIMEDOUT ? KEEL_ETIMEOUT : KEEL_EUNAVAIL;
}

enum keel_err
keel_mail_send(struct keel_mail *m, const struct keel_mail_msg *msg)
{
	struct curl_slist	*rcpt = NULL;
	struct keel_buf		 body = { NULL, 0, 0 };
	struct upload		 u;
	char			 from[300], to[300], cerr[CURL_ERROR_SIZE];
	long			 code = 0;
	enum smtp_step		 step = STEP_SETUP;
	CURLcode		 rc;
	enum keel_err		 er;

	if (m->curl == NULL && (m->curl = curl_easy_init()) == NULL) {
		snprintf(m->errstr, sizeof(m->errstr), "curl_easy_init");
		return KEEL_EINTERNAL;
	}
	curl_easy_reset(m->curl);
	keel_mail_build(&body, m->from, msg, time(NULL));
	u.p = body.data;
	u.left = body.len;
	snprintf(from, sizeof(from), "<%s>", m->sender);
	snprintf(to, sizeof(to), "<%s>", msg->to);
	rcpt = curl_slist_append(rcpt, to);
	cerr[0] = '\0';
	curl_easy_setopt(m->curl, CURLOPT_URL, m->url);
	curl_easy_setopt(m->curl, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(m->curl, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(m->curl, CURLOPT_READFUNCTION, upload_read);
	curl_easy_setopt(m->curl, CURLOPT_READDATA, &u);
	curl_easy_setopt(m->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(m->curl, CURLOPT_INFILESIZE_LARGE,
	    (curl_off_t)body.len);
	curl_easy_setopt(m->curl, CURLOPT_TIMEOUT, (long)m->timeout);
	curl_easy_setopt(m->curl, CURLOPT_CONNECTTIMEOUT, (long)m->timeout);
	curl_easy_setopt(m->curl, CURLOPT_NOSIGNAL, 1L);
	/* One connection per message: a connection that failed is dropped
	 * without a QUIT (which a hung server would make us wait for), and
	 * every wait for a reply is bounded too. */
	curl_easy_setopt(m->curl, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(m->curl, CURLOPT_SERVER_RESPONSE_TIMEOUT,
	    (long)m->timeout);
	curl_easy_setopt(m->curl, CURLOPT_ERRORBUFFER, cerr);
	/* The debug stream says which command a refusal answered; curl
	 * calls it only when verbose, and prints nothing itself then. */
	curl_easy_setopt(m->curl, CURLOPT_DEBUGFUNCTION, smtp_trace);
	curl_easy_setopt(m->curl, CURLOPT_DEBUGDATA, &step);
	curl_easy_setopt(m->curl, CURLOPT_VERBOSE, 1L);
	/* smtps:// is TLS from the start; a password never crosses in
	 * clear, so a URL with a user demands STARTTLS; without one,
	 * STARTTLS is used whenever the server offers it. */
	if (strncmp(m->url, "smtps://", 8) != 0)
		curl_easy_setopt(m->curl, CURLOPT_USE_SSL, url_has_user(m->url) ?
		    (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY);
	if (m->ca_file != NULL)
		curl_easy_setopt(m->curl, CURLOPT_CAINFO, m->ca_file);
	rc = curl_easy_perform(m->curl);
	curl_easy_getinfo(m->curl, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(rcpt);
	keel_buf_free(&body);
	if (rc != CURLE_OK) {
		er = send_failure(rc, code, step);
		snprintf(m->errstr, sizeof(m->errstr), "smtp: %s%s (%s)%s%.0ld",
		    er == KEEL_EINVAL ? "rejected for good: " : "",
		    curl_easy_strerror(rc), cerr[0] != '\0' ? cerr : "-",
		    code ? " last reply " : "", code);
		return er;
	}
	m->errstr[0] = '\0';
	return KEEL_OK;
}
