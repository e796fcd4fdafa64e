# SPDX-License-Identifier: ISC
"""test_auth.py -- login, sessions, logout, password reset (API.md "Auth
and users"; issue 3).

Sessions are checked where they live: Redis holds keel:sess:<sha256 of the
token>, never the token itself.  The Redis-down test stops Redis and
starts it again in a `finally`; sessions survive the restart (AOF).
"""

import hashlib
import json
import re
import statistics
import time
import uuid

import pytest

from accounts import PASSWORD, bearer, login, make_user, session_for
from helpers import (Held, assert_error, link_tokens, redis_cli, request,
                     wait_until)
from test_jobs import drain, jobs  # noqa: F401

USER_FIELDS = {"id", "email", "username", "name", "role", "isActive",
               "createdAt", "updatedAt"}


def requests_for(stack, email):
    """The payloads and keys of the outbox rows asking a reset email for
    address email: what a reset request writes, and all it writes."""
    out = stack.psql("SELECT payload::text, idempotency_key FROM outbox "
                     "WHERE queue = 'email' AND kind = "
                     "'password_reset_request' AND payload->>'email' = '%s'"
                     " ORDER BY id" % email)
    return [(json.loads(line.split("|")[0]), line.split("|")[1])
            for line in out.splitlines() if line]


def reset_link(jobs, http, email):
    """Ask for a reset of email and let the drainer send it, as cron
    would; the token of the link it mailed."""
    r = http.post("/api/auth/password-reset", json={"email": email})
    assert r.status_code == 202
    drain(jobs)
    return link_tokens(jobs, email)[-1]


# ------------------------------------------------------------------ login

