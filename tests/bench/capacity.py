#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""capacity.py -- the per-host figures docs/capacity.md is built on
(issue 14 item 6): for each hot path of the seeds' traffic shape, the
CPU each component spends per request, the Redis commands, PostgreSQL
transactions and memcached operations per request, and the memory per
worker and per open stream.

    scripts/build && /usr/bin/python3 tests/bench/capacity.py \\
        [--duration 5] [--connections 16] [--runs 2] [--workers 4] \\
        [--paths list,uncached,board,submit,ticket,login,mix] \\
        [--streams 2000] [--json FILE]
    /usr/bin/python3 tests/bench/capacity.py --fleet 1@16,2@16,3@16,1@8,1@5 \\
        --paths list,submit,mix --runs 3 [--json FILE]

Starts a throwaway stack (tests/e2e/stack.py, the optimised build in
_build; KEEL_BUILD_DIR to change it), rate limits ON with the seeds'
windows (900 s) but limits no run reaches, the production heartbeat
(15 s), KEEL_WORKERS workers per app; adds 100 questions, 2,000 students
each with a session written to Redis as auth writes it, 40 users with a
password (login), a board of the students (cron's rebuild), a published
test of 10 questions and enough started attempts for every submit.  Each
path runs wrk (tests/bench/capacity.lua: the requests spread over the
2,000 users, so each user's limiter sets hold what a real user's would)
RUNS times for DURATION seconds, and around each run reads:

  CPU      utime+stime (+ what each reaped) from /proc/<pid>/stat of
           every process of THIS stack, by component: each app, the
           stream process, lighttpd, PostgreSQL primary and replica,
           Redis, memcached, HAProxy; wrk from our own rusage.  Other
           engineers' stacks on the box are not counted (processes are
           picked by the stack's directory and ports, and their
           descendants).
  box      the whole machine's busy CPU from /proc/stat, so "others"
           (everything not ours) is known for each run, and the load
           average before.
  Redis    INFO commandstats: calls and usec per command
  PG       pg_stat_database on primary and replica: transactions
           (commit + rollback), tuples returned/fetched/inserted/updated
           (read after the backends have flushed their counters)
  mc       memcached stats: get, set, delete

Paths (the seeds' hot paths):
  list      GET /api/question-bank (page of 20), cached, session + limits
  uncached  the same with the question-bank app restarted KEEL_CACHE=0
  board     GET /api/leaderboard?limit=100, cached
  submit    POST /api/attempts/{id}/submit (grade 10, store, 3 outbox
            rows); then its jobs drained by the three drainers
            --until-empty, measured per drainer ("drain", per submit)
  ticket    POST /api/notifications/stream-ticket (before a stream opens)
  login     POST /api/auth/login (Argon2id, interactive limits)
  mix       12 list : 2 board : 5 submit : 1 ticket, interleaved

Then streams: STREAMS streams opened (tickets written to Redis as the
ticket contract says; tests/bench/stream.py's client), the CPU the open
cost per stream, the PSS and descriptors per open stream of the stream
processes and lighttpd, and their idle CPU per stream over 15 s (one
heartbeat period).  Memory: PSS of every process by component.

--fleet measures through scripts/fleet (tests/e2e/fleet.py: N hosts
behind HAProxy sharing one set of stores, cron off) instead: one fleet
per host count, all started at once, every path's runs alternating over
the configurations N@C (N hosts, wrk -cC), so that what the rest of the
box does falls on each alike.  Paths that restart an app are skipped.

Prints Markdown; --json FILE keeps everything, for
tests/bench/capacity_model.py (docs/capacity.md's arithmetic).
"""

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

import procstat  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")
USERS = 2000
QUESTIONS = 10
LUA = os.path.join(HERE, "capacity.lua")


# ------------------------------------------------------------ processes

def proc_table():
    """{pid: (ppid, comm, cmdline, cpu ticks incl. reaped children)}."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        rest = st[st.rindex(")") + 2:].split()
        out[int(d)] = (int(rest[1]), comm, cmd,
                       sum(int(x) for x in rest[11:15]))
    return out


class Procs:
    """The processes of one stack or fleet: those whose command line
    holds one of `match` (stack directories, "redis-server 127.0.0.1:P",
    "-p P " of memcached, the haproxy config), and their descendants."""

    def __init__(self, match):
        self.match = list(match)

    def classify(self):
        """{pid: (component, cpu ticks)} of our processes now."""
        t = proc_table()
        roots = {pid for pid, (_, comm, cmd, _) in t.items()
                 if any(m in cmd for m in self.match)}
        inside, grew = set(roots), True
        while grew:
            grew = False
            for pid, (ppid, _, _, _) in t.items():
                if ppid in inside and pid not in inside:
                    inside.add(pid)
                    grew = True
        out = {}
        for pid in inside:
            ppid, comm, cmd, ticks = t[pid]
            out[pid] = (self.component(pid, comm, cmd, t), ticks)
        return out

    @staticmethod
    def component(pid, comm, cmd, t):
        if comm == "postgres":
            # Walk up to the postmaster: its -D names primary or replica.
            p = pid
            while p in t and t[p][1] == "postgres":
                if " -D " in t[p][2]:
                    d = t[p][2].split(" -D ", 1)[1].split()[0]
                    return "pg-replica" if "replica" in d else "pg-primary"
                p = t[p][0]
            return "pg-primary"
        if comm.startswith("keel-"):
            exe = os.path.basename(cmd.split(" ", 1)[0])
            name = exe[len("keel-"):] if exe.startswith("keel-") else exe
            return "stream" if name == "stream" else "app:" + name
        if comm in ("lighttpd", "redis-server", "memcached", "haproxy",
                    "pgbouncer"):
            return {"redis-server": "redis"}.get(comm, comm)
        return "other"

    def cpu(self):
        """CPU seconds by component, now."""
        out = {}
        for comp, ticks in self.classify().values():
            out[comp] = out.get(comp, 0) + ticks / TCK
        return out

    def pids(self, component):
        return sorted(p for p, (c, _) in self.classify().items()
                      if c == component)


def box_busy():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------- stores

def redis_cmd(port, *args):
    """One command by redis-cli; its answer as text."""
    return subprocess.run(["redis-cli", "-p", str(port)] + list(args),
                          capture_output=True, text=True, check=True,
                          timeout=30).stdout


def redis_stats(port):
    """{command: (calls, usec)} and total_commands_processed."""
    out = {}
    for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+),usec=(\d+)",
                         redis_cmd(port, "INFO", "commandstats")):
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    tot = re.search(r"total_commands_processed:(\d+)",
                    redis_cmd(port, "INFO", "stats"))
    return out, int(tot.group(1))


