# SPDX-License-Identifier: ISC
"""test_pgbouncer.py -- keel behind PgBouncer's transaction pooling
(issue 14 item 5): Debian 12's pgbouncer 1.18, which hands each
transaction whatever server connection is free and knows nothing of named
prepared statements, between the apps (and the cron programs) and
PostgreSQL, with KEEL_DB_PREPARED=0 (lib/db.c: unnamed statements, no
session state, statement_timeout set per transaction).

The module runs its own stack with KEEL_PGBOUNCER=1 (scripts/stack:
databases keel and keel_replica, POOL server connections each); psql
(setup and checks) goes to PostgreSQL directly.  It holds that real
traffic over several apps answers as it does without the pooler, that
the statements run under keel's statement_timeout alone and inside
transactions, that the cron drainers and the leaderboard rebuild (a temp
table and a cursor in one transaction) work through it, that under a
load from more workers than the pool has connections PostgreSQL never
sees more than the pool, that a restart of the primary is survived --
and that KEEL_DB_PREPARED=1 through it fails: refused at the startup
(its session options), and, where the options are dropped
(ignore_startup_parameters), on its named statements.
"""

import concurrent.futures
import os
import re
import subprocess
import threading
import time
import uuid

import pytest
import requests

from accounts import login, make_user, session_for
from helpers import (BaseUrlSession, assert_error, car_body, new_car,
                     own_stack, wait_until)
from stack import ROOT, free_port, psql_env
from test_jobs import FAST, outbox_message_ids, summary
from test_leaderboard import DRAIN_ENV, board
from test_serve import fcgi_request
from test_serve import own_app  # noqa: F401 (a fixture)
from test_tests import new_question, new_test, start

POOL = 4                    # server connections per server (and user)
WORKERS = 3                 # per app: many more client connections
LOAD_CLIENTS = 16
LOAD_SECONDS = 6.0
STATEMENT_MS = 30000        # KEEL_DB_STATEMENT_TIMEOUT's default


@pytest.fixture(scope="module")
def stack(request):
    """This module's own stack, its apps and cron through PgBouncer."""
    return own_stack(request, "the stack with pgbouncer", env={
        "KEEL_PGBOUNCER": "1", "KEEL_PGBOUNCER_PORT": str(free_port()),
        "KEEL_PGBOUNCER_POOL": str(POOL), "KEEL_WORKERS": str(WORKERS)})


@pytest.fixture(scope="module")
def crew(stack):
    """Sessions: staff (writes cars, tests), a customer, a student."""
    with BaseUrlSession(stack.base_url) as s:
        staff = session_for(stack, s, "staff")[1]
        customer = session_for(stack, s, "customer")
        student = session_for(stack, s, "student")
    return {"staff": staff, "customer": customer, "student": student}


def backends(stack, replica=False):
    """keel's connections to the keel database on the primary (or the
    replica), the asking one left out."""
    return int(stack.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'keel' AND "
        "datname = 'keel' AND backend_type = 'client backend' AND "
        "pid <> pg_backend_pid()", replica=replica))


def console(stack, command):
    """The rows of a command on PgBouncer's console (as keel, one of its
    stats_users), as lists of fields."""
    url, env = psql_env(stack.env["DATABASE_URL"].rsplit("/", 1)[0]
                        + "/pgbouncer")
    p = subprocess.run(["psql", "-X", "-At", "-d", url, "-c", command],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30, env=env)
    assert p.returncode == 0, p.stderr
    return [line.split("|") for line in p.stdout.splitlines()]


# ----------------------------------------------------------- the setup

def test_apps_and_cron_reach_postgresql_through_pgbouncer(stack):
    port = stack.extra_env["KEEL_PGBOUNCER_PORT"]
    assert stack.env["DATABASE_URL"].endswith(":%s/keel" % port)
    assert stack.env["DATABASE_READ_REPLICA_URL"].endswith(
        ":%s/keel_replica" % port)
    assert stack.env["KEEL_DB_PREPARED"] == "0"
    assert ":%d/" % stack.ports["pg"] in stack.env["KEEL_STACK_PG_URL"]
    assert "pgbouncer" in stack.status()
    # /health's probes (simple queries, the replica's lag) pass through.
    with BaseUrlSession(stack.base_url) as s:
        r = s.get("/health")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["postgres"]["status"] == checks["replica"]["status"] == \
        "up", checks
    assert checks["replica"]["lagMs"] >= 0


