/* SPDX-License-Identifier: ISC */
/*
 * log.c -- one line per event on stderr.
 *
 * Lines read "prog[pid] LEVEL req=<id> message key=value ...", written with
 * one write(2) so lines from many workers sharing stderr never interleave.
 * Callers escape client text with keel_log_escape() before it gets here;
 * a control byte that still arrives is escaped on the way out (emit()).
 *
 * In a FastCGI worker (keel_log_limit), a warning or error that
 * repeats is written at most once a second per call site (its format
 * string names the site) and process: a request
 * that warns, sent a thousand times a second by a client or during an
 * outage, must not fill the disk the logs share with PostgreSQL nor drown
 * the one line that matters.  The first line of a kind goes out at once;
 * the next one written carries "(N more like it since)", and a kind that
 * has gone quiet has its count written by the next flush, log line or
 * keel_log_close() (syslog's "last message repeated N times").  Access,
 * info, debug and fatal lines are never held back.  Lines a failed
 * write(2) lost are counted and reported the same way.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/log.h"

static const char	*log_prog = "keel";
static enum keel_log_level log_level = KEEL_LOG_INFO;
static char		 log_req[72];	/* KEEL_HTTP_ID_MAX and a NUL */
static pid_t		 log_pid;	/* 0: unknown, or forked since */
static int		 log_atfork;	/* log_forked() is registered */

/* Access lines held (keel_log_hold), and when the first was. */
static bool		 held_on;
static char		 held[PIPE_BUF];
static size_t		 held_len;
static struct timespec	 held_since;

/*
 * The call sites of warnings and errors seen, by format string (a literal
 * per call site; two sites with the same text are one kind).  When the
 * table is full a new kind is written unlimited.
 */
#define SITES_MAX	64
#define SITE_HEAD	160	/* bytes of a kind's last line kept */
struct site {
	const char	*fmt;		/* NULL: a free slot */
	enum keel_log_level level;
	long long	 next;		/* ms: when the next line may go out */
	unsigned long	 held;		/* lines not written since the last */
	char		 head[SITE_HEAD]; /* the last line's message, cut */
};
static struct site	 sites[SITES_MAX];
static bool		 limit_on;	/* keel_log_limit(): a worker's */
static unsigned		 sites_held;	/* sites with held > 0 */
static unsigned long	 log_lost;	/* lines a failed write lost */
static long long	 lost_next;	/* ms: when to report log_lost */

static void	 log_exit(void);

static const char *const level_names[KEEL_LOG_LEVEL__MAX] = {
	[KEEL_LOG_DEBUG] = "debug",
	[KEEL_LOG_INFO] = "info",
	[KEEL_LOG_WARN] = "warn",
	[KEEL_LOG_ERROR] = "error",
};

static void
log_forked(void)
{
	log_pid = 0;
	held_len = 0;		/* the parent's to write, not the child's */
	/* So are its counts: a child starts with every kind unseen. */
	memset(sites, 0, sizeof(sites));
	sites_held = 0;
	log_lost = 0;
}

/*
 * getpid(2), asked once per process: glibc no longer caches it, and every
 * request logs a line.  Only when a fork is sure to clear the cache.
 */
static long
log_getpid(void)
{
	if (!log_atfork)
		return (long)getpid();
	if (log_pid == 0)
		log_pid = getpid();
	return (long)log_pid;
}

void
keel_log_init(const char *prog, enum keel_log_level level)
{
	log_prog = prog;
	log_level = level;
	if (!log_atfork && pthread_atfork(NULL, NULL, log_forked) == 0) {
		log_atfork = 1;
		/* The counts still unwritten, at exit (a worker's _exit()
		 * calls keel_log_close() itself). */
		atexit(log_exit);
	}
}

bool
keel_log_level_parse(const char *s, enum keel_log_level *out)
{
	int	 i;

	for (i = 0; i < KEEL_LOG_LEVEL__MAX; i++)
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum keel_log_level)i;
			return true;
		}
	return false;
}

