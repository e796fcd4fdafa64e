# SPDX-License-Identifier: ISC
"""test_idempotency.py -- Idempotency-Key on POST (issue 4): a retry with
the same key and body gets the first answer without running the handler
again (Idempotent-Replayed: true), the same key with another body is a
422, a retry while the first still runs is a 409, a 5xx is not kept, and
keys belong to their client.

The limitapp's write answers a fresh nonce on every run, so a replay is
told from a second run by its body; cars show it on real data.
"""

import concurrent.futures
import time
import uuid

from accounts import PASSWORD, bearer, login, make_user
from helpers import request


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