def test_statements_run_under_keels_settings_alone_and_in_transactions(
        stack):
    # The server's own default is none: what a statement runs under is
    # what keel sent with it, on whichever server connection it got.
    assert stack.psql("SHOW statement_timeout") == "0"
    with BaseUrlSession(stack.base_url) as s:
        def one(_):
            r = s.get("/_test/db/settings")
            assert r.status_code == 200, r.text
            return r.json()
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            got = list(ex.map(one, range(30)))
    for g in got:
        assert g["alone"]["statementTimeout"] == str(STATEMENT_MS), g
        assert g["inTransaction"]["statementTimeout"] == str(STATEMENT_MS), g
    assert len({g["pid"] for g in got}) > 1     # several workers asked


def test_statement_timeout_is_the_servers_through_pgbouncer(stack, own_app):
    # 500 ms: the server cancels the statement (57014) long before the
    # client's own deadline (1.5 s); the log tells which one fired.
    app = own_app(KEEL_DB_STATEMENT_TIMEOUT=500, KEEL_WORKERS=1)
    t0 = time.monotonic()
    status, _, body = fcgi_request(app.sock, "GET", "/_test/db/sleep?ms=5000",
                                   timeout=15)
    took = time.monotonic() - t0
    assert status == 503, body
    assert took < 3.0, took
    log = app.text()
    assert "testapp_sleep: statement timeout" in log, log[-3000:]
    assert "by the statement deadline" not in log, log[-3000:]
    # The connection stays good for the next request.
    status, _, body = fcgi_request(app.sock, "GET", "/_test/db/sleep?ms=10",
                                   timeout=15)
    assert status == 200, body


# ------------------------------------------------------- real traffic

def test_real_traffic_over_several_apps(stack, crew):
    with BaseUrlSession(stack.base_url) as s:
        # Login: a session made and used (auth app, users app).
        u = make_user(stack, "staff")
        s.headers["Authorization"] = "Bearer " + login(s, u["email"])
        r = s.get("/api/users/%d" % u["id"])
        assert r.status_code == 200, r.text
        assert r.json()["email"] == u["email"]

        # Cars: create, get, patch, list.
        car = new_car(s, manufacturer="Bouncer", category="van", year=2021)
        r = s.get("/api/cars/%d" % car["id"])
        assert r.status_code == 200 and r.json()["id"] == car["id"], r.text
        r = s.patch("/api/cars/%d" % car["id"], json={"year": 2022})
        assert r.status_code == 200 and r.json()["year"] == 2022, r.text
        r = s.get("/api/cars/%d" % car["id"])
        assert r.status_code == 200 and r.json()["year"] == 2022, r.text
        r = s.get("/api/cars", params={"manufacturer": "Bouncer"})
        assert r.status_code == 200, r.text
        assert [c["id"] for c in r.json()["data"]] == [car["id"]]

        # A contract, then one overlapping it: the exclusion constraint.
        cust = crew["customer"][0]
        body = {"carId": car["id"], "customerId": cust["id"],
                "startDate": "2031-04-01", "endDate": "2031-04-10"}
        r = s.post("/api/contracts", json=body)
        assert r.status_code == 201, r.text
        r = s.post("/api/contracts", json=dict(body, startDate="2031-04-05",
                                                endDate="2031-04-12"))
        assert_error(r, 409, "conflict")
        assert stack.psql("SELECT count(*) FROM contracts WHERE car_id = %d"
                          % car["id"]) == "1"

        # An idempotent POST: run once, replayed.
        key = "pgb-" + uuid.uuid4().hex
        plate = "B" + uuid.uuid4().hex[:9].upper()
        cb = {"licensePlate": plate, "manufacturer": "Bouncer",
              "model": "Idem", "category": "van", "year": 2020}
        r1 = s.post("/api/cars", json=cb, headers={"Idempotency-Key": key})
        r2 = s.post("/api/cars", json=cb, headers={"Idempotency-Key": key})
        assert r1.status_code == r2.status_code == 201, (r1.text, r2.text)
        assert r2.headers["Idempotent-Replayed"] == "true"
        assert r2.json() == r1.json()
        assert stack.psql("SELECT count(*) FROM cars WHERE license_plate = "
                          "'%s'" % plate) == "1"

    # Cursor pagination over 45 cars, forward then back.
    tag = uuid.uuid4().hex[:6].upper()
    make = "Pages" + tag
    stack.psql(
        "INSERT INTO cars (license_plate, manufacturer, model, category, "
        "year) SELECT 'PB%s' || lpad(i::text, 2, '0'), '%s', 'Keyset', "
        "'compact', 2020 FROM generate_series(1, 45) i" % (tag, make))
    ids = [int(x) for x in stack.psql(
        "SELECT id FROM cars WHERE manufacturer = '%s' "
        "ORDER BY created_at DESC, id DESC" % make).split()]
    with BaseUrlSession(stack.base_url) as s:
        s.headers.update(crew["staff"])
        seen, pages = [], []
        q = {"manufacturer": make, "limit": 10}
        while True:
            r = s.get("/api/cars", params=q)
            assert r.status_code == 200, r.text
            pages.append(r.json())
            seen += [c["id"] for c in r.json()["data"]]
            nxt = r.json()["page"]["next"]
            if nxt is None:
                break
            q = {"manufacturer": make, "limit": 10, "after": nxt}
        assert seen == ids and len(pages) == 5
        back = [c["id"] for c in pages[-1]["data"]]
        p = pages[-1]
        while p["page"]["prev"] is not None:
            r = s.get("/api/cars", params={"manufacturer": make, "limit": 10,
                                           "before": p["page"]["prev"]})
            assert r.status_code == 200, r.text
            p = r.json()
            back = [c["id"] for c in p["data"]] + back
        assert back == ids


