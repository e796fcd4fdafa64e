# SPDX-License-Identifier: ISC
"""test_pool.py -- KEEL_PM=dynamic (lib/serve.c, lib/pm.c; README
"Processes and signals"): a pool that grows under load, never past
KEEL_PM_MAX_CHILDREN, shrinks back to KEEL_PM_MIN_SPARE idle workers at
rest, and fails no request on the way; a pool configuration whose bounds
do not hold is refused at start.

Each test runs its own keel-testapp supervisor on a socket in a temp dir
(test_serve's own_app) and talks FastCGI to it; clients are a bounded
thread pool on loopback, each bounded in time.
"""

import os
import signal
import subprocess
import tempfile
import time

import pytest

from helpers import wait_until
from stack import APPS_CONF, app_names
from test_serve import Load, _testapp_bin, app_env, fcgi_get
from test_serve import own_app  # noqa: F401 (a fixture)

DYNAMIC = {"KEEL_PM": "dynamic", "KEEL_PM_START": "1",
           "KEEL_PM_MIN_SPARE": "1", "KEEL_PM_MAX_SPARE": "2",
           "KEEL_PM_MAX_CHILDREN": "8", "KEEL_PM_IDLE_TIMEOUT": "1",
           "KEEL_RATELIMIT": "0"}


def fcgi_ok(app, uri):
    """One GET of uri from app's socket: None for a 200, else what failed."""
    try:
        status, _, body = fcgi_get(app.sock, uri)
    except OSError as e:
        return repr(e)
    return None if status == 200 else "%d %r" % (status, body)


def clients(app, n, uri, pause=0.0):
    """n threads GETting uri from app's socket until stop()."""
    return Load(None, None, n, get=lambda: fcgi_ok(app, uri), pause=pause)


def test_dynamic_pool_grows_under_load_and_shrinks_when_idle(own_app):
    app = own_app(**DYNAMIC)
    wait_until(lambda: len(app.workers()) == 1, 10, "the one start worker",
               step=0.02)
    most = [1]

    def grown(n):
        w = len(app.workers())
        most[0] = max(most[0], w)
        return w >= n
    load = clients(app, 6, "/_test/sleep?ms=100")
    try:
        # Six requests at a time: six busy workers and a spare.
        wait_until(lambda: grown(7), 15, "the pool to grow to 7",
                   step=0.02)
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            grown(99)
            time.sleep(0.02)
    finally:
        ok, failures = load.stop()
    assert failures == [], failures[:5]
    assert ok > 30
    assert 7 <= most[0] <= 8, most
    # A trickle while the surplus is retired: none of it may be lost.
    trickle = clients(app, 1, "/_test/pid", pause=0.02)
    try:
        wait_until(lambda: len(app.workers()) <= 2, 20,
                   "the pool to shrink under a trickle", step=0.05)
    finally:
        ok, failures = trickle.stop()
    assert failures == [], failures[:5]
    assert ok > 10
    # At rest: KEEL_PM_MIN_SPARE idle workers, once the idle timeout is up.
    wait_until(lambda: len(app.workers()) == 1, 10,
               "the pool to shrink to min spare", step=0.05)
    time.sleep(1.5)
    assert len(app.workers()) == 1
    assert fcgi_get(app.sock, "/_test/pid")[0] == 200
    assert "respawning" not in app.text()


def test_dynamic_pool_stops_at_max_children(own_app):
    app = own_app(**dict(DYNAMIC, KEEL_PM_MAX_CHILDREN="3"))
    most = [0]
    load = clients(app, 6, "/_test/sleep?ms=100")
    try:
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            most[0] = max(most[0], len(app.workers()))
            time.sleep(0.02)
    finally:
        ok, failures = load.stop()
    # Queued on the socket, not refused.
    assert failures == [], failures[:5]
    assert ok > 20
    assert most[0] == 3, most
    assert "all 3 workers busy (KEEL_PM_MAX_CHILDREN)" in app.text()


def test_dynamic_pool_replaces_a_dead_worker(own_app):
    app = own_app(**dict(DYNAMIC, KEEL_PM_START="2", KEEL_PM_MIN_SPARE="2"))
    before = wait_until(lambda: (lambda w: w if len(w) == 2 else None)(
        app.workers()), 10, "two workers", step=0.02)
    os.kill(before[0], signal.SIGKILL)
    wait_until(lambda: (lambda w: len(w) == 2 and before[0] not in w)(
        app.workers()), 10, "a replacement", step=0.02)
    assert fcgi_get(app.sock, "/_test/pid")[0] == 200
    assert "killed by signal 9" in app.text()


def test_dynamic_pool_sighup_rolls_without_failures(own_app):
    app = own_app(**dict(DYNAMIC, KEEL_PM_START="3", KEEL_PM_MIN_SPARE="3",
                         KEEL_PM_MAX_SPARE="4"))
    before = wait_until(lambda: (lambda w: w if len(w) == 3 else None)(
        app.workers()), 10, "three workers", step=0.02)
    load = clients(app, 2, "/_test/sleep?ms=30")
    try:
        wait_until(lambda: load.ok >= 4, 20, "the load to start",
                   step=0.02)
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: "workers replaced" in app.text(), 20,
                   "the roll to finish", step=0.05)
        time.sleep(0.3)
    finally:
        ok, failures = load.stop()
    assert failures == [], failures[:5]
    assert ok > 5
    assert not set(app.workers()) & set(before)


@pytest.mark.parametrize("env, named", [
    ({"KEEL_PM": "ondemand"}, "KEEL_PM: expected static or dynamic"),
    (dict(DYNAMIC, KEEL_PM_MIN_SPARE="3"),
     "KEEL_PM_MIN_SPARE (3) is above KEEL_PM_MAX_SPARE (2)"),
    (dict(DYNAMIC, KEEL_PM_MAX_CHILDREN="1"),
     "KEEL_PM_MAX_SPARE (2) is above KEEL_PM_MAX_CHILDREN (1)"),
    (dict(DYNAMIC, KEEL_PM_START="9"), "KEEL_PM_START (9) must be"),
    (dict(DYNAMIC, KEEL_PM_MIN_SPARE="0"), "KEEL_PM_MIN_SPARE"),
])
def test_bad_pool_config_refused(stack, env, named):
    d = tempfile.mkdtemp(prefix="keel-pool-", dir="/tmp")
    sock = os.path.join(d, "x.sock")
    p = subprocess.run([_testapp_bin(stack), "--socket", sock],
                       env=app_env(stack, **env), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30)
    assert p.returncode == 1, p.stdout
    assert named in p.stdout
    assert not os.path.exists(sock)
    os.rmdir(d)


def test_stack_sizes_max_connections_from_the_pools(stack):
    """README "Processes and signals": apps × (most workers + 1) + cron
    programs + headroom, on both servers (a hot standby needs at least the
    primary's)."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "..")
    names = set()
    for path in (APPS_CONF, stack.extra_apps):
        if not path:
            continue
        names.update(app_names(path))
    with open(os.path.join(root, "cron", "crontab")) as f:
        cron = sum(1 for line in f if line[:1].isdigit() or
                   line.startswith("*"))
    env = stack.env
    most = int(env["KEEL_PM_MAX_CHILDREN"]) if env.get("KEEL_PM") == \
        "dynamic" else int(env["KEEL_WORKERS"])
    want = len(names) * (most + 1) + cron + 100
    assert int(stack.psql("SHOW max_connections")) == want
    assert int(stack.psql("SHOW max_connections", replica=True)) == want
