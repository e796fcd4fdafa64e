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
"""

import fcntl
import os
import shutil
import subprocess

import pytest

from stack import STACK_SCRIPT, alive

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
