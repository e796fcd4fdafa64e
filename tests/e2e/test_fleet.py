# SPDX-License-Identifier: ISC
"""test_fleet.py -- keel on several hosts that share only PostgreSQL,
Redis and memcached (issue 14): a two-host fleet (scripts/fleet, fleet.py)
behind HAProxy, and what must hold across hosts.

  - a session made on host A works on B, and a logout on B ends it on A;
  - a rate limit is exact over both hosts together;
  - a write on A invalidates B's next cached read; both hosts cache in
    both memcached servers;
  - a submit on A reaches the board, and a stream connected to B, within
    2 s (the hosts' cron drainers carry it);
  - jobs are drained exactly once by the cron drainers of both hosts,
    running at once on one queue;
  - the requests both hosts counted sum right in one Prometheus;
  - a deploy: new binaries in place, every app of host 1 re-executed
    (SIGHUP) and rolled, then host 2's, under load through HAProxy: no
    failed request;
  - a host killed under load through HAProxy costs at most the requests
    it had in flight; HAProxy takes it out within ~2 s;
  - HAProxy checks a host's own liveness (/health/live), not the shared
    stores: the primary down leaves every host in, answering; one app
    killed on a host takes that host out within a few tenths of a second,
    back once lighttpd sends to the app again;
  - keel's own 503 is not retried on another host; HAProxy's own answers
    are error JSON;
  - one client address holds at most KEEL_FLEET_MAX_CONN_PER_ADDR
    connections through HAProxy, and every other address is still served.

Every load is bounded (a few threads, a few seconds) and loopback only.
"""

import concurrent.futures
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from accounts import bearer, login, make_user
from fleet import Fleet
from helpers import (JSON_CT, BaseUrlSession, assert_error, car_body,
                     raw_exchange, replicated, request, spawn_app, stop_app,
                     wait_until)
from sse import SSE
from stack import ROOT, StackError, alive, children
from test_leaderboard import board
from test_tests import new_question, new_test, start


# The fleet's cap on one address's connections at once (1000 by default),
# low enough for a test to reach with a few dozen connections, and well
# above what any other test here holds from 127.0.0.1 at once (16).
CONN_CAP = 40


@pytest.fixture(scope="module")
def fleet(request):
    f = Fleet(hosts=2, env={"KEEL_FLEET_MAX_CONN_PER_ADDR": str(CONN_CAP)})
    request.addfinalizer(f.stop)
    try:
        f.start()
    except StackError as e:
        pytest.fail("could not start the fleet: %s" % e)
    return f


@pytest.fixture(scope="module")
def admin(fleet):
    """An admin's bearer headers (the session made through HAProxy)."""
    u = make_user(fleet.stores, "admin")
    with BaseUrlSession(fleet.base_url) as s:
        return bearer(login(s, u["email"]))


def session(target):
    """A BaseUrlSession on a host (or the fleet: HAProxy)."""
    return BaseUrlSession(target.base_url)


# ---------------------------------------------------------------- sessions

def test_a_session_made_on_one_host_works_on_the_other(fleet):
    a, b = fleet.hosts
    u = make_user(fleet.stores, "staff")
    with session(a) as on_a, session(b) as on_b:
        h = bearer(login(on_a, u["email"]))
        for s in (on_b, on_a):
            r = s.get("/api/auth/me", headers=h)
            assert r.status_code == 200, r.text
            assert r.json()["username"] == u["username"]
        other = bearer(login(on_b, u["email"]))
        # Logged out on B: gone on A at once, not at its TTL.
        assert on_b.post("/api/auth/logout", headers=h).status_code == 204
        assert_error(on_a.get("/api/auth/me", headers=h), 401,
                     "unauthorized")
        assert_error(on_b.get("/api/auth/me", headers=h), 401,
                     "unauthorized")
        # The user's other session lives on, on both.
        for s in (on_a, on_b):
            assert s.get("/api/auth/me", headers=other).status_code == 200


# ------------------------------------------------------------- rate limits

LIMITS = {"KEEL_RATELIMIT_API": "1000/60", "KEEL_RATELIMIT_READ": "30/60",
          "KEEL_RATELIMIT_WRITE": "50/60", "KEEL_RATELIMIT_AUTH": "3/60",
          "TRUSTED_PROXIES": "127.0.0.1, ::1", "KEEL_WORKERS": "3"}


@pytest.fixture
def low_limits(fleet):
    """Every host's limitapp (/api/_limit) replaced by one with low
    limits that trusts loopback as a proxy (as test_limits.py does on one
    stack); the hosts' own are back afterwards."""
    procs = []
    try:
        for i, h in enumerate(fleet.hosts, 1):
            fleet.host_stack(i, "stop", "limitapp")
            procs.append(spawn_app(h, "tests/e2e/keel-limitapp",
                                   h.path("run", "limitapp.sock"), LIMITS,
                                   "limitapp-test.log"))
        yield
    finally:
        for p in procs:
            stop_app(p)
        for i in range(1, len(fleet.hosts) + 1):
            fleet.host_stack(i, "start", "limitapp")


