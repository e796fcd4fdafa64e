# SPDX-License-Identifier: ISC
"""test_notifications.py -- a user's notifications (issue 11, part 1):
the list (own only, keyset cursor, unread filter), marking one and all
read, the per-user cache and what invalidates it, every producer
(password change and reset, role change, new contract, the daily
keel-notify-contracts) through the real apps, relay and drainer, each
notifying once however often its job runs, the live channel
(keel:notify:<uid>: the message after the commit, its prev chain), and
stream tickets (shape, stored hashed, TTL, 401, 503 without Redis), and
the seam with the stream app: a real ticket opens it and a real
producer's notification arrives through it.

Lists are set up with rows written straight into PostgreSQL (the
drainer is the only writer in production; here it has its own tests).
"""

import hashlib
import json
import re
import socket
import threading

import pytest

from accounts import PASSWORD, bearer, login, make_user
from helpers import assert_error, link_tokens, new_car, redis_cli, \
    redis_keys_holding, request, wait_until
from sse import SSE
from test_auth_faults import redis_down

DRAIN_ENV = {"KEEL_JOB_VISIBILITY": "3"}
TICKET = re.compile(r"^[A-Za-z0-9_-]{43}$")


@pytest.fixture(scope="module")
def nt(stack):
    p = stack.program("keel-queues", "purge", "notifications", "all")
    assert p.returncode == 0, p.stderr
    return stack


def user(stack, http, role="customer"):
    """A new user and their headers."""
    u = make_user(stack, role)
    return u, bearer(login(http, u["email"]))


def note(stack, uid, title="Hello", read=False, ago=0):
    """A notification of uid's, written straight into PostgreSQL, made
    `ago` seconds ago; its id."""
    return int(stack.psql(
        "INSERT INTO notifications (user_id, kind, title, body, data, "
        "read_at, created_at) VALUES (%d, 'e2e', '%s', 'b', '{\"n\": 1}', "
        "%s, now() - interval '%d seconds') RETURNING id"
        % (uid, title, "now()" if read else "NULL", ago)))


def listing(http, h, **params):
    r = http.get("/api/notifications", headers=h, params=params)
    assert r.status_code == 200, r.text
    return r


def ids(r):
    return [n["id"] for n in r.json()["data"]]


def relay_and_drain(stack):
    """cron's next minute: the relay, then the notifications drainer
    until its queue is empty; the drainer's summary and log lines."""
    p = stack.program("keel-outbox-relay", "--once")
    assert p.returncode == 0, p.stderr
    p = stack.program("keel-drain-notifications", "--until-empty",
                      "--budget", 60, env=DRAIN_ENV, timeout=90)
    assert p.returncode == 0, p.stderr
    return p.stdout + p.stderr


def outbox_jobs(stack, like):
    """(kind, payload, key) of the notifications jobs whose key is LIKE
    `like`, oldest first."""
    out = stack.psql(
        "SELECT kind, payload::text, idempotency_key FROM outbox "
        "WHERE queue = 'notifications' AND idempotency_key LIKE '%s' "
        "ORDER BY id" % like)
    return [(k, json.loads(p), key) for k, p, key in
            (line.split("|") for line in out.splitlines() if line)]


def rows_by_key(stack, key):
    return stack.psql("SELECT count(*) FROM notifications "
                      "WHERE dedup_key = '%s'" % key)


def run_again(stack, kind, payload, key):
    """The same job delivered once more, as after a crash between the
    insert and the job's completion: forgotten by the queue, its outbox
    row not finished, enqueued again with its key, drained."""
    p = stack.program("keel-queues", "purge", "notifications", "all")
    assert p.returncode == 0, p.stderr
    stack.psql("UPDATE outbox SET finished_at = NULL "
               "WHERE idempotency_key = '%s'" % key)
    p = stack.program("keel-queues", "enqueue", "--key", key,
                      "notifications", kind, json.dumps(payload))
    assert p.returncode == 0, p.stderr
    out = relay_and_drain(stack)
    assert "processed=1 " in out, out


