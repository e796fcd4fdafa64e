# SPDX-License-Identifier: ISC
"""test_drain_release.py -- what a drainer does with a job that fails
while PostgreSQL doesn't answer (lib/drain.c): handed back uncounted, but
only so many times, so a job that takes PostgreSQL down itself, or
whose failures meet an outage every time, still reaches the dead
letters; and one ping per batch, not one per failed job.

The drainer is tests/bench/keel-drain-noop, whose "retry" jobs fail
every attempt without touching the database; "PostgreSQL down" is its
DATABASE_URL pointing at a loopback port nothing listens on, so the
stack's primary stays up for the other suites.
"""

import re
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from helpers import redis_cli
from stack import free_port
from test_jobs import FAST, enqueue, stats, summary

# lib/drain.c's DRAIN_OUTAGES_MAX: hand-backs before the attempt counts.
OUTAGES_MAX = 10
# The noop queue's policy (lib/queue.c): 3 attempts.
NOOP_ATTEMPTS = 3


@pytest.fixture
def noop(stack):
    p = stack.program("keel-queues", "purge", "noop", "all")
    assert p.returncode == 0, p.stderr
    yield stack
    p = stack.program("keel-queues", "purge", "noop", "all")
    assert p.returncode == 0, p.stderr


def dead_database_url(stack):
    """The stack's DATABASE_URL with its port changed to a free one: a
    PostgreSQL that refuses every connection, as a stopped one does."""
    u = urlsplit(stack.env["DATABASE_URL"])
    netloc = "%s127.0.0.1:%d" % (u.netloc.rpartition("@")[0] + "@"
                                 if "@" in u.netloc else "", free_port())
    return urlunsplit(u._replace(netloc=netloc))


def test_job_failing_while_postgresql_is_down_dies_after_10_hand_backs(noop):
    """A job that fails every time, with PostgreSQL down every time, is
    handed back OUTAGES_MAX times without counting the attempt, then its
    attempts count: retried, then dead-lettered -- not handed back
    forever.  One drainer run (1 s) leases it at most once: after the
    failure it waits for PostgreSQL."""
    enqueue(noop, "retry", "{}", key="poison-1", queue="noop")
    env = dict(FAST, DATABASE_URL=dead_database_url(noop))
    total = {"released": 0, "retried": 0, "failed": 0}
    errs = ""
    deadline = time.monotonic() + 120
    runs = 0
    while runs < 3 * OUTAGES_MAX and time.monotonic() < deadline:
        runs += 1
        p = noop.program("keel-drain-noop", "--until-empty", "--budget", 1,
                         env=env, timeout=60)
        assert p.returncode == 0, p.stderr
        s = summary(p.stdout)
        for k in total:
            total[k] += s[k]
        errs += p.stderr
        if stats(noop, "noop")["failed"] == 1:
            break
    assert stats(noop, "noop") == {"waiting": 0, "active": 0, "delayed": 0,
                                   "completed": 0, "failed": 1}, \
        (runs, total, errs[-3000:])
    assert total == {"released": OUTAGES_MAX, "retried": NOOP_ATTEMPTS - 1,
                     "failed": 1}, (runs, total, errs[-3000:])
    assert "waiting for PostgreSQL" in errs
    assert "counted" in errs
    # The dead letter says why it was counted, for the operator.
    why = redis_cli(noop, "HGET", "keel:q:noop:j:poison-1", "error")
    assert "fails every attempt" in why, why
    assert "PostgreSQL" in why, why


def test_a_batch_of_failed_jobs_pings_postgresql_once(noop):
    """Five jobs leased together that all fail, PostgreSQL up: one ping
    after the first failure answers for the batch; each attempt counts.
    The three attempts are three batches: three pings, not fifteen."""
    enqueue(noop, "retry", "{}", queue="noop", count=5)
    p = noop.program("keel-drain-noop", "--until-empty", "--budget", 30,
                     env=dict(FAST, KEEL_LOG_LEVEL="debug"), timeout=90)
    assert p.returncode == 0, p.stderr
    s = summary(p.stdout)
    assert s["retried"] == 5 * (NOOP_ATTEMPTS - 1) and s["failed"] == 5, \
        (s, p.stderr[-3000:])
    assert s["released"] == 0, (s, p.stderr[-3000:])
    pings = re.findall(r"pinging PostgreSQL", p.stderr)
    assert len(pings) == NOOP_ATTEMPTS, p.stderr[-3000:]
