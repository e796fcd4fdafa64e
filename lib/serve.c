/* SPDX-License-Identifier: ISC */
/*
 * serve.c -- the prefork process manager (DESIGN.md, "Processes").
 *
 * The supervisor owns the FastCGI listening socket and forks the workers
 * that accept on it; it never handles a request.  Workers open their
 * connections after fork, lazily.  Signals only set flags and write a byte
 * to a self-pipe, so every decision is taken in the main loop:
 *
 *   SIGCHLD   reap; respawn a dead worker (with backoff if it died at once)
 *   SIGHUP    reload: run the binary at our path (perhaps a new one) with
 *             --check through the env file (KEEL_ENV_FILE), reaping and
 *             respawning meanwhile (a SIGHUP then checks again after it,
 *             the newest binary); if it passes,
 *             execve() it in place (the pid, so the workers, stay ours)
 *             handing it the listening socket and the workers' pids
 *             (KEEL_SERVE_HANDOFF); the new image starts a new worker,
 *             then retires one old one, in turn; kills one that hasn't
 *             left after KEEL_SHUTDOWN_TIMEOUT.  A binary that fails its
 *             check changes nothing: the old workers serve on.
 *   SIGTERM   stop accepting, let workers finish their request, exit;
 *             kill what is left after KEEL_SHUTDOWN_TIMEOUT
 *   a tick    (KEEL_PM=dynamic, every PM_TICK_MS) count the idle workers
 *             on the scoreboard and fork or retire as pm.c decides
 *
 * A static pool has KEEL_WORKERS slots, all filled; a dynamic one has
 * KEEL_PM_MAX_CHILDREN slots, of which the pool fills what it needs.
 *
 * The listening socket is non-blocking.  A worker keeps SIGTERM blocked
 * except while it waits in ppoll() for a connection, so SIGTERM wakes an
 * idle worker at once while a busy one finishes its request: SA_RESTART
 * alone would not do, as select() and poll() fail with EINTR whatever the
 * flag says, and libfcgi's accept waits in select() for the request's
 * first bytes (dropping the connection on EINTR), as hiredis waits in
 * poll().
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <sodium.h>

#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/metrics.h"
#include "keel/pipeline.h"
#include "keel/pm.h"
#include "keel/redis.h"
#include "keel/report.h"
#include "keel/router.h"
#include "keel/serve.h"
#include "keel/text.h"
#include "http_private.h"

#define BACKOFF_MIN_MS	100	/* first respawn delay after a quick death */
#define BACKOFF_MAX_MS	10000
#define QUICK_DEATH_MS	1000	/* a worker dying younger than this backs off */
#define EXIT_RECYCLED	0	/* a worker leaving on purpose */
#define PM_TICK_MS	100	/* a dynamic pool looks at its workers */
#define TERM_CHECK_EVERY 8	/* requests served back to back between
				   looks for SIGTERM */
#define CHECK_MS	20000	/* a new binary's --check may take this long */
#define HANDOFF_ENV	"KEEL_SERVE_HANDOFF"	/* "FD:PID,PID,..." */
#define LISTEN_QUEUE	65535	/* asked of listen(); the kernel caps it */

/*
 * What runs the binary on SIGHUP, as sh -c SCRIPT BINARY ARGS...: the env
 * file the stack or the service manager sourced at start, again, after
 * unsetting what it set last time (ENV_SET_ENV, see note_env_file), so a
 * variable taken out of the file goes back to its default; then the
 * binary, in place of the shell.
 */
#define ENV_SET_ENV	"KEEL_ENV_FILE_SET"	/* "NAME NAME ..." */
static const char reexec_sh[] = "[ -z \"$KEEL_ENV_FILE\" ] || { "
    "for v in $" ENV_SET_ENV "; do unset \"$v\"; done; "
    ". \"$KEEL_ENV_FILE\" || exit 1; }; exec \"$0\" \"$@\"";
static char	self_path[PATH_MAX];	/* argv[0], absolute; "" unknown */

static volatile sig_atomic_t got_term, got_hup, got_chld;
static int	spawn_slot;	/* the slot index a new worker takes */

/*
 * The scoreboard, in memory the supervisor shares with its workers (one
 * entry per slot): whether each worker is idle, since when, and the
 * request it is serving, so a worker that dies mid-request is reported
 * with that request's id and a dynamic pool knows its idle workers.  A
 * worker writes its own entry only, pid and state with atomic stores;
 * a slot's entry may still be its previous worker's, so the supervisor
 * believes an entry only when its pid is the slot's.  (An image before a
 * reload had its own: its workers are only known by pid.)
 */
enum board_state {
	BOARD_STARTING,		/* forked, not yet waiting: counts as idle */
	BOARD_IDLE,		/* waiting in ppoll() */
	BOARD_BUSY		/* serving a connection it accepted */
};
struct busy {
	pid_t	 pid;
	int	 state;				/* enum board_state */
	int64_t	 idle_since;			/* ms, monotonic */
	char	 id[KEEL_HTTP_ID_MAX + 1];	/* "" while idle */
};
static struct busy *busy;	/* nslots of them; NULL when mmap failed */
static int	sigpipe_fd[2] = { -1, -1 };

struct slot {
	pid_t	 pid;		/* 0 when empty */
	double	 started;	/* ms, monotonic */
	double	 respawn_at;	/* ms; 0 when no respawn is pending */
	int	 backoff;	/* ms for the next quick death */
	int	 leaving;	/* retired by the dynamic pool: not respawned */
	double	 kill_at;	/* ms: a leaving one is killed then; 0 done */
};

struct supervisor {
	pid_t			 pid;
	const struct keel_app	*app;
	const struct keel_config *cfg;
	char			**argv;		/* re-executed on SIGHUP */
	int			 lfd;
	struct slot		*slots;
	int			 nslots;
	pid_t			*old;		/* the image before's workers */
	int			 nold;		/* still to retire */
	int			 rolling;	/* a roll runs */
	int			 roll_target;	/* workers once it is done */
	pid_t			 roll_old;	/* worker being retired */
	double			 roll_kill_at;	/* ms: roll_old is killed then */
	int			 dynamic;	/* KEEL_PM=dynamic */
	struct keel_pm_limits	 lim;
	struct keel_pm_state	 pm;
	double			 next_tick;	/* ms */
	int			 at_max;	/* warned: every worker busy */
	pid_t			 check_pid;	/* a reload's --check, running */
	double			 check_kill_at;	/* ms: it took too long then */
	int			 check_status;	/* its wait status, once reaped */
	int			 check_done;	/* reaped, not yet acted on */
	int			 check_again;	/* SIGHUP while it ran */
	int			 check_killed;	/* it ran out of time */
};

