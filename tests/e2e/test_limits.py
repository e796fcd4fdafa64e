# SPDX-License-Identifier: ISC
"""test_limits.py -- rate limits (API.md "Rate limits", issue 4): exact
under concurrency, the RateLimit header fields, 429 with Retry-After and
retryAfter, failures-only login limits, users vs addresses, IPv6 /56
grouping, X-Forwarded-For only from trusted proxies, and Redis down (fail
open, or closed per limiter) with recovery.

The session stack runs with generous limits (stack.py), so other suites
never trip them.  This module replaces the stack's `limitapp` (routes
under /api/_limit) with its own supervisor whose environment sets low
limits and trusts 127.0.0.1 as a proxy; every test then speaks for its
own made-up client address through X-Forwarded-For, so the tests' counts
never mix.  The stack's own limitapp is restored afterwards.
"""

import concurrent.futures
import hashlib
import random
import time
import uuid

import pytest

import apicheck
from helpers import redis_cli, request, spawn_app, stop_app

LIMITS = {"KEEL_RATELIMIT_API": "1000/60", "KEEL_RATELIMIT_READ": "30/60",
          "KEEL_RATELIMIT_WRITE": "50/60", "KEEL_RATELIMIT_AUTH": "3/60"}


class LimitApp:
    """The limitapp supervisor, started with env overrides."""

    def __init__(self, stack):
        self.stack = stack
        self.proc = None
        self.sock = stack.path("run", "limitapp.sock")

    def start(self, **overrides):
        self.stop()
        env = dict(LIMITS)
        env.update({"TRUSTED_PROXIES": "127.0.0.1, ::1",
                    "KEEL_WORKERS": "4"})
        env.update(overrides)
        self.proc = spawn_app(self.stack, "tests/e2e/keel-limitapp",
                              self.sock, env, "limitapp-test.log")

    def stop(self):
        if self.proc is not None:
            stop_app(self.proc)
            self.proc = None


@pytest.fixture(scope="module")
def app(stack):
    stack.stop_component("limitapp")
    a = LimitApp(stack)
    a.start()
    yield a
    a.stop()
    stack.start_component("limitapp")


def client():
    """A fresh made-up client address (TEST-NET-2, random)."""
    return "198.51.%d.%d" % (random.randrange(256), random.randrange(1, 255))


def get(stack, path, ip, **kw):
    headers = kw.pop("headers", {})
    headers["X-Forwarded-For"] = ip
    return request("GET", stack.url(path), headers=headers, timeout=30, **kw)


def post(stack, path, ip, **kw):
    headers = kw.pop("headers", {})
    headers["X-Forwarded-For"] = ip
    return request("POST", stack.url(path), headers=headers, timeout=30,
                   **kw)


def test_limits_headers_on_api_responses(stack, app):
    ip = client()
    r = get(stack, "/api/_limit/read", ip)
    assert r.status_code == 200
    assert r.headers["RateLimit-Limit"] == "30"
    assert r.headers["RateLimit-Remaining"] == "29"
    assert r.headers["RateLimit-Reset"] == "60"
    assert r.headers["RateLimit-Policy"] == \
        '"api";q=1000;w=60, "read";q=30;w=60'
    assert r.headers["RateLimit"] == '"api";r=999;t=60, "read";r=29;t=60'
    r = get(stack, "/api/_limit/read", ip)
    assert r.headers["RateLimit-Remaining"] == "28"
    # A write is counted by api and write, not read.
    r = post(stack, "/api/_limit/write", ip)
    assert r.status_code == 201
    assert r.headers["RateLimit-Policy"] == \
        '"api";q=1000;w=60, "write";q=50;w=60'
    assert r.headers["RateLimit"].startswith('"api";r=997;t=')
    # Errors carry them too, 404 and 405 included.
    r = get(stack, "/api/_limit/nope", ip)
    assert r.status_code == 404
    assert r.headers["RateLimit-Remaining"] == "27"
    r = request("DELETE", stack.url("/api/_limit/read"), timeout=30,
                headers={"X-Forwarded-For": ip})
    assert r.status_code == 405
    assert r.headers["RateLimit"].startswith('"api";r=995;')


def test_limits_health_and_routes_exempt(http):
    for path in ("/health", "/routes"):
        r = http.get(path)
        assert "RateLimit-Limit" not in r.headers
        assert "RateLimit-Policy" not in r.headers


def test_limits_an_unrouted_answer_counts_whatever_its_path(http):
    # The limiter reads its class off the route row, not the path: an
    # answer no route gave counts under the API limiters, /api or not.
    r = http.get("/no-such-page")
    assert r.status_code == 404
    assert int(r.headers["RateLimit-Limit"]) >= 1000
    assert '"api"' in r.headers["RateLimit-Policy"]


