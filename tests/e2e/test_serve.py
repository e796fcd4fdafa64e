# SPDX-License-Identifier: ISC
"""test_serve.py -- the prefork process manager (lib/serve.c, DESIGN.md
"Processes") against real processes.

Tests that may break an app use their own supervisor of keel-testapp on a
socket in a temp dir and talk FastCGI to it directly (fcgi_get below); the
SIGTERM test goes through lighttpd to the stack's testapp, to see lighttpd's
503 afterwards, and starts it again when done.  Every wait is bounded in time
and every process a test starts is stopped by its pid.
"""

import concurrent.futures
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
import requests

import apicheck
from helpers import BaseUrlSession, request, wait_until
from stack import alive, children

# -------------------------------------------------------------- FastCGI

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS = 1, 3, 4
FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 5, 6, 7
FCGI_RESPONDER = 1


def _record(rtype, content, req_id=1):
    """One FastCGI record (spec §3.3), padded to 8 bytes."""
    pad = -len(content) % 8
    return (struct.pack(">BBHHBx", 1, rtype, req_id, len(content), pad)
            + content + b"\0" * pad)


def _nv_len(n):
    return struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 1 << 31)


def _params(params):
    body = b""
    for k, v in params.items():
        k, v = k.encode(), v.encode()
        body += _nv_len(len(k)) + _nv_len(len(v)) + k + v
    return body


def fcgi_get(sock_path, uri, timeout=10, on_connect=None):
    """GET uri from the FastCGI responder on unix socket sock_path; returns
    (status, headers dict with lower-case names, body bytes).  on_connect()
    runs between connecting and sending the request."""
    return fcgi_request(sock_path, "GET", uri, timeout=timeout,
                        on_connect=on_connect)


def fcgi_request(sock_path, method, uri, headers=None, body=b"", timeout=10,
                 on_connect=None, remote_addr="127.0.0.1"):
    """Like fcgi_get, for any method: headers (name: value) go as the
    HTTP_* parameters a web server would pass, body as the request's
    stdin, remote_addr as the peer's address."""
    path, _, query = uri.partition("?")
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": method, "REQUEST_URI": uri, "SCRIPT_NAME": path,
        "QUERY_STRING": query, "REMOTE_ADDR": remote_addr,
        "SERVER_NAME": "localhost", "SERVER_PORT": "80",
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            params[key] = value
        else:
            params["HTTP_" + key] = value
    if body:
        params["CONTENT_LENGTH"] = str(len(body))
    stdin = b"".join(_record(FCGI_STDIN, body[i:i + 65535])
                     for i in range(0, len(body), 65535))
    out = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        if on_connect is not None:
            on_connect()
        s.sendall(_record(FCGI_BEGIN_REQUEST,
                          struct.pack(">HB5x", FCGI_RESPONDER, 0))
                  + _record(FCGI_PARAMS, _params(params))
                  + _record(FCGI_PARAMS, b"") + stdin
                  + _record(FCGI_STDIN, b""))
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(buf) >= 8:
                _, rtype, _, clen, pad = struct.unpack(">BBHHBx", buf[:8])
                if len(buf) >= 8 + clen + pad:
                    content = buf[8:8 + clen]
                    buf = buf[8 + clen + pad:]
                    if rtype == FCGI_STDOUT:
                        out += content
                    elif rtype == FCGI_END_REQUEST:
                        break
                    continue
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("FastCGI connection closed before "
                                      "END_REQUEST")
            buf += chunk
        else:
            raise TimeoutError("no END_REQUEST within %s s" % timeout)
    head, _, body = out.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(headers.get("status", "200").split()[0])
    # Straight from the app, not through lighttpd: checked all the same.
    apicheck.check(method, uri, status, headers, body)
    return status, headers, body


def fcgi_pid(sock_path, uri="/_test/pid"):
    """The pid of the worker that answered uri (which must answer 200)."""
    status, _, body = fcgi_get(sock_path, uri)
    assert status == 200, body
    return json.loads(body)["pid"]


# ------------------------------------------------------------ processes

def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _testapp_bin(stack):
    return os.path.join(stack.build_dir, "tests", "e2e", "keel-testapp")