static double
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
on_signal(int sig)
{
	int	 saved = errno;
	char	 c = (char)sig;

	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
	/* A full pipe already holds a wake-up; nothing is lost. */
	if (write(sigpipe_fd[1], &c, 1) == -1)
		errno = saved;
	errno = saved;
}

static void
drain_pipe(void)
{
	char	 buf[64];

	while (read(sigpipe_fd[0], buf, sizeof(buf)) > 0)
		continue;
}

static void
set_handler(int sig, void (*fn)(int))
{
	struct sigaction	 sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	/* Restart slow calls in request code; poll() reports EINTR anyway. */
	sa.sa_flags = SA_RESTART;
	if (sigaction(sig, &sa, NULL) == -1)
		keel_log_fatal("sigaction");
}

static void
make_sigpipe(void)
{
	int	 i;

	if (pipe(sigpipe_fd) == -1)
		keel_log_fatal("pipe");
	for (i = 0; i < 2; i++)
		if (fcntl(sigpipe_fd[i], F_SETFL, O_NONBLOCK) == -1 ||
		    fcntl(sigpipe_fd[i], F_SETFD, FD_CLOEXEC) == -1)
			keel_log_fatal("fcntl");
}

/* Binds a unix socket at path, replacing a stale one. */
static int
bind_socket(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		keel_log_fatalx("--socket: path longer than %zu bytes",
		    sizeof(sun.sun_path) - 1);
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		keel_log_fatal("socket");
	if (unlink(path) == -1 && errno != ENOENT)
		keel_log_fatal("unlink %s", path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		keel_log_fatal("bind %s", path);
	/* The web server may run as another user of the same group. */
	if (chmod(path, 0660) == -1)
		keel_log_fatal("chmod %s", path);
	if (listen(fd, LISTEN_QUEUE) == -1)
		keel_log_fatal("listen %s", path);
	return fd;
}

/*
 * The queue of connections no worker has taken yet: as deep as the
 * kernel allows (Linux cuts it to net.core.somaxconn, 4096 by default;
 * PHP-FPM asks the same), since one past it is refused and lighttpd
 * answers that request 500 at once.  lighttpd may hold many more
 * connections than 1024 to one app while its workers wait.  Asked again
 * of a socket we were given (spawn-fcgi's 1024, or an older binary's on
 * a reload): on Linux a second listen() changes the queue's depth.
 */
static void
deepen_queue(int fd)
{
	if (listen(fd, LISTEN_QUEUE) == -1)
		keel_log_fatal("listen");
}

/* True when fd is a listening socket. */
static bool
listening(int fd)
{
	int		 on = 0;
	socklen_t	 len = sizeof(on);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 &&
	    on;
}

/* fd 0 as lighttpd and spawn-fcgi pass it: a listening socket. */
static int
inherited_socket(void)
{
	if (!listening(0))
		keel_log_fatalx("fd 0 is not a listening socket: start me from "
		    "lighttpd or spawn-fcgi, or give --socket PATH");
	return 0;
}

static void
print_routes(const struct keel_app *app)
{
	struct keel_buf	 b = { NULL, 0, 0 };
	struct keel_jw	 w;
	size_t		 i;

	for (i = 0; i < app->nroutes; i++) {
		keel_buf_reset(&b);
		keel_jw_init(&w, &b);
		keel_jw_obj_open(&w);
		keel_jw_key(&w, "method");
		keel_jw_str(&w, app->routes[i].method);
		keel_jw_key(&w, "path");
		keel_jw_str(&w, app->routes[i].pattern);
		keel_jw_key(&w, "app");
		keel_jw_str(&w, app->name);
		keel_jw_obj_close(&w);
		printf("%s\n", b.data);
	}
	keel_buf_free(&b);
}

/*
 * A 500 becomes an error event, any other request maybe a transaction
 * (SENTRY_TRACES_SAMPLE_RATE), built into it while the request's headers
 * are there; keel_report_spool() writes it after the reply went out.
 */
static void
report_request(const struct supervisor *sv, const struct keel_req *req,
    char **envp, enum keel_err er, double ms, struct keel_report_item *it)
{
	struct keel_report_event ev;
	struct keel_report_txn	 t;
	struct timespec		 now;

	if (!keel_report_enabled())
		return;
	memset(&ev, 0, sizeof(ev));
	memset(&t, 0, sizeof(t));
	ev.app = t.app = sv->app->name;
	ev.route = t.route = req->route != NULL ? req->route->pattern : NULL;
	ev.method = t.method = req->method;
	ev.status = t.status = keel_http_status(req);
	ev.user_id = t.user_id = req->user != NULL ? req->user->id : 0;
	ev.request_id = t.request_id = req->id;
	if (ev.status == 500) {
		ev.type = "InternalError";
		ev.value = er != KEEL_OK ? keel_strerror(er) :
		    "the request was answered 500";
		ev.envp = (const char *const *)envp;
		(void)keel_report_build(it, &ev);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	t.end = (double)now.tv_sec + now.tv_nsec / 1e9;
	t.start = t.end - ms / 1000;
	(void)keel_report_build_txn(it, &t);
}

/* A worker's entry in busy: serving request id, or idle (NULL). */
static void
note_busy(pid_t self, const char *id)
{
	if (busy == NULL)
		return;
	__atomic_store_n(&busy[spawn_slot].pid, self, __ATOMIC_RELEASE);
	keel_text_copy(busy[spawn_slot].id, sizeof(busy[0].id),
	    id != NULL ? id : "");
}

/* A worker's state on the scoreboard: idle (since now) or busy. */
static void
note_state(pid_t self, enum board_state st)
{
	struct busy	*b;

	if (busy == NULL)
		return;
	b = &busy[spawn_slot];
	if (st == BOARD_IDLE)
		__atomic_store_n(&b->idle_since, (int64_t)now_ms(),
		    __ATOMIC_RELAXED);
	__atomic_store_n(&b->pid, self, __ATOMIC_RELAXED);
	__atomic_store_n(&b->state, (int)st, __ATOMIC_RELEASE);
}

/*
 * An event from the supervisor about worker pid: type, level, what
 * happened and two tags; the request it was serving when slot i (-1:
 * an old worker, whose scoreboard was the old image's) says so, and
 * then what says "during a request".
 */
static void
report_worker(const struct supervisor *sv, int i, pid_t pid,
    const char *type, const char *level, char *what, size_t n,
    struct keel_report_tag tags[2])
{
	struct keel_report_event ev;

	memset(&ev, 0, sizeof(ev));
	if (i >= 0 && busy != NULL && busy[i].pid == pid &&
	    busy[i].id[0] != '\0') {
		ev.request_id = busy[i].id;
		strncat(what, " during a request", n - strlen(what) - 1);
	}
	ev.level = level;
	ev.type = type;
	ev.value = what;
	ev.app = sv->app->name;
	ev.tags = tags;
	ev.ntags = 2;
	keel_report_send(&ev);
}

/* A worker that died (in slot i; -1: an old one a roll was retiring):
 * an event from the supervisor. */
static void
report_death(const struct supervisor *sv, int i, pid_t pid, int status)
{
	struct keel_report_tag	 tags[2];
	char			 what[200], num[2][24];

	snprintf(num[0], sizeof(num[0]), "%ld", (long)pid);
	tags[0].key = "pid";
	tags[0].value = num[0];
	if (WIFSIGNALED(status)) {
		snprintf(what, sizeof(what), "worker %ld of %s killed by "
		    "signal %d (%s)", (long)pid, sv->app->name,
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
		snprintf(num[1], sizeof(num[1]), "%d", WTERMSIG(status));
		tags[1].key = "signal";
	} else {
		snprintf(what, sizeof(what), "worker %ld of %s exited with "
		    "status %d", (long)pid, sv->app->name,
		    WEXITSTATUS(status));
		snprintf(num[1], sizeof(num[1]), "%d", WEXITSTATUS(status));
		tags[1].key = "exit_status";
	}
	tags[1].value = num[1];
	report_worker(sv, i, pid, "WorkerDied", "fatal", what, sizeof(what),
	    tags);
}

/*
 * A worker the supervisor is about to SIGKILL because it is still busy
 * KEEL_SHUTDOWN_TIMEOUT after it was told to leave (slot i; -1: an old
 * one a roll retires): its request is lost (lighttpd answers it 500),
 * so it is an event, not only a log line.  why: "shutdown", "reload" or
 * "retire" (the dynamic pool's: a worker retired idle may have taken a
 * connection as it was told to leave).
 */
static void
report_kill(const struct supervisor *sv, int i, pid_t pid, const char *why)
{
	struct keel_report_tag	 tags[2];
	char			 what[200], num[24];

	snprintf(num, sizeof(num), "%ld", (long)pid);
	tags[0].key = "pid";
	tags[0].value = num;
	tags[1].key = "during";
	tags[1].value = why;
	snprintf(what, sizeof(what), "worker %ld of %s still busy %d s "
	    "after it was told to leave (%s; KEEL_SHUTDOWN_TIMEOUT): killed",
	    (long)pid, sv->app->name, sv->cfg->shutdown_timeout, why);
	report_worker(sv, i, pid, "WorkerKilled", "error", what,
	    sizeof(what), tags);
}

/* SIGTERM or SIGINT was taken, or waits while blocked. */
static int
term_pending(void)
{
	sigset_t	 set;

	if (got_term)
		return 1;
	if (sigpending(&set) == -1)
		return 0;
	return sigismember(&set, SIGTERM) == 1 ||
	    sigismember(&set, SIGINT) == 1;
}

/*
 * Serves requests until told to stop or recycled; never returns.  Starts
 * with SIGTERM and SIGINT blocked (see spawn); waitmask is the mask that
 * lets them in, used only while waiting for a connection.
 */
static void __attribute__((noreturn))
worker_main(struct supervisor *sv, const sigset_t *waitmask)
{
	const struct keel_config *cfg = sv->cfg;
	struct keel_http_conn	*conn;
	struct keel_arena	*arena;
	struct keel_db		*db;
	struct keel_redis	*redis;
	struct keel_cache	*cache;
	struct keel_req		 req;
	struct keel_report_item	 rep;
	struct pollfd		 pfd;
	FCGX_Request		 fr;
	enum keel_err		 er;
	double			 t0;
	long			 served = 0, streak = 0;
	pid_t			 self = getpid();
	bool			 read_whole;	/* begin read the body */

	/* Die with the supervisor, whatever killed it (and reparented us). */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != sv->pid)
		_exit(0);
	/* The self-pipe is the supervisor's: ppoll's mask does its work. */
	close(sigpipe_fd[0]);
	close(sigpipe_fd[1]);
	sigpipe_fd[0] = sigpipe_fd[1] = -1;
	set_handler(SIGTERM, on_signal);
	set_handler(SIGINT, on_signal);
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	keel_metrics_use(spawn_slot);
	keel_metrics_add(KEEL_M_WORKER_STARTS, "", 1);
	if (sv->app->loop != NULL) {
		sv->app->loop(cfg, sv->lfd, waitmask);
		keel_log_close();
		_exit(EXIT_RECYCLED);
	}

	/* Connections are this process's own: opened lazily, after fork. */
	db = keel_db_open(cfg);
	redis = keel_redis_open(cfg);
	cache = keel_cache_open(cfg);
	conn = keel_http_conn_new();
	arena = keel_arena_new();
	if (FCGX_Init() != 0 || FCGX_InitRequest(&fr, sv->lfd, 0) != 0)
		keel_log_fatalx("FCGX_Init failed");

	/* Access lines go out a bufferful at a time while requests queue;
	 * a warning a request causes repeats with the requests. */
	keel_log_hold(true);
	keel_log_limit(true);
	pfd.fd = sv->lfd;
	pfd.events = POLLIN | POLLRDHUP;
	memset(&rep, 0, sizeof(rep));
	note_state(self, BOARD_IDLE);
	while (cfg->max_requests == 0 || served < cfg->max_requests) {
		/*
		 * After a request, accept straight away: under load the
		 * queue is rarely empty, and a connection costs one system
		 * call.  Only when it is (EAGAIN) does the worker wait.
		 */
		if (streak > 0) {
			/*
			 * Every so often look for SIGTERM, which the wait
			 * below judges: a busy worker retired by a roll
			 * still stops within a few requests.
			 */
			if (streak % TERM_CHECK_EVERY != 0 || !term_pending())
				if (FCGX_Accept_r(&fr) >= 0)
					goto accepted;
			streak = 0;
		}
		/* What waits in the log's buffer goes before the wait. */
		keel_log_flush();
		/* The one place SIGTERM gets in: no request is under way. */
		if (ppoll(&pfd, 1, NULL, waitmask) == -1) {
			if (errno != EINTR)
				keel_log_fatal("ppoll");
			if (got_term)
				break;
			continue;
		}
		/*
		 * ppoll() returns a ready socket before a pending signal, so
		 * look for SIGTERM by hand, or a busy worker retired by a
		 * roll would serve on while the queue is never empty.  On
		 * shutdown the supervisor has shut the socket (POLLRDHUP):
		 * nothing new can be queued, and what is queued is served.
		 */
		if (!(pfd.revents & POLLRDHUP) && term_pending())
			break;
		if (!(pfd.revents & POLLIN))
			continue;
		/* EAGAIN: another worker won the race, or the queue is empty. */
		if (FCGX_Accept_r(&fr) < 0) {
			if (pfd.revents & POLLRDHUP)
				break;
			continue;
		}
accepted:
		streak++;
		/* SIGTERM now waits until this connection is served. */
		note_state(self, BOARD_BUSY);
		t0 = now_ms();
		er = KEEL_OK;
		keel_arena_reset(arena);
		read_whole = keel_http_begin(&req, conn, &fr, arena,
		    (size_t)cfg->body_max) == KEEL_STEP_GO;
		/* Its early answers (413, 414, 400) are CORS's too. */
		req.cfg = cfg;
		if (read_whole) {
			keel_http_adopt_request_id(&req);
			req.db = db;
			req.redis = redis;
			req.cache = cache;
			keel_log_set_request(req.id);
			note_busy(self, req.id);
			er = keel_pipeline_run(sv->app->routes,
			    sv->app->nroutes, &req);
			if (er != KEEL_OK) {
				keel_log_warnx("handler failed: %s",
				    keel_strerror(er));
				if (!keel_http_replied(&req))
					keel_http_reply_err(&req, er);
			}
			/* A handler must not leave a transaction open. */
			keel_db_rollback(db);
		} else
			keel_log_set_request(req.id);
		keel_http_finish(&req);
		report_request(sv, &req, fr.envp, er, now_ms() - t0, &rep);
		/*
		 * libfcgi closes a connection by shutting our side, then
		 * reading until lighttpd closes its own, so input we never
		 * read can't reset it (TCP) before it reads the reply.  With
		 * the input read to its end there is nothing to guard: close
		 * at once (FCGX_Detach: no shutdown), and spare every request
		 * the wait for lighttpd and three system calls.
		 */
		if (read_whole && keel_http_input_ended(conn))
			(void)FCGX_Detach(&fr);
		FCGX_Finish_r(&fr);
		t0 = now_ms() - t0;
		keel_log_access(req.method, req.path, keel_http_status(&req),
		    t0);
		keel_metrics_request(req.route != NULL ?
		    req.route->pattern : "unmatched", req.method,
		    keel_http_status(&req), t0);
		(void)keel_report_spool(&rep);
		note_busy(self, NULL);
		note_state(self, BOARD_IDLE);
		keel_log_set_request(NULL);
		served++;
	}
	FCGX_Free(&fr, 1);
	keel_arena_free(arena);
	keel_http_conn_free(conn);
	keel_cache_close(cache);
	keel_redis_close(redis);
	keel_db_close(db);
	(void)keel_report_flush();
	keel_log_debug("worker exits after %ld requests", served);
	keel_log_close();		/* _exit() runs no atexit() */
	_exit(EXIT_RECYCLED);
}

static pid_t
spawn(struct supervisor *sv, int i)
{
	sigset_t	 block, old;
	pid_t		 pid;

	/* The worker is born with SIGTERM blocked: no early-signal window. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	spawn_slot = i;
	if ((pid = fork()) == 0)
		worker_main(sv, &old);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		keel_log_warn("fork");
		sv->slots[i].respawn_at = now_ms() + BACKOFF_MIN_MS;
		return -1;
	}
	sv->slots[i].pid = pid;
	sv->slots[i].started = now_ms();
	sv->slots[i].respawn_at = 0;
	sv->slots[i].leaving = 0;
	return pid;
}

/* A free slot for a new worker (a dynamic pool's, a roll's), or -1. */
static int
free_slot(const struct supervisor *sv)
{
	int	 i;

	for (i = 0; i < sv->nslots; i++)
		if (sv->slots[i].pid == 0 && sv->slots[i].respawn_at == 0)
			return i;
	return -1;
}

/* Workers of this image, a pending respawn counted, leaving ones not. */
static int
new_workers(const struct supervisor *sv)
{
	int	 i, n = 0;

	for (i = 0; i < sv->nslots; i++)
		n += (sv->slots[i].pid != 0 || sv->slots[i].respawn_at != 0) &&
		    !sv->slots[i].leaving;
	return n;
}

/*
 * The next step of a roll, if one is due: new workers until there is one
 * more than the roll needs (so a new one accepts before each old one
 * leaves) but never past roll_target, then the next old one is told to
 * go (SIGTERM: it finishes the request it serves).  Done when none is
 * left.
 */
static void
roll_step(struct supervisor *sv)
{
	int	 i;

	if (!sv->rolling || sv->roll_old != 0)
		return;
	while (new_workers(sv) < sv->roll_target &&
	    new_workers(sv) + sv->nold <= sv->roll_target &&
	    (i = free_slot(sv)) >= 0)
		if (spawn(sv, i) == -1)
			break;
	if (sv->nold == 0) {
		keel_log_info("reload: all %d workers replaced",
		    new_workers(sv));
		sv->rolling = 0;
		return;
	}
	sv->roll_old = sv->old[--sv->nold];
	sv->roll_kill_at = now_ms() + sv->cfg->shutdown_timeout * 1000.0;
	kill(sv->roll_old, SIGTERM);
}

/*
 * Whether an old worker a roll retires died of something else than its
 * SIGTERM (it exits 0 then) or the roll's SIGKILL after
 * KEEL_SHUTDOWN_TIMEOUT (logged when sent): a crash, worth an event.
 */
static bool
old_died(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status) != EXIT_RECYCLED;
	return WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM &&
	    WTERMSIG(status) != SIGKILL;
}

/* An old worker crashed while the roll retired it: logged, reported. */
static void
report_old_death(const struct supervisor *sv, pid_t pid, int status)
{
	if (WIFSIGNALED(status))
		keel_log_warnx("reload: old worker %ld killed by signal %d",
		    (long)pid, WTERMSIG(status));
	else
		keel_log_warnx("reload: old worker %ld exited with status %d",
		    (long)pid, WEXITSTATUS(status));
	report_death(sv, -1, pid, status);
}

/* Forgets pid if it is an old worker still to retire; true if it was. */
static bool
drop_old(struct supervisor *sv, pid_t pid)
{
	int	 i;

	for (i = 0; i < sv->nold; i++)
		if (sv->old[i] == pid) {
			sv->old[i] = sv->old[--sv->nold];
			return true;
		}
	return false;
}

/*
 * Kills the worker the roll retires once it has had KEEL_SHUTDOWN_TIMEOUT
 * to finish its request, as shutdown does: a worker stuck (a dependency
 * that stopped answering) must not stop the roll.  Returns the ms until
 * that is due, or -1 when nothing is pending.
 */
static int
roll_deadline(struct supervisor *sv)
{
	double	 left;

	if (sv->roll_old == 0 || sv->roll_kill_at == 0)
		return -1;
	if ((left = sv->roll_kill_at - now_ms()) > 0)
		return (int)left + 1;
	keel_log_warnx("reload: killing worker %ld, still busy after %d s",
	    (long)sv->roll_old, sv->cfg->shutdown_timeout);
	report_kill(sv, -1, sv->roll_old, "reload");
	kill(sv->roll_old, SIGKILL);
	/* Reaped as any exit is; the roll goes on from there. */
	sv->roll_kill_at = 0;
	return -1;
}

static void
reap(struct supervisor *sv, int shutting_down)
{
	pid_t	 pid;
	int	 status, i, quick;
	double	 now;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == sv->check_pid) {
			sv->check_pid = 0;
			sv->check_status = status;
			sv->check_done = 1;
			continue;
		}
		if (pid == sv->roll_old || drop_old(sv, pid)) {
			if (pid == sv->roll_old)
				sv->roll_old = 0;
			if (old_died(status))
				report_old_death(sv, pid, status);
			continue;
		}
		for (i = 0; i < sv->nslots; i++)
			if (sv->slots[i].pid == pid)
				break;
		if (i == sv->nslots)
			continue;
		sv->slots[i].pid = 0;
		if (sv->slots[i].leaving) {
			/* Retired by the dynamic pool: its slot is free. */
			sv->slots[i].leaving = 0;
			sv->slots[i].respawn_at = 0;
			continue;
		}
		if (shutting_down)
			continue;
		now = now_ms();
		if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_RECYCLED) {
			sv->slots[i].backoff = 0;
			sv->slots[i].respawn_at = now;
			continue;
		}
		if (WIFSIGNALED(status))
			keel_log_warnx("worker %ld killed by signal %d; "
			    "respawning", (long)pid, WTERMSIG(status));
		else
			keel_log_warnx("worker %ld exited with status %d; "
			    "respawning", (long)pid, WEXITSTATUS(status));
		report_death(sv, i, pid, status);
		/* Dying at once again and again backs off, up to a bound. */
		quick = now - sv->slots[i].started < QUICK_DEATH_MS;
		if (!quick)
			sv->slots[i].backoff = 0;
		else if (sv->slots[i].backoff == 0)
			sv->slots[i].backoff = BACKOFF_MIN_MS;
		else if ((sv->slots[i].backoff *= 2) > BACKOFF_MAX_MS)
			sv->slots[i].backoff = BACKOFF_MAX_MS;
		sv->slots[i].respawn_at = now + (quick ?
		    sv->slots[i].backoff : 0);
	}
}

