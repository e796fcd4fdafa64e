#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""leaderboard.py -- what the leaderboards cost: a full rebuild from
PostgreSQL, Redis's memory for the boards, and a rank or a page at 1,000
vs 1,000,000 entries (DESIGN.md: each O(log N)).

    scripts/build && /usr/bin/python3 tests/bench/leaderboard.py \\
        [STUDENTS [ATTEMPTS [TESTS]]]          # 100000 1000000 100

Starts a throwaway stack (tests/e2e/stack.py) from the optimised build in
_build (KEEL_BUILD_DIR to change it), loads STUDENTS students and ATTEMPTS
submitted attempts (each student's spread over ATTEMPTS / STUDENTS
tests) over TESTS tests and the last 60 days, then:

  rebuild global   keel-leaderboard-rebuild --global --period all: every
                   attempt aggregated into one board (sum of bests)
  rebuild all      keel-leaderboard-rebuild: the global and every test's
                   boards, all time, this week and this month
  redis memory     used_memory after, and used_memory_peak
  rank / page      lib/lua/board_rank.lua and board_page.lua (20 from the
                   middle) by EVALSHA, one client (redis-benchmark -c 1),
                   on synthetic boards of 1,000 and 1,000,000 members

and prints a Markdown table for tests/bench/RESULTS.md.
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
        raise SystemExit("%s failed: %s %s" % (args, p.stdout, p.stderr))
    return p


def redis(stack, *args):
    return subprocess.run(
        ["redis-cli", "-p", str(stack.ports["redis"]), "--raw"]
        + [str(a) for a in args], stdout=subprocess.PIPE, text=True,
        check=True, timeout=600).stdout.strip()


def info_bytes(stack, field):
    m = re.search(r"^%s:(\d+)" % field, redis(stack, "INFO", "memory"), re.M)
    return int(m.group(1))


