# SPDX-License-Identifier: ISC
"""helpers.py -- what the end-to-end tests share.

HTTP: every response a test gets through these is checked against
docs/openapi.yaml (apicheck.py), so a route whose answers the document
doesn't describe fails its tests.
  BaseUrlSession   requests.Session on the stack's base URL (conftest's
                   `http` and `anon` fixtures are two of them)
  request()        one request on a new connection, for threads and for
                   tests that need a fresh connection per call
  raw_request()    bytes sent as they are, over a plain socket
  post_from(stack, src, path, body)  a JSON POST from loopback address src

Checks and waits:
  assert_error(r, status, code)  an API error answer, exactly
  db_queries(r)                  statements a request ran (Server-Timing)
  wait_until(pred, timeout, what=None)
  replicated(stack)              the replica has replayed every write
  cache_back(x_cache)            after memcached's restart, every worker
                                 uses it again (x_cache(): a fresh GET's
                                 X-Cache)
  plan_nodes(plan)               every node of an EXPLAIN (FORMAT JSON) plan

Races, made exact (the other side's statement held uncommitted by psql
while the API request waits on it, seen in pg_stat_activity):
  Held(stack, sql)               BEGIN; sql, open until commit()/abort()
  while_held(stack, sql, method, url, token, body=None)  the request,
                                 which must wait for the held commit

Data:
  uniq(prefix), plate(), car_body(**kw), new_car(http, **kw)
  redis_cli(stack, *args)        a command to the stack's Redis
  memcached_cmd(stack, line)     one to its memcached
  link_tokens(stack, to)         the set-password tokens mailed to `to`

Processes:
  spawn_app(stack, binary, sock, env, log)  a FastCGI app of the build on
                                 its own socket, up; stop_app(proc) ends it
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest
import requests
from requests.structures import CaseInsensitiveDict

import apicheck
from stack import Stack, StackError, psql_env

JSON_CT = "application/json; charset=utf-8"


# ------------------------------------------------------------------- HTTP

class BaseUrlSession(requests.Session):
    """requests.Session whose paths are relative to base_url; every
    response is checked against docs/openapi.yaml (a streamed one is
    not: the caller reads it, then calls apicheck.check_response with
    the body)."""

    def __init__(self, base_url, timeout=30):
        super().__init__()
        self.base_url = base_url
        self.timeout = timeout

    def url(self, path):
        return path if "://" in path else self.base_url + path

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        r = super().request(method, self.url(url), *args, **kwargs)
        if not kwargs.get("stream"):
            apicheck.check_response(r)
        return r


def request(method, url, **kwargs):
    """requests.request(method, url, ...) on a connection of its own,
    the response checked like a session's."""
    with BaseUrlSession("") as s:
        return s.request(method, url, **kwargs)


class RawResponse:
    """What raw_request() got: status_code, headers, content, like a
    requests.Response as far as assert_error needs."""

    def __init__(self, status, headers, content):
        self.status_code = status
        self.headers = CaseInsensitiveDict(headers)
        self.content = content

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        import json
        return json.loads(self.content)


def raw_exchange(addr, port, data, half_close=True):
    """Send bytes to addr:port as they are (no client-side encoding),
    then (half_close) end our side, and read up to the connection's end;
    returns every byte read."""
    with socket.create_connection((addr, port), timeout=30) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf


def raw_request(stack, data):
    """Send bytes to lighttpd as they are (no client-side encoding) and
    read the answer up to the connection's end; returns a RawResponse,
    checked against docs/openapi.yaml like any other."""
    port = int(stack.base_url.rsplit(":", 1)[1])
    buf = raw_exchange("127.0.0.1", port, data)
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    method, target = data.split(b"\r\n", 1)[0].decode("latin-1").split()[:2]
    apicheck.check(method, target, status, headers, body)
    return RawResponse(status, headers, body)


# ---------------------------------------------------------- checks, waits

