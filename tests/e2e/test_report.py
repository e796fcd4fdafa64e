# SPDX-License-Identifier: ISC
"""test_report.py -- Sentry-compatible error reports (lib/report.c, issue
12 item 3) against the real stack: the apps, supervisors and drainers
spool envelopes into $stack/report, keel-report-ship (run here by hand,
as cron would) sends them to the stack's receiver (scripts/sentry_sink.py),
which stores each event; the tests read what it stored.

Every test finds its own events by something only it caused (a request
id, a worker's pid, a job's key): the stack is shared, and other suites'
requests spool transactions (SENTRY_TRACES_SAMPLE_RATE 0.1) and events
(test_serve kills workers) too.
"""

import concurrent.futures
import os
import re
import signal
import time

import pytest

from accounts import bearer, login, make_user
from helpers import BaseUrlSession, request, uniq, wait_until

SHIP = ("--until-empty", "--budget", 60, "--timeout", 5)


def ship(stack, env=None):
    """keel-report-ship until the spool is empty or the receiver says
    stop; its stdout (the summary line)."""
    p = stack.program("keel-report-ship", *SHIP, env=env, timeout=90)
    assert p.returncode == 0, p.stderr
    return p.stdout


def summary(out):
    """The summary line's k=v counts as a dict."""
    line = [ln for ln in out.splitlines() if ln.startswith(
        "keel-report-ship:")][-1]
    return {k: v for k, _, v in (w.partition("=") for w in line.split())
            if _}


def events_where(stack, **tags):
    """Stored error events (not transactions) whose tags hold tags."""
    return [(ev, raw) for ev, raw in stack.sentry_events().values()
            if ev.get("type") != "transaction" and
            all(ev.get("tags", {}).get(k) == v for k, v in tags.items())]


def backoff_file(stack):
    return stack.path("report", "backoff")


@pytest.fixture
def reports(stack):
    """A receiver that accepts, no back-off pending, an empty spool."""
    if "SENTRY_DSN" not in stack.env:
        pytest.skip("the stack runs without error reports (KEEL_SENTRY=0)")
    stack.set_sentry_mode("accept")
    try:
        os.unlink(backoff_file(stack))
    except OSError:
        pass
    ship(stack)
    yield stack
    stack.set_sentry_mode("accept")
    try:
        os.unlink(backoff_file(stack))
    except OSError:
        pass


def fail(stack, headers=None, json=None, rid_path="/_test/fail/4242"):
    """A request the test app answers 500; its X-Request-Id."""
    r = request("POST", stack.url(rid_path), headers=headers or {},
                json=json if json is not None else {"x": 1})
    assert r.status_code == 500, r.text
    return r.headers["X-Request-Id"]


# ----------------------------------------------------------- a 500

def test_forced_500_is_one_scrubbed_event(reports, stack):
    user = make_user(stack, "staff")
    with BaseUrlSession(stack.base_url) as s:
        token = login(s, user["email"])
    password = uniq("pw-hunter2-")
    cookie = uniq("cookie-value-")
    headers = dict(bearer(token))
    headers["Cookie"] = "keel_session=%s; theme=dark" % cookie
    headers["X-Trace-Note"] = "visible-header"
    rid = fail(stack, headers=headers,
               json={"login": user["email"], "password": password})
    ship(stack)
    found = events_where(stack, request_id=rid)
    assert len(found) == 1, found
    ev, raw = found[0]
    # Nothing secret anywhere in what the receiver got, nor in the logs.
    for secret in (password, token, cookie):
        assert secret.encode() not in raw
        assert secret not in stack.log("testapp")
    assert b"/_test/fail/4242" not in raw      # the pattern, not the path
    assert ev["environment"] == "stack"
    assert ev["release"].startswith("keel@")
    assert ev["platform"] == "c" and ev["level"] == "error"
    assert len(ev["event_id"]) == 32
    assert ev["user"] == {"id": str(user["id"])}
    assert ev["tags"]["route"] == "/_test/fail/{id:int}"
    assert ev["tags"]["app"] == "testapp"
    assert ev["tags"]["status"] == "500"
    assert ev["request"]["url"] == "/_test/fail/{id:int}"
    assert ev["request"]["method"] == "POST"
    h = ev["request"]["headers"]
    assert h["Authorization"] == "[Filtered]"
    assert h["Cookie"] == "[Filtered]"
    assert h["X-Trace-Note"] == "visible-header"
    assert "X-Forwarded-For" not in h
    assert ev["exception"]["values"][0]["type"] == "InternalError"
    assert "body" not in ev["request"] and "data" not in ev["request"]


