# SPDX-License-Identifier: ISC
"""test_db_deadline.py -- a frozen or dying PostgreSQL against the
client-side deadlines of lib/db.c and the roll's deadline of lib/serve.c
(issue 9, item 7; README "PostgreSQL: deadlines and failures").

The primary is frozen by SIGSTOP of its postmaster and every process under
it (a storage stall as the workers see it: connects land in the listen
backlog, statements are never answered); every test that freezes it sends
SIGCONT in a finally.  The apps under test are supervisors of our own
(keel-cars on a socket in a temp dir, test_serve's own_app) with a short
statement timeout, spoken to over FastCGI directly; the write-not-retried
test goes through lighttpd to the stack's cars app.  Every wait is bounded.
"""

import concurrent.futures
import contextlib
import json
import os
import random
import signal
import time

import pytest

from helpers import car_body, wait_until
from stack import alive, children
from test_serve import _tcp_peer_ports, fcgi_request
from test_serve import own_app  # noqa: F401 (a fixture)

# The app's settings under test, and what lib/db.c adds to them: a
# statement is given up DEADLINE_MARGIN after KEEL_DB_STATEMENT_TIMEOUT,
# the cancel that follows takes at most CANCEL_MAX; a connect is given up
# after KEEL_DB_CONNECT_TIMEOUT.
STATEMENT_MS = 1000
CONNECT_S = 1
DEADLINE_MARGIN = 1.0
CANCEL_MAX = 0.5
# What a loaded 2-core machine running sanitizer builds may add.
SLACK = 1.5
BOUND = STATEMENT_MS / 1000 + DEADLINE_MARGIN + CANCEL_MAX + SLACK


def cars_app(stack, own_app, **env):
    """A keel-cars supervisor of our own with env on top of the stack's."""
    binary = os.path.join(stack.build_dir, "fcgi-apps", "keel-cars")
    return own_app(argv=lambda sock: [binary, "--socket", sock], **env)


def call(app, token, method, uri, body=None, timeout=15):
    """(seconds taken, status, headers, parsed JSON body or None)."""
    headers = {"Authorization": "Bearer " + token}
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    t0 = time.monotonic()
    status, h, raw = fcgi_request(app.sock, method, uri, headers, data,
                                  timeout=timeout)
    took = time.monotonic() - t0
    return took, status, h, json.loads(raw) if raw else None


def assert_503(took, status, headers, body):
    assert status == 503, (status, body)
    assert headers["content-type"].startswith("application/json")
    assert body["error"] == "unavailable", body
    assert headers.get("retry-after") == "5"
    assert took < BOUND, took


def warm(stack, app, token):
    """The cached list is in memcached (answered HIT), and every worker
    holds its connection to the primary, so that a frozen primary meets
    statements sent on a live connection, not only connects."""
    def hit():
        return call(app, token, "GET", "/api/cars?limit=3")[2].get(
            "x-cache") == "HIT"
    wait_until(hit, 10, "the list to be cached", step=0.1)
    connect_workers(stack, lambda uri: call(app, token, "GET", uri),
                    app.workers)


def connect_workers(stack, get, workers):
    """Uncached lists, four at a time (each fill reads the primary), until
    every one of workers() holds a connection to the primary."""
    pg = stack.ports["pg"]
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        def connected():
            list(pool.map(lambda _: get("/api/cars?limit=%d" %
                                        random.randint(4, 100)), range(4)))
            return all(pg in _tcp_peer_ports(w) for w in workers())
        wait_until(connected, 15, "every worker connected to the primary")
    finally:
        pool.shutdown(wait=True)