def tomorrow(stack, days=1):
    return stack.psql("SELECT ((now() AT TIME ZONE 'UTC')::date + %d)::text"
                      % days)


def contract(http, customer, start, end=None):
    car = new_car(http)
    r = http.post("/api/contracts", json={
        "carId": car["id"], "customerId": customer, "startDate": start,
        "endDate": end or start})
    assert r.status_code == 201, r.text
    return r.json(), car


# ------------------------------------------------------------------ list

def test_list_is_own_newest_first_with_cursors(nt, http):
    a, ha = user(nt, http)
    b, _ = user(nt, http)
    mine = [note(nt, a["id"], "A%d" % i, ago=10 - i) for i in range(5)]
    note(nt, b["id"], "B")
    r = listing(http, ha, limit=2)
    assert ids(r) == [mine[4], mine[3]]
    got = ids(r)
    while r.json()["page"]["next"]:
        r = listing(http, ha, limit=2, after=r.json()["page"]["next"])
        got += ids(r)
    assert got == mine[::-1]
    # Back from the last page.
    r = listing(http, ha, limit=2, before=r.json()["page"]["prev"])
    assert ids(r) == [mine[2], mine[1]]


def test_list_object_shape(nt, http):
    a, ha = user(nt, http)
    n = note(nt, a["id"], "Shape")
    (item,) = listing(http, ha).json()["data"]
    assert set(item) == {"id", "kind", "title", "body", "data", "readAt",
                         "createdAt"}
    assert (item["id"], item["kind"], item["title"], item["data"],
            item["readAt"]) == (n, "e2e", "Shape", {"n": 1}, None)


def test_unread_filter(nt, http):
    a, ha = user(nt, http)
    unread = note(nt, a["id"], ago=2)
    read = note(nt, a["id"], read=True, ago=1)
    assert ids(listing(http, ha, unread="true")) == [unread]
    assert ids(listing(http, ha, unread="false")) == [read, unread]
    assert ids(listing(http, ha)) == [read, unread]
    assert_error(http.get("/api/notifications", headers=ha,
                          params={"unread": "maybe"}),
                 400, "validation_failed")
    assert_error(http.get("/api/notifications", headers=ha,
                          params={"read": "true"}),
                 400, "validation_failed")


def test_list_needs_a_session(nt, anon):
    assert_error(anon.get("/api/notifications"), 401, "unauthorized")


# ------------------------------------------------------------ read, all

def test_read_marks_once_and_keeps_the_first_read_at(nt, http):
    a, ha = user(nt, http)
    n = note(nt, a["id"])
    r = http.post("/api/notifications/%d/read" % n, headers=ha)
    assert r.status_code == 200, r.text
    first = r.json()["readAt"]
    assert first is not None and r.json()["id"] == n
    r = http.post("/api/notifications/%d/read" % n, headers=ha)
    assert r.status_code == 200 and r.json()["readAt"] == first


def test_another_users_notification_is_404_and_stays_unread(nt, http):
    a, _ = user(nt, http)
    _, hb = user(nt, http)
    n = note(nt, a["id"])
    assert_error(http.post("/api/notifications/%d/read" % n, headers=hb),
                 404, "not_found")
    assert nt.psql("SELECT read_at IS NULL FROM notifications "
                   "WHERE id = %d" % n) == "t"
    assert n not in ids(listing(http, hb))
    assert_error(http.post("/api/notifications/999999999/read",
                           headers=hb), 404, "not_found")


