# SPDX-License-Identifier: ISC
"""test_failover.py -- the runbook "Failing over PostgreSQL to the
replica" (README), step by step, on a stack of its own: the primary
stopped (fenced: never started again), the replica promoted with
pg_ctl, DATABASE_URL pointed at it and DATABASE_READ_REPLICA_URL
emptied in the env file, every app SIGHUPed.  cron needs nothing (each
run sources the env file), so the programs here read the env file again
as its lines do.  Then keel runs on the new primary without a restart:
writes 201, reads see them, a session made before the failover still
works, a job made after it goes through the outbox relay and a drainer
onto a stream, /health is ok, and no worker crashed.

The tests run in order and share the stack; each is one step of the
runbook.  (On scripts/stack itself the failover is for the tests only:
its `start` writes the env file again with the old primary's port.)
"""

import glob
import os
import signal
import subprocess
import time
import uuid

import pytest

from accounts import bearer, login, make_user
from helpers import (BaseUrlSession, assert_error, car_body, own_stack,
                     redis_cli, wait_until)
from sse import SSE
from stack import app_names, parse_env_file

# A request's deadline (README, "PostgreSQL: deadlines and failures"):
# a connect, a statement and 1.5 s, with a second of slack for ASan.
CONNECT_S, STATEMENT_MS = 2, 3000
DEADLINE = CONNECT_S + STATEMENT_MS / 1000 + 2.5
DRAIN_ENV = {"KEEL_JOB_VISIBILITY": "3"}


@pytest.fixture(scope="module")
def fo(request):
    s = own_stack(request, extra_apps=None, env={
        "KEEL_DB_CONNECT_TIMEOUT": str(CONNECT_S),
        "KEEL_DB_STATEMENT_TIMEOUT": str(STATEMENT_MS)})
    s.state = {}
    yield s
    for st in s.state.get("streams", []):
        st.close()


@pytest.fixture
def anon(fo):
    with BaseUrlSession(fo.base_url) as s:
        yield s


