# SPDX-License-Identifier: ISC
"""test_jobs_api.py -- queue stats and dead-letter retry over HTTP (API.md
"Queues"), and the invitation and password-reset emails of the auth and
users resources delivered through the outbox, the relay, the email
drainer and the real SMTP server, with links that work.
"""

import re
import time
import urllib.parse

from accounts import PASSWORD, bearer, login, make_user, session_for
from test_jobs import (drain, enqueue, enqueue_unparseable,  # noqa
                       invitation, jobs, relay_and_drain, summary)


def test_queue_stats_for_admin(jobs, http):
    enqueue(jobs, "invitation", invitation(), count=2)
    enqueue(jobs, "invitation", invitation(), key="later", delay_ms=60000)
    r = http.get("/api/queues/email/stats")
    assert r.status_code == 200, r.text
    assert r.json() == {"waiting": 2, "active": 0, "delayed": 1,
                        "completed": 0, "failed": 0}
    assert http.get("/api/email-queue/stats").json() == r.json()
    assert http.get("/api/queues/nosuch/stats").status_code == 404


def test_queue_routes_are_admin_only(jobs, anon, stack):
    assert anon.get("/api/queues/email/stats").status_code == 401
    _, h = session_for(stack, anon, "staff")
    assert anon.get("/api/email-queue/stats", headers=h).status_code == 403
    assert anon.post("/api/queues/email/failed/retry",
                     headers=h).status_code == 403


def test_retry_failed_over_http(jobs, http):
    enqueue_unparseable(jobs, "bad-http")
    relay_and_drain(jobs)
    assert http.get("/api/email-queue/stats").json()["failed"] == 1
    r = http.post("/api/queues/email/failed/retry")
    assert r.status_code == 200 and r.json() == {"retried": 1}
    st = http.get("/api/email-queue/stats").json()
    assert st["failed"] == 0 and st["waiting"] == 1


def test_retry_over_http_moves_nothing_while_postgresql_is_down(jobs, http):
    """A dead letter moved back while its outbox row can't be revived is
    one the relay no longer watches: with PostgreSQL down the retry
    answers 503 and moves nothing (keel-queues exits 1)."""
    from test_api_basics import restart_primary
    enqueue_unparseable(jobs, "bad-http-nodb")
    relay_and_drain(jobs)
    assert http.get("/api/email-queue/stats").json()["failed"] == 1
    jobs.stop_component("primary")
    try:
        r = http.post("/api/queues/email/failed/retry")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "unavailable", r.text
        st = http.get("/api/email-queue/stats").json()
        assert (st["failed"], st["waiting"]) == (1, 0), st
    finally:
        restart_primary(http, jobs)
    r = http.post("/api/queues/email/failed/retry")
    assert r.status_code == 200 and r.json() == {"retried": 1}, r.text


def _link(msg):
    text = msg.get_body(("plain",)).get_content()
    m = re.search(r"https?://\S+", text)
    assert m, text
    return m.group(0)


def test_password_reset_email_delivers_a_working_link(jobs, anon):
    u = make_user(jobs, "customer")
    r = anon.post("/api/auth/password-reset", json={"email": u["email"]})
    assert r.status_code == 202, r.text
    s = relay_and_drain(jobs)
    assert s["processed"] == 1, s
    (m,) = jobs.mail()
    assert m["To"].addresses[0].addr_spec == u["email"]
    token = urllib.parse.parse_qs(
        urllib.parse.urlparse(_link(m)).query)["token"][0]
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "a-new-password-42"})
    assert r.status_code == 204, r.text
    login(anon, u["email"], "a-new-password-42")


def test_invitation_email_delivers_a_set_password_link(jobs, http, anon):
    email = "invitee-%d@e2e.test" % int(time.time() * 1000)
    r = http.post("/api/users", json={
        "email": email, "username": "inv%d" % int(time.time() * 1000),
        "name": "Invitee", "role": "student", "sendCredentials": True})
    assert r.status_code == 201, r.text
    relay_and_drain(jobs)
    (m,) = jobs.mail()
    assert m["To"].addresses[0].addr_spec == email
    assert m["Subject"] == "You are invited to keel"
    assert PASSWORD not in m.as_string()
    token = urllib.parse.parse_qs(
        urllib.parse.urlparse(_link(m)).query)["token"][0]
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "my-first-password"})
    assert r.status_code == 204, r.text
    assert login(anon, email, "my-first-password")
    assert bearer("x")


def test_retried_password_reset_is_delivered_once(jobs, http, anon):
    """A reset's email (through the outbox) dead-lettered by an SMTP
    outage longer than its attempts, then retried by an admin over HTTP,
    is delivered, once; a second retry of the completed job sends
    nothing."""
    u = make_user(jobs, "customer")
    r = anon.post("/api/auth/password-reset", json={"email": u["email"]})
    assert r.status_code == 202, r.text
    p = jobs.program("keel-outbox-relay", "--once")
    assert p.returncode == 0, p.stderr
    s = summary(drain(jobs, env={"SMTP_URL": "smtp://127.0.0.1:1"}).stdout)
    assert (s["processed"], s["failed"]) == (0, 1), s
    assert jobs.mail() == []
    r = http.post("/api/queues/email/failed/retry")
    assert r.status_code == 200 and r.json() == {"retried": 1}, r.text
    assert http.get("/api/email-queue/stats").json()["waiting"] == 1
    p = drain(jobs)
    s = summary(p.stdout)
    assert (s["processed"], s["failed"]) == (1, 0), (p.stdout, p.stderr)
    (m,) = jobs.mail()
    assert m["To"].addresses[0].addr_spec == u["email"]
    assert http.get("/api/email-queue/stats").json()["completed"] == 1
    assert jobs.psql("SELECT outcome FROM outbox WHERE kind = "
                     "'password_reset_request' AND payload->>'email' = "
                     "'%s'" % u["email"]) == "completed"
    r = http.post("/api/queues/email/failed/retry")
    assert r.status_code == 200 and r.json() == {"retried": 0}, r.text
    drain(jobs)
    assert len(jobs.mail()) == 1
