#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""submit.py -- what POST /api/attempts/{id}/submit costs under load: its
p50 and p99 with wrk keeping C connections busy, every request a real
first submit (grading 10 questions, storing the attempt and its three
outbox rows in one transaction, pushing the jobs after the commit).

    scripts/build && /usr/bin/python3 tests/bench/submit.py \\
        [--connections C] [--duration S] [--runs N]     # 16 5 3

Starts a throwaway stack (tests/e2e/stack.py) from the optimised build in
_build (KEEL_BUILD_DIR to change it), with limits off and 2 workers per
app as in tests/bench/run; makes one published test of 10 questions, 200
students with a session each (written to Redis as auth writes them) and
enough started attempts that no request of a run submits one twice; then
runs wrk (tests/bench/capacity.lua, each line used once: each request
names the next unused attempt, with its owner's token) N times and
prints the medians.  A run
that saw any non-2xx answer fails the benchmark: a 409 would be a
cheaper request counted as a submit.
"""

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from stack import Stack  # noqa: E402

STUDENTS = 200
QUESTIONS = 10


def ms(v, unit):
    return float(v) / 1000 if unit == "us" else float(v) * 1000 \
        if unit == "s" else float(v)


def wrk(stack, lua, conns, duration, requests_file):
    out = subprocess.run(
        ["wrk", "-t2", "-c%d" % conns, "-d%ds" % duration, "--latency",
         "-s", lua, stack.url("/"), "--", requests_file, "2", "1"],
        capture_output=True, text=True, check=True)
    out, err = out.stdout, out.stderr

    def lat(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        return ms(m.group(1), m.group(2))

    done = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit("wrk saw %s non-2xx answers:\n%s%s"
                         % (bad.group(1), out, err))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)",
                                   out).group(1)),
            "p50": lat(50), "p99": lat(99), "n": done}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--attempts", type=int, default=90000,
                    help="started attempts to submit, across all runs")
    args = ap.parse_args()

    build = os.environ.get("KEEL_BUILD_DIR", os.path.join(ROOT, "_build"))
    work = tempfile.mkdtemp(prefix="keel-bench-submit-")
    os.environ.update({"KEEL_WORKERS": "2", "KEEL_RATELIMIT": "0",
                       "KEEL_LOG_LEVEL": "warn"})
    s = Stack(build_dir=build)
    s.start()
    try:
        test = int(s.psql(
            "WITH q AS (INSERT INTO questions (subject, topic, difficulty, "
            "body, options, answer) SELECT 'Bench', 'Submit', 'easy', "
            "'Question ' || g, '[\"a\", \"b\", \"c\", \"d\"]', g %% 4 "
            "FROM generate_series(1, %d) g RETURNING id), "
            "t AS (INSERT INTO tests (title, subject, duration_minutes, "
            "published) VALUES ('Submit bench', 'Bench', 600, true) "
            "RETURNING id), "
            "tq AS (INSERT INTO test_questions (test_id, question_id, "
            "position) SELECT t.id, q.id, row_number() OVER (ORDER BY q.id)"
            " - 1 FROM t, q) SELECT id FROM t" % QUESTIONS))
        qids = s.psql("SELECT question_id FROM test_questions WHERE "
                      "test_id = %d ORDER BY position" % test).split()
        users = s.psql(
            "WITH u AS (INSERT INTO users (email, username, name, role) "
            "SELECT 'sb' || g || '@bench.test', 'sb_' || g, 'Student ' || g,"
            " 'student' FROM generate_series(1, %d) g RETURNING id) "
            "SELECT id FROM u ORDER BY id" % STUDENTS).split()
        tokens = {}
        pipe = []
        exp = str(int(time.time()) + 86400)
        for uid in users:
            tok = uuid.uuid4().hex + uuid.uuid4().hex[:11]
            tokens[uid] = tok
            key = "keel:sess:" + hashlib.sha256(tok.encode()).hexdigest()
            pipe.append("HSET %s uid %s role student exp %s\n"
                        % (key, uid, exp))
        subprocess.run(["redis-cli", "-p", str(s.ports["redis"])],
                       input="".join(pipe), text=True, check=True,
                       stdout=subprocess.DEVNULL)
        # Started attempts, owners round robin, as POST .../attempts
        # writes them.
        rows = s.psql(
            "INSERT INTO test_attempts (test_id, user_id, expires_at, "
            "question_ids) SELECT %d, (ARRAY[%s]::bigint[])[1 + g %% %d], "
            "now() + interval '10 hours', ARRAY[%s]::bigint[] "
            "FROM generate_series(0, %d) g RETURNING id, user_id"
            % (test, ",".join(users), STUDENTS, ",".join(qids),
               args.attempts - 1)).split()
        # capacity.lua's lines: METHOD, path, token, body, tab-separated.
        body = '{"answers": {%s}}' % ", ".join(
            '"%s": %d' % (q, i % 4) for i, q in enumerate(qids))
        lines = []
        for r in rows:
            aid, uid = r.split("|")
            lines.append("POST\t/api/attempts/%s/submit\t%s\t%s\n"
                         % (aid, tokens[uid], body))
        lua = os.path.join(ROOT, "tests", "bench", "capacity.lua")
        print("%d attempts, %d students, %d questions; wrk -t2 -c%d -d%ds"
              % (len(rows), STUDENTS, QUESTIONS, args.connections,
                 args.duration), file=sys.stderr)
        res = []
        per = len(lines) // args.runs
        for i in range(args.runs):
            # Each run its own slice; a thread takes every other line of
            # it, and may run ahead of the other by any amount.
            part = os.path.join(work, "requests-%d" % i)
            with open(part, "w") as f:
                f.writelines(lines[i * per:(i + 1) * per])
            r = wrk(s, lua, args.connections, args.duration, part)
            if 2 * r["n"] + args.connections > per:
                raise SystemExit("ran out of attempts: raise --attempts")
            res.append(r)
            print("run %d: %.0f submits/s, p50 %.2f ms, p99 %.2f ms"
                  % (i + 1, r["rps"], r["p50"], r["p99"]), file=sys.stderr)
        graded = s.psql("SELECT count(*) FROM test_attempts WHERE "
                        "submitted_at IS NOT NULL")
        jobs = s.psql("SELECT count(*) FROM outbox")
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in res) for k in
           ("rps", "p50", "p99")}
    print("| connections | submits/s | p50 ms | p99 ms | attempts graded "
          "| outbox rows |")
    print("|---:|---:|---:|---:|---:|---:|")
    print("| %d | %.0f | %.2f | %.2f | %s | %s |" % (
        args.connections, med["rps"], med["p50"], med["p99"], graded, jobs))


if __name__ == "__main__":
    main()