def test_anonymous_500_has_no_user(reports, stack):
    rid = fail(stack)
    ship(stack)
    found = events_where(stack, request_id=rid)
    assert len(found) == 1
    assert "user" not in found[0][0]


# ------------------------------------------- a worker that died

def sleeping(pid):
    """Whether pid sleeps in nanosleep/clock_nanosleep: /_test/sleep."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0] in ("35", "230")
    except (OSError, IndexError):
        return False


def slow_request(pool, stack):
    """A 5 s request on a testapp worker, submitted to pool: (its
    future, the worker serving it)."""
    slow = pool.submit(request, "GET", stack.url("/_test/sleep?ms=5000"))
    return slow, wait_until(
        lambda: next((p for p in stack.worker_pids("testapp")
                      if sleeping(p)), None), 10,
        "a testapp worker in its slow request")


def test_worker_killed_mid_request_is_one_event(reports, stack):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow, victim = slow_request(pool, stack)
        os.kill(victim, signal.SIGKILL)
        slow.result(timeout=30)
    ship(stack)
    found = events_where(stack, pid=str(victim))
    assert len(found) == 1, found
    ev = found[0][0]
    assert ev["level"] == "fatal"
    assert ev["tags"]["app"] == "testapp" and ev["tags"]["signal"] == "9"
    assert ev["exception"]["values"][0]["type"] == "WorkerDied"
    # The request it was serving (the client never got its id).
    assert re.fullmatch(r"[0-9a-f]{16}", ev["tags"]["request_id"])
    assert ev["exception"]["values"][0]["value"].endswith(
        "during a request")


def test_old_worker_crashing_mid_roll_is_one_event(reports, stack):
    """A worker a SIGHUP's roll is retiring (it finishes its request
    first) that crashes meanwhile is reported like any other."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow, victim = slow_request(pool, stack)
        rolls = stack.log("testapp").count("workers replaced")
        execs = stack.log("testapp").count("reload: executing")
        os.kill(stack.app_pid("testapp"), signal.SIGHUP)
        wait_until(lambda: stack.log("testapp").count("reload: executing")
                   > execs, 20, "the reload")
        os.kill(victim, signal.SIGABRT)
        slow.result(timeout=30)
    wait_until(lambda: stack.log("testapp").count("workers replaced") >
               rolls, 30, "the roll to end")
    assert "reload: old worker %d killed by signal 6" % victim in \
        stack.log("testapp")
    ship(stack)
    found = events_where(stack, pid=str(victim))
    assert len(found) == 1, found
    ev = found[0][0]
    assert ev["tags"]["signal"] == "6"
    assert ev["exception"]["values"][0]["type"] == "WorkerDied"


@pytest.fixture
def short_shutdown(stack):
    """The testapp with KEEL_SHUTDOWN_TIMEOUT=1, started again as it was
    afterwards."""
    stack.restart_component("testapp", {"KEEL_SHUTDOWN_TIMEOUT": "1"})
    yield stack
    stack.stop_component("testapp")
    stack.start_component("testapp")


