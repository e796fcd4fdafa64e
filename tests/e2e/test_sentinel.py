# SPDX-License-Identifier: ISC
"""test_sentinel.py -- keel follows a Redis Sentinel failover and loses no
job (issue 14 item 4, the Sentinel part).

The module starts its own Redis master, one replica and three sentinels
(quorum 2, down-after 3 s, failover-timeout 3 s) on free loopback ports
in a temp dir, then a stack whose apps and cron programs find Redis only
through the sentinels (REDIS_SENTINELS, REDIS_SENTINEL_MASTER; the
stack's own Redis is left unused).  Under a bounded stream of requests --
password resets, each a job through the outbox, and session reads, which
need Redis -- it cuts the replica's link (so the master acknowledges
writes the replica never gets, as asynchronous replication does), kills
the master with SIGKILL, and holds keel to:

- the sentinels promote the replica, and keel's session reads answer 200
  again within a few seconds of it; meanwhile they answer 503
  `unavailable` (DESIGN.md's failure table, Redis row), never a 500;
- every reset answers 202 throughout (a write needs no Redis: its job
  waits in the outbox);
- every job committed is delivered exactly once: one mail per reset, no
  Message-ID twice, every outbox row finished -- the relay pushes again
  what the promoted replica never had (lost=N);
- a notification stream opened before the kill receives a notification
  keel makes after the failover (a password change, its job drained and
  published through the sentinels; the stream app resubscribed through
  them).

Then a planned switchover (SENTINEL FAILOVER to a new replica, the old
master alive): the same load and the same checks.  The old master takes
keel's writes until the sentinels demote it (they close its clients
then), so pushes are lost there too and come back through the relay.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from accounts import PASSWORD, bearer, login, make_user
from helpers import BaseUrlSession, own_stack, request, wait_until
from sse import SSE
from stack import alive, free_ports
from test_jobs import FAST, summary
from test_leaderboard import DRAIN_ENV

MASTER = "keel"             # the name the sentinels know the master by
RESETS = 80                 # jobs in the write stream
RESET_PACE = 0.06           # seconds between them (~5 s of writes)
READ_PACE = 0.02
RECOVER_S = 5.0             # promotion to keel's first 200, at most


def cli(port, *args, timeout=5):
    """redis-cli --raw against 127.0.0.1:port; its output, stripped."""
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--raw"]
        + [str(a) for a in args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, timeout=timeout).stdout.strip()


class Sentinels:
    """A master, a replica and three sentinels, started by pid, stopped
    by pid."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="keel-sentinel-", dir="/tmp")
        (self.master, self.replica, *self.sentinels) = free_ports(5)
        self.procs = {}

    def _spawn(self, name, args):
        log = open(os.path.join(self.dir, name + ".log"), "w")
        self.procs[name] = subprocess.Popen(
            ["redis-server"] + args, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.dir)
        log.close()

    def start(self):
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly",
                  "no", "--dir", self.dir]
        self._spawn("master", ["--port", str(self.master),
                               "--dbfilename", "master.rdb"] + common)
        self._spawn("replica", ["--port", str(self.replica),
                                "--dbfilename", "replica.rdb",
                                "--replicaof", "127.0.0.1",
                                str(self.master)] + common)
        # down-after 3 s: a sentinel stalled for 2 s or more (a loaded
        # machine) wakes in TILT and acts on nothing, so with 3 s no stall
        # of the whole machine can look like a dead master.  At 1 s a
        # stall of 1-2 s could make the sentinels fail over on their own,
        # before the fault the test makes.
        for i, port in enumerate(self.sentinels):
            conf = os.path.join(self.dir, "sentinel%d.conf" % i)
            with open(conf, "w") as f:
                f.write("bind 127.0.0.1\nport %d\ndir %s\n"
                        "sentinel monitor %s 127.0.0.1 %d 2\n"
                        "sentinel down-after-milliseconds %s 3000\n"
                        "sentinel failover-timeout %s 3000\n"
                        "sentinel parallel-syncs %s 1\n"
                        % (port, self.dir, MASTER, self.master, MASTER,
                           MASTER, MASTER))
            self._spawn("sentinel%d" % i, [conf, "--sentinel"])
        # Ready: the replica in sync, and every sentinel knowing it and
        # the two others (a failover needs a majority to authorise it).
        wait_until(lambda: "master_link_status:up" in cli(
            self.replica, "INFO", "replication"), 20, "replica in sync")
        for port in self.sentinels:
            wait_until(lambda: self._knows_all(port), 30,
                       "sentinel %d knows the replica and the others" % port)
        return self

    def _knows_all(self, port):
        out = cli(port, "SENTINEL", "MASTER", MASTER).split("\n")
        fields = dict(zip(out[0::2], out[1::2]))
        return (fields.get("num-slaves") == "1"
                and fields.get("num-other-sentinels") == "2")

    def add_replica(self, of):
        """Starts another replica, of port `of`, and waits until every
        sentinel knows it as a healthy replica; its port."""
        (port,) = free_ports(1)
        self._spawn("replica%d" % port, [
            "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self.dir, "--dbfilename",
            "r%d.rdb" % port, "--replicaof", "127.0.0.1", str(of)])
        wait_until(lambda: "master_link_status:up" in cli(
            port, "INFO", "replication"), 20, "the new replica in sync")

        def healthy(via):
            out = cli(via, "SENTINEL", "REPLICAS", MASTER).split("\n")
            return "name\n127.0.0.1:%d\n" % port in "\n".join(out) + "\n" \
                and any(line == "slave" for line in out)
        for via in self.sentinels:
            wait_until(lambda: healthy(via), 30,
                       "sentinel %d knows the new replica" % via, step=0.2)
        return port

    def pid_of(self, port):
        """The pid of the server on port (started here)."""
        name = {self.master: "master", self.replica: "replica"}.get(
            port, "replica%d" % port)
        return self.procs[name].pid

    def master_port(self, via=None):
        """The master's port as a sentinel says it (None if it can't)."""
        out = cli(via or self.sentinels[0], "SENTINEL",
                  "get-master-addr-by-name", MASTER).split("\n")
        return int(out[1]) if len(out) == 2 and out[1].isdigit() else None

    def env(self):
        return {"REDIS_SENTINELS": ",".join(
            "127.0.0.1:%d" % p for p in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER}

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = {}
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_ha(request):
    s = Sentinels()
    request.addfinalizer(s.stop)
    return s.start()


@pytest.fixture(scope="module")
def stack(request, redis_ha):
    """This module's stack: its apps and programs reach Redis only
    through the sentinels."""
    env = redis_ha.env()
    env.update({"KEEL_RELAY_RECHECK": "1", "KEEL_WORKERS": "4"})
    return own_stack(request, env=env)


def test_keel_finds_the_master_through_the_sentinels(stack, redis_ha):
    assert stack.env["REDIS_SENTINELS"] == redis_ha.env()["REDIS_SENTINELS"]
    with BaseUrlSession(stack.base_url) as s:
        r = s.get("/health")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["redis"]["status"] == "up"
        u = make_user(stack, "student")
        r = s.get("/api/auth/me", headers=bearer(login(s, u["email"])))
        assert r.status_code == 200, r.text
    # The session is in the sentinels' master, not in the stack's Redis.
    assert cli(redis_ha.master_port(), "KEYS", "keel:sess:*") != ""
    assert cli(stack.ports["redis"], "KEYS", "keel:sess:*") == ""


def reads(stack, headers, out, stop):
    """Session reads until stop: (t, status, code, seconds) each."""
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            r = request("GET", stack.url("/api/auth/me"), headers=headers,
                        timeout=20)
            code = None
            if r.status_code != 200:
                try:
                    code = r.json()["error"]
                except (ValueError, KeyError, TypeError):
                    code = r.text[:80]
            out.append((t0, r.status_code, code, time.monotonic() - t0))
        except Exception as e:      # noqa: BLE001 -- a failed request
            out.append((t0, None, repr(e), time.monotonic() - t0))
        time.sleep(READ_PACE)


def resets(stack, email, out):
    """RESETS password resets for email, paced: (t, status) each."""
    for _ in range(RESETS):
        t0 = time.monotonic()
        try:
            r = request("POST", stack.url("/api/auth/password-reset"),
                        json={"email": email}, timeout=20)
            out.append((t0, r.status_code))
        except Exception as e:      # noqa: BLE001
            out.append((t0, repr(e)))
        time.sleep(RESET_PACE)


def cut_replication(master, replica):
    """Cuts the replica's link and keeps it cut (its reconnections fail
    their handshake: a password the master doesn't have): from here the
    master acknowledges writes the replica never gets, as asynchronous
    replication does just before a crash."""
    cli(replica, "CONFIG", "SET", "masterauth", "not-the-one")
    cli(master, "CLIENT", "KILL", "TYPE", "replica")
    return wait_until(lambda: "master_link_status:down" in cli(
        replica, "INFO", "replication"), 5)


class Load:
    """Session reads and password resets (jobs through the outbox) on
    their threads, with keel's relay and email drainer running, around a
    fault; then the checks every scenario shares."""

    def __init__(self, stack, redis_ha):
        self.stack, self.redis_ha = stack, redis_ha
        stack.psql("DELETE FROM outbox")
        stack.clear_mail()
        with BaseUrlSession(stack.base_url) as s:
            reader = make_user(stack, "customer")
            self.h = bearer(login(s, reader["email"]))
            self.mailer = make_user(stack, "student")
        self.got, self.sent, self.stop = [], [], threading.Event()
        self.tr = threading.Thread(target=reads, args=(
            stack, self.h, self.got, self.stop))
        self.tw = threading.Thread(target=resets, args=(
            stack, self.mailer["email"], self.sent))
        self.progs = []
        self.t_fault = self.t_promoted = self.first_ok = None

    def start(self):
        self.relay = self.stack.spawn("keel-outbox-relay", "--budget", 120,
                                      env={"KEEL_RELAY_RECHECK": "1"})
        self.drainer = self.stack.spawn("keel-drain-email", "--budget", 120,
                                        env=FAST)
        self.tr.start()
        self.tw.start()

    def promoted(self, redis_ha, port):
        """Waits for the sentinels to name port the master, then for
        keel's first 200 after that, then for the writes to end."""
        wait_until(lambda: redis_ha.master_port() == port, 60,
                   "the sentinels' promotion of %d" % port, step=0.1)
        self.t_promoted = time.monotonic()
        wait_until(lambda: any(t > self.t_promoted and st == 200
                               for t, st, _, _ in self.got), RECOVER_S + 5,
                   "keel's first 200 after the promotion")
        self.tw.join(timeout=60)
        assert not self.tw.is_alive(), "the write stream did not end"
        time.sleep(1.0)

    def end(self):
        self.stop.set()
        self.tr.join(timeout=30)

    def events(self):
        """What the sentinels did, and what the auth app and lighttpd
        (whose own 503 says `unavailable` too) warned of, for a failure's
        message."""
        said = []
        for name in sorted(os.listdir(self.redis_ha.dir)):
            if name.startswith("sentinel") and name.endswith(".log"):
                with open(os.path.join(self.redis_ha.dir, name),
                          errors="replace") as f:
                    said += [name + ": " + line.strip() for line in f
                             if re.search(r"[+-](s|o)down|switch-master|"
                                          r"failover|tilt", line)]
        warned = [line for line in self.stack.log("auth").splitlines()
                  if " warn " in line or " err " in line]
        gw = self.stack.log("lighttpd-error").splitlines()
        return "\n".join(["now %.3f" % time.monotonic()] + said[-40:]
                         + warned[-20:] + gw[-10:])

    def check(self):
        """The requests, then every job delivered exactly once; returns
        the relay's lost=N."""
        got, sent = self.got, self.sent

        def delivered():
            return [m for m in self.stack.mail() if
                    m["To"].addresses[0].addr_spec == self.mailer["email"]]
        # The relay and the drainer stop whatever fails here: left running
        # they would hold connections into the next test.
        try:
            # Every reset committed: a write needs no Redis.
            assert [st for _, st in sent] == [202] * RESETS, sent
            # Reads: 200, or 503 unavailable while there was no master; no
            # 500, nothing else, and answered well within the deadline.
            bad = [g for g in got if not (g[1] == 200 or (
                g[1] == 503 and g[2] == "unavailable"))]
            assert not bad, bad[:10]
            assert max(g[3] for g in got) < 5, max(g[3] for g in got)
            self.first_ok = min(t for t, st, _, _ in got
                                if t > self.t_promoted and st == 200)
            assert self.first_ok - self.t_promoted < RECOVER_S
            after = [st for t, st, _, _ in got if t > self.first_ok + 1.0]
            assert after and all(st == 200 for st in after), after[:20]
            # Every read answered before the fault was a 200 (one in flight
            # at the fault may meet it).
            early = [g for g in got
                     if g[0] + g[3] < self.t_fault and g[1] != 200]
            assert not early, "before the fault at %.3f: %r\n%s" % (
                self.t_fault, early[:10], self.events())
            wait_until(lambda: len(delivered()) >= RESETS, 60,
                       "every reset's mail", step=0.5)
            wait_until(lambda: self.stack.psql(
                "SELECT count(*) FROM outbox WHERE finished_at IS NULL")
                == "0", 30, "every outbox row finished", step=0.5)
            time.sleep(1.0)     # a duplicate would come now, if ever
        finally:
            for p in (self.drainer, self.relay):
                p.send_signal(signal.SIGTERM)
            dout = self.drainer.communicate(timeout=60)
            rout = self.relay.communicate(timeout=60)
        mails = delivered()
        ids = [m["Message-ID"] for m in mails]
        assert len(mails) == RESETS, (len(mails), dout, rout)
        assert len(set(ids)) == len(ids), "a job was delivered twice"
        lost = re.search(r"lost=(\d+)", rout[0])
        assert lost, rout
        print("%d reads (%d x 503), first 200 %.2f s after the promotion "
              "(%.2f s after the fault), relay lost=%s, drain %s"
              % (len(got), sum(1 for g in got if g[1] == 503),
                 self.first_ok - self.t_promoted,
                 self.first_ok - self.t_fault, lost.group(1),
                 summary(dout[0])))
        return int(lost.group(1))


def test_failover_under_load_loses_no_job(stack, redis_ha):
    load = Load(stack, redis_ha)
    with BaseUrlSession(stack.base_url) as s:
        streamer = make_user(stack, "student")
        sh = bearer(login(s, streamer["email"]))
    # Whichever the sentinels call the master now (a loaded machine may
    # have made them fail over already), and the other.
    master = redis_ha.master_port()
    replica = ({redis_ha.master, redis_ha.replica} - {master}).pop()
    # The sessions reach the replica before anything is cut.
    assert int(cli(master, "WAIT", 1, 2000)) == 1
    sse = SSE.open(stack, headers=sh)
    assert sse.status == 200
    master_pid = redis_ha.pid_of(master)
    try:
        load.start()
        time.sleep(1.5)
        # The jobs pushed from the cut on wait for a drainer that is
        # stopped: a fast one would finish them before the kill, and a
        # finished job is no loss for the relay to find.
        load.drainer.send_signal(signal.SIGSTOP)
        assert cut_replication(master, replica), \
            "the replica kept its link"
        time.sleep(0.6)
        load.t_fault = time.monotonic()
        os.kill(master_pid, signal.SIGKILL)
        wait_until(lambda: not alive(master_pid), 5, "the master dead")
        load.drainer.send_signal(signal.SIGCONT)
        load.promoted(redis_ha, replica)
        # Its own replicas must be able to follow it later.
        cli(replica, "CONFIG", "SET", "masterauth", "")
    finally:
        load.drainer.send_signal(signal.SIGCONT)
        load.end()
    try:
        # The stream opened before the kill gets a notification keel
        # makes after the failover: a password change (its session read
        # from the promoted replica), its job relayed and drained, the
        # drainer's PUBLISH on the new master, and the stream app
        # resubscribed there through the sentinels.
        with BaseUrlSession(stack.base_url) as s:
            r = s.patch("/api/users/%d" % streamer["id"], headers=sh,
                        json={"password": "a-new-password-after-failover",
                              "currentPassword": PASSWORD})
        assert r.status_code == 200, r.text
        p = stack.program("keel-outbox-relay", "--once")
        assert p.returncode == 0, p.stderr
        p = stack.program("keel-drain-notifications", "--until-empty",
                          "--budget", 60, env=DRAIN_ENV, timeout=90)
        assert p.returncode == 0, p.stderr
        ev = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ev = sse.next_event(1)
            if ev is not None and json.loads(ev["data"]).get(
                    "kind") == "password_changed":
                break
        assert ev is not None and json.loads(ev["data"])["kind"] == \
            "password_changed", \
            "the stream missed the notification made after the failover"
    finally:
        sse.close()
    print("\nsentinel failover (kill -9):", end=" ")
    lost = load.check()
    # The cut link made the master acknowledge pushes the replica never
    # got: the relay pushed them again (else the test tested nothing).
    assert lost > 0


def test_a_planned_switchover_is_followed(stack, redis_ha):
    """SENTINEL FAILOVER with the old master alive: it is demoted to a
    replica of the new one (the sentinels close its clients), and keel,
    whose writes would meet -READONLY there, follows to the new master."""
    old = redis_ha.master_port()        # promoted by the test above
    new = redis_ha.add_replica(old)
    load = Load(stack, redis_ha)
    try:
        load.start()
        time.sleep(1.5)
        load.t_fault = time.monotonic()
        assert cli(redis_ha.sentinels[1], "SENTINEL", "FAILOVER",
                   MASTER) == "OK"
        load.promoted(redis_ha, new)
    finally:
        load.end()
    print("\nsentinel switchover:", end=" ")
    load.check()
    # The old master is a replica now, and keel writes to the new one: a
    # login (a session written) works.
    wait_until(lambda: cli(old, "ROLE").split("\n")[0] == "slave", 30,
               "the old master demoted")
    with BaseUrlSession(stack.base_url) as s:
        u = make_user(stack, "student")
        r = s.get("/api/auth/me", headers=bearer(login(s, u["email"])))
        assert r.status_code == 200, r.text