def client():
    """A made-up client address (TEST-NET-2) of this test alone."""
    return "198.51.%d.%d" % (random.randrange(256), random.randrange(1, 255))


def limited(method, host, path, ip):
    return request(method, host.url(path), timeout=30,
                   headers={"X-Forwarded-For": ip})


def test_a_rate_limit_is_exact_over_both_hosts(fleet, low_limits):
    a, b = fleet.hosts
    ip = client()
    # 30 reads allowed: alternately on A and B, each answer's remainder
    # counts the other host's requests too.
    for i in range(30):
        r = limited("GET", (a, b)[i % 2], "/api/_limit/read", ip)
        assert r.status_code == 200, (i, r.text)
        assert r.headers["RateLimit-Remaining"] == str(29 - i), i
    # The 31st is refused wherever it lands.
    for h in (a, b):
        r = limited("GET", h, "/api/_limit/read", ip)
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "rate_limited"


def test_a_rate_limit_is_exact_over_both_hosts_under_concurrency(
        fleet, low_limits):
    ip = client()
    hosts = fleet.hosts * 100           # 200 writes, half on each host

    def post(h):
        return h.addr, limited("POST", h, "/api/_limit/write",
                               ip).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        got = list(ex.map(post, hosts))
    codes = [c for _, c in got]
    assert codes.count(201) == 50, codes
    assert codes.count(429) == 150, codes
    # Both hosts took part in the 50.
    for h in fleet.hosts:
        assert (h.addr, 201) in got and (h.addr, 429) in got


def loopback_source():
    """A loopback address of this test alone to connect from (all of
    127.0.0.0/8 is the loopback interface)."""
    return "127.0.%d.%d" % (random.randrange(100, 200),
                            random.randrange(1, 255))


def h2c_reads(url, source, xff, n):
    """n reads of url on one connection from source, by curl's h2c
    upgrade (--http2 on http://), each claiming X-Forwarded-For: xff:
    [(HTTP version, status)] and [RateLimit-Remaining] of the answers."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    p = subprocess.run(["curl", "-s", "-D", "-", "--http2", "--interface",
                        source, "-H", "X-Forwarded-For: " + xff]
                       + ["-o", "/dev/null"] * n + [url] * n,
                       capture_output=True, text=True, timeout=30)
    return (re.findall(r"^HTTP/(\S+) (\d+)", p.stdout, re.M),
            [int(v) for v in re.findall(r"^ratelimit-remaining: *(\d+)",
                                        p.stdout, re.M | re.I)])


def test_an_h2c_upgrade_through_haproxy_cannot_choose_its_address(
        fleet, low_limits):
    """HAProxy drops Upgrade (and lighttpd speaks no h2): no request
    after the first escapes HAProxy's X-Forwarded-For in a tunnel, so a
    made-up X-Forwarded-For per connection never gets a fresh window;
    every read counts against the one address the client connects from."""
    source = loopback_source()
    remaining = []
    for _ in range(3):
        versions, left = h2c_reads(fleet.url("/api/_limit/read"), source,
                                   client(), 3)
        assert versions == [("1.1", "200")] * 3, versions
        remaining += left
    assert remaining == list(range(29, 20, -1)), remaining


def test_a_hosts_lighttpd_refuses_h2_prior_knowledge(fleet):
    got = raw_exchange(fleet.hosts[0].addr, fleet.hosts[0].port,
                       b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                       b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
                       half_close=False)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"505", got[:300]
    assert b'"error":"bad_request"' in body, body
    assert b"HTTP version not supported" in body, body


# ------------------------------------------------------------ slow clients

def haproxy_port(fleet):
    return int(fleet.base_url.rsplit(":", 1)[1])


def test_a_slow_body_through_haproxy_gets_its_408_within_10s(fleet):
    """timeout http-request covers the body (http-buffer-request): a
    body sent a byte a second is cut at 10 s, never reaching a host."""
    with socket.create_connection(("127.0.0.1", haproxy_port(fleet)),
                                  timeout=5) as s:
        s.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n")
        t0 = time.monotonic()
        s.settimeout(1)
        got = b""
        while time.monotonic() - t0 < 20 and not got:
            try:
                s.sendall(b" ")
                got = s.recv(4096)
            except socket.timeout:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
        took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408"), (took, got[:300])
    assert 9 <= took <= 13, took
    assert b'"error":"bad_request"' in got, got
    assert b"took too long to arrive" in got, got


def connect_from(fleet, source):
    """A connection to HAProxy from loopback address source, or None if
    it was refused: a connection HAProxy rejects at accept may still
    complete its handshake (the kernel's backlog) and is reset after."""
    s = socket.socket()
    s.settimeout(5)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", haproxy_port(fleet)))
    except (ConnectionResetError, ConnectionRefusedError):
        s.close()
        return None
    return s


def live_on(s):
    """GET /health/live on connection s, kept alive: its status, or None
    if the connection was closed without an answer."""
    try:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                return None
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        return None
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = s.recv(4096)
        assert chunk, got
        body += chunk
    return int(head.split(b" ")[1])


def live_from(fleet, source):
    """GET /health/live on a new connection from source: its status, or
    None if refused."""
    s = connect_from(fleet, source)
    if s is None:
        return None
    with s:
        return live_on(s)


def denied_connections(fleet):
    """Connections HAProxy's frontend refused at accept (dcon)."""
    lines = fleet.haproxy("show stat").splitlines()
    head = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(head, line.split(",")))
        if row["pxname"] == "keel" and row["svname"] == "FRONTEND":
            return int(row["dcon"] or 0)
    raise AssertionError("no frontend keel in show stat")


