# SPDX-License-Identifier: ISC
"""test_roles.py -- every route of auth, users, cars and contracts for
every role: the route x role table of issue 3's "Done when".

Each request is built so that, once the gate lets it through, the handler
answers something deterministic (a 422 for an empty body, a 404 for an id
that can't exist), so the table pins both the gate (401 without a
session, 403 for a role the route doesn't list) and what lies behind it,
including 404 for another user's private data.
"""

import pytest

from accounts import ROLES, bearer, make_user
from helpers import BaseUrlSession

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
    # leaderboard (nobody in the table has an attempt: /me is 404)
    ("GET", "/api/leaderboard", None, row(401, 200, 200, 200, 200)),
    ("GET", "/api/leaderboard?testId=%d&period=week" % NOBODY, None,
     row(401, 200, 200, 200, 200)),
    ("GET", "/api/leaderboard/me", None, row(401, 404, 404, 404, 404)),
    ("GET", "/api/leaderboard/me?period=year", None,
     row(401, 400, 400, 400, 400)),
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
                contract=world["contract"])
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
