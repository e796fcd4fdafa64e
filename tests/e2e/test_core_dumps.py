# SPDX-License-Identifier: ISC
"""test_core_dumps.py -- a crash leaves no core (README "Processes and
signals", KEEL_CORE_DUMPS): every keel program lowers its soft core size
limit to 1 byte at start, unless KEEL_CORE_DUMPS is on, when it keeps
the limit it inherited.

Each test starts a program twice with a core limit of INHERITED bytes,
as `ulimit -c` would give it: once as shipped, once with
KEEL_CORE_DUMPS=on, and reads /proc/<pid>/limits of its processes.  The
sanitizers' own disable_coredump is turned off, or the ASan build would
lower every limit itself and hide what keel does.
"""

import os
import resource
import shutil
import signal
import subprocess
import tempfile

import pytest

from helpers import wait_until
from stack import children

# Bytes: the limit the programs are started with.  More than 1, less than
# the page the smallest core takes, so that a crash here writes none.
INHERITED = 2048


def core_limit(pid):
    """(soft, hard) of pid's core size limit, as /proc/<pid>/limits shows
    them: a number of bytes, or "unlimited"."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                soft, hard = line[len("Max core file size"):].split()[:2]
                return (soft if soft == "unlimited" else int(soft),
                        hard if hard == "unlimited" else int(hard))
    raise AssertionError("no core limit for %d" % pid)


def hard_limit():
    """Our hard core limit, which the programs inherit and keep."""
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    if hard != resource.RLIM_INFINITY and hard < INHERITED:
        pytest.skip("the hard core limit (%d) leaves no room" % hard)
    return "unlimited" if hard == resource.RLIM_INFINITY else hard


def with_core_limit():
    """A preexec_fn: the child starts with a soft core limit of
    INHERITED bytes, the hard one as it is."""
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    resource.setrlimit(resource.RLIMIT_CORE, (INHERITED, hard))


def program_env(stack, core_dumps, extra=None):
    """The stack's environment plus extra, KEEL_CORE_DUMPS as given
    (None: unset), and the sanitizers' core limit left alone."""
    env = dict(os.environ)
    env.update(stack.env)
    env.update(extra or {})
    env.pop("KEEL_CORE_DUMPS", None)
    if core_dumps is not None:
        env["KEEL_CORE_DUMPS"] = core_dumps
    asan = env.get("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
    env["ASAN_OPTIONS"] = asan + ":disable_coredump=0"
    return env


def launch(stack, argv, core_dumps, extra=None, **kw):
    """Popen of argv (a path under the build directory first) with
    INHERITED as its core limit and program_env()'s environment, in the
    stack's directory."""
    return subprocess.Popen(
        [os.path.join(stack.build_dir, argv[0])] + list(argv[1:]),
        env=program_env(stack, core_dumps, extra),
        preexec_fn=with_core_limit, cwd=stack.dir,
        start_new_session=True, **kw)


def stop(proc):
    """SIGTERM to proc (ours, by pid), and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def server_limits(stack, binary, core_dumps):
    """The core limits of a FastCGI server's supervisor and workers
    (binary, with --socket), started with KEEL_CORE_DUMPS as given:
    {pid: (soft, hard)}."""
    tmp = tempfile.mkdtemp(prefix="keel-core-", dir="/tmp")
    sock = os.path.join(tmp, "app.sock")
    with open(os.path.join(tmp, "app.log"), "ab") as log:
        proc = launch(stack, [binary, "--socket", sock], core_dumps,
                      stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_until(lambda: os.path.exists(sock) or proc.poll() is not None,
                   15, "%s's socket" % binary, step=0.02)
        assert proc.poll() is None, open(os.path.join(tmp, "app.log")).read()
        workers = wait_until(lambda: children(proc.pid), 15,
                             "%s's workers" % binary, step=0.02)
        return {pid: core_limit(pid) for pid in [proc.pid] + workers}
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("binary", ["tests/e2e/keel-testapp",
                                    "stream/keel-stream"])
def test_servers_lower_the_core_limit_unless_core_dumps_on(stack, binary):
    hard = hard_limit()
    limits = server_limits(stack, binary, None)
    assert len(limits) >= 2
    assert set(limits.values()) == {(1, hard)}, limits
    limits = server_limits(stack, binary, "on")
    assert set(limits.values()) == {(INHERITED, hard)}, limits


def holds_lock(path, pid):
    """Whether the cron lock file at path names pid (keel_cron_lock(),
    which comes after keel_cron_init())."""
    try:
        with open(path) as f:
            return f.read().strip() == str(pid)
    except OSError:
        return False


def drainer_limit(stack, core_dumps):
    """The core limit of keel-drain-email (a cron program) once it holds
    its lock (a lock dir of its own), started with KEEL_CORE_DUMPS as
    given."""
    lock_dir = tempfile.mkdtemp(prefix="keel-core-lock-", dir="/tmp")
    proc = launch(stack, ["cron/keel-drain-email", "--budget", "30"],
                  core_dumps, {"KEEL_LOCK_DIR": lock_dir},
                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: holds_lock(os.path.join(
            lock_dir, "keel-drain-email.lock"), proc.pid), 15,
            "keel-drain-email to hold its lock", step=0.02)
        return core_limit(proc.pid)
    finally:
        stop(proc)
        shutil.rmtree(lock_dir, ignore_errors=True)


def test_cron_program_lowers_the_core_limit_unless_core_dumps_on(stack):
    hard = hard_limit()
    assert drainer_limit(stack, None) == (1, hard)
    assert drainer_limit(stack, "1") == (INHERITED, hard)


def reading_stdin(pid):
    """Whether pid is blocked in read(0, ...) (x86-64 and arm64 numbers):
    keel-admin waiting for the password, past its start."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            fields = f.read().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] in ("0", "63") and fields[1] == "0x0"


def test_keel_admin_lowers_the_core_limit_before_reading_a_password(stack):
    hard = hard_limit()
    proc = launch(stack, ["admin/keel-admin", "hash-password"], None,
                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: reading_stdin(proc.pid), 15,
                   "keel-admin to wait for the password", step=0.02)
        assert core_limit(proc.pid) == (1, hard)
    finally:
        proc.stdin.close()
        stop(proc)