def redis_delta(before, after, n):
    """Per request: calls of each command, scripts (EVAL/EVALSHA: one
    round trip each), all calls, Redis's own usec, processed commands."""
    b, a = before[0], after[0]
    calls = {k: (a[k][0] - b.get(k, (0, 0))[0]) / n for k in a}
    usec = sum(a[k][1] - b.get(k, (0, 0))[1] for k in a) / n
    calls = {k: v for k, v in calls.items() if v > 0.0005}
    # Per command; a script's usec includes its commands' (counted again
    # under theirs), so "usec" over all commands counts that time twice.
    usec_by = {k: (a[k][1] - b.get(k, (0, 0))[1]) / n for k in calls}
    scripts = sum(v for k, v in calls.items()
                  if k in ("eval", "evalsha", "fcall"))
    return {"calls": calls, "scripts": scripts,
            "all_calls": sum(calls.values()), "usec": usec,
            "usec_by": usec_by,
            "processed": (after[1] - before[1]) / n}


PG_COLS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched",
           "tup_inserted", "tup_updated", "tup_deleted", "blks_hit")


def pg_stats(url):
    if not url:
        return None
    q = ("SELECT %s FROM pg_stat_database WHERE datname = current_database()"
         % ", ".join(PG_COLS))
    p = subprocess.run(["psql", "-XAtq", "-F", " ", url, "-c", q],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return None
    return [int(x) for x in p.stdout.split()]


def pg_settled(url, before, timeout=12.0):
    """pg_stat_database once the backends have flushed what the run did
    (an idle backend flushes within 10 s; PostgreSQL 15): the reading
    that stops changing for 1.5 s."""
    if not url:
        return None
    last, since = pg_stats(url), time.monotonic()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.5)
        now = pg_stats(url)
        # psql's own reading is a transaction, and a fleet's health
        # checks (HAProxy's GET /health, every host twice a second) are
        # more: stable means the writes stopped and the commits nearly
        # did.
        if now and last and now[0] - last[0] <= 30 and \
                now[4:7] == last[4:7]:
            if time.monotonic() - since >= 1.5:
                return now
        else:
            last, since = now, time.monotonic()
    return last


def pg_delta(before, after, n):
    if not before or not after:
        return None
    d = {c: (a - b) / n for c, a, b in zip(PG_COLS, after, before)}
    d["xacts"] = d["xact_commit"] + d["xact_rollback"]
    return d


def mc_stats(ports):
    tot = {"cmd_get": 0, "cmd_set": 0, "delete_hits": 0, "delete_misses": 0,
           "get_hits": 0}
    for port in ports:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"stats\r\n")
            buf = b""
            while not buf.endswith(b"END\r\n"):
                buf += s.recv(65536)
        for line in buf.decode().splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in tot:
                tot[f[1]] += int(f[2])
    return tot


def mc_delta(before, after, n):
    return {"get": (after["cmd_get"] - before["cmd_get"]) / n,
            "set": (after["cmd_set"] - before["cmd_set"]) / n,
            "delete": (after["delete_hits"] + after["delete_misses"]
                       - before["delete_hits"] - before["delete_misses"]) / n}


# ----------------------------------------------------------------- wrk