/* Milliseconds until the next pending respawn, or -1. */
static int
respawn_due(struct supervisor *sv)
{
	double	 now = now_ms(), wait = -1, d;
	int	 i;

	for (i = 0; i < sv->nslots; i++) {
		if (sv->slots[i].pid != 0 || sv->slots[i].respawn_at == 0)
			continue;
		if ((d = sv->slots[i].respawn_at - now) <= 0)
			spawn(sv, i);
		else if (wait < 0 || d < wait)
			wait = d;
	}
	return wait < 0 ? -1 : (int)wait + 1;
}

/*
 * Retires the worker in slot i: SIGTERM reaches an idle worker in ppoll()
 * at once; one that has just accepted a connection serves it first (its
 * SIGTERM stays blocked until then), so no request is lost.
 */
static void
retire(struct supervisor *sv, int i)
{
	sv->slots[i].leaving = 1;
	sv->slots[i].kill_at = now_ms() + sv->cfg->shutdown_timeout * 1000.0;
	keel_log_debug("pool: retiring idle worker %ld",
	    (long)sv->slots[i].pid);
	kill(sv->slots[i].pid, SIGTERM);
}

/*
 * One look at the scoreboard (KEEL_PM=dynamic): counts the idle workers,
 * asks keel_pm_decide() and forks or retires.  A slot waiting for a
 * respawn counts as a starting worker.  A retired worker still there
 * past KEEL_SHUTDOWN_TIMEOUT is killed.
 */
