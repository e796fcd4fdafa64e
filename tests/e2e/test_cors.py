# SPDX-License-Identifier: ISC
"""test_cors.py -- a browser page on another origin calling the API
(KEEL_CORS_ORIGINS, README "Cross-origin requests"): a listed origin gets
its own origin back on every answer, errors included, and a preflight
answered without a session or a limiter; an unlisted one, and a request
without Origin, get no CORS headers; a cached answer never carries one
origin's name to another.  The live stream (keel-stream, behind
mod_proxy) answers the same way.

The tests run their own keel-cars (keel-auth for a 503, keel-stream for
the stream) on the stack's sockets with KEEL_CORS_ORIGINS set, and give
the stack's own back afterwards.
"""

import os
import re
import signal
import uuid

from accounts import make_user, session_for
from helpers import (OwnApp, assert_error, car_body, new_car, uniq,
                     wait_until)
from sse import SSE
from stack import parse_env_file

SITE = "https://exam.example.test"
LOCAL = "http://localhost:5173"
OTHER = "https://evil.example.test"
ORIGINS = SITE + ", " + LOCAL


def vary(r):
    """The answer's Vary lines as sent (a list: one line expected), and
    the names in them, lower case."""
    lines = r.raw.headers.getlist("Vary")
    names = {n.strip().lower() for line in lines for n in line.split(",")}
    return lines, names


def assert_cors(r, origin):
    """r carries the CORS headers of a request from the listed origin."""
    assert r.headers.get("Access-Control-Allow-Origin") == origin, \
        r.headers
    exposed = {n.strip().lower() for n in
               r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
            "ratelimit-policy", "ratelimit", "retry-after", "x-request-id",
            "x-cache", "idempotent-replayed"} <= exposed
    lines, names = vary(r)
    assert len(lines) == 1 and "origin" in names, lines


def assert_no_cors(r):
    assert "Access-Control-Allow-Origin" not in r.headers, r.headers
    assert "Access-Control-Expose-Headers" not in r.headers, r.headers


def gzip_list(http):
    """A car list path whose answer is over 1 KB: gzip-coded."""
    make = uniq("Cors")
    for _ in range(8):
        new_car(http, manufacturer=make)
    return "/api/cars?manufacturer=" + make


def test_cors_listed_origin_gets_it_back(stack, http, anon):
    _, auth = session_for(stack, anon, "staff")
    path = gzip_list(http)
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS):
        for origin in (SITE, LOCAL):
            r = anon.get("/api/cars", headers=dict(auth, Origin=origin))
            assert r.status_code == 200, r.text
            assert_cors(r, origin)
        # Vary keeps Accept-Encoding beside Origin, in one line, on a
        # coded answer lighttpd passed through (mod_deflate adds none).
        r = anon.get(path, headers=dict(
            auth, Origin=SITE, **{"Accept-Encoding": "gzip"}))
        assert r.headers.get("Content-Encoding") == "gzip", r.headers
        assert len(r.json()["data"]) == 8
        lines, names = vary(r)
        assert len(lines) == 1 and names == {"origin", "accept-encoding"}


def test_cors_unlisted_or_no_origin_gets_none(stack, anon):
    _, auth = session_for(stack, anon, "staff")
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS):
        for h in ({"Origin": OTHER}, {"Origin": SITE + "/"},
                  {"Origin": "null"}, {"Origin": SITE.upper()}, {}):
            r = anon.get("/api/cars", headers=dict(auth, **h))
            assert r.status_code == 200, r.text
            assert_no_cors(r)
            # The answer depends on Origin all the same (Fetch §3.2.5).
            lines, names = vary(r)
            assert len(lines) == 1 and "origin" in names, lines


def test_cors_off_by_default_sends_nothing(stack, http):
    r = http.get("/api/cars", headers={"Origin": SITE})
    assert r.status_code == 200, r.text
    assert_no_cors(r)
    assert "origin" not in vary(r)[1]
    r = http.options("/api/cars", headers={
        "Origin": SITE, "Access-Control-Request-Method": "POST"})
    assert_error(r, 405, "method_not_allowed")
    assert_no_cors(r)