def test_one_address_holds_at_most_its_cap_of_connections(fleet):
    """KEEL_FLEET_MAX_CONN_PER_ADDR: an address holding CONN_CAP
    connections (each answered, kept alive) gets no more, while another
    address is answered; once it closes some, it connects again.  Before,
    one address could hold all of HAProxy's maxconn and starve everyone."""
    source = loopback_source()
    other = loopback_source()
    while other == source:
        other = loopback_source()
    denied = denied_connections(fleet)
    held = []
    try:
        # Opened and answered one by one, within timeout http-keep-alive
        # (10 s) of the first, so every one is still open at the end.
        t0 = time.monotonic()
        for _ in range(CONN_CAP):
            s = connect_from(fleet, source)
            assert s is not None, len(held)
            held.append(s)
            assert live_on(s) == 200, len(held)
        assert time.monotonic() - t0 < 8
        assert live_from(fleet, source) is None
        assert denied_connections(fleet) == denied + 1
        assert live_from(fleet, other) == 200
        # HAProxy counts a close at once: the address is back.
        for s in held[:5]:
            s.close()
        del held[:5]
        wait_until(lambda: live_from(fleet, source) == 200, 2,
                   "the address to connect again")
        assert all(live_on(s) == 200 for s in held[:3])
    finally:
        for s in held:
            s.close()


# ------------------------------------------------------------------- cache

def test_a_write_on_one_host_invalidates_the_others_cached_read(
        fleet, admin):
    a, b = fleet.hosts
    with session(a) as on_a, session(b) as on_b:
        r = on_a.post("/api/cars", json=car_body(), headers=admin)
        assert r.status_code == 201, r.text
        car = r.json()
        replicated(fleet.stores)
        item = "/api/cars/%d" % car["id"]
        r = on_b.get(item, headers=admin)
        assert (r.status_code, r.headers["X-Cache"]) == (200, "MISS")
        # One memcached pair for both: B's fill is A's hit.
        r = on_a.get(item, headers=admin)
        assert (r.status_code, r.headers["X-Cache"]) == (200, "HIT")
        assert r.json() == car
        for i in range(8):
            model = "Fleet%d" % i
            w, rd = (on_a, on_b) if i % 2 == 0 else (on_b, on_a)
            r = w.patch(item, json={"model": model}, headers=admin)
            assert r.status_code == 200, r.text
            r = rd.get(item, headers=admin)
            assert r.status_code == 200
            assert r.headers["X-Cache"] == "MISS", i
            assert r.json()["model"] == model, i
            r = rd.get(item, headers=admin)
            assert (r.headers["X-Cache"], r.json()["model"]) == ("HIT",
                                                                 model), i