def app_env(stack, **overrides):
    """The stack's app environment (as scripts/stack gives it) plus
    overrides; the sanitizer options of scripts/test unless set."""
    env = dict(os.environ)
    env.update(stack.env)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class OwnApp:
    """A keel-testapp supervisor of our own on a socket in a temp dir."""

    def __init__(self, stack, tmp, argv=None, **env):
        self.sock = os.path.join(tmp, "app.sock")
        self.log_path = os.path.join(tmp, "app.log")
        self.log = open(self.log_path, "ab")
        # argv(sock) for another way to start it; default --socket.
        argv = argv(self.sock) if argv else \
            [_testapp_bin(stack), "--socket", self.sock]
        self.proc = subprocess.Popen(argv, env=app_env(stack, **env),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        self.pid = self.proc.pid
        wait_until(lambda: os.path.exists(self.sock)
                   or self.proc.poll() is not None, 15, "the app socket",
                   step=0.02)
        assert self.proc.poll() is None, self.text()
        wait_until(lambda: len(self.workers()) >= 1, 15, "the workers",
                   step=0.02)

    def workers(self):
        return children(self.pid)

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        kids = self.workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for k in kids:
            if alive(k):
                os.kill(k, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def own_app(stack):
    """own_app(**env) starts a supervisor; all are stopped afterwards and
    their logs checked for sanitizer reports."""
    apps = []
    tmp = tempfile.mkdtemp(prefix="keel-serve-", dir="/tmp")

    def start(argv=None, **env):
        d = tempfile.mkdtemp(dir=tmp)
        app = OwnApp(stack, d, argv=argv, **env)
        apps.append(app)
        return app
    yield start
    for app in apps:
        app.stop()
    for app in apps:
        assert_no_sanitizer_report(app.text())
    shutil.rmtree(tmp, ignore_errors=True)


def assert_no_sanitizer_report(text):
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert marker not in text, text[-4000:]


# ----------------------------------------------------------------- load

class Load:
    """n client threads GETting url through lighttpd until stop(); or,
    given get, each calling get() (None for a 200, else what failed)
    every pause seconds."""

    def __init__(self, stack, path, n=4, get=None, pause=0.0):
        self.url = stack.url(path) if path is not None else None
        self.get = get
        self.pause = pause
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.pool = concurrent.futures.ThreadPoolExecutor(n)
        self.futures = [self.pool.submit(self._run) for _ in range(n)]

    def _get(self, s):
        if self.get is not None:
            return self.get()
        try:
            r = s.get(self.url, timeout=15)
        except requests.RequestException as e:
            return repr(e)
        return None if r.status_code == 200 else \
            "%d %s" % (r.status_code, r.text[:200])

    def _run(self):
        # Bounded even if stop() is never called.
        deadline = time.monotonic() + 60
        with BaseUrlSession("") as s:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                bad = self._get(s)
                with self.lock:
                    if bad is None:
                        self.ok += 1
                    else:
                        self.failures.append(bad)
                if self.pause:
                    time.sleep(self.pause)

    def stop(self):
        self.stopping.set()
        for f in self.futures:
            f.result(timeout=30)
        self.pool.shutdown()
        return self.ok, self.failures


def wait_workers(stack, name, n, timeout=10, exclude=()):
    """Wait until app name has n workers, none of them in exclude."""
    return wait_until(
        lambda: (lambda w: w if len(w) == n and not set(w) & set(exclude)
                 else None)(stack.worker_pids(name)), timeout,
        "%d workers of %s" % (n, name), step=0.02)


def nworkers(stack):
    return int(stack.env.get("KEEL_WORKERS", "2"))


# ---------------------------------------------------------------- tests

def test_serve_kill_worker_under_load_respawns(stack):
    n = nworkers(stack)
    before = wait_workers(stack, "testapp", n)
    load = Load(stack, "/_test/sleep?ms=50")
    try:
        # The clients' first response (the OpenAPI check loads its
        # document then) may take seconds on a busy machine.
        wait_until(lambda: load.ok >= 4, 20, "the load to start", step=0.02)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        after = wait_until(
            lambda: (lambda w: w if len(w) == n and victim not in w and
                     set(w) - set(before) else None)(
                         stack.worker_pids("testapp")), 10,
            "a new worker replacing %d" % victim, step=0.02)
        time.sleep(1.0)
    finally:
        ok, failures = load.stop()
    assert len(after) == n
    assert ok > 20
    assert len(failures) <= 1, failures
    assert "killed by signal 9" in stack.log("testapp")


def test_serve_sighup_rolls_every_worker_without_failures(stack):
    n = nworkers(stack)
    sup = stack.app_pid("testapp")
    before = wait_workers(stack, "testapp", n)
    load = Load(stack, "/_test/sleep?ms=50")
    try:
        wait_until(lambda: load.ok >= 4, 20, "the load to start", step=0.02)
        os.kill(sup, signal.SIGHUP)
        after = wait_workers(stack, "testapp", n, timeout=15, exclude=before)
        time.sleep(0.5)
    finally:
        ok, failures = load.stop()
    assert failures == []
    assert ok > 20
    assert not set(after) & set(before)
    assert stack.app_pid("testapp") == sup
    assert "reload: all %d workers replaced" % n in stack.log("testapp")


def test_serve_sighup_roll_finishes_under_overload(own_app):
    """With more clients than workers the queue never empties; a worker
    the roll retires still leaves after the request it is serving."""
    app = own_app(KEEL_WORKERS=1)
    old = app.workers()[0]
    stopping = threading.Event()
    results = []

    def client():
        deadline = time.monotonic() + 20
        while not stopping.is_set() and time.monotonic() < deadline:
            try:
                results.append(fcgi_get(app.sock, "/_test/sleep?ms=100")[0])
            except OSError as e:
                results.append(repr(e))
    pool = concurrent.futures.ThreadPoolExecutor(6)
    futures = [pool.submit(client) for _ in range(6)]
    try:
        time.sleep(0.5)
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: not alive(old), 5, "the old worker to leave",
                   step=0.02)
        time.sleep(0.3)
    finally:
        stopping.set()
        for f in futures:
            f.result(timeout=30)
        pool.shutdown()
    assert len(results) > 5
    assert all(r == 200 for r in results), results


def test_serve_max_requests_recycles_workers(own_app):
    app = own_app(KEEL_WORKERS=1, KEEL_MAX_REQUESTS=5)
    pids = [fcgi_pid(app.sock) for _ in range(20)]
    assert len(set(pids)) >= 4, pids
    # Recycling is not a failure: no backoff, no warning.
    assert "respawning" not in app.text()


@pytest.mark.parametrize("mode", ["socket", "fd0"])
def test_serve_listen_queue_holds_a_burst(stack, own_app, mode):
    """With every worker busy, a burst of connections waits in the
    socket's queue, as deep as the kernel allows, not 1024: past the
    queue a connect is refused, which lighttpd answers with a 500.  A
    socket handed over (spawn-fcgi's fd 0, listening with 1024) is
    deepened too."""
    burst = 1100
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if somaxconn < burst or hard < burst + 100:
        pytest.skip("the kernel's queue (%d) or fd limit (%d) is below "
                    "the burst" % (somaxconn, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, burst + 100),
                                                hard))
    argv = None
    if mode == "fd0":
        argv = lambda sock: ["spawn-fcgi", "-n", "-b", "1024", "-s", sock,
                             "--", _testapp_bin(stack)]
    app = own_app(argv=argv, KEEL_WORKERS=1)
    busy = threading.Thread(target=fcgi_get,
                            args=(app.sock, "/_test/sleep?ms=3000"))
    busy.start()
    socks, queued = [], 0
    try:
        time.sleep(0.5)     # the one worker took the sleep
        for _ in range(burst):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            socks.append(s)
            try:
                s.connect(app.sock)
            except BlockingIOError:
                break       # the queue is full: refused
            queued += 1
    finally:
        for s in socks:
            s.close()
        busy.join(15)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert queued == burst, queued


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_serve_signal_keeps_accepted_connection(own_app, sig):
    """A worker that has accepted a connection whose request is still on
    its way (lighttpd connects, then writes) serves it through SIGHUP's
    roll and SIGTERM's shutdown alike."""
    app = own_app(KEEL_WORKERS=1)
    old = app.workers()

    def signal_while_waiting():
        time.sleep(0.3)  # the idle worker accepts at once
        os.kill(app.pid, sig)
        time.sleep(0.3)
    status, _, body = fcgi_get(app.sock, "/_test/pid",
                               on_connect=signal_while_waiting)
    assert status == 200, body
    assert json.loads(body)["pid"] in old


