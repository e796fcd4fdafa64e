# SPDX-License-Identifier: ISC
"""test_redis_cluster.py -- keel on a real Redis Cluster (issue 14 item 4):
three masters of Debian's redis-server in cluster mode, made by the test
(rcluster.py), and a stack whose apps and programs run with
REDIS_CLUSTER=1 and REDIS_URL naming one of them (lib/redis.c's cluster
mode: the slot map, a connection per node, MOVED and ASK followed).

It holds that keel's keys really spread over the three nodes (so the
routing is exercised, not one lucky node), that a user's keys share the
user's slot and a queue's the queue's; then, on the cluster: login,
session use and logout, the oldest session ended past KEEL_SESSION_MAX
and every session ended by a deactivation (the cluster mode's
command-at-a-time paths); exact rate limits under concurrency, per
address and per user, and the auth limiter on a signed-in request whose
limiters span two slots (refused places given back); a login's two
buckets, its spelling's from one address and its account's from every
address, in two slots and checked in turn, and their twins under
KEEL_SECRET_FALLBACK while the secret rotates; an idempotent
replay, and one client's kept answers bounded; the queues drained exactly once by two drainers, a dead letter
retried; notification streams on the cluster; the leaderboard drained
and rebuilt; a slot moved under the running apps (MOVED) and a slot
being migrated (ASK) followed; and, last, a master killed: its replica
promoted, the apps find it (the map is loaded again after a node
fails), and the sessions written before the crash still work.
"""

import concurrent.futures
import uuid

import pytest

from accounts import PASSWORD, bearer, login, make_user
from helpers import (BaseUrlSession, assert_error, own_stack, request,
                     wait_until)
from rcluster import ClusterError, RedisCluster
from sse import SSE
from test_auth_hardening import (AUTH_LIMIT, KELVIN, OwnAuth, auth_fields,
                                 keyed_name)
from test_idempotency import (
    max_answers_kept, small_limitapp,
    test_idem_replay_returns_first_answer as idem_replay,
    test_idem_same_key_other_body_is_422 as idem_mismatch)
from test_jobs import (FAST, drainers, enqueue, invitation, message_id, stats,
                       summary)
from test_limits import app  # noqa: F401 (a fixture)
from test_limits import client as client_ip, get, post
from test_secret_rotation import (
    test_login_windows_are_shared_by_a_half_rolled_fleet as rotating_logins)
from test_serve import assert_no_sanitizer_report

QUEUES = ("email", "noop", "leaderboard", "notifications")


@pytest.fixture(scope="module")
def cluster(request):
    c = RedisCluster(3, replicas=1)
    request.addfinalizer(c.stop)
    try:
        c.start()
    except (ClusterError, OSError) as e:
        pytest.fail("could not create the Redis Cluster: %s" % e)
    return c


@pytest.fixture(scope="module")
def stack(request, cluster):
    """This module's own stack, its apps and programs on the cluster."""
    return own_stack(request, "the stack on the cluster", env={
        "KEEL_STACK_REDIS_URL": cluster.urls(), "REDIS_CLUSTER": "1"})


@pytest.fixture(scope="module")
def web(stack):
    with BaseUrlSession(stack.base_url) as s:
        yield s


@pytest.fixture(scope="module")
def admin(stack, web):
    u = make_user(stack, "admin")
    return bearer(login(web, u["email"]))


def session_key(web, token):
    """keel:sess:<sha256 hex of the token> (auth.h)."""
    import hashlib
    return "keel:sess:" + hashlib.sha256(token.encode()).hexdigest()


def owner(cluster, key):
    """The port of the node that holds key, asked of every node without
    following redirects: exactly one must have it."""
    have = [p for p in cluster.ports
            if cluster.cli(p, "EXISTS", key, check=False) == "1"]
    assert len(have) == 1, (key, have)
    return have[0]