def test_read_all_marks_own_unread_and_says_how_many(nt, http):
    a, ha = user(nt, http)
    b, _ = user(nt, http)
    for _ in range(3):
        note(nt, a["id"])
    old = note(nt, a["id"], read=True)
    before = nt.psql("SELECT read_at FROM notifications WHERE id = %d" % old)
    theirs = note(nt, b["id"])
    r = http.post("/api/notifications/read-all", headers=ha)
    assert (r.status_code, r.json()) == (200, {"marked": 3})
    assert ids(listing(http, ha, unread="true")) == []
    assert nt.psql("SELECT read_at FROM notifications WHERE id = %d"
                   % old) == before
    assert nt.psql("SELECT read_at IS NULL FROM notifications WHERE id = %d"
                   % theirs) == "t"
    r = http.post("/api/notifications/read-all", headers=ha)
    assert r.json() == {"marked": 0}


# ----------------------------------------------------------------- cache

def cached(http, h, **params):
    """The list, asked until it is served from the cache; the answer."""
    listing(http, h, **params)
    r = listing(http, h, **params)
    assert r.headers["X-Cache"] == "HIT", r.headers.get("X-Cache")
    return r


def test_cached_page_is_invalidated_by_a_read(nt, http):
    a, ha = user(nt, http)
    n = note(nt, a["id"])
    assert cached(http, ha).json()["data"][0]["readAt"] is None
    assert http.post("/api/notifications/%d/read" % n,
                     headers=ha).status_code == 200
    r = listing(http, ha)
    assert r.headers["X-Cache"] == "MISS"
    assert r.json()["data"][0]["readAt"] is not None


def test_cached_unread_page_is_invalidated_by_read_all(nt, http):
    a, ha = user(nt, http)
    note(nt, a["id"])
    assert len(cached(http, ha, unread="true").json()["data"]) == 1
    assert http.post("/api/notifications/read-all",
                     headers=ha).json() == {"marked": 1}
    r = listing(http, ha, unread="true")
    assert r.headers["X-Cache"] == "MISS" and ids(r) == []


def test_cached_page_is_invalidated_by_a_new_notification(nt, http):
    a, ha = user(nt, http)
    assert ids(cached(http, ha)) == []
    key = "notification:e2e-new:%d" % a["id"]
    p = nt.program("keel-queues", "enqueue", "--key", key, "notifications",
                   "role_changed", json.dumps({"userId": a["id"],
                                               "role": "staff"}))
    assert p.returncode == 0, p.stderr
    relay_and_drain(nt)
    r = listing(http, ha)
    assert r.headers["X-Cache"] == "MISS"
    (item,) = r.json()["data"]
    assert (item["kind"], item["title"]) == ("role_changed",
                                             "Your role is now staff")


def test_invalidation_touches_only_that_users_pages(nt, http):
    a, ha = user(nt, http)
    b, hb = user(nt, http)
    n = note(nt, a["id"])
    note(nt, b["id"])
    cached(http, ha)
    cached(http, hb)
    assert http.post("/api/notifications/%d/read" % n,
                     headers=ha).status_code == 200
    assert listing(http, hb).headers["X-Cache"] == "HIT"
    assert listing(http, ha).headers["X-Cache"] == "MISS"


# ------------------------------------------------------------- producers

def test_password_change_notifies_once(nt, http):
    u, h = user(nt, http, "student")
    r = http.patch("/api/users/%d" % u["id"], headers=h, json={
        "password": "a-brand-new-password", "currentPassword": PASSWORD})
    assert r.status_code == 200, r.text
    ((kind, payload, key),) = outbox_jobs(
        nt, "notification:password:%d:%%" % u["id"])
    assert (kind, payload) == ("password_changed",
                               {"userId": u["id"], "via": "profile"})
    relay_and_drain(nt)
    run_again(nt, kind, payload, key)
    assert rows_by_key(nt, key) == "1"
    (item,) = listing(http, h).json()["data"]
    assert (item["kind"], item["data"]) == ("password_changed",
                                            {"via": "profile"})
    # A second change is a second notification.
    r = http.patch("/api/users/%d" % u["id"], headers=h, json={
        "password": "another-new-password",
        "currentPassword": "a-brand-new-password"})
    assert r.status_code == 200, r.text
    assert len(outbox_jobs(nt, "notification:password:%d:%%"
                           % u["id"])) == 2


