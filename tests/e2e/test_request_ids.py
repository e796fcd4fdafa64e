# SPDX-License-Identifier: ISC
"""test_request_ids.py -- X-Request-Id end to end (issue 12): keel's own
id unless a trusted proxy hands one in; either way the one id is on the
response, the app's log lines, the outbox row the request wrote, the
drainer's log lines for that job, and the email it sends.
"""

import secrets

import pytest

from accounts import make_user
from helpers import BaseUrlSession, wait_until
from stack import Stack, StackError


def test_an_untrusted_client_cannot_choose_the_id(http):
    r = http.get("/api/cars", headers={"X-Request-Id": "mine-123"})
    rid = r.headers["X-Request-Id"]
    assert rid != "mine-123"
    assert len(rid) == 16 and int(rid, 16) >= 0


@pytest.fixture(scope="module")
def proxied(request):
    """A stack whose lighttpd's peer (this test, on 127.0.0.1) counts as
    the trusted proxy in front of it."""
    s = Stack(extra_apps=None, env={"TRUSTED_PROXIES": "127.0.0.1"})
    request.addfinalizer(s.stop)
    try:
        s.start()
    except StackError as e:
        pytest.fail("could not start the stack: %s" % e)
    return s


def test_a_trusted_proxys_id_follows_a_reset_to_the_email(proxied):
    u = make_user(proxied, "customer")
    rid = "edge-" + secrets.token_hex(8) + ":1"
    with BaseUrlSession(proxied.base_url) as s:
        r = s.post("/api/auth/password-reset", json={"email": u["email"]},
                   headers={"X-Request-Id": rid})
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-Id"] == rid
    # The access line is written after the reply went out.
    wait_until(lambda: rid in proxied.log("auth"), 5, "the id in auth's log")
    assert proxied.psql("SELECT request_id FROM outbox WHERE payload->>"
                        "'email' = '%s'" % u["email"]) == rid
    p = proxied.program("keel-drain-email", "--until-empty", "--budget",
                        20)
    assert p.returncode == 0, p.stderr
    assert rid in p.stderr                   # the job's log lines
    mails = [m for m in proxied.mail()
             if m["To"].addresses[0].addr_spec == u["email"]]
    assert len(mails) == 1
    assert mails[0]["X-Request-Id"] == rid


def test_a_bad_id_from_the_proxy_is_replaced(proxied):
    with BaseUrlSession(proxied.base_url) as s:
        for bad in ("has space", "x" * 65, "semi;colon"):
            r = s.get("/health", headers={"X-Request-Id": bad})
            rid = r.headers["X-Request-Id"]
            assert rid != bad and len(rid) == 16
