# SPDX-License-Identifier: ISC
"""test_stream.py -- GET /api/notifications/stream, Server-Sent Events
(issue 11): the stream app on its event loop, behind lighttpd's
mod_proxy.

Notifications are made here the way keel-drain-notifications makes them
(the contract in stream/stream.c and cron/drain-notifications.c): the
user's row locked, prev = the user's newest id, the row inserted and
committed, then its message published on keel:notify:<uid>.
test_notifications.py and test_exam_flow.py drive the drainer itself.
"""

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from accounts import bearer, login, make_user
from helpers import assert_error, raw_request, redis_cli, wait_until
from sse import SSE
from stack import children
from test_metrics import scrape, value

ITEM_SQL = (
    "json_build_object('id', n.id, 'kind', n.kind, 'title', n.title, "
    "'body', n.body, 'data', n.data, 'readAt', to_char(n.read_at AT TIME "
    "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'createdAt', "
    "to_char(n.created_at AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text")


def insert(stack, uid, title="note"):
    """The row, as the drainer writes it; (id, prev, item JSON)."""
    title = title.replace("'", "''")
    out = stack.psql(
        "WITH u AS (SELECT id FROM users WHERE id = %d FOR NO KEY UPDATE), "
        "p AS (SELECT coalesce(max(id), 0) AS prev FROM notifications "
        "WHERE user_id = %d), "
        "n AS (INSERT INTO notifications (user_id, kind, title, body) "
        "SELECT id, 'test', '%s', 'body of %s' FROM u RETURNING *) "
        "SELECT n.id, p.prev, %s FROM n, p" % (uid, uid, title, title,
                                                ITEM_SQL))
    nid, prev, item = out.split("|", 2)
    return int(nid), int(prev), item


def publish(stack, uid, nid, prev, item):
    msg = json.dumps({"userId": uid, "prev": prev,
                      "notification": json.loads(item)})
    return redis_cli(stack, "PUBLISH", "keel:notify:%d" % uid, msg)


def notify(stack, uid, title="note"):
    """A notification for uid, committed then published; its id."""
    nid, prev, item = insert(stack, uid, title)
    publish(stack, uid, nid, prev, item)
    return nid


@pytest.fixture
def user(stack, anon):
    u = make_user(stack, "student")
    u["token"] = login(anon, u["email"])
    u["h"] = bearer(u["token"])
    return u


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def ticket_for(stack, u, ttl=60):
    """A stream ticket of u's session (u["token"]) as POST
    /api/notifications/stream-ticket stores it: "<uid>:<session id>"."""
    t = secrets.token_urlsafe(32)
    redis_cli(stack, "SET", "keel:sse:ticket:" + sha(t),
              "%d:%s" % (u["id"], sha(u["token"])), "EX", ttl)
    return t


def ids(events):
    return [int(e["id"]) for e in events]


def stream_log(stack):
    return stack.log("stream")


# ------------------------------------------------------------------ basics

def test_stream_is_an_event_stream_with_a_retry_hint(stack, user):
    s = SSE.open(stack, headers=dict(user["h"], **{
        "Accept-Encoding": "gzip"}))
    try:
        assert s.status == 200
        assert s.headers["Content-Type"] == "text/event-stream"
        assert "Content-Encoding" not in s.headers
        assert s.next_event(0.5) is None and not s.ended
        assert s.retry == 2000
    finally:
        s.close()


def test_a_live_notification_arrives_with_id_event_and_data(stack, user):
    s = SSE.open(stack, headers=user["h"])
    try:
        assert s.status == 200
        s.next_event(0.3)
        nid = notify(stack, user["id"], "live one")
        ev = s.next_event(3)
        assert ev is not None, "no event"
        assert ev["event"] == "notification"
        assert int(ev["id"]) == nid
        d = json.loads(ev["data"])
        assert d["id"] == nid and d["title"] == "live one"
        assert d["readAt"] is None and d["createdAt"].endswith("Z")
    finally:
        s.close()


def test_heartbeat_comments_keep_an_idle_stream(stack, user):
    s = SSE.open(stack, headers=user["h"])
    try:
        assert s.next_event(4.5) is None and not s.ended
        assert ": hb" in s.comments
    finally:
        s.close()


@pytest.mark.parametrize("role", ["admin", "staff", "customer", "student"])
def test_every_role_opens_its_own_stream(stack, anon, role):
    """The stream's row of the route x role table (test_roles.py reads
    whole bodies, which a stream never ends): any user, their own
    notifications only."""
    u = make_user(stack, role)
    other = make_user(stack, role)
    s = SSE.open(stack, headers=bearer(login(anon, u["email"])))
    try:
        assert s.status == 200
        notify(stack, other["id"], "someone else's")
        mine = notify(stack, u["id"], "mine")
        assert ids(s.events(2, timeout=2)) == [mine]
    finally:
        s.close()


def test_anonymous_and_bad_tokens_get_401(stack, anon):
    s = SSE.open(stack)
    assert s.status == 401 and s.json()["error"] == "unauthorized"
    # RFC 6750 §3, as every other route's 401.
    assert s.headers.get("Www-Authenticate") == 'Bearer realm="keel"'
    s = SSE.open(stack, headers=bearer("x" * 43))
    assert s.status == 401
    assert s.headers.get("Www-Authenticate") == 'Bearer realm="keel"'
    s = SSE.open(stack, headers=bearer("not a token"))
    assert s.status == 401


def left(r, limiter):
    """What the RateLimit field says is left of limiter's window."""
    m = re.search(r'"%s";r=(\d+)' % limiter, r.headers["RateLimit"])
    assert m, r.headers["RateLimit"]
    return int(m.group(1))


