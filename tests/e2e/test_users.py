# SPDX-License-Identifier: ISC
"""test_users.py -- accounts (API.md "Auth and users"; issue 3):
invitations through the outbox, uniqueness, who may read and change whom,
password changes, deactivation ending sessions at once.
"""

import json
import uuid

import pytest

from accounts import PASSWORD, bearer, login, make_user, session_for
from helpers import assert_error, link_tokens
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


def test_admin_cannot_demote_themselves(stack, http):
    """As with DELETE: the last admin could otherwise leave the system
    with none.  Their other fields, and another admin's role, still
    change."""
    a, h = session_for(stack, http, "admin")
    path = "/api/users/%d" % a["id"]
    for role in ("student", "staff", "customer"):
        body = assert_error(http.patch(path, json={"role": role},
                                       headers=h), 409, "conflict")
        assert body["message"] == "you can't change your own role"
    assert stack.psql("SELECT role FROM users WHERE id = %d"
                      % a["id"]) == "admin"
    assert http.get("/api/auth/me", headers=h).status_code == 200
    r = http.patch(path, json={"role": "admin", "name": "Still Admin"},
                   headers=h)
    assert r.status_code == 200 and r.json()["name"] == "Still Admin"
    assert http.get("/api/auth/me", headers=h).status_code == 200
    r = http.patch(path, json={"role": "staff"})
    assert r.status_code == 200 and r.json()["role"] == "staff"


def test_unknown_user_is_404(http):
    assert_error(http.get("/api/users/999999999"), 404, "not_found")
    assert_error(http.patch("/api/users/999999999", json={"name": "x"}), 404,
                 "not_found")