def test_limits_main_stack_api_has_headers(http):
    r = http.get("/api/cars")
    assert r.status_code == 200
    assert int(r.headers["RateLimit-Limit"]) >= 1000
    assert "RateLimit-Remaining" in r.headers and "RateLimit" in r.headers


def test_limits_exact_under_concurrency(stack, app):
    ip = client()
    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        codes = list(ex.map(lambda _: post(stack, "/api/_limit/write",
                                           ip).status_code, range(200)))
    assert codes.count(201) == 50, codes
    assert codes.count(429) == 150, codes


def read_past_the_limit(stack):
    """A new client's 30 reads (all 200) and its 31st, the 429."""
    ip = client()
    for _ in range(30):
        assert get(stack, "/api/_limit/read", ip).status_code == 200
    r = get(stack, "/api/_limit/read", ip)
    assert r.status_code == 429
    return r


def test_limits_429_body_and_retry_after(stack, app):
    r = read_past_the_limit(stack)
    body = r.json()
    assert body["error"] == "rate_limited" and body["message"]
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert body["retryAfter"] == retry
    assert r.headers["RateLimit-Remaining"] == "0"
    assert r.headers["RateLimit-Limit"] == "30"
    # Denied requests are not recorded: the api limiter still says 970.
    assert '"api";r=970;' in r.headers["RateLimit"]
    # Another client is unaffected.
    assert get(stack, "/api/_limit/read", client()).status_code == 200


def test_limits_429_is_the_documented_rate_limited_answer(stack, app):
    """The test app's answers are not part of the API (apicheck skips
    them), but its 429 is lib/limit.c's, the one every /api route gives:
    it must be docs/openapi.yaml's RateLimited, headers included."""
    r = read_past_the_limit(stack)
    doc = apicheck.contract()
    limited = doc.response({"responses": {"429": {
        "$ref": "#/components/responses/RateLimited"}}}, 429)
    doc.validate(limited["content"]["application/json"]["schema"], r.json(),
                 "429 of lib/limit.c")
    assert all(h in r.headers for h in limited["headers"])


def test_limits_forged_forwarded_for_is_one_client(stack, app):
    # Behind our proxy, only the hop it saw counts: what the client put
    # to the left of it is not believed.
    real = client()
    for i in range(30):
        forged = "%s, %s" % (client(), real)
        assert get(stack, "/api/_limit/read", forged).status_code == 200
    assert get(stack, "/api/_limit/read", "%s, %s" % (client(), real)
               ).status_code == 429


def test_limits_ipv6_grouped_by_56(stack, app):
    base = "2001:db8:%x:%x" % (random.randrange(65536),
                               random.randrange(256) << 8)
    for i in range(30):
        ip = base[:-2] + "%02x::%x" % (i, random.randrange(1, 65535))
        assert get(stack, "/api/_limit/read", ip).status_code == 200, ip
    assert get(stack, "/api/_limit/read", base + "::1").status_code == 429
    # The next /56 is someone else.
    other = "2001:db8:%s:%x::1" % (base.split(":")[2],
                                   (int(base.split(":")[3], 16) + 0x100)
                                   & 0xffff)
    assert get(stack, "/api/_limit/read", other).status_code == 200


def test_limits_auth_counts_failures_only(stack, app):
    ip = client()
    acct = "u%s@example.org" % uuid.uuid4().hex[:8]
    good = {"login": acct, "password": "right"}
    bad = {"login": acct, "password": "wrong"}
    for _ in range(5):
        r = post(stack, "/api/_limit/auth/login", ip, json=good)
        assert r.status_code == 200
    for i in range(3):
        r = post(stack, "/api/_limit/auth/login", ip, json=bad)
        assert r.status_code == 401
    assert '"auth";r=0;' in r.headers["RateLimit"]
    # Now even the right password waits: the account is under attack.
    r = post(stack, "/api/_limit/auth/login", ip, json=good)
    assert r.status_code == 429
    assert r.json()["retryAfter"] >= 1
    # Per address + account: another account from the same address is not.
    r = post(stack, "/api/_limit/auth/login", ip,
             json={"login": "other" + acct, "password": "right"})
    assert r.status_code == 200


def new_session(stack, uid, role="staff"):
    tok = uuid.uuid4().hex + uuid.uuid4().hex[:11]      # 43 chars
    key = "keel:sess:" + hashlib.sha256(tok.encode()).hexdigest()
    redis_cli(stack, "HSET", key, "uid", str(uid), "role", role, "exp",
              str(int(time.time()) + 3600))
    redis_cli(stack, "EXPIRE", key, "3600")
    return tok