def test_login_by_email_returns_token_and_user(stack, http):
    u = make_user(stack, "customer")
    r = http.post("/api/auth/login", json={"login": u["email"],
                                           "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["token"]) == 43
    assert body["expiresAt"].endswith("Z")
    assert set(body["user"]) == USER_FIELDS
    assert body["user"]["id"] == u["id"]
    assert body["user"]["role"] == "customer"
    assert "password" not in r.text.lower()


def test_login_by_username_any_case(stack, http):
    u = make_user(stack, "student")
    token = login(http, u["username"].upper())
    me = http.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["username"] == u["username"]


def test_session_stored_only_as_token_hash(stack, http):
    u = make_user(stack, "staff")
    token = login(http, u["email"])
    sid = hashlib.sha256(token.encode()).hexdigest()
    assert redis_cli(stack, "HGET", "keel:sess:" + sid, "uid") == str(u["id"])
    assert redis_cli(stack, "HGET", "keel:sess:" + sid, "role") == "staff"
    exp = int(redis_cli(stack, "HGET", "keel:sess:" + sid, "exp"))
    ttl = int(redis_cli(stack, "TTL", "keel:sess:" + sid))
    assert 0 < ttl <= 86400 and abs((exp - time.time()) - ttl) < 5
    assert sid in redis_cli(stack, "SMEMBERS", "keel:user-sess:%d" % u["id"])
    assert redis_cli(stack, "EXISTS", "keel:sess:" + token) == "0"
    assert token not in redis_cli(stack, "KEYS", "*")


def test_wrong_password_and_unknown_user_get_the_same_401(stack, http):
    u = make_user(stack, "customer")
    wrong = http.post("/api/auth/login", json={"login": u["email"],
                                               "password": "not-the-one-1"})
    unknown = http.post("/api/auth/login", json={
        "login": "nobody-%d@e2e.test" % time.time_ns(),
        "password": "not-the-one-1"})
    b1 = assert_error(wrong, 401, "unauthorized")
    b2 = assert_error(unknown, 401, "unauthorized")
    assert b1 == b2
    assert wrong.headers.get("WWW-Authenticate") == \
        unknown.headers.get("WWW-Authenticate")


def test_unknown_user_costs_a_hash_like_a_wrong_password(stack, http):
    # A fresh account per attempt keeps the failed-login limiter out of it.
    def timed(who):
        t0 = time.monotonic()
        r = http.post("/api/auth/login", json={"login": who,
                                               "password": "x" * 12})
        assert r.status_code == 401
        return time.monotonic() - t0

    def known_login():
        return timed(make_user(stack, "customer")["email"])

    def unknown_login():
        return timed("ghost-%d@e2e.test" % time.time_ns())

    known_login(), unknown_login()      # warm both paths
    # Interleaved, so load from elsewhere hits both alike.
    known, unknown = [], []
    for _ in range(7):
        known.append(known_login())
        unknown.append(unknown_login())
    known, unknown = statistics.median(known), statistics.median(unknown)
    # Both spend one Argon2id verification (tens of ms); skipping it
    # would make the unknown login several times faster.
    assert unknown > known * 0.6, (known, unknown)


def test_inactive_and_passwordless_users_cannot_log_in(stack, http):
    off = make_user(stack, "customer", active=False)
    invited = make_user(stack, "customer", password_hash=None)
    for who in (off["email"], invited["email"]):
        r = http.post("/api/auth/login", json={"login": who,
                                               "password": PASSWORD})
        assert_error(r, 401, "unauthorized")


@pytest.mark.parametrize("body", [
    {}, {"login": "a"}, {"password": "x"}, {"login": 5, "password": "x"},
    {"login": "a", "password": "b", "extra": 1},
])
def test_login_bad_bodies_are_422(http, body):
    r = http.post("/api/auth/login", json=body)
    assert_error(r, 422, "validation_failed")


def test_login_sql_metacharacters_are_just_text(stack, http):
    for evil in ("' OR '1'='1", "admin'--", "x\"; DROP TABLE users; --"):
        r = http.post("/api/auth/login", json={"login": evil,
                                               "password": "' OR '1'='1"})
        assert_error(r, 401, "unauthorized")
    assert int(stack.psql("SELECT count(*) FROM users")) > 0


def test_login_huge_body_is_413(http):
    r = http.post("/api/auth/login", data=b"{" + b" " * (10 << 20) + b"}",
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 413


# --------------------------------------------------------------- sessions

def test_me_requires_a_session(anon):
    r = anon.get("/api/auth/me")
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for h in ("Bearer", "Bearer " + "A" * 43, "Basic dXNlcjpwYXNz",
              "Bearer ../../etc"):
        r = anon.get("/api/auth/me", headers={"Authorization": h})
        assert_error(r, 401, "unauthorized")


def test_logout_ends_the_session_at_once(stack, http):
    u, h = session_for(stack, http, "student")
    other = bearer(login(http, u["email"]))
    assert http.get("/api/auth/me", headers=h).status_code == 200
    assert http.post("/api/auth/logout", headers=h).status_code == 204
    assert_error(http.get("/api/auth/me", headers=h), 401, "unauthorized")
    # Only that session: the user's other login still works.
    assert http.get("/api/auth/me", headers=other).status_code == 200


def test_expired_session_is_401(stack, http):
    _, h = session_for(stack, http, "student")
    token = h["Authorization"].split()[1]
    sid = hashlib.sha256(token.encode()).hexdigest()
    # exp in the past (the key's TTL would end it too; this is the check
    # that covers a TTL lost in a restore).
    redis_cli(stack, "HSET", "keel:sess:" + sid, "exp", "1")
    assert_error(http.get("/api/auth/me", headers=h), 401, "unauthorized")


def test_redis_down_is_503_for_authenticated_routes(stack, http, anon):
    _, h = session_for(stack, http, "admin")
    stack.stop_component("redis")
    try:
        r = http.get("/api/auth/me", headers=h)
        assert_error(r, 503, "unavailable")
        r = http.get("/api/users", headers=h)
        assert_error(r, 503, "unavailable")
        # No token: still a plain 401, no Redis needed to say so.
        assert_error(anon.get("/api/users"), 401, "unauthorized")
    finally:
        stack.start_component("redis")
    # Sessions survive a Redis restart (AOF).
    deadline = time.monotonic() + 20
    while True:
        r = http.get("/api/auth/me", headers=h)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text


# --------------------------------------------------------- password reset

def test_reset_unknown_email_is_202_and_sends_nothing(jobs, http):
    email = "ghost-%d@e2e.test" % time.time_ns()
    tokens = jobs.psql("SELECT count(*) FROM one_time_tokens")
    r = http.post("/api/auth/password-reset", json={"email": email})
    assert r.status_code == 202
    # The same row as for a known address: the request can't tell them
    # apart, so its time doesn't either.  The drainer finds no one.
    ((payload, _),) = requests_for(jobs, email)
    assert payload == {"email": email}
    drain(jobs)
    assert link_tokens(jobs, email) == []
    assert jobs.psql("SELECT count(*) FROM one_time_tokens") == tokens


def test_reset_flow_single_use_and_ends_sessions(jobs, http):
    u, h = session_for(jobs, http, "customer")
    token = reset_link(jobs, http, u["email"])
    # The outbox asked for the email and held no link; the email went to
    # the user, by name.
    ((payload, idem),) = requests_for(jobs, u["email"])
    assert payload == {"email": u["email"]}
    # A random key: nothing in it names the account.
    assert re.fullmatch(r"password_reset_request:[0-9a-f]{24}", idem), idem
    (m,) = [m for m in jobs.mail() if u["email"] in m["X-Sink-Rcpt"]]
    assert m["To"].addresses[0].display_name == u["name"]

    # A too-short password is refused without using up the token.
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "short"})
    body = assert_error(r, 422, "validation_failed")
    assert "password" in body["fields"]

    new = "brand-new-password-42"
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": new})
    assert r.status_code == 204, r.text
    # Every session of the user ended; the new password works, the old
    # one does not.
    assert_error(http.get("/api/auth/me", headers=h), 401, "unauthorized")
    login(http, u["email"], new)
    r = http.post("/api/auth/login", json={"login": u["email"],
                                           "password": PASSWORD})
    assert_error(r, 401, "unauthorized")
    # Single use.
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "another-password-1"})
    body = assert_error(r, 400, "bad_request")
    assert "token" in body["fields"]
    assert new not in jobs.psql("SELECT payload::text FROM outbox")


