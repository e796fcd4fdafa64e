# SPDX-License-Identifier: ISC
"""test_secret_rotation.py -- rotating KEEL_SECRET with
KEEL_SECRET_FALLBACK (README "Rotating KEEL_SECRET").

KEEL_SECRET signs pagination cursors, keys idempotent requests'
fingerprints and names typed logins in the auth limiter's windows.  Each
test changes an app's secret the way an operator does (the app started
again with other values: OwnApp, on the stack's own socket) and shows,
for one of the three, what a change does without the fallback (a
cursor's next page is 400, an idempotent retry is refused as another
request, a login's failure window starts afresh) and that with the
previous secret as KEEL_SECRET_FALLBACK it keeps working; that nothing
is signed under the fallback, a cursor of neither secret is still 400,
and that once the fallback is dropped the old secret's cursors are 400
again.  The stack's own apps run under its KEEL_SECRET throughout.
"""

import os
import signal
import uuid

from accounts import make_user
from helpers import OwnApp, assert_error, car_body, new_car, wait_until

NEW = "new-secret-" + "n" * 32          # the secret rotated to
OTHER = "other-secret-" + "o" * 32      # a secret no app has
AUTH_LIMIT = 3


def old(stack):
    """The stack's own KEEL_SECRET: the one rotated away from."""
    return stack.env["KEEL_SECRET"]


# ------------------------------------------------------------- cursors

def two_cars(http):
    """Two cars of a manufacturer of their own; its name."""
    make = new_car(http)["manufacturer"]
    new_car(http, manufacturer=make)
    return make