def test_password_reset_notifies_once(nt, http, anon):
    u = make_user(nt, "customer")
    assert anon.post("/api/auth/password-reset",
                     json={"email": u["email"]}).status_code == 202
    p = nt.program("keel-outbox-relay", "--once")
    assert p.returncode == 0, p.stderr
    p = nt.program("keel-drain-email", "--until-empty", "--budget", 30,
                   env=DRAIN_ENV, timeout=60)
    assert p.returncode == 0, p.stderr
    token = link_tokens(nt, u["email"])[-1]
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "reset-new-password"})
    assert r.status_code == 204, r.text
    ((kind, payload, key),) = outbox_jobs(
        nt, "notification:password:%d:%%" % u["id"])
    assert payload == {"userId": u["id"], "via": "reset"}
    relay_and_drain(nt)
    run_again(nt, kind, payload, key)
    assert rows_by_key(nt, key) == "1"


def test_role_change_notifies_once_and_a_rename_does_not(nt, http):
    u = make_user(nt, "customer")
    r = http.patch("/api/users/%d" % u["id"], json={"name": "Just Renamed"})
    assert r.status_code == 200, r.text
    assert outbox_jobs(nt, "notification:%%:%d:%%" % u["id"]) == []
    r = http.patch("/api/users/%d" % u["id"], json={"role": "staff"})
    assert r.status_code == 200, r.text
    ((kind, payload, key),) = outbox_jobs(
        nt, "notification:role:%d:%%" % u["id"])
    assert (kind, payload) == ("role_changed",
                               {"userId": u["id"], "role": "staff"})
    relay_and_drain(nt)
    run_again(nt, kind, payload, key)
    assert rows_by_key(nt, key) == "1"
    assert nt.psql("SELECT title || '|' || (data->>'role') FROM "
                   "notifications WHERE dedup_key = '%s'" % key) == \
        "Your role is now staff|staff"


def test_contract_notifies_its_customer_once(nt, http):
    c, hc = user(nt, http)
    k, car = contract(http, c["id"], "2032-03-01", "2032-03-04")
    key = "notification:contract-created:%d" % k["id"]
    ((kind, payload, _),) = outbox_jobs(nt, key)
    assert kind == "contract_created"
    assert payload == {"userId": c["id"], "contractId": k["id"],
                       "carId": car["id"], "startDate": "2032-03-01",
                       "endDate": "2032-03-04",
                       "car": "%s Probe (%s)" % (car["manufacturer"],
                                                 car["licensePlate"])}
    relay_and_drain(nt)
    run_again(nt, kind, payload, key)
    assert rows_by_key(nt, key) == "1"
    (item,) = listing(http, hc).json()["data"]
    assert item["title"] == "New rental contract #%d" % k["id"]
    assert car["licensePlate"] in item["body"]
    assert item["data"] == {"contractId": k["id"], "carId": car["id"],
                            "startDate": "2032-03-01",
                            "endDate": "2032-03-04"}


def test_a_refused_contract_queues_nothing(nt, http):
    c, _ = user(nt, http)
    _, car = contract(http, c["id"], "2032-05-01", "2032-05-03")
    r = http.post("/api/contracts", json={
        "carId": car["id"], "customerId": c["id"],
        "startDate": "2032-05-02", "endDate": "2032-05-02"})
    assert_error(r, 409, "conflict")
    assert nt.psql("SELECT count(*) FROM outbox WHERE queue = "
                   "'notifications' AND payload->>'userId' = '%d'"
                   % c["id"]) == "1"


def test_bad_payloads_are_dead_lettered(nt, http):
    stranger = 999999999
    for kind, payload in (
            ("role_changed", {"userId": 1, "role": "pope"}),
            ("contract_starting", {"userId": 1, "contractId": 2}),
            ("password_changed", {"userId": stranger})):
        p = nt.program("keel-queues", "enqueue", "--key",
                       "bad-%s" % kind, "notifications", kind,
                       json.dumps(payload))
        assert p.returncode == 0, p.stderr
    out = relay_and_drain(nt)
    assert "failed=3 " in out, out
    assert nt.psql("SELECT count(*) FROM notifications WHERE dedup_key "
                   "LIKE 'bad-%'") == "0"