@pytest.mark.parametrize("mode", ["socket", "fd0"])
def test_serve_sigterm_serves_backlog_refuses_new(stack, own_app, mode):
    """On SIGTERM a request that already waits in the socket's backlog is
    served, and a new connection is refused at once (lighttpd answers 503
    and may retry elsewhere) rather than queued and then dropped."""
    argv = None
    if mode == "fd0":
        argv = lambda sock: ["spawn-fcgi", "-n", "-s", sock, "--",
                             _testapp_bin(stack)]
    app = own_app(argv=argv, KEEL_WORKERS=1)
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        slow = pool.submit(fcgi_get, app.sock, "/_test/sleep?ms=1500")
        time.sleep(0.3)
        queued = pool.submit(fcgi_get, app.sock, "/_test/pid")
        time.sleep(0.3)
        os.kill(app.pid, signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
            fcgi_get(app.sock, "/_test/pid", timeout=5)
        assert slow.result(timeout=10)[0] == 200
        assert queued.result(timeout=10)[0] == 200
        app.proc.wait(timeout=10)
        assert app.proc.returncode == 0
    finally:
        pool.shutdown(wait=True)


def test_serve_sigterm_kills_workers_after_timeout(own_app):
    app = own_app(KEEL_WORKERS=1, KEEL_SHUTDOWN_TIMEOUT=1)
    worker = app.workers()[0]
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        stuck = pool.submit(fcgi_get, app.sock, "/_test/sleep?ms=8000")
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(app.pid, signal.SIGTERM)
        app.proc.wait(timeout=10)
        took = time.monotonic() - t0
        with pytest.raises(ConnectionError):
            stuck.result(timeout=10)
    finally:
        pool.shutdown(wait=True)
    assert 0.9 <= took < 3, took
    assert not alive(worker)
    assert "killing 1 workers after 1 s" in app.text()


@pytest.mark.parametrize("prepared", ["1", "0"])
def test_serve_killed_worker_leaves_no_statement_running(stack, own_app,
                                                         prepared):
    """A worker killed past KEEL_SHUTDOWN_TIMEOUT mid-statement leaves
    nothing running in PostgreSQL: the backend checks its client every
    second (client_connection_check_interval) and cancels, where it
    would otherwise run on -- a lone write waiting on a lock would then
    commit after its client was answered 500.  Both ways of setting a
    session up: the startup packet, and KEEL_DB_PREPARED=0's SETs."""
    app = own_app(KEEL_WORKERS=1, KEEL_SHUTDOWN_TIMEOUT=1,
                  KEEL_DB_PREPARED=prepared)
    mark = "pg_sleep($1::float8 / 1000)"

    def running():
        return int(stack.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND pid <> pg_backend_pid() AND position('%s' in query) > 0"
            % mark))

    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        stuck = pool.submit(fcgi_get, app.sock, "/_test/db/sleep?ms=20000")
        wait_until(lambda: running() == 1, 10, "the statement to run")
        os.kill(app.pid, signal.SIGTERM)
        app.proc.wait(timeout=10)
        with pytest.raises(ConnectionError):
            stuck.result(timeout=10)
        t0 = time.monotonic()
        assert wait_until(lambda: running() == 0, 5), \
            "the killed worker's statement still runs"
        assert time.monotonic() - t0 < 3
    finally:
        pool.shutdown(wait=True)