static void
pm_tick(struct supervisor *sv)
{
	struct keel_pm_view	 v;
	struct keel_pm_step	 st;
	const struct slot	*sl;
	double			 now = now_ms(), since, oldest = 0;
	int			 i, victim = -1, state;

	memset(&v, 0, sizeof(v));
	for (i = 0; i < sv->nslots; i++) {
		sl = &sv->slots[i];
		if (sl->pid == 0) {
			v.total += sl->respawn_at != 0;
			v.idle += sl->respawn_at != 0;
			continue;
		}
		v.total++;
		if (sl->leaving) {
			if (sl->kill_at != 0 && now >= sl->kill_at) {
				keel_log_warnx("pool: killing worker %ld, "
				    "still busy after %d s", (long)sl->pid,
				    sv->cfg->shutdown_timeout);
				report_kill(sv, i, sl->pid, "retire");
				kill(sl->pid, SIGKILL);
				sv->slots[i].kill_at = 0;
			}
			continue;
		}
		if (busy == NULL || __atomic_load_n(&busy[i].pid,
		    __ATOMIC_ACQUIRE) != sl->pid) {
			v.idle++;	/* starting */
			continue;
		}
		state = __atomic_load_n(&busy[i].state, __ATOMIC_ACQUIRE);
		if (state == BOARD_BUSY)
			continue;
		v.idle++;
		if (state != BOARD_IDLE)
			continue;
		/* The one idle the longest leaves first. */
		since = (double)__atomic_load_n(&busy[i].idle_since,
		    __ATOMIC_RELAXED);
		if (victim < 0 || since < oldest) {
			victim = i;
			oldest = since;
		}
	}
	st = keel_pm_decide(&sv->lim, &v, now, &sv->pm);
	if (v.idle == 0 && v.total >= sv->lim.max_children) {
		if (!sv->at_max)
			keel_log_warnx("pool: all %d workers busy "
			    "(KEEL_PM_MAX_CHILDREN)", v.total);
		sv->at_max = 1;
	} else
		sv->at_max = 0;
	for (; st.spawn > 0 && (i = free_slot(sv)) >= 0; st.spawn--)
		spawn(sv, i);
	if (st.retire && victim >= 0)
		retire(sv, victim);
}

