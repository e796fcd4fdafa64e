# SPDX-License-Identifier: ISC
"""rcluster.py -- a real Redis Cluster for the end-to-end tests.

Three (or n) masters of Debian's redis-server with cluster-enabled on free
loopback ports in a temp directory, each with `replicas` replicas, joined
by `redis-cli --cluster create`, waited on until every node says
cluster_state:ok, and stopped by their pids.  `ports` are the masters'
(as the cluster says once made), `replicas` the others'; kill() takes a
node away for a failover.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from stack import alive, free_ports


class ClusterError(RuntimeError):
    pass


class RedisCluster:
    def __init__(self, n=3, replicas=0):
        self.n = n
        self.nreplicas = replicas
        self.dir = None
        self.ports = []         # masters
        self.replicas = []
        self.pids = []
        self.pid_of = {}
        self.dead = set()

    def live(self):
        return [p for p in self.ports + self.replicas if p not in self.dead]

    def cli(self, port, *args, check=True):
        """redis-cli --raw against one node (no -c: a redirect is an
        answer); its output, stripped."""
        p = subprocess.run(["redis-cli", "-p", str(port), "--raw"]
                           + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        if check and p.returncode != 0:
            raise ClusterError("redis-cli %s: %s" % (args, p.stderr))
        return p.stdout.strip()

    def call(self, *args):
        """A command on whichever node holds its key (-c follows MOVED)."""
        p = subprocess.run(["redis-cli", "-c", "-p", str(self.live()[0]),
                            "--raw"] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=30, check=True)
        return p.stdout.strip()

    def start(self, timeout=60):
        self.dir = tempfile.mkdtemp(prefix="keel-rcluster-")
        # The bus ports too: the default (port + 10000) may be taken, or
        # past 65535.
        total = self.n * (1 + self.nreplicas)
        ports = free_ports(2 * total)
        nodes, bus = ports[:total], ports[total:]
        try:
            for port, bport in zip(nodes, bus):
                d = os.path.join(self.dir, str(port))
                os.mkdir(d)
                subprocess.run(
                    ["redis-server", "--port", str(port),
                     "--cluster-port", str(bport),
                     "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", os.path.join(d, "nodes.conf"),
                     "--cluster-node-timeout", "3000", "--dir", d,
                     "--daemonize", "yes",
                     "--pidfile", os.path.join(d, "redis.pid"),
                     "--logfile", os.path.join(d, "redis.log"),
                     "--save", "", "--appendonly", "no"],
                    check=True, timeout=30)
            for port in nodes:
                self.pid_of[port] = self._pid(port, 10)
                self.pids.append(self.pid_of[port])
            for port in nodes:
                self._wait(lambda: self.cli(port, "PING", check=False) ==
                           "PONG", timeout, "node %d up" % port)
            subprocess.run(
                ["redis-cli", "--cluster", "create"]
                + ["127.0.0.1:%d" % p for p in nodes]
                + ["--cluster-replicas", str(self.nreplicas),
                   "--cluster-yes"],
                check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=60)
            self.ports = nodes      # until the cluster says which
            for port in nodes:
                self._wait(lambda: "cluster_state:ok" in
                           self.cli(port, "CLUSTER", "INFO", check=False),
                           timeout, "cluster_state:ok on %d" % port)
            self._wait(lambda: len(self.masters()) == self.n and all(
                len(self.cli(p, "CLUSTER", "NODES").splitlines()) == total
                for p in nodes), timeout, "every node known to every node")
            self.ports = sorted(self.masters().values())
            self.replicas = [p for p in nodes if p not in self.ports]
            for port in nodes:
                self._wait(lambda: "cluster_state:ok" in
                           self.cli(port, "CLUSTER", "INFO", check=False),
                           timeout, "cluster_state:ok on %d" % port)
        except Exception:
            self.stop()
            raise
        return self

    def _pid(self, port, timeout):
        path = os.path.join(self.dir, str(port), "redis.pid")
        self._wait(lambda: os.path.exists(path) and
                   open(path).read().strip().isdigit(), timeout,
                   "pid file of %d" % port)
        return int(open(path).read().strip())

    @staticmethod
    def _wait(pred, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.1)
        raise ClusterError("timed out waiting for %s" % what)

    def url(self, i=0):
        return "redis://127.0.0.1:%d/0" % self.ports[i]

    def urls(self):
        """Every master's URL, comma-separated (REDIS_URL's seeds)."""
        return ",".join(self.url(i) for i in range(len(self.ports)))

    def masters(self):
        """{node id: port} of the masters, from CLUSTER NODES."""
        out = {}
        for line in self.cli(self.live()[0], "CLUSTER",
                             "NODES").splitlines():
            f = line.split()
            if "master" in f[2] and "fail" not in f[2]:
                out[f[0]] = int(f[1].split("@")[0].rsplit(":", 1)[1])
        return out

    def slot(self, key):
        return int(self.cli(self.live()[0], "CLUSTER", "KEYSLOT", key))

    def kill(self, port):
        """SIGKILL to node port (a crash: its replica takes over after
        cluster-node-timeout)."""
        os.kill(self.pid_of[port], signal.SIGKILL)
        while alive(self.pid_of[port]):
            time.sleep(0.02)
        self.dead.add(port)

    def slots(self):
        """[(lo, hi, port)] of the masters' slot ranges (CLUSTER NODES)."""
        out = []
        for line in self.cli(self.live()[0], "CLUSTER",
                             "NODES").splitlines():
            f = line.split()
            if "master" not in f[2] or "fail" in f[2]:
                continue
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            for r in f[8:]:
                if r.startswith("["):
                    continue        # a slot being migrated
                lo, _, hi = r.partition("-")
                out.append((int(lo), int(hi or lo), port))
        return out

    def port_of_slot(self, s):
        for lo, hi, port in self.slots():
            if lo <= s <= hi:
                return port
        raise ClusterError("no node serves slot %d" % s)

    def port_of(self, key):
        """The port of the master serving key's slot."""
        return self.port_of_slot(self.slot(key))

    def node_id(self, port):
        return self.cli(port, "CLUSTER", "MYID")

    def move_slot(self, slot, dst_port):
        """Moves slot (and its keys) to the master on dst_port, as
        redis-cli's resharding does: IMPORTING/MIGRATING, MIGRATE each
        key, then SETSLOT NODE on every master.  Returns the old port."""
        src_port = self.port_of_slot(slot)
        if src_port == dst_port:
            raise ClusterError("slot %d is on %d already" % (slot, dst_port))
        src_id, dst_id = self.node_id(src_port), self.node_id(dst_port)
        self.cli(dst_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        self.cli(src_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = self.cli(src_port, "CLUSTER", "GETKEYSINSLOT", slot,
                            100).split()
            if not keys:
                break
            self.cli(src_port, "MIGRATE", "127.0.0.1", dst_port, "", 0,
                     5000, "KEYS", *keys)
        for port in (dst_port, src_port) + tuple(
                p for p in self.ports if p not in (src_port, dst_port)):
            self.cli(port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        return src_port

    def stop(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 10
        for pid in self.pids:
            while alive(pid) and time.monotonic() < end:
                time.sleep(0.05)
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pids = []
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
