# SPDX-License-Identifier: ISC
"""test_hardening_links.py -- secrets at rest, reset timing and the
smaller holes of issue 9 (items 4-6), each tried as an attacker would.

- No set-password link is ever stored readable: not in the outbox, not
  in a Redis job, not in a dead letter; the drainer makes the token when
  it sends.
- A reset request costs the same for a known and an unknown address.
- Links die with the password or address they were for; names can't
  carry control characters into headers and are quoted there; sessions
  per user are capped; REDIS_URL=unix:// works; STARTTLS is used when
  the SMTP server offers it; an unknown query parameter is a 400.
- A display name holding '.' is quoted ("J. R. R. Tolkien", ".").
- Another spelling of an address (a Kelvin sign for 'k') is a 422 at
  the reset request, not a fresh limiter bucket.
- Reset emails to one account are capped (KEEL_RESET_MAIL_MAX) however
  many client addresses ask.
"""

import os
import socket
import statistics
import subprocess
import time

import pytest

from accounts import PASSWORD, bearer, login, make_user
from helpers import (assert_error, link_tokens, post_from, redis_cli,
                     wait_until)
from stack import free_port
from test_auth_hardening import OwnAuth
from test_jobs import FAST, drain, jobs, summary  # noqa: F401

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "scripts")


def everything_stored(stack):
    """The text of every outbox row and every Redis key of the queues."""
    parts = [stack.psql("SELECT coalesce(string_agg(payload::text || ' ' "
                        "|| idempotency_key, ' '), '') FROM outbox")]
    for k in redis_cli(stack, "--scan", "--pattern", "keel:q:*").split():
        kind = redis_cli(stack, "TYPE", k)
        if kind == "hash":
            parts.append(redis_cli(stack, "HGETALL", k))
        elif kind == "stream":
            parts.append(redis_cli(stack, "XRANGE", k, "-", "+"))
    return "\n".join(parts)


# ------------------------------------------------------ 4: no secret at rest

def test_no_link_is_stored_in_the_outbox_redis_or_a_dead_letter(jobs, http,
                                                                anon):
    u = make_user(jobs, "student")
    r = anon.post("/api/auth/password-reset", json={"email": u["email"]})
    assert r.status_code == 202
    tag = "%d" % time.time_ns()
    r = http.post("/api/users", json={
        "email": "inv-%s@e2e.test" % tag, "username": "inv" + tag,
        "name": "Invitee", "role": "student", "sendCredentials": True})
    assert r.status_code == 201, r.text
    # Delivered: the tokens exist only in the emails.
    assert drain(jobs).returncode == 0
    tokens = link_tokens(jobs, u["email"]) + link_tokens(
        jobs, "inv-%s@e2e.test" % tag)
    assert len(tokens) == 2
    # And a reset whose every attempt fails ends as a dead letter.
    jobs.set_smtp_mode("reject")
    anon.post("/api/auth/password-reset", json={"email": u["email"]})
    drain(jobs)
    assert "password_reset_request" in redis_cli(
        jobs, "XRANGE", "keel:q:email:x", "-", "+")
    stored = everything_stored(jobs)
    for t in tokens:
        assert t not in stored
    assert "set-password" not in stored
    # The links work: made at sending, they are real single-use tokens.
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": tokens[0], "password": "a-brand-new-one"})
    assert r.status_code == 204, r.text


# -------------------------------------------------- 5: no timing oracle

def test_reset_requests_cost_the_same_for_known_and_unknown(stack, anon):
    u = make_user(stack, "student")
    ghost = "ghost-%d@e2e.test" % time.time_ns()
    times = {u["email"]: [], ghost: []}
    # Warm the connection and the statements first; then interleaved, so
    # the machine's drift falls on both alike.
    for email in (u["email"], ghost) * 10:
        anon.post("/api/auth/password-reset", json={"email": email})
    for _ in range(200):
        for email in (u["email"], ghost):
            t0 = time.perf_counter()
            r = anon.post("/api/auth/password-reset", json={"email": email})
            times[email].append(time.perf_counter() - t0)
            assert r.status_code == 202
    known = statistics.median(times[u["email"]])
    unknown = statistics.median(times[ghost])
    assert abs(known - unknown) / min(known, unknown) < 0.15, \
        "median known %.3f ms, unknown %.3f ms" % (known * 1e3,
                                                    unknown * 1e3)


# ------------------------------------------------------ 6: smaller holes

def test_a_password_change_ends_the_links_sent_before(jobs, anon):
    u = make_user(jobs, "student")
    anon.post("/api/auth/password-reset", json={"email": u["email"]})
    drain(jobs)
    (token,) = link_tokens(jobs, u["email"])
    h = bearer(login(anon, u["email"]))
    r = anon.patch("/api/users/%d" % u["id"], headers=h, json={
        "password": "changed-by-patch", "currentPassword": PASSWORD})
    assert r.status_code == 200, r.text
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "from-the-old-link"})
    assert_error(r, 400, "bad_request")
    login(anon, u["email"], "changed-by-patch")