# ------------------------------------------------- keel-notify-contracts

def notify_contracts(stack, days=0):
    """keel-notify-contracts run today, or as if `days` days later: its
    now() is then the database's moved on by that many days (a now() in
    a schema ahead of pg_catalog in its search_path); the jobs queued."""
    env = None
    if days:
        if stack.env.get("KEEL_PGBOUNCER") == "1":
            pytest.skip("PgBouncer passes no startup options")
        stack.psql(
            "CREATE SCHEMA IF NOT EXISTS e2e_clock; "
            "CREATE OR REPLACE FUNCTION e2e_clock.now() RETURNS timestamptz "
            "LANGUAGE sql STABLE AS $$ SELECT pg_catalog.now() + "
            "current_setting('e2e.days')::int * interval '1 day' $$")
        # Startup options reach the server only without keel's own
        # (lib/db.c: KEEL_DB_PREPARED=0 sends none).
        env = {"KEEL_DB_PREPARED": "0",
               "PGOPTIONS": "-c search_path=e2e_clock,pg_catalog,public "
                            "-c e2e.days=%d" % days}
    p = stack.program("keel-notify-contracts", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"processed=(\d+) failed=0 ", p.stdout)
    assert m, p.stdout
    return int(m.group(1))


def starting_key(contract_id, date):
    return "notification:contract-starting:%d:%s" % (contract_id, date)


def reminder_jobs(stack, contract_id):
    """The keys of the contract_starting jobs queued for a contract."""
    return stack.psql(
        "SELECT idempotency_key FROM outbox WHERE kind = "
        "'contract_starting' AND payload->>'contractId' = '%d' ORDER BY id"
        % contract_id).splitlines()


def reminders(stack, uid):
    """The data of uid's contract_starting notifications, newest first."""
    out = stack.psql("SELECT data::text FROM notifications WHERE user_id = "
                     "%d AND kind = 'contract_starting' ORDER BY id DESC"
                     % uid)
    return [json.loads(line) for line in out.splitlines()]


def test_contracts_starting_tomorrow_notified_once_however_often(nt, http):
    c, hc = user(nt, http)
    due, _ = contract(http, c["id"], tomorrow(nt), tomorrow(nt, 3))
    cancelled, _ = contract(http, c["id"], tomorrow(nt))
    r = http.patch("/api/contracts/%d" % cancelled["id"],
                   json={"status": "cancelled"})
    assert r.status_code == 200, r.text
    later, _ = contract(http, c["id"], tomorrow(nt, 2))
    today, _ = contract(http, c["id"], tomorrow(nt, 0))
    assert notify_contracts(nt) >= 1
    key = starting_key(due["id"], tomorrow(nt))
    assert [k for _, _, k in outbox_jobs(
        nt, "notification:contract-starting:%")
        if k.split(":")[2] in {str(cancelled["id"]), str(later["id"]),
                               str(today["id"])}] == []
    ((kind, payload, _),) = outbox_jobs(nt, key)
    assert (kind, payload["userId"], payload["contractId"],
            payload["startsAt"]) == ("contract_starting", c["id"],
                                     due["id"], tomorrow(nt))
    # Twice a day, or once the job has run: nothing new.
    assert notify_contracts(nt) == 0
    relay_and_drain(nt)
    assert notify_contracts(nt) == 0
    assert rows_by_key(nt, key) == "1"
    starting = [n for n in listing(http, hc).json()["data"]
                if n["kind"] == "contract_starting"]
    assert [n["data"] for n in starting] == [
        {"contractId": due["id"], "startsAt": tomorrow(nt)}]


