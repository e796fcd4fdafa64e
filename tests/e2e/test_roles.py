# SPDX-License-Identifier: ISC
"""test_roles.py -- every route of auth, users, cars, contracts, tests and
attempts for every role: the route x role table of issue 3's "Done when".

Each request is built so that, once the gate lets it through, the handler
answers something deterministic (a 422 for an empty body, a 404 for an id
that can't exist), so the table pins both the gate (401 without a
session, 403 for a role the route doesn't list) and what lies behind it,
including 404 for another user's private data.
"""

import pytest

from accounts import ROLES, bearer, login, make_user
from helpers import BaseUrlSession, replicated
from test_tests import new_question

NOBODY = 999999999          # an id that never exists

# role -> status; "anon" is no session at all.
ALL = ("anon",) + ROLES


def row(anon, admin, staff, customer, student):
    return dict(zip(ALL, (anon, admin, staff, customer, student)))


@pytest.fixture(scope="module")
def world(stack, admin_token):
    """A session per role, a customer who owns a contract, a car."""
    s = BaseUrlSession("")
    base = stack.base_url
    w = {"tokens": {}, "users": {}}
    for role in ROLES:
        u = make_user(stack, role)
        w["users"][role] = u
        r = s.post(base + "/api/auth/login",
                   json={"login": u["email"], "password": "e2e-password-123"})
        assert r.status_code == 200, r.text
        w["tokens"][role] = r.json()["token"]
    owner = make_user(stack, "customer")
    w["owner"] = owner
    h = bearer(admin_token)
    r = s.post(base + "/api/cars", headers=h, json={
        "licensePlate": "RT" + owner["username"][-10:].upper(),
        "manufacturer": "Roles", "model": "Table", "category": "compact",
        "year": 2021})
    assert r.status_code == 201, r.text
    w["car"] = r.json()["id"]
    r = s.post(base + "/api/contracts", headers=h, json={
        "carId": w["car"], "customerId": owner["id"],
        "startDate": "2031-01-01", "endDate": "2031-01-05"})
    assert r.status_code == 201, r.text
    w["contract"] = r.json()["id"]
    # study: the owner's own flashcard and plan, a 404 to everyone else
    oh = bearer(login(BaseUrlSession(base), owner["email"]))
    r = s.post(base + "/api/flashcards", headers=oh,
               json={"front": "Roles?", "back": "Table."})
    assert r.status_code == 201, r.text
    w["card"] = r.json()["id"]
    r = s.post(base + "/api/study-plans", headers=oh, json={"title": "Roles"})
    assert r.status_code == 201, r.text
    w["plan"] = r.json()["id"]
    # exam prep: a published test, a hidden one, another student's attempt
    q = new_question(stack)
    for name, published in (("test", True), ("hidden", False)):
        r = s.post(base + "/api/tests", headers=h, json={
            "title": "Roles " + name, "subject": "Roles",
            "durationMinutes": 10, "questionIds": [q],
            "published": published})
        assert r.status_code == 201, r.text
        w[name] = r.json()["id"]
    eh = bearer(login(BaseUrlSession(base), make_user(stack, "student")[
        "email"]))
    r = s.post(base + "/api/tests/%d/attempts" % w["test"], headers=eh)
    assert r.status_code == 201, r.text
    w["attempt"] = r.json()["id"]
    # notifications: one of the owner's, a 404 to everyone else
    w["note"] = int(stack.psql(
        "INSERT INTO notifications (user_id, kind, title) VALUES "
        "(%d, 'e2e', 'Roles') RETURNING id" % owner["id"]))
    replicated(stack)
    return w


