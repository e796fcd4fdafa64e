# SPDX-License-Identifier: ISC
"""test_users.py -- accounts (API.md "Auth and users"; issue 3):
invitations through the outbox, uniqueness, who may read and change whom,
password changes, deactivation ending sessions at once; the system keeps
an active admin, and a customer with a contract not yet ended stays an
active customer, even under racing requests (made deterministic, as in
test_contracts_archived_cars.py, by a psql session holding the other
side's statements uncommitted while the API request waits on them).
"""

import concurrent.futures
import contextlib
import json
import threading
import time
import uuid

import pytest

from accounts import PASSWORD, bearer, login, make_user, session_for
from helpers import assert_error, link_tokens, new_car, request, while_held
from test_jobs import drain, jobs  # noqa: F401


def new_body(role="student", **kw):
    tag = uuid.uuid4().hex[:10]
    b = {"email": "New-%s@E2E.test" % tag, "username": "new_" + tag,
         "name": "New %s" % tag, "role": role}
    b.update(kw)
    return b


def test_create_with_invitation_mails_a_link_not_a_password(jobs, http,
                                                            anon):
    body = new_body(sendCredentials=True)
    r = http.post("/api/users", json=body)
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["email"] == body["email"].lower()
    assert u["role"] == "student" and u["isActive"] is True
    assert "password" not in json.dumps(u).lower()
    # The outbox asks for the invitation; the link is made when it is
    # sent, so no row anywhere holds it.
    rows = jobs.psql("SELECT payload::text, idempotency_key FROM outbox "
                     "WHERE kind = 'invitation_request' AND "
                     "(payload->>'userId')::bigint = %d" % u["id"])
    payload, idem = rows.split("|")
    assert json.loads(payload) == {"userId": u["id"]}
    assert idem == "invitation_request:%d" % u["id"]
    # Invited: no password until the link is used.
    r = anon.post("/api/auth/login", json={"login": u["email"],
                                           "password": "anything-at-all"})
    assert_error(r, 401, "unauthorized")
    drain(jobs)
    (token,) = link_tokens(jobs, u["email"])
    (m,) = [m for m in jobs.mail() if u["email"] in m["X-Sink-Rcpt"]]
    assert PASSWORD not in m.as_string()
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "my-own-password"})
    assert r.status_code == 204, r.text
    login(anon, u["username"], "my-own-password")


def test_create_without_invitation_queues_nothing(stack, http):
    r = http.post("/api/users", json=new_body())
    assert r.status_code == 201
    assert stack.psql("SELECT count(*) FROM outbox WHERE kind = "
                      "'invitation_request' AND (payload->>'userId')::bigint"
                      " = %d" % r.json()["id"]) == "0"


def test_duplicates_are_409_naming_the_field(http):
    b = new_body()
    assert http.post("/api/users", json=b).status_code == 201
    r = http.post("/api/users", json=new_body(email=b["email"].upper()))
    assert "email" in assert_error(r, 409, "conflict")["fields"]
    r = http.post("/api/users", json=new_body(username=b["username"].upper()))
    assert "username" in assert_error(r, 409, "conflict")["fields"]


@pytest.mark.parametrize("kw,field", [
    ({"email": "not-an-email"}, "email"),
    ({"email": "a b@c.d"}, "email"),
    ({"username": "x"}, "username"),
    ({"username": "bad name!"}, "username"),
    ({"role": "root"}, "role"),
    ({"name": ""}, "name"),
    ({"password": "sneaky-password"}, "password"),
])
def test_bad_fields_are_422(http, kw, field):
    r = http.post("/api/users", json=new_body(**kw))
    assert field in assert_error(r, 422, "validation_failed")["fields"]


# Addresses the API once took (201) and the mailer then refused, so the
# invitation was dead-lettered and the user never heard (lib/text.c's
# keel_text_email_valid is now the one check of both).
MAILER_REFUSES = ["x<y@e2e.test", "user@localhost", "\u00fc@e2e.test",
                  'q"x"@e2e.test', "a@e2e.test.", "a(x)@e2e.test",
                  "\u212aeel@e2e.test"]


@pytest.mark.parametrize("email", MAILER_REFUSES)
def test_create_refuses_an_address_the_mailer_refuses(jobs, http, email):
    r = http.post("/api/users", json=new_body(
        email=email.replace("@", "-%s@" % uuid.uuid4().hex[:6], 1),
        sendCredentials=True))
    assert "email" in assert_error(r, 422, "validation_failed")["fields"]
    assert jobs.psql("SELECT count(*) FROM outbox") == "0"


