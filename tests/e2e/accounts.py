# SPDX-License-Identifier: ISC
"""accounts.py -- users and sessions for the end-to-end tests.

Demo data is not loaded in test stacks, so tests make their own users
straight in PostgreSQL (with a precomputed Argon2id hash of PASSWORD, the
same form keel-admin and the API store) and log in over HTTP like any
client.  Other suites that need a session can use these too:

    from accounts import make_user, login, bearer
    admin = make_user(stack, "admin")
    h = bearer(login(http, admin["email"]))
    http.post("/api/cars", json=..., headers=h)
"""

import uuid

PASSWORD = "e2e-password-123"
# crypto_pwhash_str(PASSWORD), interactive limits (lib/auth.c).
PASSWORD_HASH = ("$argon2id$v=19$m=65536,t=2,p=1$UMgpc0Dj674FC8dhHvCkeg$"
                 "enCTpIA5+9ZcdpyIa62ZEmcJeGQxIftnxcJdCXHNWMk")
ROLES = ("admin", "staff", "customer", "student")


def make_user(stack, role, name=None, password_hash=PASSWORD_HASH,
              active=True):
    """A new user of role with a unique email and username; returns
    {"id", "email", "username", "name", "role"}."""
    tag = uuid.uuid4().hex[:12]
    u = {"email": "%s-%s@e2e.test" % (role, tag),
         "username": "%s_%s" % (role, tag),
         "name": name or "E2E %s %s" % (role, tag), "role": role}
    hash_sql = "NULL" if password_hash is None else "'%s'" % password_hash
    u["id"] = int(stack.psql(
        "INSERT INTO users (email, username, name, role, password_hash, "
        "is_active) VALUES ('%s', '%s', '%s', '%s', %s, %s) RETURNING id"
        % (u["email"], u["username"], u["name"].replace("'", "''"), role,
           hash_sql, "true" if active else "false")))
    return u


def login(http, who, password=PASSWORD):
    """Logs in by email or username; returns the token (asserts 200)."""
    r = http.post("/api/auth/login", json={"login": who,
                                           "password": password})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def bearer(token):
    return {"Authorization": "Bearer " + token}


def session_for(stack, http, role, **kw):
    """make_user + login: (user, headers)."""
    u = make_user(stack, role, **kw)
    return u, bearer(login(http, u["email"]))
