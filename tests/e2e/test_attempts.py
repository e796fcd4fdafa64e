# SPDX-License-Identifier: ISC
"""test_attempts.py -- submitting, grading and reading attempts
(fcgi-apps/attempts.c, issue 10): server-side grading in one
transaction, exactly one winner among racing submits, the late flag,
answers that are refused with nothing stored, the three outbox jobs and
the result email, and lists that embed their tests without N+1 queries.
"""

import json
import threading

from accounts import session_for
from helpers import assert_error, db_queries, replicated, request, uniq
from test_jobs import drain, jobs, message_id, row_origin  # noqa: F401
from test_tests import new_question, new_test, start


def submit(http, attempt, answers, headers):
    return http.post("/api/attempts/%d/submit" % attempt, headers=headers,
                     json={"answers": {str(k): v
                                       for k, v in answers.items()}})


def taken(stack, http, answers=(0, 1, 2), title=None, **kw):
    """A published test whose questions' answers are `answers` (three
    options each), a new student and their attempt at it:
    (question ids, test, student, headers, attempt)."""
    qs = [new_question(stack, answer=a) for a in answers]
    t = new_test(http, qs, **({"title": title} if title else {}), **kw)
    u, h = session_for(stack, http, "student")
    replicated(stack)
    return qs, t, u, h, start(http, t["id"], h)


def unsubmitted(stack, attempt):
    """The attempt's row holds no grade and no answers."""
    return stack.psql(
        "SELECT submitted_at IS NULL AND answers IS NULL AND score IS NULL "
        "AND answer_key IS NULL FROM test_attempts WHERE id = %d"
        % attempt) == "t"


# ------------------------------------------------------------ grading

def test_grading_mixed_right_wrong_unanswered(stack, http):
    qs, t, u, h, att = taken(stack, http, answers=(0, 1, 2))
    # First right, second wrong, third unanswered.
    r = submit(http, att["id"], {qs[0]: 0, qs[1]: 2}, h)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": att["id"], "score": 33, "correct": 1,
                        "total": 3, "late": False}
    row = stack.psql("SELECT score, correct, total, late, "
                     "submitted_at IS NOT NULL FROM test_attempts "
                     "WHERE id = %d" % att["id"])
    assert row == "33|1|3|f|t"
    # After submit: per question, what was chosen, the answer, correct.
    r = http.get("/api/attempts/%d" % att["id"], headers=h)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["score"] == 33 and got["submittedAt"] is not None
    assert got["test"]["title"] == t["title"]
    per = [(q["id"], q["chosen"], q["answer"], q["correct"])
           for q in got["questions"]]
    assert per == [(qs[0], 0, 0, True), (qs[1], 2, 1, False),
                   (qs[2], None, 2, False)]
    assert all(q["explanation"] == "Because it is."
               for q in got["questions"])


def test_score_is_rounded_half_up(stack, http):
    # 2 of 3: 66.7 -> 67.
    qs, _, _, h, att = taken(stack, http, answers=(0, 0, 0))
    r = submit(http, att["id"], {qs[0]: 0, qs[1]: 0, qs[2]: 1}, h)
    assert (r.json()["score"], r.json()["correct"]) == (67, 2)
    # 1 of 8: 12.5 -> 13.
    qs, _, _, h, att = taken(stack, http, answers=(1,) * 8)
    r = submit(http, att["id"], {qs[0]: 1}, h)
    assert (r.json()["score"], r.json()["correct"],
            r.json()["total"]) == (13, 1, 8)
    # All right: 100; none answered: 0.
    qs, _, _, h, att = taken(stack, http, answers=(2, 1))
    assert submit(http, att["id"], {qs[0]: 2, qs[1]: 1},
                  h).json()["score"] == 100
    qs, _, _, h, att = taken(stack, http, answers=(2, 1))
    r = submit(http, att["id"], {}, h)
    assert r.status_code == 200, r.text
    assert (r.json()["score"], r.json()["correct"],
            r.json()["total"]) == (0, 0, 2)


