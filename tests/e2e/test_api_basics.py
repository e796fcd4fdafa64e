# SPDX-License-Identifier: ISC
"""test_api_basics.py -- the contract every route shares (API.md
"Conventions", "Operations"): /health and its degraded states, /routes,
JSON 404/405, HEAD, request ids, gzip.

The dependency-fault tests stop a component of the shared session stack and
restart it in a `finally`, then wait (polling /health, never a fixed sleep)
until every worker reports ok again, so later tests see a healthy stack.
The primary-down test is the last one of this module.
"""

import gzip
from concurrent.futures import ThreadPoolExecutor
import json
import os
import re
import time
import uuid

import pytest
import requests

import apicheck
from accounts import PASSWORD, make_user
from helpers import (JSON_CT, assert_error, cache_back, new_car, plate,
                     raw_request, wait_until)
from test_serve import fcgi_get


# ------------------------------------------------------------------ helpers

def health(http):
    r = http.get("/health")
    assert r.headers["Content-Type"] == JSON_CT
    return r.status_code, r.json()


def wait_healthy(http, timeout=60, streak=8):
    """Poll /health until `streak` answers in a row say ok: every worker of
    the health app has reconnected (requests spread over the workers)."""
    deadline = time.monotonic() + timeout
    ok = 0
    last = None
    while time.monotonic() < deadline:
        try:
            code, last = health(http)
        except (requests.RequestException, ValueError) as e:
            code, last = None, repr(e)
        ok = ok + 1 if code == 200 and last["status"] == "ok" else 0
        if ok >= streak:
            return last
        time.sleep(0.05)
    pytest.fail("stack not healthy again within %ss: %r" % (timeout, last))