void
keel_log_set_request(const char *id)
{
	size_t	 n;

	/* Cut to fit, as snprintf's "%s" would, without its parsing. */
	n = id != NULL ? strnlen(id, sizeof(log_req) - 1) : 0;
	if (n > 0)
		memcpy(log_req, id, n);
	log_req[n] = '\0';
}

const char *
keel_log_request(void)
{
	return log_req;
}

bool
keel_log_enabled(enum keel_log_level level)
{
	return level >= log_level;
}

#define LINE_MAX_LEN	2048

/* Appends s, cut to what line[LINE_MAX_LEN - 64] holds (the bytes put
 * between these calls stay inside the 64); the new length. */
static size_t
put(char *line, size_t len, const char *s)
{
	size_t	 n = strlen(s);

	if (len >= LINE_MAX_LEN - 64)
		return len;
	if (n > LINE_MAX_LEN - 64 - len)
		n = LINE_MAX_LEN - 64 - len;
	memcpy(line + len, s, n);
	return len + n;
}

/* "prog[pid] level req=id ": every line's start, printf-free (one is
 * written per request); no "req=" when req is "". */
static size_t
prefix_req(char *line, enum keel_log_level level, const char *req)
{
	static long	 pid_of = -1;	/* whose pid pid_txt holds */
	static char	 pid_txt[24];
	size_t		 len;

	if (log_getpid() != pid_of) {
		pid_of = log_getpid();
		snprintf(pid_txt, sizeof(pid_txt), "%ld", pid_of);
	}
	len = put(line, 0, log_prog);
	line[len++] = '[';
	len = put(line, len, pid_txt);
	line[len++] = ']';
	line[len++] = ' ';
	len = put(line, len, level_names[level]);
	line[len++] = ' ';
	if (req[0] != '\0') {
		len = put(line, len, "req=");
		len = put(line, len, req);
		line[len++] = ' ';
	}
	return len;
}

static size_t
prefix(char *line, enum keel_log_level level)
{
	return prefix_req(line, level, log_req);
}

/*
 * How many of the bytes at p[0..n) emit() writes as \xNN: 1 for a C0
 * control or DEL, 2 for a C1 control in UTF-8 (U+0080-U+009F: NEL, the
 * 8-bit CSI a terminal acts on), 1 for a byte no UTF-8 sequence starts
 * with where one must start (a stray 0x80-0xbf: a raw C1 to an 8-bit
 * terminal); 0 for a byte to write as it is.  *cont counts the
 * continuation bytes the last lead byte asked for.
 */
static size_t
unsafe(const unsigned char *p, size_t n, int *cont)
{
	if (p[0] >= 0x80 && p[0] <= 0xbf) {
		if (*cont == 0)
			return 1;
		(*cont)--;
		return 0;
	}
	*cont = p[0] >= 0xf0 ? 3 : p[0] >= 0xe0 ? 2 : p[0] >= 0xc0 ? 1 : 0;
	if (p[0] < 0x20 || p[0] == 0x7f)
		return 1;
	if (p[0] == 0xc2 && n > 1 && p[1] >= 0x80 && p[1] <= 0x9f) {
		*cont = 0;
		return 2;
	}
	return 0;
}

/* Milliseconds on a clock no one sets. */
static long long
mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * buf[0..len), whole lines, to stderr in one write(2); the lines it
 * could not write (a full disk, a closed pipe) are counted in log_lost,
 * for the next line that does get out to say so.
 */
static void
out_write(const char *buf, size_t len)
{
	ssize_t	 n;
	size_t	 i;

	if ((n = write(STDERR_FILENO, buf, len)) == (ssize_t)len)
		return;
	for (i = n > 0 ? (size_t)n : 0; i < len; i++)
		if (buf[i] == '\n')
			log_lost++;
}