def on_other_nodes(cluster, n=3, make=lambda i: str(i)):
    """Values (from make(0), make(1), ...) whose tags {v} land on n
    different nodes, one each."""
    seen = {}
    i = 0
    while len(seen) < n:
        v = make(i)
        seen.setdefault(cluster.port_of("{%s}" % v), v)
        i += 1
    return list(seen.values())


# ---------------------------------------------------------- the layout

def test_cluster_has_three_masters_and_keel_keys_spread(cluster, stack,
                                                          web):
    assert len(cluster.masters()) == 3
    assert len({port for _, _, port in cluster.slots()}) == 3
    # A user's keys share the user's slot; a queue's the queue's.
    assert cluster.slot("keel:user-sess:{42}") == \
        cluster.slot("keel:ryw:{42}") == \
        cluster.slot("keel:rate:api:u:{42}") == cluster.slot("42")
    assert cluster.slot("keel:q:{email}:s") == \
        cluster.slot("keel:q:{email}:j:k1") == \
        cluster.slot("keel:q:{email}:x")
    # Users and queues land on every node, so requests go everywhere.
    users = [make_user(stack, "student") for _ in range(12)]
    ports = {cluster.port_of("{%d}" % u["id"]) for u in users}
    assert len(ports) >= 2, ports
    qports = {cluster.port_of("{%s}" % q) for q in QUEUES}
    assert len(qports) >= 2, qports
    # And keel writes them where the cluster says.
    for u in users:
        login(web, u["email"])
        assert owner(cluster, "keel:user-sess:{%d}" % u["id"]) == \
            cluster.port_of("{%d}" % u["id"])


# ------------------------------------------------------------ sessions

def test_login_session_and_logout_on_nodes_of_every_user(cluster, stack,
                                                         web):
    users = [make_user(stack, "student") for _ in range(6)]
    for u in users:
        tok = login(web, u["email"])
        h = bearer(tok)
        me = web.get("/api/auth/me", headers=h)
        assert me.status_code == 200 and me.json()["id"] == u["id"]
        sid = session_key(web, tok)[len("keel:sess:"):]
        assert sid in cluster.call("SMEMBERS",
                                   "keel:user-sess:{%d}" % u["id"])
        assert web.post("/api/auth/logout", headers=h).status_code == 204
        assert_error(web.get("/api/auth/me", headers=h), 401,
                     "unauthorized")
        assert cluster.call("EXISTS", session_key(web, tok)) == "0"
        assert sid not in cluster.call("SMEMBERS",
                                       "keel:user-sess:{%d}" % u["id"])


def test_oldest_session_ends_past_the_most_a_user_may_hold(cluster, stack,
                                                           web):
    u = make_user(stack, "student")
    toks = [login(web, u["email"]) for _ in range(21)]    # the most: 20
    assert int(cluster.call("SCARD", "keel:user-sess:{%d}" % u["id"])) == 20
    assert_error(web.get("/api/auth/me", headers=bearer(toks[0])), 401,
                 "unauthorized")
    for t in toks[1:]:
        assert web.get("/api/auth/me", headers=bearer(t)).status_code == 200


def test_deactivation_ends_every_session(cluster, stack, web, admin):
    u = make_user(stack, "student")
    hs = [bearer(login(web, u["email"])) for _ in range(3)]
    for h in hs:
        assert web.get("/api/auth/me", headers=h).status_code == 200
    r = web.delete("/api/users/%d" % u["id"], headers=admin)
    assert r.status_code == 200 and r.json()["isActive"] is False
    for h in hs:
        assert_error(web.get("/api/auth/me", headers=h), 401,
                     "unauthorized")
    assert cluster.call("SCARD", "keel:user-sess:{%d}" % u["id"]) == "0"