/* Ms until the dynamic pool's next tick (taken when due), or -1. */
static int
pm_due(struct supervisor *sv)
{
	double	 now;

	/* A roll spawns what it needs: the pool waits for its end. */
	if (!sv->dynamic || sv->rolling)
		return -1;
	if ((now = now_ms()) >= sv->next_tick) {
		pm_tick(sv);
		sv->next_tick = now + PM_TICK_MS;
	}
	return (int)(sv->next_tick - now) + 1;
}

static int
live_workers(const struct supervisor *sv)
{
	int	 i, n = (sv->roll_old != 0) + sv->nold;

	for (i = 0; i < sv->nslots; i++)
		n += sv->slots[i].pid != 0;
	return n;
}

static void
signal_workers(const struct supervisor *sv, int sig)
{
	int	 i;

	for (i = 0; i < sv->nslots; i++)
		if (sv->slots[i].pid != 0)
			kill(sv->slots[i].pid, sig);
	if (sv->roll_old != 0)
		kill(sv->roll_old, sig);
	for (i = 0; i < sv->nold; i++)
		kill(sv->old[i], sig);
}

/* report_kill() for each worker signal_workers() reaches, at shutdown. */
static void
report_kills(const struct supervisor *sv)
{
	int	 i;

	for (i = 0; i < sv->nslots; i++)
		if (sv->slots[i].pid != 0)
			report_kill(sv, i, sv->slots[i].pid, "shutdown");
	if (sv->roll_old != 0)
		report_kill(sv, -1, sv->roll_old, "shutdown");
	for (i = 0; i < sv->nold; i++)
		report_kill(sv, -1, sv->old[i], "shutdown");
}

