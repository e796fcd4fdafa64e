# SPDX-License-Identifier: ISC
"""test_exam_flow.py -- the exam-prep path a student takes, end to end
through the real apps and the real drainers: a test made by staff over
HTTP, an attempt started and submitted over HTTP, and what the submit's
three jobs do while the drainers run (issue 10): the attempt on its test's
board and on the global one within 2 s, the notification row, the result
email.  test_attempts.py and test_leaderboard.py test each side alone;
this is the seam between them.
"""

import json
import signal
import time

from accounts import session_for
from helpers import wait_until
from test_jobs import enqueue
from test_leaderboard import DRAIN_ENV, board, lb  # noqa: F401 (fixture)
from test_tests import new_question, new_test, start


def drainers(stack):
    """The three queues' drainers, as cron runs them (each waits for
    jobs for its budget)."""
    return [stack.spawn(p, "--budget", 30, env=DRAIN_ENV) for p in (
        "keel-drain-leaderboard", "keel-drain-notifications",
        "keel-drain-email")]


def entry(page, uid):
    for e in page["data"]:
        if e["userId"] == uid:
            return e
    return None


def test_a_submit_reaches_the_boards_the_inbox_and_the_mail(lb, http):
    qids = [new_question(lb, answer=a) for a in (0, 1, 2)]
    test = new_test(http, qids, title="Flow test")
    u, h = session_for(lb, http, "student")
    attempt = start(http, test["id"], h)
    lb.clear_mail()
    procs = drainers(lb)
    try:
        time.sleep(0.5)             # each drainer is waiting for jobs
        # Two right of three, one wrong.
        r = http.post("/api/attempts/%d/submit" % attempt["id"], headers=h,
                      json={"answers": {str(qids[0]): 0, str(qids[1]): 1,
                                        str(qids[2]): 0}})
        assert r.status_code == 200, r.text
        assert r.json()["score"] == 67 and r.json()["correct"] == 2
        t0 = time.monotonic()
        # No relay: the submit pushed its jobs after its commit.
        wait_until(lambda: entry(board(http, test["id"]), u["id"]), 2.0,
                   "the attempt on its test's board")
        # The global board may hold others' higher sums: ask for ours.
        wait_until(lambda: http.get("/api/leaderboard/me", headers=h)
                   .status_code == 200, 2.0,
                   "the attempt on the global board")
        assert time.monotonic() - t0 <= 2.0
        e = entry(board(http, test["id"]), u["id"])
        assert (e["score"], e["attempts"], e["rank"]) == (67, 1, 1)
        assert entry(board(http, test["id"], period="week"), u["id"])
        r = http.get("/api/leaderboard/me", params={"testId": test["id"]},
                     headers=h)
        assert r.status_code == 200, r.text
        assert (r.json()["rank"], r.json()["score"]) == (1, 67)

        wait_until(lambda: lb.psql(
            "SELECT count(*) FROM notifications WHERE user_id = %d AND "
            "kind = 'attempt_graded'" % u["id"]) == "1", 5.0,
            "the notification row")
        assert lb.psql(
            "SELECT data->>'attemptId', data->>'score' FROM notifications "
            "WHERE user_id = %d" % u["id"]) == "%d|67" % attempt["id"]

        wait_until(lambda: any(m["To"] and u["email"] in m["To"]
                               for m in lb.mail()), 10.0, "the result email")
        m = [m for m in lb.mail() if u["email"] in m["To"]][0]
        assert "Flow test" in m["Subject"]
        assert "67" in m.get_body(("plain",)).get_content()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.communicate(timeout=30)


# ------------------------------------------- the result email at sending

def submitted(stack, http, title):
    """A student's attempt at a new test of title, submitted while no
    drainer runs: (the student, the attempt's id)."""
    qids = [new_question(stack, answer=a) for a in (0, 1)]
    test = new_test(http, qids, title=title)
    u, h = session_for(stack, http, "student")
    attempt = start(http, test["id"], h)
    r = http.post("/api/attempts/%d/submit" % attempt["id"], headers=h,
                  json={"answers": {str(qids[0]): 0, str(qids[1]): 0}})
    assert r.status_code == 200, r.text
    return u, attempt["id"]


def drain_email(stack):
    """keel-drain-email until its queue is empty: its summary and log."""
    p = stack.program("keel-drain-email", "--until-empty", "--budget", 30,
                      env=DRAIN_ENV, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout + p.stderr


def mail_to(stack, addr):
    return [m for m in stack.mail()
            if m["To"].addresses[0].addr_spec == addr]


def test_a_result_email_goes_to_the_address_and_name_of_now(lb, http):
    u, aid = submitted(lb, http, "Moved result")
    new = "moved-%d@e2e.test" % u["id"]
    r = http.patch("/api/users/%d" % u["id"],
                   json={"email": new, "name": "Renamed Student"})
    assert r.status_code == 200, r.text
    drain_email(lb)
    assert mail_to(lb, u["email"]) == []
    (m,) = mail_to(lb, new)
    assert m["Subject"] == "Your result: Moved result"
    assert "Hello Renamed Student," in m.get_body(("plain",)).get_content()
    assert "50%" in m.get_body(("plain",)).get_content()


def test_a_result_queued_without_its_user_finds_them_by_its_attempt(
        lb, http):
    """An attempt_result queued before its payload named the student
    ("userId") goes to the student of the attempt its key names, at the
    address of now."""
    test = new_test(http, [new_question(lb, answer=0)], title="Old result")
    u, h = session_for(lb, http, "student")
    aid = start(http, test["id"], h)["id"]
    new = "keyed-%d@e2e.test" % u["id"]
    r = http.patch("/api/users/%d" % u["id"], json={"email": new})
    assert r.status_code == 200, r.text
    enqueue(lb, "attempt_result", json.dumps({
        "to": u["email"], "name": u["name"], "testTitle": "Old result",
        "score": 100, "correct": 1, "total": 1, "late": False}),
        key="email:attempt:%d" % aid)
    drain_email(lb)
    assert mail_to(lb, u["email"]) == []
    (m,) = mail_to(lb, new)
    assert m["Subject"] == "Your result: Old result"


def test_a_deactivated_student_is_sent_no_result(lb, http):
    u, aid = submitted(lb, http, "Unsent result")
    r = http.delete("/api/users/%d" % u["id"])
    assert r.status_code in (200, 204), r.text
    out = drain_email(lb)
    assert "failed=0 " in out, out
    assert mail_to(lb, u["email"]) == []
    # Done, nothing sent: not retried, not dead-lettered.
    assert lb.psql("SELECT count(*) FROM outbox WHERE idempotency_key = "
                   "'email:attempt:%d' AND finished_at IS NOT NULL"
                   % aid) == "1"
    assert "attempt_result not sent: no active account uid=%d" % u["id"] \
        in out, out