def test_a_moved_contract_is_reminded_again_the_day_before_its_new_date(
        nt, http):
    c, _ = user(nt, http)
    k, _ = contract(http, c["id"], tomorrow(nt), tomorrow(nt, 2))
    assert notify_contracts(nt) >= 1
    relay_and_drain(nt)
    assert reminders(nt, c["id"]) == [
        {"contractId": k["id"], "startsAt": tomorrow(nt)}]
    r = http.patch("/api/contracts/%d" % k["id"], json={
        "startDate": tomorrow(nt, 7), "endDate": tomorrow(nt, 8)})
    assert r.status_code == 200, r.text
    # Not today: it starts in a week.  Six days on, the day before its
    # new date: reminded for that date, once however often it runs.
    notify_contracts(nt)
    assert outbox_jobs(nt, starting_key(k["id"], tomorrow(nt, 7))) == []
    assert notify_contracts(nt, days=6) >= 1
    assert notify_contracts(nt, days=6) == 0
    ((kind, payload, _),) = outbox_jobs(
        nt, starting_key(k["id"], tomorrow(nt, 7)))
    assert (kind, payload["startsAt"]) == ("contract_starting",
                                           tomorrow(nt, 7))
    relay_and_drain(nt)
    assert notify_contracts(nt, days=6) == 0
    assert reminders(nt, c["id"]) == [
        {"contractId": k["id"], "startsAt": tomorrow(nt, 7)},
        {"contractId": k["id"], "startsAt": tomorrow(nt)}]
    assert nt.psql("SELECT body FROM notifications WHERE dedup_key = '%s'"
                   % starting_key(k["id"], tomorrow(nt, 7))).endswith(
        "starts on %s." % tomorrow(nt, 7))


def test_a_reminder_queued_before_a_cancel_or_a_move_is_not_made(nt, http):
    c, _ = user(nt, http)
    gone, _ = contract(http, c["id"], tomorrow(nt))
    moved, _ = contract(http, c["id"], tomorrow(nt))
    assert notify_contracts(nt) >= 2
    keys = [reminder_jobs(nt, x["id"]) for x in (gone, moved)]
    assert [len(k) for k in keys] == [1, 1]
    keys = [k for (k,) in keys]
    # Queued; then, before the drainer runs, staff change them.
    r = http.patch("/api/contracts/%d" % gone["id"],
                   json={"status": "cancelled"})
    assert r.status_code == 200, r.text
    r = http.patch("/api/contracts/%d" % moved["id"], json={
        "startDate": tomorrow(nt, 4), "endDate": tomorrow(nt, 4)})
    assert r.status_code == 200, r.text
    out = relay_and_drain(nt)
    assert "failed=0 " in out, out
    assert reminders(nt, c["id"]) == []
    # Done, not retried or dead-lettered: the contract said no.
    assert nt.psql("SELECT count(*) FROM outbox WHERE idempotency_key IN "
                   "('%s', '%s') AND finished_at IS NOT NULL"
                   % tuple(keys)) == "2"
    assert "%s: nothing made: contract cancelled" % keys[0] in out, out
    assert "%s: nothing made: contract starts on %s now" % (
        keys[1], tomorrow(nt, 4)) in out, out


def deactivate(stack, uid):
    """uid made inactive in PostgreSQL, however the API came to allow it
    (an account deactivated with contracts still active)."""
    stack.psql("UPDATE users SET is_active = false WHERE id = %d" % uid)


def test_no_reminder_for_a_deactivated_customer(nt, http):
    before, _ = user(nt, http)
    after, _ = user(nt, http)
    kb, _ = contract(http, before["id"], tomorrow(nt))
    ka, _ = contract(http, after["id"], tomorrow(nt))
    deactivate(nt, before["id"])
    notify_contracts(nt)
    assert reminder_jobs(nt, kb["id"]) == []
    (key,) = reminder_jobs(nt, ka["id"])
    # Deactivated after its reminder was queued: none made either.
    deactivate(nt, after["id"])
    out = relay_and_drain(nt)
    assert "failed=0 " in out, out
    assert reminders(nt, before["id"]) == reminders(nt, after["id"]) == []
    assert "%s: nothing made: customer inactive" % key in out, out