def preflight(anon, path, origin, method="PATCH"):
    return anon.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, "
                                          "idempotency-key"})


def test_cors_preflight_needs_no_session_and_counts_nowhere(stack, anon):
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS):
        before = anon.get("/api/cars", headers={"Origin": SITE})
        assert_error(before, 401, "unauthorized")
        for _ in range(3):
            r = preflight(anon, "/api/cars/12345", SITE)
            assert r.status_code == 204, r.text
            assert r.content == b""
            assert r.headers["Access-Control-Allow-Origin"] == SITE
            methods = {m.strip() for m in
                       r.headers["Access-Control-Allow-Methods"].split(",")}
            assert {"GET", "PATCH", "DELETE"} <= methods
            allowed = {h.strip().lower() for h in
                       r.headers["Access-Control-Allow-Headers"].split(",")}
            assert {"authorization", "content-type", "idempotency-key",
                    "x-no-compression"} <= allowed
            assert r.headers["Access-Control-Max-Age"] == "600"
            lines, names = vary(r)
            assert len(lines) == 1 and names == {
                "origin", "access-control-request-method",
                "access-control-request-headers"}, lines
            # No limiter ran: a browser's preflights cost no budget.
            assert "RateLimit-Remaining" not in r.headers
        r = preflight(anon, "/api/cars", LOCAL, method="POST")
        assert r.status_code == 204
        assert r.headers["Access-Control-Allow-Origin"] == LOCAL
        assert {"GET", "POST"} <= {m.strip() for m in r.headers[
            "Access-Control-Allow-Methods"].split(",")}
        after = anon.get("/api/cars", headers={"Origin": SITE})
        assert_error(after, 401, "unauthorized")
        assert_cors(after, SITE)
        assert int(after.headers["RateLimit-Remaining"]) == \
            int(before.headers["RateLimit-Remaining"]) - 1


def test_cors_unlisted_preflight_is_refused_without_cors(stack, anon):
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS):
        r = preflight(anon, "/api/cars/1", OTHER)
        assert_error(r, 405, "method_not_allowed")
        assert_no_cors(r)
        assert "Access-Control-Allow-Methods" not in r.headers
        # An OPTIONS that is no preflight (no request method) neither.
        r = anon.options("/api/cars/1", headers={"Origin": SITE})
        assert_error(r, 405, "method_not_allowed")
        assert "Access-Control-Allow-Methods" not in r.headers
        assert_cors(r, SITE)


def test_cors_on_error_answers(stack, anon):
    _, auth = session_for(stack, anon, "staff")
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS,
                KEEL_BODY_MAX="1024"):
        h = {"Origin": SITE}
        r = anon.get("/api/cars", headers=h)
        assert_error(r, 401, "unauthorized")
        assert_cors(r, SITE)
        r = anon.get("/api/cars/999999999", headers=dict(auth, **h))
        assert_error(r, 404, "not_found")
        assert_cors(r, SITE)
        r = anon.get("/api/cars/1/nowhere", headers=dict(auth, **h))
        assert_error(r, 404, "not_found")
        assert_cors(r, SITE)
        r = anon.post("/api/cars", headers=dict(auth, **h),
                      json=car_body(model="x" * 2000))
        assert_error(r, 413, "payload_too_large")
        assert_cors(r, SITE)


def test_cors_on_429(stack, anon):
    _, auth = session_for(stack, anon, "student")
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS,
                KEEL_RATELIMIT_READ="2/900"):
        got = [anon.get("/api/cars", headers=dict(auth, Origin=SITE))
               for _ in range(3)]
        assert [r.status_code for r in got] == [200, 200, 429]
        assert_error(got[2], 429, "rate_limited")
        assert "Retry-After" in got[2].headers
        for r in got:
            assert_cors(r, SITE)


