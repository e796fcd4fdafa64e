# SPDX-License-Identifier: ISC
"""test_browser.py -- the page (www/app/, README "The page") as lighttpd
serves it, and in Debian's real headless Chromium (issue 11, item 4).

Plain HTTP first: the page's files with their MIME types and its
Content-Security-Policy, lighttpd's error pages still JSON beside them.

Then the browser (chromium.py: the DevTools protocol over a pipe): a
student logs in through the page's form and sees their notifications; a
notification made the real way (an attempt submitted over the API, whose
job keel-drain-notifications turns into a row and a publish) appears in
the page through the stream; the stream app is rolled (SIGHUP to its
supervisor) and then stopped (SIGTERM) and started again while more
notifications are made; at the end the page holds every notification of
the user exactly once, in order, as PostgreSQL has them, and the stream
never delivered one twice or out of order.  The page's own record
(window.keelState) and its DOM are read with Runtime.evaluate.

The set-password page: an invitation email's link, as keel-drain-email
sends it, opened in the browser at /set-password (lighttpd rewrites that
path to www/app/set-password.html): the token leaves the address bar at
once, the password typed twice is set, a login with it works, and the
same link a second time is said to be used.
"""

import html.parser
import json
import os
import signal
import urllib.parse
import uuid

import pytest

from accounts import PASSWORD, bearer, login, make_user, session_for
from chromium import Chromium
from helpers import BaseUrlSession, assert_error, request, wait_until
from stack import ROOT, apps_conf
from test_jobs import jobs, relay_and_drain  # noqa: F401
from test_leaderboard import DRAIN_ENV, enqueue
from test_stack_cron import unprivileged
from test_tests import new_question, new_test, start

PAGE = "/app/"
SET_PASSWORD = "/set-password"      # the emails' links (lib/auth.c)
SET_PASSWORD_LOGGED = '"GET /app/set-password.html HTTP/1.1"'
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; img-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
STREAM_BINARY = "stream/keel-stream"
NOBODY = 999999999          # the made-up jobs' attempt and test


# ------------------------------------------------------------ plain HTTP

class InlineCode(html.parser.HTMLParser):
    """What a page has that a CSP without 'unsafe-inline' would block:
    script elements with a body or without src, style elements and
    attributes, on* handlers, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found = []
        self.scripts = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self._in_script = True
            self.scripts.append(a.get("src"))
            if not a.get("src"):
                self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        for k, v in attrs:
            if k == "style" or k.startswith("on"):
                self.found.append("%s=%r on <%s>" % (k, v, tag))
            if v and v.strip().lower().startswith("javascript:"):
                self.found.append("javascript: URL on <%s>" % tag)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append("inline script %r" % data[:40])


@pytest.mark.parametrize("path,ctype", [
    ("/app/", "text/html; charset=utf-8"),
    ("/app/index.html", "text/html; charset=utf-8"),
    ("/app/app.js", "text/javascript; charset=utf-8"),
    ("/app/app.css", "text/css; charset=utf-8"),
    ("/app/set-password.html", "text/html; charset=utf-8"),
    ("/app/set-password.js", "text/javascript; charset=utf-8"),
])
def test_page_files_have_their_type_and_the_csp(anon, path, ctype):
    r = anon.get(path)
    assert r.status_code == 200, r.text[:200]
    assert r.headers["Content-Type"] == ctype
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    name = "index.html" if path.endswith("/") else path.rsplit("/", 1)[1]
    with open(os.path.join(ROOT, "www", "app", name), "rb") as f:
        assert r.content == f.read()


def test_page_has_no_inline_code(anon):
    p = InlineCode()
    p.feed(anon.get(PAGE).text)
    assert p.found == []
    assert p.scripts == ["app.js"]


def page_headers_are_the_pages(r):
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-cache"


def test_set_password_is_served_at_the_emails_path(stack, anon):
    """The emails' link, /set-password?token=..., is the page's
    set-password.html with the page's headers; the apps never see it."""
    for q in ("", "?token=" + "A" * 43, "?token="):
        r = anon.get(SET_PASSWORD + q)
        assert r.status_code == 200, r.text[:200]
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        page_headers_are_the_pages(r)
        with open(os.path.join(ROOT, "www", "app", "set-password.html"),
                  "rb") as f:
            want = f.read()
        assert r.content == want
    r = request("HEAD", stack.url(SET_PASSWORD))
    assert r.status_code == 200
    page_headers_are_the_pages(r)
    p = InlineCode()
    p.feed(want.decode())
    assert p.found == []
    assert p.scripts == ["/app/set-password.js"]
    # GET and HEAD only, as the page's other files.
    assert_error(anon.post(SET_PASSWORD + "?token=x", json={}), 403,
                 "forbidden")
    # That exact path: the rest is the apps' as before.
    for path in ("/set-password/", "/set-passwordx", "/set-password/x"):
        assert_error(anon.get(path), 404, "not_found")
    # The token never reaches the access log (lighttpd.conf logs %U, the
    # rewritten path).
    wait_until(lambda: stack.log("access").count(SET_PASSWORD_LOGGED) >= 3,
               5, "the page's GETs in the access log")
    assert "A" * 43 not in stack.log("access")


