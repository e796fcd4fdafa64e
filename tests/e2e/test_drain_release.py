# SPDX-License-Identifier: ISC
"""test_drain_release.py -- what a drainer does with a job that fails
while PostgreSQL doesn't answer (lib/drain.c): handed back uncounted, but
only so many times, so a job that takes PostgreSQL down itself, or
whose failures meet an outage every time, still reaches the dead
letters; a run that starts while PostgreSQL is down leases nothing, so
a long outage costs no job a hand-back; and one ping per batch, not one
per failed job.

The drainers are tests/bench/keel-drain-noop, whose "retry" jobs fail
every attempt without touching the database, and
keel-drain-notifications, whose jobs write a row.  "PostgreSQL down" is
a drainer's DATABASE_URL pointing at a loopback port nothing listens on,
so the stack's primary stays up for the other suites; "PostgreSQL that
a job takes down" is a relay to the primary that drops its connections
once the job's key reaches it (DyingPostgres).
"""

import re
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from helpers import redis_cli
from stack import free_port
from test_jobs import FAST, enqueue, stats, summary
from test_refused_writes import drained_once, notification_job

# lib/drain.c's DRAIN_OUTAGES_MAX: hand-backs before the attempt counts.
OUTAGES_MAX = 10
# The noop queue's policy (lib/queue.c): 3 attempts.
NOOP_ATTEMPTS = 3


@pytest.fixture
def noop(stack):
    p = stack.program("keel-queues", "purge", "noop", "all")
    assert p.returncode == 0, p.stderr
    yield stack
    p = stack.program("keel-queues", "purge", "noop", "all")
    assert p.returncode == 0, p.stderr


def dead_database_url(stack):
    """The stack's DATABASE_URL with its port changed to a free one: a
    PostgreSQL that refuses every connection, as a stopped one does."""
    u = urlsplit(stack.env["DATABASE_URL"])
    netloc = "%s127.0.0.1:%d" % (u.netloc.rpartition("@")[0] + "@"
                                 if "@" in u.netloc else "", free_port())
    return urlunsplit(u._replace(netloc=netloc))


def drain_into(stack, prog, env, total):
    """One run of drainer prog (a budget of 1 s) with env; adds its
    summary's counts to total's keys and returns its stderr."""
    p = stack.program(prog, "--until-empty", "--budget", 1, env=env,
                      timeout=60)
    assert p.returncode == 0, p.stderr
    s = summary(p.stdout)
    for k in total:
        total[k] += s[k]
    return p.stderr