def test_exam_submit_reaches_the_board(stack, crew):
    for q in ("leaderboard", "notifications"):
        p = stack.program("keel-queues", "purge", q, "all")
        assert p.returncode == 0, p.stderr
    qids = [new_question(stack, answer=a) for a in (0, 1, 2)]
    student, h = crew["student"]
    with BaseUrlSession(stack.base_url) as s:
        s.headers.update(crew["staff"])
        test = new_test(s, qids, title="Bouncer test")
        attempt = start(s, test["id"], h)
        r = s.post("/api/attempts/%d/submit" % attempt["id"], headers=h,
                   json={"answers": {str(qids[0]): 0, str(qids[1]): 1,
                                     str(qids[2]): 0}})
        assert r.status_code == 200, r.text
        assert r.json()["score"] == 67
        # The drainers, through PgBouncer too.
        for prog in ("keel-drain-leaderboard", "keel-drain-notifications"):
            p = stack.program(prog, "--until-empty", "--budget", 30,
                              env=DRAIN_ENV, timeout=60)
            assert p.returncode == 0, p.stderr
            assert summary(p.stdout)["failed"] == 0, p.stdout
        e = [e for e in board(s, test["id"])["data"]
             if e["userId"] == student["id"]]
        assert [(x["score"], x["attempts"], x["rank"]) for x in e] == \
            [(67, 1, 1)]
    assert stack.psql("SELECT count(*) FROM notifications WHERE user_id = "
                      "%d AND kind = 'attempt_graded'" % student["id"]) == "1"


# ---------------------------------------------------------------- cron

def test_cron_drainers_and_the_rebuild_work_through_pgbouncer(stack, crew):
    stack.psql("DELETE FROM outbox")
    p = stack.program("keel-queues", "purge", "email", "all")
    assert p.returncode == 0, p.stderr
    stack.clear_mail()
    stack.set_smtp_mode("accept")
    # Jobs committed while their push was lost: the relay's to send.
    for i in range(3):
        stack.psql("INSERT INTO outbox (queue, kind, payload, "
                   "idempotency_key) VALUES ('email', 'password_reset', "
                   "'{\"to\": \"pgb%d@example.com\", \"name\": \"P\", "
                   "\"link\": \"https://keel.example/r?t=%d\"}', "
                   "'pgb-%d')" % (i, i, i))
    p = stack.program("keel-outbox-relay", "--once")
    assert p.returncode == 0, p.stderr
    assert "processed=3" in p.stdout, p.stdout
    p = stack.program("keel-drain-email", "--until-empty", "--budget", 30,
                      env=FAST, timeout=60)
    assert p.returncode == 0, p.stderr
    s = summary(p.stdout)
    assert (s["processed"], s["failed"]) == (3, 0), p.stdout
    assert {m["Message-ID"] for m in stack.mail()} == outbox_message_ids(
        stack, "idempotency_key LIKE 'pgb-%'")
    assert len(stack.mail()) == 3
    assert stack.psql("SELECT count(*) FROM outbox WHERE pushed_at IS NULL "
                      "OR finished_at IS NULL") == "0"
    # The rebuild: a temp table (ON COMMIT DROP) and a cursor, all in
    # one transaction, so one server connection.
    p = stack.program("keel-leaderboard-rebuild", timeout=120)
    assert p.returncode == 0, p.stderr
    assert "failed=0" in p.stdout, p.stdout


