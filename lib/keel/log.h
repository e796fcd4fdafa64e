/* SPDX-License-Identifier: ISC */
/* log.h -- one line per event to stderr: prog[pid] LEVEL req=<id> msg k=v. */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum keel_log_level {
	KEEL_LOG_DEBUG,
	KEEL_LOG_INFO,
	KEEL_LOG_WARN,
	KEEL_LOG_ERROR,
	KEEL_LOG_LEVEL__MAX
};

/* Sets the program name shown on every line (not copied: keep it alive). */
void	keel_log_init(const char *prog, enum keel_log_level level);
/* Parses "debug", "info", "warn", "error" into *out; false if unknown. */
bool	keel_log_level_parse(const char *s, enum keel_log_level *out);
/* The request id to show on following lines; NULL clears it. */
void	keel_log_set_request(const char *id);
/* The request (or job's request) id log lines carry now; "" if none. */
const char *keel_log_request(void);
bool	keel_log_enabled(enum keel_log_level level);

/*
 * warn appends strerror(errno); warnx does not.  fatal* exit(1).
 * Under keel_log_limit(true), warn, warnx and error (and keel_log_write
 * at those levels) write a call site's line at most once per
 * KEEL_LOG_REPEAT_MS per process: the first at once, a repeat within
 * the window only counted, never formatted; the next line written there ends "(N more like it since)",
 * and the count of a site gone quiet is written by keel_log_flush()
 * (or keel_log_close()) as 'log: N more like "<its last line>" since'.
 * A call site is its format string, so fmt must be a literal.  info,
 * debug, fatal and access lines are always written.
 */
#define KEEL_LOG_REPEAT_MS	1000

/*
 * With on, warn, warnx and error are limited as above: what a FastCGI
 * worker asks (lib/serve.c), where a client or an outage can repeat a
 * line per request.  Off (the default: cron programs, whose lines of a
 * kind name each item of a bounded batch, and the stream server, whose
 * reconnect lines its backoff spaces) every line is written.
 */
void	keel_log_limit(bool on);
void	keel_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	keel_log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	keel_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	keel_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	keel_log_fatal(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	keel_log_fatalx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/* Level-checked before any formatting happens. */
#define keel_log_debug(...) do {					\
	if (keel_log_enabled(KEEL_LOG_DEBUG))				\
		keel_log_write(KEEL_LOG_DEBUG, 0, __VA_ARGS__);		\
} while (0)

/* msg as it is (no format), cut to a line's length; for a line a caller
 * builds itself, such as the access line every request writes. */
void	keel_log_text(enum keel_log_level level, const char *msg);
void	keel_log_write(enum keel_log_level, int with_errno, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/*
 * Copies s into dst (size n, NUL-terminated) with control characters,
 * quotes, backslashes and bytes >= 0x7f escaped as \xNN, so client text
 * can't forge log lines.  Truncates; returns dst.
 */
char	*keel_log_escape(char *dst, size_t n, const char *s);

/*
 * One request's access line, at info level (every app's, and the stream
 * app's for each answer it starts):
 *	access time=<UTC>.<ms>Z method=<16> path=<escaped> status=<n> ms=<x.yy>
 * path escaped here, cut to 255 bytes; pass the path alone, never the
 * query string (it may carry secrets, STYLE.md).  method may be NULL.
 */
void	keel_log_access(const char *method, const char *path, int status,
	    double ms);

/*
 * With on, access lines wait in a buffer of this process's (at most
 * PIPE_BUF bytes, so one write of them stays whole among other
 * processes' lines) and go out together: when it would overflow, when
 * a line of another kind is written (order is kept), when the first
 * has waited KEEL_LOG_HOLD_MS, or at keel_log_flush().  A FastCGI
 * worker holds them while requests queue and flushes before it waits
 * for the next: under load one write(2) serves many requests.  Off (the
 * default) writes each line at once.
 */
#define KEEL_LOG_HOLD_MS	100
void	keel_log_hold(bool on);

/*
 * Writes the lines held, then the counts of the warnings held back at
 * call sites quiet for KEEL_LOG_REPEAT_MS since their window closed, and
 * of the lines a failed write lost; what keel_log_hold(true) asks before
 * a wait.
 */
void	keel_log_flush(void);

/*
 * keel_log_flush(), and every count still unwritten whatever its age:
 * before _exit() (exit() calls it itself, once keel_log_init() ran).
 */
void	keel_log_close(void);

#endif /* KEEL_LOG_H */
