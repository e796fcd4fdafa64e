# SPDX-License-Identifier: ISC
"""fleet.py -- a throwaway keel fleet for the end-to-end tests.

scripts/fleet on free ports in a fresh temp directory: one stack of shared
stores (PostgreSQL primary + replica, Redis, two memcached, the SMTP and
Sentry sinks, and a prometheus scraping every host), N hosts on 127.0.0.11,
127.0.0.12 ... (each its own apps, with the test-only ones, lighttpd and
cron drainers), HAProxy in front on 127.0.0.1.

    f = Fleet(hosts=2).start()
    f.url("/api/cars")          # through HAProxy
    f.hosts[0].url("/health")   # straight to host 1 (a stack.Stack)
    f.stores.psql("SELECT 1")   # the stores' stack (mail, psql, redis)
    f.stop()

Each host and the stores are stack.Stack objects attached to the
directories scripts/fleet made (their start() is never called): path(),
log(), app_pid(), worker_pids(), program(), spawn() act on that host,
psql(), mail(), ports["redis"] on the shared stores.

The hosts run the build through a deploy directory of the fleet's own
(f.deploy_dir: symlinks to the build, the apps' binaries one by one), so
a test can put a new binary in place, as a deploy does, without touching
the build: f.deploy(path) puts a new copy at that path.
"""

import atexit
import os
import shutil
import socket
import subprocess
import tempfile

from stack import (EXTRA_APPS, ROOT, Stack, StackError, free_ports,
                   parse_env_file)

FLEET_SCRIPT = os.path.join(ROOT, "scripts", "fleet")
STACK_SCRIPT = os.path.join(ROOT, "scripts", "stack")