# ------------------------------------------------------- live channel

class Subscriber:
    """SUBSCRIBE to one channel over a plain socket (RESP); on each
    message, at once, `react(message)`; what it returned is recorded."""

    def __init__(self, stack, channel, react):
        self.sock = socket.create_connection(
            ("127.0.0.1", stack.ports["redis"]), timeout=60)
        self.f = self.sock.makefile("rb")
        self.react = react
        self.got = []
        arg = channel.encode()
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n"
                          % (len(arg), arg))
        assert self._read() == [b"subscribe", arg, 1]
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise EOFError
        t, rest = line[:1], line[1:-2]
        if t == b"*":
            return [self._read() for _ in range(int(rest))]
        if t == b"$":
            data = self.f.read(int(rest) + 2)
            return data[:-2]
        if t == b":":
            return int(rest)
        return rest

    def _run(self):
        try:
            while True:
                kind, _, msg = self._read()
                if kind == b"message":
                    m = json.loads(msg)
                    self.got.append((m, self.react(m)))
        except (EOFError, OSError, ValueError):
            pass

    def close(self):
        self.sock.close()


def test_channel_gets_each_notification_after_commit_with_prev_chain(
        nt, http):
    c, hc = user(nt, http)
    url = nt.url("/api/notifications")

    def react(m):
        # A client that reads its list on the event finds the row:
        # committed and its cached pages invalidated before the publish.
        r = request("GET", url, headers=hc)
        return [n["id"] for n in r.json()["data"]]

    assert ids(cached(http, hc)) == []
    sub = Subscriber(nt, "keel:notify:%d" % c["id"], react)
    try:
        first, _ = contract(http, c["id"], "2033-01-01")
        second, _ = contract(http, c["id"], "2033-02-01")
        relay_and_drain(nt)
        wait_until(lambda: len(sub.got) >= 2, 10, "two messages")
    finally:
        sub.close()
    items = listing(http, hc).json()["data"][::-1]     # oldest first
    assert [i["data"]["contractId"] for i in items] == [first["id"],
                                                        second["id"]]
    (m1, seen1), (m2, seen2) = sub.got
    assert m1 == {"userId": c["id"], "prev": 0, "notification": items[0]}
    assert m2 == {"userId": c["id"], "prev": items[0]["id"],
                  "notification": items[1]}
    assert items[0]["id"] in seen1
    assert items[1]["id"] in seen2


def test_a_job_run_again_publishes_the_same_row_and_prev(nt, http):
    c, hc = user(nt, http)
    note(nt, c["id"], ago=5)
    sub = Subscriber(nt, "keel:notify:%d" % c["id"], lambda m: None)
    try:
        k, _ = contract(http, c["id"], "2034-01-01")
        relay_and_drain(nt)
        wait_until(lambda: len(sub.got) >= 1, 10, "the first message")
        key = "notification:contract-created:%d" % k["id"]
        ((kind, payload, _),) = outbox_jobs(nt, key)
        note(nt, c["id"])           # a later one: not this row's prev
        run_again(nt, kind, payload, key)
        wait_until(lambda: len(sub.got) >= 2, 10, "the second message")
    finally:
        sub.close()
    (m1, _), (m2, _) = sub.got
    assert m1 == m2
    assert m1["prev"] == int(nt.psql(
        "SELECT max(id) FROM notifications WHERE user_id = %d AND "
        "kind = 'e2e' AND id < %d" % (c["id"], m1["notification"]["id"])))