def memcached_items(port):
    """curr_items of the memcached server on 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            b = c.recv(65536)
            if not b:
                break
            buf += b
    m = re.search(rb"STAT curr_items (\d+)", buf)
    return int(m.group(1))


def test_every_host_caches_in_both_memcached_servers(fleet, admin):
    ports = (fleet.ports["memcached"], fleet.ports["memcached2"])
    servers = fleet.hosts[0].env["MEMCACHED_SERVERS"]
    assert servers == ",".join("127.0.0.1:%d" % p for p in ports)
    assert all(h.env["MEMCACHED_SERVERS"] == servers for h in fleet.hosts)
    before = [memcached_items(p) for p in ports]
    with session(fleet.hosts[0]) as on_a, session(fleet.hosts[1]) as on_b:
        for i in range(24):
            r = on_a.post("/api/cars", json=car_body(), headers=admin)
            assert r.status_code == 201, r.text
            r = (on_a, on_b)[i % 2].get("/api/cars/%d" % r.json()["id"],
                                        headers=admin)
            assert r.status_code == 200
    after = [memcached_items(p) for p in ports]
    # Keys spread over both servers by consistent hashing.
    assert all(a > b for a, b in zip(after, before)), (before, after)


# ------------------------------------------------------------ cron drainers

def cron_runs(host, prog):
    """The pid of host's cron run of prog (cron/crontab, every minute)
    while it runs, else None: its lock file names it (lib/cron.c)."""
    try:
        with open(host.path("run", prog + ".lock")) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if prog.encode() not in f.read():
                return None
    except OSError:
        return None
    return pid if alive(pid) else None


def cron_window(fleet, progs, need=20):
    """Wait until every host's cron runs each of progs with at least
    `need` seconds of its 45 s budget left (cron starts them at second 0
    of each minute); {(host index, prog): pid}."""
    def ready():
        sec = time.time() % 60
        if not 1 <= sec <= 45 - need:
            return None
        pids = {(i, p): cron_runs(h, p)
                for i, h in enumerate(fleet.hosts) for p in progs}
        return pids if all(pids.values()) else None
    return wait_until(ready, 75, "the hosts' cron drainers %s" % (progs,),
                      step=0.2)


def pg_sessions(stores):
    """PostgreSQL's sessions that are not idle, for a failure's message:
    each one's program, state, what it waits on, who blocks it and its
    statement."""
    return stores.psql(
        "SELECT string_agg(format('%s pid=%s %s %s/%s blocked_by=%s: %s', "
        "application_name, pid, state, wait_event_type, wait_event, "
        "pg_blocking_pids(pid), left(query, 160)), E'\\n') "
        "FROM pg_stat_activity WHERE state <> 'idle' "
        "AND pid <> pg_backend_pid()")


def test_a_submit_on_one_host_reaches_the_board_and_a_stream_on_the_other(
        fleet, admin):
    a, b = fleet.hosts
    qids = [new_question(fleet.stores, answer=x) for x in (0, 1, 2)]
    with session(a) as on_a, session(b) as on_b:
        on_a.headers.update(admin)      # a request's own header wins
        test = new_test(on_a, qids, title="Fleet test")
        u = make_user(fleet.stores, "student")
        h = bearer(login(on_b, u["email"]))
        attempt = start(on_a, test["id"], h)
        cron_window(fleet, ("keel-drain-leaderboard",
                            "keel-drain-notifications"))
        s = SSE(socket.create_connection((b.addr, b.port), timeout=10),
                "/api/notifications/stream", dict(h), 10)
        try:
            assert s.status == 200
            s.next_event(0.3)
            # Once (CI at 47baca3) this submit got no answer in 30 s; it
            # never did again.  Should it recur, the failure says what
            # PostgreSQL's sessions were doing while it waited.
            try:
                r = on_a.post("/api/attempts/%d/submit" % attempt["id"],
                              headers=h, timeout=20, json={"answers": {
                                  str(qids[0]): 0, str(qids[1]): 1,
                                  str(qids[2]): 2}})
            except requests.exceptions.Timeout:
                pytest.fail("no answer to the submit on host A in 20 s; "
                            "PostgreSQL's sessions then:\n" +
                            pg_sessions(fleet.stores))
            assert r.status_code == 200, r.text
            t0 = time.monotonic()
            ev = s.next_event(2.0)
            assert ev is not None, "no event on host B's stream in 2 s"
            assert ev["event"] == "notification"
            assert str(attempt["id"]) in ev["data"]
            on_b.headers.update(h)
            wait_until(lambda: any(e["userId"] == u["id"] for e in board(
                on_b, test["id"])["data"]),
                max(0.0, 2.0 - (time.monotonic() - t0)),
                "the attempt on the board, read on host B")
            assert time.monotonic() - t0 <= 2.0
        finally:
            s.close()


def host_metric(host, name, **labels):
    """The sum of metric `name`'s series with these labels, as the host's
    own /api/metrics says (its apps' and its cron programs')."""
    r = request("GET", host.url("/api/metrics"), timeout=10)
    assert r.status_code == 200
    want = ['%s="%s"' % kv for kv in labels.items()]
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            total += float(line.rsplit(" ", 1)[1])
    return total


def email_queue_idle(stores):
    p = stores.program("keel-queues", "stats", "email")
    assert p.returncode == 0, p.stderr
    waiting, active, delayed = map(int, p.stdout.splitlines()[1].split()[1:4])
    return waiting == active == delayed == 0


def test_jobs_are_drained_exactly_once_by_the_drainers_of_every_host(
        fleet):
    stores = fleet.stores
    n = 40
    tag = "fleet%d" % random.randrange(10**9)
    outcomes = ("done", "refused", "retried", "ran_before", "dead_lettered")

    def jobs(h):
        return {o: host_metric(h, "keel_jobs_total", queue="email",
                               outcome=o) for o in outcomes}

    def mine():
        return [m for m in stores.mail()
                if m["To"].addresses[0].addr_spec.startswith(tag)]

    # Each message takes the SMTP server 50 ms: one drainer cannot take
    # them all before the other host's has its share.
    stores.set_smtp_mode("accept 0.05")
    try:
        wait_until(lambda: email_queue_idle(stores), 60,
                   "the email queue to be idle")
        cron_window(fleet, ("keel-drain-email",))
        before = [jobs(h) for h in fleet.hosts]
        for i in range(n):
            p = stores.program(
                "keel-queues", "enqueue", "--key", "%s-%d" % (tag, i),
                "email", "invitation",
                '{"to": "%s-%d@example.com", "name": "N", '
                '"link": "https://keel.example/set?token=t"}' % (tag, i))
            assert p.returncode == 0, p.stderr
        wait_until(lambda: len(mine()) >= n, 30, "%d messages" % n)
        wait_until(lambda: email_queue_idle(stores), 30,
                   "the email queue to be idle again")
        time.sleep(0.5)         # a duplicate would have come by now
    finally:
        stores.set_smtp_mode("accept")
    got = sorted(m["To"].addresses[0].addr_spec for m in mine())
    assert got == sorted("%s-%d@example.com" % (tag, i) for i in range(n))
    assert len({m["Message-ID"] for m in mine()}) == n
    after = [jobs(h) for h in fleet.hosts]
    delta = [{o: a[o] - b[o] for o in outcomes}
             for a, b in zip(after, before)]
    print("jobs per host: %r" % delta)
    # Exactly once: the hosts' drainers did n between them, each a share,
    # and none was leased twice, retried or lost.
    assert sum(d["done"] for d in delta) == n, delta
    assert all(d["done"] > 0 for d in delta), delta
    assert all(d[o] == 0 for d in delta for o in outcomes[1:]), delta


# ----------------------------------------------------------------- metrics

def prom(fleet, expr):
    r = requests.get(fleet.prometheus_url() + "/api/v1/query",
                     params={"query": expr}, timeout=10)
    assert r.status_code == 200, r.text
    return {s["metric"].get("instance", ""): float(s["value"][1])
            for s in r.json()["data"]["result"]}


COUNTER = ('keel_http_requests_total{app="cars",route="/api/cars",'
           'method="GET",code="401"}')


def scraped(host):
    """The host's own count of COUNTER (its /api/metrics)."""
    r = request("GET", host.url("/api/metrics"), timeout=10)
    assert r.status_code == 200
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith("keel_http_requests_total{") and \
                'app="cars"' in line and 'route="/api/cars"' in line and \
                'method="GET"' in line and 'code="401"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_both_hosts_metrics_sum_in_one_prometheus(fleet):
    a, b = fleet.hosts
    inst = {h: "%s:%d" % (h.addr, h.port) for h in fleet.hosts}
    wait_until(lambda: prom(fleet, 'up{job="keel"}') == {
        inst[a]: 1.0, inst[b]: 1.0}, 30, "both hosts up in Prometheus")
    expr = "sum by (instance) (%s)" % COUNTER

    def settled():
        got = prom(fleet, expr)
        return [got] if all(got.get(inst[h], 0.0) == scraped(h)
                            for h in fleet.hosts) else None
    before, = wait_until(settled, 30, "Prometheus to catch up")
    sent = {a: 7, b: 11}
    for h, k in sent.items():
        for _ in range(k):
            r = request("GET", h.url("/api/cars"), timeout=10)
            assert r.status_code == 401
    want = sum(before.get(inst[h], 0.0) for h in fleet.hosts) + 18
    got = wait_until(lambda: prom(fleet, "sum(%s)" % COUNTER).get("")
                     == want, 30)
    assert got, "Prometheus sums %r, want %r" % (
        prom(fleet, "sum(%s)" % COUNTER), want)
    per = prom(fleet, expr)
    for h, k in sent.items():
        assert per[inst[h]] - before.get(inst[h], 0.0) == k, (per, before)