class Fleet:
    def __init__(self, hosts=2, build_dir=None, env=None,
                 prometheus_interval="1s"):
        self.n = hosts
        self.build_dir = os.path.abspath(
            build_dir or os.environ.get("KEEL_BUILD_DIR")
            or os.path.join(ROOT, "_build-test"))
        self.extra_env = dict(env or {})
        self.prometheus_interval = prometheus_interval
        self.keep = os.environ.get("KEEL_KEEP_STACK") == "1"
        self.dir = None
        self.ports = {}
        self.info = {}
        self.hosts = []
        self.stores = None
        self.base_url = None
        self._started = False

    # ---------------------------------------------------------------- life

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="keel-fleet-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self._make_deploy_dir()
        names = ("haproxy", "host", "pg", "pg_replica", "redis", "memcached",
                 "memcached2", "smtp", "sentry", "prometheus")
        self.ports = dict(zip(names, free_ports(len(names))))
        self._started = True
        atexit.register(self.stop)
        p = self._run("start", str(self.n), timeout=600)
        if p.returncode != 0:
            self.stop()
            raise StackError("scripts/fleet start failed (exit %d):\n%s"
                             % (p.returncode, p.stdout))
        self.info = parse_env_file(os.path.join(self.fleet_dir, "fleet.env"))
        self.base_url = self.info["KEEL_FLEET_URL"]
        self.stores = self._attach(self.info["KEEL_FLEET_STORES_DIR"],
                                   "127.0.0.1", self.ports["host"])
        self.hosts = [self._attach(self.info["KEEL_FLEET_HOST_%d_DIR" % i],
                                   *self.info["KEEL_FLEET_HOST_%d" % i]
                                   .split(":"))
                      for i in range(1, self.n + 1)]
        return self

    def stop(self):
        if not self._started:
            return
        self._started = False
        try:
            self._run("stop", timeout=300)
        finally:
            if not self.keep and self.dir:
                pg = os.path.join(self.fleet_dir, "stores", "pg")
                if os.path.islink(pg):
                    shutil.rmtree(os.path.realpath(pg), ignore_errors=True)
                shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def fleet_dir(self):
        return os.path.join(self.dir, "fleet")

    @property
    def deploy_dir(self):
        return os.path.join(self.dir, "deploy")

    # The build's directories whose programs a deploy replaces one by one.
    DEPLOYED = ("fcgi-apps", "stream")

    def _make_deploy_dir(self):
        os.mkdir(self.deploy_dir)
        for e in os.listdir(self.build_dir):
            src = os.path.join(self.build_dir, e)
            dst = os.path.join(self.deploy_dir, e)
            if e in self.DEPLOYED and os.path.isdir(src):
                os.mkdir(dst)
                for f in os.listdir(src):
                    os.symlink(os.path.join(src, f), os.path.join(dst, f))
            else:
                os.symlink(src, dst)

    def deploy(self, path):
        """A new copy of the binary at path (under deploy_dir/fcgi-apps or
        /stream) renamed over it, as a deploy puts a new build in place;
        returns the new file's inode."""
        assert os.path.dirname(os.path.dirname(path)) == self.deploy_dir \
            and os.path.basename(os.path.dirname(path)) in self.DEPLOYED, path
        tmp = path + ".new"
        shutil.copy2(os.path.realpath(path), tmp)
        os.rename(tmp, path)
        return os.stat(path).st_ino

    def _env(self):
        e = dict(os.environ)
        e.update({
            "KEEL_FLEET_DIR": self.fleet_dir,
            "KEEL_BUILD_DIR": self.deploy_dir,
            "KEEL_FLEET_PORT": str(self.ports["haproxy"]),
            "KEEL_FLEET_HOST_PORT": str(self.ports["host"]),
            "KEEL_PG_PORT": str(self.ports["pg"]),
            "KEEL_PG_REPLICA_PORT": str(self.ports["pg_replica"]),
            "KEEL_REDIS_PORT": str(self.ports["redis"]),
            "KEEL_MEMCACHED_PORT": str(self.ports["memcached"]),
            "KEEL_MEMCACHED2_PORT": str(self.ports["memcached2"]),
            "KEEL_SMTP_PORT": str(self.ports["smtp"]),
            "KEEL_SENTRY_PORT": str(self.ports["sentry"]),
            "KEEL_PROMETHEUS_PORT": str(self.ports["prometheus"]),
            "KEEL_FLEET_PROMETHEUS": "1",
            "KEEL_PROMETHEUS_INTERVAL": self.prometheus_interval,
            # The hosts' cron drainers run: that is what the fleet
            # tests drain with.
            "KEEL_CRON": "1",
            "KEEL_DEMO": "0",
            "KEEL_EXTRA_APPS": EXTRA_APPS,
        })
        for name in ("API", "AUTH", "WRITE", "READ"):
            e.setdefault("KEEL_RATELIMIT_" + name, "1000000/900")
        e.setdefault("KEEL_FCGI_TIMEOUT", "12")
        e.setdefault("KEEL_STREAM_HEARTBEAT", "2")
        # A fleet is never a caller's own stack.
        for v in ("KEEL_STACK_DIR", "KEEL_STACK_STORES", "KEEL_HTTP_ADDR",
                  "KEEL_HTTP_PORT", "KEEL_PGBOUNCER", "KEEL_PROMETHEUS"):
            e.pop(v, None)
        e.update(self.extra_env)
        return e

    def _run(self, *args, timeout=120):
        return subprocess.run([FLEET_SCRIPT] + list(args), env=self._env(),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)

    def _attach(self, d, addr, port):
        """A Stack on a directory scripts/fleet started."""
        s = Stack(build_dir=self.deploy_dir)
        s.dir = d
        s.env = parse_env_file(os.path.join(d, "env"))
        s.env.update(self.extra_env)
        s.base_url = "http://%s:%s" % (addr, port)
        s.addr, s.port = addr, int(port)
        s.ports = {"http": int(port), "redis": self.ports["redis"],
                   "memcached": self.ports["memcached"],
                   "memcached2": self.ports["memcached2"],
                   "pg": self.ports["pg"],
                   "pg_replica": self.ports["pg_replica"]}
        return s

    # ------------------------------------------------------------- helpers

    def url(self, path):
        return self.base_url + path

    def host_stack(self, i, *args, timeout=180):
        """scripts/stack ARGS on host i (1-based), as scripts/fleet runs
        it (start lighttpd, stop an app ...); its output."""
        e = self._env()
        e.update({"KEEL_STACK_DIR": self.hosts[i - 1].dir,
                  "KEEL_STACK_STORES": self.info["KEEL_FLEET_STORES_DIR"],
                  "KEEL_HTTP_ADDR": self.hosts[i - 1].addr,
                  "KEEL_HTTP_PORT": str(self.ports["host"]),
                  "KEEL_PROMETHEUS": "0", "KEEL_PGBOUNCER": "0"})
        p = subprocess.run([STACK_SCRIPT] + list(args), env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        if p.returncode != 0:
            raise StackError("scripts/stack %s on host %d failed:\n%s"
                             % (" ".join(args), i, p.stdout))
        return p.stdout

    def haproxy(self, cmd):
        """One command to HAProxy's admin socket; its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.info["KEEL_FLEET_HAPROXY_SOCKET"])
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        return out.decode()

    def server_states(self):
        """{"host1": "UP", "host2": "DOWN", ...} as HAProxy sees them."""
        lines = self.haproxy("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "hosts" and \
                    row.get("svname", "").startswith("host"):
                out[row["svname"]] = row["status"]
        return out

    def haproxy_counters(self):
        """{server: {stat: value}} of backend hosts (show stat)."""
        lines = self.haproxy("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "hosts":
                out[row["svname"]] = row
        return out

    def prometheus_url(self):
        return self.info["KEEL_FLEET_PROMETHEUS_URL"]