def wrk(url, reqfile, conns, duration, threads=2, once=False):
    out = subprocess.run(
        ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration,
         "--latency", "-s", LUA, url, "--", reqfile, str(threads),
         "1" if once else "0"],
        capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("wrk failed:\n%s%s" % (out.stdout, out.stderr))
    o = out.stdout

    def lat(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, o, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", o)
    errs = re.search(r"Socket errors: (.*)", o)
    return {"n": int(re.search(r"(\d+) requests in", o).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1)),
            "p50": lat(50), "p99": lat(99),
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errs.group(1) if errs else "",
            "stderr": out.stderr.strip()[:500]}


class Meter:
    """Everything read around one run."""

    def __init__(self, procs, redis_port, pg_url, pg_replica_url, mc_ports):
        self.procs = procs
        self.redis_port, self.mc_ports = redis_port, mc_ports
        self.pg_url, self.pg_replica_url = pg_url, pg_replica_url

    def settle(self):
        """Stats that lag (PostgreSQL's) read once settled, so the next
        run's 'before' holds nothing of the last run."""
        return (pg_settled(self.pg_url, None),
                pg_settled(self.pg_replica_url, None))

    def before(self):
        pg = self.settle()
        return {"load": procstat.loadavg(), "pg": pg[0], "pgr": pg[1],
                "redis": redis_stats(self.redis_port),
                "mc": mc_stats(self.mc_ports),
                "box": box_busy(), "wrk": children_cpu(),
                "cpu": self.procs.cpu(), "t": time.monotonic()}

    def after(self, b, n):
        """Per-request figures of the n requests since b."""
        cpu, box, wrk_cpu = self.procs.cpu(), box_busy(), children_cpu()
        t = time.monotonic() - b["t"]
        redis = redis_stats(self.redis_port)
        mc = mc_stats(self.mc_ports)
        pg = pg_settled(self.pg_url, b["pg"])
        pgr = pg_settled(self.pg_replica_url, b["pgr"])
        us = {k: (v - b["cpu"].get(k, 0)) * 1e6 / n for k, v in cpu.items()}
        us = {k: v for k, v in us.items() if v >= 0.05}
        us["wrk"] = (wrk_cpu - b["wrk"]) * 1e6 / n
        ours = sum(v - b["cpu"].get(k, 0) for k, v in cpu.items()) + \
            (wrk_cpu - b["wrk"])
        busy = (box[0] - b["box"][0]) / TCK
        return {"load_before": b["load"], "seconds": t,
                "cpu_us": us,
                "server_us": sum(v for k, v in us.items() if k != "wrk"),
                "cores_ours": ours / t, "cores_box": busy / t,
                "cores_others": max(0.0, (busy - ours) / t),
                "redis": redis_delta(b["redis"], redis, n),
                "mc": mc_delta(b["mc"], mc, n),
                "pg": pg_delta(b["pg"], pg, n),
                "pg_replica": pg_delta(b["pgr"], pgr, n)}


# ---------------------------------------------------------------- memory

def memory(procs):
    """PSS (MB) by component: each process, summed, and per worker."""
    by = {}
    for pid, (comp, _) in procs.classify().items():
        by.setdefault(comp, []).append(procstat.pss_mb(pid))
    return {k: {"n": len(v), "sum": sum(v), "max": max(v),
                "median": statistics.median(v)} for k, v in by.items()}


# ------------------------------------------------------------------ setup

def session(redis_port, uid, role, pipe):
    tok = uuid.uuid4().hex + uuid.uuid4().hex[:11]
    key = "keel:sess:" + hashlib.sha256(tok.encode()).hexdigest()
    pipe.append("HSET %s uid %s role %s exp %d\n"
                % (key, uid, role, int(time.time()) + 86400))
    return tok


STUDENT_HASH = ("$argon2id$v=19$m=65536,t=2,p=1$LPCoCKEUueS1MJuus7YJAA$"
                "IKw8CbEIPiMmC4D8chWbRwg5dYrgTmGAi57zVSgIyas")
LOGINS = 40     # users with STUDENT_HASH (keel-student-demo), for login


