# SPDX-License-Identifier: ISC
"""test_auth_faults.py -- auth and users when things fail or race
(DESIGN.md "When a dependency fails"; issues 3 and 5).

- A password reset asked for while Redis is down commits the request for
  its email in PostgreSQL; it waits in the outbox and is delivered, with a
  working link made as it is sent, once Redis is back.
- Confirming a reset while Redis is down answers 503 and changes nothing
  (the user's sessions can't be ended, so the password must not change).
- Reset and invitation emails are pushed to their stream right after the
  commit: the drainer alone delivers them, no relay needed.
- A login that races a deactivation or a password change leaves no live
  session.  The race is made deterministic by holding the change's
  transaction open in psql while the login runs.
"""

import hashlib
import subprocess
import threading
import time

from accounts import PASSWORD, bearer, login, make_user, session_for
from helpers import link_tokens, request, wait_until
from stack import psql_env
from test_jobs import jobs, relay_and_drain, stats  # noqa: F401


def pending(stack, email):
    """pushed_at IS NULL of each outbox row asking a reset for email."""
    out = stack.psql("SELECT pushed_at IS NULL FROM outbox WHERE queue = "
                     "'email' AND kind = 'password_reset_request' AND "
                     "payload->>'email' = '%s' ORDER BY id" % email)
    return [v == "t" for v in out.splitlines()]


def mail_token(stack, email):
    (token,) = link_tokens(stack, email)
    return token


def redis_down(stack):
    """Context manager: Redis stopped inside, started (and ready) after."""
    class _Down:
        def __enter__(self):
            stack.stop_component("redis")

        def __exit__(self, *exc):
            stack.start_component("redis")
            # The apps reconnect on their next call.
            assert wait_until(lambda: request(
                "GET", stack.url("/health"), timeout=10).json()["checks"]
                ["redis"]["status"] == "up", 20)
            return False
    return _Down()


# ------------------------------------------------------- Redis down

def test_password_reset_while_redis_is_down_is_delivered_after(jobs, anon):
    u = make_user(jobs, "customer")
    with redis_down(jobs):
        r = anon.post("/api/auth/password-reset", json={"email": u["email"]})
        assert r.status_code == 202, r.text
        # Committed; its push failed, so the job waits in the outbox.
        assert pending(jobs, u["email"]) == [True]
    s = relay_and_drain(jobs)
    assert s["processed"] == 1, s
    assert pending(jobs, u["email"]) == [False]
    # The link was made as the email went, not before.
    assert jobs.psql("SELECT count(*) FROM one_time_tokens WHERE "
                     "user_id = %d AND purpose = 'reset'" % u["id"]) == "1"
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": mail_token(jobs, u["email"]),
                        "password": "after-the-outage-1"})
    assert r.status_code == 204, r.text
    login(anon, u["email"], "after-the-outage-1")


def test_reset_confirm_while_redis_is_down_changes_nothing(jobs, anon):
    u, h = session_for(jobs, anon, "student")
    r = anon.post("/api/auth/password-reset", json={"email": u["email"]})
    assert r.status_code == 202
    relay_and_drain(jobs, relay=False)
    token = mail_token(jobs, u["email"])
    tid = hashlib.sha256(token.encode()).hexdigest()
    before = jobs.psql("SELECT password_hash FROM users WHERE id = %d"
                       % u["id"])
    with redis_down(jobs):
        r = anon.post("/api/auth/password-reset/confirm",
                      json={"token": token, "password": "not-yet-password"})
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "unavailable"
        # Nothing half-done: the password and the token are as they were.
        assert jobs.psql("SELECT password_hash FROM users WHERE id = %d"
                         % u["id"]) == before
        assert jobs.psql("SELECT used_at IS NULL FROM one_time_tokens "
                         "WHERE hash = '%s'" % tid) == "t"
    # The old session still works (nothing changed) ...
    assert wait_until(lambda: anon.get("/api/auth/me", headers=h)
                      .status_code == 200, 10)
    # ... until the same link is used with Redis back.
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "now-it-is-changed"})
    assert r.status_code == 204, r.text
    assert anon.get("/api/auth/me", headers=h).status_code == 401
    login(anon, u["email"], "now-it-is-changed")


# -------------------------------------------------- push after commit