def first_page(http, make):
    """Page one (one car) of make's cars: its car id and next cursor."""
    r = http.get("/api/cars", params={"manufacturer": make, "limit": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["page"]["next"] is not None, body
    return body["data"][0]["id"], body["page"]["next"]


def next_page(http, make, cursor):
    return http.get("/api/cars", params={"manufacturer": make, "limit": 1,
                                         "after": cursor})


def test_cursor_of_the_old_secret_is_400_without_the_fallback(stack, http):
    """Today's behaviour, the reason for the fallback: a client paging a
    list when the secret changes gets a 400 on its next page."""
    make = two_cars(http)
    _, cursor = first_page(http, make)
    with OwnApp(stack, "cars", KEEL_SECRET=NEW):
        assert_error(next_page(http, make, cursor), 400, "bad_request")


def test_cursor_of_the_old_secret_pages_with_the_fallback(stack, http):
    make = two_cars(http)
    first, cursor = first_page(http, make)
    with OwnApp(stack, "cars", KEEL_SECRET=NEW,
                KEEL_SECRET_FALLBACK=old(stack)):
        r = next_page(http, make, cursor)
        assert r.status_code == 200, r.text
        second = r.json()["data"][0]["id"]
        assert second != first
        # The page's own cursors are the new secret's alone.
        back = r.json()["page"]["prev"]
        assert back is not None
    # The stack's app (the old secret, no fallback) refuses them ...
    assert_error(http.get("/api/cars", params={
        "manufacturer": make, "limit": 1, "before": back}), 400,
        "bad_request")
    # ... and an app of the new secret alone takes them.
    with OwnApp(stack, "cars", KEEL_SECRET=NEW):
        r = http.get("/api/cars", params={"manufacturer": make, "limit": 1,
                                          "before": back})
        assert r.status_code == 200, r.text
        assert [c["id"] for c in r.json()["data"]] == [first]


def test_cursor_of_neither_secret_is_400_with_the_fallback(stack, http):
    """The fallback verifies only its own MACs: a cursor signed under a
    third secret, or the old one's altered, is still foreign."""
    # Two lists: a page is cached with the cursors of the app that
    # rendered it, whatever secret serves it later.
    make, elsewhere = two_cars(http), two_cars(http)
    _, cursor = first_page(http, make)
    with OwnApp(stack, "cars", KEEL_SECRET=OTHER):
        _, foreign = first_page(http, elsewhere)
    forged = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    with OwnApp(stack, "cars", KEEL_SECRET=NEW,
                KEEL_SECRET_FALLBACK=old(stack)):
        assert_error(next_page(http, elsewhere, foreign), 400,
                     "bad_request")
        assert_error(next_page(http, make, forged), 400, "bad_request")
        assert next_page(http, make, cursor).status_code == 200


def test_cursor_of_the_old_secret_is_400_once_the_fallback_goes(stack,
                                                                http):
    make = two_cars(http)
    _, cursor = first_page(http, make)
    with OwnApp(stack, "cars", KEEL_SECRET=NEW,
                KEEL_SECRET_FALLBACK=old(stack)):
        assert next_page(http, make, cursor).status_code == 200
    # Another list, so no page of the first is cached: the old cursor
    # checked again, by an app of the new secret alone.
    make = two_cars(http)
    _, cursor = first_page(http, make)
    with OwnApp(stack, "cars", KEEL_SECRET=NEW, KEEL_SECRET_FALLBACK=""):
        assert_error(next_page(http, make, cursor), 400, "bad_request")


def test_single_host_runbook_by_sighup(stack, http, tmp_path):
    """README's single-host rotation, as an operator runs it: the env
    file changed, then SIGHUP (the variables read again, as KEEL_SECRET
    is).  Two lists, so no page cached by one step is read by the
    next."""
    env_file = str(tmp_path / "env")
    log = stack.path("log", "cars-own.log")

    def roll(n, **env):
        """Writes env to the env file, SIGHUPs the app and waits for the
        roll's end (its n-th since the test began)."""
        with open(env_file, "w") as f:
            for k, v in env.items():
                f.write("export %s=%s\n" % (k, v))
        os.kill(app.proc.pid, signal.SIGHUP)
        wait_until(lambda: text().count("reload: all 2 workers replaced")
                   >= n, 30, "the roll to finish", step=0.05)

    def text():
        with open(log, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    one, two = two_cars(http), two_cars(http)
    _, c1 = first_page(http, one)
    _, c2 = first_page(http, two)
    start = os.path.getsize(log) if os.path.exists(log) else 0
    with open(env_file, "w"):
        pass
    with OwnApp(stack, "cars", KEEL_ENV_FILE=env_file,
                KEEL_WORKERS="2") as app:
        roll(1, KEEL_SECRET=NEW, KEEL_SECRET_FALLBACK=old(stack))
        assert next_page(http, one, c1).status_code == 200
        roll(2, KEEL_SECRET=NEW)
        assert_error(next_page(http, two, c2), 400, "bad_request")


# -------------------------------------------------------- idempotency

def post_car(http, key, body):
    return http.post("/api/cars", json=body,
                     headers={"Idempotency-Key": key})


def test_idempotent_retry_is_refused_without_the_fallback(stack, http):
    """Today's behaviour: a retry across the change is taken for another
    request with the same key (422), not answered as the first was."""
    key, body = "k-" + uuid.uuid4().hex, car_body()
    assert post_car(http, key, body).status_code == 201
    with OwnApp(stack, "cars", KEEL_SECRET=NEW):
        r = post_car(http, key, body)
    assert_error(r, 422, "validation_failed")
    assert "Idempotency-Key" in r.json()["fields"]


def test_idempotent_retry_is_replayed_with_the_fallback(stack, http):
    key, body = "k-" + uuid.uuid4().hex, car_body()
    first = post_car(http, key, body)
    assert first.status_code == 201
    with OwnApp(stack, "cars", KEEL_SECRET=NEW,
                KEEL_SECRET_FALLBACK=old(stack)):
        again = post_car(http, key, body)
        # Another request under the same key is still another request.
        other = post_car(http, key, car_body())
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert_error(other, 422, "validation_failed")


def test_idempotent_claim_made_while_rotating_is_the_new_secrets(stack,
                                                                 http):
    """A claim made with the fallback set holds the current secret's
    fingerprint: a host of the fleet's first roll (the old secret, the
    new one its fallback) replays it, and so does a host of the new
    secret alone once the fallback goes."""
    key, body = "k-" + uuid.uuid4().hex, car_body()
    with OwnApp(stack, "cars", KEEL_SECRET=NEW,
                KEEL_SECRET_FALLBACK=old(stack)):
        first = post_car(http, key, body)
    assert first.status_code == 201, first.text
    with OwnApp(stack, "cars", KEEL_SECRET_FALLBACK=NEW):
        behind = post_car(http, key, body)
    with OwnApp(stack, "cars", KEEL_SECRET=NEW):
        again = post_car(http, key, body)
    for r in (behind, again):
        assert r.status_code == 201, r.text
        assert r.headers["Idempotent-Replayed"] == "true"
        assert r.json() == first.json()


# --------------------------------------------------------- login windows

def OwnAuth(**env):
    """keel-auth's settings for these tests: a low auth limit."""
    env.setdefault("KEEL_RATELIMIT_AUTH", "%d/900" % AUTH_LIMIT)
    return env


def fail(anon, who, n):
    """n wrong passwords for who; their statuses."""
    return [anon.post("/api/auth/login", json={
        "login": who, "password": "wrong-%d" % i}).status_code
        for i in range(n)]


def test_login_window_starts_afresh_without_the_fallback(stack, anon):
    """Today's behaviour: an attacker locked out is let in again by the
    operator's rotation."""
    u = make_user(stack, "student")
    with OwnApp(stack, "auth", **OwnAuth()):
        assert fail(anon, u["email"], AUTH_LIMIT + 1) == \
            [401] * AUTH_LIMIT + [429]
    with OwnApp(stack, "auth", **OwnAuth(KEEL_SECRET=NEW)):
        assert fail(anon, u["email"], 1) == [401]


def test_login_window_holds_with_the_fallback(stack, anon):
    u = make_user(stack, "student")
    with OwnApp(stack, "auth", **OwnAuth()):
        assert fail(anon, u["email"], AUTH_LIMIT + 1) == \
            [401] * AUTH_LIMIT + [429]
    with OwnApp(stack, "auth", **OwnAuth(
            KEEL_SECRET=NEW, KEEL_SECRET_FALLBACK=old(stack))):
        r = anon.post("/api/auth/login", json={"login": u["email"],
                                               "password": "wrong"})
    assert_error(r, 429, "rate_limited")
    # One item per bucket in the headers, the twins shown as one.
    names = [item.split(";")[0] for item in
             r.headers["RateLimit-Policy"].split(", ")]
    assert len(names) == len(set(names)), names


def test_login_windows_are_shared_by_a_half_rolled_fleet(stack, anon):
    """The fleet's first roll: a host still signing with the old secret
    (the new one its fallback) and one rolled (the old one its
    fallback) count a login's failures together -- for an account and
    for a login no account answers to."""
    u = make_user(stack, "student")
    typed = "nobody-%s@e2e.test" % uuid.uuid4().hex[:8]
    first = OwnAuth(KEEL_SECRET_FALLBACK=NEW)
    rolled = OwnAuth(KEEL_SECRET=NEW, KEEL_SECRET_FALLBACK=old(stack))
    with OwnApp(stack, "auth", **first):
        assert fail(anon, u["email"], AUTH_LIMIT - 1) == \
            [401] * (AUTH_LIMIT - 1)
        assert fail(anon, typed, AUTH_LIMIT - 1) == [401] * (AUTH_LIMIT - 1)
    with OwnApp(stack, "auth", **rolled):
        assert fail(anon, u["email"], 2) == [401, 429]
        assert fail(anon, typed, 2) == [401, 429]
    # And back on the first host: both still locked out.
    with OwnApp(stack, "auth", **first):
        assert fail(anon, u["email"], 1) == [429]
        assert fail(anon, typed, 1) == [429]
