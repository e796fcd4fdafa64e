# SPDX-License-Identifier: ISC
"""stack.py -- a throwaway keel stack for the end-to-end tests.

Starts the real stack (scripts/stack: PostgreSQL primary + streaming replica,
Redis, memcached, the apps, lighttpd) on free loopback ports in a fresh temp
directory, with the test-only apps of tests/e2e/apps.conf added, and tears it
all down again.  The tests talk to it over HTTP and, for setup and checks,
through psql.  Everything waits on sockets and ports (scripts/stack does),
never on fixed sleeps.
"""

import atexit
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACK_SCRIPT = os.path.join(ROOT, "scripts", "stack")
EXTRA_APPS = os.path.join(ROOT, "tests", "e2e", "apps.conf")

# Components stop_component()/start_component() know besides the apps.
SERVICES = ("primary", "replica", "redis", "memcached", "smtp", "sentry",
            "cron", "prometheus", "lighttpd")


class StackError(RuntimeError):
    pass


def free_port():
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct free ports: hold every socket open until all are picked,
    so the kernel cannot hand out the same port twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


APPS_CONF = os.path.join(ROOT, "fcgi-apps", "apps.conf")


def apps_conf(path=APPS_CONF):
    """An apps.conf's lines as their fields (name, socket, binary, ...),
    blanks and comments left out."""
    with open(path) as f:
        return [w for w in (line.split() for line in f)
                if w and not w[0].startswith("#")]


def app_names(path=APPS_CONF):
    """The apps an apps.conf names, each once, in its order."""
    names = []
    for w in apps_conf(path):
        if w[0] not in names:
            names.append(w[0])
    return names


def parse_env_file(path):
    """The `export NAME=value` lines of the stack's env file as a dict."""
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):]
            name, sep, value = line.partition("=")
            if sep:
                env[name] = " ".join(shlex.split(value)) if value else ""
    return env


def psql_env(url, env=None):
    """(url, env) for running psql on url without its password on the
    command line, which ps shows to every local user: url without the
    password, and env (os.environ by default) plus PGPASSWORD."""
    parts = urllib.parse.urlsplit(url)
    env = dict(os.environ if env is None else env)
    if parts.password is None:
        return url, env
    env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        netloc = parts.netloc.partition(":")[0] + "@" + netloc
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), env


