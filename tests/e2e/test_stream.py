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
import secrets
import signal
import socket
import subprocess
import threading
import time

import pytest

from accounts import bearer, login, make_user
from helpers import assert_error, redis_cli, wait_until
from sse import SSE

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


def ticket_for(stack, uid, ttl=60):
    """A stream ticket as POST /api/notifications/stream-ticket stores it."""
    t = secrets.token_urlsafe(32)
    redis_cli(stack, "SET", "keel:sse:ticket:" +
              hashlib.sha256(t.encode()).hexdigest(), uid, "EX", ttl)
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
    s = SSE.open(stack, headers=bearer("x" * 43))
    assert s.status == 401
    s = SSE.open(stack, headers=bearer("not a token"))
    assert s.status == 401


def test_other_methods_get_405(stack, user, anon):
    r = anon.post("/api/notifications/stream", headers=user["h"])
    assert_error(r, 405, "method_not_allowed")


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
    t = ticket_for(stack, user["id"])
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
    t = ticket_for(stack, user["id"])
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


def test_a_ticket_is_bound_to_its_user(stack, user):
    other = make_user(stack, "student")
    t = ticket_for(stack, other["id"])
    s = SSE.open(stack, headers=user["h"], query="?ticket=" + t)
    assert s.status == 401
    # Unused: a mismatch burns the ticket too.
    assert SSE.open(stack, query="?ticket=" + t).status == 401


def test_a_ticket_with_lastEventId_replays(stack, user):
    first = notify(stack, user["id"], "a")
    second = notify(stack, user["id"], "b")
    t = ticket_for(stack, user["id"])
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
        a.close()
        wait_until(lambda: o.open(user["h"]).status == 200, timeout=3)
        assert o.proc.poll() is None
    finally:
        a.close()
        b.close()


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


def test_the_stream_app_never_crashed(stack):
    """Last in the file: no worker of the stack's stream app died or
    tripped a sanitizer during the tests above (the supervisor would
    have respawned it quietly)."""
    text = stream_log(stack)
    for bad in ("AddressSanitizer", "runtime error", "killed by signal",
                "exited with"):
        assert bad not in text, bad