/*
 * line[0..len), whole lines ending in a newline, into held[]; written
 * when the buffer is full or its first line has waited KEEL_LOG_HOLD_MS
 * by now.
 */
static void
hold(const char *line, size_t len, const struct timespec *now)
{
	long	 waited;

	if (held_len + len > sizeof(held))
		keel_log_flush();
	if (held_len == 0)
		held_since = *now;
	memcpy(held + held_len, line, len);
	held_len += len;
	waited = (now->tv_sec - held_since.tv_sec) * 1000L +
	    (now->tv_nsec - held_since.tv_nsec) / 1000000L;
	if (waited >= KEEL_LOG_HOLD_MS || waited < 0)
		keel_log_flush();
}

/*
 * line[0..len) and a newline, in one write, so concurrent workers' lines
 * stay whole.  A control that got this far (a value a caller didn't pass
 * through keel_log_escape(): a job key from Redis, a server's message),
 * C0, DEL or C1 (unsafe()), is written as keel_log_escape() writes it, so
 * no value can end the line, forge the next one or drive the terminal
 * that shows it.  If stderr is gone there is nowhere left to report that.
 */
static void
emit(char *line, size_t len, int saved, const struct timespec *held_at)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)line;
	char		 esc[LINE_MAX_LEN * 4 + 1];
	char		*out = line;
	size_t		 i, j, k, o = 0;
	int		 cont = 0;

	if (len > LINE_MAX_LEN - 1)
		len = LINE_MAX_LEN - 1;	/* a would-be length, cut */
	for (i = 0; i < len; i++)
		if (unsafe(u + i, len - i, &cont) > 0)
			break;
	if (i < len) {
		/* Again from the start: the escape needs each byte's state. */
		for (cont = 0, i = 0; i < len; i += k) {
			if ((k = unsafe(u + i, len - i, &cont)) == 0) {
				esc[o++] = line[i];
				k = 1;
				continue;
			}
			for (j = 0; j < k; j++) {
				esc[o++] = '\\';
				esc[o++] = 'x';
				esc[o++] = hex[u[i + j] >> 4];
				esc[o++] = hex[u[i + j] & 0xf];
			}
		}
		out = esc;
		len = o;
	}
	/* Both buffers keep a byte past len: line's 64, esc's one. */
	out[len++] = '\n';
	if (held_at != NULL && len <= sizeof(held))
		hold(out, len, held_at);
	else {
		if (held_len > 0)
			keel_log_flush();
		out_write(out, len);
	}
	errno = saved;
}

/*
 * The site of warnings or errors written with fmt, found or taken;
 * NULL when the table is full (the kind is then never held back).
 */
static struct site *
site_of(const char *fmt, enum keel_log_level level)
{
	size_t	 i, h;

	h = (size_t)(((uintptr_t)fmt >> 3) % SITES_MAX);
	for (i = 0; i < SITES_MAX; i++) {
		struct site *s = &sites[(h + i) % SITES_MAX];

		if (s->fmt == fmt)
			return s;
		if (s->fmt == NULL) {
			s->fmt = fmt;
			s->level = level;
			return s;
		}
	}
	return NULL;
}

/*
 * The counts nobody has written yet: of each kind quiet for a second
 * past its last line (or every one, with all), and of the lines lost to
 * failed writes.  Written without a request id: they span many.
 */
static void
sweep(long long now, bool all)
{
	char		 line[LINE_MAX_LEN];
	unsigned long	 n;
	size_t		 i, len;
	int		 saved = errno;

	for (i = 0; i < SITES_MAX && sites_held > 0; i++) {
		struct site *s = &sites[i];

		if (s->held == 0 ||
		    (!all && now < s->next + KEEL_LOG_REPEAT_MS))
			continue;
		len = prefix_req(line, s->level, "");
		len += (size_t)snprintf(line + len, sizeof(line) - len,
		    "log: %lu more like \"%s\" since", s->held, s->head);
		s->held = 0;
		s->next = now + KEEL_LOG_REPEAT_MS;
		sites_held--;
		emit(line, len, saved, NULL);
	}
	if (log_lost > 0 && (all || now >= lost_next)) {
		n = log_lost;
		log_lost = 0;
		lost_next = now + KEEL_LOG_REPEAT_MS;
		len = prefix_req(line, KEEL_LOG_WARN, "");
		len += (size_t)snprintf(line + len, sizeof(line) - len,
		    "log: %lu lines lost to failed writes", n);
		emit(line, len, saved, NULL);
	}
}