def test_its_401_and_405_count_in_the_clients_windows(stack, anon, user):
    """API.md: every /api response carries RateLimit-Limit, -Remaining
    and -Reset.  The stream's 401 (no credential, or one Redis doesn't
    know) and 405 name no user: as an app's do, they count in the
    client's windows (api, and read for a GET, write for another
    method), the same keys, so an app's 401 next finds one place fewer."""
    answers = [
        anon.get("/api/notifications/stream"),
        anon.get("/api/notifications/stream", headers=bearer("x" * 43)),
        anon.get("/api/notifications/stream?ticket=" + "y" * 43),
        anon.post("/api/notifications/stream", headers=user["h"]),
    ]
    for r, status in zip(answers, (401, 401, 401, 405)):
        assert r.status_code == status, r.text
        for h in ("Limit", "Remaining", "Reset"):
            assert int(r.headers["RateLimit-" + h]) >= 0, (status, h)
    assert [left(r, "api") for r in answers[1:]] == [
        left(r, "api") - 1 for r in answers[:-1]]
    assert "write" in answers[-1].headers["RateLimit-Policy"]
    assert left(answers[2], "read") == left(answers[0], "read") - 2
    app = anon.get("/api/notifications")
    assert app.status_code == 401
    assert left(app, "api") == left(answers[-1], "api") - 1
    assert left(app, "read") == left(answers[2], "read") - 1


def test_a_full_window_refuses_its_401_with_429(stack, own):
    o = own(KEEL_RATELIMIT_READ="2/900")
    h = {"X-Forwarded-For": "127.0.0.%d" % secrets.randbelow(200)}
    got = []
    for _ in range(3):
        r = o.open(h)
        r.close()
        got.append(r.status)
    assert got == [401, 401, 429]
    assert r.json()["error"] == "rate_limited"
    assert r.headers["Ratelimit-Remaining"] == "0"
    assert int(r.headers["Retry-After"]) > 0


@pytest.mark.parametrize("method,body", [
    ("POST", None), ("POST", b"{}"), ("PUT", b"{}"), ("DELETE", None),
    ("OPTIONS", None), ("PATCH", b"{}"), ("TRACE", None)])
def test_other_methods_get_405(stack, user, anon, method, body):
    """Every other method, with a body or none, gets the API's 405 with
    Allow; libevent's own answers (501 to a method outside its default
    set, 413 to any body) were HTML pages."""
    r = anon.request(method, "/api/notifications/stream",
                     headers=dict(user["h"], **{
                         "Content-Type": "application/json"}), data=body)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "GET"


def test_connect_gets_the_apis_405_with_allow(stack, user):
    """CONNECT never reaches the stream app: lighttpd's mod_proxy answers
    it 405 itself (it tunnels CONNECT only with "connect-method"), its
    JSON error page, with the Allow a 405 must carry (scripts/stack), as
    a FastCGI route's 405 to CONNECT has."""
    req = ("CONNECT /api/notifications/stream HTTP/1.1\r\n"
           "Host: localhost\r\nAuthorization: %s\r\n"
           "Connection: close\r\n\r\n" % user["h"]["Authorization"])
    r = raw_request(stack, req.encode())
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "GET"
    r = raw_request(stack, req.replace("/notifications/stream",
                                       "/cars").encode())
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]


ACCESS = re.compile(
    r"^stream\[\d+\] info req=([0-9a-f]{16}) access "
    r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z method=(\S+) "
    r"path=(\S+) status=(\d+) ms=\d+\.\d\d$", re.M)


def test_every_answer_has_an_id_an_access_line_and_a_count(stack, http,
                                                           user):
    """As every app's requests (README "Request ids", "Metrics"): the
    open's 200 and each refusal carry X-Request-Id (keel's own: a client
    can't choose it), name it on their access line, and count in
    keel_http_requests_total by the route's pattern."""
    route = "/api/notifications/stream"

    def count(samples, method, code):
        return value(samples, "keel_http_requests_total", app="stream",
                     route=route, method=method, code=code)

    before = scrape(http)
    ok = SSE.open(stack, headers=dict(user["h"], **{"X-Request-Id": "m-1"}),
                  query="?x=" + "1")
    ok.close()
    refused = SSE.open(stack, headers={"X-Request-Id": "m-2"})
    post = http.post(route, headers=user["h"])
    assert (ok.status, refused.status, post.status_code) == (200, 401, 405)
    got = {ok.headers["X-Request-Id"]: ("GET", "200"),
           refused.headers["X-Request-Id"]: ("GET", "401"),
           post.headers["X-Request-Id"]: ("POST", "405")}
    assert len(got) == 3
    for rid in got:
        assert re.fullmatch(r"[0-9a-f]{16}", rid), rid
    wait_until(lambda: all(r in stream_log(stack) for r in got), 5,
               "the three access lines")
    lines = {m.group(1): m.groups()[1:]
             for m in ACCESS.finditer(stream_log(stack))}
    for rid, (method, code) in got.items():
        assert lines[rid] == (method, route, code)
    after = scrape(http)
    for method, code in got.values():
        assert count(after, method, code) - count(before, method, code) \
            == 1, (method, code)


# ------------------------------------------------------------------ replay

def test_last_event_id_replays_in_order_then_live(stack, user):
    first = notify(stack, user["id"], "a")
    missed = [notify(stack, user["id"], t) for t in ("b", "c", "d")]
    s = SSE.open(stack, headers=user["h"], last_id=first)
    try:
        got = s.events(3, timeout=3)
        assert ids(got) == missed
        live = notify(stack, user["id"], "e")
        assert ids(s.events(1, timeout=3)) == [live]
        assert s.next_event(0.5) is None    # no duplicates
    finally:
        s.close()


def test_replay_pages_past_one_query(stack, user):
    base = notify(stack, user["id"], "base")
    for i in range(230):
        insert(stack, user["id"], "bulk")
    want = [int(x) for x in stack.psql(
        "SELECT id FROM notifications WHERE user_id = %d AND id > %d "
        "ORDER BY id" % (user["id"], base)).split()]
    assert len(want) == 230
    s = SSE.open(stack, headers=user["h"], last_id=base)
    try:
        assert ids(s.events(230, timeout=10)) == want
        assert s.next_event(0.3) is None
    finally:
        s.close()


