/* SPDX-License-Identifier: ISC */
/*
 * report.h -- unexpected failures as Sentry events (DESIGN.md,
 * "Observability"): built and scrubbed here, written as envelopes into a
 * local spool directory, shipped by keel-report-ship.
 */
#ifndef KEEL_REPORT_H
#define KEEL_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/err.h"
#include "keel/mem.h"

struct keel_config;

#define KEEL_REPORT_FILTERED	"[Filtered]"
#define KEEL_REPORT_ID_LEN	32	/* hex digits of an event id */
#define KEEL_REPORT_EVENT_MAX	(1024 * 1024)	/* Sentry's event limit */

/*
 * A DSN, {scheme}://{public_key}[:{secret}]@{host}[:port]/{path/}{project}.
 * The secret part of an old-style DSN is never kept.
 */
struct keel_report_dsn {
	char	 scheme[8];	/* "http" or "https" */
	char	 key[128];	/* the public key */
	char	 host[256];	/* host[:port] */
	char	 path[256];	/* "" or "/prefix" before /api/ */
	char	 project[64];	/* digits */
};

/* Parses s into *out; false when s is not a DSN keel can send to. */
bool	 keel_report_dsn_parse(const char *s, struct keel_report_dsn *out);
/* The envelope endpoint: {scheme}://{host}{path}/api/{project}/envelope/,
 * written into buf (size n, truncated). */
void	 keel_report_dsn_url(const struct keel_report_dsn *, char *buf,
	    size_t n);
/* The X-Sentry-Auth value (without the name) into buf (size n). */
void	 keel_report_auth_header(const struct keel_report_dsn *, char *buf,
	    size_t n);

/*
 * Scrubbing, applied before anything is serialised.  A name is secret
 * when it contains (any case) pass, secret, token, auth, cookie, session,
 * key, signature, credit, card or ticket; a value when it is a bearer or
 * basic credential, a JWT (three base64url parts, the first "eyJ..."), a
 * 13-19 digit number passing Luhn's check (a card), a name=value pair
 * with a secret name inside it, or a mail address.
 */
bool	 keel_report_secret_name(const char *name);
bool	 keel_report_secret_value(const char *value);
/*
 * s into out (appended) with each word that looks like a secret or a
 * mail address, and the word after "Bearer", "Basic" or "Token",
 * replaced by KEEL_REPORT_FILTERED: for messages, which mix our text
 * with what a dependency said.
 */
void	 keel_report_scrub_text(struct keel_buf *out, const char *s);
/* value, or KEEL_REPORT_FILTERED when name or value is secret. */
const char *keel_report_scrub(const char *name, const char *value);
/*
 * Request headers from CGI parameters ("HTTP_USER_AGENT=curl"): calls fn
 * with each header's name ("User-Agent") and scrubbed value, skipping
 * the ones that carry the client's address (X-Forwarded-For, X-Real-IP,
 * Forwarded) and at most max of them.  name is valid during the call.
 */
typedef void	 keel_report_header_fn(const char *name, const char *value,
		    void *arg);
void	 keel_report_headers(const char *const *envp, size_t max,
	    keel_report_header_fn *fn, void *arg);

/*
 * Seconds to wait before sending again after an answer with this status
 * and these headers (either may be NULL): the largest delay of
 * X-Sentry-Rate-Limits ("60:transaction:key, 2700:default;error"),
 * else Retry-After (seconds), else 60 for a 429; 0 when none.  At most
 * a day.
 */
long	 keel_report_backoff(int status, const char *rate_limits,
	    const char *retry_after);

/* An extra tag of an event: both strings cut to Sentry's limits. */
struct keel_report_tag {
	const char	*key;
	const char	*value;
};

/*
 * What happened, as plain data; every pointer may be NULL but type and
 * value.  Nothing here may hold a secret the scrubbing would miss: the
 * value is the program's own text, never a client's.
 */
struct keel_report_event {
	const char	*level;		/* "error" (NULL) or "fatal" */
	const char	*type;		/* exception type: "InternalError" */
	const char	*value;		/* exception value: what happened */
	const char	*app;		/* tag app and logger; NULL: the
					   program's name */
	const char	*route;		/* the route pattern, never the path */
	const char	*method;
	int		 status;	/* HTTP status; 0: none */
	int64_t		 user_id;	/* 0: anonymous or none */
	const char	*request_id;	/* tag request_id */
	const char *const *envp;	/* CGI parameters: the request's
					   headers, scrubbed; NULL: none */
	const struct keel_report_tag *tags;
	size_t		 ntags;
};

/* A sampled request as a transaction event. */
struct keel_report_txn {
	const char	*app;
	const char	*route;		/* pattern; NULL: "unrouted" */
	const char	*method;
	int		 status;
	int64_t		 user_id;
	const char	*request_id;	/* also seeds the sampling */
	double		 start;		/* epoch seconds */
	double		 end;
};

/* Where the event is from: settings and the program's name. */
struct keel_report_meta {
	const char	*environment;
	const char	*release;
	const char	*server;	/* host name */
	const char	*prog;		/* default app and logger */
};

