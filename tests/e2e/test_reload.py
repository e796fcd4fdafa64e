# SPDX-License-Identifier: ISC
"""test_reload.py -- SIGHUP reloads the binary and its configuration
(lib/serve.c, README "Processes and signals"): the supervisor checks the
file at its path (perhaps a new binary) with --check through its env file
(KEEL_ENV_FILE), execs it in place keeping the listening socket and its
workers, and the new image rolls them one by one; a second SIGHUP mid-roll
starts the roll again with the newest binary; a binary or configuration
that fails its check leaves the old workers serving.  Never a failed
request.

Each test runs its own keel-testapp supervisor from a copy of the binary
in a temp dir (replaced on disk as a deploy would: a new file renamed over
the old one), with an env file of its own, and talks FastCGI to it; the
testapp's /_test/pid names the inode of the file each worker runs.
"""

import json
import os
import shutil
import signal
import time

from helpers import wait_until
from test_pool import fcgi_ok
from test_serve import Load, _testapp_bin, fcgi_get
from test_serve import own_app  # noqa: F401 (a fixture)
from stack import alive


class Deploy:
    """A copy of keel-testapp at self.bin and an env file beside it."""

    def __init__(self, stack, tmp_path, workers):
        self.src = _testapp_bin(stack)
        self.dir = str(tmp_path)
        self.bin = os.path.join(self.dir, "keel-testapp")
        self.env_file = os.path.join(self.dir, "env")
        self.install()
        self.write_env(KEEL_WORKERS=workers)

    def install(self, src=None):
        """Put src (the built binary by default) at self.bin as a new file
        (a new inode), renamed over the old one; returns its inode."""
        tmp = self.bin + ".new"
        shutil.copy2(src or self.src, tmp)
        os.rename(tmp, self.bin)
        return os.stat(self.bin).st_ino

    def install_script(self, text):
        tmp = self.bin + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.rename(tmp, self.bin)

    def write_env(self, **env):
        self.env = env
        with open(self.env_file, "w") as f:
            for k, v in env.items():
                f.write("export %s=%s\n" % (k, v))

    def start(self, own_app):
        """The supervisor, with the env file's values (as scripts/stack
        sources it before it starts an app)."""
        return own_app(argv=lambda sock: [self.bin, "--socket", sock],
                       KEEL_ENV_FILE=self.env_file, KEEL_RATELIMIT="0",
                       **self.env)


def exe_of(app):
    status, _, body = fcgi_get(app.sock, "/_test/pid")
    assert status == 200, body
    return json.loads(body)["exe"]


def workers_n(app, n, exclude=()):
    """app's workers once there are n, none of them in exclude."""
    return wait_until(lambda: (lambda w: w if len(w) == n and
                               not set(w) & set(exclude) else None)(
        app.workers()), 20, "%d new workers" % n, step=0.02)


def serving(stack, own_app, tmp_path, workers, n=4,
            uri="/_test/sleep?ms=20"):
    """A deployed app of workers workers under n clients GETting uri,
    once they have had answers: (deploy, app, its workers, the inode its
    workers run, the clients)."""
    d = Deploy(stack, tmp_path, workers=workers)
    app = d.start(own_app)
    before = workers_n(app, workers)
    first = exe_of(app)
    clients = Load(None, None, n, get=lambda: fcgi_ok(app, uri))
    try:
        wait_until(lambda: clients.ok >= 4, 20, "the load to start",
                   step=0.02)
    except BaseException:
        clients.stop()
        raise
    return d, app, before, first, clients


def test_reload_new_binary_and_config_under_load(stack, own_app, tmp_path):
    d, app, before, first, clients = serving(stack, own_app, tmp_path, 2)
    try:
        new = d.install()
        assert new != first
        # Read again on SIGHUP: a third worker.
        d.write_env(KEEL_WORKERS=3)
        os.kill(app.pid, signal.SIGHUP)
        after = workers_n(app, 3, exclude=before)
        wait_until(lambda: "reload: all 3 workers replaced" in app.text(),
                   20, "the roll to finish", step=0.05)
        time.sleep(0.3)
    finally:
        ok, failures = clients.stop()
    assert failures == [], failures[:5]
    assert ok > 20
    assert app.proc.poll() is None
    assert app.pid == app.proc.pid
    assert not any(alive(p) for p in before)
    assert {exe_of(app) for _ in range(12)} == {new}
    assert set(app.workers()) == set(after)
    assert "reload: executing %s" % d.bin in app.text()


def test_reload_second_sighup_mid_roll_restarts_it(stack, own_app,
                                                   tmp_path):
    # Slow requests keep the old workers busy: the roll takes seconds.
    d, app, before, _, clients = serving(stack, own_app, tmp_path, 3, n=3,
                                         uri="/_test/sleep?ms=400")
    try:
        d.install()
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: "reload: replacing" in app.text(), 20,
                   "the first roll to start", step=0.01)
        newest = d.install()
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: app.text().count("reload: replacing") == 2, 20,
                   "the second roll to start", step=0.01)
        mid = app.workers()
        wait_until(lambda: "workers replaced" in app.text(), 30,
                   "the roll to finish", step=0.05)
        after = workers_n(app, 3)
    finally:
        ok, failures = clients.stop()
    assert failures == [], failures[:5]
    assert ok > 5
    # The first roll never finished: the second replaced its workers too.
    assert app.text().count("workers replaced") == 1
    assert not set(after) & (set(before) | set(mid))
    assert {exe_of(app) for _ in range(12)} == {newest}