def test_without_last_event_id_only_new_events_come(stack, user):
    notify(stack, user["id"], "old")
    s = SSE.open(stack, headers=user["h"])
    try:
        assert s.next_event(0.5) is None
        nid = notify(stack, user["id"], "new")
        assert ids(s.events(1, timeout=3)) == [nid]
    finally:
        s.close()


@pytest.mark.parametrize("bad", ["abc", "-1", "1 OR 1=1", "9" * 30, ""])
def test_a_forged_last_event_id_is_ignored(stack, user, bad):
    other = make_user(stack, "student")
    notify(stack, other["id"], "not yours")
    s = SSE.open(stack, headers=dict(user["h"], **{"Last-Event-ID": bad}))
    try:
        assert s.status == 200
        assert s.next_event(0.7) is None     # nothing replayed
    finally:
        s.close()


def test_last_event_id_zero_never_replays_another_users(stack, user):
    other = make_user(stack, "student")
    notify(stack, other["id"], "not yours")
    mine = notify(stack, user["id"], "mine")
    s = SSE.open(stack, headers=user["h"], last_id=0)
    try:
        got = s.events(5, timeout=1.5)
        assert ids(got) == [int(x) for x in stack.psql(
            "SELECT id FROM notifications WHERE user_id = %d ORDER BY id"
            % user["id"]).split()]
        assert mine in ids(got)
    finally:
        s.close()


def test_a_gap_in_the_chain_is_filled_from_postgresql(stack, user):
    s = SSE.open(stack, headers=user["h"])
    try:
        s.next_event(0.3)
        a = insert(stack, user["id"], "first, published late")
        b = insert(stack, user["id"], "second, published first")
        publish(stack, user["id"], *b)
        got = s.events(2, timeout=3)
        publish(stack, user["id"], *a)
        assert ids(got) == [a[0], b[0]]
        assert s.next_event(0.5) is None
    finally:
        s.close()


# ----------------------------------------------------------------- tickets

def test_a_ticket_opens_a_stream_once(stack, user):
    t = ticket_for(stack, user)
    s = SSE.open(stack, query="?ticket=" + t)
    try:
        assert s.status == 200
        nid = notify(stack, user["id"], "by ticket")
        assert ids(s.events(1, timeout=3)) == [nid]
    finally:
        s.close()
    again = SSE.open(stack, query="?ticket=" + t)
    assert again.status == 401


def test_a_ticket_never_reaches_a_log(stack, user):
    t = ticket_for(stack, user)
    s = SSE.open(stack, query="?ticket=" + t)
    try:
        assert s.status == 200
    finally:
        s.close()
    wait_until(lambda: "/api/notifications/stream" in stack.log("access"),
               timeout=3)
    for name in ("access", "stream", "lighttpd-error"):
        assert t not in stack.log(name), name


def test_an_expired_ticket_gets_401(stack, user):
    t = secrets.token_urlsafe(32)
    key = "keel:sse:ticket:" + hashlib.sha256(t.encode()).hexdigest()
    redis_cli(stack, "SET", key, user["id"], "PX", 50)
    time.sleep(0.2)
    s = SSE.open(stack, query="?ticket=" + t)
    assert s.status == 401


def test_a_ticket_is_bound_to_its_user(stack, anon, user):
    other = make_user(stack, "student")
    other["token"] = login(anon, other["email"])
    t = ticket_for(stack, other)
    s = SSE.open(stack, headers=user["h"], query="?ticket=" + t)
    assert s.status == 401
    # Unused: a mismatch burns the ticket too.
    assert SSE.open(stack, query="?ticket=" + t).status == 401


def test_a_ticket_with_lastEventId_replays(stack, user):
    first = notify(stack, user["id"], "a")
    second = notify(stack, user["id"], "b")
    t = ticket_for(stack, user)
    s = SSE.open(stack, query="?ticket=%s&lastEventId=%d" % (t, first))
    try:
        assert ids(s.events(1, timeout=3)) == [second]
    finally:
        s.close()


# -------------------------------------------------------------------- caps

def test_the_sixth_stream_of_a_user_gets_429(stack, user):
    open_ = [SSE.open(stack, headers=user["h"]) for _ in range(5)]
    try:
        assert [s.status for s in open_] == [200] * 5
        sixth = SSE.open(stack, headers=user["h"])
        assert sixth.status == 429
        assert sixth.json()["error"] == "rate_limited"
        assert int(sixth.headers["Retry-After"]) > 0
        open_.pop().close()
        # The closed stream's place is given back at once.
        wait_until(lambda: SSE.open(stack, headers=user["h"]).status == 200,
                   timeout=3)
    finally:
        for s in open_:
            s.close()


def test_a_closed_stream_is_freed_at_once(stack, user):
    key = "keel:sse:open:%d" % user["id"]
    s = SSE.open(stack, headers=user["h"])
    assert redis_cli(stack, "ZCARD", key) == "1"
    s.close()
    wait_until(lambda: redis_cli(stack, "ZCARD", key) == "0", timeout=2)
    wait_until(lambda: "user %d," % user["id"] in stream_log(stack)
               and "client left" in stream_log(stack), timeout=2)


@pytest.fixture
def default_heartbeat(stack):
    """The stream app with KEEL_STREAM_HEARTBEAT at its default (15 s,
    where a close noticed only by a heartbeat shows), then the suite's
    again.  lighttpd keeps its read timeout (3 of the suite's), which
    the test's streams never reach."""
    stack.restart_component("stream", {"KEEL_STREAM_HEARTBEAT": "15"})
    yield
    stack.restart_component("stream", {})