def test_cors_on_503(stack, anon):
    u = make_user(stack, "student")
    with OwnApp(stack, "auth", KEEL_CORS_ORIGINS=ORIGINS):
        stack.stop_component("redis")
        try:
            r = anon.post("/api/auth/login", headers={"Origin": LOCAL},
                          json={"login": u["email"], "password": "x" * 12})
        finally:
            stack.start_component("redis")
        assert_error(r, 503, "unavailable")
        assert_cors(r, LOCAL)


def test_cors_cached_answer_carries_each_requests_origin(stack, anon):
    _, auth = session_for(stack, anon, "staff")
    path = "/api/cars?manufacturer=cors-" + uuid.uuid4().hex[:12]
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS):
        first = anon.get(path, headers=dict(auth, Origin=SITE))
        assert first.status_code == 200, first.text
        assert first.headers["X-Cache"] == "MISS"
        assert_cors(first, SITE)
        second = anon.get(path, headers=dict(auth, Origin=LOCAL))
        assert second.headers["X-Cache"] == "HIT"
        assert_cors(second, LOCAL)
        other = anon.get(path, headers=dict(auth, Origin=OTHER))
        assert other.headers["X-Cache"] == "HIT"
        assert_no_cors(other)
        none = anon.get(path, headers=auth)
        assert none.headers["X-Cache"] == "HIT"
        assert_no_cors(none)
        assert first.content == second.content == other.content


def test_cors_cached_gzip_answer_keeps_one_vary(stack, http, anon):
    _, auth = session_for(stack, anon, "staff")
    path = gzip_list(http)
    gz = {"Accept-Encoding": "gzip"}
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS):
        for origin, x_cache in ((SITE, "MISS"), (LOCAL, "HIT")):
            r = anon.get(path, headers=dict(auth, Origin=origin, **gz))
            assert r.headers["X-Cache"] == x_cache
            assert r.headers.get("Content-Encoding") == "gzip"
            assert_cors(r, origin)
            lines, names = vary(r)
            assert len(lines) == 1 and names == {"origin",
                                                 "accept-encoding"}
        r = anon.get(path, headers=dict(auth, Origin=OTHER, **gz))
        assert r.headers["X-Cache"] == "HIT"
        assert_no_cors(r)


def test_cors_origins_reach_the_apps_env_file(stack, anon):
    """KEEL_CORS_ORIGINS given to scripts/stack (a developer's frontend
    on localhost) goes into the apps' env file, which a SIGHUP roll
    sources again, as the stack's other settings do."""
    try:
        stack.restart_component("cars", {"KEEL_CORS_ORIGINS": LOCAL})
        env = parse_env_file(stack.path("env"))
        assert env.get("KEEL_CORS_ORIGINS") == LOCAL
        r = anon.get("/api/cars", headers={"Origin": LOCAL})
        assert_error(r, 401, "unauthorized")
        assert_cors(r, LOCAL)
    finally:
        stack.restart_component("cars", {})
    r = anon.get("/api/cars", headers={"Origin": LOCAL})
    assert_no_cors(r)


# ------------------------------------------------------------ the stream

STREAM = "/api/notifications/stream"


class OwnStream(OwnApp):
    """keel-stream on the stack's socket (lighttpd's mod_proxy in front),
    once its Redis connections are up: an anonymous open gets the 401
    the limiter counted."""

    where = "stream"

    def __init__(self, stack, anon, **env):
        super().__init__(stack, "stream", **env)
        self.anon = anon

    def __enter__(self):
        super().__enter__()
        wait_until(lambda: "RateLimit-Remaining" in self.anon.get(
            STREAM).headers, 20, "the stream's limiter")
        return self


def sse_vary(s):
    """The names in an SSE answer's Vary (its headers are one dict)."""
    return {n.strip().lower() for n in s.headers.get("Vary", "").split(",")
            if n.strip()}