def test_before_submit_an_attempt_shows_no_answers(stack, http):
    qs, _, _, h, att = taken(stack, http)
    r = http.get("/api/attempts/%d" % att["id"], headers=h)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["submittedAt"] is None and got["score"] is None
    assert [q["id"] for q in got["questions"]] == qs
    for q in got["questions"]:
        assert set(q) == {"id", "body", "options"}
    assert "Because it is." not in r.text


# ------------------------------------------- what the student was shown

def edit_question(stack, http, qid, **change):
    """PATCH /api/question-bank/{qid} as staff, then wait for the replica
    (the attempt's reads may be served there)."""
    r = http.patch("/api/question-bank/%d" % qid, json=change)
    assert r.status_code == 200, r.text
    replicated(stack)


def shown_one(stack, http, options, answer):
    """A published test of one question with these options and answer, a
    new student and their attempt: (question id, headers, attempt)."""
    q = new_question(stack, answer=answer, options=options,
                     explanation="As it was.")
    t = new_test(http, [q])
    _, h = session_for(stack, http, "student")
    replicated(stack)
    return q, h, start(http, t["id"], h)


def test_review_shows_the_question_as_it_was_when_taken(stack, http):
    """Staff reorder a question's options (and move its answer along)
    after it was graded: the review still shows what the student saw,
    their choice right against those options."""
    q, h, att = shown_one(stack, http, ("3", "4", "5"), 1)
    body = http.get("/api/attempts/%d" % att["id"],
                    headers=h).json()["questions"][0]["body"]
    r = submit(http, att["id"], {q: 1}, h)
    assert (r.json()["score"], r.json()["correct"]) == (100, 1), r.text
    edit_question(stack, http, q, options=["4", "3", "5"], answer=0,
                  body="Edited", explanation="Edited too.")
    got = http.get("/api/attempts/%d" % att["id"], headers=h).json()
    assert got["questions"] == [{
        "id": q, "body": body, "options": ["3", "4", "5"], "chosen": 1,
        "answer": 1, "correct": True, "explanation": "As it was."}]
    assert got["score"] == 100


def test_options_reordered_before_the_submit_grade_as_shown(stack, http):
    """Staff reorder the options while the attempt is in progress: it
    still shows (and grades against) the order its student was shown."""
    q, h, att = shown_one(stack, http, ("3", "4", "5"), 1)
    edit_question(stack, http, q, options=["4", "3", "5"], answer=0)
    got = http.get("/api/attempts/%d" % att["id"], headers=h).json()
    assert got["questions"][0]["options"] == ["3", "4", "5"]
    assert set(got["questions"][0]) == {"id", "body", "options"}
    r = submit(http, att["id"], {q: 1}, h)
    assert r.status_code == 200, r.text
    assert (r.json()["score"], r.json()["correct"]) == (100, 1)
    assert stack.psql("SELECT answer_key::text FROM test_attempts "
                      "WHERE id = %d" % att["id"]) == '{"%d": 1}' % q


def test_options_removed_before_the_submit_still_grade(stack, http):
    """An option the student was shown, removed from the bank since, is
    still an answer to their attempt."""
    q, h, att = shown_one(stack, http, ("a", "b", "c"), 2)
    edit_question(stack, http, q, options=["a", "b"], answer=0)
    r = submit(http, att["id"], {q: 2}, h)
    assert r.status_code == 200, r.text
    assert (r.json()["score"], r.json()["correct"]) == (100, 1)
    # Past what it was shown is still a 422.
    q, h, att = shown_one(stack, http, ("a", "b"), 0)
    edit_question(stack, http, q, options=["a", "b", "c"], answer=2)
    body = assert_error(submit(http, att["id"], {q: 2}, h), 422,
                        "validation_failed")
    assert "below 2" in body["fields"]["answers.%d" % q]


def test_attempt_without_a_copy_reads_the_bank(stack, http):
    """An attempt started before sql/016 (or written by the demo seed)
    has no copy: it shows and grades the question as the bank has it."""
    q, h, att = shown_one(stack, http, ("3", "4", "5"), 1)
    stack.psql("UPDATE test_attempts SET shown = NULL, snapshot_id = NULL "
               "WHERE id = %d" % att["id"])
    edit_question(stack, http, q, options=["4", "3", "5"], answer=0)
    got = http.get("/api/attempts/%d" % att["id"], headers=h).json()
    assert got["questions"][0]["options"] == ["4", "3", "5"]
    r = submit(http, att["id"], {q: 0}, h)
    assert (r.json()["score"], r.json()["correct"]) == (100, 1), r.text
    replicated(stack)
    got = http.get("/api/attempts/%d" % att["id"], headers=h).json()
    assert (got["questions"][0]["answer"],
            got["questions"][0]["correct"]) == (0, True)