def test_page_errors_stay_json_and_the_api_is_untouched(anon):
    # lighttpd's own error pages under /app/: JSON, whatever the name asked.
    for path in ("/app/nothing.js", "/app/nothing.html", "/app/x/"):
        assert_error(anon.get(path), 404, "not_found")
    # The page takes no POST (lighttpd would serve it the file).
    assert_error(anon.post("/app/", data="x"), 403, "forbidden")
    r = anon.get("/app", allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"].endswith("/app/")
    # The page's prefix is a path segment; the rest still goes to the apps.
    assert_error(anon.get("/apps"), 404, "not_found")
    assert_error(anon.get("/api/cars"), 401, "unauthorized")


# --------------------------------------------------------------- browser

def stream_app():
    """The stream app's name in fcgi-apps/apps.conf (its binary is
    stream/keel-stream)."""
    for w in apps_conf():
        if len(w) >= 3 and w[2] == STREAM_BINARY:
            return w[0]
    pytest.fail("no app with binary %s in fcgi-apps/apps.conf"
                % STREAM_BINARY)


@pytest.fixture(scope="module")
def browser(stack):
    """Chromium with Docker's default capabilities only, as in an
    unprivileged container."""
    b = Chromium(stack.path("log", "chromium.log"),
                 wrapper=unprivileged()).start()
    yield b
    b.stop()


@pytest.fixture
def drainers(stack):
    """The notifications and leaderboard drainers, as cron runs them,
    for the length of a test."""
    procs = [stack.spawn(p, "--budget", 300, env=DRAIN_ENV) for p in (
        "keel-drain-notifications", "keel-drain-leaderboard")]
    yield
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.communicate(timeout=60)


def rows(stack, uid):
    """The user's notification ids in PostgreSQL, oldest first."""
    out = stack.psql("SELECT id FROM notifications WHERE user_id = %d "
                     "ORDER BY id" % uid)
    return [int(x) for x in out.split()]


def notify(stack, uid, n):
    """n jobs on the notifications queue for uid, as a submit makes them;
    the drainer turns each into a row and a publish."""
    for _ in range(n):
        tag = uuid.uuid4().hex[:12]
        enqueue(stack, "notifications", "attempt_graded", {
            "userId": uid, "attemptId": NOBODY, "testId": NOBODY,
            "testTitle": "Browser " + tag, "score": 50, "correct": 1,
            "total": 2, "late": False}, "browser:%s" % tag)


def page_ids(b):
    """The notification ids the page's list shows, top to bottom."""
    return b.evaluate("Array.from(document.querySelectorAll("
                      "'#notifications li'), li => Number(li.dataset.id))")


def state(b):
    """keelState's values, and ids() as "ids"."""
    return b.evaluate("JSON.parse(JSON.stringify(Object.assign({}, "
                      "keelState, {ids: keelState.ids()})))")


def shows(b, stack, uid, what, timeout=15):
    """Wait until the page lists exactly the user's rows, newest first."""
    wait_until(lambda: page_ids(b) == rows(stack, uid)[::-1], timeout,
               what)


def log_in(b, base_url, who, password=PASSWORD):
    """Open the page, type into its form, press Enter."""
    b.navigate(base_url + PAGE)
    b.evaluate("document.getElementById('login').focus()")
    b.type_text(who)
    b.evaluate("document.getElementById('password').focus()")
    b.type_text(password)
    b.press_enter()


def test_a_wrong_password_is_said_and_keeps_no_session(stack, browser):
    u = make_user(stack, "student")
    log_in(browser, stack.base_url, u["username"], "not-the-password")
    wait_until(lambda: browser.evaluate(
        "document.getElementById('login-error').textContent"), 10,
        "the login's answer")
    assert browser.evaluate(
        "[document.getElementById('login-error').textContent,"
        " document.getElementById('app-view').hidden, sessionStorage.length,"
        " document.getElementById('password').value !== '', location.href]"
    ) == ["Wrong login or password.", True, 0, True,
          stack.base_url + PAGE]


def test_a_session_ended_elsewhere_sends_the_page_to_the_form_at_once(
        stack, http, browser):
    """The stream's "event: end" (the account deactivated here) logs the
    page out: no new ticket asked for, the form and its reason shown."""
    u = make_user(stack, "student")
    log_in(browser, stack.base_url, u["email"])
    wait_until(lambda: browser.evaluate(
        "keelState.ready && keelState.connected"), 15,
        "the page logged in with its stream open")
    before = state(browser)
    r = http.delete("/api/users/%d" % u["id"])
    assert r.status_code == 200, r.text
    wait_until(lambda: browser.evaluate(
        "!document.getElementById('login-view').hidden"), 10,
        "the page back at the form")
    after = state(browser)
    assert after["ends"] == 1
    assert (after["opens"], after["errors"]) == (before["opens"],
                                                 before["errors"])
    assert browser.evaluate(
        "[document.getElementById('login-error').textContent,"
        " sessionStorage.length]") == [
        "Your session has ended; log in again.", 0]


def test_live_notifications_survive_stream_restarts(stack, http, browser,
                                                     drainers):
    name = stream_app()
    qids = [new_question(stack, answer=a) for a in (0, 1)]
    test = new_test(http, qids, title="Browser test")
    u, h = session_for(stack, http, "student")
    notify(stack, u["id"], 2)
    wait_until(lambda: len(rows(stack, u["id"])) == 2, 10,
               "the two first notifications")

    # Log in through the form; the list renders.
    log_in(browser, stack.base_url, u["email"])
    wait_until(lambda: browser.evaluate(
        "keelState.ready && keelState.connected"), 15,
        "the page logged in with its stream open")
    assert page_ids(browser) == rows(stack, u["id"])[::-1]
    assert browser.evaluate("document.getElementById('who').textContent") \
        == "%s (student)" % u["name"]
    assert browser.evaluate("sessionStorage.length") == 1
    assert browser.evaluate("location.href") == stack.base_url + PAGE
    # A reload keeps the session (the tab's sessionStorage): no form.
    browser.navigate(stack.base_url + PAGE)
    wait_until(lambda: browser.evaluate(
        "keelState.ready && keelState.connected"), 15,
        "the page resumed with its stream open")
    assert browser.evaluate("document.getElementById('login-view').hidden")
    assert page_ids(browser) == rows(stack, u["id"])[::-1]

    # An attempt submitted over the API: its notification arrives through
    # the stream, and the result and the board follow it.
    attempt = start(http, test["id"], h)
    r = http.post("/api/attempts/%d/submit" % attempt["id"], headers=h,
                  json={"answers": {str(qids[0]): 0, str(qids[1]): 0}})
    assert r.status_code == 200, r.text
    graded = wait_until(lambda: stack.psql(
        "SELECT id FROM notifications WHERE user_id = %d AND "
        "data->>'attemptId' = '%d'" % (u["id"], attempt["id"])), 10,
        "the submit's notification row")
    wait_until(lambda: int(graded) in browser.evaluate("keelState.received"),
               5, "the submit's notification through the stream")
    shows(browser, stack, u["id"], "the list with the live notification", 1)
    wait_until(lambda: browser.evaluate(
        "document.getElementById('result').textContent")
        == "Browser test: 50% (1 of 2 correct)", 10, "the latest result")
    wait_until(lambda: browser.evaluate(
        "Array.from(document.querySelectorAll('#leaderboard tr.me td'),"
        " td => td.textContent)") == ["1", u["name"], "50%", "1"], 10,
        "the student on the test's board")

    # A roll (SIGHUP to the supervisor): the page is told to reconnect and
    # does, with notifications made during and after the roll.
    before = state(browser)
    os.kill(stack.app_pid(name), signal.SIGHUP)
    notify(stack, u["id"], 3)
    wait_until(lambda: browser.evaluate("keelState.reconnects") >
               before["reconnects"], 15, "the roll's reconnect event")
    notify(stack, u["id"], 2)
    shows(browser, stack, u["id"], "every notification after the roll")

    # A hard restart: SIGTERM to the stream app (scripts/stack stop, by
    # its pid file), notifications while it is down, started again.
    before = state(browser)
    stack.stop_component(name)
    wait_until(lambda: not browser.evaluate("keelState.connected"), 10,
               "the page to lose its stream")
    down = len(rows(stack, u["id"]))
    notify(stack, u["id"], 3)
    wait_until(lambda: len(rows(stack, u["id"])) == down + 3, 10,
               "the rows made while the stream app is down")
    stack.start_component(name)
    wait_until(lambda: browser.evaluate("keelState.connected"), 15,
               "the page back on a stream")
    notify(stack, u["id"], 2)
    shows(browser, stack, u["id"], "every notification after the restart")

    # Exactly once, in order, none lost: the stream never repeated one
    # nor went back, and the page's list is PostgreSQL's.
    after = state(browser)
    assert after["opens"] >= before["opens"] + 1
    got = after["received"]
    assert got == sorted(set(got)), got
    assert after["duplicates"] == 0
    assert after["ids"] == rows(stack, u["id"])
    assert sorted(set(got) | set(after["ids"][:2])) == after["ids"]
    assert browser.problems() == []
    # Log out: the stream closes, the page's session ends on the server.
    # A new session: http's kept-alive connection sat idle through the
    # restarts, past lighttpd's keep-alive idle (5 s), and a request sent
    # as lighttpd closes it fails with RemoteDisconnected (seen once).
    http = BaseUrlSession(stack.base_url)
    page_token = browser.evaluate("sessionStorage.getItem('keel.token')")
    assert http.get("/api/auth/me",
                    headers=bearer(page_token)).status_code == 200
    browser.evaluate("document.getElementById('logout').click()")
    assert browser.evaluate("!document.getElementById('login-view').hidden"
                            " && sessionStorage.length === 0"
                            " && !keelState.connected") is True
    wait_until(lambda: http.get("/api/auth/me", headers=bearer(page_token))
               .status_code == 401, 5, "the page's session to end")
    http.close()
    # Every stream the page opened is in the access log once it ended,
    # none with its ticket (lighttpd.conf logs those without the query).
    wait_until(lambda: stack.log("access").count(
        "GET /api/notifications/stream HTTP/1.1") >= after["opens"], 5,
        "the streams in the access log")
    assert "ticket=" not in stack.log("access")
    print(json.dumps({k: after[k] for k in
                      ("opens", "reconnects", "errors", "duplicates")}))


# ---------------------------------------------------- the set-password page

def mail_link(stack, to):
    """The set-password link of the one email the SMTP server got for
    `to`."""
    links = []
    for m in stack.mail():
        if m["To"].addresses[0].addr_spec == to:
            links += [w for w in m.get_body(("plain",)).get_content().split()
                      if "/set-password?token=" in w]
    assert len(links) == 1, links
    return links[0]


def history(b):
    """The tab's history entries' addresses and titles, as text.  (Not
    their userTypedURL: Chromium keeps there the address it was asked to
    open, here by Page.navigate, which no page can change.)"""
    h = b.call("Page.getNavigationHistory", session=True)
    return json.dumps([(e["url"], e["title"]) for e in h["entries"]])


def set_password_in(b, url, password, again=None):
    """Open url, type the password twice (again: the second, if it
    differs), press Enter, and wait for the page's answer: the error
    shown ("" once the password is set)."""
    b.navigate(url)
    b.evaluate("document.getElementById('password').focus()")
    b.type_text(password)
    b.evaluate("document.getElementById('password2').focus()")
    b.type_text(password if again is None else again)
    b.press_enter()
    return wait_until(lambda: b.evaluate(
        "document.getElementById('set-error').textContent ||"
        " (document.getElementById('done-view').hidden ? '' : 'done')"),
        15, "the page's answer")


def test_an_invitation_link_sets_the_password_in_the_browser(jobs, http,
                                                              anon, browser):
    tag = uuid.uuid4().hex[:12]
    email = "invited-%s@e2e.test" % tag
    r = http.post("/api/users", json={
        "email": email, "username": "invited_" + tag, "name": "Invited",
        "role": "student", "sendCredentials": True})
    assert r.status_code == 201, r.text
    s = relay_and_drain(jobs, relay=False)
    assert s["processed"] == 1, s
    link = urllib.parse.urlsplit(mail_link(jobs, email))
    assert link.path == SET_PASSWORD
    token = urllib.parse.parse_qs(link.query)["token"][0]
    # KEEL_PUBLIC_URL is not the test stack's address: the same path and
    # query on the stack.
    url = jobs.base_url + link.path + "?" + link.query
    new = "a-new-password-" + tag
    logged = jobs.log("access").count(SET_PASSWORD_LOGGED)

    # Opened: the token is out of the address bar and of the history at
    # once, before anything is typed.
    browser.navigate(url)
    assert browser.evaluate("location.href") == jobs.base_url + SET_PASSWORD
    assert token not in history(browser)
    assert browser.evaluate(
        "[document.getElementById('set-form').hidden,"
        " document.getElementById('no-token').hidden,"
        " document.getElementById('password').autocomplete,"
        " document.getElementById('password2').autocomplete]") == [
        False, True, "new-password", "new-password"]

    # Two different passwords: said, nothing sent (the link still works).
    assert set_password_in(browser, url, new, new + "x") == \
        "The two passwords differ; type them again."
    # Too short: the API's rule, as the API says it (the link still works).
    assert set_password_in(browser, url, "short") == \
        "The new password must be at least 10 characters."

    # Set: success, a link to log in, the token gone from the page.
    assert set_password_in(browser, url, new) == "done"
    assert browser.evaluate(
        "[document.getElementById('set-view').hidden,"
        " document.getElementById('login-link').getAttribute('href'),"
        " location.href, document.getElementById('password').value]") == [
        True, "/app/", jobs.base_url + SET_PASSWORD, ""]
    assert token not in history(browser)
    login(anon, email, new)

    # The same link again: used, said so, and the form is gone.
    assert set_password_in(browser, url, "another-password-1") == (
        "The link is invalid, expired or already used; ask for a new one.")
    assert browser.evaluate("document.getElementById('set-form').hidden")
    login(anon, email, new)

    # A reload (or an address without the token): said clearly.
    browser.navigate(jobs.base_url + SET_PASSWORD)
    assert browser.evaluate(
        "[document.getElementById('no-token').hidden,"
        " document.getElementById('set-form').hidden]") == [False, True]
    assert "email" in browser.evaluate(
        "document.getElementById('no-token').textContent")

    assert browser.problems() == []
    # The page's six loads are in the access log, under the rewritten
    # path and without their query string.
    wait_until(lambda: jobs.log("access").count(SET_PASSWORD_LOGGED) >=
               logged + 6, 5, "the page's loads in the access log")
    assert token not in jobs.log("access")
