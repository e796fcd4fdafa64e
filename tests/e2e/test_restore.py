# SPDX-License-Identifier: ISC
"""test_restore.py -- PostgreSQL restored to an earlier point while Redis
and memcached keep their state (README, "Restoring PostgreSQL from a
backup").  A restore hands out again the ids the lost writes used, so a
new user must start with no session (users.c, keel-admin create-admin:
ended before the commit, nothing created without Redis), and `keel-admin
restored` advances the sequences and drops what Redis and memcached hold
about rows.  Its own stack: `restored` ends every session of it.  It asks
first (--yes) and refuses while keel is at work (--force), so the tests
stop the apps around it, as the runbook does.
"""

import contextlib
import os
import subprocess
import threading
import time
import uuid

import pytest

from accounts import bearer, login, make_user
from helpers import (BaseUrlSession, Held, assert_error, own_stack, redis_cli,
                     request, wait_until)
from stack import app_names, free_port

GAP = 1000000       # keel-admin restored's default


@pytest.fixture(scope="module")
def rstack(request):
    return own_stack(request, extra_apps=None)


@pytest.fixture
def anon(rstack):
    with BaseUrlSession(rstack.base_url) as s:
        yield s


def keel_admin(stack, *args, stdin="", env=None):
    e = dict(os.environ)
    e.update(stack.env)
    e.update(env or {})
    return subprocess.run(
        [os.path.join(stack.build_dir, "admin", "keel-admin")] + list(args),
        input=stdin, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, timeout=120)


def keel_sessions(stack):
    """The apps' PostgreSQL sessions, as `restored` counts them."""
    return int(stack.psql("SELECT count(*) FROM pg_stat_activity WHERE "
                          "application_name IN ('keel', 'keel-stream')"))


@contextlib.contextmanager
def apps_stopped(stack):
    """The runbook's "before any traffic": lighttpd and every app stopped
    (this stack runs no cron), until their sessions have left
    PostgreSQL; started again afterwards."""
    names = ["lighttpd"] + app_names()
    try:
        for name in names:
            stack.stop_component(name)
        wait_until(lambda: keel_sessions(stack) == 0, 30,
                   "the apps' sessions to leave PostgreSQL")
        yield
    finally:
        for name in reversed(names):
            stack.start_component(name)


def restore_to(stack, seq):
    """What a restore to the point users_id_seq was seq leaves of users:
    the rows after it gone, the sequence back."""
    stack.psql("BEGIN; DELETE FROM users WHERE id > %d; "
               "SELECT setval('users_id_seq', %d); COMMIT;" % (seq, seq))


def new_user_body(role):
    tag = uuid.uuid4().hex[:10]
    return {"email": "%s-%s@e2e.test" % (role, tag),
            "username": "%s_%s" % (role, tag), "name": "Restored " + tag,
            "role": role}


def car_body():
    return {"licensePlate": "RS-%s" % uuid.uuid4().hex[:8].upper(),
            "manufacturer": "M", "model": "X", "category": "economy",
            "status": "available", "year": 2020}


