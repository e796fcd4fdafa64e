# SPDX-License-Identifier: ISC
"""test_tests.py -- exam-prep tests (fcgi-apps/tests.c, issue 10): staff
write them, students see the published ones without answers, and
starting an attempt fixes the questions it is graded against.

Questions are made straight in PostgreSQL (new_question), so these tests
don't depend on the question bank's app.  test_attempts.py uses the
helpers below too.
"""

import concurrent.futures
import datetime
import json
import threading
import time

from accounts import bearer, session_for
from helpers import assert_error, replicated, request, uniq, while_held


# ---------------------------------------------------------------- helpers

def new_question(stack, answer=0, options=("Alpha", "Beta", "Gamma"),
                 subject="Maths", explanation="Because it is."):
    """A question of the bank, made in PostgreSQL; its id."""
    def lit(s):
        return "NULL" if s is None else "'%s'" % s.replace("'", "''")
    return int(stack.psql(
        "INSERT INTO questions (subject, topic, difficulty, body, options, "
        "answer, explanation) VALUES (%s, 'Topic', 'easy', %s, %s::jsonb, "
        "%d, %s) RETURNING id" % (lit(subject), lit(uniq("Body ")),
                                  lit(json.dumps(list(options))), answer,
                                  lit(explanation))))


def exam_body(qids, **kw):
    """A valid POST /api/tests body (published, 30 minutes); kw overrides."""
    body = {"title": uniq("Test "), "subject": "Maths",
            "durationMinutes": 30, "questionIds": list(qids),
            "published": True}
    body.update(kw)
    return body


def new_test(http, qids, **kw):
    """POST a test as http's caller (staff or admin); returns it."""
    r = http.post("/api/tests", json=exam_body(qids, **kw))
    assert r.status_code == 201, r.text
    return r.json()