def test_serve_quick_deaths_back_off(own_app):
    """Nothing in a worker's start can fail on its own (connections are
    lazy, the configuration is checked before fork), so quick deaths are
    made by killing each new worker at once: respawns must slow down
    (100 ms doubling), and the supervisor must not spin."""
    app = own_app(KEEL_WORKERS=1)
    cpu0 = cpu_seconds(app.pid)
    prev = app.workers()[0]
    delays = []
    for _ in range(5):
        os.kill(prev, signal.SIGKILL)
        t_kill = time.monotonic()
        new = wait_until(lambda: [w for w in app.workers() if w != prev],
                         15, "a respawned worker", step=0.02)
        delays.append(time.monotonic() - t_kill)
        prev = new[0]
    # 100, 200, 400, 800, 1600 ms: doubling, not spinning.
    assert delays[0] >= 0.08, delays
    assert delays[-1] >= 1.2, delays
    assert delays[-1] > 4 * delays[0], delays
    assert cpu_seconds(app.pid) - cpu0 < 1.0
    # A worker that lived past the quick-death window is replaced at once.
    time.sleep(1.2)
    os.kill(prev, signal.SIGKILL)
    t_kill = time.monotonic()
    wait_until(lambda: [w for w in app.workers() if w != prev], 5,
               "an immediate respawn", step=0.02)
    assert time.monotonic() - t_kill < 0.5
    assert fcgi_pid(app.sock) != prev


