#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""stream.py -- 10,000 open Server-Sent Events streams on one stream
process (issue 11): memory, idle CPU, commit-to-arrival latency, and how
fast vanished clients are noticed.

    scripts/build && /usr/bin/python3 tests/bench/stream.py \\
        [--streams 10000] [--vanish 1000] [--runs 3] [--idle 30] \\
        [--burst 1000] [--sequence 200] [--publishers 4] \\
        [--via drainer,bench] [--json FILE] [--keep-log FILE]

Starts a throwaway stack (tests/e2e/stack.py, the optimised build in
_build; KEEL_BUILD_DIR to change it) with KEEL_WORKERS=1, so the stream
app is one supervisor and ONE stream process, and the production
heartbeat (KEEL_STREAM_HEARTBEAT=15; the e2e stack's default is 2).  This
machine allows 20,000 file descriptors per process (`ulimit -Hn`) and
lighttpd holds two per proxied stream (the client's and the backend's),
so the streams enter through TWO lighttpd front ends, each a copy of the
stack's generated lighttpd.conf (the same routes, the same stream block,
its server.max-fds) on its own port with its own logs, both proxying to
the one stream process's socket; the stack's own lighttpd carries
nothing.  The clients are client processes of this script (asyncio,
HTTP/1.1, chunked decoding, one connection per stream, each raising its
soft fd limit to the hard one): the streams less VANISH in processes of
at most 3,000, plus one process of exactly VANISH streams; each process
alternates its streams between the two front ends.  Every stream has its
own user (the per-user cap is 5) and its own single-use ticket, written
to Redis as the ticket contract says (SET keel:sse:ticket:<sha256 hex>
<uid> EX 60; logging in 10,000 users through Argon2id would take
minutes), presented as ?ticket=.

Then, with every stream open (its 200 and its `retry:` line received):

  memory    RSS of the stream process and its supervisor, RSS and PSS of
            each lighttpd, open fds of each (/proc); again after the
            bursts (heartbeat ticks have run by then)
  idle      CPU (utime+stime from /proc) of the stream process, the
            lighttpds, Redis, PostgreSQL and the clients over IDLE
            seconds, RUNS times (heartbeat ticks included); and each
            tick's fan-out: first to last arrival of its `: hb` lines
  burst     one notification to each of BURST different users, RUNS
            times, made by
              drainer: the real keel-drain-notifications --until-empty
                       over BURST role_changed jobs queued by keel-queues
                       enqueue; the commit time is the row's
                       pg_xact_commit_timestamp(xmin) (the primary runs
                       with track_commit_timestamp = on for this)
              bench:   PUBLISHERS keel-bench-notify processes at once
                       (tests/bench/notify.c: the contract's lock, prev,
                       insert, COMMIT, clock, PUBLISH), burstier than one
                       drainer; the commit time is read right after
                       COMMIT returns
            latency = the client's time.time() when the event is parsed
            minus the commit time (one machine, one clock)
  sequence  SEQUENCE notifications to one user back to back, each way,
            RUNS times; also checks they arrive in id order, each once
  vanish    SIGKILL the client process holding VANISH streams (the kernel
            closes its sockets) and time until the stream process holds
            VANISH fewer fds (/proc/<pid>/fd, polled every 10 ms), and
            until the lighttpds dropped both fds of each; RUNS times, a
            fresh process of VANISH streams (new users) each time; with
            the first heartbeat tick that reached the survivors after
            the kill

