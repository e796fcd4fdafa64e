#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""poll.py -- what the old system's live notifications cost PostgreSQL
(issue 11's comparison): 10,000 open streams, each polling every 5 s for
its user's notifications newer than the last one seen, is 2,000 queries
a second.

    scripts/build && /usr/bin/python3 tests/bench/poll.py [--runs 3] \\
        [--duration 30] [--rate 2000] [--users 10000] [--per-user 20]

Starts a throwaway stack (tests/e2e/stack.py, the optimised build in
_build; KEEL_BUILD_DIR to change it), loads USERS users with PER_USER
notifications each (ids interleaved across users, as notifications
arriving over time would be), then runs pgbench against the primary at a
fixed rate:

    pgbench -n -M prepared -R RATE -T DURATION -c 8 -j 2 -f poll.sql -l

poll.sql is one poll: a random user's notifications with an id above the
last one that user has seen (the user's newest: the steady state, where a
poll finds nothing), on sql/005's notifications_user_id_idx.  Prepared
statements over 8 pooled connections is the cheapest way the old server
could have issued it, so the cost below is a floor of what it paid.

PostgreSQL's CPU is utime + stime of the primary's postmaster and every
descendant (backends, background processes; what they reaped included)
from /proc, before and after each run, over the run's wall time; the
replica (idle: reads write no WAL) is not counted.  Latency is per query
from pgbench's log, measured from the query's scheduled start (so it
includes any wait for a free connection).  Prints a Markdown table.
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

from stack import Stack  # noqa: E402
import procstat  # noqa: E402

POLL_SQL = r"""\set k random(0, :users - 1)
\set uid :umin + :k
\set last :nmin + :k + (:per_user - 1) * :users
SELECT id, kind, title, body, data, read_at, created_at FROM notifications WHERE user_id = :uid AND id > :last ORDER BY id LIMIT 100;
"""


def pgbench_path():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
                   key=lambda p: [int(x) if x.isdigit() else x
                                  for x in p.split("/")])
    if not found:
        raise SystemExit("pgbench not found (Debian's postgresql package)")
    return found[-1]