def killed(s):
    """Closes s as a client that was killed: RST (SO_LINGER 0), no FIN."""
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    s.close()


@pytest.mark.parametrize("close", ["closed", "killed"])
def test_streams_closed_by_their_client_give_their_places_back_at_once(
        stack, http, user, default_heartbeat, close):
    """Five page reloads: the user's five streams closed by the client
    (a FIN, which lighttpd can't tell from a half-close, or a reset),
    and a sixth opens with 200 well within one heartbeat, each close in
    the log and the closes' count."""
    key = "keel:sse:open:%d" % user["id"]
    shut = SSE.close if close == "closed" else killed

    def closes():
        return value(scrape(http), "keel_stream_closes_total",
                     app="stream", reason="client left")
    open_ = [SSE.open(stack, headers=user["h"]) for _ in range(5)]
    try:
        assert [s.status for s in open_] == [200] * 5
        before = closes()
        for s in open_:
            s.next_event(0.1)            # the retry hint; the stream is up
        t0 = time.monotonic()
        for s in open_:
            shut(s)
        sixth = None
        while time.monotonic() - t0 < 2:
            sixth = SSE.open(stack, headers=user["h"])
            shut(sixth)
            if sixth.status == 200:
                break
            time.sleep(0.1)
        assert sixth.status == 200, "still %d after %.1f s" % (
            sixth.status, time.monotonic() - t0)
        wait_until(lambda: redis_cli(stack, "ZCARD", key) == "0", timeout=2,
                   what="every lease given back")
        wait_until(lambda: closes() >= before + 6, timeout=2,
                   what="the closes counted")
        assert stream_log(stack).count("user %d," % user["id"]) >= 6
    finally:
        for s in open_:
            s.close()


# ----------------------------------------------- a stream process of our own

