#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""tests/bench/uncached_cpu.py [--rounds N] [--duration S] [--connections C]
                               [BUILD_DIR ...]

CPU per request, by process, of keel's uncached list (issue 13): the
request tests/bench/peer times as "keel uncached" (GET
/api/cars?status=available with a bearer token, limits + session, the
cars app with KEEL_CACHE=0), on one throwaway stack (tests/e2e/stack.py)
with the peer bench's 10,000 cars.  For each round and each BUILD_DIR
(default: _build), the cars app is restarted from that build, warmed for
1 s, and `wrk -t1 -cC -dS` runs; each component's CPU (utime + stime of
its process tree, procstat.py) over the run is divided by the requests
wrk made.  Builds alternate, so two trees can be compared on a shared
box: CPU time per request moves much less with the machine's load than
req/s does.  Prints each run, then the medians, with the load average.

    git archive BASE | tar -x -C /tmp/base && (cd /tmp/base && scripts/build)
    tests/bench/uncached_cpu.py --rounds 3 /tmp/base/_build _build
"""

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

from procstat import stat, tree  # noqa: E402
from stack import Stack  # noqa: E402

PATH = "/api/cars?status=available"


def keel_sql():
    """The peer bench's 10,000 cars (tests/bench/peer's KEEL_SQL)."""
    with open(os.path.join(HERE, "peer")) as f:
        return re.search(r'KEEL_SQL = """(.*?)"""', f.read(), re.S).group(1)


def pid_file(stack, name):
    with open(stack.path("run", name + ".pid")) as f:
        return int(f.read().split()[0])


def components(stack):
    """name -> root pid of each process tree a request touches."""
    out = {"cars": pid_file(stack, "cars"),
           "lighttpd": pid_file(stack, "lighttpd")}
    pg = os.path.realpath(stack.path("pg"))
    for name in ("primary", "replica"):
        with open(os.path.join(pg, name, "postmaster.pid")) as f:
            out["pg-" + name] = int(f.readline())
    out["redis"] = pid_file(stack, "redis")
    out["memcached"] = pid_file(stack, "memcached")
    return out


def cpu(roots):
    return {k: sum((stat(p) or (0, "", 0.0))[2] for p in tree(pid))
            for k, pid in roots.items()}


def wrk(stack, token, secs, conns):
    out = subprocess.run(
        ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "-H",
         "Authorization: Bearer " + token, stack.url(PATH)],
        stdout=subprocess.PIPE, text=True, check=True).stdout
    return (int(re.search(r"(\d+) requests in", out).group(1)),
            float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))


def restart_cars(stack, build):
    # scripts/stack runs the app from KEEL_BUILD_DIR (Stack sets it from
    # build_dir, which _stack_env reads each time).
    stack.build_dir = os.path.abspath(build)
    stack.restart_component("cars", {"KEEL_CACHE": "0",
                                     "KEEL_RATELIMIT": "1"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("builds", nargs="*")
    a = ap.parse_args()
    builds = a.builds or [os.path.join(ROOT, "_build")]
    # tests/bench/peer's limits: never reached, still counted.
    for name in ("API", "READ", "WRITE", "AUTH"):
        os.environ["KEEL_RATELIMIT_" + name] = "1000000000/60"
    stack = Stack(build_dir=builds[0], extra_apps="").start()
    try:
        stack.psql(keel_sql())
        # The peer bench's session: a customer's, written into Redis.
        token = uuid.uuid4().hex + uuid.uuid4().hex[:11]
        key = "keel:sess:" + hashlib.sha256(token.encode()).hexdigest()
        subprocess.run(["redis-cli", "-p", str(stack.ports["redis"]), "HSET",
                        key, "uid", "1", "role", "customer", "exp",
                        str(int(time.time()) + 86400)], check=True,
                       stdout=subprocess.DEVNULL)
        seen = {b: {} for b in builds}
        for r in range(a.rounds):
            for b in builds:
                restart_cars(stack, b)
                wrk(stack, token, 1, a.connections)
                roots = components(stack)
                load = os.getloadavg()[0]
                before = cpu(roots)
                n, rps = wrk(stack, token, a.duration, a.connections)
                after = cpu(roots)
                us = {k: (after[k] - before[k]) / n * 1e6 for k in roots}
                us["total"] = sum(us.values())
                print("round %d %s: %d requests, %.0f req/s, load %.2f: %s"
                      % (r + 1, b, n, rps, load, ", ".join(
                          "%s %.1f" % kv for kv in us.items())), flush=True)
                for k, v in us.items():
                    seen[b].setdefault(k, []).append(v)
        print("\nmedian us of CPU per request:")
        for b in builds:
            print("  %s: %s" % (b, ", ".join(
                "%s %.1f" % (k, statistics.median(v))
                for k, v in seen[b].items())))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