def setup_data(psql, redis_port, program, attempts):
    """Questions, USERS students with sessions, their board, a test,
    `attempts` started attempts, LOGINS users with a password.  psql,
    program: the stack's (or the fleet's stores' and first host's).
    Returns what the request files need."""
    psql(
        "INSERT INTO questions (subject, topic, difficulty, body, options, "
        "answer, explanation) SELECT 'Mathematics', 'Arithmetic', 'easy', "
        "'What is ' || g || ' + ' || g * 3 || '?', jsonb_build_array((g * 4)"
        "::text, (g * 4 + 1)::text, (g * 4 - 1)::text, (g * 5)::text), 0, "
        "g || ' + ' || g * 3 || ' = ' || g * 4 FROM generate_series(1, 100) g")
    users = psql(
        "WITH u AS (INSERT INTO users (email, username, name, role) "
        "SELECT 'cap' || g || '@bench.test', 'cap_' || g, 'Student ' || g, "
        "'student' FROM generate_series(1, %d) g RETURNING id) "
        "SELECT id FROM u ORDER BY id" % USERS).split()
    psql("INSERT INTO users (email, username, name, role, password_hash) "
         "SELECT 'caplogin' || g || '@bench.test', 'caplogin' || g, "
         "'Login ' || g, 'student', '%s' FROM generate_series(1, %d) g"
         % (STUDENT_HASH, LOGINS))
    test = int(psql(
        "WITH q AS (INSERT INTO questions (subject, topic, difficulty, "
        "body, options, answer) SELECT 'Bench', 'Submit', 'easy', "
        "'Question ' || g, '[\"a\", \"b\", \"c\", \"d\"]', g %% 4 "
        "FROM generate_series(1, %d) g RETURNING id), "
        "t AS (INSERT INTO tests (title, subject, duration_minutes, "
        "published) VALUES ('Capacity bench', 'Bench', 600, true) "
        "RETURNING id), "
        "tq AS (INSERT INTO test_questions (test_id, question_id, "
        "position) SELECT t.id, q.id, row_number() OVER (ORDER BY q.id)"
        " - 1 FROM t, q) SELECT id FROM t" % QUESTIONS))
    qids = psql("SELECT question_id FROM test_questions WHERE "
                "test_id = %d ORDER BY position" % test).split()
    # A board: one graded attempt each, rebuilt as cron does.
    psql(
        "INSERT INTO test_attempts (test_id, user_id, started_at, "
        "expires_at, submitted_at, score, correct, total, answers, "
        "answer_key) SELECT %d, u.id, now() - interval '1 hour', now(), "
        "now() - u.id * interval '1 second', u.id %% 11, u.id %% 11, 10, "
        "'{}', '{}' FROM users u WHERE u.email LIKE 'cap%%@bench.test' "
        "AND u.password_hash IS NULL" % test)
    p = program("keel-leaderboard-rebuild")
    assert p.returncode == 0, p.stderr
    pipe, tokens = [], {}
    for uid in users:
        tokens[uid] = session(redis_port, uid, "student", pipe)
    subprocess.run(["redis-cli", "-p", str(redis_port)],
                   input="".join(pipe), text=True, check=True,
                   stdout=subprocess.DEVNULL)
    rows = psql(
        "INSERT INTO test_attempts (test_id, user_id, expires_at, "
        "question_ids) SELECT %d, (ARRAY[%s]::bigint[])[1 + g %% %d], "
        "now() + interval '10 hours', ARRAY[%s]::bigint[] "
        "FROM generate_series(0, %d) g RETURNING id, user_id"
        % (test, ",".join(users), USERS, ",".join(qids), attempts - 1)
    ).split()
    answers = '{"answers": {%s}}' % ", ".join(
        '"%s": %d' % (q, i % 4) for i, q in enumerate(qids))
    return {"users": users, "tokens": tokens, "attempts": rows,
            "answers": answers}


# The check's mix (docs/capacity.md, "Checking the model"): of every 20
# requests, 12 cached list pages, 2 boards, 5 submits, 1 stream ticket.
MIX = ["list"] * 12 + ["board"] * 2 + ["submit"] * 5 + ["ticket"]


