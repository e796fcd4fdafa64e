# SPDX-License-Identifier: ISC
"""test_faults.py -- what survives what (issue 9): under a steady, bounded
load (faultload.py), each dependency is taken away in turn and brought
back, and what the clients saw is held to DESIGN.md's table "When a
dependency fails"; a phase whose figures break its row fails.

The suite runs on a stack of its own (the module's `stack` overrides
conftest's), so its faults can't leak into other suites, with short
database deadlines (ENV): "no request hangs past its timeout" is then
keel's own timeout -- a connect plus one statement, DEADLINE with slack
for a shared 2-core machine -- and not lighttpd's 504, the net behind it
(KEEL_FCGI_TIMEOUT, 12 s in the tests).

A phase: BASE seconds of load; the dependency taken away; OUTAGE seconds
(the frozen primary: FREEZE, past the deadline); brought back; the stack
healthy again (/health ok, a customer's reads answered); AFTER seconds.
Then the outbox relay and the email drainer run, and every job committed
(an outbox row) must have been delivered (its Message-ID in the SMTP
server's maildir).  A request is judged by when it ran: before the fault
or after the recovery only its success status will do; overlapping the
fault, also what the phase's row allows (`during`); wholly inside it,
what the row demands (`inside`).  Always: no 500, no answer later than
DEADLINE, a 503 or 504 says "unavailable", every answer as
docs/openapi.yaml describes it, and nothing half-written (an invited
user and the job of their email exist together or not at all; every
201 is there).

The figures go to $KEEL_BUILD_DIR/faults.md and the run's summary.
"""

import collections
import os
import re
import signal
import time

import pytest
import requests

import faultload
import test_jobs
from accounts import make_user, session_for
from faultload import READ, RESET, WRITE
from helpers import (BaseUrlSession, new_car, redis_cli, request,
                     uniq, wait_until)
from stack import Stack, StackError, alive, children
from test_jobs import (FAST, outbox_message_ids, relay_and_drain, stats,
                       summary)

# Each phase starts from empty queues, outbox and maildir.
jobs = test_jobs.jobs

# Short database deadlines, so that keel's own comes before lighttpd's;
# a worker for every request that can be in flight (five actors and the
# health probe), so a request's time is its own, never a wait behind
# another's; the relay asks Redis about every job pushed over a second
# ago (not every 30 s), so it re-pushes what a crash lost in one run.
ENV = {"KEEL_DB_CONNECT_TIMEOUT": "2", "KEEL_DB_STATEMENT_TIMEOUT": "3000",
       "KEEL_WORKERS": "6", "KEEL_RELAY_RECHECK": "1"}
SLACK = 3.0                 # seconds: a loaded, shared 2-core machine
DEADLINE = (int(ENV["KEEL_DB_CONNECT_TIMEOUT"])
            + int(ENV["KEEL_DB_STATEMENT_TIMEOUT"]) / 1000 + SLACK)
BASE, OUTAGE, AFTER = 2.5, 4.0, 3.0     # seconds of load in each window
FREEZE = DEADLINE + 2.0     # a frozen primary outlasts the deadline
HEALTHY_WITHIN = 30         # seconds to recover once a dependency is back
PAUSE, MAIL_PAUSE = 0.02, 0.4           # seconds between an actor's asks


@pytest.fixture(scope="module")
def stack(request):
    """This module's own stack (without the test-only apps)."""
    s = Stack(extra_apps=None, env=ENV)
    request.addfinalizer(s.stop)
    try:
        s.start()
    except StackError as e:
        pytest.fail("could not start the fault suite's stack: %s" % e)
    return s


def client_timeout(stack):
    """Seconds a client waits: lighttpd's own limit (read-timeout, checked
    once a second) and then some, so a hang is seen, never waited out."""
    with open(stack.path("lighttpd-apps.conf")) as f:
        m = re.search(r'"read-timeout" => (\d+)', f.read())
    return int(m.group(1)) + 7