def start(http, test_id, headers):
    """POST /api/tests/{id}/attempts as the student of headers; the
    attempt (asserts 201)."""
    r = http.post("/api/tests/%d/attempts" % test_id, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------ writes

def test_tests_create_keeps_question_order(stack, http):
    qs = [new_question(stack) for _ in range(3)]
    order = [qs[2], qs[0], qs[1]]
    t = new_test(http, order, published=False)
    assert t["questionIds"] == order and t["published"] is False
    assert t["durationMinutes"] == 30
    r = http.get("/api/tests/%d" % t["id"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert [q["id"] for q in got["questions"]] == order
    assert got["questionIds"] == order
    # Staff see the answers.
    assert all("answer" in q and "explanation" in q
               for q in got["questions"])
    assert stack.psql("SELECT string_agg(question_id::text, ',' ORDER BY "
                      "position) FROM test_questions WHERE test_id = %d"
                      % t["id"]) == ",".join(map(str, order))


def test_tests_patch_replaces_questions_and_fields(stack, http):
    a, b, c = (new_question(stack) for _ in range(3))
    t = new_test(http, [a, b])
    r = http.patch("/api/tests/%d" % t["id"],
                   json={"questionIds": [c, a], "durationMinutes": 45})
    assert r.status_code == 200, r.text
    assert r.json()["questionIds"] == [c, a]
    assert r.json()["durationMinutes"] == 45
    r = http.patch("/api/tests/%d" % t["id"], json={"title": "Renamed"})
    assert r.status_code == 200, r.text
    assert r.json()["questionIds"] == [c, a]
    assert r.json()["title"] == "Renamed"
    r = http.get("/api/tests/%d" % t["id"])
    assert [q["id"] for q in r.json()["questions"]] == [c, a]


def test_tests_unknown_question_is_422_and_changes_nothing(stack, http):
    a = new_question(stack)
    t = new_test(http, [a])
    r = http.patch("/api/tests/%d" % t["id"], json={
        "questionIds": [a, 999999999], "title": "Not this"})
    body = assert_error(r, 422, "validation_failed")
    assert "999999999" in body["fields"]["questionIds"]
    got = http.get("/api/tests/%d" % t["id"]).json()
    assert got["questionIds"] == [a] and got["title"] == t["title"]
    r = http.post("/api/tests", json=exam_body([999999998]))
    assert "questionIds" in assert_error(r, 422, "validation_failed")[
        "fields"]
    # An archived question is no longer in the bank.
    gone = new_question(stack)
    stack.psql("UPDATE questions SET is_archived = true WHERE id = %d"
               % gone)
    r = http.post("/api/tests", json=exam_body([gone]))
    assert "questionIds" in assert_error(r, 422, "validation_failed")[
        "fields"]


def test_tests_bad_fields_are_422_naming_them(stack, http):
    q = new_question(stack)
    cases = [
        ({"durationMinutes": 0}, "durationMinutes"),
        ({"durationMinutes": 601}, "durationMinutes"),
        ({"durationMinutes": "30"}, "durationMinutes"),
        ({"title": ""}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"subject": "x" * 101}, "subject"),
        ({"questionIds": [q, q]}, "questionIds"),
        ({"questionIds": [0]}, "questionIds"),
        ({"questionIds": ["1"]}, "questionIds"),
        ({"questionIds": [1.5]}, "questionIds"),
        ({"questionIds": q}, "questionIds"),
        ({"questionIds": list(range(1, 202))}, "questionIds"),
        ({"published": "yes"}, "published"),
        ({"colour": "red"}, "colour"),
    ]
    for change, field in cases:
        r = http.post("/api/tests", json=exam_body([q], **change))
        body = assert_error(r, 422, "validation_failed")
        # An element is named by its index: questionIds[1].
        assert [f for f in body["fields"] if f.split("[")[0] == field], (
            change, body)
    body = dict(exam_body([q]))
    del body["title"]
    r = http.post("/api/tests", json=body)
    assert "title" in assert_error(r, 422, "validation_failed")["fields"]
    assert_error(http.patch("/api/tests/999999999", json={"title": "x"}),
                 404, "not_found")


def test_tests_publishing_without_questions_is_422(stack, http):
    r = http.post("/api/tests", json=exam_body([]))
    assert "published" in assert_error(r, 422, "validation_failed")[
        "fields"]
    t = new_test(http, [], published=False)
    assert t["questionIds"] == []
    r = http.patch("/api/tests/%d" % t["id"], json={"published": True})
    assert "published" in assert_error(r, 422, "validation_failed")[
        "fields"]
    assert stack.psql("SELECT published FROM tests WHERE id = %d"
                      % t["id"]) == "f"
    # Publishing with questions in the same request works.
    q = new_question(stack)
    r = http.patch("/api/tests/%d" % t["id"],
                   json={"published": True, "questionIds": [q]})
    assert r.status_code == 200, r.text
    # And a published test can't be emptied.
    r = http.patch("/api/tests/%d" % t["id"], json={"questionIds": []})
    assert "questionIds" in assert_error(r, 422, "validation_failed")[
        "fields"]
    assert http.get("/api/tests/%d" % t["id"]).json()["questionIds"] == [q]


# ------------------------------------------------------------ races

def published_without_questions(stack, test_id):
    """The test is published and holds no question: what the rule
    forbids."""
    return stack.psql(
        "SELECT t.published AND NOT EXISTS (SELECT FROM test_questions tq "
        "WHERE tq.test_id = t.id) FROM tests t WHERE t.id = %d"
        % test_id) == "t"


def test_publish_racing_an_emptying_patch_is_422(stack, http, admin_token):
    """The emptying PATCH (as tests.c makes it: the test's row, then its
    questions) holds the test uncommitted; publishing waits for it, then
    finds no question left: 422, and the test stays unpublished."""
    t = new_test(http, [new_question(stack) for _ in range(3)],
                 published=False)
    r = while_held(stack, "UPDATE tests SET updated_at = now() WHERE id = "
                   "%d; DELETE FROM test_questions WHERE test_id = %d"
                   % (t["id"], t["id"]), "PATCH",
                   http.url("/api/tests/%d" % t["id"]), admin_token,
                   {"published": True})
    assert "published" in assert_error(r, 422, "validation_failed")[
        "fields"]
    assert stack.psql("SELECT published FROM tests WHERE id = %d"
                      % t["id"]) == "f"


def test_emptying_racing_a_publish_is_422(stack, http, admin_token):
    """The other order: the publish holds the row; emptying waits for it,
    then finds the test published: 422, its questions kept."""
    qs = [new_question(stack) for _ in range(2)]
    t = new_test(http, qs, published=False)
    r = while_held(stack, "UPDATE tests SET published = true WHERE id = %d"
                   % t["id"], "PATCH", http.url("/api/tests/%d" % t["id"]),
                   admin_token, {"questionIds": []})
    assert "questionIds" in assert_error(r, 422, "validation_failed")[
        "fields"]
    assert http.get("/api/tests/%d" % t["id"]).json()["questionIds"] == qs


def test_questions_racing_their_archive_are_422(stack, http, admin_token):
    """The archive of a question holds its row uncommitted; a write that
    names it waits for the archive (the check holds the questions FOR
    SHARE), then finds it archived: 422, and the test unchanged."""
    a, gone = new_question(stack), new_question(stack)
    t = new_test(http, [a])
    r = while_held(stack, "UPDATE questions SET is_archived = true "
                   "WHERE id = %d" % gone, "PATCH",
                   http.url("/api/tests/%d" % t["id"]), admin_token,
                   {"questionIds": [a, gone]})
    body = assert_error(r, 422, "validation_failed")
    assert str(gone) in body["fields"]["questionIds"]
    assert http.get("/api/tests/%d" % t["id"]).json()["questionIds"] == [a]


def test_patch_keeping_questions_replies_them_as_committed(
        stack, http, admin_token):
    """A PATCH of the title waits for a change of the test's questions
    held uncommitted; its reply names the questions that change
    committed, not those of the snapshot it took before waiting."""
    a, b = new_question(stack), new_question(stack)
    t = new_test(http, [a])
    r = while_held(stack, "UPDATE tests SET updated_at = now() WHERE id = "
                   "%d; DELETE FROM test_questions WHERE test_id = %d; "
                   "INSERT INTO test_questions (test_id, question_id, "
                   "position) VALUES (%d, %d, 0), (%d, %d, 1)"
                   % (t["id"], t["id"], t["id"], b, t["id"], a), "PATCH",
                   http.url("/api/tests/%d" % t["id"]), admin_token,
                   {"title": "renamed while held"})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "renamed while held"
    assert r.json()["questionIds"] == [b, a]
    assert http.get("/api/tests/%d" % t["id"]).json()["questionIds"] == [
        b, a]


def test_publish_and_empty_racing_never_publish_an_empty_test(
        stack, http, admin_token):
    """Many rounds of the two PATCHes sent at once (bounded in time): one
    of them wins, never both."""
    deadline = time.monotonic() + 40
    rounds, seen = 0, set()
    qs = [new_question(stack) for _ in range(3)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        while rounds < 30 and time.monotonic() < deadline:
            t = new_test(http, qs, published=False)["id"]
            go = threading.Barrier(2)

            def patch(body, t=t, go=go):
                go.wait(10)
                return request("PATCH", http.url("/api/tests/%d" % t),
                               json=body, headers=bearer(admin_token),
                               timeout=60).status_code

            fe = pool.submit(patch, {"questionIds": []})
            fp = pool.submit(patch, {"published": True})
            codes = (fe.result(), fp.result())
            assert codes in ((200, 422), (422, 200)), (rounds, codes)
            assert not published_without_questions(stack, t), (rounds,
                                                               codes)
            seen.add(codes)
            rounds += 1
    assert rounds >= 10, rounds
    print("rounds %d, outcomes %s" % (rounds, sorted(seen)))


# ------------------------------------------------------------ reads

def test_students_never_see_answers(stack, http):
    qs = [new_question(stack, answer=2, explanation="SECRET-EXPLANATION")
          for _ in range(2)]
    t = new_test(http, qs)
    _, h = session_for(stack, http, "student")
    replicated(stack)
    r = http.get("/api/tests/%d" % t["id"], headers=h)
    assert r.status_code == 200, r.text
    assert [q["id"] for q in r.json()["questions"]] == qs
    for q in r.json()["questions"]:
        assert set(q) == {"id", "subject", "topic", "difficulty", "body",
                          "options"}
    assert "SECRET-EXPLANATION" not in r.text
    assert '"answer"' not in r.text
    r = http.get("/api/tests", headers=h, params={"subject": "Maths"})
    assert r.status_code == 200
    assert "SECRET-EXPLANATION" not in r.text


def test_unpublished_tests_are_404_for_students_and_customers(stack, http):
    q = new_question(stack)
    subject = uniq("Subj")
    hidden = new_test(http, [q], published=False, subject=subject)
    shown = new_test(http, [q], subject=subject)
    replicated(stack)
    for role in ("student", "customer"):
        _, h = session_for(stack, http, role)
        assert_error(http.get("/api/tests/%d" % hidden["id"], headers=h),
                     404, "not_found")
        assert http.get("/api/tests/%d" % shown["id"],
                        headers=h).status_code == 200
        ids = [t["id"] for t in http.get("/api/tests", headers=h, params={
            "subject": subject}).json()["data"]]
        assert ids == [shown["id"]]
        # Their published filter can't reveal anything.
        assert http.get("/api/tests", headers=h, params={
            "subject": subject, "published": "false"}).json()["data"] == []
    _, staff = session_for(stack, http, "staff")
    ids = [t["id"] for t in http.get("/api/tests", headers=staff, params={
        "subject": subject}).json()["data"]]
    assert ids == [shown["id"], hidden["id"]]
    ids = [t["id"] for t in http.get("/api/tests", headers=staff, params={
        "subject": subject, "published": "false"}).json()["data"]]
    assert ids == [hidden["id"]]
    assert http.get("/api/tests/%d" % hidden["id"],
                    headers=staff).status_code == 200


def test_tests_list_pages_newest_first(stack, http):
    q = new_question(stack)
    subject = uniq("Page")
    made = [new_test(http, [q], subject=subject)["id"] for _ in range(5)]
    seen, page = [], http.get("/api/tests", params={
        "subject": subject, "limit": 2}).json()
    while True:
        seen += [t["id"] for t in page["data"]]
        if page["page"]["next"] is None:
            break
        page = http.get("/api/tests", params={
            "subject": subject, "limit": 2,
            "after": page["page"]["next"]}).json()
    assert seen == made[::-1]
    back = http.get("/api/tests", params={
        "subject": subject, "limit": 2,
        "before": page["page"]["prev"]}).json()
    assert [t["id"] for t in back["data"]] == seen[2:4]
    assert_error(http.get("/api/tests", params={"colour": "red"}), 400,
                 "validation_failed")
    assert_error(http.get("/api/tests", params={"published": "maybe"}),
                 400, "validation_failed")


# ------------------------------------------------------------ attempts

def test_start_attempt_expires_after_the_duration(stack, http):
    q = new_question(stack)
    t = new_test(http, [q], durationMinutes=45)
    _, h = session_for(stack, http, "student")
    replicated(stack)
    a = start(http, t["id"], h)
    assert a["testId"] == t["id"]
    assert (ts(a["expiresAt"]) - ts(a["startedAt"])
            == datetime.timedelta(minutes=45))
    assert stack.psql("SELECT question_ids::text FROM test_attempts "
                      "WHERE id = %d" % a["id"]) == "{%d}" % q


def test_start_attempt_at_unpublished_or_unknown_test_is_404(stack, http):
    q = new_question(stack)
    hidden = new_test(http, [q], published=False)
    _, h = session_for(stack, http, "student")
    replicated(stack)
    assert_error(http.post("/api/tests/%d/attempts" % hidden["id"],
                           headers=h), 404, "not_found")
    assert_error(http.post("/api/tests/999999999/attempts", headers=h),
                 404, "not_found")
    # Staff don't take tests.
    assert_error(http.post("/api/tests/%d/attempts" % hidden["id"]), 403,
                 "forbidden")


def test_attempt_keeps_its_questions_when_the_test_changes(stack, http):
    a, b, c = (new_question(stack, answer=1) for _ in range(3))
    t = new_test(http, [a, b])
    u, h = session_for(stack, http, "student")
    replicated(stack)
    att = start(http, t["id"], h)
    r = http.patch("/api/tests/%d" % t["id"], json={"questionIds": [c]})
    assert r.status_code == 200, r.text
    r = http.get("/api/attempts/%d" % att["id"], headers=h)
    assert r.status_code == 200, r.text
    assert [q["id"] for q in r.json()["questions"]] == [a, b]
    # It grades against them: c is not one of its questions.
    r = http.post("/api/attempts/%d/submit" % att["id"], headers=h,
                  json={"answers": {str(c): 1}})
    body = assert_error(r, 422, "validation_failed")
    assert "answers.%d" % c in body["fields"]
    r = http.post("/api/attempts/%d/submit" % att["id"], headers=h,
                  json={"answers": {str(a): 1, str(b): 1}})
    assert r.status_code == 200, r.text
    assert (r.json()["correct"], r.json()["total"]) == (2, 2)
    # A new attempt takes the test as it is now.
    att2 = start(http, t["id"], h)
    r = http.get("/api/attempts/%d" % att2["id"], headers=h)
    assert [q["id"] for q in r.json()["questions"]] == [c]
    del u