def test_limits_key_on_the_user(stack, app):
    uid = random.randrange(10**6, 10**9)
    tok = new_session(stack, uid)
    auth = {"Authorization": "Bearer " + tok}
    # The same user from different addresses shares one budget, and the
    # session read by the limiter's script identifies the caller.
    for i in range(30):
        r = get(stack, "/api/_limit/me", client(), headers=dict(auth))
        assert r.status_code == 200, r.text
        assert r.json() == {"uid": uid}
        assert r.headers["RateLimit-Remaining"] == str(29 - i)
    r = get(stack, "/api/_limit/me", client(), headers=dict(auth))
    assert r.status_code == 429
    # Without the token the address has its own budget (and gets 401,
    # which is limited too).
    r = get(stack, "/api/_limit/me", client())
    assert r.status_code == 401
    assert r.headers["RateLimit-Remaining"] == "29"
    # A bogus token is anonymous.
    r = get(stack, "/api/_limit/me", client(),
            headers={"Authorization": "Bearer " + "x" * 43})
    assert r.status_code == 401


def wait_redis(stack):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = get(stack, "/api/_limit/read", client())
        if "RateLimit-Remaining" in r.headers:
            return r
        time.sleep(0.1)
    pytest.fail("limits did not come back after Redis restarted")


def test_limits_redis_down_fails_open_then_recovers(stack, app):
    stack.stop_component("redis")
    try:
        ip = client()
        for _ in range(40):     # past the read limit: nobody counts
            r = get(stack, "/api/_limit/read", ip)
            assert r.status_code == 200
            assert "RateLimit-Remaining" not in r.headers
            assert r.headers["RateLimit-Policy"] == \
                '"api";q=1000;w=60, "read";q=30;w=60'
        assert "failing open" in open(stack.path(
            "log", "limitapp-test.log"), errors="replace").read()
    finally:
        stack.start_component("redis")
    r = wait_redis(stack)
    assert r.headers["RateLimit-Remaining"] == "29"


def test_a_body_the_app_refuses_unread_still_gets_its_413(stack, app):
    # Not a limit, but this module can bound an app's body (lighttpd's
    # own bound is the stack's KEEL_BODY_MAX): past it the worker answers
    # without reading the body, and closes as libfcgi does (shuts its
    # side, reads to lighttpd's close), not at once as it does when the
    # input was read whole (serve.c).  Over a Unix socket lighttpd 1.4.69
    # takes an at-once close here too; over TCP unread input would reset
    # the connection under the reply.
    app.start(KEEL_BODY_MAX="1024")
    try:
        for _ in range(20):
            r = post(stack, "/api/_limit/auth/login", client(),
                     data=b"{" + b" " * (512 << 10) + b"}",
                     headers={"Content-Type": "application/json"})
            assert r.status_code == 413, r.text
            assert r.json()["error"] == "payload_too_large"
        r = post(stack, "/api/_limit/auth/login", client(),
                 json={"login": "a", "password": "right"})
        assert r.status_code == 200
    finally:
        app.start()


def test_limits_a_redis_restart_forgets_windows_but_not_failed_logins(
        stack, app):
    # The check writes its windows neither to the AOF nor to replicas
    # (limit_check.lua: a fifth of Redis's time on every request), except
    # the auth limiter's: a restart must not forgive failed logins.
    ip = client()
    acct = "u%s@example.org" % uuid.uuid4().hex[:8]
    for i in range(5):
        r = get(stack, "/api/_limit/read", ip)
        assert r.headers["RateLimit-Remaining"] == str(29 - i)
    for _ in range(2):
        r = post(stack, "/api/_limit/auth/login", ip,
                 json={"login": acct, "password": "wrong"})
        assert r.status_code == 401
    assert '"auth";r=1;' in r.headers["RateLimit"]
    stack.stop_component("redis")
    stack.start_component("redis")
    wait_redis(stack)
    r = get(stack, "/api/_limit/read", ip)
    assert r.headers["RateLimit-Remaining"] == "29"
    r = post(stack, "/api/_limit/auth/login", ip,
             json={"login": acct, "password": "wrong"})
    assert r.status_code == 401
    assert '"auth";r=0;' in r.headers["RateLimit"]
    r = post(stack, "/api/_limit/auth/login", ip,
             json={"login": acct, "password": "right"})
    assert r.status_code == 429