def snapshots(stack, attempts):
    """Each attempt's snapshot id (sql/019), in the order given; asserts
    none holds a copy of its own (sql/016's shown)."""
    rows = stack.psql(
        "SELECT a.snapshot_id, a.shown IS NULL FROM unnest('{%s}'::bigint[]) "
        "WITH ORDINALITY AS u(x, n) JOIN test_attempts a ON a.id = u.x "
        "ORDER BY u.n" % ",".join(str(a["id"]) for a in attempts)).split()
    assert len(rows) == len(attempts)
    assert all(r.endswith("|t") for r in rows), rows
    return [int(r.split("|")[0]) for r in rows]


def test_starts_of_one_test_share_one_snapshot(stack, http):
    """Students starting one test at once store its questions as shown
    once, between them; each still grades and reviews against it after
    staff edit the question."""
    q = new_question(stack, answer=1, options=("3", "4", "5"),
                     explanation="As it was.")
    t = new_test(http, [q])
    students = [session_for(stack, http, "student")[1] for _ in range(6)]
    replicated(stack)
    url = stack.url("/api/tests/%d/attempts" % t["id"])
    gate = threading.Barrier(len(students))
    got = {}

    def one(i):
        gate.wait()
        got[i] = request("POST", url, headers=students[i], timeout=60)
    threads = [threading.Thread(target=one, args=(i,))
               for i in range(len(students))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.status_code for r in got.values()) == [201] * 6
    atts = [got[i].json() for i in range(len(students))]
    ids = snapshots(stack, atts)
    assert len(set(ids)) == 1, ids
    assert stack.psql("SELECT count(*) FROM attempt_snapshots WHERE "
                      "shown @> '[{\"id\": %d}]'" % q) == "1"
    # As in test_options_reordered_before_the_submit_grade_as_shown.
    edit_question(stack, http, q, options=["4", "3", "5"], answer=0)
    for h, att in zip(students[:2], atts):
        view = http.get("/api/attempts/%d" % att["id"], headers=h).json()
        assert view["questions"][0]["options"] == ["3", "4", "5"]
        r = submit(http, att["id"], {q: 1}, h)
        assert (r.json()["score"], r.json()["correct"]) == (100, 1), r.text
    replicated(stack)
    view = http.get("/api/attempts/%d" % atts[0]["id"],
                    headers=students[0]).json()
    assert view["questions"][0]["explanation"] == "As it was."


def test_a_changed_test_gets_a_new_snapshot_for_later_starts(stack, http):
    """A change to what a test shows -- its questions or their order, or
    a question's body, options, answer or explanation, however written
    -- gives the starts after it a snapshot of their own; earlier
    attempts keep theirs.  A change the student isn't shown doesn't."""
    a = new_question(stack, answer=0, explanation="A.")
    b = new_question(stack, answer=1, explanation="B.")
    t = new_test(http, [a, b])
    _, h = session_for(stack, http, "student")
    replicated(stack)

    def taken_now():
        return start(http, t["id"], h)

    def shown(att):
        r = http.get("/api/attempts/%d" % att["id"], headers=h)
        assert r.status_code == 200, r.text
        return [(x["id"], x["body"], x["options"])
                for x in r.json()["questions"]]
    first = [taken_now(), taken_now()]
    before = shown(first[0])
    # The order of the test's questions.
    r = http.patch("/api/tests/%d" % t["id"], json={"questionIds": [b, a]})
    assert r.status_code == 200, r.text
    reordered = taken_now()
    # A question's body, through the question bank.
    edit_question(stack, http, b, body="Edited body")
    edited = taken_now()
    # Not shown to students: the same snapshot.
    edit_question(stack, http, b, topic="Another topic")
    retopic = taken_now()
    # A write that sets the revision back itself is renumbered all the
    # same (sql/019's trigger).
    stack.psql("UPDATE questions SET explanation = 'Again.', revision = 0 "
               "WHERE id = %d" % a)
    rewritten = taken_now()
    ids = snapshots(stack, first + [reordered, edited, retopic, rewritten])
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3], ids[5]}) == 4, ids
    assert ids[4] == ids[3], ids
    replicated(stack)
    assert shown(first[0]) == shown(first[1]) == before
    assert [x[0] for x in before] == [a, b]
    assert [x[0] for x in shown(reordered)] == [b, a]
    assert shown(edited)[0][1] == "Edited body"
    assert shown(reordered)[0][1] == before[1][1]
    # Each grades against its own: the explanation as it was started.
    for att, want in ((first[0], "A."), (rewritten, "Again.")):
        r = submit(http, att["id"], {a: 0}, h)
        assert r.json()["correct"] == 1, r.text
    replicated(stack)
    for att, want in ((first[0], "A."), (rewritten, "Again.")):
        got = http.get("/api/attempts/%d" % att["id"], headers=h).json()
        assert [x["explanation"] for x in got["questions"]
                if x["id"] == a] == [want]


