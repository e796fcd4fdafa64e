# SPDX-License-Identifier: ISC
"""test_stack_hardening.py -- what scripts/stack and lighttpd.conf keep from
other local users and from other processes.

- `stop` and `status` take a pid file's process for the stack's only if
  it is the very process that was started (its start time is recorded
  beside the pid): a stale pid now held by a stranger whose command line
  happens to name the component (`less /var/log/auth.log`, another
  stack's lighttpd) is neither killed nor reported running.  A cron lock
  names a run to stop only while it is held, by a keel program of this
  stack.  These run scripts/stack on a scratch directory: no services.
- No password is on a command line (ps shows those to every local user):
  a stack of stores only, started with psql, runuser and env wrapped on
  PATH to record their argv, and scripts/migrate under a fake psql.
- The maildir (set-password links) is the user's only.
- lighttpd ignores Range (no half a JSON document), the page's 403
  for a refused method keeps the page's headers, and the access log holds
  no secret a client put in a Referer's query.
"""

import fcntl
import json
import os
import shutil
import smtplib
import stat
import subprocess

import pytest

from helpers import wait_until
from stack import ROOT, STACK_SCRIPT, Stack, StackError, alive

MIGRATE = os.path.join(ROOT, "scripts", "migrate")

# What the old pid check looked for in a command line, per pid file.
COMPONENTS = {
    "lighttpd": "lighttpd -D -f /etc/lighttpd/lighttpd.conf",
    "redis": "redis-server 127.0.0.1:6379",
    "memcached": "memcached -p 11211",
    "smtp": "python3 -m aiosmtpd -n",
    "sentry": "python3 sentry_sink.py",
    "cron": "python3 crond.py /etc/crontab",
    "prometheus": "prometheus --config.file=/etc/prometheus.yml",
    "pgbouncer": "pgbouncer /etc/pgbouncer.ini",
    "tests": "python3 -m pytest tests/unit",
    "auth": "less /var/log/auth.log",
}