def test_writes_open_the_users_read_your_writes_window(cluster, stack, web,
                                                       admin):
    u = make_user(stack, "staff")
    h = bearer(login(web, u["email"]))
    r = web.post("/api/cars", headers=h, json={
        "licensePlate": "RC-%s" % uuid.uuid4().hex[:6].upper(),
        "manufacturer": "Cluster", "model": "Probe", "category": "compact",
        "year": 2020})
    assert r.status_code == 201, r.text
    assert int(cluster.call("PTTL", "keel:ryw:{%d}" % u["id"])) > 0
    # Read back at once: the window sends it to the primary.
    car = web.get("/api/cars/%s" % r.json()["id"], headers=h)
    assert car.status_code == 200


# ---------------------------------------------------------- rate limits

# test_limits.py's app (its limitapp with low limits: READ 30/60, WRITE
# 50/60, AUTH 3/60) and clients, on this module's stack.


def test_rate_limit_exact_per_address_under_concurrency(stack, app):
    ip = client_ip()            # READ: 30/60
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        codes = list(ex.map(lambda _: get(stack, "/api/_limit/read",
                                          ip).status_code, range(60)))
    assert codes.count(200) == 30 and codes.count(429) == 30, codes


def test_rate_limit_exact_per_user_across_addresses(cluster, stack, web,
                                                    app):
    u = make_user(stack, "student")
    h = bearer(login(web, u["email"]))
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        codes = list(ex.map(lambda _: get(stack, "/api/_limit/read",
                                          client_ip(), headers=h)
                            .status_code,
                            range(50)))
    assert codes.count(200) == 30 and codes.count(429) == 20, codes
    # The user's list, in the user's slot, on the user's node.
    key = "keel:rate:read:u:{%d}" % u["id"]
    assert owner(cluster, key) == cluster.port_of(key)
    assert int(cluster.call("LLEN", key)) == 30


def test_auth_limit_on_a_signed_in_request_spanning_two_slots(cluster,
                                                              stack, web,
                                                              app):
    # api and write key on the user, auth on the address: two slots,
    # checked in turn.  AUTH 3/60: three failures, then 429s whose
    # places in the user's lists are given back.
    u = make_user(stack, "student")
    h = bearer(login(web, u["email"]))
    ip = client_ip()
    while cluster.port_of("{%s}" % ip) == cluster.port_of("{%d}" % u["id"]):
        ip = client_ip()
    body = {"login": "someone", "password": "wrong"}
    codes = [post(stack, "/api/_limit/auth/login", ip, headers=h, json=body)
             .status_code for _ in range(6)]
    assert codes == [401, 401, 401, 429, 429, 429], codes
    assert int(cluster.call("LLEN", "keel:rate:write:u:{%d}" % u["id"])) \
        == 3
    # A success gives its auth place back: the address may still fail 0
    # more times, but the user's writes go on elsewhere.
    r = post(stack, "/api/_limit/write", client_ip(), headers=h)
    assert r.status_code == 201


# -------------------------------------------------------- login buckets

# keel_limit_account() on the cluster (lib/limit.c's account_cluster): a
# login's bucket of one address is tagged with the login as the lookup
# folds it, its account's of every address with the account, so they
# sit in two slots -- here on two nodes -- and are checked in turn.
# test_auth_hardening.py's single-Redis tests of them, on the cluster,
# with each bucket looked at where the cluster keeps it.

def spelling_key(stack, login_folded, addr):
    """The bucket of a folded login from addr (auth.c's auth_buckets:
    lower(login) hashed under a key of stack's KEEL_SECRET)."""
    h = keyed_name(stack.env["KEEL_SECRET"], login_folded)
    return "keel:rate:auth:{s:login:%s}:%s" % (h, addr)


def account_key(uid):
    """The bucket of account uid over every address."""
    return "keel:rate:auth:{id:%d}" % uid


def user_with_buckets_apart(cluster, stack, k=False):
    """make_user's student whose email's buckets and account's bucket are
    on two nodes (with an email holding a 'k' when k)."""
    for _ in range(64):
        u = make_user(stack, "student")
        if k:
            u["email"] = "kate-%s@e2e.test" % uuid.uuid4().hex[:12]
            stack.psql("UPDATE users SET email = '%s' WHERE id = %d"
                       % (u["email"], u["id"]))
        if cluster.port_of(spelling_key(stack, u["email"], "x")) != \
                cluster.port_of(account_key(u["id"])):
            return u
    pytest.fail("no user whose buckets are on two nodes")