def test_attempt_with_a_copy_of_its_own_reads_it(stack, http):
    """An attempt started between sql/016 and sql/019 holds its questions
    as shown on its own row: it shows and grades them as before."""
    q, h, att = shown_one(stack, http, ("3", "4", "5"), 1)
    stack.psql("UPDATE test_attempts a SET shown = x.shown, "
               "snapshot_id = NULL FROM attempt_snapshots x "
               "WHERE x.id = a.snapshot_id AND a.id = %d" % att["id"])
    edit_question(stack, http, q, options=["4", "3", "5"], answer=0,
                  explanation="Edited.")
    got = http.get("/api/attempts/%d" % att["id"], headers=h).json()
    assert got["questions"][0]["options"] == ["3", "4", "5"]
    r = submit(http, att["id"], {q: 1}, h)
    assert (r.json()["score"], r.json()["correct"]) == (100, 1), r.text
    replicated(stack)
    got = http.get("/api/attempts/%d" % att["id"], headers=h).json()
    assert got["questions"][0]["explanation"] == "As it was."


def test_second_submit_is_409(stack, http):
    qs, _, _, h, att = taken(stack, http)
    assert submit(http, att["id"], {qs[0]: 0}, h).status_code == 200
    assert_error(submit(http, att["id"], {qs[0]: 0}, h), 409, "conflict")
    assert stack.psql("SELECT correct FROM test_attempts WHERE id = %d"
                      % att["id"]) == "1"


