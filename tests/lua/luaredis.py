# SPDX-License-Identifier: ISC
"""tests/lua/luaredis.py -- what the *_cases.py tests share: a throwaway
redis-server on a free loopback port in a temporary directory (stopped by
its pid), and a script of lib/lua as lib/ sends it (scripts/lua-embed -e:
its includes expanded)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="keel-lua-redis.")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind",
             "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer on %d" % self.port)

    def cli(self, *args):
        p = subprocess.run(["redis-cli", "-p", str(self.port)] +
                           [str(a) for a in args], capture_output=True,
                           text=True, timeout=30)
        return p.stdout.strip()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def script(name):
    """lib/lua/NAME.lua as Redis gets it."""
    return subprocess.run(
        [os.path.join(ROOT, "scripts", "lua-embed"), "-e",
         os.path.join(ROOT, "lib", "lua", name + ".lua")],
        capture_output=True, text=True, check=True).stdout


def run_cases(label, names, arg, flush=False):
    """Runs every case_* function of names (a module's globals()) as
    fn(redis, arg) on one throwaway Redis (FLUSHALL before each when
    flush), printing "lua LABEL case NAME: ok" or "... FAILED: why"; 1 if
    any failed, else 0."""
    r = Redis()
    failed = 0
    try:
        for name, fn in sorted(names.items()):
            if not name.startswith("case_"):
                continue
            if flush:
                r.cli("FLUSHALL")
            try:
                fn(r, arg)
                print("lua %s case %s: ok" % (label, name[5:]))
            except (AssertionError, ValueError) as e:
                # ValueError: the script answered an error, not a number.
                failed = 1
                print("lua %s case %s: FAILED: %r line %d" % (
                    label, name[5:], e, sys.exc_info()[2].tb_next.tb_lineno))
    finally:
        r.stop()
    return failed