# ------------------------------------------------------------------- load

class Load:
    """n threads sending requests through HAProxy until stop(), each on
    its own keep-alive connection, each with at most one in flight;
    writes=True makes one of them POST cars (never retried by HAProxy)."""

    def __init__(self, fleet, headers, paths, n=4, writes=False):
        self.fleet = fleet
        self.headers = headers
        self.paths = paths
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = []            # monotonic times of good answers
        self.failures = []      # (time, "METHOD what")
        self.pool = concurrent.futures.ThreadPoolExecutor(n)
        self.futures = [self.pool.submit(self._run, writes and i == 0)
                        for i in range(n)]

    def _one(self, s, write):
        try:
            if write:
                r = s.post(self.fleet.url("/api/cars"), json=car_body(),
                           headers=self.headers, timeout=15)
                want = 201
            else:
                r = s.get(self.fleet.url(random.choice(self.paths)),
                          headers=self.headers, timeout=15)
                want = 200
        except requests.RequestException as e:
            return "%s %r" % ("POST" if write else "GET", e)
        return None if r.status_code == want else "%s %d %s" % (
            "POST" if write else "GET", r.status_code, r.text[:200])

    def _run(self, write):
        deadline = time.monotonic() + 120       # bounded regardless
        with requests.Session() as s:
            while not self.stopping.is_set() and \
                    time.monotonic() < deadline:
                bad = self._one(s, write)
                with self.lock:
                    if bad is None:
                        self.ok.append(time.monotonic())
                    else:
                        self.failures.append((time.monotonic(), bad))

    def stop(self):
        self.stopping.set()
        for f in self.futures:
            f.result(timeout=60)
        self.pool.shutdown()
        return self.ok, self.failures


