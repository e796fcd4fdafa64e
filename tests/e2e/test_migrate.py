# SPDX-License-Identifier: ISC
"""test_migrate.py -- scripts/migrate run from every host of a fleet at
once (README, "Migrations"): each run takes a PostgreSQL advisory lock
before it creates schema_migrations or decides what is pending, so a
concurrent run waits, then finds nothing left to do and exits 0.

Each test runs several scripts/migrate at the same moment on a fresh
database of a stack of stores only (created by the superuser over the
unix socket, owned by keel, dropped afterwards), most of them on test
migrations (KEEL_SQL_DIR) that sleep to widen the window and count their
own runs: a row in a table (what committed) and a sequence's nextval
(what ran, since nextval is not undone by a rollback).

- On an empty database: every run exits 0, schema_migrations is created
  once (PostgreSQL's CREATE TABLE IF NOT EXISTS is not race-free), and
  every migration is applied by one run, once -- also keel's own sql/.
- A data migration pending for every run executes once.
- A failing migration stops each run with a non-zero exit that names it,
  leaves no trace, and no run goes past it.
- A run waits for another's lock, saying whose it is, and proceeds when
  it is released, or gives up after KEEL_MIGRATE_LOCK_WAIT seconds with
  nothing applied.
"""

import contextlib
import os
import subprocess
import time
import urllib.parse
import uuid

import pytest

from helpers import own_stack, superuser_sql
from stack import ROOT, psql_env

MIGRATE = os.path.join(ROOT, "scripts", "migrate")
RUNS = 6            # concurrent runs: hosts deploying at once

# Test migrations.  002 sleeps inside its transaction, so the others
# arrive while it is pending; 003 is a data migration that counts itself.
COUNTING = {
    "001_counter.sql": "CREATE TABLE counter (n int NOT NULL);\n"
                       "CREATE SEQUENCE runs;\n",
    "002_slow.sql": "SELECT pg_sleep(1);\n"
                    "CREATE TABLE slow (id int PRIMARY KEY);\n",
    "003_count.sql": "SELECT pg_sleep(0.5);\n"
                     "INSERT INTO counter SELECT nextval('runs');\n",
}


@pytest.fixture(scope="module")
def pg(request):
    return own_stack(request, extra_apps=None,
                     env={"KEEL_STACK_APPS": "0", "KEEL_SENTRY": "0"})


@contextlib.contextmanager
def new_database(pg):
    """The URL (password included, as a deploy has it) of a new, empty
    database owned by keel, dropped on leaving."""
    name = "migrate_" + uuid.uuid4().hex[:12]
    superuser_sql(pg, "CREATE DATABASE %s OWNER keel" % name)
    parts = urllib.parse.urlsplit(pg.env["KEEL_STACK_PG_URL"])
    try:
        yield urllib.parse.urlunsplit(parts._replace(path="/" + name))
    finally:
        superuser_sql(pg, "DROP DATABASE %s WITH (FORCE)" % name)


@pytest.fixture
def db(pg):
    with new_database(pg) as url:
        yield url


def sql(url, query):
    """query's unaligned rows on url, the password off the command line."""
    u, env = psql_env(url)
    p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                        "-d", u, "-c", query], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.rstrip("\n")


def migrations(tmp_path, files, name="sql"):
    d = tmp_path / name
    d.mkdir()
    for f, text in files.items():
        (d / f).write_text(text)
    return str(d)


def start(url, sql_dir=None, **env):
    e = dict(os.environ, DATABASE_URL=url, **env)
    e.pop("KEEL_SQL_DIR", None)
    if sql_dir is not None:
        e["KEEL_SQL_DIR"] = sql_dir
    return subprocess.Popen([MIGRATE], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(procs, timeout=120):
    """[(exit status, output)] of the started runs."""
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def migrate_at_once(url, sql_dir=None, n=RUNS, **env):
    return finish([start(url, sql_dir, **env) for _ in range(n)])


def versions(url):
    return sql(url, "SELECT version FROM schema_migrations "
               "ORDER BY version").split()


def exists(url, table):
    return sql(url, "SELECT to_regclass('%s') IS NOT NULL" % table) == "t"


def psql_session(url):
    """A psql reading its statements from its stdin, on url."""
    u, env = psql_env(url)
    return subprocess.Popen(["psql", "-X", "-q", "-At", "-v",
                             "ON_ERROR_STOP=1", "-d", u], env=env,
                            stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)


def wait_for_locks(url, where, n, proc):
    """Until n rows of pg_locks match where (proc must stay alive)."""
    deadline = time.monotonic() + 30
    while sql(url, "SELECT count(*) FROM pg_locks WHERE " + where) != str(n):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)


def test_concurrent_runs_create_schema_migrations_once(db, tmp_path):
    """Nothing to apply: only schema_migrations's creation races.  An
    uncommitted DROP SCHEMA public holds the schema's lock, which CREATE
    TABLE takes before it looks for the table, so every run that gets
    there waits at the same point and then looks at once: before the
    lock all but one lost to pg_type_typname_nsp_index."""
    empty = migrations(tmp_path, {})
    gate = psql_session(db)
    try:
        gate.stdin.write("BEGIN;\nDROP SCHEMA public;\n")
        gate.stdin.flush()
        wait_for_locks(db, "locktype = 'object' AND granted AND "
                       "mode = 'AccessExclusiveLock'", 1, gate)
        runs = [start(db, empty) for _ in range(RUNS)]
        wait_for_locks(db, "NOT granted", RUNS, gate)
        gate.stdin.write("ROLLBACK;\n")
    finally:
        gate.stdin.close()
        gate.wait(timeout=60)
    for rc, out in finish(runs):
        assert rc == 0, out
        assert "0 applied" in out, out
    assert versions(db) == []