def token_row(stack, token):
    """(purpose, seconds left, used) of token's row in one_time_tokens."""
    h = hashlib.sha256(token.encode()).hexdigest()
    row = stack.psql("SELECT purpose, extract(epoch FROM expires_at - now()),"
                     " used_at IS NOT NULL FROM one_time_tokens "
                     "WHERE hash = '%s'" % h)
    if not row:
        return None
    purpose, left, used = row.split("|")
    return purpose, float(left), used == "t"


def test_reset_token_is_stored_only_as_its_hash(jobs, http):
    u = make_user(jobs, "student")
    token = reset_link(jobs, http, u["email"])
    purpose, left, used = token_row(jobs, token)
    assert purpose == "reset" and not used
    assert 3500 < left <= 3600          # 1 h (API.md)
    assert token not in jobs.psql("SELECT string_agg(hash, ' ') FROM "
                                  "one_time_tokens")
    # Not in Redis at all any more: a reset needs no Redis (issue 5).
    assert redis_cli(jobs, "KEYS", "keel:once:*") == ""


def test_reset_token_expires(jobs, http):
    u = make_user(jobs, "student")
    token = reset_link(jobs, http, u["email"])
    jobs.psql("UPDATE one_time_tokens SET created_at = now() - interval "
               "'2 hours', expires_at = now() - interval '1 hour' "
               "WHERE hash = '%s'" % hashlib.sha256(token.encode()).hexdigest())
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "brand-new-password"})
    assert "token" in assert_error(r, 400, "bad_request")["fields"]
    login(http, u["email"])             # the password did not change


def test_reset_confirms_racing_use_the_token_once(jobs, http):
    from concurrent.futures import ThreadPoolExecutor
    u = make_user(jobs, "customer")
    token = reset_link(jobs, http, u["email"])

    def confirm(i):
        return request(
            "POST", jobs.url("/api/auth/password-reset/confirm"),
            timeout=30,
            json={"token": token, "password": "racing-password-%02d" % i})

    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(confirm, range(8)))
    codes = sorted(r.status_code for r in got)
    assert codes == [204] + [400] * 7, codes
    winner = [i for i, r in enumerate(got) if r.status_code == 204][0]
    login(http, u["email"], "racing-password-%02d" % winner)


def lock_waiters(stack):
    """How many clients of the stack's database wait on a lock."""
    return int(stack.psql("SELECT count(*) FROM pg_stat_activity WHERE "
                          "wait_event_type = 'Lock' AND "
                          "backend_type = 'client backend' AND "
                          "datname = current_database()"))


def test_reset_confirm_racing_a_patch_of_its_user_waits(jobs, http):
    """A confirm and an admin's PATCH of the same user's address take the
    user's row before the link's, so neither deadlocks (PostgreSQL would
    end one after deadlock_timeout): the PATCH, first in line, ends the
    links of the old address, and the confirm then finds its link used.
    A third session holds the row so both queue behind it in order."""
    from concurrent.futures import ThreadPoolExecutor
    u = make_user(jobs, "customer")
    token = reset_link(jobs, http, u["email"])
    _, admin = session_for(jobs, http, "admin")

    held = Held(jobs, "SELECT 1 FROM users WHERE id = %d FOR UPDATE"
                % u["id"])
    try:
        with ThreadPoolExecutor(2) as ex:
            patch = ex.submit(request, "PATCH",
                              jobs.url("/api/users/%d" % u["id"]),
                              headers=admin, timeout=30,
                              json={"email": "moved-" + u["email"]})
            wait_until(lambda: lock_waiters(jobs) == 1, 20, "the PATCH to wait")
            confirm = ex.submit(
                request, "POST",
                jobs.url("/api/auth/password-reset/confirm"), timeout=30,
                json={"token": token, "password": "a-password-raced"})
            wait_until(lambda: lock_waiters(jobs) == 2, 20,
                       "the confirm to wait")
            held.commit()
            p, c = patch.result(timeout=30), confirm.result(timeout=30)
    finally:
        held.abort()
    assert p.status_code == 200, p.text
    assert_error(c, 400, "bad_request")
    login(http, "moved-" + u["email"])