def test_a_user_created_on_a_reused_id_ends_the_old_sessions(rstack, anon):
    admin = bearer(login(anon, make_user(rstack, "admin")["email"]))
    seq = int(rstack.psql("SELECT last_value FROM users_id_seq"))
    a = make_user(rstack, "staff")
    ta = bearer(login(anon, a["email"]))
    assert anon.get("/api/auth/me", headers=ta).status_code == 200
    restore_to(rstack, seq)
    r = anon.post("/api/users", json=new_user_body("student"),
                  headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == a["id"]        # the restore's reused id
    # A's session named the id; it ended when B was created.
    assert anon.get("/api/auth/me", headers=ta).status_code == 401
    assert anon.get("/api/flashcards", headers=ta).status_code == 401
    assert anon.post("/api/cars", json=car_body(),
                     headers=ta).status_code == 401


def test_a_user_is_not_created_while_redis_is_down(rstack, anon):
    admin = login(anon, make_user(rstack, "admin")["email"])
    body = new_user_body("student")
    # The request passes its session check, then waits on the INSERT
    # while Redis goes away: its sessions can't be ended, so no user.
    held = Held(rstack, "LOCK TABLE users IN SHARE MODE")
    out = {}

    def send():
        out["r"] = request("POST", rstack.url("/api/users"), json=body,
                           headers=bearer(admin), timeout=60)

    t = threading.Thread(target=send)
    try:
        t.start()
        wait_until(held.blocking, 20, "the create to wait on the lock")
        rstack.stop_component("redis")
        held.commit()
        t.join(60)
        assert_error(out["r"], 503, "unavailable")
        p = keel_admin(rstack, "create-admin", "--email",
                       "root-" + body["email"], "--username",
                       "root_" + body["username"], "--name", "Root",
                       "--force", stdin="first-admin-password\n")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "no admin was created" in p.stderr
    finally:
        held.abort()
        t.join(60)
        rstack.start_component("redis")
    assert rstack.psql("SELECT count(*) FROM users WHERE email IN "
                       "('%s', 'root-%s')" % (body["email"],
                                              body["email"])) == "0"


def invited(stack, email):
    return sum(1 for m in stack.mail() if email in str(m["To"]))


def test_restored_advances_ids_and_drops_what_named_rows(rstack, anon):
    admin_user = make_user(rstack, "admin")
    admin = bearer(login(anon, admin_user["email"]))
    # A cached read, and an invitation whose job waits in Redis.
    assert anon.get("/api/cars", headers=admin).status_code == 200
    assert anon.get("/api/cars", headers=admin).headers["X-Cache"] == "HIT"
    body = dict(new_user_body("student"), sendCredentials=True)
    assert anon.post("/api/users", json=body,
                     headers=admin).status_code == 201
    assert int(redis_cli(rstack, "XLEN", "keel:q:email:s")) >= 1
    seq = int(rstack.psql("SELECT last_value FROM users_id_seq"))

    with apps_stopped(rstack):
        p = keel_admin(rstack, "restored", "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "sequence users_id_seq: %d -> %d" % (seq, seq + GAP) in p.stdout
    for prefix in ("keel:sess:*", "keel:user-sess:*", "keel:q:*"):
        assert redis_cli(rstack, "--scan", "--pattern", prefix) == ""
    assert make_user(rstack, "student")["id"] >= seq + GAP

    # Every session ended; a login works again, the cache starts over.
    assert anon.get("/api/auth/me", headers=admin).status_code == 401
    admin = bearer(login(anon, admin_user["email"]))
    assert anon.get("/api/auth/me", headers=admin).status_code == 200
    assert anon.get("/api/cars", headers=admin).headers["X-Cache"] != "HIT"

    # The relay pushes again the job Redis no longer has; it runs once.
    time.sleep(2)
    p = rstack.program("keel-outbox-relay", "--once",
                       env={"KEEL_RELAY_RECHECK": "1"})
    assert p.returncode == 0, p.stderr
    p = rstack.program("keel-drain-email", "--until-empty", "--budget", 30)
    assert p.returncode == 0, p.stderr
    wait_until(lambda: invited(rstack, body["email"]) >= 1, 20,
               "the invitation to be delivered")
    p = rstack.program("keel-drain-email", "--until-empty", "--budget", 10)
    assert invited(rstack, body["email"]) == 1


def seq_now(stack):
    return int(stack.psql("SELECT last_value FROM users_id_seq"))


def test_restored_without_yes_says_what_and_changes_nothing(rstack, anon):
    who = bearer(login(anon, make_user(rstack, "admin")["email"]))
    seq = seq_now(rstack)
    p = keel_admin(rstack, "restored")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "sequence users_id_seq: %d -> %d" % (seq, seq + GAP) in p.stdout
    assert "redis keel:sess:*: " in p.stdout
    assert "to delete" in p.stdout and "deleted" not in p.stdout
    assert "--yes" in p.stdout
    assert seq_now(rstack) == seq
    assert anon.get("/api/auth/me", headers=who).status_code == 200


def test_restored_refuses_while_the_apps_run_unless_forced(rstack, anon):
    who = bearer(login(anon, make_user(rstack, "admin")["email"]))
    assert anon.get("/api/cars", headers=who).status_code == 200
    assert anon.get("/api/cars", headers=who).headers["X-Cache"] == "HIT"
    seq = seq_now(rstack)
    p = keel_admin(rstack, "restored", "--yes")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "session(s) named keel" in p.stderr
    assert "nothing changed" in p.stderr
    assert seq_now(rstack) == seq
    assert anon.get("/api/auth/me", headers=who).status_code == 200
    assert anon.get("/api/cars", headers=who).headers["X-Cache"] == "HIT"

    p = keel_admin(rstack, "restored", "--yes", "--force")
    assert p.returncode == 0, p.stdout + p.stderr
    assert seq_now(rstack) == seq + GAP
    assert anon.get("/api/auth/me", headers=who).status_code == 401


def test_restored_refuses_while_a_drainer_holds_a_job(rstack):
    seq = seq_now(rstack)
    lease = "keel:q:noop:a"
    with apps_stopped(rstack):
        try:
            # A lease running out in a minute: a drainer is at work.
            now_ms = int(redis_cli(rstack, "TIME").split()[0]) * 1000
            redis_cli(rstack, "ZADD", lease, now_ms + 60000, "job-1")
            p = keel_admin(rstack, "restored", "--yes")
            assert p.returncode == 1, p.stdout + p.stderr
            assert "job(s) a drainer holds" in p.stderr
            assert seq_now(rstack) == seq
            assert redis_cli(rstack, "ZCARD", lease) == "1"
            # Past its deadline, its drainer died: the job is dropped.
            redis_cli(rstack, "ZADD", lease, now_ms - 1000, "job-1")
            p = keel_admin(rstack, "restored", "--yes")
            assert p.returncode == 0, p.stdout + p.stderr
            assert redis_cli(rstack, "EXISTS", lease) == "0"
        finally:
            redis_cli(rstack, "DEL", lease)


@pytest.mark.parametrize("form", ["127.0.0.1:{port}:2",
                                  "127.0.0.1:{port} , 127.0.0.1:{port}"])
def test_restored_reads_memcached_servers_as_the_apps_do(rstack, anon, form):
    who = bearer(login(anon, make_user(rstack, "admin")["email"]))
    assert anon.get("/api/cars", headers=who).status_code == 200
    assert anon.get("/api/cars", headers=who).headers["X-Cache"] == "HIT"
    servers = form.format(port=rstack.ports["memcached"])
    # --force: the apps run; what this checks is the server list.
    p = keel_admin(rstack, "restored", "--yes", "--force",
                   env={"MEMCACHED_SERVERS": servers})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cache namespace(s) invalidated" in p.stdout
    who = bearer(login(anon, make_user(rstack, "admin")["email"]))
    assert anon.get("/api/cars", headers=who).headers["X-Cache"] != "HIT"


@pytest.mark.parametrize("where, why", [
    ("127.0.0.1:{port}", "(Connection refused)"),
    # getaddrinfo's reason: "Name or service not known", or a resolver
    # that can't be reached says so.
    ("no-such-host.invalid:11211", "(")])
def test_restored_changes_nothing_when_memcached_cannot_list(rstack, anon,
                                                             where, why):
    who = bearer(login(anon, make_user(rstack, "admin")["email"]))
    seq = seq_now(rstack)
    # Nothing listens there: the check comes before any change.
    p = keel_admin(rstack, "restored", "--yes", "--force",
                   env={"MEMCACHED_SERVERS": where.format(port=free_port())})
    assert p.returncode == 1, p.stdout + p.stderr
    # ... and says why (a name that doesn't resolve set no errno: it
    # said "Success").
    assert "can't connect " + why in p.stderr, p.stderr
    assert "(Success)" not in p.stderr, p.stderr
    assert "restart memcached instead" in p.stderr
    assert "nothing changed" in p.stderr
    assert seq_now(rstack) == seq
    assert anon.get("/api/auth/me", headers=who).status_code == 200
