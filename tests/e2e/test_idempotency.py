# SPDX-License-Identifier: ISC
"""test_idempotency.py -- Idempotency-Key on POST (issue 4): a retry with
the same key and body gets the first answer without running the handler
again (Idempotent-Replayed: true), the same key with another body is a
422, a retry while the first still runs is a 409, a 5xx is not kept, and
keys belong to their client.  What one client makes Redis keep is
bounded (Redis runs with noeviction: a full Redis fails every write):
KEEL_IDEM_MAX answers, the oldest dropped, and no answer over 64 KiB kept
whole; those tests run their own limitapp with KEEL_IDEM_MAX=3.

The limitapp's write answers a fresh nonce on every run, so a replay is
told from a second run by its body; cars show it on real data.
"""

import concurrent.futures
import contextlib
import hashlib
import random
import time
import uuid

import pytest

from accounts import PASSWORD, bearer, login, make_user
from helpers import redis_cli, request, spawn_app, stop_app

IDEM_MAX = 3
BODY_MAX = 65536        # lib/keel/idem.h's KEEL_IDEM_BODY_MAX


def key():
    return "k-" + uuid.uuid4().hex


def test_idem_replay_returns_first_answer(anon):
    k = key()
    r1 = anon.post("/api/_limit/write", json={"a": 1},
                   headers={"Idempotency-Key": k})
    assert r1.status_code == 201
    assert "Idempotent-Replayed" not in r1.headers
    r2 = anon.post("/api/_limit/write", json={"a": 1},
                   headers={"Idempotency-Key": k})
    assert r2.status_code == 201
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert r2.json() == r1.json()
    assert r2.headers["Content-Type"] == "application/json; charset=utf-8"


def test_idem_without_key_runs_every_time(anon):
    a = anon.post("/api/_limit/write", json={}).json()
    b = anon.post("/api/_limit/write", json={}).json()
    assert a != b


def test_idem_same_key_other_body_is_422(anon):
    k = key()
    assert anon.post("/api/_limit/write", json={"a": 1},
                     headers={"Idempotency-Key": k}).status_code == 201
    r = anon.post("/api/_limit/write", json={"a": 2},
                  headers={"Idempotency-Key": k})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_failed"
    assert "Idempotency-Key" in body["fields"]


def test_idem_in_flight_is_409_then_replayed(stack, anon):
    k = key()
    url = stack.url("/api/_limit/slow?ms=1500")

    def first():
        return request("POST", url, json={"x": 1}, timeout=30,
                       headers={"Idempotency-Key": k})

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(first)
        time.sleep(0.4)
        r = anon.post("/api/_limit/slow?ms=1500", json={"x": 1},
                      headers={"Idempotency-Key": k})
        assert r.status_code == 409
        assert r.json()["error"] == "conflict"
        r1 = fut.result()
    assert r1.status_code == 201
    r3 = anon.post("/api/_limit/slow?ms=1500", json={"x": 1},
                   headers={"Idempotency-Key": k})
    assert r3.headers["Idempotent-Replayed"] == "true"
    assert r3.json() == r1.json()


def test_idem_server_error_not_kept(anon):
    k = key()
    for _ in range(2):
        r = anon.post("/api/_limit/fail", json={},
                      headers={"Idempotency-Key": k})
        assert r.status_code == 500
        assert "Idempotent-Replayed" not in r.headers


def test_idem_bad_key_is_400(anon):
    for bad in ("x" * 256, "caf\u00e9"):
        r = anon.post("/api/_limit/write", json={},
                      headers={"Idempotency-Key": bad.encode("utf-8")})
        assert r.status_code == 400


def test_idem_keys_belong_to_their_client(stack, http, anon):
    # The same key from a user and from an anonymous caller: two requests.
    k = key()
    a = anon.post("/api/_limit/write", json={},
                  headers={"Idempotency-Key": k})
    b = http.post("/api/_limit/write", json={},
                  headers={"Idempotency-Key": k})
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers
    assert a.json() != b.json()


