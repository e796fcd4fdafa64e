# SPDX-License-Identifier: ISC
"""test_location.py -- a 201 names the resource it created (RFC 9110
§15.3.2): `Location: /api/<collection>/<id>`, a path-absolute reference,
whose GET, by the creator, answers the object the 201 did.  Every creating
route with a GET for what it made: cars, contracts, users, questions,
tests, flashcards, study plans, and an attempt (read at /api/attempts/{id},
not under its test).  A stream ticket is no resource: no Location.

An idempotent replay names the same resource as the first answer; an
answer an older binary kept (no location in its hash, during a roll) still
replays, without one.  A browser script may read it (CORS's
Access-Control-Expose-Headers).
"""

import hashlib
import uuid

import pytest
import yaml

import apicheck

from accounts import make_user, session_for
from helpers import OwnApp, car_body, new_car, redis_cli, replicated, uniq
from test_cors import ORIGINS, SITE


def created(r, collection):
    """r is a 201 whose Location is /api/<collection>/<its id>; the path."""
    assert r.status_code == 201, r.text
    want = "/api/%s/%d" % (collection, r.json()["id"])
    assert r.headers.get("Location") == want, r.headers
    return want


def assert_gets_it(http, r, collection, headers=None):
    """The Location of the 201 r answers, by GET, the object r holds
    (the GET may add members: a test's questions)."""
    got = http.get(created(r, collection), headers=headers)
    assert got.status_code == 200, got.text
    body = got.json()
    for k, v in r.json().items():
        assert body.get(k) == v, (k, body.get(k), v)


def new_question(stack):
    """A question of the bank, made in PostgreSQL; its id."""
    return int(stack.psql(
        "INSERT INTO questions (subject, topic, difficulty, body, options, "
        "answer, explanation) VALUES ('Maths', 'Topic', 'easy', '%s', "
        "'[\"1\", \"2\"]'::jsonb, 0, 'So.') RETURNING id" % uniq("Body ")))


def published_test(stack):
    return int(stack.psql(
        "INSERT INTO tests (title, subject, duration_minutes, published) "
        "VALUES ('%s', 'Maths', 30, true) RETURNING id" % uniq("Test ")))


def test_location_car(http):
    r = http.post("/api/cars", json=car_body())
    assert_gets_it(http, r, "cars")


def test_location_contract(stack, http):
    car = new_car(http)
    customer = make_user(stack, "customer")
    r = http.post("/api/contracts", json={
        "carId": car["id"], "customerId": customer["id"],
        "startDate": "2031-03-01", "endDate": "2031-03-05"})
    assert_gets_it(http, r, "contracts")


def test_location_user(http):
    tag = uuid.uuid4().hex[:10]
    r = http.post("/api/users", json={
        "email": "loc-%s@e2e.test" % tag, "username": "loc_" + tag,
        "name": "Loc " + tag, "role": "student"})
    assert_gets_it(http, r, "users")


def test_location_question(stack, http):
    _, staff = session_for(stack, http, "staff")
    r = http.post("/api/question-bank", headers=staff, json={
        "subject": uniq("Subj"), "topic": "Arithmetic",
        "difficulty": "easy", "body": "What is 2 + 3?",
        "options": ["4", "5"], "answer": 1, "explanation": "2 + 3 = 5"})
    assert_gets_it(http, r, "question-bank", headers=staff)


def test_location_test(stack, http):
    _, staff = session_for(stack, http, "staff")
    q = new_question(stack)
    replicated(stack)
    # Unpublished: only staff read it, as its creator does.
    r = http.post("/api/tests", headers=staff, json={
        "title": uniq("Test "), "subject": "Maths", "durationMinutes": 30,
        "questionIds": [q], "published": False})
    assert_gets_it(http, r, "tests", headers=staff)


def test_location_flashcard(stack, http):
    _, student = session_for(stack, http, "student")
    r = http.post("/api/flashcards", headers=student,
                  json={"front": uniq("Front "), "back": "Back"})
    assert_gets_it(http, r, "flashcards", headers=student)