Prints Markdown for tests/bench/RESULTS.md; --json FILE keeps the raw
figures, --keep-log FILE the stream app's log.
"""

import argparse
import asyncio
import hashlib
import json
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

import procstat  # noqa: E402

STREAM_PATH = "/api/notifications/stream"
PER_CLIENT = 3000
CONNECT_AT_ONCE = 100


# ============================================================ the client
#
# python3 stream.py --client PORTS REDIS_PORT FIRST_UID COUNT
# opens COUNT streams for users FIRST_UID.., prints one JSON line when all
# are open, then answers commands on stdin, one JSON line each:
#   dump  the events parsed since the last dump, and counters
#   quit  close everything and exit


class SSE(asyncio.Protocol):
    """One stream: the HTTP head, then chunked (or plain) body decoded
    into SSE events; notification events are recorded with their
    arrival time."""

    def __init__(self, client, uid, request):
        self.client, self.uid, self.request = client, uid, request
        self.buf = bytearray()
        self.text = bytearray()
        self.head = None
        self.chunked = False
        self.cstate, self.chunk_left = 0, 0
        self.opened = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        t = time.time()
        self.buf += data
        if self.head is None:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            self.head = bytes(self.buf[:i]).decode("latin-1")
            del self.buf[:i + 4]
            status = int(self.head.split(" ", 2)[1])
            self.chunked = bool(re.search(r"(?im)^transfer-encoding:\s*"
                                          r"chunked", self.head))
            if status != 200:
                self.fail("HTTP %d" % status)
                return
        self.decode()
        while True:
            j = self.text.find(b"\n\n")
            if j < 0:
                break
            ev = bytes(self.text[:j])
            del self.text[:j + 2]
            self.event(ev, t)

    def decode(self):
        """The body so far into self.text: as is, or de-chunked (state
        0: at a chunk-size line, 1: in a chunk, 2: at its CRLF, 3: the
        last chunk came)."""
        if not self.chunked:
            self.text += self.buf
            self.buf.clear()
            return
        while True:
            if self.cstate == 0:
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                n = int(bytes(self.buf[:i]).split(b";")[0], 16)
                del self.buf[:i + 2]
                self.chunk_left, self.cstate = n, 1 if n else 3
            elif self.cstate == 1:
                if not self.buf:
                    return
                n = min(self.chunk_left, len(self.buf))
                self.text += self.buf[:n]
                del self.buf[:n]
                self.chunk_left -= n
                if self.chunk_left == 0:
                    self.cstate = 2
            elif self.cstate == 2:
                if len(self.buf) < 2:
                    return
                del self.buf[:2]
                self.cstate = 0
            else:
                self.buf.clear()
                return

    def event(self, ev, t):
        c = self.client
        nid, kind = None, None
        for line in ev.split(b"\n"):
            if line.startswith(b"id:"):
                nid = int(line[3:])
            elif line.startswith(b"event:"):
                kind = line[6:].strip().decode()
            elif line.startswith(b"retry:"):
                if not self.opened.done():
                    self.opened.set_result(True)
            elif line.startswith(b":"):
                c.heartbeats += 1
                c.hb_times.append(t)
        if kind == "notification":
            c.events.append((nid, self.uid, t))
        elif kind is not None:
            c.others.append((kind, self.uid, ev.decode(errors="replace")))

    def fail(self, why):
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(
                "%s: %s" % (why, (self.head or "")[:200])))
        if self.transport:
            self.transport.close()

    def connection_lost(self, exc):
        self.client.closed += 1
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(
                "closed before open: %s" % (self.head or exc)))


class Client:
    def __init__(self, ports, redis_port, first_uid, count):
        self.ports, self.redis_port = ports, redis_port
        self.uids = list(range(first_uid, first_uid + count))
        self.events, self.others = [], []
        self.heartbeats = self.closed = 0
        self.hb_times = []
        self.streams = []

    def tickets(self, uids):
        """One ticket per user, stored as the ticket contract says."""
        out, cmds = {}, []
        for uid in uids:
            t = secrets.token_urlsafe(32)
            out[uid] = t
            key = "keel:sse:ticket:" + hashlib.sha256(t.encode()).hexdigest()
            args = [b"SET", key.encode(), str(uid).encode(), b"EX", b"60"]
            cmds.append(b"*%d\r\n" % len(args) + b"".join(
                b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        with socket.create_connection(("127.0.0.1", self.redis_port)) as s:
            s.sendall(b"".join(cmds))
            got = b""
            while got.count(b"\r\n") < len(cmds):
                got += s.recv(65536)
            assert got.count(b"+OK") == len(cmds), got[:200]
        return out

    async def open_one(self, sem, uid, ticket, port):
        req = ("GET %s?ticket=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
               % (STREAM_PATH, ticket, port)).encode()
        async with sem:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(
                lambda: SSE(self, uid, req), "127.0.0.1", port)
            self.streams.append(proto)
            await asyncio.wait_for(proto.opened, 30)

    async def run(self):
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(CONNECT_AT_ONCE)
        t0 = time.monotonic()
        errors = []
        for lo in range(0, len(self.uids), 500):
            batch = self.uids[lo:lo + 500]
            tick = self.tickets(batch)
            res = await asyncio.gather(*(
                self.open_one(sem, uid, tick[uid],
                              self.ports[(lo + i) % len(self.ports)])
                for i, uid in enumerate(batch)), return_exceptions=True)
            errors += [repr(r) for r in res if isinstance(r, BaseException)]
        out = {"open": len(self.uids) - len(errors), "failed": len(errors),
               "errors": errors[:5], "seconds": time.monotonic() - t0}
        print(json.dumps(out), flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode().strip()
            if line == "dump":
                print(json.dumps({"events": self.events,
                                  "others": self.others,
                                  "heartbeats": self.heartbeats,
                                  "ticks": ticks(self.hb_times),
                                  "closed": self.closed}), flush=True)
                self.events, self.others, self.hb_times = [], [], []
            else:
                break
        for s in self.streams:
            if s.transport:
                s.transport.close()


def ticks(times, gap=float(os.environ.get("BENCH_TICK_GAP", "5"))):
    """Heartbeat arrival times grouped into ticks (arrivals less than gap
    seconds apart): [first, last, count] each."""
    out = []
    for t in sorted(times):
        if out and t - out[-1][1] < gap:
            out[-1][1] = t
            out[-1][2] += 1
        else:
            out.append([t, t, 1])
    return out


def client_main(argv):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ports = [int(p) for p in argv[0].split(",")]
    c = Client(ports, int(argv[1]), int(argv[2]), int(argv[3]))
    asyncio.run(c.run())


# ====================================================== the orchestrator


class ClientProc:
    def __init__(self, ports, redis_port, first_uid, count):
        self.first_uid, self.count = first_uid, count
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--client",
             ",".join(str(p) for p in ports), str(redis_port),
             str(first_uid), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = json.loads(self.p.stdout.readline() or "null")
        if self.ready is None:
            raise SystemExit("client of users %d..%d died" % (
                first_uid, first_uid + count - 1))

    def dump(self):
        self.p.stdin.write("dump\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def quit(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
            except OSError:
                pass
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(len(xs) * p / 100.0 + 0.5)) - 1)]


def front_end_conf(stack, port, name):
    """The stack's generated lighttpd.conf (its routes, its stream block,
    its server.max-fds) on another port with its own logs."""
    with open(stack.path("lighttpd.conf")) as f:
        conf = f.read()
    for key, val in (("server.port", str(port)),
                     ("server.errorlog", '"%s"' % stack.path(
                         "log", "%s-error.log" % name)),
                     ("accesslog.filename", '"%s"' % stack.path(
                         "log", "%s-access.log" % name))):
        conf, n = re.subn(r"(?m)^%s\s*=.*$" % re.escape(key),
                          "%s = %s" % (key, val), conf)
        assert n == 1, key
    # 5,000 streams at once each: connections come faster than the
    # default backlog of 1024 drains.
    conf += "\nserver.listen-backlog = 4096\n"
    path = stack.path("%s.conf" % name)
    with open(path, "w") as f:
        f.write(conf)
    subprocess.run(["lighttpd", "-tt", "-f", path], check=True)
    return path


def wait_port(port, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d never opened" % port)


def stream_pids(stack):
    """(supervisor, stream process) of the stream app."""
    run = stack.path("run")
    for f in sorted(os.listdir(run)):
        if "stream" in f and f.endswith(".pid"):
            sup = stack.app_pid(f[:-4])
            kids = stack.worker_pids(f[:-4])
            if sup:
                return sup, (kids[0] if kids else sup)
    raise SystemExit("no stream app in %s (is stream/keel-stream built and "
                     "in fcgi-apps/apps.conf?)" % run)


def pg_postmaster(stack):
    with open(os.path.join(os.path.realpath(stack.path("pg")), "primary",
                           "postmaster.pid")) as f:
        return int(f.readline())


def redis_pid(stack):
    with open(stack.path("run", "redis.pid")) as f:
        return int(f.read().strip())


def publish(stack, uid_lists):
    """keel-bench-notify once per list, all at once; {nid: (uid,
    committed, published, receivers)} and the wall time of the whole."""
    env = dict(os.environ)
    env.update(stack.env)
    prog = os.path.join(stack.build_dir, "tests", "bench",
                        "keel-bench-notify")
    procs = []
    t0 = time.time()
    for uids in uid_lists:
        p = subprocess.Popen([prog], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
        procs.append((p, "".join("%d\n" % u for u in uids)))
    out = {}
    for p, data in procs:
        o, e = p.communicate(data, timeout=300)
        if p.returncode != 0:
            raise SystemExit("keel-bench-notify: %s" % e)
        for line in o.splitlines():
            nid, uid, c, pub, rcv = line.split()
            out[int(nid)] = (int(uid), float(c), float(pub), int(rcv))
    return out, time.time() - t0


def track_commit_timestamps(stack):
    """track_commit_timestamp = on for the primary (a restart): the
    drainer's rows then say when they committed,
    pg_xact_commit_timestamp(xmin)."""
    pg = os.path.realpath(stack.path("pg"))
    su = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(su + ["psql", "-X", "-q", "-h", os.path.join(pg, "sock"),
                         "-p", str(stack.ports["pg"]), "-d", "postgres",
                         "-c", "ALTER SYSTEM SET track_commit_timestamp "
                         "= on"], check=True, cwd="/")
    stack.stop_component("primary")
    stack.start_component("primary")
    assert stack.psql("SHOW track_commit_timestamp") == "on"


def drain(stack, jobs, tag):
    """jobs: (uid, count) pairs.  Each enqueued the way a producer's job
    reaches the drainer (keel-queues enqueue, notifications
    role_changed), then keel-drain-notifications --until-empty, as cron
    runs it, makes them all; {nid: (uid, committed, None, None)} with
    each row's commit time, and the drain's wall time."""
    env = dict(os.environ)
    env.update(stack.env)
    q = os.path.join(stack.build_dir, "cron", "keel-queues")
    running = []
    for uid, count in jobs:
        running.append(subprocess.Popen(
            [q, "enqueue", "--key", "bench-%s-%d" % (tag, uid), "--count",
             str(count), "notifications", "role_changed",
             json.dumps({"userId": uid, "role": "staff"})], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        if len(running) >= 8:
            p = running.pop(0)
            assert p.wait() == 0, p.stderr.read()
    for p in running:
        assert p.wait() == 0, p.stderr.read()
    top = int(stack.psql("SELECT coalesce(max(id), 0) FROM notifications"))
    t0 = time.time()
    p = stack.program("keel-drain-notifications", "--until-empty",
                      "--budget", 300, env={"KEEL_LOG_LEVEL": "warn"},
                      timeout=330)
    wall = time.time() - t0
    assert p.returncode == 0, p.stderr
    out = {}
    for line in stack.psql(
            "SELECT id, user_id, extract(epoch FROM "
            "pg_xact_commit_timestamp(xmin)) FROM notifications WHERE id > "
            "%d" % top).splitlines():
        nid, uid, c = line.split("|")
        out[int(nid)] = (int(uid), float(c), None, None)
    assert len(out) == sum(n for _, n in jobs), (len(out), p.stdout)
    return out, wall


def collect(clients, want, timeout=15):
    """Dump the clients until every notification in want (nid -> ...)
    arrived or timeout; {nid: [(uid, t), ...]} (a list: duplicates show),
    and the other events seen."""
    got, others, tk = {}, [], []
    end = time.monotonic() + timeout
    while True:
        for c in clients:
            d = c.dump()
            for nid, uid, t in d["events"]:
                got.setdefault(nid, []).append((uid, t))
            others += d["others"]
            tk += d["ticks"]
        if all(n in got for n in want) or time.monotonic() > end:
            return got, others, ticks_merge(tk)
        time.sleep(0.2)


def latency(pub, got):
    lat, missing, wrong, dup, raw = [], 0, 0, 0, []
    for nid, (uid, committed, _, _) in pub.items():
        arr = got.get(nid)
        if not arr:
            missing += 1
            continue
        dup += len(arr) - 1
        if arr[0][0] != uid:
            wrong += 1
        lat.append((arr[0][1] - committed) * 1000)
        raw.append((nid, committed, pub[nid][2], arr[0][1]))
    after_pub = [(a - p) * 1000 for _, _, p, a in raw if p is not None]
    return {"n": len(pub), "p50": pct(lat, 50) if lat else None,
            "pub_p99": pct(after_pub, 99) if after_pub else None,
            "raw": raw,
            "p99": pct(lat, 99) if lat else None,
            "max": max(lat) if lat else None, "missing": missing,
            "misrouted": wrong, "duplicates": dup,
            "receivers": sorted({v[3] for v in pub.values()
                                 if v[3] is not None})}


def ticks_merge(tk, gap=float(os.environ.get("BENCH_TICK_GAP", "5"))):
    """Every client's ticks into the process's: [first arrival, last
    arrival, streams reached]."""
    out = []
    for f, l, n in sorted(tk):
        if out and f - out[-1][1] < gap:
            out[-1][1] = max(out[-1][1], l)
            out[-1][2] += n
        else:
            out.append([f, l, n])
    return out


def fds(pids):
    return sum(max(0, procstat.fd_count(p)) for p in pids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--vanish", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=int, default=30)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--sequence", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--via", default="drainer,bench",
                    help="who makes the notifications: drainer (the real "
                    "keel-drain-notifications), bench (keel-bench-notify)"
                    ", or both, comma-separated")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--keep-log", help="copy the stream app's log here")
    args = ap.parse_args()
    from stack import Stack, free_ports

    build = os.environ.get("KEEL_BUILD_DIR", os.path.join(ROOT, "_build"))
    os.environ["KEEL_WORKERS"] = "1"
    # The production default; tests/e2e/stack.py makes it 2 s for tests.
    os.environ.setdefault("KEEL_STREAM_HEARTBEAT", "15")
    stack = Stack(build_dir=build)
    stack.start()
    lighttpds, clients = [], []
    res = {"streams": args.streams, "loadavg": [procstat.loadavg()]}
    try:
        if "drainer" in args.via:
            track_commit_timestamps(stack)
        sup, worker = stream_pids(stack)
        nusers = args.streams + args.runs * args.vanish
        stack.psql("INSERT INTO users (email, username, name, role) "
                   "SELECT 'sse' || g || '@bench.test', 'sse_' || g, "
                   "'Streamer ' || g, 'student' FROM generate_series(1, %d)"
                   " g" % nusers)
        umin = int(stack.psql("SELECT min(id) FROM users WHERE email LIKE "
                              "'sse%@bench.test'"))
        ports = free_ports(2)
        for i, port in enumerate(ports):
            conf = front_end_conf(stack, port, "bench-lighttpd%d" % (i + 1))
            lighttpds.append(subprocess.Popen(
                ["lighttpd", "-D", "-f", conf], stdin=subprocess.DEVNULL,
                start_new_session=True))
            wait_port(port)
        lpids = [p.pid for p in lighttpds]

        # Open: processes of at most PER_CLIENT, the last of exactly
        # VANISH streams (killed later).
        sizes, left = [], args.streams - args.vanish
        while left > 0:
            sizes.append(min(PER_CLIENT, left))
            left -= sizes[-1]
        sizes.append(args.vanish)
        t0, uid = time.monotonic(), umin
        for n in sizes:
            clients.append(ClientProc(ports, stack.ports["redis"], uid, n))
            if clients[-1].ready["failed"]:
                raise SystemExit("client of users %d..: %s" % (
                    uid, clients[-1].ready))
            uid += n
        res["open_seconds"] = time.monotonic() - t0
        next_uid = uid
        res["open_fds"] = {"stream": procstat.fd_count(worker),
                           "lighttpd": [procstat.fd_count(p) for p in lpids]}
        time.sleep(2)

        def memory():
            return {"stream_rss": procstat.rss_mb(worker),
                    "stream_pss": procstat.pss_mb(worker),
                    "supervisor_rss": procstat.rss_mb(sup)
                    if sup != worker else 0,
                    "lighttpd_rss": [procstat.rss_mb(p) for p in lpids],
                    "lighttpd_pss": [procstat.pss_mb(p) for p in lpids]}
        res["memory_open"] = memory()
        res["loadavg"].append(procstat.loadavg())

        # Idle.
        pm, rp = pg_postmaster(stack), redis_pid(stack)
        res["idle"] = []
        for _ in range(args.runs):
            c0 = (procstat.self_cpu(worker), procstat.cpu(lpids),
                  procstat.tree_cpu(pm), procstat.self_cpu(rp),
                  procstat.cpu(c.p.pid for c in clients))
            t = time.monotonic()
            time.sleep(args.idle)
            dt = time.monotonic() - t
            c1 = (procstat.self_cpu(worker), procstat.cpu(lpids),
                  procstat.tree_cpu(pm), procstat.self_cpu(rp),
                  procstat.cpu(c.p.pid for c in clients))
            res["idle"].append(dict(zip(
                ("stream", "lighttpd", "postgres", "redis", "clients"),
                ((b - a) / dt for a, b in zip(c0, c1)))))
        tk = []
        for c in clients:
            tk += c.dump()["ticks"]
        res["ticks"] = ticks_merge(tk)
        res["loadavg"].append(procstat.loadavg())

        # Burst: BURST users spread over every client process; sequence:
        # SEQUENCE to one user, back to back.  "bench": keel-bench-notify
        # (PUBLISHERS at once); "drainer": the real drainer.
        all_uids = list(range(umin, umin + args.streams))
        step = len(all_uids) // args.burst
        for via in args.via.split(","):
            for what in ("burst", "sequence"):
                key = "%s_%s" % (what, via)
                res[key] = []
                for r in range(args.runs):
                    if what == "burst":
                        chosen = all_uids[(r + (via == "drainer") * 3)
                                          % step::step][:args.burst]
                    else:
                        chosen = [umin + 17 + r * 1013
                                  + (via == "drainer") * 101]
                    if via == "bench" and what == "burst":
                        pub, wall = publish(stack, [
                            chosen[i::args.publishers]
                            for i in range(args.publishers)])
                    elif via == "bench":
                        pub, wall = publish(stack,
                                            [chosen * args.sequence])
                    elif what == "burst":
                        pub, wall = drain(stack, [(u, 1) for u in chosen],
                                          "%s%d" % (what, r))
                    else:
                        pub, wall = drain(stack, [(chosen[0],
                                                   args.sequence)],
                                          "%s%d" % (what, r))
                    got, others, tk = collect(clients, pub)
                    lat = latency(pub, got)
                    lat["ticks"] = tk
                    if what == "sequence":
                        order = [nid for nid, _ in sorted(
                            ((nid, arr[0][1]) for nid, arr in got.items()
                             if nid in pub), key=lambda x: x[1])]
                        lat["in_order"] = order == sorted(order)
                    lat["publish_seconds"] = wall
                    lat["others"] = others[:3]
                    res[key].append(lat)
                res["loadavg"].append(procstat.loadavg())
        res["memory_after"] = memory()
        res["loadavg"].append(procstat.loadavg())

        # Vanish: the last client process holds VANISH streams.
        res["vanish"] = []
        for r in range(args.runs):
            victim = clients.pop()
            tk = []
            for c in clients + [victim]:
                tk += c.dump()["ticks"]
            before = ticks_merge(tk)
            base_s, base_l = procstat.fd_count(worker), fds(lpids)
            t0, kill_wall = time.monotonic(), time.time()
            victim.p.kill()
            first = t_light = t_stream = None
            while time.monotonic() - t0 < 60:
                now_s, now_l = procstat.fd_count(worker), fds(lpids)
                t = time.monotonic() - t0
                if first is None and now_s < base_s:
                    first = t
                if t_light is None and now_l <= base_l - 2 * args.vanish:
                    t_light = t
                if now_s <= base_s - args.vanish:
                    t_stream = t
                    break
                time.sleep(0.01)
            victim.p.wait()
            tk = []
            for c in clients:
                tk += c.dump()["ticks"]
            after = ticks_merge(tk)
            res["vanish"].append({
                "last_tick_before": before[-1][0] - kill_wall
                if before else None,
                "next_tick_after": after[0][0] - kill_wall
                if after else None,
                "first": first, "lighttpd_all": t_light, "stream_all":
                t_stream, "stream_fds_before": base_s,
                "stream_fds_after": procstat.fd_count(worker)})
            if r + 1 < args.runs:
                clients.append(ClientProc(ports, stack.ports["redis"],
                                          next_uid, args.vanish))
                next_uid += args.vanish
                res["vanish"][-1]["reopened"] = clients[-1].ready
                if clients[-1].ready["open"] < args.vanish:
                    break           # the next kill would not be VANISH
        res["loadavg"].append(procstat.loadavg())
    finally:
        if args.keep_log and stack.dir:
            shutil.copy(stack.path("log", "stream.log"), args.keep_log)
        for c in clients:
            c.quit()
        for p in lighttpds:
            p.terminate()
            p.wait()
        stack.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    report(res, args)


def overlaps(run, tick):
    """The tick's fan-out overlapped the run's [first commit, last
    arrival]."""
    if not run["raw"]:
        return False
    lo = min(r[1] for r in run["raw"])
    hi = max(r[3] for r in run["raw"])
    return tick[0] <= hi and tick[1] >= lo


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="%.1f"):
    return "-" if x is None else spec % x


def report(res, args):
    m = res["memory_open"]
    print("%d streams (%d client processes), opened in %.1f s; nproc=%d; "
          "load average at the start, all open, after the idle runs, "
          "after each burst and sequence series, after the vanish runs: "
          "%s\n" % (res["streams"], -(-(res["streams"] - args.vanish)
                                              // PER_CLIENT) + 1,
                            res["open_seconds"], os.cpu_count(),
                            " | ".join(res["loadavg"])))
    print("| measure | value |\n|---|---|")
    print("| stream process RSS, all open (PSS) | %.1f MB (%.1f MB) |"
          % (m["stream_rss"], m["stream_pss"]))
    print("| its supervisor's RSS | %.1f MB |" % m["supervisor_rss"])
    print("| lighttpd RSS, each of 2 (PSS) | %s |" % ", ".join(
        "%.1f MB (%.1f)" % x for x in zip(m["lighttpd_rss"],
                                          m["lighttpd_pss"])))
    a = res["memory_after"]
    print("| stream process RSS after the bursts | %.1f MB |"
          % a["stream_rss"])
    print("| open fds: stream process, lighttpds | %d, %s |"
          % (res["open_fds"]["stream"],
             ", ".join(str(x) for x in res["open_fds"]["lighttpd"])))
    for k in ("stream", "lighttpd", "redis", "postgres", "clients"):
        print("| idle CPU, %s (cores, median of %d x %d s: %s) | %.4f |"
              % (k, len(res["idle"]), args.idle, ", ".join(
                  "%.4f" % i[k] for i in res["idle"]),
                 med(i[k] for i in res["idle"])))
    full = [t for t in res["ticks"] if t[2] >= res["streams"] * 0.99]
    print("| heartbeat ticks while idle: streams reached; first to last "
          "arrival, ms | %s |" % "; ".join(
              "%d; %.0f" % (n, (l - f) * 1000) for f, l, n in res["ticks"]))
    if full:
        print("| heartbeat tick reaching every stream, first to last "
              "arrival (median of %d) | %.0f ms |" % (
                  len(full), med((l - f) * 1000 for f, l, _ in full)))
    series = []
    for via in args.via.split(","):
        series += [("burst to %d users (%s)" % (args.burst, via),
                    res["burst_" + via]),
                   ("sequence of %d to one user (%s)" % (args.sequence, via),
                    res["sequence_" + via])]
    for name, runs in series:
        print("| %s: p50 / p99 / max ms (median of runs: %s) | %s / %s / "
              "%s |" % (name, "; ".join(
                  "%s/%s" % (fmt(r["p50"], "%.2f"), fmt(r["p99"], "%.2f"))
                  for r in runs), fmt(med(r["p50"] for r in runs), "%.2f"),
                  fmt(med(r["p99"] for r in runs), "%.2f"),
                  fmt(med(r["max"] for r in runs), "%.2f")))
        print("| %s: PUBLISH returned to arrival, p99 ms (runs) | %s |" % (
            name, "; ".join(fmt(r["pub_p99"], "%.2f") for r in runs)))
        print("| %s: heartbeat ticks between the first commit and the "
              "last arrival (runs) | %s |" % (name, "; ".join(
                  str(sum(1 for t in r["ticks"] if overlaps(r, t)))
                  for r in runs)))
        print("| %s: missing, misrouted, duplicates, PUBLISH receivers, "
              "publish wall s | %s |" % (name, "; ".join(
                  "%d, %d, %d, %s, %.2f%s" % (
                      r["missing"], r["misrouted"], r["duplicates"],
                      r["receivers"], r["publish_seconds"],
                      ", in order" if r.get("in_order") else
                      (", OUT OF ORDER" if "in_order" in r else ""))
                  for r in runs)))
    v = res["vanish"]
    print("| vanish: the heartbeat tick before / after the kill, s from "
          "the kill (runs) | %s |" % "; ".join(
              "%s / %s" % (fmt(x.get("last_tick_before"), "%.2f"),
                           fmt(x.get("next_tick_after"), "%.2f"))
              for x in v))
    print("| vanish %d: first fd freed / lighttpd dropped all / stream "
          "process dropped all, s (median; runs: %s) | %s / %s / %s |"
          % (args.vanish, "; ".join(
              "%s/%s/%s" % (fmt(x["first"], "%.3f"),
                            fmt(x["lighttpd_all"], "%.3f"),
                            fmt(x["stream_all"], "%.3f")) for x in v),
             fmt(med(x["first"] for x in v), "%.3f"),
             fmt(med(x["lighttpd_all"] for x in v), "%.3f"),
             fmt(med(x["stream_all"] for x in v), "%.3f")))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
    else:
        main()
