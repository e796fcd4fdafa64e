/* SPDX-License-Identifier: ISC */
/*
 * metrics.c -- counters, gauges and histograms in per-host shared memory.
 *
 * One file per app or program, <dir>/<name>.metrics, mapped shared before
 * the workers fork: a header, then one slot per worker index.  A slot is
 * a fixed hash table of series (metric + label text -> 16 cells), so a
 * respawned or recycled worker takes over its index's slot and its
 * counters go on from where they were, and the number of files never
 * grows with restarts (the failure of one-file-per-pid schemes).  On the
 * request path a series is found by hashing, made with one compare-and-
 * swap the first time, and updated with an atomic add: no lock, no
 * syscall.  Two processes may share a slot (a worker and the one that
 * replaces it in a SIGHUP roll): the atomics keep every count.  The
 * scrape maps every file read-only and sums the slots.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/text.h"

#define MAGIC		0x326d6c65656b0a31ULL	/* file format 2 */
#define CAPACITY	512	/* series per slot */
#define NCELLS		18
#define NBUCKETS	15	/* finite histogram buckets */
#define CELL_INF	15	/* observations past the last bucket */
#define CELL_SUM	16	/* nanoseconds */
#define CELL_COUNT	17
#define SPINS		4096	/* waits for a series being made */
#define SUFFIX		".metrics"

enum entry_state { E_EMPTY, E_MAKING, E_READY };

struct entry {
	uint32_t	state;		/* enum entry_state, atomically */
	uint16_t	metric;
	uint16_t	pad;
	char		labels[KEEL_METRICS_LABELS_MAX];
	uint64_t	cells[NCELLS];
};

struct slot {
	uint64_t	dropped;	/* series that found no room */
	uint64_t	pad[7];
	struct entry	e[CAPACITY];
};

struct header {
	uint64_t	magic;
	uint32_t	nslots;
	uint32_t	capacity;
	uint32_t	entry_size;
	uint32_t	pad0;
	uint64_t	pad[5];
};

enum kind { COUNTER, GAUGE, HISTOGRAM };

static const struct {
	const char	*name;
	const char	*help;
	enum kind	 kind;
} metrics[KEEL_M__MAX] = {
	[KEEL_M_HTTP_REQUESTS] = { "keel_http_requests_total",
	    "Requests answered, by route pattern, method and status code.",
	    COUNTER },
	[KEEL_M_HTTP_DURATION] = { "keel_http_request_duration_seconds",
	    "Time from a request's arrival at the worker to its answer.",
	    HISTOGRAM },
	[KEEL_M_DB_QUERY] = { "keel_db_query_duration_seconds",
	    "PostgreSQL statements by name, retries included.", HISTOGRAM },
	[KEEL_M_CACHE] = { "keel_cache_requests_total",
	    "Response cache lookups by namespace and result.", COUNTER },
	[KEEL_M_RATE_LIMIT] = { "keel_rate_limit_decisions_total",
	    "Rate-limit decisions by limiter (allow, deny, fail_open, "
	    "fail_closed).", COUNTER },
	[KEEL_M_JOBS] = { "keel_jobs_total",
	    "Jobs finished by the drainers, by queue and outcome.", COUNTER },
	[KEEL_M_ERRORS] = { "keel_errors_total",
	    "Failures handled without a 500, by kind (a dependency down, "
	    "a timeout, ...).", COUNTER },
	[KEEL_M_WORKER_STARTS] = { "keel_worker_starts_total",
	    "Worker processes started (respawns and recycles included).",
	    COUNTER },
	[KEEL_M_STREAM_OPENS] = { "keel_stream_opens_total",
	    "Notification streams opened (open now: opens less closes).",
	    COUNTER },
	[KEEL_M_STREAM_CLOSES] = { "keel_stream_closes_total",
	    "Notification streams closed, by reason.", COUNTER },
	[KEEL_M_STREAM_EVENTS] = { "keel_stream_events_total",
	    "Notifications written to streams.", COUNTER },
	[KEEL_M_CRON_RUNS] = { "keel_cron_runs_total",
	    "Runs of a cron program: started (its lock taken; a run that "
	    "finds another holding it is none), and completed (its summary "
	    "printed); the difference died or is running.", COUNTER },
	[KEEL_M_CRON_START] = { "keel_cron_last_start_timestamp_seconds",
	    "When the program's last run started (unix time).", GAUGE },
	[KEEL_M_CRON_DURATION] = { "keel_cron_last_duration_seconds",
	    "How long the program's last run took.", GAUGE },
	[KEEL_M_CRON_ITEMS] = { "keel_cron_items_total",
	    "Items a cron program handled, by outcome.", COUNTER },
	[KEEL_M_METRICS_DROPPED] = { "keel_metrics_dropped_total",
	    "Updates lost because their series found its slot's table full "
	    "(the series is missing from this scrape).", COUNTER },
};