def test_concurrent_runs_on_an_empty_database_apply_each_once(db, tmp_path):
    runs = migrate_at_once(db, migrations(tmp_path, COUNTING))
    for rc, out in runs:
        assert rc == 0, out
    outs = "".join(out for _, out in runs)
    for base in ("001_counter", "002_slow", "003_count"):
        assert outs.count("applying %s\n" % base) == 1, outs
    assert sum("3 applied, schema at 003" in out for _, out in runs) == 1
    assert sum("0 applied, schema at 003" in out for _, out in runs) \
        == RUNS - 1
    assert versions(db) == ["001", "002", "003"]
    assert sql(db, "SELECT count(*), max(n) FROM counter") == "1|1"


def test_a_pending_data_migration_runs_once(db, tmp_path):
    """Every run finds 003 pending; before the lock each ran its
    statements and all but one then failed on schema_migrations's key."""
    first = dict(COUNTING)
    del first["003_count.sql"]
    rc, out = migrate_at_once(db, migrations(tmp_path, first, "a"), n=1)[0]
    assert rc == 0, out
    runs = migrate_at_once(db, migrations(tmp_path, COUNTING, "b"))
    for rc, out in runs:
        assert rc == 0, out
    assert versions(db) == ["001", "002", "003"]
    # last_value: how many times nextval ran, rolled back or not.
    assert sql(db, "SELECT last_value, is_called FROM runs") == "1|t"
    assert sql(db, "SELECT count(*) FROM counter") == "1"


def test_keels_migrations_from_every_host_at_once(db):
    runs = migrate_at_once(db, n=4)
    for rc, out in runs:
        assert rc == 0, out
    want = sorted(f[:3] for f in os.listdir(os.path.join(ROOT, "sql"))
                  if f.endswith(".sql") and f[:3].isdigit())
    assert versions(db) == want
    assert sql(db, "SELECT count(*) FROM schema_migrations") \
        == str(len(want))


def test_a_failing_migration_stops_every_run_and_leaves_no_trace(db,
                                                                 tmp_path):
    bad = {
        "001_counter.sql": COUNTING["001_counter.sql"],
        "002_bad.sql": "SELECT pg_sleep(0.5);\n"
                       "INSERT INTO counter SELECT nextval('runs');\n"
                       "CREATE TABLE half (x int);\n"
                       "SELECT 1/0;\n",
        "003_never.sql": "CREATE TABLE never (x int);\n",
    }
    t0 = time.monotonic()
    runs = migrate_at_once(db, migrations(tmp_path, bad))
    assert time.monotonic() - t0 < 60
    for rc, out in runs:
        assert rc == 1, out
        assert "002_bad failed; nothing of it was applied" in out, out
        assert "division by zero" in out, out
        assert "003_never" not in out, out
    outs = "".join(out for _, out in runs)
    assert outs.count("applying 001_counter\n") == 1, outs
    assert versions(db) == ["001"]
    assert sql(db, "SELECT count(*) FROM counter") == "0"
    assert not exists(db, "half") and not exists(db, "never")
    # Every run got to 002 (none stopped at 001, which one of them
    # applied) and ran it once.
    assert sql(db, "SELECT last_value FROM runs") == str(RUNS)


def hold_lock(url, seconds):
    """A session holding the migration lock (README's key) for seconds,
    named test-holder; returns once it holds it."""
    u, env = psql_env(url)
    env["PGAPPNAME"] = "test-holder"
    p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                          "-d", u, "-c",
                          "SELECT pg_advisory_lock(7738703051072563058)",
                          "-c", "SELECT pg_sleep(%d)" % seconds],
                         env=env, stdout=subprocess.DEVNULL)
    wait_for_locks(url, "locktype = 'advisory' AND granted", 1, p)
    return p


def test_a_run_waits_for_the_lock_and_says_whose(db, tmp_path):
    holder = hold_lock(db, 3)
    try:
        t0 = time.monotonic()
        rc, out = migrate_at_once(db, migrations(tmp_path, COUNTING),
                                  n=1)[0]
        waited = time.monotonic() - t0
    finally:
        holder.wait(timeout=60)
    assert rc == 0, out
    assert "waiting up to 600s for the migration lock, held by " \
        "test-holder (pid " in out, out
    assert waited > 1.5, out
    assert "3 applied, schema at 003" in out, out
    assert versions(db) == ["001", "002", "003"]


def test_a_run_gives_up_waiting_after_the_lock_wait(db, tmp_path):
    holder = hold_lock(db, 30)
    try:
        t0 = time.monotonic()
        rc, out = migrate_at_once(db, migrations(tmp_path, COUNTING), n=1,
                                  KEEL_MIGRATE_LOCK_WAIT="2")[0]
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert rc == 1, out
    assert 1.5 < waited < 20, out
    assert "gave up after 2s (KEEL_MIGRATE_LOCK_WAIT) waiting for the " \
        "migration lock, held by test-holder (pid " in out, out
    assert "nothing was applied" in out, out
    assert not exists(db, "schema_migrations") and not exists(db, "counter")


@pytest.mark.parametrize("wait", ["0", "1.5", "x", "1000000"])
def test_a_bad_lock_wait_is_refused_before_anything_runs(db, tmp_path,
                                                         wait):
    rc, out = migrate_at_once(db, migrations(tmp_path, COUNTING), n=1,
                              KEEL_MIGRATE_LOCK_WAIT=wait)[0]
    assert rc == 1, out
    assert "KEEL_MIGRATE_LOCK_WAIT must be" in out, out
    assert not exists(db, "schema_migrations")