def test_limits_redis_down_fail_closed_per_limiter(stack, app):
    app.start(KEEL_RATELIMIT_FAIL_CLOSED="auth")
    try:
        stack.stop_component("redis")
        try:
            ip = client()
            r = post(stack, "/api/_limit/auth/login", ip,
                     json={"login": "a", "password": "right"})
            assert r.status_code == 503
            assert r.json()["error"] == "unavailable"
            # Reads fail open all the same.
            assert get(stack, "/api/_limit/read", ip).status_code == 200
        finally:
            stack.start_component("redis")
        wait_redis(stack)
        r = post(stack, "/api/_limit/auth/login", client(),
                 json={"login": "a", "password": "right"})
        assert r.status_code == 200
    finally:
        app.start()


def test_limits_untrusted_forwarded_for_ignored(stack, app):
    # From an address that is not a trusted proxy, X-Forwarded-For is
    # the client's own claim: a thousand forged values are one client.
    app.start(TRUSTED_PROXIES="192.0.2.1", KEEL_RATELIMIT_READ="20/60")
    try:
        codes = [get(stack, "/api/_limit/read", client()).status_code
                 for _ in range(25)]
        assert codes.count(200) <= 20 and codes[-1] == 429
    finally:
        app.start()


def test_limits_window_slides(stack, app):
    """A sliding window, not a fixed one: a place frees when the request
    that took it ages, one by one.  Four reads per 4 s: two at t0, two
    at t0 + 2 s; at t0 + 4.5 s the first two have aged and the last two
    have not, so exactly two more are admitted (a fixed window restarted
    at t0 + 4 s would admit four)."""
    app.start(KEEL_RATELIMIT_READ="4/4")
    try:
        ip = client()
        t0 = time.monotonic()
        for _ in range(2):
            assert get(stack, "/api/_limit/read", ip).status_code == 200
        time.sleep(max(0, t0 + 2 - time.monotonic()))
        for _ in range(2):
            assert get(stack, "/api/_limit/read", ip).status_code == 200
        r = get(stack, "/api/_limit/read", ip)
        assert r.status_code == 429
        # The first place frees when t0's reads age: about 2 s away.
        assert 1 <= int(r.headers["RateLimit-Reset"]) <= 3
        time.sleep(max(0, t0 + 4.5 - time.monotonic()))
        assert time.monotonic() < t0 + 5.5, "the box was too slow to tell"
        codes = [get(stack, "/api/_limit/read", ip).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429], codes
    finally:
        app.start()


def test_limits_lowered_limit_counts_what_was_admitted(stack, app):
    """A limit lowered below what a window already holds (a config
    change) refuses until enough of the admitted have aged, and says when
    that is: the fourth oldest of six, for a limit of three."""
    ip = client()
    app.start(KEEL_RATELIMIT_READ="6/6")
    try:
        t0 = time.monotonic()
        for i in range(6):
            if i == 3:
                time.sleep(max(0, t0 + 3 - time.monotonic()))
            assert get(stack, "/api/_limit/read", ip).status_code == 200
        app.start(KEEL_RATELIMIT_READ="3/6")
        r = get(stack, "/api/_limit/read", ip)
        assert r.status_code == 429
        assert r.headers["RateLimit-Remaining"] == "0"
        # The first three age at t0 + 6 s; the fourth, at t0 + 9 s.
        left = t0 + 9 - time.monotonic()
        assert abs(int(r.headers["RateLimit-Reset"]) - left) <= 1.5, (
            r.headers["RateLimit-Reset"], left)
    finally:
        app.start()


def test_limits_a_window_that_aged_whole_is_cut_in_one_check(stack, app):
    """A busy client's window that aged while it was away (200,000
    admitted, all older than the window) is cut in one step of the next
    check, not one call per entry: the check answers well inside the
    worker's Redis timeout (a check that timed out would fail open,
    without the counts) and counts from zero."""
    ip = client()
    key = "keel:rate:read:a:" + ip
    old = int(time.time() * 1000) - 3600 * 1000
    fill = ("for i = 1, tonumber(ARGV[2]) do "
            "redis.call('RPUSH', KEYS[1], ARGV[1] .. ':old' .. i) end "
            "return redis.call('LLEN', KEYS[1])")
    assert redis_cli(stack, "EVAL", fill, "1", key, str(old),
                     "200000") == "200000"
    t0 = time.monotonic()
    r = get(stack, "/api/_limit/read", ip)
    took = time.monotonic() - t0
    assert r.status_code == 200
    assert '"read";r=29;' in r.headers["RateLimit"], r.headers
    assert redis_cli(stack, "LLEN", key) == "1"
    assert took < 0.4, took