class Stack:
    """One running stack.  Use start() then stop() (stop is idempotent and
    also registered with atexit, so an interrupted run cleans up).  env:
    variables of this stack only, for its apps and programs."""

    def __init__(self, build_dir=None, extra_apps=EXTRA_APPS, demo=False,
                 keep=False, cron=False, wrapper=(), env=None):
        self.build_dir = os.path.abspath(
            build_dir or os.environ.get("KEEL_BUILD_DIR")
            or os.path.join(ROOT, "_build-test"))
        self.extra_apps = extra_apps
        self.demo = demo
        self.keep = keep or os.environ.get("KEEL_KEEP_STACK") == "1"
        self.cron = cron            # start the stack's cron with it
        self.wrapper = list(wrapper)    # runs scripts/stack: setpriv ...
        # Variables of this stack's own (KEEL_DB_STATEMENT_TIMEOUT=...):
        # the apps get them from scripts/stack, the programs from env.
        self.extra_env = dict(env or {})
        self.dir = None
        self.ports = {}
        self.env = {}
        self.base_url = None
        self._started = False

    # ---------------------------------------------------------------- life

    def start(self):
        """Start the stack; raises StackError with scripts/stack's output
        when it fails (after stopping whatever did start)."""
        # Under /tmp and 0755, so that the postgres user reaches it.
        self.dir = tempfile.mkdtemp(prefix="keel-e2e-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        http, pg, pg_replica, redis, memcached, smtp, sentry = free_ports(7)
        self.ports = {"http": http, "pg": pg, "pg_replica": pg_replica,
                      "redis": redis, "memcached": memcached, "smtp": smtp,
                      "sentry": sentry}
        self._started = True
        atexit.register(self.stop)
        self._run("start", timeout=300)
        self.env = parse_env_file(os.path.join(self.dir, "env"))
        self.env.update(self.extra_env)
        self.base_url = "http://127.0.0.1:%d" % http
        return self

    def stop(self):
        """Stop every process of the stack and remove its directory."""
        if not self._started:
            return
        self._started = False
        try:
            self._run("stop", timeout=180, check=False)
        finally:
            if not self.keep and self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)
                # PostgreSQL's data may live in /var/tmp (scripts/stack
                # pg_prepare_dir); the stack dir's pg symlink points to it.
                pg = os.path.join(self.dir, "pg")
                if os.path.islink(pg):
                    shutil.rmtree(os.path.realpath(pg), ignore_errors=True)

    def _stack_env(self):
        e = dict(os.environ)
        e.update({
            "KEEL_STACK_DIR": self.dir,
            "KEEL_BUILD_DIR": self.build_dir,
            "KEEL_HTTP_PORT": str(self.ports["http"]),
            "KEEL_PG_PORT": str(self.ports["pg"]),
            "KEEL_PG_REPLICA_PORT": str(self.ports["pg_replica"]),
            "KEEL_REDIS_PORT": str(self.ports["redis"]),
            "KEEL_MEMCACHED_PORT": str(self.ports["memcached"]),
            "KEEL_SMTP_PORT": str(self.ports["smtp"]),
            "KEEL_SENTRY_PORT": str(self.ports["sentry"]),
            # Tests run the cron programs themselves; the ones that
            # check cron start the "cron" component, or ask for it.
            "KEEL_CRON": "1" if self.cron else "0",
            "KEEL_DEMO": "1" if self.demo else "0",
            "KEEL_EXTRA_APPS": self.extra_apps or "",
        })
        # API.md's limits would trip suites that send hundreds of
        # requests; test_limits.py runs its own app with low ones.
        for name in ("API", "AUTH", "WRITE", "READ"):
            e.setdefault("KEEL_RATELIMIT_" + name, "1000000/900")
        # So would the reset cap, in suites that count one mail per
        # reset; test_hardening_links.py runs its drainer with the cap.
        e.setdefault("KEEL_RESET_MAIL_MAX", "1000000/900")
        # A hung app is given up after this long (504); short enough for
        # test_serve's check, long enough for every slow request we send.
        e.setdefault("KEEL_FCGI_TIMEOUT", "12")
        # Streams' heartbeats (and lighttpd's read timeout, 3 of them)
        # come quickly enough for a test to see them.
        e.setdefault("KEEL_STREAM_HEARTBEAT", "2")
        e.update(self.extra_env)
        return e

    def _run(self, *args, timeout=120, check=True):
        p = subprocess.run(self.wrapper + [STACK_SCRIPT] + list(args),
                           env=self._stack_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            if args[0] == "start" and len(args) == 1:
                self.stop()
            raise StackError("scripts/stack %s failed (exit %d):\n%s"
                             % (" ".join(args), p.returncode, p.stdout))
        return p.stdout

    # ------------------------------------------------------------- helpers

    def url(self, path):
        return self.base_url + path

    def path(self, *parts):
        """A path inside the stack dir: path("log", "cars.log")."""
        return os.path.join(self.dir, *parts)

    def status(self):
        return self._run("status", check=False)

    def app_pid(self, name):
        """The supervisor pid of app `name` (None when not running)."""
        try:
            with open(self.path("run", name + ".pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def worker_pids(self, name):
        """Pids of the supervisor's live child processes (its workers)."""
        pid = self.app_pid(name)
        return [] if pid is None else children(pid)

    def psql(self, sql, replica=False, check=True):
        """Run sql on the primary (or replica) as the app's role, never
        through a PgBouncer (KEEL_PGBOUNCER=1); returns psql's unaligned,
        tuples-only output (fields separated by |)."""
        name = "DATABASE_READ_REPLICA_URL" if replica else "DATABASE_URL"
        direct = "KEEL_STACK_PG_REPLICA_URL" if replica else "KEEL_STACK_PG_URL"
        url, env = psql_env(self.env.get(direct) or self.env[name])
        p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            "-d", url, "-c", sql], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        if check and p.returncode != 0:
            raise StackError("psql failed: %s" % p.stderr.strip())
        return p.stdout.rstrip("\n")

    def stop_component(self, name):
        """Stop one component: primary, replica, redis, memcached, lighttpd
        or an app by name (SIGTERM, as an operator would)."""
        self._run("stop", name, timeout=120)

    def start_component(self, name):
        """Start a stopped component again and wait until it is ready."""
        self._run("start", name, timeout=120)

    def restart_component(self, name, env):
        """Stop a component and start it again with env (name: value)
        over this process's environment for its start, which
        scripts/stack copies into the app's; the environment is put back
        afterwards, and so is what the stack remembers (its settings
        file records the variables a start was given, for every later
        start): env is for this start only."""
        self.stop_component(name)
        saved = {k: os.environ.get(k) for k in env}
        settings = self.path("settings")
        with open(settings) as f:
            remembered = f.read()
        os.environ.update(env)
        try:
            self.start_component(name)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            fd = os.open(settings + ".tmp",
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(remembered)
            os.replace(settings + ".tmp", settings)

    def log(self, name):
        """The text of log/<name>.log (an app's stderr, access, ...)."""
        try:
            with open(self.path("log", name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


    # ---------------------------------------------------------------- mail

    def mail(self):
        """Every message the stack's SMTP server stored, oldest first, as
        email.message.EmailMessage objects (X-Sink-Received holds when it
        arrived, epoch seconds)."""
        import email
        import email.policy
        new = self.path("mail", "new")
        msgs = []
        try:
            names = os.listdir(new)
        except OSError:
            return []
        for n in names:
            try:
                with open(os.path.join(new, n), "rb") as f:
                    msgs.append(email.message_from_binary_file(
                        f, policy=email.policy.default))
            except OSError:
                pass
        msgs.sort(key=lambda m: float(m.get("X-Sink-Received", "0")))
        return msgs

    def clear_mail(self):
        """Forget every stored message."""
        new = self.path("mail", "new")
        for n in os.listdir(new) if os.path.isdir(new) else []:
            os.unlink(os.path.join(new, n))

    def set_smtp_mode(self, mode):
        """How the SMTP server answers from now on: "accept", "refuse"
        (451), "reject" (550) or "hang", optionally "accept 0.3" (a delay
        in seconds); see scripts/smtp_sink.py."""
        with open(self.path("smtp-mode"), "w") as f:
            f.write(mode + "\n")

    # ------------------------------------------------------- error reports

    def sentry_events(self):
        """Every event and transaction the stack's Sentry receiver stored
        (scripts/sentry_sink.py), as {event_id: (event dict, raw envelope
        bytes)}."""
        import json
        d, out = self.path("sentry"), {}
        for n in os.listdir(d) if os.path.isdir(d) else []:
            if not n.endswith(".json"):
                continue
            eid = n[:-len(".json")]
            try:
                with open(os.path.join(d, n), "rb") as f:
                    ev = json.load(f)
                with open(os.path.join(d, eid + ".envelope"), "rb") as f:
                    out[eid] = (ev, f.read())
            except (OSError, ValueError):
                pass
        return out

    def set_sentry_mode(self, mode):
        """How the Sentry receiver answers from now on: "accept",
        "ratelimit [SECONDS]" (429), "error" (503) or "hang"."""
        with open(self.path("sentry-mode"), "w") as f:
            f.write(mode + "\n")

    def spooled(self):
        """Names of the error reports waiting in the spool (new/)."""
        d = self.path("report", "new")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def _program_path(self, name):
        """cron/NAME of the build, or tests/bench/NAME (test-only)."""
        p = os.path.join(self.build_dir, "cron", name)
        if not os.path.exists(p):
            p = os.path.join(self.build_dir, "tests", "bench", name)
        return p

    def program(self, name, *args, env=None, timeout=120, **kw):
        """Run a cron program (cron/keel-...) of the build with the
        stack's environment (plus env) and wait for it; returns the
        CompletedProcess (stdout and stderr as text)."""
        e = dict(os.environ)
        e.update(self.env)
        e.update(env or {})
        return subprocess.run([self._program_path(name)]
                              + [str(a) for a in args], env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout, **kw)

    def spawn(self, name, *args, env=None):
        """Start a cron program without waiting (a Popen; the caller stops
        it by its pid)."""
        e = dict(os.environ)
        e.update(self.env)
        e.update(env or {})
        return subprocess.Popen([self._program_path(name)]
                                + [str(a) for a in args], env=e,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def alive(pid):
    """pid runs and is not a zombie (this container's init reaps late)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children(pid):
    """Live child pids of pid, from /proc (every thread's children)."""
    kids = set()
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                    kids.update(int(k) for k in f.read().split())
            except OSError:
                pass
    except OSError:
        return []
    return sorted(k for k in kids if alive(k))