def test_an_address_change_ends_the_links_sent_before(jobs, http, anon):
    u = make_user(jobs, "student")
    anon.post("/api/auth/password-reset", json={"email": u["email"]})
    drain(jobs)
    (token,) = link_tokens(jobs, u["email"])
    r = http.patch("/api/users/%d" % u["id"],
                   json={"email": "moved-%d@e2e.test" % time.time_ns()})
    assert r.status_code == 200, r.text
    r = anon.post("/api/auth/password-reset/confirm",
                  json={"token": token, "password": "from-the-old-link"})
    assert_error(r, 400, "bad_request")


def test_a_name_with_control_characters_is_refused(http):
    tag = "%d" % time.time_ns()
    r = http.post("/api/users", json={
        "email": "cr-%s@e2e.test" % tag, "username": "cr" + tag,
        "name": "Ann\r\nBcc: someone@else.example", "role": "student"})
    assert list(assert_error(r, 422, "validation_failed")["fields"]) == [
        "name"]


def test_a_name_with_commas_and_quotes_is_one_address(jobs, http):
    tag = "%d" % time.time_ns()
    name = 'O\'Brien, Ann "Nan"'
    r = http.post("/api/users", json={
        "email": "q-%s@e2e.test" % tag, "username": "q" + tag,
        "name": name, "role": "student", "sendCredentials": True})
    assert r.status_code == 201, r.text
    drain(jobs)
    (m,) = [m for m in jobs.mail()
            if "q-%s@e2e.test" % tag in m["X-Sink-Rcpt"]]
    addrs = m["To"].addresses
    assert len(addrs) == 1, str(m["To"])
    assert addrs[0].addr_spec == "q-%s@e2e.test" % tag
    assert addrs[0].display_name == name


@pytest.mark.parametrize("name", ["J. R. R. Tolkien", ".", ".Bob",
                                  'Dr. "Who" \\ Else'])
def test_a_name_with_dots_is_quoted_in_the_to_header(jobs, http, name):
    """RFC 5322 forbids writing '.' in a bare phrase: Python's parser
    flags "J. R. R. Tolkien" and fails on a lone "."."""
    tag = "%d" % time.time_ns()
    to = "dot-%s@e2e.test" % tag
    r = http.post("/api/users", json={
        "email": to, "username": "dot" + tag, "name": name,
        "role": "student", "sendCredentials": True})
    assert r.status_code == 201, r.text
    drain(jobs)
    (m,) = [m for m in jobs.mail() if to in m["X-Sink-Rcpt"]]
    assert m["To"].defects == (), m["To"].defects
    (addr,) = m["To"].addresses
    assert (addr.display_name, addr.addr_spec) == (name, to)


def test_sessions_per_user_are_capped_the_oldest_end(stack, anon):
    u = make_user(stack, "student")
    tokens = [login(anon, u["email"]) for _ in range(23)]
    # The default cap is 20: the first three logins' sessions ended.
    assert int(redis_cli(stack, "SCARD", "keel:user-sess:%d" % u["id"])) == 20
    codes = [anon.get("/api/auth/me", headers=bearer(t)).status_code
             for t in tokens]
    assert codes == [401] * 3 + [200] * 20, codes


def test_redis_over_a_unix_socket(stack, tmp_path):
    # The stack's Redis listens on TCP; a second one on a socket only.
    sock = str(tmp_path / "redis.sock")
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket",
                          sock, "--dir", str(tmp_path), "--save", ""],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(sock), 10, "redis's socket")
        run = stack.program("keel-queues", "enqueue", "email", "test", "{}",
                            env={"REDIS_URL": "unix://" + sock})
        assert run.returncode == 0, run.stderr
        out = subprocess.run(["redis-cli", "-s", sock, "XLEN",
                              "keel:q:email:s"], stdout=subprocess.PIPE,
                             text=True, timeout=10).stdout.strip()
        assert out == "1"
    finally:
        p.terminate()
        p.wait(timeout=10)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def test_starttls_is_used_when_the_server_offers_it(jobs, tmp_path):
    d = str(tmp_path)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    maildir = os.path.join(d, "mail")
    env = dict(os.environ, PYTHONPATH=SCRIPTS)
    sink = subprocess.Popen(
        ["/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l",
         "127.0.0.1:%d" % port, "--tlscert", cert, "--tlskey", key,
         "--no-requiretls", "-c", "smtp_sink.MaildirSink", maildir],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(port), 10, "the TLS sink")
        e = dict(FAST, SMTP_URL="smtp://127.0.0.1:%d" % port,
                 SMTP_CA_FILE=cert)
        key_ = "tls-%d" % time.time_ns()
        r = jobs.program("keel-queues", "enqueue", "--key", key_,
                          "email", "test", '{"to":"t@e2e.example"}',
                          env=e)
        assert r.returncode == 0, r.stderr
        drain(jobs, env=e)
        got = []
        for f in os.listdir(os.path.join(maildir, "new")):
            with open(os.path.join(maildir, "new", f), "rb") as fh:
                got.append(fh.read())
        mine = [m for m in got if b"t@e2e.example" in m]
        assert mine, "the message did not arrive"
        assert b"X-Sink-TLS: yes" in mine[0]
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def test_an_unknown_query_parameter_is_a_400_naming_it(http):
    r = http.get("/api/cars", params={"colour": "red", "limit": 5})
    assert list(assert_error(r, 400, "validation_failed")["fields"]) == [
        "colour"]
    r = http.get("/api/cars/1", params={"fresh": "1"})
    assert list(assert_error(r, 400, "validation_failed")["fields"]) == [
        "fresh"]