def move_while_a_link_is_made(jobs, admin, uid, new):
    """The drainer makes the link queued for account uid while an admin
    moves it to address new.  A held row lock queues the PATCH, then the
    drainer (after its lookup read the old address), so the PATCH
    commits between the lookup and the link."""
    from concurrent.futures import ThreadPoolExecutor
    assert jobs.program("keel-outbox-relay", "--once").returncode == 0
    held = Held(jobs, "SELECT 1 FROM users WHERE id = %d FOR UPDATE" % uid)
    drainer = None
    try:
        with ThreadPoolExecutor(1) as ex:
            patch = ex.submit(request, "PATCH",
                              jobs.url("/api/users/%d" % uid),
                              headers=admin, timeout=30, json={"email": new})
            wait_until(lambda: lock_waiters(jobs) == 1, 20,
                       "the PATCH to wait")
            drainer = jobs.spawn("keel-drain-email", "--until-empty",
                                 "--budget", 20)
            wait_until(lambda: lock_waiters(jobs) == 2, 20,
                       "the drainer to wait")
            held.commit()
            assert patch.result(timeout=30).status_code == 200
        _, err = drainer.communicate(timeout=40)
        assert drainer.returncode == 0, err
    finally:
        held.abort()
        if drainer is not None and drainer.poll() is None:
            drainer.kill()
            drainer.wait()


def test_reset_link_made_while_the_address_moves_dies_with_it(jobs, http):
    """No reset link sent to an address the account was moved from works,
    whichever of the move and the link commits first.  Before the fix
    the link was made after the PATCH had ended the old ones, mailed to
    the old address, and set the moved account's password (probe I)."""
    u = make_user(jobs, "student")
    old, new = u["email"], "moved-" + u["email"]
    _, admin = session_for(jobs, http, "admin")
    r = http.post("/api/auth/password-reset", json={"email": old})
    assert r.status_code == 202
    move_while_a_link_is_made(jobs, admin, u["id"], new)
    for token in link_tokens(jobs, old):
        r = http.post("/api/auth/password-reset/confirm",
                      json={"token": token, "password": "taken-over-pw-1"})
        assert_error(r, 400, "bad_request")
    assert jobs.psql("SELECT count(*) FROM one_time_tokens WHERE user_id "
                     "= %d AND used_at IS NULL" % u["id"]) == "0"
    login(http, new)


def test_invitation_made_while_its_address_is_corrected_goes_there(jobs,
                                                                    http):
    """An admin corrects a mistyped address as the invitation is made:
    the link goes to the corrected address, none to the mistyped one."""
    _, admin = session_for(jobs, http, "admin")
    typo = "typo-%s@e2e.test" % uuid.uuid4().hex[:10]
    r = http.post("/api/users", headers=admin, json={
        "email": typo, "username": "inv" + uuid.uuid4().hex[:10],
        "name": "Invited", "role": "student", "sendCredentials": True})
    assert r.status_code == 201, r.text
    fixed = "fixed-" + typo
    move_while_a_link_is_made(jobs, admin, r.json()["id"], fixed)
    assert link_tokens(jobs, typo) == []
    token = link_tokens(jobs, fixed)[-1]
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "invited-pw-123"})
    assert r.status_code == 204, r.text
    login(http, fixed, "invited-pw-123")


def test_new_password_kills_the_users_other_links(jobs, http):
    u = make_user(jobs, "student")
    first = reset_link(jobs, http, u["email"])
    second = reset_link(jobs, http, u["email"])
    assert first != second
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": second, "password": "the-newest-password"})
    assert r.status_code == 204, r.text
    # An older link (maybe leaked) dies with the password it was for.
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": first, "password": "an-older-link-pass"})
    assert_error(r, 400, "bad_request")
    login(http, u["email"], "the-newest-password")


def test_reset_of_a_deactivated_account_sends_nothing(jobs, http):
    u = make_user(jobs, "customer", active=False)
    r = http.post("/api/auth/password-reset", json={"email": u["email"]})
    assert r.status_code == 202
    drain(jobs)
    assert link_tokens(jobs, u["email"]) == []
    assert jobs.psql("SELECT count(*) FROM one_time_tokens WHERE user_id "
                      "= %d" % u["id"]) == "0"


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "' OR 1=1 --" * 4])
def test_reset_confirm_bad_tokens(http, token):
    r = http.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "long-enough-pass"})
    assert r.status_code in (400, 422), r.text