@pytest.fixture(scope="module")
def crew(stack):
    """The users the load runs as, logged in, and cars to read."""
    with BaseUrlSession(stack.base_url) as s:
        staff = [session_for(stack, s, "staff")[1] for _ in range(2)]
        customers = [session_for(stack, s, "customer") for _ in range(2)]
        admin = session_for(stack, s, "admin")[1]
        s.headers.update(staff[0])
        cars = [new_car(s)["id"] for _ in range(3)]
    return {"staff": staff, "customers": customers, "admin": admin,
            "cars": cars}


@pytest.fixture(scope="module")
def table(request, stack):
    """The rows of the phases run; written out when the module ends."""
    rows = []
    yield rows
    if not rows:
        return
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    text = ("tests/e2e/test_faults.py, %s, load average %s on %d CPUs; "
            "deadline %g s\n\n%s" % (
                time.strftime("%Y-%m-%d %H:%M %Z"), load, os.cpu_count(),
                DEADLINE, faultload.render(rows)))
    path = os.path.join(stack.build_dir, "faults.md")
    with open(path, "w") as f:
        f.write(text)
    request.config.stash[faultload.TABLE] = (path, text)


# ----------------------------------------------------------------- phases

class Phase:
    """Taking one dependency away.  during: statuses each kind of request
    may answer, besides its success, while the fault lasts; inside: the
    only ones it may answer wholly inside the outage."""

    name = row = ""
    during = {}
    inside = {}
    outage = OUTAGE

    def take(self, stack):
        stack.stop_component(self.component)

    def give(self, stack):
        stack.start_component(self.component)   # a no-op when running

    def before_give(self, stack):
        pass

    def check(self, rec):
        """Why rec, wholly inside the outage, breaks the row (or None)."""
        return None

    def felt(self, stack, inside, during):
        """Problems if the records don't show the fault happened."""
        return []

    def deliver(self, stack):
        relay_and_drain(stack)
        return []


class MemcachedStop(Phase):
    name, component = "memcached stop", "memcached"
    row = "DESIGN.md's failure table, row memcached"

    def check(self, rec):
        if rec.op.cached and rec.status == 200 and rec.xcache != "BYPASS":
            return "X-Cache %s with memcached down" % rec.xcache

    def felt(self, stack, inside, during):
        if not any(r.xcache == "BYPASS" for r in inside):
            return ["no cached read answered with memcached down"]
        return []


class RedisStop(Phase):
    name, component = "Redis stop", "redis"
    row = "DESIGN.md's failure table, row Redis"
    during = {READ: {503}, WRITE: {503}}
    inside = {READ: {503}, WRITE: {503}, RESET: {202}}

    def felt(self, stack, inside, during):
        out = []
        if not any(r.status == 503 for r in inside):
            out.append("no session route answered 503 with Redis down")
        if not any(r.op.kind == RESET and r.status == 202 for r in inside):
            out.append("no reset was committed with Redis down")
        return out


class RedisKill(RedisStop):
    name = "Redis kill -9"

    def take(self, stack):
        with open(stack.path("run", "redis.pid")) as f:
            pid = int(f.read())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            assert b"redis-server" in f.read(), "pid %d is not Redis" % pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid), 10, "Redis to die")