void
keel_log_hold(bool on)
{
	if (!on)
		keel_log_flush();
	held_on = on;
}

void
keel_log_limit(bool on)
{
	limit_on = on;
}

void
keel_log_flush(void)
{
	size_t	 n = held_len;
	int	 saved = errno;

	held_len = 0;
	if (n > 0)
		out_write(held, n);
	if (sites_held > 0 || log_lost > 0)
		sweep(mono_ms(), false);
	errno = saved;
}

void
keel_log_close(void)
{
	keel_log_flush();
	if (sites_held > 0 || log_lost > 0)
		sweep(mono_ms(), true);
}

static void
log_exit(void)
{
	keel_log_close();
}

/*
 * Whether a line of s's kind waits for its second (it is then counted,
 * never formatted); else s's window starts again at now.
 */
static bool
site_waits(struct site *s, long long now)
{
	if (s == NULL)
		return false;
	if (now < s->next) {
		if (s->held++ == 0)
			sites_held++;
		return true;
	}
	s->next = now + KEEL_LOG_REPEAT_MS;
	return false;
}

/*
 * The message line[from..len) as s's head, and the count of the lines
 * s held back since its last (appended to line); the new length.
 */
static size_t
site_note(struct site *s, char *line, size_t from, size_t len)
{
	size_t	 n;

	if (len > LINE_MAX_LEN - 64)
		len = LINE_MAX_LEN - 64;	/* room for the count */
	n = len - from < SITE_HEAD - 1 ? len - from : SITE_HEAD - 1;
	memcpy(s->head, line + from, n);
	s->head[n] = '\0';
	if (s->held > 0) {
		len += (size_t)snprintf(line + len, LINE_MAX_LEN - len,
		    " (%lu more like it since)", s->held);
		s->held = 0;
		sites_held--;
	}
	return len;
}

/* A line; with limit, held back while its call site's second runs. */
static void
log_vwrite(enum keel_log_level level, int with_errno, bool limit,
    const char *fmt, va_list ap)
{
	char		 line[LINE_MAX_LEN];
	struct site	*s = NULL;
	long long	 now = 0;
	int		 saved, m;
	size_t		 len, from;

	saved = errno;
	if (limit && limit_on) {
		now = mono_ms();
		s = site_of(fmt, level);
		if (site_waits(s, now))
			return;
	}
	from = len = prefix(line, level);
	m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	len += m < 0 ? 0 : (size_t)m;
	if (len > sizeof(line) - 64)
		len = sizeof(line) - 64;	/* truncated: keep room below */
	if (with_errno)
		len += snprintf(line + len, sizeof(line) - len, ": %s",
		    strerror(saved));
	if (s != NULL)
		len = site_note(s, line, from, len);
	if (limit && (sites_held > 0 || log_lost > 0))
		sweep(now != 0 ? now : mono_ms(), false);
	emit(line, len, saved, NULL);
}

void
keel_log_text(enum keel_log_level level, const char *msg)
{
	char	 line[LINE_MAX_LEN];
	int	 saved = errno;

	if (!keel_log_enabled(level))
		return;
	emit(line, put(line, prefix(line, level), msg), saved, NULL);
}