# (method, path template, body, expected by role)
TABLE = [
    # auth
    ("POST", "/api/auth/login", {}, row(422, 422, 422, 422, 422)),
    ("GET", "/api/auth/me", None, row(401, 200, 200, 200, 200)),
    ("POST", "/api/auth/password-reset", {"email": "nobody@e2e.test"},
     row(202, 202, 202, 202, 202)),
    ("POST", "/api/auth/password-reset/confirm",
     {"token": "A" * 43, "password": "long-enough-password"},
     row(400, 400, 400, 400, 400)),
    # users
    ("GET", "/api/users", None, row(401, 200, 403, 403, 403)),
    ("POST", "/api/users", {}, row(401, 422, 403, 403, 403)),
    ("GET", "/api/users/{self}", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/users/{owner}", None, row(401, 200, 404, 404, 404)),
    ("PATCH", "/api/users/{self}", {"name": "Renamed Self"},
     row(401, 200, 200, 200, 200)),
    ("PATCH", "/api/users/{owner}", {"name": "Renamed Owner"},
     row(401, 200, 404, 404, 404)),
    ("DELETE", "/api/users/%d" % NOBODY, None, row(401, 404, 403, 403, 403)),
    # cars
    ("GET", "/api/cars", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/cars/{car}", None, row(401, 200, 200, 200, 200)),
    ("POST", "/api/cars", {}, row(401, 422, 422, 403, 403)),
    ("PATCH", "/api/cars/{car}", {}, row(401, 422, 422, 403, 403)),
    ("DELETE", "/api/cars/%d" % NOBODY, None, row(401, 404, 404, 403, 403)),
    # contracts
    ("GET", "/api/contracts", None, row(401, 200, 200, 200, 403)),
    ("GET", "/api/contracts/{contract}", None, row(401, 200, 200, 404, 403)),
    ("POST", "/api/contracts", {}, row(401, 422, 422, 403, 403)),
    ("PATCH", "/api/contracts/{contract}", {}, row(401, 422, 422, 403, 403)),
    # tests and attempts (exam prep)
    ("GET", "/api/tests", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/tests/{test}", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/tests/{hidden}", None, row(401, 200, 200, 404, 404)),
    ("POST", "/api/tests", {}, row(401, 422, 422, 403, 403)),
    ("PATCH", "/api/tests/{test}", {}, row(401, 422, 422, 403, 403)),
    ("POST", "/api/tests/{test}/attempts", None, row(401, 403, 403, 403, 201)),
    ("POST", "/api/tests/{hidden}/attempts", None,
     row(401, 403, 403, 403, 404)),
    ("GET", "/api/attempts", None, row(401, 200, 200, 403, 200)),
    ("GET", "/api/attempts/{attempt}", None, row(401, 200, 200, 403, 404)),
    ("POST", "/api/attempts/{attempt}/submit", {"answers": {}},
     row(401, 403, 403, 403, 404)),
    # flashcards and study plans: any user, their own rows only
    ("GET", "/api/flashcards", None, row(401, 200, 200, 200, 200)),
    ("POST", "/api/flashcards", {}, row(401, 422, 422, 422, 422)),
    ("GET", "/api/flashcards/due", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/flashcards/{card}", None, row(401, 404, 404, 404, 404)),
    ("PATCH", "/api/flashcards/{card}", {"front": "Mine?"},
     row(401, 404, 404, 404, 404)),
    ("DELETE", "/api/flashcards/{card}", None, row(401, 404, 404, 404, 404)),
    ("POST", "/api/flashcards/{card}/review", {"grade": 3},
     row(401, 404, 404, 404, 404)),
    ("GET", "/api/study-plans", None, row(401, 200, 200, 200, 200)),
    ("POST", "/api/study-plans", {}, row(401, 422, 422, 422, 422)),
    ("GET", "/api/study-plans/{plan}", None, row(401, 404, 404, 404, 404)),
    ("PATCH", "/api/study-plans/{plan}", {"title": "Mine"},
     row(401, 404, 404, 404, 404)),
    ("DELETE", "/api/study-plans/{plan}", None,
     row(401, 404, 404, 404, 404)),
    # question bank (answers hidden from students: test_question_bank.py)
    ("GET", "/api/question-bank", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/question-bank?difficulty=trivial", None,
     row(401, 400, 400, 400, 400)),
    ("GET", "/api/question-bank/%d" % NOBODY, None,
     row(401, 404, 404, 404, 404)),
    ("POST", "/api/question-bank", {}, row(401, 422, 422, 403, 403)),
    ("PATCH", "/api/question-bank/%d" % NOBODY, {},
     row(401, 422, 422, 403, 403)),
    ("PATCH", "/api/question-bank/%d" % NOBODY, {"body": "x"},
     row(401, 404, 404, 403, 403)),
    ("DELETE", "/api/question-bank/%d" % NOBODY, None,
     row(401, 404, 404, 403, 403)),
    # leaderboard (nobody in the table has an attempt: /me is 404)
    ("GET", "/api/leaderboard", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/leaderboard?testId=%d&period=week" % NOBODY, None,
     row(401, 200, 200, 200, 200)),
    ("GET", "/api/leaderboard/me", None, row(401, 404, 404, 404, 404)),
    ("GET", "/api/leaderboard/me?period=year", None,
     row(401, 400, 400, 400, 400)),
    # notifications: any user, their own only (the stream is another
    # program's)
    ("GET", "/api/notifications", None, row(401, 200, 200, 200, 200)),
    ("POST", "/api/notifications/{note}/read", None,
     row(401, 404, 404, 404, 404)),
    ("POST", "/api/notifications/read-all", None,
     row(401, 200, 200, 200, 200)),
    ("POST", "/api/notifications/stream-ticket", None,
     row(401, 201, 201, 201, 201)),
    # metrics: this host (loopback) or the metrics token, whoever asks;
    # off the host without the token: test_metrics.py
    ("GET", "/api/metrics", None, row(200, 200, 200, 200, 200)),
    # the page invitation and reset emails link to: a static file,
    # anyone's (its token is checked by the POST it makes)
    ("GET", "/set-password?token=x", None, row(200, 200, 200, 200, 200)),
    # logout last: it ends the role's session
    ("POST", "/api/auth/logout", None, row(401, 204, 204, 204, 204)),
]


def test_route_role_table(anon, world):
    failures = []
    for method, tmpl, body, expect in TABLE:
        for who in ALL:
            path = tmpl.format(
                self=world["users"][who]["id"] if who != "anon" else NOBODY,
                owner=world["owner"]["id"], car=world["car"],
                contract=world["contract"], card=world["card"],
                plan=world["plan"], test=world["test"],
                hidden=world["hidden"], attempt=world["attempt"],
                note=world["note"])
            headers = {} if who == "anon" else bearer(world["tokens"][who])
            r = anon.request(method, path, json=body, headers=headers)
            if r.status_code != expect[who]:
                failures.append("%s %s as %s: %d (expected %d) %s" % (
                    method, path, who, r.status_code, expect[who],
                    r.text[:120]))
            elif r.status_code in (401, 403):
                assert r.json()["error"] == ("unauthorized"
                                             if r.status_code == 401
                                             else "forbidden")
    assert not failures, "\n".join(failures)