@pytest.fixture
def cars(fleet, admin):
    """A few cars' item paths, warm in the cache."""
    paths = []
    with BaseUrlSession(fleet.base_url) as s:
        for _ in range(4):
            r = s.post("/api/cars", json=car_body(), headers=admin)
            assert r.status_code == 201, r.text
            paths.append("/api/cars/%d" % r.json()["id"])
    return paths + ["/api/cars?limit=5"]


def app_pids(host):
    """{app name: supervisor pid} of the host's running apps."""
    out = {}
    for f in os.listdir(host.path("run")):
        name = f[:-len(".pid")] if f.endswith(".pid") else None
        if name in (None, "lighttpd", "cron"):
            continue
        pid = host.app_pid(name)
        if pid is not None:
            out[name] = pid
    return out


def exe_inode(pid):
    """The inode of the file pid runs."""
    return os.stat("/proc/%d/exe" % pid).st_ino


def argv0(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().split(b"\0")[0].decode()


def test_every_host_upgraded_in_turn_under_load_fails_no_request(
        fleet, admin, cars):
    """A deploy: new binaries of every app in place, then every app of
    host 1 told to re-execute (SIGHUP) and its roll waited for, then host
    2's, all under load through HAProxy, writes included."""
    apps = [app_pids(h) for h in fleet.hosts]
    assert all(len(a) >= 15 for a in apps), apps
    bins = {argv0(pid) for a in apps for pid in a.values()}
    # What each supervisor runs now: the file its workers run until its
    # roll.
    old = [{n: exe_inode(pid) for n, pid in a.items()} for a in apps]
    load = Load(fleet, admin, cars, n=4, writes=True)
    try:
        wait_until(lambda: len(load.ok) >= 20, 20, "the load to start")
        new = {b: fleet.deploy(b) for b in sorted(bins)
               if os.path.basename(os.path.dirname(b)) in Fleet.DEPLOYED}
        assert len(new) >= 14, new
        for i, host in enumerate(fleet.hosts):
            before = {n: set(host.worker_pids(n)) for n in apps[i]}
            # Not rolled yet: the old binaries still serve here.
            for n in apps[i]:
                assert {exe_inode(w) for w in before[n]} == {old[i][n]}, n
            rolls = {n: host.log(n).count("workers replaced")
                     for n in apps[i]}
            for pid in apps[i].values():
                os.kill(pid, signal.SIGHUP)

            def rolled():
                return all(host.log(n).count("workers replaced") > rolls[n]
                           for n in apps[i])
            wait_until(rolled, 60, "every app of %s to roll" % host.addr,
                       step=0.1)
            for n, pid in apps[i].items():
                assert host.app_pid(n) == pid, n    # the same supervisor
                now = set(host.worker_pids(n))
                assert now and not now & before[n], (n, before[n], now)
                b = argv0(pid)
                assert {exe_inode(w) for w in now} | {exe_inode(pid)} == {
                    new.get(b, old[i][n])}, n
            done = len(load.ok)
            wait_until(lambda: len(load.ok) >= done + 10, 20,
                       "answers after the roll of %s" % host.addr)
    finally:
        ok, failures = load.stop()
    print("rolling upgrade: %d answers, %d failed" % (len(ok), len(failures)))
    assert failures == [], failures[:5]
    assert len(ok) > 100


def test_a_host_killed_under_load_costs_at_most_its_requests_in_flight(
        fleet, admin, cars):
    victim = fleet.hosts[1]
    n = 6
    load = Load(fleet, admin, cars, n=n)
    try:
        wait_until(lambda: len(load.ok) >= 30, 20, "the load to start")
        # Its lighttpd and every app, workers included: SIGKILL, as a
        # machine that dies.
        with open(victim.path("run", "lighttpd.pid")) as f:
            pids = [int(f.read())]
        for pid in app_pids(victim).values():
            pids += children(pid) + [pid]
        t_kill = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: fleet.server_states().get("host2") == "DOWN",
                   5, "HAProxy to take host2 out", step=0.05)
        drained_in = time.monotonic() - t_kill
        done = len(load.ok)
        wait_until(lambda: len(load.ok) >= done + 50, 20,
                   "answers from the host left")
    finally:
        ok, failures = load.stop()
    c = fleet.haproxy_counters()["host2"]
    print("kill: %d answers, %d failed, host2 out after %.2f s; HAProxy: "
          "%s retries, %s redispatches, %s connection errors, %s response "
          "errors on host2" % (len(ok), len(failures), drained_in, c["wretr"],
                               c["wredis"], c["econ"], c["eresp"]))
    # At most one request in flight per client connection when it died.
    assert len(failures) <= n, failures
    assert drained_in <= 2.5, drained_in
    assert fleet.server_states()["host1"] == "UP"
    # Back: the host's own start brings up what was killed, and HAProxy
    # puts it back in.
    fleet.host_stack(2, "start")
    wait_until(lambda: fleet.server_states().get("host2") == "UP", 20,
               "host2 back behind HAProxy")
    assert not any(alive(p) for p in pids)


# ------------------------------------------------- what HAProxy checks