def assert_error(r, status, code):
    """r is an API error answer (API.md "Conventions"): that status, JSON,
    that error code and a message; returns the body."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"] == JSON_CT
    body = r.json()
    assert body["error"] == code, body
    assert isinstance(body.get("message"), str) and body["message"]
    return body


def db_queries(r):
    """Statements the request ran, from its Server-Timing header."""
    m = re.search(r'desc="(\d+) queries"', r.headers["Server-Timing"])
    return int(m.group(1))


def wait_until(pred, timeout, what=None, step=0.05):
    """Ask pred() every `step` seconds until it returns a true value, and
    return that value.  At the deadline pred() is asked once more; if it
    is still false the test fails naming `what` ("timed out after 10 s
    waiting for <what>"), or, without `what`, the false value is returned
    for the caller to assert on with its own message."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            break
        time.sleep(step)
    if not v and what is not None:
        pytest.fail("timed out after %s s waiting for %s" % (timeout, what))
    return v


# lib/cache.c: libmemcached retries a server it found dead after 2 s,
# counted in whole seconds (so 2 to 3 s).
MEMCACHED_RETRY = 3


def cache_back(x_cache, timeout=20, streak=8):
    """After memcached's restart: wait out the retry delay of the workers
    that found it dead, then until `streak` fresh GETs in a row (spread
    over the workers, each on its own connection) were not BYPASS.  A
    worker still waiting to retry loses its invalidations (readers keep
    the old entry until its TTL, README), so the next test's write could
    go unseen."""
    time.sleep(MEMCACHED_RETRY + 0.5)
    deadline = time.monotonic() + timeout
    ok = 0
    while ok < streak:
        if time.monotonic() > deadline:
            pytest.fail("the cache not back within %s s of memcached's "
                        "restart" % timeout)
        ok = ok + 1 if x_cache() != "BYPASS" else 0
    return True


def replicated(stack, timeout=30):
    """Wait until the replica has replayed everything the primary wrote so
    far: reads may be served by the replica (and then cached); only the
    read-your-writes tests may race it."""
    lsn = stack.psql("SELECT pg_current_wal_lsn()")
    wait_until(lambda: stack.psql(
        "SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % lsn,
        replica=True) == "t", timeout, "the replica to catch up", step=0.02)


def plan_nodes(plan):
    """plan (EXPLAIN (FORMAT JSON)'s "Plan") and every node under it."""
    yield plan
    for sub in plan.get("Plans", []):
        yield from plan_nodes(sub)


# ------------------------------------------------------------------- data

def uniq(prefix="X"):
    """prefix + 12 upper-case hex digits: unique per call."""
    return prefix + uuid.uuid4().hex[:12].upper()


def plate():
    """A license plate no other test uses."""
    return uniq("P")


def car_body(**kw):
    """A valid POST /api/cars body with a unique plate and manufacturer
    (so a list filtered by it holds only this test's cars); kw overrides."""
    body = {"licensePlate": plate(), "manufacturer": uniq("Make"),
            "model": "Probe", "category": "compact", "year": 2020}
    body.update(kw)
    return body


def new_car(http, **kw):
    """POST a car (car_body(**kw)); returns it (asserts 201)."""
    r = http.post("/api/cars", json=car_body(**kw))
    assert r.status_code == 201, r.text
    return r.json()


def memcached_cmd(stack, line):
    """One text-protocol command to the stack's memcached; its reply."""
    with socket.create_connection(("127.0.0.1", stack.ports["memcached"]),
                                  timeout=10) as s:
        s.sendall(line.encode() + b"\r\n")
        return s.recv(4096).decode()


def own_stack(request, what="the stack", **kw):
    """A Stack(**kw) of the calling module's own, for a fixture: started
    (the test fails, naming what, if it can't) and stopped when request's
    scope ends, after the fixture's own teardown."""
    s = Stack(**kw)
    request.addfinalizer(s.stop)
    try:
        s.start()
    except StackError as e:
        pytest.fail("could not start %s: %s" % (what, e))
    return s


def superuser_sql(stack, sql, replica=False):
    """sql (a statement or a list of them) as the postgres superuser over
    the primary's (or replica's) unix socket; psql's output, stripped."""
    sock = os.path.join(os.path.realpath(stack.path("pg")), "sock")
    port = stack.ports["pg_replica" if replica else "pg"]
    cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", sock,
           "-p", str(port), "-d", "keel"]
    for s in sql if isinstance(sql, (list, tuple)) else [sql]:
        cmd += ["-c", s]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=True, text=True, timeout=60).stdout.strip()