static void
shutdown_workers(struct supervisor *sv, const char *sock_path)
{
	struct pollfd	 pfd;
	double		 deadline;
	int		 left;

	keel_log_info("shutting down: %d workers finish their requests",
	    live_workers(sv));
	if (sv->check_pid != 0)
		kill(sv->check_pid, SIGKILL);	/* a reload's, now moot */
	/*
	 * Stop accepting.  The workers hold the socket open, so closing
	 * ours is not enough: shut it, and connect() is refused at once
	 * (lighttpd answers 503) instead of queueing for a worker that is
	 * leaving, while the connections already queued are still served.
	 */
	if (shutdown(sv->lfd, SHUT_RD) == -1)
		keel_log_warn("shutdown");
	close(sv->lfd);
	if (sock_path != NULL)
		(void)unlink(sock_path);
	signal_workers(sv, SIGTERM);
	deadline = now_ms() + sv->cfg->shutdown_timeout * 1000.0;
	pfd.fd = sigpipe_fd[0];
	pfd.events = POLLIN;
	while (live_workers(sv) > 0) {
		if ((left = (int)(deadline - now_ms())) <= 0) {
			keel_log_warnx("shutdown: killing %d workers after "
			    "%d s", live_workers(sv),
			    sv->cfg->shutdown_timeout);
			report_kills(sv);
			signal_workers(sv, SIGKILL);
			while (waitpid(-1, NULL, 0) > 0)
				continue;
			break;
		}
		(void)poll(&pfd, 1, left < 200 ? left : 200);
		drain_pipe();
		reap(sv, 1);
	}
	keel_log_info("stopped");
}

/*
 * argv[0] as an absolute path into self_path, found on PATH as execvp()
 * would when it has no slash; not resolved further, so a symlink a deploy
 * swaps is followed at the next SIGHUP (/proc/self/exe would name the
 * old file).  "" when it can't be found: SIGHUP then changes nothing.
 */
static void
resolve_self(const char *argv0)
{
	const char	*path, *end;
	char		 cwd[PATH_MAX], try[PATH_MAX];
	size_t		 n;

	self_path[0] = '\0';
	if (strchr(argv0, '/') != NULL) {
		if (argv0[0] == '/')
			n = (size_t)snprintf(self_path, sizeof(self_path),
			    "%s", argv0);
		else if (getcwd(cwd, sizeof(cwd)) != NULL)
			n = (size_t)snprintf(self_path, sizeof(self_path),
			    "%s/%s", cwd, argv0);
		else
			n = sizeof(self_path);
		if (n >= sizeof(self_path))
			self_path[0] = '\0';
		return;
	}
	if ((path = getenv("PATH")) == NULL)
		return;
	for (; *path != '\0'; path = *end != '\0' ? end + 1 : end) {
		if ((end = strchr(path, ':')) == NULL)
			end = path + strlen(path);
		n = (size_t)(end - path);
		if ((size_t)snprintf(try, sizeof(try), "%.*s/%s", (int)n, path,
		    argv0) >= sizeof(try))
			continue;
		if (try[0] == '/' && access(try, X_OK) == 0) {
			snprintf(self_path, sizeof(self_path), "%s", try);
			return;
		}
	}
}

/* "sh -c reexec_sh BINARY" and then args, NULL-terminated; free() it. */
static char **
reexec_argv(char *const args[])
{
	char	**av;
	size_t	 n = 0, i;

	while (args[n] != NULL)
		n++;
	av = keel_calloc(n + 5, sizeof(*av));
	av[0] = (char *)"sh";
	av[1] = (char *)"-c";
	av[2] = (char *)reexec_sh;
	av[3] = self_path;
	for (i = 0; i < n; i++)
		av[4 + i] = args[i];
	return av;
}

/*
 * Starts the binary at self_path with --check, through the env file as a
 * reload would; the supervisor goes on reaping, respawning and ticking
 * the pool while it runs (reap() takes its status, check_due() its
 * deadline).  False (logged) when it could not be started.
 */