class RedisLostSecond(RedisKill):
    """DESIGN.md's "a crash that lost its last second": what reaches the
    disk stops (the AOF turned off, as test_outbox_crash.py does) while
    writes go on being acknowledged for LOST seconds, then Redis is
    killed and restarts from the older file -- a machine crash under
    appendfsync everysec.  Jobs pushed in that second are gone from
    Redis; their outbox rows are what is left of them."""

    name = "Redis crash, last 1 s lost"
    lost = 1.0

    def take(self, stack):
        who = make_user(stack, "customer")["email"]
        self.since = stack.psql("SELECT now()")
        redis_cli(stack, "CONFIG", "SET", "appendonly", "no")
        # At least this job is pushed in the second Redis will lose.
        r = request("POST", stack.url("/api/auth/password-reset"),
                    json={"email": who}, timeout=10)
        assert r.status_code == 202, r.text
        time.sleep(self.lost)
        super().take(stack)
        self.until = stack.psql("SELECT now()")

    def give(self, stack):
        super().give(stack)
        # Restarted, Redis reads its configuration (appendonly yes); a
        # take that failed before the kill left it running without.
        redis_cli(stack, "CONFIG", "SET", "appendonly", "yes")

    def felt(self, stack, inside, during):
        out = super().felt(stack, inside, during)
        n = stack.psql("SELECT count(*) FROM outbox WHERE pushed_at "
                       "BETWEEN '%s' AND '%s'" % (self.since, self.until))
        if n == "0":
            out.append("no job was pushed in the lost second")
        return out


class ReplicaStop(Phase):
    name, component = "replica stop", "replica"
    row = "DESIGN.md's failure table, row read replica"

    def felt(self, stack, inside, during):
        if not any(r.op.kind == READ and r.status == 200 for r in inside):
            return ["no read answered with the replica down"]
        return []


class PrimaryStop(Phase):
    name, component = "primary stop", "primary"
    row = "DESIGN.md's failure table, row primary"
    during = {READ: {503}, WRITE: {503}, RESET: {503}}
    inside = {WRITE: {503}, RESET: {503}}

    def felt(self, stack, inside, during):
        out = []
        if not any(r.op.kind == WRITE and r.status == 503 for r in inside):
            out.append("no write answered 503 with the primary down")
        if not any(r.op.kind == READ and r.status == 200 for r in inside):
            out.append("no read served with the primary down")
        return out


class PrimaryFreeze(PrimaryStop):
    """The primary's processes stopped (SIGSTOP): connections stay open
    and nothing answers, as on a stalled disk or a lost network."""

    name = "primary SIGSTOP"
    during = {READ: {503, 504}, WRITE: {503, 504}, RESET: {503, 504}}
    inside = {WRITE: {503, 504}, RESET: {503, 504}}
    outage = FREEZE

    def take(self, stack):
        data = os.path.join(os.path.realpath(stack.path("pg")), "primary")
        with open(os.path.join(data, "postmaster.pid")) as f:
            pm = int(f.readline())
        self.frozen = [pm]
        # The postmaster first: stopped, it forks no one new.
        os.kill(pm, signal.SIGSTOP)
        for pid in children(pm):
            os.kill(pid, signal.SIGSTOP)
            self.frozen.append(pid)

    def give(self, stack):
        for pid in reversed(getattr(self, "frozen", [])):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []

    def felt(self, stack, inside, during):
        if not any(r.status in (503, 504) or r.duration > 1
                   for r in during):
            return ["no request met the frozen primary"]
        return []


class SmtpDown(Phase):
    """Not a row of DESIGN.md's failure table: its "Jobs, outbox and
    cron" (retries with backoff, README's policy table: email 3 attempts,
    2 s doubling), so a server back within the retries gets every
    email, and writes never wait for it."""

    name, component = "SMTP server stop", "smtp"
    row = "DESIGN.md's \"Jobs, outbox and cron\" (retries)"

    def before_give(self, stack):
        # A drainer meets the dead server, then it comes back.
        self.drainer = stack.spawn("keel-drain-email", "--until-empty",
                                   "--budget", 40, env=FAST)
        wait_until(lambda: self.drainer.poll() is not None
                   or stats(stack)["delayed"] > 0, 10)

    def deliver(self, stack):
        out = []
        try:
            got, _ = self.drainer.communicate(timeout=60)
        finally:
            if self.drainer.poll() is None:
                self.drainer.kill()
                self.drainer.wait()
        s = summary(got)
        if s["retried"] == 0:
            out.append("the drainer never met the stopped server")
        relay_and_drain(stack)
        if stats(stack)["failed"]:
            out.append("%d emails dead-lettered" % stats(stack)["failed"])
        return out