def test_idem_car_create_once(stack, http):
    k = key()
    plate = "I" + uuid.uuid4().hex[:10].upper()
    body = {"licensePlate": plate, "manufacturer": "Idem", "model": "Once",
            "category": "van", "year": 2021}
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda _: http.post(
            "/api/cars", json=body, headers={"Idempotency-Key": k}),
            range(8)))
    codes = sorted(r.status_code for r in rs)
    # One ran; the others saw it running (409) or its answer (201).
    assert codes.count(201) >= 1 and set(codes) <= {201, 409}, codes
    assert stack.psql("SELECT count(*) FROM cars WHERE license_plate = '%s'"
                      % plate) == "1"
    r = http.post("/api/cars", json=body, headers={"Idempotency-Key": k})
    assert r.status_code == 201
    assert r.headers["Idempotent-Replayed"] == "true"
    first = [x for x in rs if x.status_code == 201][0]
    assert r.json() == first.json()
    # A client error is an answer too: kept and replayed.
    k2 = key()
    bad = dict(body, year=1000)
    r1 = http.post("/api/cars", json=bad, headers={"Idempotency-Key": k2})
    r2 = http.post("/api/cars", json=bad, headers={"Idempotency-Key": k2})
    assert r1.status_code == r2.status_code == 422
    assert r2.headers["Idempotent-Replayed"] == "true"


def test_idem_logout_ignores_the_key(stack, anon):
    # Keys are per user and every logout looks alike: a replayed 204
    # would leave the second session working (API.md: the token stops
    # working at once).
    u = make_user(stack, "student")
    k = {"Idempotency-Key": key()}
    for _ in range(2):
        t = bearer(login(anon, u["email"]))
        r = anon.post("/api/auth/logout", headers=dict(t, **k))
        assert r.status_code == 204
        assert "Idempotent-Replayed" not in r.headers
        assert anon.get("/api/auth/me", headers=t).status_code == 401


def test_idem_no_auth_route_takes_part(stack, anon):
    # Login has its own test (test_auth_hardening); the reset routes
    # answer alike every time, so only the header tells a replay.
    u = make_user(stack, "student")
    k = {"Idempotency-Key": key()}
    for path, body in (
            ("/api/auth/password-reset", {"email": u["email"]}),
            ("/api/auth/password-reset/confirm",
             {"token": "x" * 43, "password": PASSWORD + "-new"})):
        first = anon.post(path, json=body, headers=k)
        again = anon.post(path, json=body, headers=k)
        assert first.status_code == again.status_code, path
        assert "Idempotent-Replayed" not in again.headers, path


# ------------------------------------------------- what a client may keep

@contextlib.contextmanager
def small_limitapp(stack):
    """The stack's limitapp replaced by one keeping IDEM_MAX answers per
    client and trusting 127.0.0.1 as a proxy, so that each test speaks
    for made-up clients (X-Forwarded-For); the stack's is put back.
    test_redis_cluster.py runs it on the cluster."""
    sock = stack.path("run", "limitapp.sock")
    stack.stop_component("limitapp")
    proc = spawn_app(stack, "tests/e2e/keel-limitapp", sock,
                     {"KEEL_IDEM_MAX": str(IDEM_MAX),
                      "TRUSTED_PROXIES": "127.0.0.1, ::1"},
                     "limitapp-idem.log")
    try:
        yield
    finally:
        stop_app(proc)
        stack.start_component("limitapp")


@pytest.fixture(scope="module")
def small(stack):
    with small_limitapp(stack):
        yield stack


def client():
    """A fresh made-up client address (TEST-NET-2, random)."""
    return "198.51.%d.%d" % (random.randrange(256), random.randrange(1, 255))


def post_as(stack, ip, path, k):
    return request("POST", stack.url(path), timeout=30, json={"a": 1},
                   headers={"X-Forwarded-For": ip, "Idempotency-Key": k})