def pg_bin(name):
    """A PostgreSQL program of the newest major installed (as scripts/stack
    picks it)."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]))
    return os.path.join(dirs[-1], name)


def as_postgres(*cmd):
    """cmd run as the postgres user (the servers' owner), as scripts/stack
    runs pg_ctl; its stdout."""
    pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    p = subprocess.run(pre + list(cmd), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    return p.stdout


def datadir(stack, which):
    return os.path.join(os.path.realpath(stack.path("pg")), which)


def timed(fn, *args, **kw):
    """fn's answer and how long it took (s)."""
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def reloads(stack, name):
    return stack.log(name).count("reload: all ")


def crashes(stack):
    """Lines of every app's log that say a worker died (or ASan spoke)."""
    bad = ("killed by signal", "exited with status", "AddressSanitizer",
           "runtime error")
    return [(n, line) for n in app_names()
            for line in stack.log(n).splitlines()
            if any(b in line for b in bad)]


def new_user_body(role, **kw):
    tag = uuid.uuid4().hex[:10]
    body = {"email": "%s-%s@e2e.test" % (role, tag),
            "username": "%s_%s" % (role, tag), "name": "Failover " + tag,
            "role": role}
    body.update(kw)
    return body


def contract(anon, h, customer):
    r = anon.post("/api/cars", json=car_body(), headers=h)
    assert r.status_code == 201, r.text
    r = anon.post("/api/contracts", headers=h, json={
        "carId": r.json()["id"], "customerId": customer,
        "startDate": "2033-05-01", "endDate": "2033-05-03"})
    assert r.status_code == 201, r.text
    return r.json()


def relay_and_drain(stack, drainer):
    """What cron's next minute runs: the relay, then a drainer until its
    queue is empty; the drainer's summary."""
    p = stack.program("keel-outbox-relay", "--once",
                      env={"KEEL_RELAY_RECHECK": "1"})
    assert p.returncode == 0, p.stderr
    p = stack.program(drainer, "--until-empty", "--budget", 30,
                      env=DRAIN_ENV, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout + p.stderr


# ---------------------------------------------------------------- before

def test_before_a_session_a_car_and_a_live_stream(fo, anon):
    st = fo.state
    st["admin"] = bearer(login(anon, make_user(fo, "admin")["email"]))
    st["customer"] = make_user(fo, "customer")
    st["ch"] = bearer(login(anon, st["customer"]["email"]))
    r = anon.post("/api/cars", json=car_body(), headers=st["admin"])
    assert r.status_code == 201, r.text
    st["car"] = r.json()
    # The customer's stream, open across the failover.
    s = SSE.open(fo, headers=st["ch"])
    st["streams"] = [s]
    assert s.status == 200
    k = contract(anon, st["admin"], st["customer"]["id"])
    relay_and_drain(fo, "keel-drain-notifications")
    ev = s.next_event(timeout=10)
    assert ev is not None and ev["event"] == "notification", ev
    assert str(k["id"]) in ev["data"]
    st["last_id"] = int(ev["id"])
    # A cached page (the cache fills from the primary, then serves it;
    # the contract made it fill again).
    for _ in range(2):
        r = anon.get("/api/cars/%d" % st["car"]["id"], headers=st["ch"])
        assert r.status_code == 200, r.text
    assert r.headers["X-Cache"] == "HIT"


# ------------------------------------------------------------ the runbook

def test_1_fence_the_primary_nothing_half_written(fo, anon):
    st = fo.state
    fo.stop_component("primary")
    # Fenced: while it is gone, a write is keel's 503 within its
    # deadline, never a 500; a read is served by the replica (the
    # customer's: the admin, who just wrote, reads the primary), a
    # cached page by memcached.
    r, took = timed(anon.post, "/api/cars", json=car_body(),
                    headers=st["admin"])
    assert_error(r, 503, "unavailable")
    assert took < DEADLINE, took
    served_without_the_primary(fo, anon)


def served_without_the_primary(fo, anon):
    st = fo.state
    r, took = timed(anon.get, "/api/auth/me", headers=st["ch"])
    assert r.status_code == 200, r.text
    assert took < DEADLINE, took
    r = anon.get("/api/cars/%d" % st["car"]["id"], headers=st["ch"])
    assert r.status_code == 200, r.text
    assert r.headers["X-Cache"] == "HIT"


def test_2_the_replica_has_everything_the_primary_wrote(fo):
    # A clean stop ends the primary's WAL with its shutdown checkpoint,
    # which it streams before it exits: replayed, nothing was lost.
    ctl = as_postgres(pg_bin("pg_controldata"), "-D", datadir(fo, "primary"))
    fields = dict(line.split(":", 1) for line in ctl.splitlines()
                  if ":" in line)
    assert fields["Database cluster state"].strip() == "shut down"
    lsn = fields["Latest checkpoint location"].strip()
    wait_until(lambda: fo.psql("SELECT pg_last_wal_replay_lsn() > '%s'"
                               % lsn, replica=True) == "t", 10,
               "the replica to replay the shutdown checkpoint")


def test_3_promote_the_replica(fo, anon):
    st = fo.state
    as_postgres(pg_bin("pg_ctl"), "-D", datadir(fo, "replica"), "-w",
                "promote")
    assert fo.psql("SELECT pg_is_in_recovery()", replica=True) == "f"
    # Promoted, not yet named: writes still go to the old primary's
    # address (503), reads to the replica's, now the primary (200).
    r, took = timed(anon.post, "/api/cars", json=car_body(),
                    headers=st["admin"])
    assert_error(r, 503, "unavailable")
    assert took < DEADLINE, took
    served_without_the_primary(fo, anon)
    # /health: the primary down; the promoted replica up, its lag 0.
    r = anon.get("/health")
    assert r.status_code == 503, r.text
    assert r.json()["checks"]["replica"]["status"] == "up", r.text
    assert r.json()["checks"]["replica"]["lagMs"] == 0, r.text


def set_env(stack, values):
    """The env file with each `export NAME=` line of values (name: value)
    rewritten; the programs run from here on read it, as cron's lines
    do."""
    env_file = stack.path("env")
    with open(env_file) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        name = line.partition("=")[0][len("export "):]
        if line.startswith("export ") and name in values:
            line = "export %s=%s" % (name, values[name])
        out.append(line)
    with open(env_file + ".tmp", "w") as f:
        f.write("\n".join(out) + "\n")
    os.chmod(env_file + ".tmp", 0o600)
    os.replace(env_file + ".tmp", env_file)
    stack.env = parse_env_file(env_file)
    stack.env.update(stack.extra_env)


def reload_apps(stack):
    """SIGHUP every app, the stream too; wait until each rolled its
    workers."""
    before = {n: reloads(stack, n) for n in app_names()}
    for n in app_names():
        pid = stack.app_pid(n)
        assert pid is not None, n
        os.kill(pid, signal.SIGHUP)
    for n in app_names():
        wait_until(lambda: reloads(stack, n) > before[n], 60,
                   "app %s to roll its workers" % n)
        assert "workers serve on" not in stack.log(n), n


def test_4_point_keel_at_it_and_reload(fo):
    new = fo.env["KEEL_STACK_PG_REPLICA_URL"]
    fo.state["old_primary_url"] = fo.env["KEEL_STACK_PG_URL"]
    set_env(fo, {"DATABASE_URL": new, "KEEL_STACK_PG_URL": new,
                 "DATABASE_READ_REPLICA_URL": ""})
    reload_apps(fo)
    for n in app_names():
        pid = fo.app_pid(n)
        assert pid is not None, n
        os.kill(pid, signal.SIGHUP)


def test_5_an_open_stream_is_told_to_reconnect_and_replays(fo, anon):
    st = fo.state
    old = st["streams"][0]
    ev = old.next_event(timeout=10)
    assert ev is not None and ev["event"] == "reconnect", ev
    k = contract(anon, st["admin"], st["customer"]["id"])
    s = SSE.open(fo, headers=st["ch"], last_id=st["last_id"])
    st["streams"].append(s)
    assert s.status == 200
    out = relay_and_drain(fo, "keel-drain-notifications")
    assert "processed=1 " in out, out
    ev = s.next_event(timeout=10)
    assert ev is not None and ev["event"] == "notification", ev
    assert str(k["id"]) in ev["data"]
    # The job's outbox row is on the new primary, finished there.
    assert fo.psql("SELECT count(*) FROM outbox WHERE idempotency_key = "
                   "'notification:contract-created:%d' AND finished_at "
                   "IS NOT NULL" % k["id"]) == "1"


def test_6_writes_succeed_and_reads_see_them(fo, anon):
    st = fo.state
    body = car_body()
    r, took = timed(anon.post, "/api/cars", json=body, headers=st["admin"])
    assert r.status_code == 201, r.text
    assert took < DEADLINE, took
    car = r.json()
    r = anon.get("/api/cars/%d" % car["id"], headers=st["admin"])
    assert r.status_code == 200, r.text
    assert r.json()["licensePlate"] == body["licensePlate"]
    # The car before the failover too, and no id handed out twice.
    r = anon.get("/api/cars/%d" % st["car"]["id"], headers=st["admin"])
    assert r.status_code == 200, r.text
    assert car["id"] > st["car"]["id"]


def test_7_a_session_made_before_the_failover_still_works(fo, anon):
    st = fo.state
    r = anon.get("/api/auth/me", headers=st["ch"])
    assert r.status_code == 200, r.text
    assert r.json()["id"] == st["customer"]["id"]


def test_8_a_job_made_after_the_failover_is_delivered(fo, anon):
    st = fo.state
    body = new_user_body("student", sendCredentials=True)
    r = anon.post("/api/users", json=body, headers=st["admin"])
    assert r.status_code == 201, r.text
    assert int(redis_cli(fo, "XLEN", "keel:q:email:s")) >= 1
    out = relay_and_drain(fo, "keel-drain-email")
    assert "failed=0" in out, out
    wait_until(lambda: any(body["email"] in str(m["To"])
                           for m in fo.mail()), 10,
               "the invitation to reach the mail sink")


def test_9_health_is_ok_with_no_replica_and_no_worker_crashed(fo, anon):
    r = anon.get("/health")
    assert r.status_code == 200, r.text
    h = r.json()
    assert h["status"] == "ok", h
    assert h["checks"]["postgres"]["status"] == "up", h
    assert h["checks"]["replica"]["status"] == "disabled", h
    assert crashes(fo) == []


def test_10_a_new_replica_in_the_old_primarys_place(fo, anon):
    # The fenced primary's data is thrown away; a base backup of the new
    # primary takes its place, on its port, as a standby with a slot.
    old = datadir(fo, "primary")
    pw_file = fo.path("secrets", "replication-password")
    with open(pw_file) as f:
        rpw = f.read().strip()
    as_postgres("rm", "-rf", old)
    port = fo.ports["pg_replica"]
    pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    p = subprocess.run(pre + [
        pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(port),
        "-U", "replicator", "-D", old, "-R", "-C", "-S", "keel_replica2",
        "-X", "stream", "-c", "fast"], env=dict(os.environ, PGPASSWORD=rpw),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120)
    assert p.returncode == 0, p.stdout
    # Its own port (the copy's keel.conf names the primary's).
    as_postgres("sh", "-c", "echo 'port = %d' >> %s/postgresql.auto.conf"
                % (fo.ports["pg"], old))
    as_postgres(pg_bin("pg_ctl"), "-D", old, "-l",
                os.path.join(os.path.realpath(fo.path("pg")), "log",
                             "new-replica.log"), "-w", "start")
    url = fo.state["old_primary_url"]
    set_env(fo, {"DATABASE_READ_REPLICA_URL": url,
                 "KEEL_STACK_PG_REPLICA_URL": url})
    assert fo.psql("SELECT pg_is_in_recovery()", replica=True) == "t"
    reload_apps(fo)
    r = anon.get("/health")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok", r.text
    assert r.json()["checks"]["replica"]["status"] == "up", r.text
    # It streams what the new primary writes.
    r = anon.post("/api/cars", json=car_body(), headers=fo.state["admin"])
    assert r.status_code == 201, r.text
    lsn = fo.psql("SELECT pg_current_wal_lsn()")
    wait_until(lambda: fo.psql("SELECT pg_last_wal_replay_lsn() >= '%s'"
                               % lsn, replica=True) == "t", 20,
               "the new replica to replay the new primary's writes")
    assert fo.psql("SELECT count(*) FROM cars WHERE id = %d"
                   % r.json()["id"], replica=True) == "1"
    assert crashes(fo) == []