def test_serve_spawn_fcgi_passes_socket_on_fd0(stack, own_app):
    # -n: spawn-fcgi execs the app in place, so its pid is the supervisor.
    app = own_app(argv=lambda sock: ["spawn-fcgi", "-n", "-s", sock,
                                     "-M", "0600", "--", _testapp_bin(stack)])
    assert fcgi_pid(app.sock) in app.workers()
    assert "on fd 0" in app.text()


def test_serve_without_socket_exits_with_message(stack):
    p = subprocess.run([_testapp_bin(stack)], env=app_env(stack),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert p.returncode == 1, p.stdout
    assert "fd 0 is not a listening socket" in p.stdout
    assert "--socket" in p.stdout


def test_serve_bad_config_exits_naming_variable(stack):
    sock = os.path.join(tempfile.mkdtemp(prefix="keel-serve-", dir="/tmp"),
                        "x.sock")
    p = subprocess.run([_testapp_bin(stack), "--socket", sock],
                       env=app_env(stack, KEEL_WORKERS="abc"),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert p.returncode == 1, p.stdout
    assert "KEEL_WORKERS" in p.stdout
    assert not os.path.exists(sock)
    os.rmdir(os.path.dirname(sock))


def _tcp_peer_ports(pid):
    """Remote ports of pid's established TCP connections."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # st 01 is ESTABLISHED; field 9 is the inode.
                    if fields[3] == "01" and fields[9] in inodes:
                        ports.add(int(fields[2].rpartition(":")[2], 16))
        except OSError:
            pass
    return ports


def test_serve_connections_opened_after_fork(stack, http):
    n = nworkers(stack)
    services = {stack.ports[k] for k in ("pg", "pg_replica", "redis",
                                         "memcached")}
    pg = {stack.ports["pg"], stack.ports["pg_replica"]}
    sup = stack.app_pid("cars")
    workers = wait_workers(stack, "cars", n)
    for _ in range(2 * n):
        r = http.get("/api/cars")
        assert r.status_code == 200, r.text
    assert not _tcp_peer_ports(sup) & services
    assert any(_tcp_peer_ports(w) & pg for w in workers)


def test_serve_sigterm_finishes_inflight_request(stack):
    sup = stack.app_pid("testapp")
    workers = wait_workers(stack, "testapp", nworkers(stack))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        slow = pool.submit(request, "GET",
                           stack.url("/_test/sleep?ms=3000"), timeout=20)
        # Long enough for the request to reach a worker.
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(sup, signal.SIGTERM)
        r = slow.result(timeout=20)
        assert r.status_code == 200, r.text
        assert r.json()["pid"] in workers
        assert time.monotonic() - t0 >= 2.0
        wait_until(lambda: not any(alive(p) for p in [sup] + workers), 10,
                   "the supervisor and its workers to exit", step=0.02)
        r = request("GET", stack.url("/_test/pid"), timeout=10)
        assert r.status_code == 503
        assert r.json()["error"] == "unavailable"
        assert "stopped" in stack.log("testapp")
    finally:
        pool.shutdown(wait=True)
        if stack.app_pid("testapp") is None:
            stack.start_component("testapp")
        wait_until(lambda: _answers(stack), 15, "testapp to answer again",
                   step=0.2)


def _answers(stack):
    try:
        return request("GET", stack.url("/_test/pid"),
                       timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_serve_hung_app_gets_json_504_not_a_hung_client(stack):
    """A worker that stops answering (here: SIGSTOP, as a wedged process
    would) costs its client lighttpd's read-timeout, then a JSON 504."""
    workers = wait_workers(stack, "testapp", nworkers(stack))
    limit = int(stack._stack_env()["KEEL_FCGI_TIMEOUT"])
    for w in workers:
        os.kill(w, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = request("GET", stack.url("/_test/pid"), timeout=limit + 20)
        took = time.monotonic() - t0
        assert r.status_code == 504, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["error"] == "unavailable"
        assert limit - 1 <= took < limit + 10, took
    finally:
        for w in workers:
            os.kill(w, signal.SIGCONT)
    wait_until(lambda: _answers(stack), 15, "testapp to answer again",
               step=0.2)


def test_serve_no_sanitizer_reports(stack):
    for name in ("testapp", "cars"):
        assert_no_sanitizer_report(stack.log(name))