@pytest.mark.parametrize("email", MAILER_REFUSES)
def test_update_refuses_an_address_the_mailer_refuses(stack, http, email):
    u = make_user(stack, "student")
    r = http.patch("/api/users/%d" % u["id"], json={"email": email})
    assert "email" in assert_error(r, 422, "validation_failed")["fields"]
    assert stack.psql("SELECT email FROM users WHERE id = %d"
                      % u["id"]) == u["email"]


def test_an_account_made_with_an_odd_address_still_logs_in(stack, anon):
    """Addresses taken before the check was the mailer's stay: their
    owners log in by them as ever (login takes any string)."""
    u = make_user(stack, "student")
    odd = "odd-%s@localhost" % uuid.uuid4().hex[:8]
    stack.psql("UPDATE users SET email = '%s' WHERE id = %d"
               % (odd, u["id"]))
    assert login(anon, odd.upper())


def test_sql_metacharacters_are_stored_literally(stack, http):
    name = "Robert'); DROP TABLE users;-- \"\\ %_"
    r = http.post("/api/users", json=new_body(name=name))
    assert r.status_code == 201
    assert r.json()["name"] == name
    assert stack.psql("SELECT name FROM users WHERE id = %d"
                      % r.json()["id"]) == name


def test_list_filters_by_role_and_pages(stack, http):
    for _ in range(3):
        make_user(stack, "staff")
    r = http.get("/api/users", params={"role": "staff", "limit": 2})
    assert r.status_code == 200
    first = r.json()
    assert len(first["data"]) == 2
    assert all(u["role"] == "staff" for u in first["data"])
    r = http.get("/api/users", params={"role": "staff", "limit": 2,
                                       "after": first["page"]["next"]})
    ids = [u["id"] for u in first["data"]] + [u["id"] for u in r.json()["data"]]
    assert len(ids) == len(set(ids))
    assert_error(http.get("/api/users", params={"role": "god"}), 400,
                 "validation_failed")


def test_list_pages_forward_and_back_without_gaps(stack, http):
    for _ in range(11):
        make_user(stack, "customer")
    want = []
    params = {"role": "customer", "limit": 4}
    page = http.get("/api/users", params=params).json()
    assert page["page"]["prev"] is None
    pages = [page]
    while True:
        want += [u["id"] for u in page["data"]]
        if page["page"]["next"] is None:
            break
        page = http.get("/api/users", params=dict(
            params, after=page["page"]["next"])).json()
        pages.append(page)
    assert len(want) == len(set(want)) >= 11
    assert want == sorted(want, reverse=True)     # newest first
    # Back from the last page with prev reproduces every earlier page.
    back = pages[-1]
    for expected in reversed(pages[:-1]):
        back = http.get("/api/users", params=dict(
            params, before=back["page"]["prev"])).json()
        assert [u["id"] for u in back["data"]] == \
            [u["id"] for u in expected["data"]]
    assert back["page"]["prev"] is None


def test_self_reads_and_renames_but_not_role(stack, http):
    u, h = session_for(stack, http, "customer")
    r = http.get("/api/users/%d" % u["id"], headers=h)
    assert r.status_code == 200 and r.json()["email"] == u["email"]
    r = http.patch("/api/users/%d" % u["id"], json={"name": "New Name"},
                   headers=h)
    assert r.status_code == 200 and r.json()["name"] == "New Name"
    r = http.patch("/api/users/%d" % u["id"], json={"role": "admin"},
                   headers=h)
    assert_error(r, 403, "forbidden")
    assert stack.psql("SELECT role FROM users WHERE id = %d"
                      % u["id"]) == "customer"


def test_password_change_needs_the_current_one(stack, http, anon):
    u, h = session_for(stack, http, "student")
    other = bearer(login(anon, u["email"]))
    path = "/api/users/%d" % u["id"]
    r = http.patch(path, json={"password": "next-password-1"}, headers=h)
    assert "currentPassword" in assert_error(r, 422,
                                             "validation_failed")["fields"]
    r = http.patch(path, json={"password": "next-password-1",
                               "currentPassword": "wrong-password"},
                   headers=h)
    assert "currentPassword" in assert_error(r, 422,
                                             "validation_failed")["fields"]
    r = http.patch(path, json={"password": "short",
                               "currentPassword": PASSWORD}, headers=h)
    assert "password" in assert_error(r, 422, "validation_failed")["fields"]
    r = http.patch(path, json={"password": "next-password-1",
                               "currentPassword": PASSWORD}, headers=h)
    assert r.status_code == 200, r.text
    # This session stays, the others end.
    assert http.get("/api/auth/me", headers=h).status_code == 200
    assert_error(anon.get("/api/auth/me", headers=other), 401,
                 "unauthorized")
    login(anon, u["email"], "next-password-1")