def test_worker_killed_at_shutdown_mid_request_is_one_event(
        reports, short_shutdown):
    """A worker still serving KEEL_SHUTDOWN_TIMEOUT after SIGTERM is
    killed and its client answered 500 by lighttpd: the lost request is
    an event naming it, not only a log line."""
    stack = short_shutdown
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow, victim = slow_request(pool, stack)
        stack.stop_component("testapp")
        assert slow.result(timeout=30).status_code >= 500
    assert "shutdown: killing 1 workers after 1 s" in stack.log("testapp")
    ship(stack)
    found = events_where(stack, pid=str(victim))
    assert len(found) == 1, found
    ev = found[0][0]
    assert ev["level"] == "error" and ev["tags"]["during"] == "shutdown"
    assert ev["exception"]["values"][0]["type"] == "WorkerKilled"
    assert re.fullmatch(r"[0-9a-f]{16}", ev["tags"]["request_id"])
    assert ev["exception"]["values"][0]["value"].endswith(
        "killed during a request")


def test_worker_killed_by_a_rolls_deadline_is_one_event(reports,
                                                         short_shutdown):
    """Likewise an old worker a SIGHUP's roll kills at the deadline (its
    request id was in the old image's scoreboard: not known)."""
    stack = short_shutdown
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow, victim = slow_request(pool, stack)
        os.kill(stack.app_pid("testapp"), signal.SIGHUP)
        wait_until(lambda: "reload: killing worker %d" % victim in
                   stack.log("testapp"), 20, "the roll's kill")
        assert slow.result(timeout=30).status_code >= 500
    ship(stack)
    found = events_where(stack, pid=str(victim))
    assert len(found) == 1, found
    ev = found[0][0]
    assert ev["tags"]["during"] == "reload"
    assert ev["exception"]["values"][0]["type"] == "WorkerKilled"


# ------------------------------------------------ dead letters

def enqueue(stack, kind, key, env=None):
    p = stack.program("keel-queues", "enqueue", "--key", key, "noop",
                      kind, "{}", env=env)
    assert p.returncode == 0, p.stderr


def purge_noop(stack):
    p = stack.program("keel-queues", "purge", "noop", "all")
    assert p.returncode == 0, p.stderr