# A restarted primary leaves each idle worker a connection that died
# with it, which the worker finds only when it next writes; stopping the
# primary last keeps what it leaves behind in its own row.
PHASES = [MemcachedStop(), RedisStop(), RedisKill(), RedisLostSecond(),
          ReplicaStop(), SmtpDown(), PrimaryFreeze(), PrimaryStop()]


# ---------------------------------------------------------------- judging

def healthy(stack, crew):
    """/health says ok and a customer's reads are answered."""
    h = crew["customers"][0][1]
    try:
        r = request("GET", stack.url("/health"), timeout=5)
        if r.status_code != 200 or r.json()["status"] != "ok":
            return False
        return all(request("GET", stack.url(p), headers=h,
                           timeout=5).status_code == 200
                   for p in ("/api/auth/me", "/api/contracts"))
    except requests.RequestException:
        return False


def route(path):
    return re.sub(r"/\d+", "/{id}", path.split("?")[0])


def judge(rec, phase, marks):
    """Why rec breaks the phase's row, or None."""
    what = "%s %s" % (rec.op.method, route(rec.op.path))
    if rec.error:
        return "%s: %s" % (what, rec.error[:80])
    if rec.duration > DEADLINE:
        return "%s answered %s after more than %g s" % (what, rec.status,
                                                        DEADLINE)
    if rec.status in (503, 504) and rec.code != "unavailable":
        return "%s: %d says %r" % (what, rec.status, rec.code)
    allowed = {rec.op.ok}
    if marks["take"] <= rec.end and rec.start <= marks["healthy"]:
        allowed |= phase.during.get(rec.op.kind, set())
        if marks["down"] <= rec.start and rec.end <= marks["back"]:
            allowed = phase.inside.get(rec.op.kind, allowed)
            why = phase.check(rec)
            if why:
                return "%s: %s" % (what, why)
    if rec.status not in allowed:
        return "%s: %d, not %s" % (what, rec.status,
                                   "/".join(map(str, sorted(allowed))))
    return None


def written(stack, records, tag):
    """Problems if a write is half-done or an acknowledged one missing."""
    out = []
    made = collections.defaultdict(list)
    for r in records:
        if r.status == 201:
            made[route(r.op.path)].append(r.body["id"])
    for path, tbl in (("/api/cars", "cars"), ("/api/contracts", "contracts"),
                      ("/api/users", "users")):
        ids = made.get(path)
        if ids:
            n = int(stack.psql("SELECT count(*) FROM %s WHERE id = ANY("
                               "'{%s}'::bigint[])" % (tbl, ",".join(
                                   map(str, ids)))))
            if n != len(ids):
                out.append("%d of %d created %s are missing"
                           % (len(ids) - n, len(ids), tbl))
    half = stack.psql(
        "SELECT count(*) FROM users u WHERE u.email LIKE 'inv-%s-%%' AND "
        "NOT EXISTS (SELECT FROM outbox o WHERE o.kind = "
        "'invitation_request' AND o.payload->>'userId' = u.id::text)" % tag)
    if half != "0":
        out.append("%s invited users without their email's job" % half)
    orphans = stack.psql(
        "SELECT count(*) FROM outbox o WHERE o.kind = 'invitation_request' "
        "AND NOT EXISTS (SELECT FROM users u WHERE u.id = "
        "(o.payload->>'userId')::bigint)")
    if orphans != "0":
        out.append("%s invitation jobs without their user" % orphans)
    return out


def count_resets(stack, emails):
    return int(stack.psql(
        "SELECT count(*) FROM outbox WHERE kind = 'password_reset_request' "
        "AND payload->>'email' IN (%s)" % ", ".join(
            "'%s'" % e for e in emails)))