@contextlib.contextmanager
def frozen_primary(stack):
    """SIGSTOP the primary's postmaster, then every process under it;
    SIGCONT them all on the way out, whatever happened."""
    with open(stack.path("pg", "primary", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    stopped = []
    try:
        os.kill(postmaster, signal.SIGSTOP)
        stopped.append(postmaster)
        # The postmaster forks nothing more once stopped.
        for pid in children(postmaster):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_db_frozen_primary_503_within_deadline_then_recovers(
        stack, own_app, admin_token):
    """Every request that needs the frozen primary answers a JSON 503
    within the statement's deadline -- the first, two at once (both
    workers), a third -- so no worker stays pinned and a cached GET is
    still served; after SIGCONT the workers reconnect and write again."""
    app = cars_app(stack, own_app, KEEL_WORKERS=2,
                   KEEL_DB_STATEMENT_TIMEOUT=STATEMENT_MS,
                   KEEL_DB_CONNECT_TIMEOUT=CONNECT_S)
    warm(stack, app, admin_token)
    cars = [car_body() for _ in range(4)]
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        with frozen_primary(stack):
            assert_503(*call(app, admin_token, "POST", "/api/cars",
                             cars[0]))
            both = [pool.submit(call, app, admin_token, "POST", "/api/cars",
                                c) for c in cars[1:3]]
            for f in both:
                assert_503(*f.result(timeout=BOUND + 15))
            assert_503(*call(app, admin_token, "POST", "/api/cars",
                             cars[3]))
            took, status, h, _ = call(app, admin_token, "GET",
                                      "/api/cars?limit=3")
            assert (status, h.get("x-cache")) == (200, "HIT")
            assert took < SLACK, took
    finally:
        pool.shutdown(wait=True)
    # Back: the next write reconnects and commits.
    took, status, _, body = call(app, admin_token, "POST", "/api/cars",
                                 car_body(), timeout=30)
    assert status == 201, body
    # A statement given up on may still have run when the server woke (it
    # was sent): at most once, never twice.
    counts = stack.psql("SELECT count(*) FROM cars WHERE license_plate IN "
                        "(%s) GROUP BY license_plate" %
                        ", ".join("'%s'" % c["licensePlate"] for c in cars))
    assert all(n == "1" for n in counts.split()), counts
    assert "statement deadline" in app.text()


@contextlib.contextmanager
def worker_stuck(stack, own_app, token):
    """An app of one worker (KEEL_SHUTDOWN_TIMEOUT=1) waiting on a write
    to the frozen primary, whose deadline (6 s) is later than that;
    yields (app, the worker's pid, the write's future)."""
    app = cars_app(stack, own_app, KEEL_WORKERS=1, KEEL_SHUTDOWN_TIMEOUT=1,
                   KEEL_DB_STATEMENT_TIMEOUT=5000,
                   KEEL_DB_CONNECT_TIMEOUT=CONNECT_S)
    warm(stack, app, token)
    worker = app.workers()[0]
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with frozen_primary(stack):
            stuck = pool.submit(call, app, token, "POST", "/api/cars",
                                car_body(), timeout=20)
            time.sleep(0.5)  # the worker has sent the statement
            yield app, worker, stuck
    finally:
        pool.shutdown(wait=True)


def test_db_sighup_roll_finishes_within_deadline_while_frozen(
        stack, own_app, admin_token):
    """The worker the roll retires is killed KEEL_SHUTDOWN_TIMEOUT after
    it was asked to leave, though its statement's deadline is later; the
    roll goes on, and the new worker serves."""
    with worker_stuck(stack, own_app, admin_token) as (app, old, stuck):
        t0 = time.monotonic()
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: not alive(old), 1 + SLACK + 1,
                   "the stuck worker to be gone", step=0.02)
        took = time.monotonic() - t0
        wait_until(lambda: "reload: all 1 workers replaced" in app.text(),
                   2, "the roll to finish")
        _, status, h, _ = call(app, admin_token, "GET", "/api/cars?limit=3",
                               timeout=5)
        assert (status, h.get("x-cache")) == (200, "HIT")
    assert took < 1 + SLACK, took
    with pytest.raises(ConnectionError):
        stuck.result(timeout=0)
    assert "reload: killing worker %d" % old in app.text()


def test_db_sigterm_kills_worker_stuck_on_frozen_primary(
        stack, own_app, admin_token):
    """SIGTERM's forced kill after KEEL_SHUTDOWN_TIMEOUT covers a worker
    waiting on a statement whose deadline is later."""
    with worker_stuck(stack, own_app, admin_token) as (app, worker, stuck):
        t0 = time.monotonic()
        os.kill(app.pid, signal.SIGTERM)
        app.proc.wait(timeout=1 + SLACK + 5)
        took = time.monotonic() - t0
    assert took < 1 + SLACK, took
    assert not alive(worker)
    with pytest.raises(ConnectionError):
        stuck.result(timeout=0)
    assert "killing 1 workers after 1 s" in app.text()


def test_db_write_not_resent_after_its_connection_died(stack, http):
    """A write whose backend is terminated while it runs may have
    committed as far as the app can tell: it answers 503 and does not run
    the statement again on a new connection.  A trigger counts the
    executions (nextval survives the rollback) and sleeps, so the test
    can find the backend and terminate it."""
    connect_workers(stack, http.get, lambda: stack.worker_pids("cars"))
    body = car_body()
    tag = body["licensePlate"]
    stack.psql("""
        CREATE SEQUENCE test_deadline_execs;
        CREATE FUNCTION test_deadline_exec() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.license_plate = '%s' THEN
                PERFORM nextval('test_deadline_execs');
                PERFORM pg_sleep(3);
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER test_deadline_exec BEFORE INSERT ON cars
            FOR EACH ROW EXECUTE FUNCTION test_deadline_exec();
    """ % tag)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        post = pool.submit(http.post, "/api/cars", json=body, timeout=30)
        backend = wait_until(lambda: stack.psql(
            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
            "AND query LIKE 'INSERT INTO cars%'"), 10, "the write to run")
        stack.psql("SELECT pg_terminate_backend(%s)" % backend)
        r = post.result(timeout=30)
    finally:
        pool.shutdown(wait=True)
        stack.psql("DROP TRIGGER test_deadline_exec ON cars; "
                   "DROP FUNCTION test_deadline_exec(); ")
    execs = stack.psql("SELECT last_value FROM test_deadline_execs")
    stack.psql("DROP SEQUENCE test_deadline_execs")
    assert (r.status_code, execs) == (503, "1"), r.text
    assert r.json()["error"] == "unavailable"
    assert stack.psql("SELECT count(*) FROM cars WHERE license_plate = "
                      "'%s'" % tag) == "0"