def test_concurrent_submits_exactly_one_wins(stack, http):
    qs, _, _, h, att = taken(stack, http)
    url = stack.url("/api/attempts/%d/submit" % att["id"])
    body = {"answers": {str(qs[0]): 0, str(qs[1]): 1}}
    gate = threading.Barrier(10)
    got = []

    def one():
        gate.wait()
        got.append(request("POST", url, json=body, headers=h, timeout=60))
    threads = [threading.Thread(target=one) for _ in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    codes = sorted(r.status_code for r in got)
    assert codes == [200] + [409] * 9, codes
    for r in got:
        if r.status_code == 409:
            assert_error(r, 409, "conflict")
    # Graded once: one set of jobs.
    assert stack.psql("SELECT count(*) FROM outbox WHERE idempotency_key "
                      "LIKE '%%:attempt:%d'" % att["id"]) == "3"


def test_submit_past_expiry_still_grades_flagged_late(stack, http):
    qs, _, _, h, att = taken(stack, http)
    stack.psql("UPDATE test_attempts SET started_at = now() - interval "
               "'2 hours', expires_at = now() - interval '1 hour' "
               "WHERE id = %d" % att["id"])
    r = submit(http, att["id"], {qs[0]: 0, qs[1]: 1, qs[2]: 2}, h)
    assert r.status_code == 200, r.text
    assert r.json()["late"] is True and r.json()["score"] == 100
    assert stack.psql("SELECT late FROM test_attempts WHERE id = %d"
                      % att["id"]) == "t"
    assert http.get("/api/attempts/%d" % att["id"],
                    headers=h).json()["late"] is True


def test_bad_answers_are_422_and_store_nothing(stack, http):
    qs, _, _, h, att = taken(stack, http)
    other = new_question(stack)
    q = qs[0]
    cases = [
        ({str(other): 0}, "answers.%d" % other),
        ({str(q): -1}, "answers.%d" % q),
        ({str(q): 3}, "answers.%d" % q),           # 3 options: 0..2
        ({str(q): 1.5}, "answers.%d" % q),
        ({str(q): "1"}, "answers.%d" % q),
        ({str(q): True}, "answers.%d" % q),
        ({str(q): None}, "answers.%d" % q),
        ({"abc": 0}, "answers.abc"),
        ({"0" + str(q): 0}, "answers.0%d" % q),
        ({"-%d" % q: 0}, "answers.-%d" % q),
    ]
    for answers, field in cases:
        r = http.post("/api/attempts/%d/submit" % att["id"], headers=h,
                      json={"answers": dict(answers, **{str(qs[1]): 1})})
        body = assert_error(r, 422, "validation_failed")
        assert field in body["fields"], (answers, body)
        assert unsubmitted(stack, att["id"])
    for bad, field in (([], "body"), ({}, "answers"),
                       ({"answers": [0, 1]}, "answers"),
                       ({"answers": 1}, "answers"),
                       ({"answers": {}, "extra": 1}, "extra")):
        r = http.post("/api/attempts/%d/submit" % att["id"], headers=h,
                      json=bad)
        body = assert_error(r, 422, "validation_failed")
        assert field in body["fields"], (bad, body)
        assert unsubmitted(stack, att["id"])
    r = http.post("/api/attempts/%d/submit" % att["id"], data="{",
                  headers=dict(h, **{"Content-Type": "application/json"}))
    assert_error(r, 400, "bad_request")
    assert unsubmitted(stack, att["id"])
    assert stack.psql("SELECT count(*) FROM outbox WHERE idempotency_key "
                      "LIKE '%%:attempt:%d'" % att["id"]) == "0"
    # And the attempt can still be submitted.
    assert submit(http, att["id"], {q: 0}, h).status_code == 200


def test_someone_elses_attempt_is_404(stack, http):
    qs, _, _, h, att = taken(stack, http)
    _, other = session_for(stack, http, "student")
    assert_error(submit(http, att["id"], {qs[0]: 0}, other), 404,
                 "not_found")
    assert unsubmitted(stack, att["id"])
    assert_error(http.get("/api/attempts/%d" % att["id"], headers=other),
                 404, "not_found")
    assert_error(submit(http, 999999999, {qs[0]: 0}, h), 404, "not_found")
    # Staff may read it, not submit it.
    replicated(stack)
    assert http.get("/api/attempts/%d" % att["id"]).status_code == 200
    assert_error(submit(http, att["id"], {qs[0]: 0}, {}), 403, "forbidden")


# ------------------------------------------------------------ jobs

def test_submit_writes_three_jobs_and_the_email_is_delivered(jobs, http):
    title = uniq("Result title ")
    qs, t, u, h, att = taken(jobs, http, answers=(0, 1, 2), title=title)
    r = submit(http, att["id"], {qs[0]: 0, qs[1]: 1}, h)
    assert r.status_code == 200, r.text
    rows = jobs.psql(
        "SELECT queue, kind, idempotency_key, payload::text FROM outbox "
        "WHERE idempotency_key LIKE '%%:attempt:%d' ORDER BY queue"
        % att["id"]).splitlines()
    got = {}
    for line in rows:
        queue, kind, key, payload = line.split("|", 3)
        got[queue] = (kind, key, json.loads(payload))
    aid = att["id"]
    assert set(got) == {"email", "leaderboard", "notifications"}
    assert got["leaderboard"] == ("attempt_submitted",
                                  "leaderboard:attempt:%d" % aid,
                                  {"attemptId": aid})
    assert got["notifications"] == (
        "attempt_graded", "notification:attempt:%d" % aid,
        {"userId": u["id"], "attemptId": aid, "testId": t["id"],
         "testTitle": title, "score": 67, "correct": 2, "total": 3,
         "late": False})
    kind, key, payload = got["email"]
    assert (kind, key) == ("attempt_result", "email:attempt:%d" % aid)
    assert payload == {"userId": u["id"], "to": u["email"],
                       "name": u["name"],
                       "testTitle": title, "score": 67, "correct": 2,
                       "total": 3, "late": False}
    # keel-drain-email sends it to the SMTP server.
    drain(jobs)
    mail = [m for m in jobs.mail()
            if m["To"].addresses[0].addr_spec == u["email"]]
    assert len(mail) == 1
    m = mail[0]
    assert m["Subject"] == "Your result: %s" % title
    key = "email:attempt:%d" % aid
    assert m["Message-ID"] == message_id(key, origin=row_origin(jobs, key))
    text = m.get_body(("plain",)).get_content()
    assert "67%" in text and "2 of 3" in text and title in text


def test_late_result_email_says_so(jobs, http):
    qs, t, u, h, att = taken(jobs, http)
    jobs.psql("UPDATE test_attempts SET started_at = now() - interval "
              "'2 hours', expires_at = now() - interval '1 hour' "
              "WHERE id = %d" % att["id"])
    assert submit(http, att["id"], {qs[0]: 0}, h).status_code == 200
    drain(jobs)
    m = [m for m in jobs.mail()
         if m["To"].addresses[0].addr_spec == u["email"]]
    assert len(m) == 1 and m[0]["Subject"].endswith("(late)")
    assert "late" in m[0].get_body(("plain",)).get_content()


# ------------------------------------------------------------ lists

def test_list_embeds_tests_with_one_query_per_page(stack, http):
    """A page of 1 and a page of 20 attempts, each embedding its test,
    run the same number of statements: the list and one batch of
    tests."""
    q = new_question(stack)
    tests = [new_test(http, [q]) for _ in range(4)]
    _, one = session_for(stack, http, "student")
    _, many = session_for(stack, http, "student")
    replicated(stack)
    start(http, tests[0]["id"], one)
    for i in range(20):
        start(http, tests[i % 4]["id"], many)
    r1 = http.get("/api/attempts", headers=one)
    r20 = http.get("/api/attempts", headers=many)
    assert len(r1.json()["data"]) == 1 and len(r20.json()["data"]) == 20
    titles = {t["id"]: t["title"] for t in tests}
    for a in r20.json()["data"]:
        assert a["test"] == {"id": a["testId"],
                             "title": titles[a["testId"]],
                             "subject": "Maths"}
    assert db_queries(r1) == db_queries(r20) == 2


def test_list_students_see_their_own_staff_filter(stack, http):
    q = new_question(stack)
    t = new_test(http, [q])
    u1, h1 = session_for(stack, http, "student")
    u2, h2 = session_for(stack, http, "student")
    replicated(stack)
    mine = [start(http, t["id"], h1)["id"] for _ in range(3)]
    theirs = start(http, t["id"], h2)["id"]
    ids = [a["id"] for a in http.get("/api/attempts",
                                     headers=h1).json()["data"]]
    assert ids == mine[::-1]
    # A student's userId can't reach another's attempts.
    assert http.get("/api/attempts", headers=h1, params={
        "userId": u2["id"]}).json()["data"] == []
    replicated(stack)
    got = http.get("/api/attempts", params={"userId": u2["id"]}).json()
    assert [a["id"] for a in got["data"]] == [theirs]
    got = http.get("/api/attempts", params={"testId": t["id"],
                                            "limit": 2}).json()
    assert [a["id"] for a in got["data"]] == [theirs, mine[2]]
    nxt = http.get("/api/attempts", params={
        "testId": t["id"], "limit": 2, "after": got["page"]["next"]}).json()
    assert [a["id"] for a in nxt["data"]] == [mine[1], mine[0]]
    assert nxt["page"]["next"] is None
    back = http.get("/api/attempts", params={
        "testId": t["id"], "limit": 2,
        "before": nxt["page"]["prev"]}).json()
    assert [a["id"] for a in back["data"]] == [theirs, mine[2]]
    assert_error(http.get("/api/attempts", params={"userId": "me"}), 400,
                 "validation_failed")
    del u1
