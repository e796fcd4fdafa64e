# SPDX-License-Identifier: ISC
"""test_outbox_crash.py -- a Redis crash that loses its last writes loses
no job (issue 9, item 8; DESIGN.md "When a dependency fails": jobs
"resume when Redis is back, none lost (also after a crash that lost its
last second)").

Redis acknowledges a push before it is on disk (appendfsync everysec).
A kill -9 alone doesn't lose what the kernel already holds, so the test
makes the disk lag explicit: it turns the AOF off (what is on disk stays
as it was), lets a stream of writes go on being acknowledged, kills
Redis with SIGKILL and starts it again from that older file -- what a
machine crash does to the last second.  Every write committed must
still be delivered, once: the relay pushes again what Redis forgot, and
a job Redis forgot it had finished is not run twice.
"""

import os
import re
import signal
import threading
import time

from accounts import make_user
from helpers import redis_cli, request
from test_jobs import FAST, drain, jobs, summary  # noqa: F401

WRITES = 60             # reset requests in the stream
PACE = 0.07             # seconds between them (~4 s of writes)


def stream(stack, email, codes):
    """WRITES reset requests for email, paced; their statuses in codes."""
    for _ in range(WRITES):
        r = request("POST", stack.url("/api/auth/password-reset"),
                    json={"email": email}, timeout=30)
        codes.append(r.status_code)
        time.sleep(PACE)


def test_a_redis_crash_that_lost_its_last_writes_loses_no_job(jobs):
    u = make_user(jobs, "student")
    codes = []
    t = threading.Thread(target=stream, args=(jobs, u["email"], codes))
    d = jobs.spawn("keel-drain-email", "--budget", 60, env=FAST)
    pid_file = jobs.path("run", "redis.pid")
    try:
        t.start()
        time.sleep(1.2)
        # From here on nothing more reaches the disk ...
        redis_cli(jobs, "CONFIG", "SET", "appendonly", "no")
        time.sleep(0.6)
        # ... and the jobs pushed from here wait for a drainer that is
        # stopped (a fast drainer would finish them all before the crash,
        # and a finished job is no loss to find: the test would test
        # nothing on a machine slow enough to pace the writes past it) ...
        d.send_signal(signal.SIGSTOP)
        time.sleep(0.6)
        # ... and the crash loses what only memory held.
        with open(pid_file) as f:
            os.kill(int(f.read().split()[0]), signal.SIGKILL)
        time.sleep(0.3)
        jobs.start_component("redis")
        d.send_signal(signal.SIGCONT)
        t.join(timeout=60)
        assert not t.is_alive(), "the write stream did not end"
    finally:
        d.send_signal(signal.SIGCONT)
        d.send_signal(signal.SIGTERM)
        d.communicate(timeout=30)
        jobs.start_component("redis")
    # Every request committed: resets need no Redis.
    assert codes == [202] * WRITES, codes
    # The relay asks about rows pushed more than a second ago.
    time.sleep(1.2)
    p = jobs.program("keel-outbox-relay", "--once",
                     env={"KEEL_RELAY_RECHECK": "1"})
    assert p.returncode == 0, p.stderr
    lost = re.search(r"lost=(\d+)", p.stdout)
    s = summary(drain(jobs).stdout)
    mails = [m for m in jobs.mail()
             if m["To"].addresses[0].addr_spec == u["email"]]
    ids = [m["Message-ID"] for m in mails]
    # Every committed job delivered, none twice.
    assert len(mails) == WRITES, (len(mails), p.stdout, s)
    assert len(set(ids)) == len(ids), "a job was sent twice"
    assert lost and int(lost.group(1)) > 0, \
        "the crash lost nothing: the test tested nothing"
    assert jobs.psql("SELECT count(*) FROM outbox WHERE kind = "
                     "'password_reset_request' AND finished_at IS NULL "
                     "AND payload->>'email' = '%s'" % u["email"]) == "0"