static bool
check_start(struct supervisor *sv)
{
	static char	*check[] = { (char *)"--check", NULL };
	char		**av = reexec_argv(check);
	pid_t		 pid;

	keel_log_info("reload: checking %s", self_path);
	if ((pid = fork()) == 0) {
		close(sv->lfd);
		execv("/bin/sh", av);
		_exit(127);
	}
	free(av);
	if (pid == -1) {
		keel_log_warn("reload: fork");
		return false;
	}
	sv->check_pid = pid;
	sv->check_kill_at = now_ms() + CHECK_MS;
	sv->check_killed = 0;
	return true;
}

/*
 * Kills a check that has run CHECK_MS (reaped as any exit is); returns
 * the ms until that is due, or -1 when no check runs.
 */
static int
check_due(struct supervisor *sv)
{
	double	 left;

	if (sv->check_pid == 0 || sv->check_killed)
		return -1;
	if ((left = sv->check_kill_at - now_ms()) > 0)
		return (int)left + 1;
	keel_log_warnx("reload: %s --check took more than %d s: the "
	    "workers serve on", self_path, CHECK_MS / 1000);
	kill(sv->check_pid, SIGKILL);
	sv->check_killed = 1;
	return -1;
}

/* Whether the reaped check passed (exit 0); else logs why not. */
static bool
check_passed(const struct supervisor *sv)
{
	int	 status = sv->check_status;

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	if (sv->check_killed)
		return false;		/* check_due() said why */
	if (WIFSIGNALED(status))
		keel_log_warnx("reload: %s --check was killed by signal %d: "
		    "the workers serve on", self_path, WTERMSIG(status));
	else
		keel_log_warnx("reload: %s --check exited with status %d: "
		    "the workers serve on", self_path, WEXITSTATUS(status));
	return false;
}

/*
 * A passed check: execs the binary at self_path in place with the
 * listening socket and every worker's pid in HANDOFF_ENV; returns only
 * when that could not be done (logged), the workers untouched.
 * Signals that would end or reload us stay blocked across the exec and
 * are taken by the new image once it has its handlers.
 */
static void
reload(struct supervisor *sv)
{
	struct keel_buf	 hand = { NULL, 0, 0 };
	sigset_t	 block, old;
	char		**av;
	int		 i, ok;

	keel_buf_printf(&hand, "%d:", sv->lfd);
	for (i = 0; i < sv->nslots; i++)
		if (sv->slots[i].pid != 0)
			keel_buf_printf(&hand, "%ld,", (long)sv->slots[i].pid);
	for (i = 0; i < sv->nold; i++)
		keel_buf_printf(&hand, "%ld,", (long)sv->old[i]);
	if (sv->roll_old != 0)
		keel_buf_printf(&hand, "%ld,", (long)sv->roll_old);
	ok = setenv(HANDOFF_ENV, hand.data, 1) == 0;
	keel_buf_free(&hand);
	if (!ok) {
		keel_log_warn("reload: setenv");
		return;
	}
	av = reexec_argv(sv->argv + 1);
	keel_log_info("reload: executing %s", self_path);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	execv("/bin/sh", av);
	keel_log_warn("reload: execv /bin/sh");
	sigprocmask(SIG_SETMASK, &old, NULL);
	(void)unsetenv(HANDOFF_ENV);
	free(av);
}

/*
 * A reload's new image: the listening socket and the workers of the image
 * before, from HANDOFF_ENV (then unset, so no worker sees it); they are
 * rolled.  False when there is none.
 */
static bool
adopt(struct supervisor *sv)
{
	const char	*v;
	char		*end;
	long		 n;
	size_t		 cap = 0;

	if ((v = getenv(HANDOFF_ENV)) == NULL)
		return false;
	n = strtol(v, &end, 10);
	if (end == v || *end != ':' || n < 0 || n > INT_MAX ||
	    !listening((int)n))
		keel_log_fatalx("%s: no listening socket in \"%s\"",
		    HANDOFF_ENV, v);
	sv->lfd = (int)n;
	for (v = end + 1; *v != '\0'; v = end + 1) {
		n = strtol(v, &end, 10);
		if (end == v || *end != ',' || n <= 0)
			keel_log_fatalx("%s: bad pid list", HANDOFF_ENV);
		if ((size_t)sv->nold == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			sv->old = keel_realloc(sv->old, cap *
			    sizeof(*sv->old));
		}
		sv->old[sv->nold++] = (pid_t)n;
	}
	(void)unsetenv(HANDOFF_ENV);
	return true;
}

static void
usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--socket PATH] [--routes] [--config] "
	    "[--check]\n"
	    "  --socket PATH  bind a unix socket instead of taking fd 0\n"
	    "  --routes       print the route table as JSON lines and exit\n"
	    "  --config       print the environment variables and exit\n"
	    "  --check        load the configuration, exit 0 if it is valid\n",
	    prog);
}

/* Reads and checks the configuration (exits 1 naming a bad value). */
static void
load_config(const struct keel_app *app, struct keel_config *cfg)
{
	char	 err[256];

	keel_log_init(app->name, KEEL_LOG_INFO);
	/* Before anything holds a secret; the workers inherit it. */
	keel_config_core_limit();
	if (!keel_config_load(cfg, err, sizeof(err)))
		keel_log_fatalx("configuration: %s", err);
	keel_log_init(app->name, (enum keel_log_level)cfg->log_level);
	if (!keel_report_init(cfg, app->name, err, sizeof(err)))
		keel_log_fatalx("configuration: %s", err);
	if (sodium_init() < 0)
		keel_log_fatalx("libsodium failed to initialise");
}

/*
 * The names the env file sets now, into ENV_SET_ENV, for the next
 * reload to unset before it sources the file again.  A file that can't
 * be read sets nothing here; the reload will say why.
 */
static void
note_env_file(const struct keel_config *cfg)
{
	struct keel_buf	 file = { NULL, 0, 0 };
	char		*names;

	if (cfg->env_file == NULL || cfg->env_file[0] == '\0')
		return;
	if (keel_buf_read_file(&file, cfg->env_file) && file.data != NULL) {
		names = keel_config_env_names(file.data);
		if (setenv(ENV_SET_ENV, names, 1) == -1)
			keel_log_warn("setenv %s", ENV_SET_ENV);
		free(names);
	}
	keel_buf_free(&file);
}

/*
 * The supervisor's state before its first worker: slots, scoreboard,
 * metrics, the listening socket (handed over by a reload, bound, or fd 0)
 * and the signal handlers; then the first workers, or a roll of the ones
 * a reload handed over.
 */