# ---------------------------------------------------------------- load

class PooledLoad:
    """LOAD_CLIENTS clients for LOAD_SECONDS through base_url (a stack's
    lighttpd, or a fleet's HAProxy), each PATCHing a car of its own,
    booking it, listing contracts (staff's on the primary, the
    customer's on the replica) and notifications, while PostgreSQL's
    keel connections on each server of stores are sampled every 50 ms.
    After run(): done, bad (what failed), peak and samples per server,
    clients (keel's client connections at PgBouncer) and xacts
    (PgBouncer's transactions per database)."""

    def __init__(self, stores, base_url, staff, customer):
        self.stores, self.base_url = stores, base_url
        self.staff = staff
        self.cust, self.cust_headers = customer
        self.peak = {"primary": 0, "replica": 0}
        self.samples = []
        self.done, self.bad = 0, []
        self.clients, self.xacts = [], {}

    def run(self):
        with BaseUrlSession(self.base_url) as s:
            s.headers.update(self.staff)
            self.cars = [new_car(s, manufacturer="Load")["id"]
                         for _ in range(LOAD_CLIENTS)]
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(stop,))
        sampler.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(LOAD_CLIENTS) as ex:
                results = list(ex.map(self._client, range(LOAD_CLIENTS)))
            self.clients = [r for r in console(self.stores, "SHOW CLIENTS")
                            if r[2] == "keel"]
            self.xacts = {r[0]: int(r[1])
                          for r in console(self.stores, "SHOW STATS")}
        finally:
            stop.set()
            sampler.join(timeout=30)
        self.done = sum(d for d, _ in results)
        self.bad = [b for _, bs in results for b in bs]
        return self

    def _sample(self, stop):
        while not stop.is_set():
            for name in self.peak:
                n = backends(self.stores, replica=name == "replica")
                self.peak[name] = max(self.peak[name], n)
                self.samples.append(n)
            stop.wait(0.05)

    def _client(self, i):
        done, bad, day = 0, [], 0
        deadline = time.monotonic() + LOAD_SECONDS
        car = self.cars[i]
        with BaseUrlSession(self.base_url) as c:
            c.headers.update(self.staff)
            while time.monotonic() < deadline:
                day += 1
                # (method, path, body, headers: the customer's, or
                # None for staff's, status wanted: None for a contract)
                calls = (
                    ("GET", "/_test/db/settings", None, None, 200),
                    ("PATCH", "/api/cars/%d" % car,
                     {"year": 2000 + day % 20}, None, 200),
                    ("GET", "/api/contracts", None, None, 200),
                    ("POST", "/api/contracts", {
                        "carId": car, "customerId": self.cust["id"],
                        "startDate": "2040-01-%02d" % (day % 27 + 1),
                        "endDate": "2040-01-%02d" % (day % 27 + 2)},
                     None, None),
                    ("GET", "/api/notifications", None, None, 200),
                    ("GET", "/api/contracts", None, self.cust_headers,
                     200),
                )
                for method, path, body, h, want in calls:
                    try:
                        r = c.request(method, path, json=body, headers=h,
                                      timeout=30)
                    except requests.RequestException as e:
                        bad.append("%s %s: %r" % (method, path, e))
                        continue
                    # A contract's day may be taken by this client's
                    # previous round: 201 or 409, nothing else.
                    ok = r.status_code == want if want else \
                        r.status_code in (201, 409)
                    if not ok:
                        bad.append("%s %s: %d %s" % (method, path,
                                                     r.status_code,
                                                     r.text[:200]))
                    done += 1
        return done, bad

    def assert_within_the_pool(self):
        """Every request succeeded, and PostgreSQL saw the pool, not
        apps x workers, while more clients than that used PgBouncer."""
        assert not self.bad, self.bad[:10]
        assert self.done >= LOAD_CLIENTS * 5
        assert len(self.samples) >= 10
        assert len(self.clients) > POOL, self.clients
        assert 1 <= self.peak["primary"] <= POOL, self.peak
        assert self.peak["replica"] <= POOL, self.peak
        assert self.xacts["keel"] > 0 and \
            self.xacts["keel_replica"] > 0, self.xacts


def test_postgresql_connections_stay_within_the_pool_under_load(stack, crew):
    """LOAD_CLIENTS clients over four apps (WORKERS workers each, so
    more client connections than POOL): PostgreSQL's connection count on
    each server, sampled from a direct connection throughout, never
    passes POOL, and every request succeeds.  The customer's reads go to
    the replica, through PgBouncer's keel_replica."""
    PooledLoad(stack, stack.base_url, crew["staff"],
               crew["customer"]).run().assert_within_the_pool()