class DyingPostgres:
    """A TCP relay to the stack's primary that goes down -- drops every
    connection through it and closes each new one at once, as a
    PostgreSQL in crash recovery turns clients away -- as soon as
    `marker` (a job's key) reaches it, before passing it on: a job whose
    statement gets its backend killed.  revive() brings it back, as the
    recovery ends.  url: a DATABASE_URL through it (no TLS, so it sees
    the key)."""

    def __init__(self, stack, marker):
        u = urlsplit(stack.env.get("KEEL_STACK_PG_URL")
                     or stack.env["DATABASE_URL"])
        self.target = (u.hostname, u.port)
        self.marker = marker.encode()
        self.deaths = 0
        self.down = False
        self.lock = threading.Lock()
        self.socks = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.closed = threading.Event()
        auth = u.netloc.rpartition("@")[0]
        self.url = urlunsplit(u._replace(
            netloc="%s127.0.0.1:%d" % (auth + "@" if auth else "",
                                       self.listener.getsockname()[1]),
            query="sslmode=disable"))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed.set()
        self.thread.join(10)
        self.listener.close()
        self._drop()

    def revive(self):
        with self.lock:
            self.down = False

    def _drop(self):
        with self.lock:
            socks, self.socks = self.socks, set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _die(self):
        with self.lock:
            self.down = True
            self.deaths += 1
        self._drop()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            with self.lock:
                down = self.down
            if down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self.lock:
                self.socks.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False),
                             daemon=True).start()

    def _pump(self, src, dst, watch):
        tail = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if watch and self.marker in tail + data:
                self._die()
                return
            tail = (tail + data)[-len(self.marker):]
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_job_that_takes_postgresql_down_dies_after_10_hand_backs(noop):
    """A job that fails every time, PostgreSQL answering when the run
    starts and down once the job has been at it (DyingPostgres: the
    drainer's question whether the job ran already brings the key), is
    handed back OUTAGES_MAX times without counting the attempt, then
    its attempts count: retried, then dead-lettered -- not handed back
    forever.  One drainer run (1 s) leases it at most once: after the
    failure it waits for PostgreSQL."""
    enqueue(noop, "retry", "{}", key="poison-1", queue="noop")
    total = {"released": 0, "retried": 0, "failed": 0}
    errs = ""
    deadline = time.monotonic() + 120
    runs = 0
    with DyingPostgres(noop, "poison-1") as pg:
        env = dict(FAST, DATABASE_URL=pg.url)
        while runs < 3 * OUTAGES_MAX and time.monotonic() < deadline:
            runs += 1
            pg.revive()
            errs += drain_into(noop, "keel-drain-noop", env, total)
            if stats(noop, "noop")["failed"] == 1:
                break
        deaths = pg.deaths
    assert stats(noop, "noop") == {"waiting": 0, "active": 0, "delayed": 0,
                                   "completed": 0, "failed": 1}, \
        (runs, total, errs[-3000:])
    assert total == {"released": OUTAGES_MAX, "retried": NOOP_ATTEMPTS - 1,
                     "failed": 1}, (runs, total, errs[-3000:])
    # Every attempt took PostgreSQL down, and each run found it up.
    assert deaths == OUTAGES_MAX + NOOP_ATTEMPTS, (deaths, errs[-3000:])
    assert "leasing nothing this run" not in errs, errs[-3000:]
    assert "waiting for PostgreSQL" in errs
    assert "counted" in errs
    # The dead letter says why it was counted, for the operator.
    why = redis_cli(noop, "HGET", "keel:q:noop:j:poison-1", "error")
    assert "fails every attempt" in why, why
    assert "PostgreSQL" in why, why


def test_postgresql_down_for_12_runs_costs_the_front_job_nothing(stack):
    """PostgreSQL down before each of 12 drainer runs, more than the
    OUTAGES_MAX hand-backs a job has: no run leases anything, so the
    job that needs PostgreSQL waits, neither handed back (its outage
    count untouched) nor counted nor dead-lettered, as DESIGN.md says
    ("wait"); once PostgreSQL is back it runs and completes."""
    key = notification_job(stack)
    jk = "keel:q:notifications:j:" + key
    before = stats(stack, "notifications")
    env = dict(FAST, DATABASE_URL=dead_database_url(stack))
    total = {"processed": 0, "released": 0, "retried": 0, "failed": 0}
    errs = ""
    for _ in range(OUTAGES_MAX + 2):
        errs += drain_into(stack, "keel-drain-notifications", env, total)
    # state, attempts, outages (HGET of a missing field: "").
    assert [redis_cli(stack, "HGET", jk, f) for f in
            ("state", "attempts", "outages")] == ["waiting", "0", ""], \
        (total, errs[-3000:])
    assert total == {"processed": 0, "released": 0, "retried": 0,
                     "failed": 0}, (total, errs[-3000:])
    assert errs.count("doesn't answer; leasing nothing this run") == \
        OUTAGES_MAX + 2, errs[-3000:]
    assert stats(stack, "notifications")["failed"] == before["failed"]
    drained_once(stack, key)
    assert redis_cli(stack, "HGET", jk, "state") == "completed"


def test_a_batch_of_failed_jobs_pings_postgresql_once(noop):
    """Five jobs leased together that all fail, PostgreSQL up: one ping
    after the first failure answers for the batch; each attempt counts.
    The three attempts are three batches: three pings, not fifteen."""
    enqueue(noop, "retry", "{}", queue="noop", count=5)
    p = noop.program("keel-drain-noop", "--until-empty", "--budget", 30,
                     env=dict(FAST, KEEL_LOG_LEVEL="debug"), timeout=90)
    assert p.returncode == 0, p.stderr
    s = summary(p.stdout)
    assert s["retried"] == 5 * (NOOP_ATTEMPTS - 1) and s["failed"] == 5, \
        (s, p.stderr[-3000:])
    assert s["released"] == 0, (s, p.stderr[-3000:])
    pings = re.findall(r"pinging PostgreSQL", p.stderr)
    assert len(pings) == NOOP_ATTEMPTS, p.stderr[-3000:]
