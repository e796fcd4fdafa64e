# SPDX-License-Identifier: ISC
"""test_refused_writes.py -- a store that is up but refuses writes, as a
full disk makes it (DESIGN.md "When a dependency fails": the primary or
Redis "down").

- PostgreSQL read-only (SQLSTATE 25006: default_transaction_read_only,
  or a standby where the primary was), out of disk (53100) or failing
  its I/O (58030): a write is 503 `unavailable` with Retry-After, never
  500, and reads are served; a drainer hands its job back uncounted and
  waits, as for a primary that is down, instead of spending the job's
  attempts until it is dead-lettered.
- Redis refusing writes (NOREPLICAS: too few replicas for
  min-replicas-to-write; OOM: maxmemory under noeviction; MISCONF: its
  last save failed on a full disk): routes that must write to Redis
  answer 503, as with Redis down, and work again when it can write.
- /health says so: "writable": false on the postgres or redis check, and
  the status degraded.

Disk-full and I/O errors are raised by a trigger on the table the
request writes (a real full disk is not something a test may make);
the read-only primary and Redis's refusals are the servers' own.
"""

import contextlib
import json
import os

import pytest

from accounts import bearer, login, make_user
from helpers import (assert_error, car_body, redis_cli, superuser_sql,
                     wait_until)
from test_jobs import FAST, drain, enqueue, stats, summary


def health(http, check):
    """GET /health: its status, and whether check says its store
    takes writes."""
    r = http.get("/health")
    assert r.status_code == 200, r.text
    return r.json()["status"], r.json()["checks"][check]["writable"]


def assert_unavailable(r):
    assert_error(r, 503, "unavailable")
    assert int(r.headers["Retry-After"]) > 0


@contextlib.contextmanager
def read_only_primary(stack):
    """Every transaction on the primary read-only, the apps' open
    connections included (a reload reaches every session)."""
    superuser_sql(stack, "ALTER SYSTEM SET default_transaction_read_only "
                  "= on")
    superuser_sql(stack, "SELECT pg_reload_conf()")
    try:
        wait_until(lambda: stack.psql("SHOW transaction_read_only") == "on",
                   10, "the reload to reach new sessions")
        yield
    finally:
        superuser_sql(stack, "ALTER SYSTEM RESET default_transaction_"
                      "read_only")
        superuser_sql(stack, "SELECT pg_reload_conf()")
        wait_until(lambda: stack.psql("SHOW transaction_read_only") ==
                   "off", 10, "the reload to reach new sessions")


@contextlib.contextmanager
def inserts_fail(stack, table, sqlstate):
    """Every INSERT into table fails with sqlstate, as PostgreSQL's own
    error for a full disk or a failed write does."""
    superuser_sql(stack, "CREATE FUNCTION keel_test_refuse() RETURNS "
                  "trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
                  "'could not extend file (test)' USING ERRCODE = '%s'; "
                  "END $$" % sqlstate)
    superuser_sql(stack, "CREATE TRIGGER keel_test_refuse BEFORE INSERT "
                  "ON %s FOR EACH ROW EXECUTE FUNCTION keel_test_refuse()"
                  % table)
    try:
        yield
    finally:
        superuser_sql(stack, "DROP TRIGGER keel_test_refuse ON %s" % table)
        superuser_sql(stack, "DROP FUNCTION keel_test_refuse()")


# ------------------------------------------------------------ PostgreSQL

def test_a_write_to_a_read_only_primary_is_503_and_reads_are_served(
        stack, http):
    with read_only_primary(stack):
        assert_unavailable(http.post("/api/cars", json=car_body()))
        assert http.get("/api/cars").status_code == 200
        assert health(http, "postgres") == ("degraded", False)
    assert http.post("/api/cars", json=car_body()).status_code == 201
    assert health(http, "postgres") == ("ok", True)


@pytest.mark.parametrize("sqlstate", ["53100", "53000", "58030"])
def test_a_write_the_server_cannot_store_is_503_and_nothing_is_kept(
        stack, http, sqlstate):
    """53100 disk_full, 53000 insufficient_resources, 58030 io_error."""
    body = car_body()
    with inserts_fail(stack, "cars", sqlstate):
        assert_unavailable(http.post("/api/cars", json=body))
    assert stack.psql("SELECT count(*) FROM cars WHERE license_plate = "
                      "'%s'" % body["licensePlate"]) == "0"
    assert http.post("/api/cars", json=body).status_code == 201


@pytest.mark.parametrize("sqlstate", ["53200", "53400"])
def test_a_statement_past_its_own_limits_is_no_503(stack, http, sqlstate):
    """Out of memory (53200) or past a configuration limit such as
    temp_file_limit (53400) is most often the statement's own doing: a
    503 with Retry-After would invite retries that fail every time."""
    with inserts_fail(stack, "cars", sqlstate):
        assert_error(http.post("/api/cars", json=car_body()), 500,
                     "internal")


def notification_job(stack):
    """A job for keel-drain-notifications (it writes a row); its key."""
    u = make_user(stack, "student")
    key = "refused-" + os.urandom(6).hex()
    enqueue(stack, "password_changed", json.dumps({"userId": u["id"]}),
            key=key, queue="notifications")
    return key


