# SPDX-License-Identifier: ISC
"""test_log_repeats.py -- an outage's warnings don't grow the log per
request (lib/log.c: a call site's warning at most once a second per
worker, the rest counted).

With Redis down, every request to a rate-limited route fails open, and
the limiter warns.  Written once per request, that warning was a line
(116 bytes) per request anyone could send: a thousand anonymous requests
a second wrote 116 kB/s onto the disk PostgreSQL writes to.  Now the
lines beyond the access lines are bounded by time, not by requests, and
none of the requests goes uncounted: the lines written and the counts
they carry add up to the requests sent.
"""

import re
import time

from helpers import request

N = 1000
# The limiter's warning is written at most once a second per worker and
# kind (KEEL_LOG_REPEAT_MS), and once more with the count when the kind
# goes quiet; KINDS leaves room for the reconnect's info line and one
# more kind the outage brings.
KINDS = 3
FAILED_OPEN = "limit: redis unavailable (Connection refused); failing open"
ACCESS = re.compile(r"\] info (req=\S+ )?access time=")
HELD = re.compile(r" \((\d+) more like it since\)$")
SUMMARY = re.compile(r' log: (\d+) more like "(.*)" since$')


def restart(stack, name):
    """The app stopped (its workers write what they still count) and
    started afresh (none counts anything yet)."""
    stack.stop_component(name)
    stack.start_component(name)


def failed_open(lines):
    """The requests the limiter's warning lines account for: one per
    line written, plus the counts they carry."""
    n = 0
    for line in lines:
        m = SUMMARY.search(line)
        if m is not None:
            if m.group(2).startswith(FAILED_OPEN):
                n += int(m.group(1))
            continue
        if FAILED_OPEN not in line:
            continue
        m = HELD.search(line)
        n += 1 + (int(m.group(1)) if m else 0)
    return n


def test_redis_down_a_thousand_requests_log_few_lines_all_counted(stack):
    workers = int(stack.env.get("KEEL_WORKERS", "2"))
    restart(stack, "routes")
    start = len(stack.log("routes"))
    stack.stop_component("redis")
    try:
        t0 = time.monotonic()
        for i in range(N):
            r = request("GET", stack.url("/api/no-such-thing/%d" % i),
                        timeout=30)
            assert r.status_code == 404, r.text
        seconds = time.monotonic() - t0
    finally:
        stack.start_component("redis")
    restart(stack, "routes")
    lines = stack.log("routes")[start:].splitlines()
    extra = [line for line in lines if not ACCESS.search(line)]
    bound = workers * KINDS * (int(seconds) + 2)
    assert len(extra) <= bound, (
        "%d lines beyond the access lines for %d requests in %.1f s "
        "(at most %d):\n%s" % (len(extra), N, seconds, bound,
                               "\n".join(extra[:20])))
    assert sum(len(line) + 1 for line in extra) <= bound * 300
    # The operator still sees the warning, and every request is counted.
    assert any(FAILED_OPEN in line for line in extra), "\n".join(extra)
    assert failed_open(extra) == N, "\n".join(extra)
