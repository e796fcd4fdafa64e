#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""board_drain_ab.py -- keel-drain-leaderboard of this tree against
another build's, alternating on one stack: what one attempt_submitted
job costs the PostgreSQL primary (CPU, transactions), the drainer
itself, and the wall clock.

    scripts/build && /usr/bin/python3 tests/bench/board_drain_ab.py \\
        OTHER_BUILD_DIR [RUNS [JOBS]]               # RUNS: 4, JOBS: 2000

OTHER_BUILD_DIR is a build of the other tree (e.g. git archive <commit> |
tar -x -C /tmp/old && /tmp/old/scripts/build /tmp/old/_build).  Loads
the data of tests/bench/leaderboard_ab.py (100,000 students, 1,000,000
attempts over 100 tests and 60 days) and builds every board once
(keel-leaderboard-rebuild).  Then each run, for each build in turn:
JOBS new attempts (random students and tests, submitted now, so each
job changes its user's entries on all six of its boards, as a submit
does), their jobs written to the outbox and put on the leaderboard
queue (keel-outbox-relay --once), and that build's drainer
(--until-empty), measured: the primary's processes' CPU (a backend's
reaped into the postmaster's; autovacuum off, a checkpoint just
before), its committed transactions
(pg_stat_database), the drainer's CPU (its rusage), all per job.
"""

import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
from capacity import TCK, proc_table  # noqa: E402
from leaderboard_ab import DATA, ab_args  # noqa: E402
from stack import Stack  # noqa: E402
from test_plans import superuser_sql  # noqa: E402

# JOBS new attempts, submitted now: run r's, numbered from 0.
NEW = ("WITH n AS (INSERT INTO test_attempts (test_id, user_id, started_at, "
       "expires_at, submitted_at, score, correct, total, answers, "
       "answer_key) SELECT t.min + (g * 7919 + %(r)d) %% 100, "
       "u.min + (g * 104729 + %(r)d * 31) %% 100000, "
       "now() - interval '10 minutes', now() + interval '1 hour', now(), "
       "(g * 53 + %(r)d) %% 101, 0, 100, '{}', '{}' "
       "FROM generate_series(1, %(n)d) g, (SELECT min(id) FROM tests) t, "
       "(SELECT min(id) FROM users WHERE role = 'student') u "
       "RETURNING id) SELECT min(id) FROM n")
JOBS = ("INSERT INTO outbox (queue, kind, payload, idempotency_key) "
        "SELECT 'leaderboard', 'attempt_submitted', "
        "jsonb_build_object('attemptId', id), 'bench:attempt:' || id "
        "FROM test_attempts WHERE id >= %d")
XACTS = ("SELECT xact_commit + xact_rollback FROM pg_stat_database "
         "WHERE datname = current_database()")


def primary(postmaster):
    """{what: CPU ticks} of the primary now: "backends", the
    postmaster's own and its reaped children's (a backend's CPU lands
    there when it exits), and each live child by its title (the
    checkpointer, the walsender, ...; a live backend as "backends")."""
    t = proc_table()
    out = {"backends": t[postmaster][3]}
    for pid, (ppid, _, cmd, ticks) in t.items():
        if ppid == postmaster:
            what = cmd.split(":", 1)[-1].strip().split(" ")[0]
            if what in ("checkpointer", "background", "walwriter",
                        "autovacuum", "logical", "walsender"):
                out[what] = out.get(what, 0) + ticks
            else:
                out["backends"] += ticks
    return out


def main():
    runs, build, progs = ab_args("keel-drain-leaderboard")
    jobs = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    s = Stack(build_dir=build)
    s.start()
    env = dict(os.environ)
    env.update(s.env)
    env.update({"KEEL_LOG_LEVEL": "warn",
                "KEEL_DB_STATEMENT_TIMEOUT": "600000"})
    got = {name: [] for name, _ in progs}
    try:
        for sql in DATA:
            s.psql(sql)
        # Nothing in the primary's CPU but the drain: no autovacuum (the
        # tables are analyzed before each run) and a checkpoint just
        # before it.
        superuser_sql(s, ["ALTER SYSTEM SET autovacuum = off",
                          "SELECT pg_reload_conf()"])
        subprocess.run([os.path.join(build, "cron",
                                     "keel-leaderboard-rebuild")],
                       env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=3600)
        pm = int(open(os.path.join(s.dir, "pg", "primary",
                                   "postmaster.pid")).readline())
        # Hint bits set and the visibility map made after the bulk
        # writes, so no run pays for them.
        subprocess.run(["psql", "-X", "-q", "-d", s.env.get(
            "KEEL_STACK_PG_URL") or s.env["DATABASE_URL"], "-c",
            "VACUUM ANALYZE"], check=True, timeout=3600)
        print("build  jobs  backends us/job  xacts/job  drainer us/job  "
              "wall ms/job  load  other primary processes us/job")
        k = 0
        for _ in range(runs):
            for name, prog in progs:
                k += 1
                first = int(s.psql(NEW % {"r": k, "n": jobs}))
                s.psql(JOBS % first)
                subprocess.run([os.path.join(build, "cron",
                                             "keel-outbox-relay"), "--once"],
                               env=env, check=True, timeout=600,
                               stdout=subprocess.DEVNULL)
                s.psql("ANALYZE")
                superuser_sql(s, "CHECKPOINT")
                time.sleep(1.0)     # the stats of the setup are in
                x0 = int(s.psql(XACTS))
                c0 = primary(pm)
                u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                p = subprocess.run([prog, "--until-empty", "--budget",
                                    "3000"], env=env,
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   timeout=3600)
                wall = time.monotonic() - t0
                u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                time.sleep(1.0)     # the drainer's backend gone: reaped,
                c1 = primary(pm)    # and its stats flushed
                x1 = int(s.psql(XACTS))
                done = re.search(r"processed=(\d+) failed=(\d+)", p.stdout)
                if p.returncode != 0 or not done or int(done.group(1)) != \
                        jobs or int(done.group(2)) != 0:
                    raise SystemExit("%s: %s %s" % (name, p.stdout,
                                                    p.stderr[-500:]))
                cpu = {w: (c1.get(w, 0) - c0.get(w, 0)) / TCK * 1e6 / jobs
                       for w in c1}
                row = (cpu["backends"],
                       (x1 - x0 - 1) / jobs,
                       (u1.ru_utime + u1.ru_stime - u0.ru_utime -
                        u0.ru_stime) * 1e6 / jobs,
                       wall * 1e3 / jobs)
                got[name].append(row)
                print("%-5s %5d  %14.0f  %9.2f  %14.0f  %11.2f  %s  %s" % (
                    (name, jobs) + row +
                    (open("/proc/loadavg").read().split()[0],
                     " ".join("%s %.0f" % (w, v) for w, v in
                              sorted(cpu.items()) if w != "backends"))),
                    flush=True)
        print("\nmedians over %d runs:" % runs)
        for name, _ in progs:
            med = [statistics.median(r[i] for r in got[name])
                   for i in range(4)]
            print("%-5s backends %.0f us/job, %.2f xacts/job, drainer "
                  "%.0f us/job, wall %.2f ms/job" % ((name,) + tuple(med)))
        print("this / other, the primary's backends' CPU: %.2f" % (
            statistics.median(r[0] for r in got["this"]) /
            statistics.median(r[0] for r in got["other"])))
    finally:
        s.stop()


if __name__ == "__main__":
    main()
