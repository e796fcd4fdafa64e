# SPDX-License-Identifier: ISC
"""test_stack_cron.py -- the stack's cron (scripts/crond.py) and the whole
stack started without CAP_SYS_ADMIN (issue 9, item 9).

`docker run` without --privileged gives root Docker's default capabilities
only: no CAP_SYS_ADMIN, so no mount namespace.  The last test starts a
whole stack (scripts/stack start, cron included) under setpriv with exactly
that capability set, checks that it is really unprivileged (`unshare -m`
fails inside), and waits for the cron-started drainer to deliver a job
queued through the outbox.  The others check crond.py's crontab handling
without waiting for a minute to pass.
"""

import os
import pwd
import re
import signal
import subprocess
import sys
import time

import pytest

from stack import ROOT, Stack, StackError, alive
from test_jobs import wait_until

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import crond  # noqa: E402

CROND = os.path.join(ROOT, "scripts", "crond.py")
# Docker's default capability set (moby's oci/caps/defaults.go).
DOCKER_CAPS = ("chown", "dac_override", "fsetid", "fowner", "mknod",
               "net_raw", "setgid", "setuid", "setfcap", "setpcap",
               "net_bind_service", "sys_chroot", "kill", "audit_write")
CAP_SYS_ADMIN = 21


def unprivileged():
    """The command prefix that runs a program as in `docker run`: for root,
    setpriv drops every capability outside Docker's set from the bounding,
    inheritable and ambient sets, so the exec leaves none of them
    effective; any other user has none to drop."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all",
            "--bounding-set=-all," + ",".join("+" + c for c in DOCKER_CAPS)]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ------------------------------------------------------------ crontab

def tm(spec):
    """A struct_time for "YYYY-MM-DD HH:MM" (local time)."""
    return time.strptime(spec, "%Y-%m-%d %H:%M")


def job(line):
    (j,) = crond.parse_crontab(line)
    return j


@pytest.mark.parametrize("line, when, due", [
    ("* * * * * x", "2024-05-06 13:07", True),
    ("*/15 * * * * x", "2024-05-06 13:45", True),
    ("*/15 * * * * x", "2024-05-06 13:46", False),
    ("17 * * * * x", "2024-05-06 09:17", True),
    ("0 9-17/4 * * * x", "2024-05-06 13:00", True),
    ("0 9-17/4 * * * x", "2024-05-06 15:00", False),
    ("0 0 * jan,mar sun x", "2024-03-03 00:00", True),    # a Sunday
    ("0 0 * * 7 x", "2024-03-03 00:00", True),             # 7 is Sunday too
    ("0 0 * * mon-fri x", "2024-03-03 00:00", False),
    # Both day fields restricted: either day is enough (Vixie cron).
    ("0 0 1 * mon x", "2024-05-06 00:00", True),           # a Monday
    ("0 0 1 * mon x", "2024-05-01 00:00", True),           # the 1st
    ("0 0 1 * mon x", "2024-05-02 00:00", False),
    # One of them starts with *: both must match.
    ("0 0 */2 * mon x", "2024-05-06 00:00", False),         # even day
    ("@hourly x", "2024-05-06 13:00", True),
    ("@hourly x", "2024-05-06 13:01", False),
])
def test_crontab_times(line, when, due):
    assert job(line).due(tm(when)) is due


def test_crontab_environment_and_percent():
    jobs = crond.parse_crontab(
        "SHELL=/bin/sh\nMAILTO=\"\"\nA = 'two  words'\n"
        "* * * * *\tprintf '\\%s\\n' \"$A\" 50\\%%line 1%line 2\n"
        "B=$HOME/x\n@reboot true\n")
    first, second = jobs
    assert first.command == "printf '%s\\n' \"$A\" 50%"
    assert first.stdin == "line 1\nline 2\n"
    assert first.env["A"] == "two  words" and first.env["MAILTO"] == ""
    assert "B" not in first.env                 # set below it
    assert second.env["B"] == "$HOME/x"          # not expanded
    assert second.reboot and not second.due(tm("2024-05-06 00:00"))
    assert set(first.env) >= {"SHELL", "PATH", "HOME", "LOGNAME", "USER"}


@pytest.mark.parametrize("text", [
    "* * * * *", "60 * * * * x", "* 24 * * * x", "* * 0 * * x",
    "* * * 13 * x", "* * * foo * x", "*/0 * * * * x", "5-1 * * * * x",
    "1/5 * * * * x", "@often x", "@daily",
])
def test_crontab_errors_refused(text, tmp_path):
    with pytest.raises(crond.CrontabError, match="^line 2: "):
        crond.parse_crontab("# fine\n" + text + "\n")
    tab = tmp_path / "crontab"
    tab.write_text(text + "\n")
    p = subprocess.run([sys.executable, CROND, "--check", str(tab)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30)
    assert p.returncode == 1 and "line 1: " in p.stderr, p.stderr


def test_crond_gives_jobs_crons_environment_and_leaves_them_on_sigterm(
        tmp_path):
    """A job gets the crontab's variables on top of cron's minimal set --
    none of crond.py's own environment -- runs in HOME in a session of its
    own, reads what follows % on stdin, and keeps running when crond.py is
    stopped (scripts/stack stops the runs by their lock files)."""
    out = tmp_path / "out"
    tab = tmp_path / "crontab"
    tab.write_text(
        "KEEL_ENV=%s/env\n" % tmp_path
        + "@reboot\t{ env; pwd; cat; cut -d' ' -f6 /proc/$$/stat; } >%s 2>&1;"
          " exec sleep 60%%hello%%world\n" % out)
    env = dict(os.environ, NOT_FOR_JOBS="1")
    log = open(tmp_path / "cron.log", "w")
    p = subprocess.Popen([sys.executable, CROND, str(tab)], env=env,
                         stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT)
    job_pid = None
    try:
        assert wait_until(lambda: re.search(r"pid (\d+): ", read(log.name)),
                          20), read(log.name)
        job_pid = int(re.search(r"pid (\d+): ", read(log.name)).group(1))
        assert wait_until(lambda: re.search(r"^world\n *\d+\n\Z", read(out),
                                            re.M), 20), read(out)
        lines = read(out).splitlines()
        names = {ln.split("=", 1)[0] for ln in lines if "=" in ln}
        assert "NOT_FOR_JOBS" not in names
        assert {"KEEL_ENV", "HOME", "LOGNAME", "SHELL", "PATH"} <= names
        assert "KEEL_ENV=%s/env" % tmp_path in lines
        assert "PATH=/usr/bin:/bin" in lines
        home = pwd.getpwuid(os.getuid()).pw_dir
        assert (home if os.path.isdir(home) else "/") in lines
        assert lines[-3:-1] == ["hello", "world"]
        assert int(lines[-1]) == job_pid           # its own session
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        assert alive(job_pid)
        assert "stopped by signal %d; 1 jobs left running" % signal.SIGTERM \
            in read(log.name)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        if job_pid and alive(job_pid):
            os.kill(job_pid, signal.SIGKILL)
        log.close()


# ------------------------------------------------- a whole stack, unprivileged

def test_stack_starts_without_cap_sys_admin():
    # The wrapper really takes CAP_SYS_ADMIN away: no mount namespace.
    p = subprocess.run(unprivileged() + ["unshare", "--mount", "true"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30)
    assert p.returncode != 0 and "Operation not permitted" in p.stdout, \
        p.stdout
    p = subprocess.run(unprivileged() + ["cat", "/proc/self/status"],
                       stdout=subprocess.PIPE, text=True, timeout=30)
    (eff,) = re.findall(r"^CapEff:\s*([0-9a-f]+)$", p.stdout, re.M)
    assert not int(eff, 16) & (1 << CAP_SYS_ADMIN), p.stdout

    s = Stack(cron=True, wrapper=unprivileged())
    try:
        try:
            s.start()
        except StackError as e:
            pytest.fail(str(e))
        status = s.status()
        assert re.search(r"^cron +running, pid (\d+)", status, re.M), status
        cron_pid = int(read(s.path("run", "cron.pid")))
        assert alive(cron_pid)

        # A job through the outbox, as a request adds it; the drainer cron
        # starts (within the minute) sends it.
        p = s.program("keel-queues", "test-email", "container@example.com")
        assert p.returncode == 0, p.stderr
        assert wait_until(lambda: s.mail(), 60 + 30), \
            s.log("cron") + s.log("drain-email")
        (m,) = s.mail()
        assert m["To"].addresses[0].addr_spec == "container@example.com"
        lock = s.path("run", "keel-drain-email.lock")
        run_pid = int(read(lock).split()[0])
        assert re.search(r"pid %d: .*keel-drain-email" % run_pid,
                         s.log("cron")), s.log("cron")
        # Stopped by pid: crond.py, then the run found by its lock file,
        # which leaves cleanly with its summary.
        s.stop_component("cron")
        assert not alive(cron_pid) and not alive(run_pid)
        assert re.search(r"processed=\d+ failed=\d+ retried=\d+ took=",
                         s.log("drain-email")), s.log("drain-email")
    finally:
        s.stop()