def test_location_study_plan(stack, http):
    _, student = session_for(stack, http, "student")
    t = published_test(stack)
    replicated(stack)
    r = http.post("/api/study-plans", headers=student, json={
        "title": uniq("Plan "), "targetDate": "2031-06-01",
        "items": [{"topic": "Algebra", "testId": t, "done": False}]})
    assert_gets_it(http, r, "study-plans", headers=student)


def test_location_attempt_is_under_attempts(stack, http):
    _, student = session_for(stack, http, "student")
    t = published_test(stack)
    replicated(stack)
    r = http.post("/api/tests/%d/attempts" % t, headers=student)
    assert_gets_it(http, r, "attempts", headers=student)


def test_location_not_on_a_stream_ticket(stack, http):
    _, student = session_for(stack, http, "student")
    r = http.post("/api/notifications/stream-ticket", headers=student)
    assert r.status_code == 201, r.text
    assert "Location" not in r.headers, r.headers


def test_location_not_on_an_error(http):
    body = car_body()
    assert http.post("/api/cars", json=body).status_code == 201
    r = http.post("/api/cars", json=car_body(licensePlate=body[
        "licensePlate"]))
    assert r.status_code == 409, r.text
    assert "Location" not in r.headers, r.headers


def idem_key(uid, k):
    """Where lib/idem.c keeps user uid's answer for Idempotency-Key k."""
    return "keel:idem:u:%d:%s" % (
        uid, hashlib.blake2b(k.encode(), digest_size=16).hexdigest())


def test_location_replayed_the_same(stack, http):
    _, staff = session_for(stack, http, "staff")
    h = dict(staff, **{"Idempotency-Key": "loc-" + uuid.uuid4().hex})
    body = car_body()
    first = http.post("/api/cars", json=body, headers=h)
    where = created(first, "cars")
    again = http.post("/api/cars", json=body, headers=h)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.headers.get("Location") == where
    assert again.json() == first.json()


def test_location_older_answer_replays_without_one(stack, http):
    """An answer kept by a binary from before Location (a roll): its hash
    has no location field, and it replays as it was, without one."""
    u, staff = session_for(stack, http, "staff")
    k = "loc-" + uuid.uuid4().hex
    h = dict(staff, **{"Idempotency-Key": k})
    body = car_body()
    first = http.post("/api/cars", json=body, headers=h)
    created(first, "cars")
    assert redis_cli(stack, "HGET", idem_key(u["id"], k), "location") == \
        "/api/cars/%d" % first.json()["id"]
    assert redis_cli(stack, "HDEL", idem_key(u["id"], k), "location") == "1"
    again = http.post("/api/cars", json=body, headers=h)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Location" not in again.headers, again.headers
    assert again.json() == first.json()


def test_location_exposed_to_browser_scripts(stack, http):
    with OwnApp(stack, "cars", KEEL_CORS_ORIGINS=ORIGINS):
        r = http.post("/api/cars", json=car_body(),
                      headers={"Origin": SITE})
        created(r, "cars")
        assert r.headers.get("Access-Control-Allow-Origin") == SITE
        exposed = {n.strip().lower() for n in
                   r.headers["Access-Control-Expose-Headers"].split(",")}
        assert "location" in exposed, exposed


@pytest.mark.parametrize("path", ["/api/cars", "/api/contracts",
                                  "/api/users", "/api/question-bank",
                                  "/api/tests", "/api/flashcards",
                                  "/api/study-plans",
                                  "/api/tests/{id}/attempts"])
def test_location_documented(path):
    """docs/openapi.yaml gives each creating route's 201 a Location."""
    with open(apicheck.DOC) as f:
        doc = yaml.safe_load(f)
    assert "Location" in doc["paths"][path]["post"]["responses"]["201"].get(
        "headers", {}), path