# The auth app's own, trusting lighttpd's X-Forwarded-For (test_limits'
# clients are made-up addresses).
PROXIED = {"TRUSTED_PROXIES": "127.0.0.1, ::1"}


def login_via(stack, ip, who, password):
    """A login from client address ip (X-Forwarded-For, as test_limits'
    clients): the answer."""
    return post(stack, "/api/auth/login", ip,
                json={"login": who, "password": password})


def test_cluster_login_spent_email_locks_not_its_account_elsewhere(
        cluster, stack):
    """Five wrong passwords on an email from one address: that address's
    email is refused however spelled (KELVIN SIGN, folded by the lookup
    alone, reaches the login's own bucket: its check refuses), while the
    username from the same address, and the email from another, still
    log in."""
    u = user_with_buckets_apart(cluster, stack, k=True)
    ip, elsewhere = client_ip(), client_ip()
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT,
                 **PROXIED):
        spent = [login_via(stack, ip, u["email"], "wrong-%d" % i)
                 .status_code for i in range(AUTH_LIMIT + 1)]
        upper = login_via(stack, ip, u["email"].upper(), PASSWORD)
        kelvin = login_via(stack, ip, KELVIN + u["email"][1:], PASSWORD)
        by_name = login_via(stack, ip, u["username"], PASSWORD)
        other = login_via(stack, elsewhere, u["email"], PASSWORD)
    assert spent == [401] * AUTH_LIMIT + [429], spent
    assert upper.status_code == 429, upper.text
    assert kelvin.status_code == 429, kelvin.text
    assert int(kelvin.headers["Retry-After"]) > 0
    assert by_name.status_code == 200, by_name.text
    assert other.status_code == 200, other.text
    # The email's bucket of this address holds its five failures, on its
    # own node; the account's the same five (the refusals and the
    # successes kept no place), on another.
    key = spelling_key(stack, u["email"], ip)
    assert owner(cluster, key) == cluster.port_of(key)
    assert cluster.call("LLEN", key) == str(AUTH_LIMIT)
    acct = account_key(u["id"])
    assert owner(cluster, acct) == cluster.port_of(acct) != \
        cluster.port_of(key)
    assert cluster.call("LLEN", acct) == str(AUTH_LIMIT)
    assert cluster.call("LLEN", spelling_key(stack, u["email"],
                                             elsewhere)) == "0"