def redis_cli(stack, *args):
    """redis-cli --raw against the stack's Redis; its output, stripped."""
    return subprocess.run(
        ["redis-cli", "-p", str(stack.ports["redis"]), "--raw"]
        + [str(a) for a in args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, timeout=30,
        check=True).stdout.strip()


# Every key whose name or any of whose values holds ARGV[1] (bytes, not
# a pattern): one script, so no key can come or go between a scan and a
# read, and no value is decoded on the way.
HOLDING_LUA = """
local found, cursor = {}, '0'
local function holds(s) return string.find(s, ARGV[1], 1, true) end
repeat
  local r = redis.call('SCAN', cursor, 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local t, vals = redis.call('TYPE', k)['ok'], {}
    if t == 'string' then vals = {redis.call('GET', k)}
    elseif t == 'hash' then vals = redis.call('HGETALL', k)
    elseif t == 'list' then vals = redis.call('LRANGE', k, 0, -1)
    elseif t == 'set' then vals = redis.call('SMEMBERS', k)
    elseif t == 'zset' then vals = redis.call('ZRANGE', k, 0, -1)
    elseif t == 'stream' then
      for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
        for _, v in ipairs(e[2]) do vals[#vals + 1] = v end
      end
    end
    local hit = holds(k)
    for _, v in ipairs(vals) do hit = hit or holds(v) end
    if hit then found[#found + 1] = k end
  end
until cursor == '0'
return found
"""


def redis_keys_holding(stack, needle):
    """The keys of the stack's Redis whose names or values hold needle
    (a str), whatever their type: one server-side walk."""
    out = subprocess.run(
        ["redis-cli", "-p", str(stack.ports["redis"]), "--raw", "EVAL",
         HOLDING_LUA, "0", needle], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=30, check=True).stdout
    if out.startswith((b"ERR", b"(error)")):
        raise AssertionError("the walk failed: %r" % out[:200])
    return [k.decode(errors="replace") for k in out.splitlines() if k]


def post_from(stack, src, path, body):
    """POST body (JSON) to the stack from the loopback address src
    (127.0.0.0/8 is all this host's): a client of its own to the
    limiters.  The answer's status."""
    u = urllib.parse.urlsplit(stack.url("/"))
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60,
                                   source_address=(src, 0))
    try:
        c.request("POST", path, body=json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def link_tokens(stack, to):
    """The set-password tokens of every email the stack's SMTP server got
    for address `to`, oldest first.  The links exist nowhere else: the
    drainer makes each one as it sends (README "Sessions")."""
    out = []
    for m in stack.mail():
        if m["To"].addresses[0].addr_spec != to:
            continue
        text = m.get_body(("plain",)).get_content()
        link = next(w for w in text.split() if "/set-password?token=" in w)
        out.append(urllib.parse.parse_qs(
            urllib.parse.urlparse(link).query)["token"][0])
    return out


class OwnApp:
    """An app of the stack (keel-<name>) on its own socket, with env
    overrides, and the stack's own back afterwards.  Its output goes to
    log/<name>-own.log."""

    where = "fcgi-apps"         # the binary's directory in the build

    def __init__(self, stack, name, **env):
        self.stack = stack
        self.name = name
        self.env = env
        self.proc = None

    def __enter__(self):
        self.stack.stop_component(self.name)
        self.proc = spawn_app(self.stack,
                              self.where + "/keel-" + self.name,
                              self.stack.path("run", self.name + ".sock"),
                              self.env, self.name + "-own.log")
        return self

    def __exit__(self, *exc):
        stop_app(self.proc)
        self.stack.start_component(self.name)


def spawn_app(stack, binary, sock, env, log):
    """Starts the build's FastCGI program binary (a path under the build
    directory) on unix socket sock, with the stack's environment plus env,
    its output appended to the stack's log/<log>; returns its Popen once
    the socket exists.  The caller stops it with stop_app()."""
    e = dict(os.environ)
    e.update(stack.env)
    e.update(env)
    if os.path.exists(sock):
        os.unlink(sock)
    with open(stack.path("log", log), "ab") as out:
        proc = subprocess.Popen(
            [os.path.join(stack.build_dir, binary), "--socket", sock],
            env=e, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def up():
        assert proc.poll() is None, "%s exited" % binary
        return os.path.exists(sock)
    wait_until(up, 20, "%s's socket" % binary, step=0.02)
    return proc


def stop_app(proc):
    """SIGTERM to an app spawn_app() started, and wait for its exit."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


class Held:
    """A psql session holding a transaction open: Held(stack, sql) runs
    BEGIN and sql and leaves them uncommitted until commit()."""

    def __init__(self, stack, sql):
        self.stack = stack
        self.app = "keel-e2e-held-" + uuid.uuid4().hex[:8]
        url, env = psql_env(stack.env.get("KEEL_STACK_PG_URL")
                            or stack.env["DATABASE_URL"])
        env["PGAPPNAME"] = self.app
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env)
        self.proc.stdin.write("BEGIN;\n%s;\n" % sql)
        self.proc.stdin.flush()
        wait_until(self._holding, 20, "psql to hold its transaction")

    def _holding(self):
        """sql ran (past the BEGIN) and the transaction is open."""
        assert self.proc.poll() is None, self.proc.stderr.read()
        return self.stack.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE "
            "application_name = '%s' AND state = 'idle in transaction' "
            "AND query NOT ILIKE 'begin%%'" % self.app) == "1"

    def blocking(self):
        """True once another session waits on this one's locks."""
        return self.stack.psql(
            "SELECT count(*) FROM pg_stat_activity a, pg_stat_activity h "
            "WHERE h.application_name = '%s' AND "
            "h.pid = ANY (pg_blocking_pids(a.pid))" % self.app) != "0"

    def commit(self):
        self.proc.communicate("COMMIT;\n", timeout=20)
        assert self.proc.returncode == 0

    def abort(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def while_held(stack, sql, method, url, token, body=None):
    """The API request made while sql is held uncommitted: it must wait
    for the commit (a request that doesn't wait never saw the other
    side), then it answers; returns its response."""
    held = Held(stack, sql)
    out = {}

    def send():
        out["r"] = request(method, url, json=body,
                           headers={"Authorization": "Bearer " + token},
                           timeout=60)

    t = threading.Thread(target=send)
    try:
        t.start()
        first = wait_until(lambda: ("answered" if "r" in out else
                                    "blocked" if held.blocking() else None),
                           20, "the request to wait or answer")
        held.commit()
    finally:
        held.abort()
        t.join(60)
    assert first == "blocked", ("answered without waiting for the held "
                                "transaction", out["r"].status_code,
                                out["r"].text)
    return out["r"]