def test_reset_email_is_on_the_stream_right_after_the_202(jobs, anon):
    u = make_user(jobs, "customer")
    r = anon.post("/api/auth/password-reset", json={"email": u["email"]})
    assert r.status_code == 202
    # Pushed by the request itself: no relay has run.
    assert stats(jobs)["waiting"] == 1
    assert pending(jobs, u["email"]) == [False]
    s = relay_and_drain(jobs, relay=False)
    assert s["processed"] == 1, s
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": mail_token(jobs, u["email"]),
                        "password": "pushed-at-once"})
    assert r.status_code == 204, r.text


def test_invitation_email_is_on_the_stream_right_after_the_201(jobs, http):
    tag = "%d" % time.time_ns()
    r = http.post("/api/users", json={
        "email": "pushed-%s@e2e.test" % tag, "username": "pushed" + tag,
        "name": "Pushed", "role": "student", "sendCredentials": True})
    assert r.status_code == 201, r.text
    assert stats(jobs)["waiting"] == 1
    s = relay_and_drain(jobs, relay=False)
    assert s["processed"] == 1, s
    (m,) = jobs.mail()
    assert m["To"].addresses[0].addr_spec == "pushed-%s@e2e.test" % tag


# --------------------------------------------------- login races

class HeldChange:
    """A psql session holding `sql` (an UPDATE of one users row) in an
    open transaction until commit()."""

    def __init__(self, stack, sql):
        self.stack = stack
        url, env = psql_env(stack.env["DATABASE_URL"])
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env)
        self.p.stdin.write("BEGIN;\n%s;\n" % sql)
        self.p.stdin.flush()
        tag = sql[:40].replace("'", "''")
        assert wait_until(lambda: stack.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = "
            "'idle in transaction' AND query LIKE '%s%%'" % tag) == "1", 10)

    def commit(self):
        self.p.stdin.write("COMMIT;\n")
        self.p.stdin.close()
        assert self.p.wait(timeout=30) == 0, self.p.stderr.read()


def race_login(stack, who, change_sql):
    """Logs in as who while change_sql is held uncommitted, commits it once
    the login waits on it (or has already finished), and returns the
    login's response."""
    held = HeldChange(stack, change_sql)
    out = {}

    def go():
        out["r"] = request("POST", stack.url("/api/auth/login"),
                           timeout=60,
                           json={"login": who, "password": PASSWORD})

    t = threading.Thread(target=go)
    t.start()
    try:
        # The login's re-check waits for the change's row lock.
        wait_until(lambda: not t.is_alive() or stack.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
            "'Lock' AND query LIKE '%FOR SHARE%'") == "1", 15)
    finally:
        held.commit()
        t.join(60)
    return out["r"]


def assert_no_live_session(stack, r):
    if r.status_code == 200:
        # Without the re-check the login "wins" the race: its session must
        # not work anyway.
        h = bearer(r.json()["token"])
        got = request("GET", stack.url("/api/cars"), headers=h, timeout=30)
        assert got.status_code == 401, "a live session survived the change"
    assert r.status_code == 401, r.text


def test_login_racing_deactivation_leaves_no_session(stack):
    u = make_user(stack, "customer")
    r = race_login(stack, u["email"], "UPDATE users SET is_active = false "
                   "WHERE id = %d" % u["id"])
    assert_no_live_session(stack, r)
    assert stack.psql("SELECT count(*) FROM users WHERE id = %d AND NOT "
                      "is_active" % u["id"]) == "1"


def test_login_racing_a_password_change_leaves_no_session(stack):
    u = make_user(stack, "student")
    # Any other Argon2id string: the old password no longer matches.
    other = "$argon2id$v=19$m=65536,t=2,p=1$" + "A" * 22 + "$" + "B" * 43
    r = race_login(stack, u["email"], "UPDATE users SET password_hash = "
                   "'%s' WHERE id = %d" % (other, u["id"]))
    assert_no_live_session(stack, r)


def test_login_waiting_on_an_unrelated_change_still_succeeds(stack):
    u = make_user(stack, "staff")
    r = race_login(stack, u["email"], "UPDATE users SET name = 'Renamed' "
                   "WHERE id = %d" % u["id"])
    assert r.status_code == 200, r.text
    h = bearer(r.json()["token"])
    assert request("GET", stack.url("/api/auth/me"), headers=h,
                   timeout=30).status_code == 200