def warm_workers(http, path, n=24):
    """Concurrent requests, so that every worker of the app serves some
    (and holds its database connections) -- sequential ones may all land
    on the same worker).  Their answers don't matter here."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: http.get(path).status_code, range(n)))


# ------------------------------------------------------------------- health

def test_health_ok_every_check_up(http):
    code, body = health(http)
    assert code == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"postgres", "replica", "redis",
                                   "memcached"}
    for name, check in body["checks"].items():
        assert check["status"] == "up", (name, check)
        assert isinstance(check["ms"], (int, float)) and check["ms"] >= 0


def test_health_replica_lag_present(http):
    _, body = health(http)
    lag = body["checks"]["replica"]["lagMs"]
    assert isinstance(lag, (int, float)) and lag >= 0


def test_health_json_content_type_and_no_store(http):
    r = http.get("/health")
    assert r.headers["Content-Type"] == JSON_CT
    assert r.headers.get("Cache-Control") == "no-store"


def test_health_memcached_down_degraded(http, stack):
    stack.stop_component("memcached")
    try:
        code, body = health(http)
        assert code == 200
        assert body["status"] == "degraded"
        assert body["checks"]["memcached"]["status"] == "down"
        assert body["checks"]["postgres"]["status"] == "up"
    finally:
        stack.start_component("memcached")
        wait_healthy(http)
        cache_back(lambda: http.get("/api/cars").headers.get("X-Cache"))


def test_health_replica_down_degraded(http, stack):
    stack.stop_component("replica")
    try:
        code, body = health(http)
        assert code == 200
        assert body["status"] == "degraded"
        assert body["checks"]["replica"]["status"] == "down"
        assert "lagMs" not in body["checks"]["replica"]
        assert body["checks"]["postgres"]["status"] == "up"
    finally:
        stack.start_component("replica")
        wait_healthy(http)


def test_health_redis_down_degraded(http, stack):
    stack.stop_component("redis")
    try:
        code, body = health(http)
        assert code == 200
        assert body["status"] == "degraded"
        assert body["checks"]["redis"]["status"] == "down"
    finally:
        stack.start_component("redis")
        wait_healthy(http)


def test_health_says_redis_up_at_once_after_its_restart(anon, stack):
    """A health worker's connection that a restarted Redis closed is made
    again at once, as any command's is (lib/redis.c, exchange()): no
    /health after the restart says down.  Anonymous, so no session read
    reconnects before the check's PING; both workers connect first
    (requests at once), so each holds a connection the restart closes."""
    with ThreadPoolExecutor(4) as ex:
        assert set(ex.map(lambda _: health(anon)[1]["checks"]["redis"]
                          ["status"], range(12))) == {"up"}
    stack.stop_component("redis")
    stack.start_component("redis")
    seen = [health(anon)[1]["checks"]["redis"]["status"] for _ in range(6)]
    assert seen == ["up"] * 6, seen


def live(http):
    r = http.get("/health/live")
    assert r.headers["Content-Type"] == JSON_CT
    assert r.headers.get("Cache-Control") == "no-store"
    return r.status_code, r.json()


def test_health_live_every_app_of_the_host_up(http, stack):
    """/health/live, what a load balancer checks: every app's socket of
    this host (scripts/stack's run/), each by name, and nothing else."""
    code, body = live(http)
    assert code == 200, body
    assert body["status"] == "ok"
    socks = {f[:-len(".sock")] for f in os.listdir(stack.path("run"))
             if f.endswith(".sock")}
    assert {"cars", "health", "routes", "stream"} <= socks
    assert body["apps"] == {n: "up" for n in socks}, body


def test_health_live_checks_no_store(http, stack):
    """A store down (shared by every host) is /health's business: the
    host's liveness is still 200."""
    stack.stop_component("redis")
    try:
        code, body = live(http)
        assert code == 200, body
        assert body["status"] == "ok"
    finally:
        stack.start_component("redis")
        wait_healthy(http)


def test_health_replica_up_on_first_probe_after_replica_restart(http, stack):
    """start_component returns once the replica accepts connections; from
    then on every probe must say up (a worker's connection that the restart
    closed must be replaced, not reported as a down replica)."""
    warm_workers(http, "/health")
    stack.stop_component("replica")
    stack.start_component("replica")
    try:
        seen = [health(http)[1]["checks"]["replica"] for _ in range(6)]
        assert all(c["status"] == "up" for c in seen), seen
    finally:
        wait_healthy(http)


def test_health_replica_lag_small_when_caught_up_after_replica_restart(
        http, stack):
    """A replica that has replayed everything the primary wrote lags ~0 ms,
    however long ago the primary's last commit was.  (A commit just before
    the restart gives the restarted replica a last-replayed timestamp; its
    receive position stays behind its replay position until new WAL
    arrives, which is what an idle primary never sends.)"""
    tag = "LG" + uuid.uuid4().hex[:10].upper()
    stack.psql("INSERT INTO cars (license_plate, manufacturer, model, "
               "category, year) VALUES ('%s', 'Lag', 'Probe', 'suv', 2020)"
               % tag)
    t_commit = time.monotonic()
    wait_until(lambda: stack.psql("SELECT count(*) FROM cars WHERE "
                                "license_plate = '%s'" % tag,
                                replica=True) == "1",
             30, "the replica to replay the commit")
    stack.stop_component("replica")
    stack.start_component("replica")
    wait_healthy(http)
    primary_lsn = stack.psql("SELECT pg_current_wal_lsn()")
    wait_until(lambda: stack.psql(
        "SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % primary_lsn,
        replica=True) == "t", 30, "the replica to replay the primary's WAL")
    # Caught up.  Count only the readings taken while the replica's receive
    # position is behind its replay position (no WAL since the restart):
    # its true lag is 0 then, whatever the last commit's age.
    lags = []
    deadline = time.monotonic() + 3.5
    cond = ("SELECT pg_last_wal_receive_lsn() < pg_last_wal_replay_lsn() "
            "AND pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % primary_lsn)
    while time.monotonic() < deadline:
        before = stack.psql(cond, replica=True) == "t"
        check = health(http)[1]["checks"]["replica"]
        if before and check["status"] == "up" and \
                stack.psql(cond, replica=True) == "t":
            lags.append(check["lagMs"])
        if time.monotonic() > t_commit + 2.5 and len(lags) >= 3:
            break
        time.sleep(0.2)
    if not lags:
        pytest.skip("WAL reached the replica right after its restart; "
                    "the idle-primary case did not arise")
    assert all(lag < 1000 for lag in lags), lags


# ------------------------------------------------------------------- routes

def test_routes_lists_every_route(http):
    r = http.get("/routes")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_CT
    got = {(x["method"], x["path"], x["app"]) for x in r.json()["data"]}
    want = {
        ("GET", "/health", "health"),
        ("GET", "/routes", "routes"),
        ("GET", "/api/cars", "cars"),
        ("POST", "/api/cars", "cars"),
        ("GET", "/api/cars/{id:int}", "cars"),
        ("PATCH", "/api/cars/{id:int}", "cars"),
        ("DELETE", "/api/cars/{id:int}", "cars"),
    }
    assert want <= got, want - got


def test_routes_entries_have_method_path_app(http):
    for x in http.get("/routes").json()["data"]:
        assert set(x) >= {"method", "path", "app"}, x
        assert x["method"] in {"GET", "POST", "PUT", "PATCH", "DELETE"}
        assert x["path"].startswith("/")


# ------------------------------------------------------- 404, 405, HEAD, ids

@pytest.mark.parametrize("path", ["/nope", "/api/nothing/here", "/api",
                                  "/healthz"])
def test_unknown_path_json_404(http, path):
    assert_error(http.get(path), 404, "not_found")


def test_cars_prefix_lookalike_404(http):
    # lighttpd's prefix match sends /api/carsx to the cars app too.
    assert_error(http.get("/api/carsx"), 404, "not_found")


def test_cars_subpath_404(http):
    assert_error(http.get("/api/cars/1/extra"), 404, "not_found")


@pytest.mark.parametrize("sep", ["%2F", "%2f", "%5C", "%5c"])
def test_encoded_separator_in_path_400(stack, http, sep):
    # Through lighttpd (which refuses %2F itself, with the JSON page) and
    # straight to the app's socket (which refuses both, whatever server
    # is in front): never the decoded path's resource.
    car = new_car(http)
    assert http.get("/api/cars/%d" % car["id"]).status_code == 200
    assert_error(http.get("/api/cars%s%d" % (sep, car["id"])), 400,
                 "bad_request")
    assert_error(http.get("/api%scars" % sep), 400, "bad_request")
    st, _, body = fcgi_get(os.path.join(stack.dir, "run", "cars.sock"),
                           "/api/cars%s%d" % (sep, car["id"]))
    assert st == 400 and json.loads(body)["error"] == "bad_request"
    assert "%2F" in json.loads(body)["message"]


def test_encoded_slash_never_reaches_the_stream(stack, anon):
    # The stream app is behind mod_proxy, which forwards the path lighttpd
    # decoded: lighttpd's own refusal is its guard.  Without a token, so
    # that a stream that did open (the stream's 401) can't hang the test.
    for sep in ("%2F", "%2f"):
        r = anon.get("/api/notifications%sstream" % sep, timeout=10)
        assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("path,status", [
    ("/api/cars?limit=1", 200),             # an app's answer
    ("/api/nothing/here", 404),             # an app's error
    ("/api/notifications/stream", 401),     # the stream app's
    ("/api/cars/0", 404),                   # ... a 404 of its routes
    ("/app/no-such-file.js", 404),          # the page's block
])
def test_every_answer_says_nosniff(anon, http, path, status):
    """No browser may sniff an answer into a page: JSON with user text
    read as HTML (README "Response headers")."""
    who = anon if path.startswith("/api/notifications") else http
    r = who.get(path, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers.get("X-Content-Type-Options") == "nosniff", r.headers


def test_app_answers_are_never_stored(stack, anon, http):
    """A login's answer holds a bearer token (RFC 6749 §5.1), every other
    app answer is the caller's: none may be kept by a cache on the way."""
    u = make_user(stack, "student")
    r = anon.post("/api/auth/login", json={"login": u["email"],
                                           "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.headers.get("Cache-Control") == "no-store"
    for path in ("/api/auth/me", "/api/cars?limit=1", "/api/nothing"):
        r = http.get(path)
        assert r.headers.get("Cache-Control") == "no-store", (path,
                                                             r.headers)


# Every route that takes query parameters, each with one of its own
# given twice: the lists' filters (the apps' keel_field tables) and
# paging, and the leaderboard's fields (checked by the app itself).
TWICE = [
    ("/api/cars?status=available&status=available", "status"),
    ("/api/cars?limit=5&status=rented&limit=6", "limit"),
    ("/api/cars?manufacturer=A&manufacturer=B", "manufacturer"),
    ("/api/attempts?testId=1&testId=2", "testId"),
    ("/api/attempts?userId=1&userId=1", "userId"),
    ("/api/contracts?status=active&status=cancelled", "status"),
    ("/api/contracts?from=2020-01-01&to=2020-02-01&from=2020-01-02",
     "from"),
    ("/api/tests?subject=Maths&subject=Physics", "subject"),
    ("/api/tests?published=true&published=true", "published"),
    ("/api/question-bank?topic=a&topic=b", "topic"),
    ("/api/question-bank?q=car&difficulty=easy&q=bike", "q"),
    ("/api/flashcards?topic=a&topic=a", "topic"),
    ("/api/flashcards/due?limit=5&limit=6", "limit"),
    ("/api/study-plans?limit=5&limit=6", "limit"),
    ("/api/users?role=admin&role=student", "role"),
    ("/api/notifications?unread=true&unread=false", "unread"),
    ("/api/leaderboard?testId=1&testId=2", "testId"),
    ("/api/leaderboard?period=all&limit=5&period=week", "period"),
    ("/api/leaderboard?offset=0&offset=20", "offset"),
    ("/api/leaderboard/me?testId=1&testId=1", "testId"),
    ("/api/leaderboard/me?period=week&period=week", "period"),
]


@pytest.mark.parametrize("path,name", TWICE)
def test_a_query_parameter_given_twice_is_400_naming_it(http, path, name):
    """Each parameter takes one value: which of two a handler reads is no
    answer to guess, and the repeat would make another cache key."""
    body = assert_error(http.get(path), 400, "validation_failed")
    assert body["fields"] == {name: "is given more than once"}, body


def test_encoded_nul_in_path_400(http):
    assert_error(http.get("/api/cars%00"), 400, "bad_request")


def test_raw_fragment_in_path_404(stack, http):
    # A conforming client never sends its fragment; a raw '#' is then
    # part of the last segment, which no route matches.
    r = raw_request(stack, b"GET /api/cars/1#frag HTTP/1.1\r\n"
                    b"Host: 127.0.0.1\r\nConnection: close\r\n"
                    b"Authorization: " +
                    http.headers["Authorization"].encode() + b"\r\n\r\n")
    assert_error(r, 404, "not_found")


def test_wrong_method_405_with_allow(http):
    r = http.put("/api/cars", json={})
    assert_error(r, 405, "method_not_allowed")
    allow = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allow == {"GET", "HEAD", "POST"}


def test_wrong_method_on_item_405_with_allow(http):
    r = http.post("/api/cars/1", json={})
    assert_error(r, 405, "method_not_allowed")
    allow = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allow == {"GET", "HEAD", "PATCH", "DELETE"}


def test_health_post_405(http):
    r = http.post("/health")
    assert_error(r, 405, "method_not_allowed")
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET",
                                                                  "HEAD"}


def test_head_cars_200_no_body(http):
    get = http.get("/api/cars")
    r = http.head("/api/cars")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Type"] == JSON_CT
    assert r.headers["Content-Length"] == get.headers["Content-Length"]


def test_request_id_header(http):
    a = http.get("/api/cars").headers.get("X-Request-Id")
    b = http.get("/health").headers.get("X-Request-Id")
    c = http.get("/nope").headers.get("X-Request-Id")
    for rid in (a, b, c):
        assert rid is not None and re.fullmatch(r"[0-9a-f]{16}", rid), rid
    assert len({a, b, c}) == 3


# -------------------------------------------------------------------- gzip

@pytest.fixture(scope="module")
def many_cars(stack):
    tag = uuid.uuid4().hex[:8].upper()
    stack.psql("INSERT INTO cars (license_plate, manufacturer, model, "
               "category, year) SELECT 'GZ%s' || g, 'Gzip', 'Big', 'van', "
               "2021 FROM generate_series(1, 30) g" % tag)
    return tag


def raw_get(http, path, headers):
    """GET path; the body as it came over the wire (gzip-encoded or not).
    Streamed, so the session can't check it: checked here, decoded."""
    r = http.get(path, headers=headers, stream=True)
    raw = r.raw.read(decode_content=False)
    apicheck.check_response(r, gzip.decompress(raw) if r.headers.get(
        "Content-Encoding") == "gzip" else raw)
    return r, raw


def test_gzip_large_list_compressed(http, many_cars):
    r, raw = raw_get(http, "/api/cars?limit=20",
                     {"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers.get("Content-Encoding") == "gzip"
    doc = json.loads(gzip.decompress(raw))
    assert len(doc["data"]) == 20
    assert len(gzip.decompress(raw)) > 1024


def test_gzip_skipped_with_x_no_compression(http, many_cars):
    r, raw = raw_get(http, "/api/cars?limit=20",
                     {"Accept-Encoding": "gzip", "x-no-compression": "1"})
    assert r.status_code == 200
    assert "Content-Encoding" not in r.headers
    assert len(json.loads(raw)["data"]) == 20


def test_gzip_small_response_not_compressed(http):
    car = new_car(http)
    r, raw = raw_get(http, "/api/cars/%d" % car["id"],
                     {"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert len(raw) < 1024
    assert "Content-Encoding" not in r.headers
    assert json.loads(raw)["id"] == car["id"]


# --------------------------------------------------- primary down (LAST)

def test_health_primary_down_503(http, stack):
    """Stops the primary, checks the 503, restarts it and waits until the
    stack is whole again (health ok, the replica streaming)."""
    stack.stop_component("primary")
    try:
        code, body = health(http)
        assert code == 503
        assert body["status"] == "down"
        assert body["checks"]["postgres"]["status"] == "down"
        assert body["checks"]["redis"]["status"] == "up"
    finally:
        restart_primary(http, stack)


def test_cars_write_with_primary_down_503_unavailable(http, stack):
    stack.stop_component("primary")
    try:
        r = http.post("/api/cars", json={
            "licensePlate": plate(), "manufacturer": "Down",
            "model": "Primary", "category": "suv", "year": 2020})
        body = assert_error(r, 503, "unavailable")
        assert "fields" not in body
        assert r.headers.get("Retry-After") == "5"
    finally:
        restart_primary(http, stack)


def test_cars_writes_succeed_right_after_primary_restart(http, stack):
    """Every cars worker replaces the connection the restart closed on its
    own: no request fails once the primary is back."""
    warm_workers(http, "/api/cars?limit=1")   # every worker connected
    stack.stop_component("primary")
    restart_primary(http, stack)
    codes = []
    for _ in range(8):
        r = http.post("/api/cars", json={
            "licensePlate": plate(), "manufacturer": "AfterRestart",
            "model": "Primary", "category": "suv", "year": 2020})
        codes.append((r.status_code, r.text[:80]))
    assert all(c == 201 for c, _ in codes), codes


def restart_primary(http, stack):
    """Start the primary again and wait until health is ok and a write on
    it reaches the replica (streaming resumed)."""
    stack.start_component("primary")
    wait_healthy(http)
    tag = "RS" + uuid.uuid4().hex[:10].upper()

    def streamed():
        stack.psql("INSERT INTO cars (license_plate, manufacturer, model, "
                   "category, year) VALUES ('%s', 'Restart', 'Probe', "
                   "'suv', 2020) ON CONFLICT DO NOTHING" % tag)
        return stack.psql("SELECT count(*) FROM cars WHERE license_plate "
                          "= '%s'" % tag, replica=True) == "1"
    wait_until(streamed, 60, "the replica to stream after the restart")