def answer_key(ip, k):
    """Where lib/idem.c keeps anonymous client ip's answer for key k:
    the key's unkeyed BLAKE2b-128 in hex."""
    return "keel:idem:a:%s:%s" % (
        ip, hashlib.blake2b(k.encode(), digest_size=16).hexdigest())


def max_answers_kept(stack, redis):
    """IDEM_MAX + 1 keys from one client: the first one's answer is gone
    (its retry runs again), the others replay, another client's is
    untouched.  redis(*args) runs a command on the key's node."""
    ip, other = client(), client()
    mine = key()
    theirs = post_as(stack, other, "/api/_limit/write", mine)
    assert theirs.status_code == 201
    keys = [key() for _ in range(IDEM_MAX + 1)]
    first = [post_as(stack, ip, "/api/_limit/write", k) for k in keys]
    assert all(r.status_code == 201 for r in first)
    assert [redis("EXISTS", answer_key(ip, k)) for k in keys] == \
        ["0"] + ["1"] * IDEM_MAX
    assert redis("ZCARD", "keel:idem:i:a:%s" % ip) == str(IDEM_MAX)
    for k, r in list(zip(keys, first))[1:]:
        again = post_as(stack, ip, "/api/_limit/write", k)
        assert again.headers.get("Idempotent-Replayed") == "true", k
        assert again.json() == r.json()
    # The first key's retry runs again (a new nonce), as documented; it is
    # kept in turn, and the next oldest goes.
    again = post_as(stack, ip, "/api/_limit/write", keys[0])
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert again.json() != first[0].json()
    assert [redis("EXISTS", answer_key(ip, k)) for k in keys] == \
        ["1", "0"] + ["1"] * (IDEM_MAX - 1)
    r = post_as(stack, other, "/api/_limit/write", mine)
    assert r.headers.get("Idempotent-Replayed") == "true"
    assert r.json() == theirs.json()


def test_idem_client_keeps_at_most_max_answers(small):
    max_answers_kept(small, lambda *a: redis_cli(small, *a))


def test_idem_client_keeps_max_answers_in_redis(small):
    # Counted by Redis itself: nothing but IDEM_MAX answers and the index.
    ip = client()
    for _ in range(IDEM_MAX + 2):
        assert post_as(small, ip, "/api/_limit/write", key()).status_code \
            == 201
    names = redis_cli(small, "--scan", "--pattern",
                      "keel:idem:a:%s:*" % ip).split()
    assert len(names) == IDEM_MAX, names
    assert redis_cli(small, "ZCARD", "keel:idem:i:a:%s" % ip) == \
        str(IDEM_MAX)


def test_idem_oversized_answer_not_kept_whole(small):
    ip = client()
    k = key()
    # {"nonce":"<32 hex>","pad":"<bytes>"}: 53 bytes and the pad.
    path = "/api/_limit/big?bytes=%d" % (BODY_MAX + 1 - 53)
    r1 = post_as(small, ip, path, k)
    assert r1.status_code == 201
    assert len(r1.content) == BODY_MAX + 1
    # Redis keeps a small stand-in, not the body ...
    assert int(redis_cli(small, "HSTRLEN", answer_key(ip, k), "body")) < 1024
    # ... which a retry gets: not run again, told why and the first status.
    r2 = post_as(small, ip, path, k)
    assert r2.status_code == 422
    assert r2.headers["Idempotent-Replayed"] == "true"
    body = r2.json()
    assert body["error"] == "validation_failed"
    assert "Idempotency-Key" in body["fields"]
    assert "status 201" in body["message"]
    # An answer of exactly the cap is kept and replayed whole.
    k = key()
    path = "/api/_limit/big?bytes=%d" % (BODY_MAX - 53)
    r1 = post_as(small, ip, path, k)
    assert len(r1.content) == BODY_MAX
    r2 = post_as(small, ip, path, k)
    assert r2.status_code == 201
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert r2.json() == r1.json()