def per_call_us(stack, *cmd, n=20000):
    """Microseconds per call of cmd, one client, round trip included."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(stack.ports["redis"]), "-c", "1",
         "-n", str(n), "-q"] + [str(c) for c in cmd],
        stdout=subprocess.PIPE, text=True, check=True, timeout=600).stdout
    m = re.search(r"([\d.]+) requests per second", out)
    return 1e6 / float(m.group(1))


def synthetic(stack, key, n):
    """A board of n members (user i, score i % 101, distinct times)."""
    redis(stack, "DEL", key)
    lua = ("for i = ARGV[1], ARGV[2] do redis.call('ZADD', KEYS[1], "
           "(i % 101) * 4294967296 + i, i) end return 0")
    for lo in range(1, n + 1, 100000):
        redis(stack, "EVAL", lua, 1, key, lo, min(n, lo + 99999))
    redis(stack, "ZADD", key, -1, "~bench")


def summary(out):
    m = re.search(r"processed=(\d+) failed=(\d+) .*took=([\d.]+)s "
                  r"entries=(\d+)", out)
    return int(m.group(1)), int(m.group(2)), float(m.group(3)), \
        int(m.group(4))


def phases(out):
    """The run's own breakdown: durable rows written, PostgreSQL (compute,
    write, commit), then reading the entries and loading Redis, and of
    that the time spent on Redis (sending, encoding, swaps)."""
    m = re.search(r"written=(\d+) postgres=([\d.]+)s load=([\d.]+)s "
                  r"redis=([\d.]+)s", out)
    return "%s rows written; postgres %ss, then read + load %ss (redis %ss)" \
        % m.groups()


def main():
    students = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    attempts = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
    tests = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    build = os.environ.get("KEEL_BUILD_DIR", os.path.join(ROOT, "_build"))
    load0 = open("/proc/loadavg").read().split()[0]
    s = Stack(build_dir=build)
    s.start()
    rows = []
    try:
        t0 = time.monotonic()
        s.psql("INSERT INTO users (email, username, name, role) "
               "SELECT 'b' || g || '@bench.test', 'bench_' || g, "
               "'Student ' || g, 'student' FROM generate_series(1, %d) g"
               % students)
        s.psql("INSERT INTO tests (title, subject, duration_minutes, "
               "published) SELECT 'Test ' || g, 'bench', 30, true "
               "FROM generate_series(1, %d) g" % tests)
        s.psql("INSERT INTO test_attempts (test_id, user_id, started_at, "
               "expires_at, submitted_at, score, correct, total, answers, "
               "answer_key) "
               "SELECT t.min + (g / %d * 13 + g) %% %d, u.min + g %% %d, "
               "now() - interval '61 days', now(), "
               "now() - ((g * 104729) %% 5184000) * interval '1 second', "
               "(g * 37) %% 101, (g * 37) %% 101, 100, '{}', '{}' "
               "FROM generate_series(1::bigint, %d) g, "
               "(SELECT min(id) FROM tests) t, "
               "(SELECT min(id) FROM users WHERE role = 'student') u"
               % (students, tests, students, attempts))
        s.psql("ANALYZE")
        load = time.monotonic() - t0
        # As cron/crontab runs it: one board's statement may be long.
        env = {"KEEL_LOG_LEVEL": "warn",
               "KEEL_DB_STATEMENT_TIMEOUT": "600000"}
        mem0 = info_bytes(s, "used_memory")
        p = run(s, "keel-leaderboard-rebuild", "--global", "--period",
                "all", env=env)
        b, f, took, ent = summary(p.stdout)
        rows.append(("rebuild global, all time (%d boards, %d entries)"
                     % (b, ent), "%.2f s" % took))
        rows.append(("  of which", phases(p.stdout)))
        p = run(s, "keel-leaderboard-rebuild", env=env)
        b, f, took, ent = summary(p.stdout)
        assert f == 0, p.stdout
        rows.append(("rebuild all (%d boards, %d entries)" % (b, ent),
                     "%.2f s" % took))
        rows.append(("  of which", phases(p.stdout)))
        # The same run again: every entry unchanged (no row rewritten),
        # as when the drainer keeps the durable copy; three times.
        for i in range(3):
            p = run(s, "keel-leaderboard-rebuild", env=env)
            rows.append(("rebuild all again, nothing changed (%d)" % (i + 1),
                         "%.2f s" % summary(p.stdout)[2]))
            rows.append(("  of which", phases(p.stdout)))
        rows.append(("redis used_memory, boards loaded (before: %.1f MB)"
                     % (mem0 / 1e6), "%.1f MB" % (info_bytes(
                         s, "used_memory") / 1e6)))
        rows.append(("redis used_memory_peak", "%.1f MB" % (info_bytes(
            s, "used_memory_peak") / 1e6)))
        rank = redis(s, "SCRIPT", "LOAD", open(os.path.join(
            ROOT, "lib", "lua", "board_rank.lua")).read())
        page = redis(s, "SCRIPT", "LOAD", open(os.path.join(
            ROOT, "lib", "lua", "board_page.lua")).read())
        for n in (1000, 1000000):
            key = "keel:lb:bench%d" % n
            synthetic(s, key, n)
            rows.append(("rank of one member, %d entries" % n, "%.1f µs"
                         % per_call_us(s, "EVALSHA", rank, 1, key,
                                       n // 2)))
            rows.append(("page of 20 from the middle, %d entries" % n,
                         "%.1f µs" % per_call_us(s, "EVALSHA", page, 1,
                                                 key, n // 2, 20)))
            rows.append(("ZCARD (the round trip alone), %d entries" % n,
                         "%.1f µs" % per_call_us(s, "ZCARD", key)))
            redis(s, "DEL", key)
    finally:
        s.stop()
    print("%d students, %d attempts, %d tests (loaded in %.0f s); "
          "nproc=%d, load average before %s, after %s\n" % (
              students, attempts, tests, load, os.cpu_count(), load0,
              open("/proc/loadavg").read().split()[0]))
    print("| measure | value |\n|---|---|")
    for name, v in rows:
        print("| %s | %s |" % (name, v))


if __name__ == "__main__":
    main()