def stores_stack(fleet, *args):
    """scripts/stack ARGS on the fleet's stores, as scripts/fleet runs it
    (stop primary, start redis ...); its output."""
    e = fleet._env()
    e.update({"KEEL_STACK_DIR": fleet.info["KEEL_FLEET_STORES_DIR"],
              "KEEL_STACK_APPS": "0", "KEEL_CRON": "0",
              "KEEL_PG_HOSTS": str(fleet.n + 1),
              "KEEL_HTTP_PORT": str(fleet.ports["host"]),
              "KEEL_PROMETHEUS": "1"})
    p = subprocess.run([os.path.join(ROOT, "scripts", "stack")] + list(args),
                       env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=180)
    assert p.returncode == 0, p.stdout
    return p.stdout


def stays_up(fleet, secs):
    """Every host UP in HAProxy's view throughout secs seconds (asked
    every 50 ms); the first other view seen, or None."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        s = fleet.server_states()
        if set(s.values()) != {"UP"}:
            return s
        time.sleep(0.05)
    return None


def healthy(fleet):
    """Every host's /health is 200 (its stores are back)."""
    return all(request("GET", h.url("/health"), timeout=5).status_code == 200
               for h in fleet.hosts)


def test_the_primary_down_leaves_every_host_in_serving_its_answers(
        fleet, admin):
    """/health is 503 without the primary, on every host at once; HAProxy
    checks /health/live (the host's own lighttpd and apps), so no host is
    taken out for a store they all share, and a client gets the hosts'
    answers: a cached read, a write's 503 JSON, never HAProxy's HTML."""
    with BaseUrlSession(fleet.base_url) as s:
        r = s.post("/api/cars", json=car_body(), headers=admin)
        assert r.status_code == 201, r.text
        path = "/api/cars/%d" % r.json()["id"]
        replicated(fleet.stores)
        for h in fleet.hosts:
            with session(h) as on_h:
                for _ in range(2):      # the second one a hit
                    assert on_h.get(path, headers=admin).status_code == 200
        stores_stack(fleet, "stop", "primary")
        try:
            for h in fleet.hosts:       # readiness: still the primary's
                r = request("GET", h.url("/health"), timeout=10)
                assert r.status_code == 503, r.text
                assert r.json()["status"] == "down"
            # HAProxy took every host out within ~1.5 s on /health.
            assert stays_up(fleet, 2.5) is None, fleet.server_states()
            for _ in range(4):          # round robin: both hosts
                r = s.get(path, headers=admin)
                assert r.status_code == 200, r.text[:200]
                assert r.headers["Content-Type"] == JSON_CT
            r = s.post("/api/cars", json=car_body(), headers=admin)
            assert_error(r, 503, "unavailable")
            assert fleet.server_states() == {"host1": "UP", "host2": "UP"}
        finally:
            stores_stack(fleet, "start", "primary")
            wait_until(lambda: healthy(fleet), 60, "the hosts' /health ok")


def test_haproxys_own_answers_are_api_error_json(fleet):
    """With no host to take it, HAProxy's own 503 is API.md's error JSON
    (an errorfile), not its HTML page."""
    try:
        for i in (1, 2):
            fleet.haproxy("disable server hosts/host%d" % i)
        r = request("GET", fleet.url("/api/cars"), timeout=10)
        assert_error(r, 503, "unavailable")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        for i in (1, 2):
            fleet.haproxy("enable server hosts/host%d" % i)
        wait_until(lambda: set(fleet.server_states().values()) == {"UP"},
                   20, "both hosts back behind HAProxy")