def postmaster_pid(stack):
    with open(os.path.join(os.path.realpath(stack.path("pg")), "primary",
                           "postmaster.pid")) as f:
        return int(f.readline())


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def run_once(stack, pgbench, script, args, duration, workdir, pm):
    for f in glob.glob(os.path.join(workdir, "log*")):
        os.unlink(f)
    cmd = [pgbench, "-n", "-M", "prepared", "-R", str(args.rate),
           "-T", str(duration), "-c", "8", "-j", "2", "-f", script,
           "-D", "users=%d" % args.users, "-D", "umin=%d" % args.umin,
           "-D", "nmin=%d" % args.nmin, "-D", "per_user=%d" % args.per_user,
           "-l", "--log-prefix", os.path.join(workdir, "log"),
           stack.env["DATABASE_URL"]]
    c0, t0 = procstat.tree_cpu(pm), time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    t1, c1 = time.monotonic(), procstat.tree_cpu(pm)
    if p.returncode != 0:
        raise SystemExit("pgbench failed: %s %s" % (p.stdout, p.stderr))
    lat, lag = [], []
    for f in glob.glob(os.path.join(workdir, "log*")):
        with open(f) as fh:
            for line in fh:
                v = line.split()
                # client xact time script epoch us [lag]
                lat.append(int(v[2]) / 1000)
                if len(v) > 6:
                    lag.append(int(v[6]) / 1000)
    qps = len(lat) / duration
    return {"qps": qps, "p50": pct(lat, 50), "p99": pct(lat, 99),
            "lag_p99": pct(lag, 99) if lag else 0.0,
            "cores": (c1 - c0) / (t1 - t0), "cmd": cmd}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--per-user", type=int, default=20)
    args = ap.parse_args()
    build = os.environ.get("KEEL_BUILD_DIR", os.path.join(ROOT, "_build"))
    pgbench = pgbench_path()
    workdir = tempfile.mkdtemp(prefix="keel-poll-")
    script = os.path.join(workdir, "poll.sql")
    with open(script, "w") as f:
        f.write(POLL_SQL)
    s = Stack(build_dir=build)
    s.start()
    results = []
    try:
        s.psql("INSERT INTO users (email, username, name, role) "
               "SELECT 'poll' || g || '@bench.test', 'poll_' || g, "
               "'Student ' || g, 'student' FROM generate_series(1, %d) g"
               % args.users)
        args.umin = int(s.psql("SELECT min(id) FROM users WHERE email "
                               "LIKE 'poll%@bench.test'"))
        # Notification g goes to user g % USERS: ids interleave across
        # users; user k's are nmin + k + j * USERS.
        s.psql("INSERT INTO notifications (user_id, kind, title, body, "
               "data, created_at) SELECT %d + g %% %d, 'attempt_graded', "
               "'Result: Test ' || g %% 97, 'You scored ' || g %% 101 || "
               "'%% (' || g %% 11 || ' of 10 correct).', "
               "jsonb_build_object('attemptId', g, 'testId', g %% 97, "
               "'score', g %% 101, 'late', false), now() - (%d - g) * "
               "interval '1 second' FROM generate_series(0, %d) g"
               % (args.umin, args.users, args.users * args.per_user,
                  args.users * args.per_user - 1))
        args.nmin = int(s.psql("SELECT min(id) FROM notifications"))
        s.psql("VACUUM ANALYZE notifications")
        s.psql("VACUUM ANALYZE users")
        # The query finds nothing for the user's newest id, something for
        # the one before: the script's arithmetic matches the data.
        k = args.users // 2
        last = args.nmin + k + (args.per_user - 1) * args.users
        assert s.psql("SELECT count(*) FROM notifications WHERE user_id = "
                      "%d AND id > %d" % (args.umin + k, last)) == "0"
        assert s.psql("SELECT count(*) FROM notifications WHERE user_id = "
                      "%d AND id > %d" % (args.umin + k,
                                          last - args.users)) == "1"
        plan = s.psql("EXPLAIN SELECT id, kind, title, body, data, read_at, "
                      "created_at FROM notifications WHERE user_id = "
                      "%d AND id > %d ORDER BY id LIMIT 100"
                      % (args.umin + k, last))
        pm = postmaster_pid(s)
        run_once(s, pgbench, script, args, 5, workdir, pm)     # warm up
        idle0, t0 = procstat.tree_cpu(pm), time.monotonic()
        time.sleep(10)
        idle = (procstat.tree_cpu(pm) - idle0) / (time.monotonic() - t0)
        loads = [procstat.loadavg()]
        for _ in range(args.runs):
            results.append(run_once(s, pgbench, script, args, args.duration,
                                    workdir, pm))
            loads.append(procstat.loadavg())
    finally:
        s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in results)
           for k in ("qps", "p50", "p99", "lag_p99", "cores")}
    print("%d users x %d notifications; pgbench %s; nproc=%d; load average"
          " before/after each run: %s\n" % (
              args.users, args.per_user, os.path.basename(pgbench),
              os.cpu_count(), " | ".join(loads)))
    print("plan: " + plan.replace("\n", " / ") + "\n")
    print("    " + " ".join(results[0]["cmd"][:-1]) + " $DATABASE_URL\n")
    print("PostgreSQL idle (same stack, no load): %.3f cores\n" % idle)
    print("| run | queries/s | p50 ms | p99 ms | p99 schedule lag ms | "
          "PostgreSQL CPU (cores) |\n|---|---:|---:|---:|---:|---:|")
    for i, r in enumerate(results, 1):
        print("| %d | %.0f | %.3f | %.3f | %.3f | %.3f |"
              % (i, r["qps"], r["p50"], r["p99"], r["lag_p99"], r["cores"]))
    print("| **median** | **%.0f** | **%.3f** | **%.3f** | %.3f | **%.3f** |"
          % (med["qps"], med["p50"], med["p99"], med["lag_p99"],
             med["cores"]))


if __name__ == "__main__":
    main()