def test_cors_stream_listed_origin_on_its_200_and_refusals(stack, anon):
    _, auth = session_for(stack, anon, "student")
    with OwnStream(stack, anon, KEEL_CORS_ORIGINS=ORIGINS):
        for origin in (SITE, LOCAL):
            s = SSE.open(stack, headers=dict(auth, Origin=origin))
            try:
                assert s.status == 200
                assert s.headers["Content-Type"] == "text/event-stream"
                assert s.headers.get("Access-Control-Allow-Origin") == \
                    origin, s.headers
                exposed = {n.strip().lower() for n in s.headers[
                    "Access-Control-Expose-Headers"].split(",")}
                assert {"ratelimit-remaining", "retry-after",
                        "x-request-id"} <= exposed
                assert sse_vary(s) == {"origin"}
                assert s.next_event(0.3) is None and s.retry == 2000
            finally:
                s.close()
        # 401: no credential, a bad token, an unknown ticket; then 405.
        for r in (anon.get(STREAM, headers={"Origin": SITE}),
                  anon.get(STREAM, headers={"Origin": SITE,
                                            "Authorization": "Bearer x"}),
                  anon.get(STREAM + "?ticket=" + "a" * 43,
                           headers={"Origin": SITE})):
            assert_error(r, 401, "unauthorized")
            assert "WWW-Authenticate" in r.headers
            assert_cors(r, SITE)
        r = anon.post(STREAM, headers=dict(auth, Origin=LOCAL))
        assert_error(r, 405, "method_not_allowed")
        assert r.headers["Allow"] == "GET"
        assert_cors(r, LOCAL)


def test_cors_stream_on_400_429_and_503(stack, anon):
    with OwnStream(stack, anon, KEEL_CORS_ORIGINS=ORIGINS,
                   KEEL_RATELIMIT_READ="1/900"):
        h = {"Origin": SITE,
             "X-Forwarded-For": "127.0.0.%d" % (uuid.uuid4().int % 200)}
        got = [anon.get(STREAM, headers=h) for _ in range(2)]
        assert_error(got[1], 429, "rate_limited")
        assert "Retry-After" in got[1].headers
        assert_cors(got[1], SITE)
        # A query libevent can't parse (a parameter without "=").
        r = anon.get(STREAM + "?novalue", headers={"Origin": LOCAL})
        assert_error(r, 400, "bad_request")
        assert_cors(r, LOCAL)
    _, auth = session_for(stack, anon, "student")
    with OwnStream(stack, anon, KEEL_CORS_ORIGINS=ORIGINS,
                   KEEL_STREAM_MAX="1", KEEL_WORKERS="1"):
        s = SSE.open(stack, headers=auth)
        try:
            assert s.status == 200
            r = anon.get(STREAM, headers=dict(auth, Origin=LOCAL),
                         timeout=10)
        finally:
            s.close()
        assert_error(r, 503, "unavailable")
        assert_cors(r, LOCAL)


def test_cors_stream_unlisted_or_no_origin_gets_none(stack, anon):
    _, auth = session_for(stack, anon, "student")
    with OwnStream(stack, anon, KEEL_CORS_ORIGINS=ORIGINS):
        for h in ({"Origin": OTHER}, {"Origin": SITE + "/"},
                  {"Origin": "null"}, {}):
            s = SSE.open(stack, headers=dict(auth, **h))
            try:
                assert s.status == 200
                assert "Access-Control-Allow-Origin" not in s.headers
                assert "Access-Control-Expose-Headers" not in s.headers
                # Dependent on Origin all the same (Fetch §3.2.5).
                assert sse_vary(s) == {"origin"}
            finally:
                s.close()
            r = anon.get(STREAM, headers=h)
            assert_error(r, 401, "unauthorized")
            assert_no_cors(r)
            lines, names = vary(r)
            assert len(lines) == 1 and names == {"origin"}, lines


def test_cors_stream_any_origin(stack, anon):
    with OwnStream(stack, anon, KEEL_CORS_ORIGINS="*"):
        r = anon.get(STREAM, headers={"Origin": OTHER})
        assert_error(r, 401, "unauthorized")
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in r.headers
        assert_no_cors(anon.get(STREAM))


