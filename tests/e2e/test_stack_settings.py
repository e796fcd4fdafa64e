# SPDX-License-Identifier: ISC
"""test_stack_settings.py -- a stack started again keeps the variables it
was started with (scripts/stack REMEMBERED_VARS, README "Running the
stack").

A stack of its own, started with TRUSTED_PROXIES and a rate limit of its
own; then scripts/stack run without either, as an operator restarts a
fleet's host (`KEEL_STACK_DIR=... scripts/stack stop; ... start`) or starts
one component.  The env file must still hold both, and an app told to
reload (SIGHUP: it sources the env file again, unsetting what is gone
from it) must still run with both -- a host that lost them trusted no
proxy and fell back to the default limits, one bucket for every client
behind HAProxy: 429 to everyone.  tests/scripts/stack-remembers-settings
checks the same on a stub app, without PostgreSQL.
"""

import os
import signal
import subprocess

import pytest
import requests

from helpers import wait_until
from stack import STACK_SCRIPT, Stack, StackError, parse_env_file

# What the stack is started with, and what no later command repeats.
STARTED_WITH = {"TRUSTED_PROXIES": "10.9.9.9",
                "KEEL_RATELIMIT_API": "777/60"}
APP = "cars"


@pytest.fixture(scope="module")
def remembering():
    s = Stack(env=STARTED_WITH)
    try:
        s.start()
    except StackError as e:
        s.stop()
        pytest.fail(str(e))
    yield s
    s.stop()


def bare(stack, *args, timeout=300):
    """scripts/stack ARGS on stack's dir, with the harness's variables
    (ports, build, the e2e limits for the other buckets) but none of
    STARTED_WITH; its output."""
    env = stack._stack_env()
    for k in STARTED_WITH:
        env.pop(k, None)
    p = subprocess.run([STACK_SCRIPT] + list(args), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout
    return p.stdout


def environ(pid):
    """pid's environment, as a dict."""
    with open("/proc/%d/environ" % pid, "rb") as f:
        items = f.read().decode("utf-8", "replace").split("\0")
    return dict(i.split("=", 1) for i in items if "=" in i)


def kept(env):
    """Which of STARTED_WITH env lacks or holds another value of."""
    return {k: env.get(k) for k, v in STARTED_WITH.items() if env.get(k) != v}


def reloaded_workers(stack):
    """SIGHUP to APP's supervisor; its workers once all are new."""
    before = set(stack.worker_pids(APP))
    assert before
    os.kill(stack.app_pid(APP), signal.SIGHUP)

    def new():
        now = set(stack.worker_pids(APP))
        return now if len(now) >= len(before) and not now & before else None
    return wait_until(new, 30, "%s's workers replaced after SIGHUP" % APP)


def check_kept(stack):
    """The env file, APP's reloaded workers and its answers all still
    carry STARTED_WITH."""
    assert kept(parse_env_file(stack.path("env"))) == {}
    for pid in reloaded_workers(stack):
        try:
            assert kept(environ(pid)) == {}, pid
        except FileNotFoundError:
            continue            # a worker recycled since: its own check
    r = requests.get(stack.url("/api/cars"), timeout=30)
    assert '"api";q=777;w=60' in r.headers.get("RateLimit-Policy", ""), \
        r.headers


def test_start_component_keeps_what_the_stack_was_started_with(
        remembering):
    """`start lighttpd` on the running stack (nothing to start, but the
    env file is written again) leaves the apps' variables in it."""
    assert kept(parse_env_file(remembering.path("env"))) == {}
    out = bare(remembering, "start", "lighttpd")
    assert "lighttpd already running" in out
    check_kept(remembering)


def test_stop_and_start_keeps_what_the_stack_was_started_with(
        remembering):
    """The whole stack stopped and started again, as README restarts a
    fleet's host, without the variables."""
    bare(remembering, "stop")
    bare(remembering, "start")
    check_kept(remembering)