def drain_noop(stack, env=None):
    p = stack.program("keel-drain-noop", "--until-empty", "--budget", 30,
                      env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_job_dead_lettered_for_an_internal_reason_is_one_event(reports,
                                                              stack):
    purge_noop(stack)
    retry, bad = uniq("retry-"), uniq("fail-")
    enqueue(stack, "retry", retry)      # fails every attempt: reported
    enqueue(stack, "fail", bad)         # a bad payload: not ours, not
    drain_noop(stack)
    ship(stack)
    found = events_where(stack, job=retry)
    assert len(found) == 1, found
    ev = found[0][0]
    assert ev["tags"]["queue"] == "noop" and ev["tags"]["attempt"] == "3"
    assert ev["exception"]["values"][0]["type"] == "JobDeadLettered"
    assert ev["logger"] == "keel-drain-noop"
    assert events_where(stack, job=bad) == []


def test_dead_email_job_carries_its_request_id_and_no_address(reports,
                                                               stack):
    # A reset whose email the mail server refuses every time: its job
    # is dead-lettered (an internal reason) and reported with the id of
    # the request that queued it, and without the address.
    user = make_user(stack, "customer")
    stack.set_smtp_mode("refuse")
    try:
        r = request("POST", stack.url("/api/auth/password-reset"),
                    json={"email": user["email"]})
        assert r.status_code == 202, r.text
        rid = r.headers["X-Request-Id"]
        p = stack.program("keel-drain-email", "--until-empty", "--budget",
                          60, env={"KEEL_JOB_VISIBILITY": "3",
                                   "SMTP_TIMEOUT": "2"}, timeout=90)
        assert p.returncode == 0, p.stderr
    finally:
        stack.set_smtp_mode("accept")
    ship(stack)
    found = events_where(stack, request_id=rid)
    assert len(found) == 1, found
    ev, raw = found[0]
    assert ev["tags"]["queue"] == "email"
    assert ev["tags"]["job_kind"] == "password_reset_request"
    assert user["email"].encode() not in raw


def test_spool_bound_drops_and_counts_the_rest(reports, stack, tmp_path):
    # A spool of 3 for one drainer: 5 reports, 3 kept, 2 dropped.
    env = {"KEEL_REPORT_SPOOL": str(tmp_path / "spool"),
           "KEEL_REPORT_SPOOL_MAX": "3"}
    purge_noop(stack)
    keys = [uniq("bound-") for _ in range(5)]
    for k in keys:
        enqueue(stack, "retry", k)
    drain_noop(stack, env=env)
    assert len(os.listdir(tmp_path / "spool" / "new")) == 3
    s = summary(ship(stack, env=env))
    assert (s["processed"], s["dropped"], s["kept"]) == ("3", "2", "0")
    assert sum(len(events_where(stack, job=k)) for k in keys) == 3


def test_failing_receiver_keeps_reports_until_it_takes_them(reports,
                                                             stack):
    stack.set_sentry_mode("error")
    rid = fail(stack)
    s = summary(ship(stack))
    assert s["processed"] == "0" and int(s["kept"]) >= 1, s
    assert events_where(stack, request_id=rid) == []
    stack.set_sentry_mode("accept")
    ship(stack)
    assert len(events_where(stack, request_id=rid)) == 1


# ------------------------------- a receiver that hangs or says 429

def p99_ms(stack, n=300):
    """The 99th percentile of n cheap requests, one after the other."""
    times = []
    with BaseUrlSession(stack.base_url) as s:
        for _ in range(n):
            t0 = time.monotonic()
            r = s.get("/_test/pid")
            times.append((time.monotonic() - t0) * 1000)
            assert r.status_code == 200
    times.sort()
    return times[int(len(times) * 0.99) - 1]


def test_hanging_receiver_slows_no_request_and_loses_nothing(reports,
                                                             stack):
    normal = p99_ms(stack)
    stack.set_sentry_mode("hang")
    shipper = stack.spawn("keel-report-ship", "--budget", 40, "--timeout",
                          30)
    try:
        rids = [fail(stack) for _ in range(5)]
        # The shipper sits in a POST the receiver never answers.
        wait_until(lambda: stack.spooled(), 10, "spooled reports")
        hanging = p99_ms(stack)
        rids += [fail(stack) for _ in range(5)]
    finally:
        stack.set_sentry_mode("accept")
        shipper.send_signal(signal.SIGTERM)
        shipper.communicate(timeout=60)
    print("p99 of /_test/pid: %.1f ms, receiver hanging %.1f ms"
          % (normal, hanging))
    assert hanging < max(3 * normal, normal + 50), (normal, hanging)
    ship(stack)
    for rid in rids:
        assert len(events_where(stack, request_id=rid)) == 1, rid


def test_rate_limited_receiver_backs_everyone_off_then_delivers(reports,
                                                                stack):
    normal = p99_ms(stack)
    stack.set_sentry_mode("ratelimit 3")
    rids = [fail(stack) for _ in range(5)]
    s = summary(ship(stack))
    assert s["processed"] == "0" and int(s["backoff"].rstrip("s")) > 0, s
    until = float(open(backoff_file(stack)).read())
    assert until > time.time()
    # Within the back-off: nothing sent, everything kept, requests as fast.
    attempts = open(stack.path("sentry-attempts")).read().count("\n")
    limited = p99_ms(stack)
    rids += [fail(stack) for _ in range(5)]
    if time.time() < until:
        s = summary(ship(stack))
        assert s["processed"] == "0"
        assert open(stack.path("sentry-attempts")).read().count("\n") == \
            attempts
    print("p99 of /_test/pid: %.1f ms, receiver answering 429 %.1f ms"
          % (normal, limited))
    assert limited < max(3 * normal, normal + 50), (normal, limited)
    stack.set_sentry_mode("accept")
    wait_until(lambda: time.time() > until, 10, "the back-off's end")
    ship(stack)
    for rid in rids:
        assert len(events_where(stack, request_id=rid)) == 1, rid