/*
 * Serialises ev as Sentry's event JSON into b (appended), scrubbed, with
 * event_id (32 hex) and timestamp now (epoch seconds).  Long strings are
 * cut so the event stays far below KEEL_REPORT_EVENT_MAX.
 */
void	 keel_report_event_json(struct keel_buf *b,
	    const struct keel_report_event *ev,
	    const struct keel_report_meta *m, const char *event_id, double now);
/* The same for a transaction; trace and span ids are derived from id. */
void	 keel_report_txn_json(struct keel_buf *b,
	    const struct keel_report_txn *t,
	    const struct keel_report_meta *m, const char *event_id);
/*
 * An envelope of one item into b (appended): the header line with
 * event_id, dsn and sent_at, the item header {"type":type,"length":n},
 * the payload and a newline.
 */
void	 keel_report_envelope(struct keel_buf *b, const char *event_id,
	    const char *dsn, double sent_at, const char *type,
	    const char *payload, size_t n);
/* True when the request with this id (16+ hex digits) falls in a sample
 * of rate (0..1): the id is random, so it is the dice. */
bool	 keel_report_sampled(const char *request_id, double rate);

/*
 * The process's reporting, from the configuration: call once after
 * keel_config_load() (a forked worker inherits it).  Off when SENTRY_DSN
 * is empty.  Creates the spool's directories.  False with a message
 * naming the variable in err (size n) for a bad DSN or a spool that
 * can't be made.  cfg must outlive the process's reporting.
 */
bool	 keel_report_init(const struct keel_config *cfg, const char *prog,
	    char *err, size_t n);
/* True once keel_report_init() found a DSN: events are built. */
bool	 keel_report_enabled(void);

/*
 * An envelope ready to spool: built while the request's data is there,
 * written after its reply went out.
 */
struct keel_report_item {
	struct keel_buf	 env;		/* the envelope; empty: nothing */
	char		 id[KEEL_REPORT_ID_LEN + 1];
	bool		 txn;		/* a transaction, not an error */
};

/* Builds ev's envelope into it (sampled by SENTRY_SAMPLE_RATE); false
 * when reporting is off or the event is not sampled. */
bool	 keel_report_build(struct keel_report_item *it,
	    const struct keel_report_event *ev);
/* The same for a request, sampled by SENTRY_TRACES_SAMPLE_RATE. */
bool	 keel_report_build_txn(struct keel_report_item *it,
	    const struct keel_report_txn *t);
/*
 * Writes an error into the spool (tmp/, then renamed into new/) and
 * empties it; it may be empty.  Past KEEL_REPORT_SPOOL_MAX files or
 * KEEL_REPORT_SPOOL_BYTES the event is dropped and counted (a byte
 * appended to the spool's "dropped" file).  A transaction is held in
 * memory and written with others as one file (TXN_BATCH of them, or
 * when the oldest is TXN_AGE old at the next call), in the spool's
 * first half only, never while the shipper backs off.  Never touches
 * the network.
 */
enum keel_err	 keel_report_spool(struct keel_report_item *it);
/* Writes the transactions held (a process calls it before it exits). */
enum keel_err	 keel_report_flush(void);
/* Build and spool at once (supervisors, drainers: no reply waits). */
void	 keel_report_send(const struct keel_report_event *ev);

/*
 * The shipper's side.  The spool is a directory:
 *	tmp/		envelopes being written
 *	new/		<ms>-<e|t>-<event id>-<bytes>: ready, oldest first
 *	backoff		epoch seconds before which nothing is sent
 *	dropped		one byte per event dropped at the bound
 */
/* Seconds left of the back-off (0: none). */
double	 keel_report_backoff_left(void);
/* Backs every process of the host off for seconds from now (0: ends
 * it): the deadline written atomically (tmp file, rename). */
void	 keel_report_backoff_for(long seconds);
/* Bytes of the first envelope at p (n bytes), its trailing newline
 * included; 0 when p does not start with a whole one. */
size_t		 keel_report_envelope_len(const char *p, size_t n);

/* What keel_report_post() did with a spool file. */
struct keel_report_posted {
	int	 status;	/* the last answer's (0: none came) */
	long	 wait;		/* back-off it asked for, seconds; 0 none */
	int	 sent;		/* envelopes taken (2xx) */
	int	 refused;	/* refused for good (4xx but 429, malformed) */
	bool	 done;		/* every envelope was sent or refused: the
				   file may go */
};
/*
 * POSTs each envelope of a spool file (path) to the DSN in turn, its
 * header line rebuilt with sent_at now, stopping at the first not taken
 * for a reason that may pass (no answer, 5xx, 429) or whose answer asked
 * for a pause.  KEEL_EUNAVAIL or KEEL_ETIMEOUT when the last got no
 * answer, KEEL_EINVAL for a file that holds no envelope, else KEEL_OK
 * (out->status: the last answer).  A file kept after some of its
 * envelopes went is sent whole again later: Sentry drops an event id it
 * already has.
 */
enum keel_err	 keel_report_post(const char *path, int timeout_s,
		    struct keel_report_posted *out);
/* Releases the shipper's connection (a later post opens another). */
void		 keel_report_close(void);
/* The spool's directory (NULL when reporting is off). */
const char	*keel_report_spool_dir(void);

#endif /* KEEL_REPORT_H */