def stack_cmd(stack_dir, *args):
    """scripts/stack ARGS on stack_dir; (exit status, output)."""
    env = dict(os.environ, KEEL_STACK_DIR=str(stack_dir))
    p = subprocess.run([STACK_SCRIPT] + list(args), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    return p.returncode, p.stdout


def stranger(argv0, exe="sleep"):
    """A process that is none of the stack's, its command line argv0
    (words joined by spaces, as /proc shows them) and 300."""
    return subprocess.Popen([argv0, "300"], executable=shutil.which(exe)
                            if os.sep not in exe else exe,
                            stdin=subprocess.DEVNULL)


def end(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def proc_start(pid):
    """What scripts/stack records beside a pid: boot id and start time."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return "%s %s" % (boot, fields[19])


@pytest.fixture
def scratch(tmp_path):
    """An empty stack dir: only run/."""
    (tmp_path / "run").mkdir()
    return tmp_path


# ----------------------------------------------------- pid files

@pytest.mark.parametrize("recorded", ["nothing", "an earlier process"])
def test_stop_leaves_a_stranger_that_took_a_recorded_pid(scratch, recorded):
    """Each component's pid file holds a stranger's pid: with no start
    time beside it (an older scripts/stack), or the start time of the
    process that had the pid before.  `stop` signals none of them."""
    procs = {name: stranger(argv0) for name, argv0 in COMPONENTS.items()}
    try:
        for name, p in procs.items():
            (scratch / "run" / (name + ".pid")).write_text("%d\n" % p.pid)
            if recorded != "nothing":
                boot, ticks = proc_start(p.pid).split()
                (scratch / "run" / (name + ".pid.start")).write_text(
                    "%s %d\n" % (boot, int(ticks) - 1))
        rc, out = stack_cmd(scratch, "stop", "tests")
        assert rc == 0, out
        rc, out = stack_cmd(scratch, "stop")
        assert rc == 0, out
        for name, p in procs.items():
            assert p.poll() is None and alive(p.pid), (name, out)
        if recorded == "nothing":
            # Left for the operator, who is told.
            assert "pid %d runs, but no start time" % procs["tests"].pid \
                in out, out
            assert (scratch / "run" / "tests.pid").exists()
        else:
            assert not (scratch / "run" / "tests.pid").exists()
    finally:
        end(procs.values())


def test_fleet_stop_leaves_a_stranger_that_took_haproxys_pid(scratch):
    """scripts/fleet keeps HAProxy's pid as scripts/stack keeps its own
    (scripts/procs.sh): a stranger named haproxy under a recorded pid,
    with no start time or another's, is left alone by `stop`."""
    fleet = os.path.join(ROOT, "scripts", "fleet")
    env = dict(os.environ, KEEL_FLEET_DIR=str(scratch))
    for recorded in ("nothing", "an earlier process"):
        p = stranger("haproxy -db -f /etc/haproxy/haproxy.cfg")
        try:
            (scratch / "run" / "haproxy.pid").write_text("%d\n" % p.pid)
            if recorded != "nothing":
                boot, ticks = proc_start(p.pid).split()
                (scratch / "run" / "haproxy.pid.start").write_text(
                    "%s %d\n" % (boot, int(ticks) - 1))
            out = subprocess.run([fleet, "stop"], env=env,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 timeout=120)
            assert out.returncode == 0, out.stdout
            assert p.poll() is None and alive(p.pid), (recorded,
                                                        out.stdout)
        finally:
            end([p])


def test_status_takes_no_stranger_for_a_component(scratch):
    procs = {name: stranger(COMPONENTS[name])
             for name in ("lighttpd", "redis", "tests")}
    try:
        for name, p in procs.items():
            (scratch / "run" / (name + ".pid")).write_text("%d\n" % p.pid)
        rc, out = stack_cmd(scratch, "status")
        assert rc == 3, out
        for line in ("lighttpd", "redis", "app tests"):
            assert "%-18s stopped" % line in out.splitlines(), out
    finally:
        end(procs.values())


def test_stop_stops_a_recorded_process(scratch):
    """The other side: a pid file with its process's own start time is
    the stack's, and stop ends it."""
    p = stranger("keel-e2e-app")
    try:
        (scratch / "run" / "e2e-app.pid").write_text("%d\n" % p.pid)
        (scratch / "run" / "e2e-app.pid.start").write_text(
            proc_start(p.pid) + "\n")
        rc, out = stack_cmd(scratch, "stop", "e2e-app")
        assert rc == 0, out
        assert p.wait(timeout=10) == -15
        assert not (scratch / "run" / "e2e-app.pid").exists()
    finally:
        end([p])


# ----------------------------------------------------- cron runs

@pytest.mark.parametrize("held, exe, lock_dir, stopped", [
    # The pid a run left in its lock after a clean exit, now a stranger's.
    (False, "sleep", "run", False),
    (False, "keel-drain-email", "run", False),
    # Held, but the pid is no keel program ...
    (True, "sleep", "run", False),
    # ... or another stack's run (its locks elsewhere).
    (True, "keel-drain-email", "elsewhere", False),
    # This stack's run.
    (True, "keel-drain-email", "run", True),
])
def test_stop_cron_signals_only_a_run_holding_its_lock(scratch, held, exe,
                                                        lock_dir, stopped):
    run = scratch / "run"
    if exe != "sleep":
        # An executable named like the program (lib/cron.c names the
        # lock after it).
        shutil.copy(shutil.which("sleep"), scratch / exe)
        exe = str(scratch / exe)
    env = dict(os.environ, KEEL_LOCK_DIR=str(scratch / lock_dir))
    p = subprocess.Popen(["keel-drain-email", "300"], executable=shutil.which(
        exe) if os.sep not in exe else exe, env=env, stdin=subprocess.DEVNULL)
    lock = run / "keel-drain-email.lock"
    lock.write_text("%d\n" % p.pid)
    fd = os.open(str(lock), os.O_RDWR)
    try:
        if held:
            fcntl.flock(fd, fcntl.LOCK_EX)
        rc, out = stack_cmd(scratch, "stop", "cron")
        assert rc == 0, out
        if stopped:
            assert p.wait(timeout=10) == -15, out
        else:
            assert p.poll() is None and alive(p.pid), out
    finally:
        os.close(fd)
        end([p])


# ----------------------------------------------------- secrets in argv

WRAPPED = ("psql", "runuser", "env")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A stack of stores only (demo data loaded), with psql, runuser and
    env on PATH recording their command lines in argv/."""
    wrap = tmp_path_factory.mktemp("wrap")
    argv = wrap / "argv"
    argv.mkdir()
    os.chmod(str(argv), 0o777)
    for name in WRAPPED:
        real = shutil.which(name)
        assert real, name
        w = wrap / name
        w.write_text('#!/bin/sh\nprintf "%%s\\n" "$0" "$@" >"$(mktemp %s/'
                     '%s.XXXXXX)"\nexec %s "$@"\n' % (argv, name, real))
        os.chmod(str(w), 0o755)
    s = Stack(demo=True, extra_apps=None,
              env={"PATH": "%s:%s" % (wrap, os.environ["PATH"]),
                   "KEEL_STACK_APPS": "0", "KEEL_SENTRY": "0"})
    try:
        s.start()
    except StackError as e:
        s.stop()
        pytest.fail(str(e))
    s.argv_dir = argv
    yield s
    s.stop()


def test_no_password_on_a_command_line(stores):
    secrets = [open(stores.path("secrets", n)).read().strip()
               for n in ("pg-password", "replication-password")]
    assert all(len(x) >= 32 for x in secrets)
    seen = {}
    for n in os.listdir(stores.argv_dir):
        with open(os.path.join(stores.argv_dir, n)) as f:
            text = f.read()
        for secret in secrets:
            assert secret not in text, (n, text)
        seen.setdefault(n.split(".")[0], []).append(text)
    # The wrappers did see the calls: the migrations and the demo data
    # (psql, password-less URLs), and, as root, the base backup.
    psql = "\n".join(seen.get("psql", []))
    assert "postgresql://keel@127.0.0.1:%d/keel" % stores.ports["pg"] in psql
    assert "sql/demo/" in psql, psql
    if os.geteuid() == 0:
        assert "pg_basebackup" in "\n".join(seen.get("runuser", []))


def test_sentry_sinks_key_is_on_no_command_line(stack):
    """The stack's Sentry receiver reads its key from the secrets, not
    from its command line, which every local user can read."""
    key = open(stack.path("secrets", "sentry-key")).read().strip()
    pid = int(open(stack.path("run", "sentry.pid")).read())
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = f.read().decode()
    assert "sentry_sink.py" in argv
    assert len(key) >= 16 and key not in argv, argv


@pytest.mark.parametrize("password,plain", [
    ("s3cr%40t%3Ax", "s3cr@t:x"),
    # Raw, as libpq reads the credentials (to the first '@').
    ("s3cr?t#x,y", "s3cr?t#x,y"),
])
def test_migrate_gives_psql_the_password_in_its_environment(tmp_path,
                                                             password,
                                                             plain):
    """scripts/migrate under a fake psql: the URL without its password
    on the command line, the password (percent-decoded) in PGPASSWORD,
    and not in the session's script either.  The whole run is one psql
    session (it holds the migration lock, test_migrate.py), which says
    it reached its end with a line that the fake prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    script = tmp_path / "script"
    fake = bin_dir / "psql"
    fake.write_text('#!/bin/sh\nprintf "argv:%%s\\n" "$*" >>%s\n'
                    'printf "env:%%s\\n" "$PGPASSWORD" >>%s\n'
                    'while [ $# -gt 0 ]; do\n'
                    '  [ "$1" = -f ] && cat "$2" >>%s\n'
                    '  shift\n'
                    'done\n'
                    'echo keel-migrate:done 001\n' % (log, log, script))
    os.chmod(str(fake), 0o755)
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "001_x.sql").write_text("SELECT 1;\n")
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]),
               KEEL_SQL_DIR=str(sql),
               DATABASE_URL="postgresql://keel:%s@127.0.0.1:1/keel"
               % password)
    env.pop("PGPASSWORD", None)
    p = subprocess.run([MIGRATE], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0, p.stdout
    lines = log.read_text().splitlines()
    argv = [x for x in lines if x.startswith("argv:")]
    assert len(argv) == 1, lines
    for a in argv:
        assert "s3cr" not in a, a
        assert "-d postgresql://keel@127.0.0.1:1/keel" in a, a
    assert set(x for x in lines if x.startswith("env:")) == {"env:" + plain}
    text = script.read_text()
    assert "001_x.sql" in text and "s3cr" not in text, text


# ----------------------------------------------------- the maildir

def test_maildir_is_the_users_only(stores):
    def mode(*p):
        return stat.S_IMODE(os.stat(stores.path(*p)).st_mode)

    assert mode("mail") == 0o700
    with smtplib.SMTP("127.0.0.1", stores.ports["smtp"], timeout=30) as c:
        c.sendmail("a@example.com", ["b@example.com"],
                   "Subject: set your password\r\n\r\n/set-password?token=x\r\n")
    (name,) = wait_until(lambda: os.listdir(stores.path("mail", "new")), 20,
                         "the sink to store the message")
    assert mode("mail", "new") == 0o700
    assert mode("mail", "new", name) == 0o600


# ----------------------------------------------------- lighttpd

@pytest.mark.parametrize("path", ["/health", "/app/index.html"])
@pytest.mark.parametrize("rng", ["bytes=0-10", "bytes=5000-6000"])
def test_a_range_request_gets_the_whole_answer(anon, path, rng):
    whole = anon.get(path)
    r = anon.get(path, headers={"Range": rng})
    assert r.status_code == 200, (r.status_code, r.text[:200])
    assert "Content-Range" not in r.headers
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    if path == "/health":
        # Whole JSON (its checks may differ from a moment before: a
        # replica's lag on a loaded machine).
        assert set(r.json()) == set(whole.json()), r.text
    else:
        assert r.content == whole.content


def test_lighttpds_416_page_is_json(stack):
    """For an operator who turns ranges on: lighttpd's 416 is API.md
    error JSON like its other pages."""
    with open(stack.path("errors", "status-416.html")) as f:
        body = json.load(f)
    assert body["error"] == "bad_request" and body["message"]


@pytest.mark.parametrize("method", ["DELETE", "POST", "OPTIONS"])
def test_a_refused_method_on_the_page_keeps_its_headers(anon, method):
    r = anon.request(method, "/app/index.html", data=b"")
    assert r.status_code == 403, r.text[:200]
    assert r.json()["error"] == "forbidden"
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"


def test_a_referers_query_never_reaches_the_access_log(stack, anon):
    # A client that is not a browser obeys no Referrer-Policy: the URL it
    # came from, query and all, may carry a stream ticket or a token.
    agent = "referer-probe-%d" % os.getpid()
    for ref in ("https://keel.example/api/notifications/stream"
                "?ticket=TICKETSECRET",
                "https://keel.example/set-password?token=TOKENSECRET"):
        r = anon.get("/health", headers={"Referer": ref,
                                          "User-Agent": agent})
        assert r.status_code in (200, 503), r.status_code
    wait_until(lambda: stack.log("access").count(agent) >= 2, 5,
               "the two requests in the access log")
    log = stack.log("access")
    assert "TICKETSECRET" not in log and "TOKENSECRET" not in log
