#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""leaderboard_ab.py -- keel-leaderboard-rebuild of this tree against
another build's, alternating on one stack (same data, same load), every
board, nothing changed (the first run writes the durable copy):

    scripts/build && /usr/bin/python3 tests/bench/leaderboard_ab.py \\
        OTHER_BUILD_DIR [RUNS]                       # RUNS: 4

OTHER_BUILD_DIR is a build of the other tree (e.g. git archive <commit> |
tar -x -C /tmp/old && /tmp/old/scripts/build /tmp/old/_build).  Loads the
data of tests/bench/leaderboard.py (100,000 students, 1,000,000 attempts,
100 tests) and prints each run's summary line with the load average.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from stack import Stack  # noqa: E402

DATA = (
    "INSERT INTO users (email, username, name, role) SELECT 'b' || g || "
    "'@bench.test', 'bench_' || g, 'Student ' || g, 'student' "
    "FROM generate_series(1, 100000) g",
    "INSERT INTO tests (title, subject, duration_minutes, published) "
    "SELECT 'Test ' || g, 'bench', 30, true FROM generate_series(1, 100) g",
    "INSERT INTO test_attempts (test_id, user_id, started_at, expires_at, "
    "submitted_at, score, correct, total, answers, answer_key) "
    "SELECT t.min + (g / 100000 * 13 + g) % 100, u.min + g % 100000, "
    "now() - interval '61 days', now(), "
    "now() - ((g * 104729) % 5184000) * interval '1 second', "
    "(g * 37) % 101, (g * 37) % 101, 100, '{}', '{}' "
    "FROM generate_series(1::bigint, 1000000) g, "
    "(SELECT min(id) FROM tests) t, "
    "(SELECT min(id) FROM users WHERE role = 'student') u",
    "ANALYZE")


def ab_args(program):
    """OTHER_BUILD_DIR [RUNS] from the command line: RUNS (4), this
    tree's build dir (KEEL_BUILD_DIR, or _build) and program's path in
    each build, as (("this", path), ("other", path))."""
    other = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    build = os.environ.get("KEEL_BUILD_DIR", os.path.join(ROOT, "_build"))
    return runs, build, (("this", os.path.join(build, "cron", program)),
                         ("other", os.path.join(other, "cron", program)))


def main():
    runs, build, progs = ab_args("keel-leaderboard-rebuild")
    s = Stack(build_dir=build)
    s.start()
    try:
        for sql in DATA:
            s.psql(sql)
        env = dict(os.environ)
        env.update(s.env)
        env.update({"KEEL_LOG_LEVEL": "warn",
                    "KEEL_DB_STATEMENT_TIMEOUT": "600000"})

        def run(name, prog):
            p = subprocess.run([prog], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               timeout=3600)
            took = re.search(r"took=([\d.]+)s", p.stdout).group(1)
            print("%-5s %7s s  load %s | %s" % (
                name, took, open("/proc/loadavg").read().split()[0],
                p.stdout.strip().splitlines()[-1]), flush=True)

        run("first", progs[0][1])
        for _ in range(runs):
            for name, prog in progs:
                run(name, prog)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