def test_reload_broken_binary_leaves_old_workers_serving(stack, own_app,
                                                        tmp_path):
    d, app, before, first, clients = serving(stack, own_app, tmp_path, 2)
    try:
        d.install_script("#!/bin/sh\nexit 1\n")
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: "--check exited with status 1" in app.text(),
                   20, "the failed check", step=0.02)
        # A valid binary with a configuration that is not.
        d.install()
        d.write_env(KEEL_WORKERS="abc")
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: app.text().count("the workers serve on") == 2,
                   20, "the second failed check", step=0.02)
        time.sleep(0.5)
        assert sorted(app.workers()) == sorted(before)
        assert exe_of(app) == first
    finally:
        ok, failures = clients.stop()
    assert failures == [], failures[:5]
    assert ok > 20
    assert "configuration: KEEL_WORKERS" in app.text()
    assert "workers replaced" not in app.text()
    # Fixed: the next SIGHUP rolls.
    d.write_env(KEEL_WORKERS=2)
    os.kill(app.pid, signal.SIGHUP)
    workers_n(app, 2, exclude=before)
    wait_until(lambda: "reload: all 2 workers replaced" in app.text(), 20,
               "the roll to finish", step=0.05)
    assert exe_of(app) != first


def test_reload_keeps_a_socket_passed_on_fd0(stack, own_app, tmp_path):
    """Started by spawn-fcgi (or lighttpd's bin-path), the socket is fd 0:
    the new image takes it over all the same."""
    d = Deploy(stack, tmp_path, workers=1)
    app = own_app(argv=lambda sock: ["spawn-fcgi", "-n", "-s", sock, "--",
                                     d.bin],
                  KEEL_ENV_FILE=d.env_file, KEEL_RATELIMIT="0", **d.env)
    before = workers_n(app, 1)
    new = d.install()
    os.kill(app.pid, signal.SIGHUP)
    workers_n(app, 1, exclude=before)
    wait_until(lambda: "reload: all 1 workers replaced" in app.text(), 20,
               "the roll to finish", step=0.05)
    assert exe_of(app) == new


def test_reload_forgets_a_variable_taken_out_of_the_env_file(
        stack, own_app, tmp_path):
    """A variable removed from the env file goes back to its default on
    SIGHUP, as if the app had been started afresh: the reload unsets what
    the file set before sourcing it again."""
    d = Deploy(stack, tmp_path, workers=2)
    d.write_env(KEEL_WORKERS=2, KEEL_MAX_REQUESTS=3)
    app = d.start(own_app)
    first = workers_n(app, 2)
    for _ in range(12):
        assert fcgi_ok(app, "/_test/pid") is None
    # Three requests each: the workers were replaced.
    wait_until(lambda: not set(app.workers()) & set(first), 20,
               "recycled workers", step=0.02)
    d.write_env(KEEL_WORKERS=2)
    os.kill(app.pid, signal.SIGHUP)
    wait_until(lambda: "reload: all 2 workers replaced" in app.text(), 20,
               "the roll to finish", step=0.05)
    settled = workers_n(app, 2)
    for _ in range(30):
        assert fcgi_ok(app, "/_test/pid") is None
    time.sleep(0.3)
    # KEEL_MAX_REQUESTS is back to 10,000: nobody was recycled.
    assert sorted(app.workers()) == sorted(settled)


def serving_workers(app):
    """app's children but the check (sh -c ... BINARY --check)."""
    def checking(pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return b"--check" in f.read().split(b"\0")
        except OSError:
            return False
    return [p for p in app.workers() if not checking(p)]


def slow_check(d, app, seconds):
    """Deploys a binary whose start (so its --check) takes seconds, and
    SIGHUPs app; returns once the check runs."""
    d.install_script("#!/bin/sh\nsleep %d\nexec %s \"$@\"\n"
                     % (seconds, d.src))
    os.kill(app.pid, signal.SIGHUP)
    wait_until(lambda: "reload: checking" in app.text(), 10,
               "the check to start", step=0.02)


def test_reload_check_does_not_stop_the_supervisor(stack, own_app,
                                                    tmp_path):
    """A slow --check (a binary whose start takes seconds) doesn't stop
    the supervisor's work: a worker killed meanwhile is replaced at once,
    and the reload goes on when the check passes."""
    d, app, before, _, clients = serving(stack, own_app, tmp_path, 2)
    try:
        slow_check(d, app, 3)
        os.kill(before[0], signal.SIGKILL)
        respawned = wait_until(
            lambda: set(serving_workers(app)) - set(before) or None, 2,
            "a new worker while the check runs", step=0.02)
        assert "reload: executing" not in app.text()
        assert "killed by signal 9; respawning" in app.text()
        wait_until(lambda: "reload: all 2 workers replaced" in app.text(),
                   30, "the roll after the check", step=0.05)
    finally:
        ok, failures = clients.stop()
    assert respawned
    # The killed worker's request, if it had one, and nothing else.
    assert len(failures) <= 1, failures[:5]
    assert app.proc.poll() is None


def test_reload_sighup_during_a_check_checks_the_newest(stack, own_app,
                                                        tmp_path):
    """A SIGHUP while a check runs (a deploy right after another) checks
    again once it is over, and the newest binary is the one that runs."""
    d, app, _, _, clients = serving(stack, own_app, tmp_path, 2)
    try:
        slow_check(d, app, 2)
        newest = d.install()
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: "reload: all 2 workers replaced" in app.text(),
                   30, "the roll", step=0.05)
    finally:
        ok, failures = clients.stop()
    assert failures == [], failures[:5]
    assert app.text().count("reload: checking") == 2
    assert app.text().count("reload: executing") == 1
    assert {exe_of(app) for _ in range(12)} == {newest}