# ------------------------------------- addresses the mailer can reach

@pytest.mark.parametrize("spell", [
    lambda e: e.replace("k", "\u212a", 1),   # KELVIN SIGN, lower(): 'k'
    lambda e: e.replace("i", "\u0130", 1),   # I WITH DOT, lower(): 'i'
    lambda e: e + ".",
    lambda e: "x<" + e,
], ids=["kelvin", "dotted-i", "trailing-dot", "angle"])
def test_another_spelling_of_an_address_is_a_422_not_a_fresh_bucket(
        jobs, anon, spell):
    u = make_user(jobs, "student")
    email = "kiki-%d@e2e.test" % time.time_ns()
    jobs.psql("UPDATE users SET email = '%s' WHERE id = %d"
              % (email, u["id"]))
    r = anon.post("/api/auth/password-reset", json={"email": spell(email)})
    assert list(assert_error(r, 422, "validation_failed")["fields"]) == [
        "email"]
    assert jobs.psql("SELECT count(*) FROM outbox") == "0"
    # The address itself still asks (and counts in its own bucket).
    r = anon.post("/api/auth/password-reset", json={"email": email})
    assert r.status_code == 202


# ------------------------------------------------- the reset email cap

RESET_MAIL_MAX = 3
ASKERS = 4              # client addresses, each with the auth limit's 5


def reset_from(stack, src, email):
    """A reset request sent from the loopback address src: its status."""
    return post_from(stack, src, "/api/auth/password-reset",
                     {"email": email})


def test_reset_emails_to_one_account_are_capped_however_many_ask(jobs):
    """The request's limiter keys on the asker and the address typed, so
    many askers each got their own 5 through to one inbox (the probe's
    130 reset emails).  The drainer caps what the account is sent."""
    u = make_user(jobs, "student")
    spellings = [u["email"], u["email"].upper(), u["email"].title()]
    with OwnAuth(jobs, KEEL_RATELIMIT_AUTH="5/900"):
        codes = [reset_from(jobs, "127.0.0.%d" % (2 + a),
                            spellings[(a + i) % len(spellings)])
                 for a in range(ASKERS) for i in range(5)]
    # Every answer the same: the cap says nothing to whoever asks.
    assert codes == [202] * (ASKERS * 5), codes
    p = drain(jobs, env={"KEEL_RESET_MAIL_MAX": "%d/900" % RESET_MAIL_MAX})
    s = summary(p.stdout)
    assert s["failed"] == 0 and s["retried"] == 0, s
    assert len(link_tokens(jobs, u["email"])) == RESET_MAIL_MAX
    # Each one held back is logged by the account's id, not its address.
    log = p.stdout + p.stderr
    assert log.count("reset email not sent") == ASKERS * 5 - RESET_MAIL_MAX
    assert "uid=%d" % u["id"] in log
    assert u["email"] not in log.lower()
    # The jobs past the cap are done (not retried, not dead letters).
    assert jobs.psql("SELECT count(*) FROM outbox WHERE kind = "
                     "'password_reset_request' AND finished_at IS NULL "
                     "AND lower(payload->>'email') = '%s'"
                     % u["email"].lower()) == "0"
    # A later drain, a later ask: the window is still spent.
    assert reset_from(jobs, "127.0.0.%d" % (2 + ASKERS), u["email"]) == 202
    drain(jobs, env={"KEEL_RESET_MAIL_MAX": "%d/900" % RESET_MAIL_MAX})
    assert len(link_tokens(jobs, u["email"])) == RESET_MAIL_MAX