def top(reasons, n=4):
    """The n commonest reasons, counted."""
    return ["%d× %s" % (k, why) for why, k in
            collections.Counter(reasons).most_common(n)]


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("phase", PHASES, ids=lambda p: re.sub(
    r"\W+", "-", p.name.lower()))
def test_fault(phase, jobs, crew, table):
    stack = jobs
    assert wait_until(lambda: healthy(stack, crew), HEALTHY_WITHIN), \
        "the stack is not healthy before the phase"
    tag = uniq("f").lower()
    targets = [make_user(stack, "customer")["email"] for _ in range(2)]
    cust_ids = [u["id"] for u, _ in crew["customers"]]
    actors = [("staff%d" % i, faultload.staff_writer(h, cust_ids), PAUSE)
              for i, h in enumerate(crew["staff"])]
    actors += [("customer%d" % i, faultload.customer_reader(h, crew["cars"]),
                PAUSE) for i, (_, h) in enumerate(crew["customers"])]
    actors.append(("mailer", faultload.mailer(crew["admin"], targets, tag),
                   MAIL_PAUSE))
    load = faultload.Load(stack.base_url, actors, client_timeout(stack),
                          hard_limit=120)
    problems, marks = [], {}
    load.start()
    try:
        time.sleep(BASE)
        marks["take"] = time.monotonic()
        try:
            phase.take(stack)
            marks["down"] = time.monotonic()
            time.sleep(phase.outage)
            phase.before_give(stack)
        finally:
            marks["back"] = time.monotonic()
            phase.give(stack)
        if not wait_until(lambda: healthy(stack, crew), HEALTHY_WITHIN):
            problems.append("not healthy %d s after it was back"
                            % HEALTHY_WITHIN)
        marks["healthy"] = time.monotonic()
        time.sleep(AFTER)
    finally:
        load.stop()
    recs = load.records
    for r in recs:
        r.verdict = judge(r, phase, marks)
    problems += top([r.verdict for r in recs if r.verdict])
    problems += load.broken
    inside = [r for r in recs if marks["down"] <= r.start
              and r.end <= marks["back"]]
    during = [r for r in recs if marks["take"] <= r.end
              and r.start <= marks["back"]]
    if len(inside) < 5:
        problems.append("requests answered inside the outage: only %d"
                        % len(inside))
    problems += phase.felt(stack, inside, during)
    problems += written(stack, recs, tag)
    acked = sum(1 for r in recs if r.op.kind == RESET and r.status == 202)
    if count_resets(stack, targets) < acked:
        problems.append("%d resets answered 202 but only %d committed"
                        % (acked, count_resets(stack, targets)))

    # Every job committed is delivered once the dependency is back.
    # (Emails only: a contract also queues its customer's notification.)
    want = outbox_message_ids(stack, "queue = 'email'")
    waited = int(stack.psql("SELECT count(*) FROM outbox WHERE "
                            "queue = 'email' AND pushed_at IS NULL"))
    try:
        problems += phase.deliver(stack)
    except AssertionError as e:
        problems.append("delivery: %s" % str(e).splitlines()[0][:120])
    sent = collections.Counter(m["Message-ID"] for m in stack.mail())
    got = set(sent)
    if want - got:
        problems.append("%d of %d committed jobs never delivered"
                        % (len(want - got), len(want)))
    if got - want:
        problems.append("%d emails no committed job asked for"
                        % len(got - want))
    # At-least-once delivery: a second copy is allowed, and shown.
    notes = ["%d waited in the outbox" % waited] if waited else []
    twice = sum(1 for n in sent.values() if n > 1)
    if twice:
        notes.append("%d sent twice" % twice)
    jobs_cell = "%d / %d" % (len(want), len(want & got))
    if notes:
        jobs_cell += " (%s)" % ", ".join(notes)
    table.append(faultload.Row(phase.name, recs, jobs_cell, problems))
    assert not problems, "%s breaks %s: %s" % (
        phase.name, phase.row, "; ".join(problems))