def test_a_primary_restart_is_survived_through_pgbouncer(stack, crew):
    """The workers' connections are to PgBouncer and outlive the
    primary's restart; PgBouncer logs in to the new server (the start
    sets the role's password again, with a new SCRAM salt) and writes
    succeed again."""
    with BaseUrlSession(stack.base_url) as s:
        s.headers.update(crew["staff"])
        new_car(s, manufacturer="Restart")
        stack.stop_component("primary")
        stack.start_component("primary")

        def write():
            try:
                return s.post("/api/cars", json=car_body(
                    manufacturer="Restart"), timeout=30).status_code == 201
            except requests.RequestException:
                return False
        wait_until(write, 60, "a write through PgBouncer after the restart",
                   step=0.2)
        for _ in range(10):
            new_car(s, manufacturer="Restart")
    # (A write answered 503 while the primary was away may have run.)
    assert int(stack.psql("SELECT count(*) FROM cars WHERE manufacturer = "
                          "'Restart'")) >= 12


# ------------------------------------------- named statements: refused

def start_pgbouncer(stack, pool, ignore):
    """A second PgBouncer (transaction pooling, pool server connections)
    in front of the stack's primary, configured by scripts/stack's
    scripts/pgbouncer_conf.py with the stack's auth file; (Popen, port)."""
    d = stack.path("pgbouncer-%d" % pool)
    os.makedirs(d, exist_ok=True)
    port = free_port()
    ini = os.path.join(d, "pgbouncer.ini")
    with open(ini, "w") as f:
        subprocess.run(["/usr/bin/python3",
                        os.path.join(ROOT, "scripts", "pgbouncer_conf.py"),
                        "--port", str(port), "--pool", str(pool),
                        "--auth-file", stack.path("pgbouncer", "userlist.txt"),
                        "--ignore-startup-parameters", ignore,
                        "keel=127.0.0.1:%d/keel" % stack.ports["pg"]],
                       stdout=f, check=True)
    binary = "/usr/sbin/pgbouncer"
    argv = [binary] + (["-u", "postgres"] if os.geteuid() == 0 else []) + [ini]
    log = open(os.path.join(d, "pgbouncer.log"), "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    log.close()

    def up():
        import socket
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_until(lambda: up() or proc.poll() is not None, 15, "pgbouncer")
    assert proc.poll() is None, open(os.path.join(d, "pgbouncer.log")).read()
    return proc, port


def prune(stack, url, prepared):
    """keel-jobs-prune (two named statements, each its own transaction)
    with DATABASE_URL=url and KEEL_DB_PREPARED=prepared: (exit status,
    its log with lib/log.c's escapes undone)."""
    p = stack.program("keel-jobs-prune", env={
        "DATABASE_URL": url, "KEEL_DB_PREPARED": str(prepared)}, timeout=60)
    return p.returncode, re.sub(r"\\x([0-9a-f]{2})",
                                lambda m: chr(int(m.group(1), 16)), p.stderr)


def test_named_statements_are_refused_at_startup(stack):
    """Debian's PgBouncer refuses startup parameters it doesn't track:
    mode 1's session options (statement_timeout, plan_cache_mode) stop
    it at the door, while mode 0, sending none, passes (the stack)."""
    rc, log = prune(stack, stack.env["DATABASE_URL"], 1)
    assert rc != 0, log
    assert "FATAL:  unsupported startup parameter: options" in log, log
    rc, log = prune(stack, stack.env["DATABASE_URL"], 0)
    assert rc == 0, log


def test_named_statements_collide_on_a_pooled_connection(stack):
    """With the options dropped (ignore_startup_parameters), mode 1 gets
    in and prepares its statements on the pool's one server connection,
    which outlives the client: the next client to prepare the same name
    there is told it already exists.  Mode 0 runs again and again."""
    proc, port = start_pgbouncer(stack, 1, "options")
    try:
        url = stack.env["DATABASE_URL"].rsplit("@", 1)[0] + \
            "@127.0.0.1:%d/keel" % port
        for _ in range(2):
            rc, log = prune(stack, url, 0)
            assert rc == 0, log
        rc, log = prune(stack, url, 1)
        assert rc == 0, log
        rc, log = prune(stack, url, 1)
        assert rc != 0, log
        assert 'sqlstate=42P05 ERROR:  prepared statement ' \
            '"jobs_outbox_prune" already exists' in log, log
        rc, log = prune(stack, url, 0)
        assert rc == 0, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