def test_admin_cannot_set_someone_elses_password(stack, http):
    u = make_user(stack, "student")
    r = http.patch("/api/users/%d" % u["id"], json={
        "password": "chosen-by-admin", "currentPassword": "whatever-1"})
    assert_error(r, 403, "forbidden")


def test_role_change_ends_the_users_sessions(stack, http, anon):
    u, h = session_for(stack, http, "customer")
    r = http.patch("/api/users/%d" % u["id"], json={"role": "staff"})
    assert r.status_code == 200 and r.json()["role"] == "staff"
    assert_error(anon.get("/api/auth/me", headers=h), 401, "unauthorized")
    h = bearer(login(anon, u["email"]))
    assert anon.get("/api/cars", headers=h).status_code == 200


def test_a_role_change_that_waited_on_another_sees_its_role(stack, http,
                                                            anon,
                                                            admin_token):
    """A staff user made admin by a transaction still open, then made
    staff again by the API, which waits for it: the API's change is from
    admin, so the sessions end, though staff is what the statement's
    snapshot held (a session the user opened as admin meanwhile would
    otherwise have kept its role)."""
    u, h = session_for(stack, http, "staff")
    r = while_held(stack, "UPDATE users SET role = 'admin' WHERE id = %d"
                   % u["id"], "PATCH", http.url("/api/users/%d" % u["id"]),
                   admin_token, {"role": "staff"})
    assert r.status_code == 200 and r.json()["role"] == "staff", r.text
    assert_error(anon.get("/api/auth/me", headers=h), 401, "unauthorized")


def test_deactivation_ends_sessions_and_logins(stack, http, anon):
    u, h = session_for(stack, http, "student")
    r = http.delete("/api/users/%d" % u["id"])
    assert r.status_code == 200 and r.json()["isActive"] is False
    assert_error(anon.get("/api/auth/me", headers=h), 401, "unauthorized")
    r = anon.post("/api/auth/login", json={"login": u["email"],
                                           "password": PASSWORD})
    assert_error(r, 401, "unauthorized")


def test_admin_cannot_deactivate_themselves(stack, http):
    me = http.get("/api/auth/me").json()
    assert_error(http.delete("/api/users/%d" % me["id"]), 409, "conflict")


def role_of(stack, u):
    return stack.psql("SELECT role FROM users WHERE id = %d" % u["id"])


def active_admins(stack, *users):
    return sorted(u["id"] for u in users if stack.psql(
        "SELECT role = 'admin' AND is_active FROM users WHERE id = %d"
        % u["id"]) == "t")


@contextlib.contextmanager
def only_admins(stack, *users):
    """Within: users are the system's only active admins.  The others
    (the fixture's admin among them) are staff in the database until
    the end; their sessions still say admin, so their tokens still act."""
    others = stack.psql(
        "UPDATE users SET role = 'staff' WHERE role = 'admin' AND is_active "
        "AND id NOT IN (%s) RETURNING id"
        % ", ".join(str(u["id"]) for u in users)).split()
    try:
        yield
    finally:
        if others:
            stack.psql("UPDATE users SET role = 'admin' WHERE id IN (%s)"
                       % ", ".join(others))


def admin_with_token(stack, http):
    a = make_user(stack, "admin")
    return a, login(http, a["email"])


def test_admin_may_step_down_while_another_admin_remains(stack, http, anon):
    """Their own role, as anyone's: the rule is that the system keeps
    an active admin, and here it does."""
    a, h = session_for(stack, http, "admin")
    path = "/api/users/%d" % a["id"]
    r = http.patch(path, json={"role": "admin", "name": "Still Admin"},
                   headers=h)
    assert r.status_code == 200 and r.json()["name"] == "Still Admin"
    assert http.get("/api/auth/me", headers=h).status_code == 200
    r = http.patch(path, json={"role": "staff"}, headers=h)
    assert r.status_code == 200 and r.json()["role"] == "staff", r.text
    # A role change: the session that made it ends too.
    assert_error(anon.get("/api/auth/me", headers=h), 401, "unauthorized")


@pytest.mark.parametrize("role", ["staff", "customer", "student"])
def test_the_last_admin_cannot_step_down(stack, http, role):
    a, h = session_for(stack, http, "admin")
    with only_admins(stack, a):
        r = http.patch("/api/users/%d" % a["id"], json={"role": role},
                       headers=h)
        body = assert_error(r, 409, "conflict")
        assert "last active admin" in body["message"]
        assert role_of(stack, a) == "admin"
        # Decided before the sessions end: this one still works.
        assert http.get("/api/auth/me", headers=h).status_code == 200
        r = http.patch("/api/users/%d" % a["id"], json={"name": "Last"},
                       headers=h)
        assert r.status_code == 200, r.text