/* Up to KEEL_DB_STATEMENT_TIMEOUT's default: a p99 near it must show. */
static const double bounds[NBUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10, 30,
};

static struct header	*map;		/* this process's file, or NULL */
static struct slot	*cur;		/* the slot it counts into */

static size_t
file_size(uint32_t nslots)
{
	return sizeof(struct header) + (size_t)nslots * sizeof(struct slot);
}

static struct slot *
slot_at(struct header *h, uint32_t i)
{
	return (struct slot *)((char *)h + sizeof(*h)) + i;
}

static bool
header_ok(const struct header *h)
{
	return h->magic == MAGIC && h->capacity == CAPACITY &&
	    h->entry_size == sizeof(struct entry);
}

bool
keel_metrics_open(const char *dir, const char *name, int nslots, char *err,
    size_t n)
{
	struct header	 h;
	struct stat	 st;
	char		 path[512];
	void		*p;
	size_t		 size;
	int		 fd;

	if (dir == NULL || *dir == '\0') {
		snprintf(err, n, "no metrics directory");
		return false;
	}
	if (nslots < 1)
		nslots = 1;
	if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
		snprintf(err, n, "%s: %s", dir, strerror(errno));
		return false;
	}
	snprintf(path, sizeof(path), "%s/%s" SUFFIX, dir, name);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1) {
		snprintf(err, n, "%s: %s", path, strerror(errno));
		return false;
	}
	/* One opener at a time sizes the file (the apps start together). */
	if (flock(fd, LOCK_EX) == -1 || fstat(fd, &st) == -1)
		goto fail;
	memset(&h, 0, sizeof(h));
	if ((size_t)st.st_size >= sizeof(h) &&
	    pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto fail;
	if (!header_ok(&h)) {
		/* New, or another format: start it again. */
		memset(&h, 0, sizeof(h));
		h.magic = MAGIC;
		h.capacity = CAPACITY;
		h.entry_size = sizeof(struct entry);
		if (ftruncate(fd, 0) == -1)
			goto fail;
	}
	if (h.nslots < (uint32_t)nslots)
		h.nslots = (uint32_t)nslots;
	size = file_size(h.nslots);
	if ((size_t)st.st_size < size && ftruncate(fd, (off_t)size) == -1)
		goto fail;
	/*
	 * Every page given its storage now: ftruncate leaves holes, and a
	 * worker's first store into a hole on a full filesystem (tmpfs
	 * /run, or ext4) is a SIGBUS on the request path.  Here it is a
	 * clear "metrics off" at start instead.  Only while the file has
	 * holes: where the filesystem can't allocate, glibc writes zeros
	 * into the blocks, which must not race the counts of processes
	 * that have it mapped already.
	 */
	if (fstat(fd, &st) == -1)
		goto fail;
	if ((off_t)st.st_blocks * 512 < (off_t)size &&
	    (errno = posix_fallocate(fd, 0, (off_t)size)) != 0)
		goto fail;
	if (pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto fail;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	/* The mapping keeps the file open: unlock, or the lock stays. */
	(void)flock(fd, LOCK_UN);
	close(fd);
	map = p;
	cur = slot_at(map, 0);
	return true;
fail:
	snprintf(err, n, "%s: %s", path, strerror(errno));
	(void)flock(fd, LOCK_UN);
	close(fd);
	return false;
}

void
keel_metrics_use(int slot)
{
	if (map != NULL && slot >= 0 && (uint32_t)slot < map->nslots)
		cur = slot_at(map, (uint32_t)slot);
}

bool
keel_metrics_on(void)
{
	return map != NULL;
}

/* Appends s to buf at *len (escaped when esc), if it fits in max. */
static bool
put(char *buf, size_t *len, size_t max, const char *s, bool esc)
{
	size_t	 o = *len;

	for (; *s != '\0'; s++) {
		if (esc && (*s == '\\' || *s == '"' || *s == '\n')) {
			if (o + 2 >= max)
				return false;
			buf[o++] = '\\';
			buf[o++] = *s == '\n' ? 'n' : *s;
		} else {
			if (o + 1 >= max)
				return false;
			buf[o++] = *s;
		}
	}
	*len = o;
	return true;
}

/* No snprintf: this runs a few times per request. */
char *
keel_metrics_labels(char buf[KEEL_METRICS_LABELS_MAX], ...)
{
	va_list		 ap;
	const char	*k, *v;
	size_t		 len = 0, mark;

	va_start(ap, buf);
	while ((k = va_arg(ap, const char *)) != NULL) {
		if ((v = va_arg(ap, const char *)) == NULL)
			break;
		mark = len;
		if ((len > 0 && !put(buf, &len, KEEL_METRICS_LABELS_MAX, ",",
		    false)) || !put(buf, &len, KEEL_METRICS_LABELS_MAX, k,
		    false) || !put(buf, &len, KEEL_METRICS_LABELS_MAX, "=\"",
		    false) || !put(buf, &len, KEEL_METRICS_LABELS_MAX, v, true) ||
		    !put(buf, &len, KEEL_METRICS_LABELS_MAX, "\"", false))
			len = mark;	/* too long: left out */
	}
	va_end(ap);
	buf[len] = '\0';
	return buf;
}

static uint64_t
hash(enum keel_metric m, const char *s)
{
	uint64_t	 h = 1469598103934665603ULL ^ (uint64_t)m;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* The series (m, labels) of this process's slot, made if need be. */
static struct entry *
series(enum keel_metric m, const char *labels)
{
	struct entry	*e;
	uint32_t	 st, empty;
	size_t		 i, probe;
	int		 spins;

	if (cur == NULL || strlen(labels) >= KEEL_METRICS_LABELS_MAX)
		return NULL;
	i = (size_t)(hash(m, labels) % CAPACITY);
	for (probe = 0; probe < CAPACITY; probe++) {
		e = &cur->e[(i + probe) % CAPACITY];
		st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
		if (st == E_EMPTY) {
			empty = E_EMPTY;
			if (__atomic_compare_exchange_n(&e->state, &empty,
			    E_MAKING, false, __ATOMIC_ACQ_REL,
			    __ATOMIC_ACQUIRE)) {
				e->metric = (uint16_t)m;
				strcpy(e->labels, labels);
				__atomic_store_n(&e->state, E_READY,
				    __ATOMIC_RELEASE);
				return e;
			}
			st = empty;
		}
		/* Another process is making it: a few instructions. */
		for (spins = 0; st == E_MAKING && spins < SPINS; spins++)
			st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
		if (st == E_READY && e->metric == (uint16_t)m &&
		    strcmp(e->labels, labels) == 0)
			return e;
	}
	__atomic_fetch_add(&cur->dropped, 1, __ATOMIC_RELAXED);
	return NULL;
}

void
keel_metrics_add(enum keel_metric m, const char *labels, uint64_t n)
{
	struct entry	*e;

	if ((e = series(m, labels)) != NULL)
		__atomic_fetch_add(&e->cells[0], n, __ATOMIC_RELAXED);
}

void
keel_metrics_observe(enum keel_metric m, const char *labels, double seconds)
{
	struct entry	*e;
	int		 b;

	if ((e = series(m, labels)) == NULL)
		return;
	if (seconds < 0)
		seconds = 0;
	for (b = 0; b < NBUCKETS && seconds > bounds[b]; b++)
		continue;
	__atomic_fetch_add(&e->cells[b], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&e->cells[CELL_SUM], (uint64_t)(seconds * 1e9),
	    __ATOMIC_RELAXED);
	__atomic_fetch_add(&e->cells[CELL_COUNT], 1, __ATOMIC_RELAXED);
}

void
keel_metrics_set(enum keel_metric m, const char *labels, double v)
{
	struct entry	*e;
	uint64_t	 bits;

	if ((e = series(m, labels)) == NULL)
		return;
	memcpy(&bits, &v, sizeof(bits));
	__atomic_store_n(&e->cells[0], bits, __ATOMIC_RELAXED);
}

void
keel_metrics_error(const char *kind)
{
	char	 labels[KEEL_METRICS_LABELS_MAX];

	if (cur != NULL)
		keel_metrics_add(KEEL_M_ERRORS, keel_metrics_labels(labels,
		    "kind", kind, (char *)NULL), 1);
}

/* A method as a label: the known ones, or "other" (clients choose it). */
static const char *
method_label(const char *m)
{
	static const char *const known[] = { "GET", "HEAD", "POST", "PUT",
	    "PATCH", "DELETE", "OPTIONS" };
	size_t	 i;

	for (i = 0; m != NULL && i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return known[i];
	return "other";
}

void
keel_metrics_request(const char *route, const char *method, int status,
    double ms)
{
	char		 labels[KEEL_METRICS_LABELS_MAX], code[KEEL_TEXT_INT_MAX];
	const char	*m = method_label(method);

	if (cur == NULL)
		return;
	keel_text_int(code, status);
	keel_metrics_add(KEEL_M_HTTP_REQUESTS, keel_metrics_labels(labels,
	    "route", route, "method", m, "code", code, (char *)NULL), 1);
	keel_metrics_observe(KEEL_M_HTTP_DURATION, keel_metrics_labels(labels,
	    "route", route, "method", m, (char *)NULL), ms / 1000.0);
}

/* ------------------------------------------------------------ scrape */

struct sum {
	uint16_t	 metric;
	char		*app;		/* owned */
	char		 labels[KEEL_METRICS_LABELS_MAX];
	uint64_t	 cells[NCELLS];
	double		 gauge;
};

struct sums {
	struct sum	*v;
	size_t		 n, cap;
};

static struct sum *
sum_find(struct sums *s, uint16_t m, const char *app, const char *labels)
{
	size_t	 i;

	/* Few hundred series per host: a scan is fine at scrape time. */
	for (i = 0; i < s->n; i++)
		if (s->v[i].metric == m && strcmp(s->v[i].labels, labels) ==
		    0 && strcmp(s->v[i].app, app) == 0)
			return &s->v[i];
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->v = keel_realloc(s->v, s->cap * sizeof(*s->v));
	}
	memset(&s->v[s->n], 0, sizeof(s->v[0]));
	s->v[s->n].metric = m;
	s->v[s->n].app = keel_strdup(app);
	keel_text_copy(s->v[s->n].labels, sizeof(s->v[0].labels), labels);
	return &s->v[s->n++];
}

/* Adds one file's slots to s; false if it is not a metrics file. */
static bool
sum_file(struct sums *s, const char *path, const char *app)
{
	const struct header	*h;
	const struct entry	*e;
	struct stat		 st;
	struct sum		*t;
	uint64_t		 bits;
	uint32_t		 i, j;
	double			 g;
	void			*p;
	int			 fd, c;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	if (fstat(fd, &st) == -1 || (size_t)st.st_size < sizeof(*h)) {
		close(fd);
		return false;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return false;
	h = p;
	if (!header_ok(h) || file_size(h->nslots) > (size_t)st.st_size) {
		munmap(p, (size_t)st.st_size);
		return false;
	}
	/* Always, 0 too: an alert on it needs the series before the loss. */
	t = sum_find(s, KEEL_M_METRICS_DROPPED, app, "");
	for (i = 0; i < h->nslots; i++)
		t->cells[0] += __atomic_load_n(&slot_at((struct header *)p,
		    i)->dropped, __ATOMIC_RELAXED);
	for (i = 0; i < h->nslots; i++)
		for (j = 0; j < CAPACITY; j++) {
			e = &slot_at((struct header *)p, i)->e[j];
			if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) !=
			    E_READY || e->metric >= KEEL_M__MAX ||
			    memchr(e->labels, '\0', sizeof(e->labels)) == NULL)
				continue;
			t = sum_find(s, e->metric, app, e->labels);
			if (metrics[e->metric].kind == GAUGE) {
				/* The newest writer's value wins: any. */
				bits = __atomic_load_n(&e->cells[0],
				    __ATOMIC_RELAXED);
				memcpy(&g, &bits, sizeof(g));
				t->gauge = g;
				continue;
			}
			for (c = 0; c < NCELLS; c++)
				t->cells[c] += __atomic_load_n(&e->cells[c],
				    __ATOMIC_RELAXED);
		}
	munmap(p, (size_t)st.st_size);
	return true;
}

static int
sum_cmp(const void *a, const void *b)
{
	const struct sum	*x = a, *y = b;
	int			 r;

	if (x->metric != y->metric)
		return x->metric < y->metric ? -1 : 1;
	if ((r = strcmp(x->app, y->app)) != 0)
		return r;
	return strcmp(x->labels, y->labels);
}

/* name{app="..",labels[,extra]} */
static void
series_name(struct keel_buf *out, const char *name, const char *suffix,
    const struct sum *s, const char *extra)
{
	keel_buf_printf(out, "%s%s{app=\"%s\"%s%s%s%s} ", name, suffix,
	    s->app, *s->labels ? "," : "", s->labels, extra ? "," : "",
	    extra ? extra : "");
}

static void
write_sum(struct keel_buf *out, const struct sum *s)
{
	const char	*name = metrics[s->metric].name;
	uint64_t	 acc = 0;
	char		 le[32];
	int		 b;

	switch (metrics[s->metric].kind) {
	case COUNTER:
		series_name(out, name, "", s, NULL);
		keel_buf_printf(out, "%ju\n", (uintmax_t)s->cells[0]);
		break;
	case GAUGE:
		series_name(out, name, "", s, NULL);
		keel_buf_printf(out, "%.17g\n", s->gauge);
		break;
	case HISTOGRAM:
		for (b = 0; b < NBUCKETS; b++) {
			acc += s->cells[b];
			snprintf(le, sizeof(le), "le=\"%g\"", bounds[b]);
			series_name(out, name, "_bucket", s, le);
			keel_buf_printf(out, "%ju\n", (uintmax_t)acc);
		}
		series_name(out, name, "_bucket", s, "le=\"+Inf\"");
		keel_buf_printf(out, "%ju\n", (uintmax_t)s->cells[CELL_COUNT]);
		series_name(out, name, "_sum", s, NULL);
		keel_buf_printf(out, "%.9f\n",
		    (double)s->cells[CELL_SUM] / 1e9);
		series_name(out, name, "_count", s, NULL);
		keel_buf_printf(out, "%ju\n", (uintmax_t)s->cells[CELL_COUNT]);
		break;
	}
}

bool
keel_metrics_scrape(const char *dir, struct keel_buf *out, char *err,
    size_t n)
{
	static const char	*types[] = { "counter", "gauge", "histogram" };
	struct sums		 s = { NULL, 0, 0 };
	struct dirent		*de;
	DIR			*d;
	char			 path[512], app[256];
	size_t			 i, len;
	int			 last = -1;

	if ((d = opendir(dir)) == NULL) {
		snprintf(err, n, "%s: %s", dir, strerror(errno));
		return false;
	}
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len <= strlen(SUFFIX) || len - strlen(SUFFIX) >=
		    sizeof(app) || strcmp(de->d_name + len - strlen(SUFFIX),
		    SUFFIX) != 0)
			continue;
		snprintf(app, sizeof(app), "%.*s",
		    (int)(len - strlen(SUFFIX)), de->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		(void)sum_file(&s, path, app);
	}
	closedir(d);
	qsort(s.v, s.n, sizeof(*s.v), sum_cmp);
	for (i = 0; i < s.n; i++) {
		if (s.v[i].metric != last) {
			last = s.v[i].metric;
			keel_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
			    metrics[last].name, metrics[last].help,
			    metrics[last].name, types[metrics[last].kind]);
		}
		write_sum(out, &s.v[i]);
	}
	for (i = 0; i < s.n; i++)
		free(s.v[i].app);
	free(s.v);
	return true;
}

void
keel_metrics_gauge(struct keel_buf *out, const char *name, const char *help,
    const char *labels, double v)
{
	if (help != NULL)
		keel_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name,
		    help, name);
	if (*labels != '\0')
		keel_buf_printf(out, "%s{%s} %.17g\n", name, labels, v);
	else
		keel_buf_printf(out, "%s %.17g\n", name, v);
}