def test_cluster_login_account_bucket_holds_over_every_address(cluster,
                                                               stack):
    """KEEL_RATELIMIT_AUTH_ACCOUNT on the cluster: seven failures from
    three addresses spend the account's bucket, and then no address gets
    a password checked, the right one neither; the 429 shows the spent
    bucket, and the place the login's own bucket took is given back."""
    u = user_with_buckets_apart(cluster, stack)
    ips = [client_ip() for _ in range(3)]
    late = [client_ip() for _ in range(2)]
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="3/900",
                 KEEL_RATELIMIT_AUTH_ACCOUNT="7/900", **PROXIED):
        codes = [login_via(stack, ips[i // 3], u["email"], "wrong-%d" % i)
                 .status_code for i in range(7)]
        refused = [login_via(stack, ip, u["email"], PASSWORD)
                   for ip in late]
    assert codes == [401] * 7, codes
    assert [r.status_code for r in refused] == [429, 429], \
        [r.text for r in refused]
    for r in refused:
        assert int(r.headers["Retry-After"]) > 0
        assert ("auth-account", 0) in auth_fields(r), r.headers["RateLimit"]
        assert '"auth-account";q=7;w=900' in r.headers["RateLimit-Policy"]
    assert cluster.call("LLEN", account_key(u["id"])) == "7"
    for ip in late:
        assert cluster.call("LLEN",
                            spelling_key(stack, u["email"], ip)) == "0"


def test_cluster_login_counts_say_nothing_of_which_logins_are_one(
        cluster, stack):
    """One wrong password on an email, then one on its username: the
    RateLimit fields the username's answer shows are a missing
    username's (the account's bucket of every address, in its own slot,
    stays out of the headers until spent)."""
    u = user_with_buckets_apart(cluster, stack)
    missing = "nobody_" + uuid.uuid4().hex[:12]
    ip = client_ip()
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT,
                 **PROXIED):
        assert login_via(stack, ip, u["email"], "wrong-1").status_code \
            == 401
        own = login_via(stack, ip, u["username"], "wrong-2")
        other = login_via(stack, ip, missing, "wrong-2")
    assert own.status_code == other.status_code == 401
    assert auth_fields(own) == auth_fields(other), (
        own.headers["RateLimit"], other.headers["RateLimit"])
    assert own.headers["RateLimit-Policy"] == \
        other.headers["RateLimit-Policy"]
    # Not for want of a count: the account's bucket holds both tries.
    assert cluster.call("LLEN", account_key(u["id"])) == "2"


def test_cluster_login_windows_shared_while_the_secret_rotates(stack, web):
    # test_secret_rotation.py's: with KEEL_SECRET_FALLBACK each bucket
    # named by a login's hash has a twin in a slot of its own, checked
    # in its turn, and hosts of either secret count together.
    rotating_logins(stack, web)


# --------------------------------------------------------- idempotency

def test_idempotent_replay_and_mismatch(stack):
    # test_idempotency.py's, on the cluster (a key: one slot, any node).
    # From an address of its own (the limit app trusts X-Forwarded-For):
    # the module's failed logins before it are writes of web's address,
    # and the limit app's small write limit refused it (429).
    with BaseUrlSession(stack.base_url) as s:
        s.headers["X-Forwarded-For"] = client_ip()
        idem_replay(s)
        idem_mismatch(s)


def test_idempotent_answers_bounded_per_client(stack, cluster):
    # test_idempotency.py's, on the cluster: the client's index in one
    # slot, its answers in others, the oldest deleted a command at a time.
    with small_limitapp(stack):
        max_answers_kept(stack, cluster.call)


# --------------------------------------------------------------- queues

@pytest.fixture
def jobs(stack):
    stack.psql("DELETE FROM outbox")
    for q in QUEUES:
        p = stack.program("keel-queues", "purge", q, "all")
        assert p.returncode == 0, p.stderr
    stack.clear_mail()
    stack.set_smtp_mode("accept")
    yield stack
    stack.set_smtp_mode("accept")


def test_queues_drained_exactly_once_by_two_drainers(jobs, tmp_path):
    keys = ["rc-%d-%s" % (i, uuid.uuid4().hex[:6]) for i in range(12)]
    for k in keys:
        enqueue(jobs, "invitation", invitation(), key=k)
    enqueue(jobs, "invitation", invitation(), key=keys[0])  # known: once
    assert stats(jobs)["waiting"] == 12
    hosts = drainers(jobs, tmp_path, 2)
    outs = [h.communicate(timeout=60)[0] for h in hosts]
    assert all(h.returncode == 0 for h in hosts), outs
    assert sum(summary(o)["processed"] for o in outs) == 12
    ids = sorted(m["Message-ID"] for m in jobs.mail())
    assert ids == sorted(message_id(k) for k in keys)
    st = stats(jobs)
    assert st["waiting"] == st["active"] == st["failed"] == 0
    assert st["completed"] == 12


def test_queue_dead_letter_retried(jobs):
    jobs.set_smtp_mode("reject")
    enqueue(jobs, "invitation", invitation(), key="rc-again")
    p = jobs.program("keel-drain-email", "--until-empty", "--budget", 30,
                     env=FAST, timeout=60)
    assert p.returncode == 0, p.stderr
    assert stats(jobs)["failed"] == 1
    jobs.set_smtp_mode("accept")
    p = jobs.program("keel-queues", "retry-failed", "email")
    assert p.returncode == 0 and "moved 1" in p.stdout, p.stdout
    p = jobs.program("keel-drain-email", "--until-empty", "--budget", 30,
                     env=FAST, timeout=60)
    assert p.returncode == 0, p.stderr
    (m,) = jobs.mail()
    assert m["Message-ID"] == message_id("rc-again")
    assert stats(jobs)["failed"] == 0


# ---------------------------------------------------------- leaderboard

def test_leaderboard_drained_and_rebuilt_on_the_cluster(cluster, stack,
                                                        web):
    # The drainer's board_add (a board and its fresh key: one tag), the
    # rebuild's pipelined bulk load over several boards (command by
    # command, each on its board's node) and its swap, and the page.
    from test_leaderboard import drain, new_test, rebuild, submit, ranks
    for q in ("leaderboard", "notifications"):
        assert stack.program("keel-queues", "purge", q, "all").returncode \
            == 0
    t = new_test(stack)
    a, b, c = (make_user(stack, "student")["id"] for _ in range(3))
    submit(stack, t, a, 90)
    submit(stack, t, b, 80)
    drain(stack)
    key = "keel:lb:{t%d:all:1970-01-01}" % t
    assert owner(cluster, key) == cluster.port_of(key)
    h = bearer(login(web, make_user(stack, "student")["email"]))
    page = web.get("/api/leaderboard", params={"testId": t, "period": "all"},
                   headers=h)
    assert page.status_code == 200, page.text
    assert ranks(page.json()) == [(a, 1, 90, 1), (b, 2, 80, 1)]
    # An attempt only a rebuild finds: the rebuild writes it on every
    # period's board of the test (several boards, several slots).
    stack.psql("INSERT INTO test_attempts (test_id, user_id, started_at, "
               "expires_at, submitted_at, score, correct, total, answers, "
               "answer_key) VALUES (%d, %d, now() - interval '1 minute', "
               "now() + interval '1 hour', now(), 85, 85, 100, '{}', '{}')"
               % (t, c))
    out = rebuild(stack, "--test", t)
    assert "failed=0" in out, out
    page = web.get("/api/leaderboard", params={"testId": t, "period": "all"},
                   headers=h)
    assert ranks(page.json()) == [(a, 1, 90, 1), (c, 2, 85, 1),
                                  (b, 3, 80, 1)]
    assert cluster.call("EXISTS", key + ":new") == "0"


# ------------------------------------------------------------- streams

def notify_via(cluster, port, stack, uid, title="on the cluster"):
    """A notification for uid as the drainer makes it (test_stream.py's
    row), published on the node at port; its id."""
    from test_stream import insert
    import json
    nid, prev, item = insert(stack, uid, title)
    msg = json.dumps({"userId": uid, "prev": prev,
                      "notification": json.loads(item)})
    cluster.cli(port, "PUBLISH", "keel:notify:%d" % uid, msg)
    return nid


def test_streams_open_by_token_and_ticket_and_get_live_events(cluster,
                                                              stack, web):
    # The stream app (hiredis async): the session and the ticket on
    # their nodes, the lease on the user's; a notification published on
    # a node the subscription isn't on still arrives (Redis 7 broadcasts
    # a PUBLISH to the whole cluster).
    users = []
    for _ in range(3):
        u = make_user(stack, "student")
        u["h"] = bearer(login(web, u["email"]))
        users.append(u)
    for i, u in enumerate(users):
        if i % 2 == 0:
            s = SSE.open(stack, headers=u["h"])
        else:
            r = web.post("/api/notifications/stream-ticket", headers=u["h"])
            assert r.status_code == 201, r.text
            s = SSE.open(stack, query="?ticket=" + r.json()["ticket"])
        try:
            assert s.status == 200, s.body
            s.next_event(0.3)
            key = "keel:sse:open:%d" % u["id"]
            assert owner(cluster, key) == cluster.port_of(key)
            # On each node in turn: wherever the subscription is, one
            # PUBLISH reaches it (Redis 7 broadcasts it).
            nid = notify_via(cluster, cluster.ports[i % 3], stack, u["id"])
            ev = s.next_event(3)
            assert ev is not None and int(ev["id"]) == nid, ev
        finally:
            s.close()
        # The place is given back (ZREM on the user's node).
        wait_until(lambda: cluster.call("ZCARD", key) == "0", 5,
                   "the stream's place given back")


def test_a_logout_on_the_cluster_ends_its_stream_and_its_tickets(cluster,
                                                                 stack, web):
    # The session's end announced by a command of its own (auth.c's
    # cluster_end); a ticket taken (GETDEL) and its session read on
    # their own nodes, a command each (stream.c).
    from test_stream import ended_for, until_end
    u = make_user(stack, "student")
    u["h"] = bearer(login(web, u["email"]))
    t = [web.post("/api/notifications/stream-ticket",
                  headers=u["h"]).json()["ticket"] for _ in range(2)]
    s = SSE.open(stack, query="?ticket=" + t[0])
    try:
        assert s.status == 200, s.body
        assert web.post("/api/auth/logout", headers=u["h"]).status_code == 204
        got, other = until_end(s)
        assert got == []
        ended_for(other, "session_ended")
    finally:
        s.close()
    assert SSE.open(stack, query="?ticket=" + t[1]).status == 401


# ------------------------------------------------- resharding, redirects

def test_moved_slot_is_followed_by_running_apps(cluster, stack, web):
    # Warm every worker's slot map, then move the user's slot (with its
    # keys) to another node under them: the next requests get MOVED.
    u = make_user(stack, "student")
    h = bearer(login(web, u["email"]))
    for _ in range(8):
        assert web.get("/api/auth/me", headers=h).status_code == 200
    key = "keel:user-sess:{%d}" % u["id"]
    slot, src = cluster.slot(key), cluster.port_of(key)
    dst = next(p for p in cluster.ports if p != src)
    cluster.move_slot(slot, dst)
    assert owner(cluster, key) == dst
    for _ in range(8):
        assert web.get("/api/auth/me", headers=h).status_code == 200
    # At least one worker had the old map, and said it followed.
    assert "redis: slot %d moved to 127.0.0.1:%d" % (slot, dst) in \
        stack.log("auth")
    h2 = bearer(login(web, u["email"]))         # index: EVALSHA there
    assert web.get("/api/auth/me", headers=h2).status_code == 200
    assert int(cluster.call("SCARD", key)) == 2
    assert web.post("/api/auth/logout", headers=h).status_code == 204
    assert int(cluster.call("SCARD", key)) == 1


def test_slot_being_migrated_is_followed_with_asking(cluster, stack, web):
    # A user whose index doesn't exist yet, in a slot half-way through a
    # migration: the source answers ASK, keel asks the target, which
    # holds the new index once the migration ends.
    while True:     # a slot holding no other test's keys (the move)
        u = make_user(stack, "student")
        key = "keel:user-sess:{%d}" % u["id"]
        slot, src = cluster.slot(key), cluster.port_of(key)
        if cluster.cli(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == "0":
            break
    dst = next(p for p in cluster.ports if p != src)
    src_id, dst_id = cluster.node_id(src), cluster.node_id(dst)
    cluster.cli(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    cluster.cli(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    try:
        h = bearer(login(web, u["email"]))
        assert cluster.cli(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == "0"
        assert cluster.cli(dst, "CLUSTER", "GETKEYSINSLOT", slot,
                           10).split() == [key]
    finally:
        for p in [dst, src] + [p for p in cluster.ports
                               if p not in (src, dst)]:
            cluster.cli(p, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    assert owner(cluster, key) == dst
    assert web.get("/api/auth/me", headers=h).status_code == 200


# ------------------------------------------------------------ failover

def test_master_killed_its_promoted_replica_is_found(cluster, stack, web):
    # Last: it takes a master away for good -- the first of REDIS_URL's
    # seeds.  A user whose keys are on it, written and replicated (WAIT)
    # before the crash.
    seed = cluster.ports[0]
    while True:
        u = make_user(stack, "student")
        key = "keel:user-sess:{%d}" % u["id"]
        if cluster.port_of(key) == seed:
            break
    tok = login(web, u["email"])
    h = bearer(tok)
    assert web.get("/api/auth/me", headers=h).status_code == 200
    assert int(cluster.cli(seed, "WAIT", 1, 5000)) == 1
    cluster.kill(seed)

    def promoted():     # the cluster fails it over (node timeout 3 s)
        try:
            return cluster.port_of(key) != seed
        except ClusterError:
            return False            # the slot's master is failing
    wait_until(promoted, 30, "the replica promoted")
    new = cluster.port_of(key)
    assert new in cluster.replicas

    def me(h):      # own connections: lighttpd closed the idle ones
        return request("GET", stack.url("/api/auth/me"), headers=h,
                       timeout=30).status_code
    def everyone_agrees():  # each live node's view: the slot is new's
        slot = cluster.slot(key)
        for port in cluster.live():
            for line in cluster.cli(port, "CLUSTER", "NODES").splitlines():
                f = line.split()
                if "master" not in f[2] or "fail" in f[2]:
                    continue
                at = int(f[1].split("@")[0].rsplit(":", 1)[1])
                for r in f[8:]:
                    lo, _, hi = r.partition("-")
                    if not r.startswith("[") and \
                            int(lo) <= slot <= int(hi or lo) and at != new:
                        return False
        return True
    wait_until(everyone_agrees, 20, "every node naming the new master")
    # Every worker finds the new master at its first call: the node it
    # knew can't be reached, so it loads the map from another node and
    # sends the command there -- no request fails once the cluster has
    # failed over, whichever worker serves it.
    for _ in range(12):
        assert me(h) == 200
    assert session_key(web, tok)[len("keel:sess:"):] in \
        cluster.cli(new, "SMEMBERS", key).split()
    with BaseUrlSession(stack.base_url) as fresh:
        h2 = bearer(login(fresh, u["email"]))
    assert me(h2) == 200
    assert int(cluster.cli(new, "SCARD", key)) == 2
    # /health's Redis check pings a master the map names, not the dead
    # node it may have been talking to.
    wait_until(lambda: request("GET", stack.url("/health"),
                               timeout=30).status_code == 200, 20,
               "/health after the failover")
    # A program started now finds the cluster from the other seeds.
    p = stack.program("keel-queues", "stats", "email")
    assert p.returncode == 0, p.stderr
    # The stream app opens streams (the session and the lease on their
    # masters) and its subscription moved off the dead node: a
    # notification arrives (live, or by the catch-up that follows a
    # subscription's return).  An open that reaches the dead master
    # first answers 503 (Retry-After) and reloads the map: a client
    # retries, as browsers' EventSource does.
    def opened():
        o = SSE.open(stack, headers=h2)
        if o.status == 200:
            return o
        assert o.status == 503, o.body
        o.close()
        return None
    s = wait_until(opened, 20, "a stream open after the failover")
    try:
        s.next_event(0.3)
        nid = notify_via(cluster, cluster.live()[0], stack, u["id"])
        ev = s.next_event(15)
        assert ev is not None and int(ev["id"]) == nid, ev
    finally:
        s.close()


def test_stream_stops_cleanly_on_the_cluster(cluster, stack):
    """Last: the stream app stops (SIGTERM) with its slot map and its
    subscription open; freeing the subscription calls its disconnect
    callback, which must not reach the map freed before it (ASan)."""
    stack.stop_component("stream")
    assert_no_sanitizer_report(stack.log("stream"))