def drained_once(stack, key):
    """One drain writes key's row, once.  Other suites may have left jobs
    in the queue (the stack is shared), so the run may process more."""
    row = ("SELECT count(*) FROM notifications WHERE dedup_key = '%s'"
           % key)
    assert stack.psql(row) == "0"
    s = summary(drain(stack, prog="keel-drain-notifications",
                      env=FAST).stdout)
    assert s["processed"] >= 1, s
    assert stack.psql(row) == "1"


def test_a_drainer_leases_nothing_from_a_read_only_primary(stack):
    """Read-only, every job's writes would fail while its pings
    answer: the run leases none of them, so none spends an attempt or a
    hand-back; once the primary can write the job runs."""
    key = notification_job(stack)
    before = stats(stack, "notifications")
    with read_only_primary(stack):
        p = drain(stack, prog="keel-drain-notifications", budget=4)
        s = summary(p.stdout)
        assert (s["processed"], s["released"], s["retried"],
                s["failed"]) == (0, 0, 0, 0), s
        assert "refuses the work" in p.stderr, p.stderr
    assert stats(stack, "notifications")["failed"] == before["failed"]
    drained_once(stack, key)


def test_a_drainer_hands_back_a_job_the_full_disk_refused(stack):
    """Out of disk, PostgreSQL answers the ping a drainer sends after a
    failed job: the refused statement, not the ping, says the failure is
    the server's.  The job is handed back uncounted (not retried into
    the dead letters while the disk is full) and the run leases nothing
    more: no ping can say when writes work again."""
    key = notification_job(stack)
    before = stats(stack, "notifications")
    with inserts_fail(stack, "notifications", "53100"):
        s = summary(drain(stack, prog="keel-drain-notifications",
                          budget=4).stdout)
        assert (s["released"], s["retried"], s["failed"]) == (1, 0, 0), s
    assert stats(stack, "notifications")["failed"] == before["failed"]
    drained_once(stack, key)


# ----------------------------------------------------------------- Redis

@contextlib.contextmanager
def redis_config(stack, name, value, reset):
    redis_cli(stack, "CONFIG", "SET", name, value)
    try:
        yield
    finally:
        redis_cli(stack, "CONFIG", "SET", name, reset)


@pytest.mark.parametrize("name,value,reset", [
    ("min-replicas-to-write", "1", "0"),        # NOREPLICAS
    ("maxmemory", "1", "0"),                    # OOM
])
def test_redis_refusing_writes_is_503_on_routes_that_write_to_it(
        stack, anon, name, value, reset):
    u = make_user(stack, "student")
    h = bearer(login(anon, u["email"]))
    with redis_config(stack, name, value, reset):
        assert_unavailable(anon.post("/api/notifications/stream-ticket",
                                     headers=h))
        assert health(anon, "redis") == ("degraded", False)
    r = anon.post("/api/notifications/stream-ticket", headers=h)
    assert r.status_code == 201, r.text
    assert health(anon, "redis") == ("ok", True)


def test_logout_while_redis_refuses_writes_is_503_and_the_session_lives(
        stack, anon):
    """A logout that can't end the session must not say it did."""
    u = make_user(stack, "student")
    h = bearer(login(anon, u["email"]))
    with redis_config(stack, "min-replicas-to-write", "1", "0"):
        assert_unavailable(anon.post("/api/auth/logout", headers=h))
    assert anon.get("/api/auth/me", headers=h).status_code == 200
    assert anon.post("/api/auth/logout", headers=h).status_code in (200,
                                                                   204)
    assert anon.get("/api/auth/me", headers=h).status_code == 401


def test_redis_whose_last_save_failed_is_503_until_it_saves(stack, anon):
    """MISCONF: Redis's last background save failed (its file's place
    taken by a directory, as a full disk fails it) and
    stop-writes-on-bgsave-error refuses every write until a save works."""
    u = make_user(stack, "student")
    h = bearer(login(anon, u["email"]))
    d = redis_cli(stack, "CONFIG", "GET", "dir").splitlines()[1]
    f = redis_cli(stack, "CONFIG", "GET", "dbfilename").splitlines()[1]
    saves = redis_cli(stack, "CONFIG", "GET", "save").splitlines()[1:]
    path = os.path.join(d, f)
    moved = path + ".test-aside"
    if os.path.exists(path):
        os.rename(path, moved)
    os.mkdir(path)
    open(os.path.join(path, "x"), "w").close()
    redis_cli(stack, "CONFIG", "SET", "save", "3600 1")
    try:
        redis_cli(stack, "BGSAVE")
        wait_until(lambda: "rdb_last_bgsave_status:err" in redis_cli(
            stack, "INFO", "persistence"), 10, "the save to fail")
        assert redis_cli(stack, "SET", "keel:test:misconf", "1"
                         ).startswith("MISCONF")
        assert_unavailable(anon.post("/api/notifications/stream-ticket",
                                     headers=h))
        assert_unavailable(anon.post("/api/auth/logout", headers=h))
    finally:
        os.remove(os.path.join(path, "x"))
        os.rmdir(path)
        if os.path.exists(moved):
            os.rename(moved, path)
        redis_cli(stack, "BGSAVE")
        wait_until(lambda: "rdb_last_bgsave_status:ok" in redis_cli(
            stack, "INFO", "persistence"), 10, "a save to work again")
        redis_cli(stack, "CONFIG", "SET", "save", " ".join(saves))
    assert anon.get("/api/auth/me", headers=h).status_code == 200
    r = anon.post("/api/notifications/stream-ticket", headers=h)
    assert r.status_code == 201, r.text