def request_files(work, data, runs, submits_per_run, mix_per_run):
    """One request file per path (submit and mix: one per run, each
    attempt submitted once)."""
    toks = [data["tokens"][u] for u in data["users"]]
    files = {}

    def write(name, lines):
        path = os.path.join(work, name + ".req")
        with open(path, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        files[name] = path

    line = {
        "list": lambda t: "GET\t/api/question-bank\t%s\t" % t,
        "board": lambda t: "GET\t/api/leaderboard?limit=100\t%s\t" % t,
        "ticket": lambda t: "POST\t/api/notifications/stream-ticket\t%s\t"
        % t,
    }
    for name, f in line.items():
        write(name, [f(t) for t in toks])
    files["uncached"] = files["list"]
    write("login", ['POST\t/api/auth/login\t-\t{"login": "caplogin%d", '
                    '"password": "keel-student-demo"}' % (1 + i)
                    for i in range(LOGINS)])
    # Submits: each attempt once, by its owner.
    subs = iter(["POST\t/api/attempts/%s/submit\t%s\t%s" % (
        r.split("|")[0], data["tokens"][r.split("|")[1]], data["answers"])
        for r in data["attempts"]])
    for i in range(runs):
        write("submit-%d" % i, [next(subs) for _ in range(submits_per_run)])
    for i in range(runs):
        lines = []
        for j in range(mix_per_run):
            kind = MIX[j % len(MIX)]
            lines.append(next(subs) if kind == "submit"
                         else line[kind](toks[j % len(toks)]))
        write("mix-%d" % i, lines)
    return files


PATHS = {
    # name: (what, app whose env changes, env, once)
    "list": ("GET /api/question-bank, cached, session + limits",
             "question-bank", {"KEEL_CACHE": "1"}, False),
    "uncached": ("the same, KEEL_CACHE=0 (the query on every request)",
                 "question-bank", {"KEEL_CACHE": "0"}, False),
    "board": ("GET /api/leaderboard?limit=100, cached", None, {}, False),
    "submit": ("POST /api/attempts/{id}/submit (grade 10, 1 transaction, "
               "3 outbox rows)", None, {}, True),
    "ticket": ("POST /api/notifications/stream-ticket", None, {}, False),
    "login": ("POST /api/auth/login (Argon2id)", None, {}, False),
    "mix": ("12 list : 2 board : 5 submit : 1 ticket, interleaved", None,
            {}, True),
}


def run_path(name, meter, url, reqfile, args, once):
    conns = args.connections if name != "login" else min(
        args.connections, 4)
    b = meter.before()
    w = wrk(url, reqfile, conns, args.duration, once=once)
    if w["n"] == 0:
        raise SystemExit("%s: no requests done:\n%s" % (name, w["stderr"]))
    res = meter.after(b, w["n"])
    res.update(w)
    return res


def streams(stack, meter, procs, n, args):
    """Open n streams (stream.py's client), measure per stream."""
    import stream as sb
    spids = procs.pids("stream")
    lpids = procs.pids("lighttpd")
    umin = int(stack.psql("SELECT min(id) FROM users WHERE email LIKE "
                          "'cap%@bench.test'"))

    def mem():
        return {"stream_pss": sum(procstat.pss_mb(p) for p in spids),
                "stream_rss": sum(procstat.rss_mb(p) for p in spids),
                "stream_fds": sum(procstat.fd_count(p) for p in spids),
                "lighttpd_pss": sum(procstat.pss_mb(p) for p in lpids),
                "lighttpd_fds": sum(procstat.fd_count(p) for p in lpids)}

    m0 = mem()
    b = meter.before()
    t0 = time.monotonic()
    client = sb.ClientProc([stack.ports["http"]], stack.ports["redis"],
                           umin, n)
    opened = client.ready
    open_s = time.monotonic() - t0
    open_res = meter.after(b, max(1, opened["open"]))
    m1 = mem()
    # Idle: one heartbeat period.
    b = meter.before()
    time.sleep(15)
    idle = meter.after(b, 1)
    m2 = mem()
    client.quit()
    k = max(1, opened["open"])
    per = {key: (m1[key] - m0[key]) / k for key in m0}
    idle_cores = {c: v / 1e6 / idle["seconds"] for c, v in
                  idle["cpu_us"].items() if c != "wrk"}
    return {"asked": n, "opened": opened, "open_seconds": open_s,
            "open": open_res, "mem_before": m0, "mem_open": m1,
            "mem_after_idle": m2,
            "per_stream": {"stream_kb": per["stream_pss"] * 1024,
                           "lighttpd_kb": per["lighttpd_pss"] * 1024,
                           "stream_fds": per["stream_fds"],
                           "lighttpd_fds": per["lighttpd_fds"]},
            "idle_cores": idle_cores,
            "idle_us_per_stream_s": {c: v * 1e6 / k
                                     for c, v in idle_cores.items()}}


# ----------------------------------------------------------------- report

COLS = ("app", "lighttpd", "pg-primary", "pg-replica", "redis", "memcached",
        "haproxy", "other")


def cols_of(cpu_us):
    out = {c: 0.0 for c in COLS}
    for k, v in cpu_us.items():
        if k == "wrk":
            continue
        if k.startswith("app:") or k == "stream":
            out["app"] += v
        elif k in out:
            out[k] += v
        else:
            out["other"] += v
    return out


def med_runs(runs):
    """Medians over runs of the per-request figures."""
    def m(f):
        return statistics.median(f(r) for r in runs)
    comps = set().union(*(r["cpu_us"] for r in runs))
    return {
        "rps": m(lambda r: r["rps"]), "p50": m(lambda r: r["p50"]),
        "p99": m(lambda r: r["p99"]),
        "cpu_us": {c: m(lambda r: r["cpu_us"].get(c, 0)) for c in comps},
        "cols": {c: m(lambda r: cols_of(r["cpu_us"])[c]) for c in COLS},
        "server_us": m(lambda r: r["server_us"]),
        "wrk_us": m(lambda r: r["cpu_us"].get("wrk", 0)),
        "redis_scripts": m(lambda r: r["redis"]["scripts"]),
        "redis_calls": m(lambda r: r["redis"]["all_calls"]),
        "redis_usec": m(lambda r: r["redis"]["usec"]),
        "redis_processed": m(lambda r: r["redis"]["processed"]),
        "pg_xacts": m(lambda r: (r["pg"] or {}).get("xacts", 0)),
        "pg_ins_upd": m(lambda r: (r["pg"] or {}).get("tup_inserted", 0)
                        + (r["pg"] or {}).get("tup_updated", 0)),
        "pgr_xacts": m(lambda r: (r["pg_replica"] or {}).get("xacts", 0)),
        "mc_get": m(lambda r: r["mc"]["get"]),
        "mc_set": m(lambda r: r["mc"]["set"] + r["mc"]["delete"]),
        "cores_ours": m(lambda r: r["cores_ours"]),
        "cores_others": m(lambda r: r["cores_others"]),
        "load": [r["load_before"] for r in runs],
        "non2xx": sum(r["non2xx"] for r in runs),
    }


def report(res):
    print("Load average before each run, and the other engineers' CPU "
          "(cores) during it, are in the last columns.\n")
    print("| path | req/s | p50 / p99 ms | CPU us/req: " +
          " | ".join(COLS) + " | server total | wrk | Redis scripts / "
          "calls / usec | PG primary xacts / rows written | replica xacts"
          " | mc get / set+del | cores ours / others | load before |")
    print("|---|---:|---:|" + "---:|" * (len(COLS) + 2) +
          "---:|---:|---:|---:|---:|---|")
    for name, m in res["paths"].items():
        c = m["cols"]
        print("| %s%s | %.0f | %.2f / %.2f | %s | **%.0f** | %.0f | "
              "%.2f / %.2f / %.1f | %.2f / %.2f | %.2f | %.2f / %.2f | "
              "%.2f / %.2f | %s |" % (
                  name, " (non-2xx %d)" % m["non2xx"] if m["non2xx"] else "",
                  m["rps"], m["p50"], m["p99"],
                  " | ".join("%.1f" % c[k] for k in COLS), m["server_us"],
                  m["wrk_us"], m["redis_scripts"], m["redis_calls"],
                  m["redis_usec"], m["pg_xacts"], m["pg_ins_upd"],
                  m["pgr_xacts"], m["mc_get"], m["mc_set"],
                  m["cores_ours"], m["cores_others"], "; ".join(m["load"])))
    print()
    print("Per app (us/req, medians): " + "; ".join(
        "%s: %s" % (name, ", ".join("%s %.1f" % (k, v) for k, v in
                                    sorted(m["cpu_us"].items())
                                    if v >= 0.5))
        for name, m in res["paths"].items()))
    if res.get("streams"):
        s = res["streams"]
        print()
        print("Streams: %d opened in %.1f s; per stream: stream process "
              "%.1f kB PSS, lighttpd %.1f kB PSS, fds %.2f + %.2f; open cost "
              "(us per stream, server side) %.0f %s; idle (us of CPU per "
              "stream per second) %s" % (
                  s["opened"]["open"], s["open_seconds"],
                  s["per_stream"]["stream_kb"],
                  s["per_stream"]["lighttpd_kb"],
                  s["per_stream"]["stream_fds"],
                  s["per_stream"]["lighttpd_fds"],
                  s["open"]["server_us"], json.dumps(
                      {k: round(v, 1) for k, v in
                       s["open"]["cpu_us"].items()}),
                  json.dumps({k: round(v, 3) for k, v in
                              s["idle_us_per_stream_s"].items()})))
    if res.get("memory"):
        print()
        print("PSS MB by component (n processes, sum, median): " + "; ".join(
            "%s %d / %.1f / %.2f" % (k, v["n"], v["sum"], v["median"])
            for k, v in sorted(res["memory"].items())))


# ----------------------------------------------------------------- drain

DRAINERS = ("keel-drain-email", "keel-drain-leaderboard",
            "keel-drain-notifications")


def drain(meter, program, submits):
    """The jobs the submits queued (3 each), drained by the three
    drainers --until-empty, as cron runs them: CPU per submit, in all
    and by drainer (res["by"])."""
    runs = []
    for d in DRAINERS:
        b = meter.before()
        p = program(d, "--until-empty")
        if p.returncode != 0:
            raise SystemExit("%s failed: %s" % (d, p.stderr[-500:]))
        # Its backends' CPU is counted once the postmaster has reaped
        # them (then it is the postmaster's children's): read at once, a
        # backend just ending was sometimes missed.
        time.sleep(1.0)
        r = meter.after(b, submits)
        # wrk ran nothing: our children's CPU is the drainer's.
        r["cpu_us"]["drainers"] = r["cpu_us"].pop("wrk")
        r["server_us"] += r["cpu_us"]["drainers"]
        runs.append((d, r))
    res = {"by": {d: {"cpu_us": r["cpu_us"], "server_us": r["server_us"],
                      "pg": r["pg"], "redis": r["redis"]}
                  for d, r in runs}}
    # The sum of the three, shaped as one run.
    first = runs[0][1]
    for k in ("cpu_us",):
        tot = {}
        for _, r in runs:
            for c, v in r[k].items():
                tot[c] = tot.get(c, 0) + v
        res[k] = tot
    res["server_us"] = sum(r["server_us"] for _, r in runs)
    res["redis"] = {f: sum(r["redis"][f] for _, r in runs)
                    for f in first["redis"]
                    if not isinstance(first["redis"][f], dict)}
    for f in ("calls", "usec_by"):
        res["redis"][f] = {}
        for _, r in runs:
            for c, v in r["redis"][f].items():
                res["redis"][f][c] = res["redis"][f].get(c, 0) + v
    res["pg"] = {f: sum((r["pg"] or {}).get(f, 0) for _, r in runs)
                 for f in (first["pg"] or {})}
    res["pg_replica"] = {f: sum((r["pg_replica"] or {}).get(f, 0)
                                for _, r in runs)
                         for f in (first["pg_replica"] or {})}
    res["mc"] = {f: sum(r["mc"][f] for _, r in runs) for f in first["mc"]}
    res["cores_ours"] = statistics.median(r["cores_ours"] for _, r in runs)
    res["cores_others"] = statistics.median(r["cores_others"]
                                            for _, r in runs)
    res["load_before"] = first["load_before"]
    res.update({"n": submits, "rps": 0, "p50": 0, "p99": 0, "non2xx": 0,
                "stderr": ""})
    return res


# ------------------------------------------------------------------ run

def measure(t, args, paths, res):
    """Every path of `paths` on target t (an object with url, meter,
    psql, redis_port, program, restart(app, env) or None); the per-path
    medians go into res["paths"], the runs into res["raw"]."""
    per_run = args.duration * 3000
    data = setup_data(t.psql, t.redis_port, t.program,
                      attempts=args.runs * per_run)
    files = request_files(t.work, data, args.runs, per_run // 2,
                          per_run // 2 * len(MIX) // MIX.count("submit"))
    cur = {}
    for name in paths:
        what, app, penv, once = PATHS[name]
        if app and t.restart and cur.get(app) != penv:
            if cur.get(app) is not None or penv != PATHS["list"][2]:
                t.restart(app, penv)
            cur[app] = penv
        if app and not t.restart and penv != PATHS["list"][2]:
            print("%s: skipped (needs an app restarted)" % name,
                  file=sys.stderr)
            continue
        if not once:            # warm: connections, caches, plans
            wrk(t.url, files[name], args.connections, 1)
        runs = []
        for i in range(args.runs):
            f = files["%s-%d" % (name, i)] if once else files[name]
            r = run_path(name, t.meter, t.url, f, args, once)
            runs.append(r)
            print("%s%s run %d: %.0f req/s, server %.0f us/req, ours %.2f "
                  "cores, others %.2f, load %s%s" % (
                      t.label, name, i + 1, r["rps"], r["server_us"],
                      r["cores_ours"], r["cores_others"], r["load_before"],
                      (" non-2xx %d: %s" % (r["non2xx"], r["stderr"]))
                      if r["non2xx"] else ""), file=sys.stderr)
        res["raw"][name] = runs
        res["paths"][name] = med_runs(runs)
        res["paths"][name]["what"] = what
        if app and t.restart and penv != PATHS["list"][2]:
            t.restart(app, PATHS["list"][2])    # the others want it cached
            cur[app] = PATHS["list"][2]
        if name == "submit" and t.drain:
            r = drain(t.meter, t.program, sum(x["n"] for x in runs))
            res["raw"]["drain"] = [r]
            res["paths"]["drain"] = med_runs([r])
            res["paths"]["drain"]["by"] = r["by"]
            res["paths"]["drain"]["what"] = ("the submit's 3 jobs, drained "
                                             "(per submit)")
            print("%sdrain: %.0f us per submit" % (t.label, r["server_us"]),
                  file=sys.stderr)


class Target:
    pass


def stack_target(stack, work):
    t = Target()
    env = stack.env
    t.label, t.work, t.url = "", work, stack.url("/")
    t.procs = Procs([stack.dir, "redis-server 127.0.0.1:%d"
                     % stack.ports["redis"],
                     "-p %d " % stack.ports["memcached"]])
    t.meter = Meter(t.procs, stack.ports["redis"], env["DATABASE_URL"],
                    env.get("DATABASE_READ_REPLICA_URL", "").split(",")[0]
                    or None, [stack.ports["memcached"]])
    t.psql, t.program = stack.psql, stack.program
    t.redis_port = stack.ports["redis"]
    t.drain = True

    t.restart = stack.restart_component
    return t


def fleet_target(f, work, n):
    t = Target()
    t.label, t.work, t.url = "[%d hosts] " % n, work, f.url("/")
    t.procs = Procs([f.dir, "redis-server 127.0.0.1:%d" % f.ports["redis"],
                     "-p %d " % f.ports["memcached"],
                     "-p %d " % f.ports["memcached2"]])
    t.meter = Meter(t.procs, f.ports["redis"], f.info["DATABASE_URL"],
                    f.info.get("DATABASE_READ_REPLICA_URL", "")
                    .split(",")[0] or None,
                    [f.ports["memcached"], f.ports["memcached2"]])
    t.psql, t.program = f.stores.psql, f.hosts[0].program
    t.redis_port = f.ports["redis"]
    t.restart, t.drain = None, False
    return t


def fleet_main(args, paths, build, out):
    """All the fleets at once (one per host count, each on its own ports
    and directory), their runs alternating: N=1, 2, 3, 1, 2, 3 ... so that
    what the rest of the box does falls on every N alike.  --fleet takes
    host counts, or N@C pairs (N hosts, wrk with C connections): 1@8 is
    the 1-host fleet loaded as each host of a 2-host fleet at 16 is."""
    from fleet import Fleet
    configs = []
    for x in args.fleet.split(","):
        n, _, c = x.partition("@")
        configs.append((int(n), int(c) if c else args.connections))
    ns = sorted({n for n, _ in configs})
    paths = [p for p in paths if not (PATHS[p][1] and
                                      PATHS[p][2] != PATHS["list"][2])]
    fleets, targets = {}, {}
    out["fleet"] = {}
    per_run = args.duration * 3000
    uses = {n: sum(1 for m, _ in configs if m == n) for n in ns}
    try:
        for n in ns:
            # No cron: the drainers' work is measured apart (one stack).
            fleets[n] = Fleet(hosts=n, build_dir=build,
                              env={"KEEL_CRON": "0"})
            fleets[n].start()
            t = targets[n] = fleet_target(
                fleets[n], tempfile.mkdtemp(prefix="keel-bench-capacity-"),
                n)
            data = setup_data(t.psql, t.redis_port, t.program,
                              attempts=args.runs * per_run * uses[n])
            t.files = request_files(
                t.work, data, args.runs * uses[n], per_run // 2,
                per_run // 2 * len(MIX) // MIX.count("submit"))
            t.next = {}
            print("fleet of %d up" % n, file=sys.stderr)
        for n, c in configs:
            out["fleet"]["%d@%d" % (n, c)] = {"hosts": n, "connections": c,
                                              "paths": {}, "raw": {}}
        for name in paths:
            what, _, _, once = PATHS[name]
            runs = {k: [] for k in out["fleet"]}
            if not once:
                for n in ns:
                    wrk(targets[n].url, targets[n].files[name],
                        args.connections, 1)
            for i in range(args.runs):
                for n, c in configs:
                    t = targets[n]
                    if once:
                        j = t.next.get(name, 0)
                        t.next[name] = j + 1
                        f = t.files["%s-%d" % (name, j)]
                    else:
                        f = t.files[name]
                    a = argparse.Namespace(**vars(args))
                    a.connections = c
                    r = run_path(name, t.meter, t.url, f, a, once)
                    runs["%d@%d" % (n, c)].append(r)
                    print("[%d hosts, c%d] %s run %d: %.0f req/s, server %.0f"
                          " us/req, all %.0f, ours %.2f cores, others %.2f, "
                          "load %s%s" % (
                              n, c, name, i + 1, r["rps"], r["server_us"],
                              r["server_us"] + r["cpu_us"].get("wrk", 0),
                              r["cores_ours"], r["cores_others"],
                              r["load_before"],
                              (" non-2xx %d: %s" % (r["non2xx"], r["stderr"]))
                              if r["non2xx"] else ""), file=sys.stderr)
            for k in out["fleet"]:
                out["fleet"][k]["raw"][name] = runs[k]
                out["fleet"][k]["paths"][name] = med_runs(runs[k])
                out["fleet"][k]["paths"][name]["what"] = what
        for n, c in configs:
            out["fleet"]["%d@%d" % (n, c)]["memory"] = memory(
                targets[n].procs)
    finally:
        for n, f in fleets.items():
            f.stop()
            if n in targets:
                shutil.rmtree(targets[n].work, ignore_errors=True)
    for k, res in out["fleet"].items():
        print("## %s hosts, wrk -c%s\n" % tuple(k.split("@")))
        report(res)
        print()


ENV = {
    "KEEL_LOG_LEVEL": "warn", "KEEL_RATELIMIT": "1", "KEEL_CACHE": "1",
    # The seeds' windows, limits no run reaches: each of the 2,000
    # users' sets holds what the bench sent it in 15 minutes.
    "KEEL_RATELIMIT_API": "1000000/900",
    "KEEL_RATELIMIT_READ": "1000000/900",
    "KEEL_RATELIMIT_WRITE": "1000000/900",
    "KEEL_RATELIMIT_AUTH": "1000000/900",
    "KEEL_STREAM_HEARTBEAT": "15", "KEEL_STREAM_PER_USER": "5",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--paths", default="list,uncached,board,submit,ticket,"
                    "login,mix")
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--fleet", help="comma-separated host counts: measure "
                    "through scripts/fleet (HAProxy) with each, instead of "
                    "one stack (paths that restart an app are skipped)")
    ap.add_argument("--json")
    args = ap.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in PATHS:
            raise SystemExit("no path %r (%s)" % (p, ", ".join(PATHS)))
    build = os.environ.get("KEEL_BUILD_DIR", os.path.join(ROOT, "_build"))
    os.environ.update(ENV)
    os.environ["KEEL_WORKERS"] = str(args.workers)
    out = {"args": vars(args), "started": time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if args.fleet:
        fleet_main(args, paths, build, out)
    else:
        from stack import Stack
        work = tempfile.mkdtemp(prefix="keel-bench-capacity-")
        stack = Stack(build_dir=build)
        stack.start()
        res = out
        res.update({"paths": {}, "raw": {}})
        try:
            t = stack_target(stack, work)
            measure(t, args, paths, res)
            if args.streams:
                res["streams"] = streams(stack, t.meter, t.procs,
                                         args.streams, args)
            res["memory"] = memory(t.procs)
        finally:
            stack.stop()
            shutil.rmtree(work, ignore_errors=True)
        report(res)
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