def test_admin_cannot_deactivate_themselves(stack, http):
    me = http.get("/api/auth/me").json()
    assert_error(http.delete("/api/users/%d" % me["id"]), 409, "conflict")


@pytest.mark.parametrize("method,body", [("PATCH", {"role": "staff"}),
                                         ("DELETE", None)])
def test_the_other_admin_goes_then_the_last_stays(stack, http, method, body):
    """One admin demotes or deactivates the other: 200; then the one
    left can't step down."""
    a1, t1 = admin_with_token(stack, http)
    a2 = make_user(stack, "admin")
    with only_admins(stack, a1, a2):
        r = request(method, http.url("/api/users/%d" % a2["id"]),
                    json=body, headers=bearer(t1))
        assert r.status_code == 200, r.text
        r = http.patch("/api/users/%d" % a1["id"], json={"role": "staff"},
                       headers=bearer(t1))
        assert "last active admin" in assert_error(r, 409,
                                                   "conflict")["message"]
        assert active_admins(stack, a1, a2) == [a1["id"]]


# The other admin's change as users.c makes it: its UPDATE, then the lock
# that orders the changes taking an admin away, held to its commit.
ADMINS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('keel:users:admins'))"


@pytest.mark.parametrize("held,method,body", [
    ("role = 'staff'", "PATCH", {"role": "staff"}),
    ("is_active = false", "DELETE", None),
    ("role = 'student'", "DELETE", None),
])
def test_admins_removing_each_other_at_once_keep_one(stack, http, held,
                                                     method, body):
    """a2 demotes or deactivates a1 (held uncommitted) while a1 does the
    same to a2: a1's request waits, then counts what a2's committed and
    finds no other admin: 409, and a2 stays."""
    a1, t1 = admin_with_token(stack, http)
    a2 = make_user(stack, "admin")
    with only_admins(stack, a1, a2):
        r = while_held(stack, "UPDATE users SET %s WHERE id = %d; %s"
                       % (held, a1["id"], ADMINS_LOCK), method,
                       http.url("/api/users/%d" % a2["id"]), t1, body)
        assert "last active admin" in assert_error(r, 409,
                                                   "conflict")["message"]
        assert active_admins(stack, a1, a2) == [a2["id"]]


def test_admins_removing_each_other_in_many_rounds_keep_one(stack, http):
    """Rounds (bounded in time) of two admins demoting or deactivating
    each other, the two requests sent at once: one wins, never both."""
    deadline = time.monotonic() + 30
    kinds = [("PATCH", {"role": "staff"}), ("DELETE", None)]
    rounds = 0
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        while rounds < 12 and time.monotonic() < deadline:
            (a1, t1), (a2, t2) = (admin_with_token(stack, http),
                                  admin_with_token(stack, http))
            method, body = kinds[rounds % 2]
            go = threading.Barrier(2)

            def send(token, target):
                go.wait(10)
                return request(method, http.url("/api/users/%d"
                                                 % target["id"]),
                               json=body, headers=bearer(token), timeout=60)
            with only_admins(stack, a1, a2):
                f = [pool.submit(send, t1, a2), pool.submit(send, t2, a1)]
                got = sorted(x.result().status_code for x in f)
                # The loser is refused, or finds its session ended by
                # the winner before it was read.
                assert got in ([200, 401], [200, 409]), \
                    [x.result().text for x in f]
                assert len(active_admins(stack, a1, a2)) == 1
            rounds += 1
    assert rounds >= 2


# ------------------------------------------------ a customer's contracts

def contract(http, customer, start="2030-04-01", end="2030-04-10"):
    r = http.post("/api/contracts", json={
        "carId": new_car(http)["id"], "customerId": customer["id"],
        "startDate": start, "endDate": end})
    assert r.status_code == 201, r.text
    return r.json()


def is_active(stack, u):
    return stack.psql("SELECT is_active FROM users WHERE id = %d" % u["id"])


def test_deactivating_a_customer_with_an_active_contract_is_409(stack,
                                                                http):
    u, h = session_for(stack, http, "customer")
    c = contract(http, u)
    body = assert_error(http.delete("/api/users/%d" % u["id"]), 409,
                        "conflict")
    assert "active contracts" in body["message"]
    assert is_active(stack, u) == "t"
    # Refused before the sessions end: the customer still sees it.
    assert http.get("/api/contracts/%d" % c["id"],
                    headers=h).status_code == 200
    r = http.patch("/api/contracts/%d" % c["id"],
                   json={"status": "completed"})
    assert r.status_code == 200, r.text
    r = http.delete("/api/users/%d" % u["id"])
    assert r.status_code == 200 and r.json()["isActive"] is False, r.text


