# SPDX-License-Identifier: ISC
"""conftest.py -- fixtures for the end-to-end tests.

`stack`: one real keel stack for the whole session (see stack.py).
`http`:  a requests.Session bound to the stack's base URL:
         http.get("/api/cars"), http.url("/health").  It carries an
         admin's session (Authorization: Bearer), since most /api routes
         need one; a request's own Authorization header overrides it.
         Every response it gets is checked against docs/openapi.yaml
         (helpers.BaseUrlSession, apicheck.py).
`anon`:  the same without a session.
`admin_token`: that admin's token (accounts.py makes other users).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import BaseUrlSession  # noqa: E402
from stack import Stack, StackError  # noqa: E402


@pytest.fixture(scope="session")
def stack(request):
    s = Stack()
    request.addfinalizer(s.stop)
    try:
        s.start()
    except StackError as e:
        pytest.exit("could not start the stack: %s" % e, returncode=3)
    # Like hiredis's tests: never run against a database that holds data.
    # KEEL_DEMO=0, so cars must be empty right after the start.
    n = s.psql("SELECT count(*) FROM cars")
    if n != "0":
        s.stop()
        pytest.exit("refusing to run: the test database is not empty "
                    "(cars has %s rows)" % n, returncode=3)
    return s


@pytest.fixture(scope="session")
def admin_token(stack):
    from accounts import login, make_user
    with BaseUrlSession(stack.base_url) as s:
        return login(s, make_user(stack, "admin")["email"])


@pytest.fixture
def http(stack, admin_token):
    with BaseUrlSession(stack.base_url) as s:
        s.headers["Authorization"] = "Bearer " + admin_token
        yield s


@pytest.fixture
def anon(stack):
    with BaseUrlSession(stack.base_url) as s:
        yield s


def pytest_terminal_summary(terminalreporter, config):
    """The fault suite's table (test_faults.py), when it ran."""
    from faultload import TABLE
    got = config.stash.get(TABLE, None)
    if got:
        path, text = got
        terminalreporter.write_sep("-", "what survives what (%s)" % path)
        terminalreporter.write(text)
