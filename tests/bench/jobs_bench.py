#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""jobs_bench.py -- the job queue's cost: drain throughput of the no-op job
kind, and what enqueueing costs on the request path.

    scripts/build && /usr/bin/python3 tests/bench/jobs_bench.py [N]

Starts a throwaway stack (tests/e2e/stack.py) from the optimised build in
_build (KEEL_BUILD_DIR to change it) and measures:

  drain     N noop jobs pre-loaded on the noop queue, drained by one
            keel-drain-noop (batches of 1000 leases per script call,
            completions recorded the same way, retention trimming on)
  enqueue   per job, as a request does it: BEGIN, INSERT INTO outbox,
            COMMIT, then keel_outbox_push (SELECT the row, one EVALSHA, UPDATE
            pushed_at) -- keel-queues enqueue --outbox, one process for
            all, so connection setup is paid once
  redis     per job, the EVALSHA alone (keel-queues enqueue)

and prints a Markdown table for tests/bench/jobs-results.md.
"""

import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from stack import Stack  # noqa: E402


def run(stack, *args, **kw):
    p = stack.program(*args, timeout=3600, **kw)
    if p.returncode != 0:
        raise SystemExit("%s failed: %s" % (args, p.stderr))
    return p


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    build = os.environ.get("KEEL_BUILD_DIR", os.path.join(ROOT, "_build"))
    s = Stack(build_dir=build)
    s.start()
    try:
        env = {"KEEL_LOG_LEVEL": "warn"}
        t0 = time.monotonic()
        run(s, "keel-queues", "enqueue", "--count", n, "noop", "noop", "{}",
            env=env)
        redis_us = (time.monotonic() - t0) / n * 1e6
        p = run(s, "keel-drain-noop", "--until-empty", "--budget", 600,
                env=env)
        m = re.search(r"processed=(\d+) .*took=([\d.]+)s", p.stdout)
        done, took = int(m.group(1)), float(m.group(2))
        assert done == n, p.stdout
        k = max(1000, n // 50)
        t0 = time.monotonic()
        run(s, "keel-queues", "enqueue", "--outbox", "--count", k, "noop",
            "noop", "{}", env=env)
        outbox_us = (time.monotonic() - t0) / k * 1e6
        assert s.psql("SELECT count(*) FROM outbox WHERE pushed_at IS "
                      "NULL") == "0"
    finally:
        s.stop()
    print("| measure | result |")
    print("|---|---|")
    print("| drain, no-op jobs | %d jobs in %.2f s = **%.0f jobs/s** |"
          % (done, took, done / took))
    print("| enqueue on the request path (outbox INSERT in a transaction "
          "+ push after commit) | **%.0f µs/job** (%d jobs) |"
          % (outbox_us, k))
    print("| enqueue straight to Redis (one EVALSHA) | %.0f µs/job |"
          % redis_us)


if __name__ == "__main__":
    main()
