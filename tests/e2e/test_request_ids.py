# SPDX-License-Identifier: ISC
"""test_request_ids.py -- X-Request-Id end to end (issue 12): keel's own
id unless a trusted proxy hands one in; either way the one id is on the
response, the app's log lines, the outbox row the request wrote, the
drainer's log lines for that job, and the email it sends.
"""

import datetime
import re
import secrets

import pytest

from accounts import bearer, login, make_user
from helpers import BaseUrlSession, own_stack, wait_until
from sse import SSE


def test_an_untrusted_client_cannot_choose_the_id(http):
    r = http.get("/api/cars", headers={"X-Request-Id": "mine-123"})
    rid = r.headers["X-Request-Id"]
    assert rid != "mine-123"
    assert len(rid) == 16 and int(rid, 16) >= 0


ACCESS = re.compile(
    r"^cars\[(\d+)\] info req=([0-9a-f]{16}) access "
    r"time=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) method=GET "
    r"path=/api/cars/no(\S*) status=404 ms=(\d+\.\d\d)$", re.M)


def test_the_access_line_names_the_request_and_not_its_query(stack, http):
    # Two requests in the same second share its text; the path is
    # escaped and the query (it may carry secrets) left out.
    secret = secrets.token_hex(8)
    ids = []
    for _ in range(2):
        r = http.get("/api/cars/no%20pe?token=" + secret)
        assert r.status_code == 404, r.text
        ids.append(r.headers["X-Request-Id"])
    wait_until(lambda: all(i in stack.log("cars") for i in ids), 5,
               "both access lines")
    lines = {m.group(2): m for m in ACCESS.finditer(stack.log("cars"))}
    for i in ids:
        m = lines[i]
        assert int(m.group(1)) > 0
        t = datetime.datetime.strptime(m.group(3), "%Y-%m-%dT%H:%M:%S.%fZ")
        age = datetime.datetime.utcnow() - t
        assert datetime.timedelta(0) <= age < datetime.timedelta(seconds=30)
        assert m.group(4) == "\\x20pe"       # the space escaped
        assert 0 <= float(m.group(5)) < 5000
    assert secret not in stack.log("cars")


@pytest.fixture(scope="module")
def proxied(request):
    """A stack whose lighttpd's peer (this test, on 127.0.0.1) counts as
    the trusted proxy in front of it."""
    return own_stack(request, extra_apps=None,
                     env={"TRUSTED_PROXIES": "127.0.0.1"})


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


def test_the_stream_takes_the_id_of_a_trusted_proxy_only(proxied):
    """The stream app is behind lighttpd's mod_proxy, not FastCGI: the
    peer lighttpd saw is the last X-Forwarded-For hop, which lighttpd
    appends, so a client can't pass for the proxy by naming it."""
    u = make_user(proxied, "student")
    with BaseUrlSession(proxied.base_url) as s:
        h = bearer(login(s, u["email"]))
    rid = "edge-" + secrets.token_hex(8)
    st = SSE.open(proxied, headers=dict(h, **{"X-Request-Id": rid}))
    st.close()
    assert st.status == 200 and st.headers["X-Request-Id"] == rid
    wait_until(lambda: "req=%s access" % rid in proxied.log("stream"), 5,
               "the proxy's id on the stream's access line")
    for src, xff in (("127.0.0.2", "127.0.0.1"), ("127.0.0.1", None)):
        other = "edge-" + secrets.token_hex(8)
        hh = dict(h, **{"X-Request-Id": other if xff else "has space"})
        if xff:
            hh["X-Forwarded-For"] = xff
        st = SSE.open(proxied, headers=hh, source=src)
        st.close()
        assert st.status == 200
        got = st.headers["X-Request-Id"]
        assert got not in (other, "has space") and len(got) == 16