def test_a_contract_whose_period_ended_does_not_keep_the_customer(stack,
                                                                  http):
    u = make_user(stack, "customer")
    contract(http, u, "2020-01-01", "2020-01-05")
    r = http.delete("/api/users/%d" % u["id"])
    assert r.status_code == 200 and r.json()["isActive"] is False, r.text


@pytest.mark.parametrize("role", ["student", "staff", "admin"])
def test_role_change_of_a_customer_with_an_active_contract_is_409(
        stack, http, role):
    u, h = session_for(stack, http, "customer")
    contract(http, u)
    r = http.patch("/api/users/%d" % u["id"], json={"role": role})
    assert "active contracts" in assert_error(r, 409, "conflict")["message"]
    assert role_of(stack, u) == "customer"
    assert http.get("/api/contracts", headers=h).status_code == 200
    # Other changes are not held up by the contract.
    r = http.patch("/api/users/%d" % u["id"], json={"name": "Booked",
                                                    "role": "customer"})
    assert r.status_code == 200 and r.json()["name"] == "Booked", r.text


def test_role_change_of_a_deactivated_user_is_409(stack, http):
    """Nothing reactivates an account, and it has no sessions to take a
    role into: its role stays, and no one is told of a change.  Its
    other fields still change (an admin's correction of the record)."""
    u = make_user(stack, "student")
    assert http.delete("/api/users/%d" % u["id"]).status_code == 200
    r = http.patch("/api/users/%d" % u["id"], json={"role": "staff"})
    assert "deactivated" in assert_error(r, 409, "conflict")["message"]
    assert role_of(stack, u) == "student"
    assert stack.psql("SELECT count(*) FROM outbox WHERE kind = "
                      "'role_changed' AND (payload->>'userId')::bigint = %d"
                      % u["id"]) == "0"
    r = http.patch("/api/users/%d" % u["id"], json={"name": "Gone"})
    assert r.status_code == 200 and r.json()["isActive"] is False, r.text


# A contract's insert as contracts.c makes it: the car's and the
# customer's rows held FOR SHARE to its commit.
INSERT_CONTRACT = ("INSERT INTO contracts (car_id, customer_id, start_date, "
                   "end_date) SELECT c.id, u.id, '2030-06-01', '2030-06-05' "
                   "FROM cars c, users u WHERE c.id = %d AND NOT "
                   "c.is_archived AND u.id = %d AND u.role = 'customer' AND "
                   "u.is_active FOR SHARE OF c, u")


@pytest.mark.parametrize("method,body", [("DELETE", None),
                                         ("PATCH", {"role": "student"})])
def test_taking_a_customer_away_racing_a_contract_insert_sees_it(
        stack, http, admin_token, method, body):
    """The contract's insert holds the customer's row uncommitted; the
    deactivation or role change waits for it, then sees the contract."""
    u = make_user(stack, "customer")
    car = new_car(http)["id"]
    r = while_held(stack, INSERT_CONTRACT % (car, u["id"]), method,
                   http.url("/api/users/%d" % u["id"]), admin_token, body)
    assert "active contracts" in assert_error(r, 409, "conflict")["message"]
    assert stack.psql("SELECT role, is_active FROM users WHERE id = %d"
                      % u["id"]) == "customer|t"


@pytest.mark.parametrize("held", ["is_active = false", "role = 'student'"])
def test_contract_insert_racing_a_customer_taken_away_sees_it(
        stack, http, admin_token, held):
    """The deactivation or role change holds the customer's row
    uncommitted; a new contract waits for it, then finds no active
    customer: 422, and no contract."""
    u = make_user(stack, "customer")
    car = new_car(http)["id"]
    r = while_held(stack, "UPDATE users SET %s WHERE id = %d"
                   % (held, u["id"]), "POST", http.url("/api/contracts"),
                   admin_token, {"carId": car, "customerId": u["id"],
                                 "startDate": "2030-06-01",
                                 "endDate": "2030-06-05"})
    assert "customerId" in assert_error(r, 422,
                                        "validation_failed")["fields"]
    assert stack.psql("SELECT count(*) FROM contracts WHERE customer_id = "
                      "%d" % u["id"]) == "0"


def test_unknown_user_is_404(http):
    assert_error(http.get("/api/users/999999999"), 404, "not_found")
    assert_error(http.patch("/api/users/999999999", json={"name": "x"}), 404,
                 "not_found")