def test_cors_stream_off_by_default_sends_nothing(stack, anon):
    """The stack's own stream (no KEEL_CORS_ORIGINS): no CORS header, no
    Vary, and a preflight is any OPTIONS's 405."""
    r = anon.get(STREAM, headers={"Origin": SITE})
    assert_error(r, 401, "unauthorized")
    assert_no_cors(r)
    assert "Vary" not in r.headers
    r = preflight(anon, STREAM, SITE, method="GET")
    assert_error(r, 405, "method_not_allowed")
    assert_no_cors(r)


def test_cors_stream_preflight_needs_no_session_and_counts_nowhere(
        stack, anon):
    with OwnStream(stack, anon, KEEL_CORS_ORIGINS=ORIGINS):
        before = anon.get(STREAM, headers={"Origin": SITE})
        assert_error(before, 401, "unauthorized")
        for origin in (SITE, LOCAL, SITE):
            r = preflight(anon, STREAM, origin, method="GET")
            assert r.status_code == 204, r.text
            assert r.content == b""
            assert r.headers["Access-Control-Allow-Origin"] == origin
            assert r.headers["Access-Control-Allow-Methods"] == "GET"
            allowed = {h.strip().lower() for h in
                       r.headers["Access-Control-Allow-Headers"].split(",")}
            assert {"authorization", "last-event-id"} <= allowed
            assert r.headers["Access-Control-Max-Age"] == "600"
            lines, names = vary(r)
            assert len(lines) == 1 and names == {
                "origin", "access-control-request-method",
                "access-control-request-headers"}, lines
            assert "RateLimit-Remaining" not in r.headers
            assert "X-Request-Id" in r.headers
        after = anon.get(STREAM, headers={"Origin": SITE})
        assert_error(after, 401, "unauthorized")
        assert int(after.headers["RateLimit-Remaining"]) == \
            int(before.headers["RateLimit-Remaining"]) - 1
        # Logged and counted as requests, as the apps' are.
        assert re.search(r"method=OPTIONS path=%s status=204" % STREAM,
                         stack.log("stream-own"))


def test_cors_stream_other_options_keep_their_405(stack, anon):
    with OwnStream(stack, anon, KEEL_CORS_ORIGINS=ORIGINS):
        r = preflight(anon, STREAM, OTHER, method="GET")
        assert_error(r, 405, "method_not_allowed")
        assert r.headers["Allow"] == "GET"
        assert_no_cors(r)
        assert "Access-Control-Allow-Methods" not in r.headers
        assert "RateLimit-Remaining" in r.headers
        # No Access-Control-Request-Method: no preflight.
        r = anon.options(STREAM, headers={"Origin": SITE})
        assert_error(r, 405, "method_not_allowed")
        assert "Access-Control-Allow-Methods" not in r.headers
        assert_cors(r, SITE)


def test_cors_stream_reads_the_setting_again_on_sighup(stack, anon):
    """The stream's KEEL_CORS_ORIGINS comes from the apps' env file, as
    every app's does (scripts/stack), and a SIGHUP reads it again."""
    try:
        stack.restart_component("stream", {"KEEL_CORS_ORIGINS": LOCAL})
        r = anon.get(STREAM, headers={"Origin": LOCAL})
        assert_error(r, 401, "unauthorized")
        assert_cors(r, LOCAL)
        env_file = stack.path("env")
        with open(env_file) as f:
            text = f.read()
        with open(env_file, "w") as f:
            f.write(re.sub(r"(?m)^export KEEL_CORS_ORIGINS=.*$",
                           "export KEEL_CORS_ORIGINS=" + SITE, text))
        os.kill(stack.app_pid("stream"), signal.SIGHUP)

        def site_only():
            a = anon.get(STREAM, headers={"Origin": SITE})
            b = anon.get(STREAM, headers={"Origin": LOCAL})
            return (a.headers.get("Access-Control-Allow-Origin") == SITE
                    and "Access-Control-Allow-Origin" not in b.headers)
        wait_until(site_only, 30, "the stream's new origins", step=0.2)
    finally:
        stack.restart_component("stream", {})
    assert_no_cors(anon.get(STREAM, headers={"Origin": LOCAL}))