def test_a_host_whose_app_is_killed_leaves_haproxy_until_it_is_back(
        fleet, admin, cars):
    """One app dead on host 2 (its supervisor SIGKILLed; its workers
    follow): host 2's /health/live is 503 naming it, HAProxy takes the
    host out within a few seconds, so writes to that app fail only until
    then; started again at once, the host is back in within 2.7 s of the
    app listening, and no request fails after that (lighttpd no longer
    holds the app disabled)."""
    victim = fleet.hosts[1]
    pid = victim.app_pid("cars")
    try:
        load = Load(fleet, admin, cars, n=4, writes=True)
        try:
            wait_until(lambda: len(load.ok) >= 30, 20, "the load to start")
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: fleet.server_states().get("host2") == "DOWN",
                       5, "HAProxy to take host2 out", step=0.05)
            out_in = time.monotonic() - t_kill
            with load.lock:
                t_out = time.monotonic()
                failed_then = len(load.failures)
            r = request("GET", victim.url("/health/live"), timeout=5)
            assert r.status_code == 503, r.text
            assert r.json()["apps"]["cars"] == "down", r.text
            assert r.json()["apps"]["health"] == "up", r.text
            # Back at once, as a supervisor restarts it: the racy case,
            # lighttpd's last failed connect to it a moment ago.
            fleet.host_stack(2, "start", "cars")
            t_listen = time.monotonic()
            wait_until(lambda: fleet.server_states().get("host2") == "UP",
                       10, "host2 back behind HAProxy", step=0.05)
            back_in = time.monotonic() - t_listen
            served = int(fleet.haproxy_counters()["host2"]["stot"])
            done = len(load.ok)
            time.sleep(1.5)             # host2 serving its share again
            wait_until(lambda: len(load.ok) >= done + 50, 20,
                       "answers after host2 is back")
        finally:
            ok, failures = load.stop()
    finally:
        if victim.app_pid("cars") is None:
            fleet.host_stack(2, "start", "cars")
    writes = [f for f in failures if f[1].startswith("POST")]
    print("cars killed on host2: %d answers, %d failed (%d writes; %d by "
          "the time it was out), out after %.2f s, back %.2f s after the "
          "app listened" % (len(ok), len(failures), len(writes),
                            failed_then, out_in, back_in))
    # Before: host2 stayed in, every other request to it a 503 (a write
    # is never retried), hundreds a second for as long as the app was
    # down.  Now only those sent before HAProxy's check saw it: the
    # clients here send the next at once, a few hundred a second.  None
    # once it is back: lighttpd sends to the app again by then.
    assert out_in <= 3, out_in
    assert not [f for f in failures if f[0] > t_out + 0.5], failures[-5:]
    assert len(writes) <= 50, writes[:5]
    # Before: 30 good checks (3 s) for lighttpd's disable-time of 1 s;
    # now 20 (1.9 s) after disable-time 0.
    assert back_in <= 2.7, back_in
    assert int(fleet.haproxy_counters()["host2"]["stot"]) > served + 20
    r = request("GET", victim.url("/health/live"), timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


def timed_get(fleet, path, headers):
    """GET path through HAProxy on a connection of its own: (status,
    seconds it took)."""
    t = time.monotonic()
    r = request("GET", fleet.url(path), headers=headers, timeout=40)
    return r.status_code, time.monotonic() - t


def test_a_hung_host_costs_its_requests_in_flight_the_deadline_only(
        fleet, admin, cars):
    """Host 2's lighttpd SIGSTOPped: it takes connections (the kernel's
    backlog) and never answers.  The GETs it was sent wait HAProxy's
    timeout server -- the hosts' own deadline (KEEL_FCGI_TIMEOUT, 12 s
    here) and 3 s -- and are then retried on host 1, not held 60 s for a
    504; HAProxy's checks time out and take host 2 out, so later requests
    go to host 1 at once."""
    deadline = int(fleet._env()["KEEL_FCGI_TIMEOUT"]) + 3
    with open(fleet.hosts[1].path("run", "lighttpd.pid")) as f:
        pid = int(f.read())
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        os.kill(pid, signal.SIGSTOP)
        # Round robin: of 4 at once, two go to host 2.
        got = list(pool.map(lambda p: timed_get(fleet, p, admin), cars[:4]))
        wait_until(lambda: fleet.server_states().get("host2") == "DOWN",
                   5, "HAProxy to take the hung host out")
        later = [timed_get(fleet, p, admin) for p in cars]
    finally:
        os.kill(pid, signal.SIGCONT)
        pool.shutdown()
    print("host2 hung: in flight %r, then %r" % (got, later))
    assert all(code == 200 for code, _ in got + later), (got, later)
    # Some did wait for host 2, none past its deadline and the retry.
    assert max(secs for _, secs in got) >= deadline - 1, got
    assert max(secs for _, secs in got) <= deadline + 2, got
    assert max(secs for _, secs in later) < 2, later
    wait_until(lambda: fleet.server_states().get("host2") == "UP", 20,
               "host2 back behind HAProxy")


def access_lines(fleet, path):
    """The hosts' cars access-log lines for path, all hosts together."""
    return sum(sum(1 for line in h.log("cars").splitlines()
                   if "access" in line and path + " " in line + " ")
               for h in fleet.hosts)


def test_keels_own_503_is_not_retried_on_another_host(fleet, admin):
    """Redis down: a car read answers keel's own 503 (a dependency), and
    HAProxy hands the client that one answer: one app request, not one
    per host and retry."""
    with BaseUrlSession(fleet.base_url) as s:
        r = s.post("/api/cars", json=car_body(), headers=admin)
        assert r.status_code == 201, r.text
    path = "/api/cars/%d" % r.json()["id"]
    stores_stack(fleet, "stop", "redis")
    try:
        before = access_lines(fleet, path)
        r = request("GET", fleet.url(path), headers=admin, timeout=30)
        assert_error(r, 503, "unavailable")
        wait_until(lambda: access_lines(fleet, path) > before, 5,
                   "the request in a host's access log")
        # Retried, the others were logged before the answer came back.
        assert not wait_until(
            lambda: access_lines(fleet, path) > before + 1, 1), \
            access_lines(fleet, path) - before
        assert fleet.server_states() == {"host1": "UP", "host2": "UP"}
    finally:
        stores_stack(fleet, "start", "redis")
        wait_until(lambda: healthy(fleet), 60, "the hosts' /health ok")