static void
start(struct supervisor *sv, const struct keel_config *cfg,
    const char *sock_path)
{
	sigset_t	 unblock;
	char		 err[256];
	int		 i, nstart;

	/* An app on its own loop holds streams: its pool stays static. */
	sv->dynamic = cfg->pm_dynamic && sv->app->loop == NULL;
	sv->nslots = sv->dynamic ? cfg->pm_max_children : cfg->workers;
	/* Before fork: the workers share the mapping, a slot each. */
	if (cfg->metrics && *cfg->metrics_dir != '\0' &&
	    !keel_metrics_open(cfg->metrics_dir,
	    sv->app->name, sv->nslots, err, sizeof(err)))
		keel_log_warnx("metrics off: %s", err);
	sv->pid = getpid();
	sv->cfg = cfg;
	if (!adopt(sv))
		sv->lfd = sock_path != NULL ? bind_socket(sock_path) :
		    inherited_socket();
	deepen_queue(sv->lfd);
	if (fcntl(sv->lfd, F_SETFL, O_NONBLOCK) == -1)
		keel_log_fatal("fcntl");
	sv->lim.max_children = cfg->pm_max_children;
	sv->lim.min_spare = cfg->pm_min_spare;
	sv->lim.max_spare = cfg->pm_max_spare;
	sv->lim.idle_timeout = cfg->pm_idle_timeout * 1000.0;
	sv->slots = keel_calloc((size_t)sv->nslots, sizeof(*sv->slots));
	if ((busy = mmap(NULL, (size_t)sv->nslots * sizeof(*busy),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)) ==
	    MAP_FAILED)
		busy = NULL;

	make_sigpipe();
	set_handler(SIGTERM, on_signal);
	set_handler(SIGINT, on_signal);
	set_handler(SIGHUP, on_signal);
	set_handler(SIGCHLD, on_signal);
	signal(SIGPIPE, SIG_IGN);
	/* A reload blocked them across exec: what came meanwhile is taken. */
	sigemptyset(&unblock);
	sigaddset(&unblock, SIGTERM);
	sigaddset(&unblock, SIGINT);
	sigaddset(&unblock, SIGHUP);
	sigprocmask(SIG_UNBLOCK, &unblock, NULL);

	nstart = sv->dynamic ? cfg->pm_start : sv->nslots;
	if (sv->old != NULL) {
		/* Workers that left while we were exec'ing are reaped. */
		got_chld = 1;
		sv->rolling = 1;
		sv->roll_target = nstart;
		if (sv->dynamic && sv->nold > nstart)
			sv->roll_target = sv->nold < sv->nslots ? sv->nold :
			    sv->nslots;
		keel_log_info("reload: replacing %d workers by %d, one by one",
		    sv->nold, sv->roll_target);
		roll_step(sv);
		return;
	}
	if (sv->dynamic)
		keel_log_info("starting %d workers on %s (dynamic: %d to %d "
		    "idle, at most %d)", nstart, sock_path != NULL ?
		    sock_path : "fd 0", cfg->pm_min_spare, cfg->pm_max_spare,
		    cfg->pm_max_children);
	else
		keel_log_info("starting %d workers on %s", nstart,
		    sock_path != NULL ? sock_path : "fd 0");
	for (i = 0; i < nstart; i++)
		spawn(sv, i);
}

/*
 * SIGHUP: checks the binary at self_path (a reload follows if it
 * passes); during a check, checks again once it is over, so the newest
 * binary and file are the ones that run.
 */
static void
hup(struct supervisor *sv)
{
	if (self_path[0] == '\0') {
		keel_log_warnx("reload: my binary's path is unknown: the "
		    "workers serve on");
		return;
	}
	if (sv->check_pid != 0) {
		sv->check_again = 1;
		return;
	}
	(void)check_start(sv);
}

/* --socket's path, for keel_serve_socket(); NULL: fd 0. */
static const char	*serve_socket;

const char *
keel_serve_socket(void)
{
	return serve_socket;
}

int
keel_serve(int argc, char *argv[], const struct keel_app *app)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "routes", no_argument, NULL, 'r' },
		{ "config", no_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static struct keel_config cfg;
	struct supervisor	 sv;
	struct pollfd		 pfd;
	const char		*sock_path = NULL;
	int			 ch, wait, roll, check = 0;

	resolve_self(argv[0]);
	while ((ch = getopt_long(argc, argv, "s:rckh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 's':
			sock_path = serve_socket = optarg;
			break;
		case 'r':
			print_routes(app);
			return 0;
		case 'c':
			keel_config_print_table();
			return 0;
		case 'k':
			check = 1;
			break;
		default:
			usage(argv[0]);
			return ch == 'h' ? 0 : 2;
		}
	}
	load_config(app, &cfg);
	if (check) {
		keel_log_info("check: %s, configuration valid", self_path);
		keel_config_free(&cfg);
		return 0;
	}
	note_env_file(&cfg);
	memset(&sv, 0, sizeof(sv));
	sv.app = app;
	sv.argv = argv;
	start(&sv, &cfg, sock_path);

	pfd.fd = sigpipe_fd[0];
	pfd.events = POLLIN;
	while (!got_term) {
		wait = respawn_due(&sv);
		if ((roll = roll_deadline(&sv)) >= 0 && (wait < 0 ||
		    roll < wait))
			wait = roll;
		if ((roll = pm_due(&sv)) >= 0 && (wait < 0 || roll < wait))
			wait = roll;
		if ((roll = check_due(&sv)) >= 0 && (wait < 0 || roll < wait))
			wait = roll;
		if (poll(&pfd, 1, got_chld ? 0 : wait) == -1 &&
		    errno != EINTR)
			keel_log_warn("poll");
		drain_pipe();
		if (got_chld) {
			got_chld = 0;
			reap(&sv, 0);
			roll_step(&sv);
		}
		if (got_hup) {
			got_hup = 0;
			hup(&sv);
		}
		if (sv.check_done) {
			sv.check_done = 0;
			if (sv.check_again) {
				/* A newer binary or file: check that one. */
				sv.check_again = 0;
				(void)check_start(&sv);
			} else if (check_passed(&sv))
				reload(&sv);
		}
	}
	shutdown_workers(&sv, sock_path);
	free(sv.slots);
	free(sv.old);
	keel_config_free(&cfg);
	return 0;
}