void
keel_log_write(enum keel_log_level level, int with_errno, const char *fmt, ...)
{
	va_list	 ap;

	if (!keel_log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vwrite(level, with_errno, level >= KEEL_LOG_WARN, fmt, ap);
	va_end(ap);
}

#define LOG_FN(fn, level, with_errno, limit)			\
void								\
fn(const char *fmt, ...)					\
{								\
	va_list	 ap;						\
								\
	if (!keel_log_enabled(level))				\
		return;						\
	va_start(ap, fmt);					\
	log_vwrite(level, with_errno, limit, fmt, ap);		\
	va_end(ap);						\
}

LOG_FN(keel_log_warn, KEEL_LOG_WARN, 1, true)
LOG_FN(keel_log_warnx, KEEL_LOG_WARN, 0, true)
LOG_FN(keel_log_error, KEEL_LOG_ERROR, 0, true)
LOG_FN(keel_log_info, KEEL_LOG_INFO, 0, false)

void
keel_log_fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(KEEL_LOG_ERROR, 1, false, fmt, ap);
	va_end(ap);
	exit(1);
}

void
keel_log_fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(KEEL_LOG_ERROR, 0, false, fmt, ap);
	va_end(ap);
	exit(1);
}

char *
keel_log_escape(char *dst, size_t n, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t		 o = 0;
	unsigned char	 c;

	if (n == 0)
		return dst;
	for (; *s != '\0' && o + 5 < n; s++) {
		c = (unsigned char)*s;
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\' ||
		    c == ' ') {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		} else
			dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return dst;
}

/* Appends the n digits of v (zero-padded) at p; returns the end. */
static char *
put_digits(char *p, long v, int n)
{
	int	 i;

	for (i = n - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
	return p + n;
}

/* Appends s (at most max bytes) at p; returns the end. */
static char *
put_str(char *p, const char *s, size_t max)
{
	size_t	 n = strnlen(s, max);

	memcpy(p, s, n);
	return p + n;
}

/* Appends v >= 0 in decimal at p; returns the end. */
static char *
put_uint(char *p, unsigned long v)
{
	char	 d[24];
	int	 n = 0;

	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (n > 0)
		*p++ = d[--n];
	return p;
}

/* Appends the string literal lit at p. */
#define PUT_LIT(p, lit)	(memcpy((p), (lit), sizeof(lit) - 1), \
	(p) + sizeof(lit) - 1)

/*
 * Built by hand: it was the largest printf of a request (strftime, then
 * a format of six conversions).
 */
void
keel_log_access(const char *method, const char *path, int status, double ms)
{
	static time_t	 ts_of = -1;	/* the second ts spells */
	static char	 ts[32];
	char		 esc[256], line[512], whole[LINE_MAX_LEN], *p;
	struct timespec	 now;
	struct tm	 tm;
	long		 cs;
	int		 saved = errno;

	if (!keel_log_enabled(KEEL_LOG_INFO))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != ts_of) {
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		ts_of = now.tv_sec;
	}
	keel_log_escape(esc, sizeof(esc), path != NULL ? path : "");
	cs = ms < 0 ? 0 : (long)(ms * 100 + 0.5);	/* %.2f's hundredths */
	p = PUT_LIT(line, "access time=");
	p = put_str(p, ts, sizeof(ts));
	*p++ = '.';
	p = put_digits(p, now.tv_nsec / 1000000L, 3);
	p = PUT_LIT(p, "Z method=");
	p = put_str(p, method != NULL ? method : "", 16);
	p = PUT_LIT(p, " path=");
	p = put_str(p, esc, sizeof(esc));
	p = PUT_LIT(p, " status=");
	p = put_uint(p, status < 0 ? 0 : (unsigned long)status);
	p = PUT_LIT(p, " ms=");
	p = put_uint(p, (unsigned long)(cs / 100));
	*p++ = '.';
	p = put_digits(p, cs % 100, 2);
	*p = '\0';
	emit(whole, put(whole, prefix(whole, KEEL_LOG_INFO), line), saved,
	    held_on ? &now : NULL);
}