class OwnStream:
    """keel-stream on a socket of its own, with settings of its own (a
    low stream maximum, a PostgreSQL that is not there); stopped by pid."""

    def __init__(self, stack, tmp_path, **env):
        self.sock = str(tmp_path / "stream.sock")
        e = dict(os.environ)
        e.update(stack.env)
        e.update({"KEEL_WORKERS": "1", "KEEL_STREAM_HEARTBEAT": "1"})
        e.update(env)
        self.log = open(tmp_path / "stream.log", "w+")
        self.proc = subprocess.Popen(
            [os.path.join(stack.build_dir, "stream", "keel-stream"),
             "--socket", self.sock], env=e, stdout=self.log,
            stderr=subprocess.STDOUT)
        wait_until(lambda: os.path.exists(self.sock), timeout=10)
        wait_until(lambda: "subscribed" in self.text(), timeout=10)

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def open(self, headers, **kw):
        return SSE.open_unix(self.sock, headers=headers, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.log.close()


@pytest.fixture
def own(stack, tmp_path, request):
    made = []

    def start(**env):
        o = OwnStream(stack, tmp_path, **env)
        made.append(o)
        return o
    yield start
    for o in made:
        o.stop()


def test_past_the_process_maximum_503_with_retry_after(stack, own, user):
    o = own(KEEL_STREAM_MAX="2")
    a, b = o.open(user["h"]), o.open(user["h"])
    try:
        assert (a.status, b.status) == (200, 200)
        c = o.open(user["h"])
        assert c.status == 503 and c.json()["error"] == "unavailable"
        assert int(c.headers["Retry-After"]) > 0
        # At the cap a wrong method is refused before it costs a stream
        # object and a limiter round trip: the 503, not a counted 405.
        p = o.open(user["h"], method="POST")
        assert p.status == 503 and p.json()["error"] == "unavailable"
        a.close()
        wait_until(lambda: o.open(user["h"]).status == 200, timeout=3)
        wait_until(lambda: o.open(user["h"], method="POST").status == 405,
                   timeout=3)
        assert o.proc.poll() is None
    finally:
        a.close()
        b.close()


def test_opening_a_stream_counts_in_the_users_read_window(stack, own,
                                                         user):
    """An /api route like any other (API.md: the global limiter and the
    read limiter apply to every GET): each open takes a place in the
    user's windows, the same keys the apps use, and past the limit a
    stream is refused before any replay."""
    o = own(KEEL_RATELIMIT_READ="3/900")
    key = "keel:rate:read:u:%d" % user["id"]
    left = []
    for _ in range(3):
        s = o.open(user["h"])
        assert s.status == 200
        # (SSE's headers are keyed in title case.)
        assert s.headers["Ratelimit-Policy"].count('"read";q=3;w=900') == 1
        left.append(int(s.headers["Ratelimit-Remaining"]))
        s.close()
    assert left == [2, 1, 0]
    assert redis_cli(stack, "LLEN", key) == "3"
    r = o.open(user["h"])
    assert r.status == 429
    assert r.json()["error"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 900
    assert r.json()["retryAfter"] == int(r.headers["Retry-After"])
    assert r.headers["Ratelimit-Remaining"] == "0"
    # The refused open took no place in the user's streams.
    assert redis_cli(stack, "ZCARD", "keel:sse:open:%d" % user["id"]) == "0"
    assert o.proc.poll() is None


def test_postgresql_down_during_a_replay_says_so_and_closes(
        stack, own, user):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]        # nothing listens there
    url = stack.env["DATABASE_URL"].rsplit("@", 1)
    o = own(DATABASE_URL="%s@127.0.0.1:%d/keel" % (url[0], dead),
            KEEL_DB_CONNECT_TIMEOUT="1")
    s = o.open(user["h"], query="?lastEventId=0")
    try:
        assert s.status == 200
        ev = s.next_event(5)
        assert ev is not None and ev["event"] == "error"
        assert json.loads(ev["data"])["error"] == "unavailable"
        assert s.next_event(2) is None and s.ended
    finally:
        s.close()


def redis_failures(o):
    """The own stream's failed connects of its command connection."""
    return sum(1 for line in o.text().splitlines()
               if "redis (commands): " in line
               and "connected" not in line and "connection lost" not in line)


def test_an_open_after_redis_is_back_finds_it_at_once(stack, own, user):
    """Redis down long enough for the reconnect's backoff to reach its
    most (5 s apart), opens refused 503 meanwhile; Redis back, and an
    open gets its stream within a second, not when the backoff runs
    out.  One worker of our own, so the backoff is the one measured."""
    o = own()
    try:
        stack.stop_component("redis")
        # 250, 500, 1000, 2000, 4000 ms after each failure: after the
        # fifth the next try is 5 s away.
        wait_until(lambda: redis_failures(o) >= 5, timeout=20,
                   what="the backoff at its most")
        r = o.open(user["h"])
        assert r.status == 503 and r.json()["error"] == "unavailable"
        assert int(r.headers["Retry-After"]) > 0
    finally:
        stack.start_component("redis")
    t0 = time.monotonic()
    status = None
    while time.monotonic() - t0 < 6:
        s = o.open(user["h"])
        s.close()
        status = s.status
        if status == 200:
            break
        time.sleep(0.1)
    took = time.monotonic() - t0
    assert status == 200 and took < 1.0, "%s after %.1f s" % (status, took)
    assert o.proc.poll() is None


class FakeSentinels:
    """Sentinels on loopback, stopped by close(): `silent` of them
    accept and read but never answer (a partition that drops their
    packets, as the stream's 250 ms wait per sentinel sees it), then one
    that names master_port as the master, or, once `refuse` is set,
    hangs up at once.  `asked` counts the connections the first silent
    one took: the lookups made."""

    def __init__(self, master_port, silent=2):
        self.master_port = master_port
        self.refuse = False
        self.asked = 0
        self.done = False
        self.lock = threading.Lock()
        self.socks = []
        for i in range(silent + 1):
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.bind(("127.0.0.1", 0))
            ls.listen(64)
            ls.settimeout(0.2)
            self.socks.append(ls)
            threading.Thread(target=self._serve, args=(ls, i < silent,
                             i == 0), daemon=True).start()

    def env(self):
        return {"REDIS_SENTINELS": ",".join(
            "127.0.0.1:%d" % ls.getsockname()[1] for ls in self.socks),
            "REDIS_SENTINEL_MASTER": "keel"}

    def _serve(self, ls, silent, count):
        while not self.done:
            try:
                c, _ = ls.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            if count:
                with self.lock:
                    self.asked += 1
            threading.Thread(target=self._talk, args=(c, silent),
                             daemon=True).start()

    def _talk(self, c, silent):
        port = str(self.master_port)
        c.settimeout(0.5)
        with c:
            while not self.done and not (self.refuse and not silent):
                try:
                    b = c.recv(4096)
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:
                    return
                if not b:
                    return
                if not silent:
                    c.sendall(b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n"
                              % (len(port), port.encode()))

    def close(self):
        self.done = True
        for ls in self.socks:
            ls.close()


def test_opens_while_the_sentinels_are_silent_do_not_stall_the_loop(
        stack, own, user):
    """Through sentinels, with Redis down and the sentinels silent (two
    that never answer, the one that did hanging up): opens, one after
    another for 5 s, are refused 503 at once, and the sentinels are not
    asked for them -- their lookup blocks the whole loop, every stream's
    heartbeat and timer waiting, 500 ms here each time.  Only the
    connections' backoff asks them, at most every 5 s by then (two
    connections: two lookups in the 5 s).  Then the sentinels answer,
    Redis is back and an open gets its stream once the backoff asks."""
    fake = FakeSentinels(stack.ports["redis"])
    try:
        o = own(**fake.env())
        fake.refuse = True
        stack.stop_component("redis")
        try:
            # Each connection's backoff at its most (5 s).
            wait_until(lambda: redis_failures(o) >= 5, timeout=30,
                       what="the backoff at its most")
            asked0, waited, n = fake.asked, 0.0, 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5:
                t = time.monotonic()
                r = o.open(user["h"])
                r.close()
                waited += time.monotonic() - t
                n += 1
                assert r.status == 503, r.status
                time.sleep(0.01)
            asked = fake.asked - asked0
        finally:
            fake.refuse = False
            stack.start_component("redis")
        assert asked <= 2, "%d lookups for %d opens" % (asked, n)
        # The backoff's two lookups may hold some opens, 1 s in all.
        assert waited < 1.5, "%d opens waited %.1f s" % (n, waited)

        def gets_its_stream():
            s = o.open(user["h"])
            s.close()
            return s.status == 200
        wait_until(gets_its_stream, timeout=15, what="a stream again",
                   step=0.2)
        assert o.proc.poll() is None
    finally:
        fake.close()


def test_lookups_of_silent_sentinels_never_stall_the_loop(stack, own, user):
    """Through sentinels, with Redis down and the sentinels silent (two
    that never answer, the one that did hanging up), the connections'
    backoff asks them again and again (after 250 ms, 500 ms, 1 s, ...),
    each lookup waiting up to 250 ms a sentinel.  It waits on the loop,
    not holding it: a stream opened before keeps its heartbeat every
    second, and opens are answered (503) at once; a lookup that blocked
    held both 500 ms each time.  Then Redis is back, the backoff's lookup
    finds it, and the stream gets a notification."""
    fake, s = FakeSentinels(stack.ports["redis"]), None
    try:
        o = own(**fake.env())
        s = o.open(user["h"])
        assert s.status == 200
        beats, stop = [], threading.Event()

        def listen():
            while not stop.is_set():
                n = len(s.comments)
                s.next_event(0.02)
                if len(s.comments) > n:
                    beats.append(time.monotonic())
        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        fake.refuse = True
        stack.stop_component("redis")
        try:
            asked0, slowest, n = fake.asked, 0.0, 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4:
                t = time.monotonic()
                r = o.open(user["h"])
                r.close()
                slowest = max(slowest, time.monotonic() - t)
                n += 1
                assert r.status == 503, r.status
                time.sleep(0.02)
            asked = fake.asked - asked0
            stop.set()
            reader.join(timeout=2)
        finally:
            stop.set()
            fake.refuse = False
            stack.start_component("redis")
        gaps = [b - a for a, b in zip(beats, beats[1:])]
        print("\nlookups %d, slowest of %d opens %.3f s, heartbeat gaps "
              "%s" % (asked, n, slowest, ["%.2f" % g for g in gaps]))
        assert asked >= 2, "the backoff asked the sentinels %d times" % asked
        assert slowest < 0.2, "an open waited %.3f s" % slowest
        assert len(beats) >= 3 and max(gaps) < 1.3, gaps

        def gets_its_stream():
            t = o.open(user["h"])
            t.close()
            return t.status == 200
        wait_until(gets_its_stream, timeout=15, what="a stream again",
                   step=0.2)
        nid = notify(stack, user["id"], "after the lookups")
        assert nid in ids(s.events(1, timeout=5))
        assert o.proc.poll() is None
    finally:
        if s is not None:
            s.close()
        fake.close()


def test_a_client_that_stops_reading_is_dropped_and_slows_nobody(
        stack, own, user):
    other = make_user(stack, "student")
    other_h = bearer(login_as(stack, other))
    o = own()
    slow = o.open(user["h"], rcvbuf=4096)
    fast = o.open(other_h)
    try:
        assert (slow.status, fast.status) == (200, 200)
        fast.next_event(0.3)
        slow.next_event(0.3)                   # then never reads again
        big = {"id": 0, "kind": "test", "title": "big", "body": "x" * 60000,
               "data": {}, "readAt": None, "createdAt": "2026-01-01T00:00:00Z"}
        prev = 0
        for i in range(1, 80):
            nid = 10 ** 12 + i
            big["id"] = nid
            redis_cli(stack, "PUBLISH", "keel:notify:%d" % user["id"],
                      json.dumps({"userId": user["id"], "prev": prev,
                                  "notification": big}))
            prev = nid
        t0 = time.monotonic()
        nid = notify(stack, other["id"], "prompt")
        assert ids(fast.events(1, timeout=2)) == [nid]
        assert time.monotonic() - t0 < 1.0
        wait_until(lambda: "client stopped reading" in o.text(), timeout=5)
        assert o.proc.poll() is None
    finally:
        slow.close()
        fast.close()


def login_as(stack, u):
    from helpers import BaseUrlSession
    with BaseUrlSession(stack.base_url) as s:
        return login(s, u["email"])


# ------------------------------------------------------------- lifecycle

def drain(s, timeout=5):
    """Events until the stream ends: (ids of notifications, other events)."""
    got, other = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = s.next_event(deadline - time.monotonic())
        if ev is None:
            break
        if ev["event"] == "notification":
            got.append(int(ev["id"]))
        else:
            other.append(ev["event"])
    return got, other


def test_sighup_rolls_and_a_reconnecting_client_loses_nothing(
        stack, user):
    s = SSE.open(stack, headers=user["h"])
    seen = []
    made = [notify(stack, user["id"], "before")]
    rolls = stream_log(stack).count("workers replaced")
    try:
        seen += ids(s.events(1, timeout=3))
        os.kill(stack.app_pid("stream"), signal.SIGHUP)
        made += [notify(stack, user["id"], "during %d" % i)
                 for i in range(3)]
        got, other = drain(s, timeout=10)
        seen += got
        assert s.ended and "reconnect" in other
    finally:
        s.close()
    # Reconnect once every worker is new: one still to be replaced would
    # end this stream too (a client would just reconnect again).
    wait_until(lambda: stream_log(stack).count("workers replaced") > rolls,
               timeout=15)
    s = SSE.open(stack, headers=user["h"], last_id=seen[-1])
    try:
        made.append(notify(stack, user["id"], "after"))
        seen += ids(s.events(len(made) - len(seen), timeout=5))
        assert seen == made
        assert s.next_event(0.5) is None
    finally:
        s.close()


def test_sigterm_tells_every_stream_to_reconnect(stack, user):
    streams = [SSE.open(stack, headers=user["h"]) for _ in range(3)]
    try:
        stack.stop_component("stream")
        for s in streams:
            got, other = drain(s, timeout=10)
            assert other == ["reconnect"] and s.ended
    finally:
        for s in streams:
            s.close()
        stack.start_component("stream")
    s = SSE.open(stack, headers=user["h"])
    assert s.status == 200
    s.close()


def test_redis_restart_resubscribes_and_catches_up(stack, user):
    s = SSE.open(stack, headers=user["h"])
    try:
        s.next_event(0.3)
        stack.stop_component("redis")
        # Made while Redis is down: committed, never published.
        missed = [insert(stack, user["id"], "missed %d" % i)[0]
                  for i in range(2)]
        stack.start_component("redis")
        assert ids(s.events(2, timeout=10)) == missed
        live = notify(stack, user["id"], "after")
        assert ids(s.events(1, timeout=5)) == [live]
    finally:
        s.close()


# ------------------------------------------------ a stream and its session

def logout(http, u):
    r = http.post("/api/auth/logout", headers=u["h"])
    assert r.status_code == 204, r.text


def until_end(s, timeout=3):
    """What s sends until it ends, asserted to end within timeout: the
    notifications' ids and the other events ({"event", "data"})."""
    got, other = [], []
    deadline = time.monotonic() + timeout
    while not s.ended and time.monotonic() < deadline:
        ev = s.next_event(deadline - time.monotonic())
        if ev is None:
            continue
        if ev["event"] == "notification":
            got.append(int(ev["id"]))
        else:
            other.append(ev)
    assert s.ended, "the stream is still open after %s s" % timeout
    return got, other


def ended_for(other, reason):
    """The stream's last word: one end event with reason, no reconnect."""
    assert [e["event"] for e in other] == ["end"], other
    assert json.loads(other[0]["data"]) == {"reason": reason}


def test_logout_ends_the_sessions_stream_and_nothing_follows(
        stack, anon, user):
    s = SSE.open(stack, headers=user["h"])
    try:
        assert s.status == 200
        before = notify(stack, user["id"], "before the logout")
        assert ids(s.events(1, timeout=3)) == [before]
        logout(anon, user)
        notify(stack, user["id"], "after the logout")
        got, other = until_end(s)
        assert got == []
        ended_for(other, "session_ended")
    finally:
        s.close()
    wait_until(lambda: "user %d," % user["id"] in stream_log(stack) and
               "session ended" in stream_log(stack), timeout=2)


@pytest.mark.parametrize("change", ["deactivation", "role change"])
def test_ending_all_sessions_ends_every_stream_of_the_user(
        stack, http, anon, user, change):
    second = bearer(login(anon, user["email"]))
    t = anon.post("/api/notifications/stream-ticket",
                  headers=user["h"]).json()["ticket"]
    streams = [SSE.open(stack, headers=user["h"]),
               SSE.open(stack, headers=second),
               SSE.open(stack, query="?ticket=" + t)]
    try:
        assert [s.status for s in streams] == [200] * 3
        if change == "deactivation":
            r = http.delete("/api/users/%d" % user["id"])
        else:
            r = http.patch("/api/users/%d" % user["id"],
                           json={"role": "staff"})
        assert r.status_code == 200, r.text
        notify(stack, user["id"], "after the " + change)
        for s in streams:
            got, other = until_end(s)
            assert got == []
            ended_for(other, "session_ended")
    finally:
        for s in streams:
            s.close()


def test_a_ticket_whose_session_logged_out_gets_401(stack, anon, user):
    r = anon.post("/api/notifications/stream-ticket", headers=user["h"])
    assert r.status_code == 201, r.text
    logout(anon, user)
    s = SSE.open(stack, query="?ticket=" + r.json()["ticket"])
    assert s.status == 401
    assert s.json()["error"] == "unauthorized"


def test_a_ticket_of_a_deactivated_user_gets_401(stack, http, anon, user):
    r = anon.post("/api/notifications/stream-ticket", headers=user["h"])
    assert r.status_code == 201, r.text
    assert http.delete("/api/users/%d" % user["id"]).status_code == 200
    s = SSE.open(stack, query="?ticket=" + r.json()["ticket"])
    assert s.status == 401


def test_a_ticket_is_stored_with_its_session_never_a_token(stack, anon,
                                                           user):
    r = anon.post("/api/notifications/stream-ticket", headers=user["h"])
    t = r.json()["ticket"]
    stored = redis_cli(stack, "GET", "keel:sse:ticket:" + sha(t))
    assert stored == "%d:%s" % (user["id"], sha(user["token"]))


def test_a_ticket_stream_ends_with_the_session_that_took_it(stack, anon,
                                                            user):
    t = anon.post("/api/notifications/stream-ticket",
                  headers=user["h"]).json()["ticket"]
    s = SSE.open(stack, query="?ticket=" + t)
    try:
        assert s.status == 200
        logout(anon, user)
        got, other = until_end(s)
        assert got == []
        ended_for(other, "session_ended")
    finally:
        s.close()


def test_another_session_keeps_its_stream_when_one_logs_out(stack, anon,
                                                           user):
    second = bearer(login(anon, user["email"]))
    mine = SSE.open(stack, headers=user["h"])
    theirs = SSE.open(stack, headers=second)
    try:
        assert (mine.status, theirs.status) == (200, 200)
        logout(anon, user)
        got, other = until_end(mine)
        ended_for(other, "session_ended")
        nid = notify(stack, user["id"], "for the other session")
        assert ids(theirs.events(1, timeout=3)) == [nid]
        assert not theirs.ended
    finally:
        mine.close()
        theirs.close()


def test_a_stream_ends_within_a_heartbeat_of_its_sessions_expiry(
        stack, own, user):
    # A session as auth.c writes one, living two seconds; a stream app
    # whose heartbeat is 1 s.
    o = own()
    tok = secrets.token_urlsafe(32)
    key = "keel:sess:" + sha(tok)
    exp = int(time.time()) + 2
    redis_cli(stack, "HSET", key, "uid", user["id"], "role", "student",
              "exp", exp, "born", 0)
    redis_cli(stack, "EXPIREAT", key, exp)
    s = o.open(bearer(tok))
    try:
        assert s.status == 200
        got, other = until_end(s, timeout=6)
        assert time.time() < exp + 2.5, "ended late"
        ended_for(other, "session_expired")
    finally:
        s.close()
    assert "session expired" in o.text()


def test_an_end_missed_while_unsubscribed_is_caught_on_resubscribing(
        stack, user):
    s = SSE.open(stack, headers=user["h"])
    try:
        assert s.status == 200
        # The session goes with no announcement heard, as when it is
        # made while the subscription is down; then the subscription
        # drops and comes back.
        redis_cli(stack, "DEL", "keel:sess:" + sha(user["token"]))
        redis_cli(stack, "CLIENT", "KILL", "TYPE", "pubsub")
        got, other = until_end(s, timeout=6)
        ended_for(other, "session_ended")
    finally:
        s.close()


def test_a_stream_opened_after_a_primary_restart_replays(stack, http, user):
    """The stream process's PostgreSQL connection outlives a restart of
    the primary; the first stream after it must not get the server's
    farewell (FATAL, read when the connection is next used) as its
    replay's answer: the query goes again on a new connection."""
    from test_api_basics import restart_primary
    s = SSE.open(stack, headers=user["h"])
    try:
        assert s.status == 200
        assert s.next_event(0.5) is None and not s.ended   # replay ran
    finally:
        s.close()
    stack.stop_component("primary")
    restart_primary(http, stack)
    s = SSE.open(stack, headers=user["h"])
    try:
        assert s.status == 200
        assert s.next_event(1.0) is None and not s.ended
        nid = notify(stack, user["id"], "after the restart")
        ev = s.next_event(3)
        assert ev is not None and int(ev["id"]) == nid, ev
    finally:
        s.close()


# ------------------------------------------------- what a closed stream leaves

def resident_kb(pid):
    """pid's resident set (VmRSS), in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def left_at_once(path, headers):
    """A client that sends its open and goes before any answer, while
    the stream is being checked (the worker finds it gone when it
    writes the 200)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(("GET /api/notifications/stream HTTP/1.1\r\n" + "".join(
        "%s: %s\r\n" % kv for kv in dict(
            {"Host": "localhost"}, **headers).items()) + "\r\n").encode())
    s.close()


@pytest.mark.parametrize("when", ["open", "checking"])
def test_streams_their_clients_close_leave_no_memory(stack, own, user, when):
    """A stream its client closes, open or still being checked, leaves
    nothing behind in the worker, which lives until a reload (the
    FastCGI apps' KEEL_MAX_REQUESTS is not its).  libevent 2.1 hands the
    request of a connection that ended before its answer did to the
    application (evhttp_connection_incoming_fail), and each one was
    kept, headers and all.  With an 8 KB header on each of 300 opens,
    one at a time, the worker grew by about 4 MB; one that frees them
    reuses the same memory once warm (under 100 kB seen).  ASan's
    quarantine, which holds freed memory back for a while, is off for
    this worker."""
    o = own(KEEL_RATELIMIT="0", ASAN_OPTIONS=os.environ.get(
        "ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
    worker = wait_until(lambda: children(o.proc.pid), timeout=10,
                        what="the stream worker")[0]
    h = dict(user["h"], **{"X-Pad": "p" * 8192})

    def cycle(n):
        """The n-th stream closed by its client, once the worker
        answered it (its access line): one or two at a time, so that the
        worker never holds many at once (which would grow it as much,
        for good)."""
        if when == "open":
            s = o.open(h)
            assert s.status == 200
            s.close()
        else:
            left_at_once(o.sock, h)
        wait_until(lambda: o.text().count(" access ") >= n, timeout=5,
                   step=0.002, what="the worker's answer %d" % n)

    def no_places():
        wait_until(lambda: redis_cli(stack, "ZCARD", "keel:sse:open:%d"
                                     % user["id"]) == "0", timeout=5,
                   what="every stream's place given back")

    def settled():
        """Every close seen: the user holds no place among its streams,
        and a last stream opens and its client leaves."""
        no_places()
        s = o.open(user["h"])
        assert s.status == 200, s.body
        s.close()
        no_places()

    for n in range(1, 101):             # warm: the allocator's caches
        cycle(n)
    settled()
    before = resident_kb(worker)
    for n in range(102, 402):           # (101: settled()'s)
        cycle(n)
    settled()
    grown = resident_kb(worker) - before
    assert grown < 1024, "the worker grew %d kB over 300 closed streams" % (
        grown)
    assert o.proc.poll() is None and children(o.proc.pid) == [worker]
    assert o.text().count("client left") >= 300


# ------------------------------------------------ the stream's PostgreSQL

def test_the_streams_postgresql_session_is_keels_and_named(stack, user):
    """The stream app's connection opens with every keel session's
    settings (lib/db.c: TCP keepalives, statement_timeout, TimeZone UTC,
    DateStyle ISO, client_connection_check_interval) and names itself in
    pg_stat_activity, where it was blank."""
    nid = notify(stack, user["id"], "named")
    s = SSE.open(stack, headers=user["h"], last_id=nid - 1)
    try:
        ev = s.next_event(5)                # a replay: the connection
        assert ev is not None and int(ev["id"]) == nid, ev
    finally:
        s.close()
    assert stack.psql("SELECT count(*) FROM pg_stat_activity "
                      "WHERE application_name = 'keel-stream'") != "0"


def test_a_replay_in_another_server_zone_reads_as_the_list(stack, http,
                                                           user):
    """PostgreSQL's TimeZone moved 14 hours east (test_time_zone.py's
    way): a notification replayed by the stream is the same JSON, its
    createdAt in UTC, as GET /api/notifications gives.  (The replay
    formats created_at AT TIME ZONE 'UTC', so this held before its
    session was UTC too: a guard for the query, not the session.)"""
    from test_plans import superuser_sql

    def zone(sql):
        for replica in (False, True):
            superuser_sql(stack, [sql, "SELECT pg_reload_conf()"],
                          replica=replica)
    zone("ALTER SYSTEM SET timezone = 'Etc/GMT-14'")
    try:
        nid = notify(stack, user["id"], "zoned")
        s = SSE.open(stack, headers=user["h"], last_id=nid - 1)
        try:
            ev = s.next_event(5)
        finally:
            s.close()
        r = http.get("/api/notifications", headers=user["h"])
    finally:
        zone("ALTER SYSTEM RESET timezone")
    assert ev is not None and int(ev["id"]) == nid, ev
    assert r.status_code == 200, r.text
    (listed,) = [n for n in r.json()["data"] if n["id"] == nid]
    assert json.loads(ev["data"]) == listed
    assert listed["createdAt"].endswith("Z")


def test_the_stream_app_never_crashed(stack):
    """Last in the file: no worker of the stack's stream app died or
    tripped a sanitizer during the tests above (the supervisor would
    have respawned it quietly)."""
    text = stream_log(stack)
    for bad in ("AddressSanitizer", "runtime error", "killed by signal",
                "exited with"):
        assert bad not in text, bad