def test_a_failed_publish_is_logged_and_the_job_done(nt, http):
    c, hc = user(nt, http)
    key = "notification:e2e-unpublished:%d" % c["id"]
    p = nt.program("keel-queues", "enqueue", "--key", key, "notifications",
                   "password_changed", json.dumps({"userId": c["id"]}))
    assert p.returncode == 0, p.stderr
    # Redis answers every command but PUBLISH (an error reply, as it
    # would be for a Redis that can't take it).
    redis_cli(nt, "ACL", "SETUSER", "default", "-publish")
    try:
        p = nt.program("keel-drain-notifications", "--until-empty",
                       "--budget", 60, env=DRAIN_ENV, timeout=90)
    finally:
        redis_cli(nt, "ACL", "SETUSER", "default", "+publish")
    assert p.returncode == 0, p.stderr
    assert "processed=1 failed=0 retried=0 " in p.stdout, p.stdout
    assert "publishing to user %d" % c["id"] in p.stderr, p.stderr
    assert rows_by_key(nt, key) == "1"
    assert [n["kind"] for n in listing(http, hc).json()["data"]] == [
        "password_changed"]


def test_the_stream_gets_a_producers_notification_by_a_real_ticket(
        nt, http):
    """The seam with the stream app (stream/stream.c): a ticket from
    this app opens it, a contract's job run by the real drainer arrives
    as the event the list shows, and the ticket works once."""
    c, hc = user(nt, http)
    ticket = http.post("/api/notifications/stream-ticket",
                       headers=hc).json()["ticket"]
    s = SSE.open(nt, query="?ticket=" + ticket)
    try:
        assert s.status == 200, s.body
        s.next_event(0.3)           # subscribed: nothing yet
        contract(http, c["id"], "2035-01-01")
        relay_and_drain(nt)
        ev = s.next_event(5)
    finally:
        s.close()
    (item,) = listing(http, hc).json()["data"]
    assert ev is not None
    assert (int(ev["id"]), ev["event"]) == (item["id"], "notification")
    assert json.loads(ev["data"]) == item
    again = SSE.open(nt, query="?ticket=" + ticket)
    try:
        assert again.status == 401
    finally:
        again.close()


# --------------------------------------------------------------- tickets

def test_ticket_is_single_secret_stored_hashed_for_60_s(nt, http):
    u, h = user(nt, http)
    r = http.post("/api/notifications/stream-ticket", headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"ticket", "expiresAt"}
    assert TICKET.match(body["ticket"])
    key = "keel:sse:ticket:" + hashlib.sha256(
        body["ticket"].encode()).hexdigest()
    # Bound to the session that took it: its id (the token's SHA-256).
    sid = hashlib.sha256(h["Authorization"][7:].encode()).hexdigest()
    assert redis_cli(nt, "GET", key) == "%d:%s" % (u["id"], sid)
    assert 0 < int(redis_cli(nt, "TTL", key)) <= 60
    # The ticket itself is nowhere in Redis: not a key, not a value.
    assert redis_keys_holding(nt, body["ticket"]) == []
    # (The walk finds what it looks for: the ticket's hashed key.)
    assert redis_keys_holding(nt, key[len("keel:sse:ticket:"):]) == [key]
    # Each ask is a new ticket.
    r2 = http.post("/api/notifications/stream-ticket", headers=h)
    assert r2.json()["ticket"] != body["ticket"]


def test_ticket_answer_is_never_kept_for_idempotency(nt, http):
    _, h = user(nt, http)
    h = dict(h, **{"Idempotency-Key": "ticket-1"})
    r1 = http.post("/api/notifications/stream-ticket", headers=h)
    r2 = http.post("/api/notifications/stream-ticket", headers=h)
    assert (r1.status_code, r2.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in r2.headers
    assert r1.json()["ticket"] != r2.json()["ticket"]


def test_ticket_needs_a_session(nt, anon):
    assert_error(anon.post("/api/notifications/stream-ticket"), 401,
                 "unauthorized")


def test_ticket_without_redis_is_503(nt, http):
    _, h = user(nt, http)
    with redis_down(nt):
        r = http.post("/api/notifications/stream-ticket", headers=h)
        assert_error(r, 503, "unavailable")
