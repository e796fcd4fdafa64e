# SPDX-License-Identifier: ISC
"""test_study.py -- a user's own flashcards and study plans (API.md "Exam
prep"; issue 10): CRUD, another user's rows as 404, pages, SM-2 reviews
through HTTP, the due list, bad input named by field, the tests a page
of plans names loaded by one query whatever the page size, and a plan
that stays editable once a test it names is unpublished.
"""

import concurrent.futures
import datetime

import pytest

from accounts import bearer, login, make_user, session_for
from helpers import (assert_error, db_queries, replicated, request, uniq,
                     while_held)
# The held-transaction race of the contracts tests, reused as it is.

NOBODY = 999999999


def ts(s):
    """An API timestamp as a datetime."""
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def me(stack, http):
    """A fresh student's headers (each test sees only its own rows)."""
    return session_for(stack, http, "student")[1]


@pytest.fixture
def them(stack, http):
    """Another user's headers."""
    return session_for(stack, http, "customer")[1]


def new_card(http, h, **kw):
    body = {"front": "What is %s?" % uniq(), "back": "An answer"}
    body.update(kw)
    r = http.post("/api/flashcards", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def review(http, h, card, grade, status=200):
    r = http.post("/api/flashcards/%d/review" % card, json={"grade": grade},
                  headers=h)
    assert r.status_code == status, r.text
    return r.json()


def new_test(stack, title=None, published=True):
    """A test row straight in PostgreSQL (the tests app is not needed)."""
    title = title or uniq("Test ")
    return int(stack.psql(
        "INSERT INTO tests (title, subject, duration_minutes, published) "
        "VALUES ('%s', 'study', 30, %s) RETURNING id"
        % (title, "true" if published else "false"))), title


def new_plan(http, h, **kw):
    body = {"title": uniq("Plan ")}
    body.update(kw)
    r = http.post("/api/study-plans", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def all_pages(http, h, path, limit):
    """Every id of a list, following next cursors."""
    seen, params = [], {"limit": limit}
    while True:
        r = http.get(path, params=params, headers=h)
        assert r.status_code == 200, r.text
        seen += [x["id"] for x in r.json()["data"]]
        if r.json()["page"]["next"] is None:
            return seen
        params = {"limit": limit, "after": r.json()["page"]["next"]}


# ------------------------------------------------------------ flashcards

def test_flashcard_crud(http, me):
    c = new_card(http, me, topic="algebra")
    assert c["topic"] == "algebra" and c["back"] == "An answer"
    assert c["ease"] == 2.5 and c["intervalDays"] == 0
    assert c["repetitions"] == 0
    assert ts(c["dueAt"]) <= ts(c["createdAt"]) + datetime.timedelta(
        seconds=1)
    r = http.get("/api/flashcards/%d" % c["id"], headers=me)
    assert r.status_code == 200 and r.json() == c
    r = http.patch("/api/flashcards/%d" % c["id"], headers=me,
                   json={"front": "Changed?", "topic": None})
    assert r.status_code == 200, r.text
    assert r.json()["front"] == "Changed?" and r.json()["topic"] is None
    assert r.json()["back"] == "An answer"
    r = http.get("/api/flashcards", headers=me)
    assert [x["id"] for x in r.json()["data"]] == [c["id"]]
    r = http.delete("/api/flashcards/%d" % c["id"], headers=me)
    assert r.status_code == 204 and r.content == b""
    assert_error(http.get("/api/flashcards/%d" % c["id"], headers=me), 404,
                 "not_found")
    assert_error(http.delete("/api/flashcards/%d" % c["id"], headers=me),
                 404, "not_found")


def assert_hidden(http, me, them, path, row, patch, lists):
    """Another user's row at path: a 404 to me on get, patch and delete,
    in none of my lists, and untouched for its owner."""
    assert_error(http.get(path, headers=me), 404, "not_found")
    assert_error(http.patch(path, json=patch, headers=me), 404, "not_found")
    assert_error(http.delete(path, headers=me), 404, "not_found")
    for lst in lists:
        assert http.get(lst, headers=me).json()["data"] == []
    r = http.get(path, headers=them)
    assert r.status_code == 200 and r.json() == row


def test_flashcard_of_another_user_is_404(http, me, them):
    c = new_card(http, them)
    path = "/api/flashcards/%d" % c["id"]
    assert_error(http.post(path + "/review", json={"grade": 5}, headers=me),
                 404, "not_found")
    assert_hidden(http, me, them, path, c, {"front": "mine"},
                  ("/api/flashcards", "/api/flashcards/due"))


def test_flashcard_pages_newest_first(http, me):
    made = [new_card(http, me)["id"] for _ in range(5)]
    assert all_pages(http, me, "/api/flashcards", 2) == made[::-1]
    first = http.get("/api/flashcards", params={"limit": 2},
                     headers=me).json()
    second = http.get("/api/flashcards", headers=me, params={
        "limit": 2, "after": first["page"]["next"]}).json()
    back = http.get("/api/flashcards", headers=me, params={
        "limit": 2, "before": second["page"]["prev"]}).json()
    assert [x["id"] for x in back["data"]] == made[::-1][:2]


def test_flashcard_topic_filter(http, me):
    a = new_card(http, me, topic="chemistry")
    new_card(http, me, topic="physics")
    r = http.get("/api/flashcards", params={"topic": "chemistry"}, headers=me)
    assert [x["id"] for x in r.json()["data"]] == [a["id"]]


def test_flashcard_bad_input(http, me):
    r = http.post("/api/flashcards", json={"front": "x" * 2001, "back": "b"},
                  headers=me)
    assert assert_error(r, 422, "validation_failed")["fields"] == {
        "front": "is too long"}
    r = http.post("/api/flashcards", json={"front": "f"}, headers=me)
    assert "back" in assert_error(r, 422, "validation_failed")["fields"]
    r = http.post("/api/flashcards", json={"front": "f", "back": "b",
                                           "topic": ""}, headers=me)
    assert "topic" in assert_error(r, 422, "validation_failed")["fields"]
    c = new_card(http, me)
    r = http.patch("/api/flashcards/%d" % c["id"], json={"back": None},
                   headers=me)
    assert "back" in assert_error(r, 422, "validation_failed")["fields"]
    assert http.get("/api/flashcards", headers=me).json()["data"] == [c]


# ----------------------------------------------------------- SM-2 reviews

def test_review_sequence_follows_sm2(stack, http, me):
    c = new_card(http, me)
    want = [  # grade: ease, interval, repetitions
        (5, 2.6, 1, 1),
        (5, 2.7, 6, 2),
        (5, 2.8, 16, 3),     # round(6 x 2.7)
        (2, 2.8, 1, 0),      # a failing grade restarts, ease kept
        (3, 2.66, 1, 1),
        (4, 2.66, 6, 2),
        (4, 2.66, 16, 3),    # round(6 x 2.66) = round(15.96)
    ]
    for grade, ease, interval, reps in want:
        got = review(http, me, c["id"], grade)
        assert (got["ease"], got["intervalDays"], got["repetitions"]) == (
            ease, interval, reps), (grade, got)
        # dueAt is now + interval days, in the same statement as updatedAt.
        assert ts(got["dueAt"]) - ts(got["updatedAt"]) == \
            datetime.timedelta(days=interval)
    # The real column holds exactly what srs.c computed.
    assert stack.psql("SELECT ease, interval_days, repetitions FROM "
                      "flashcards WHERE id = %d" % c["id"]) == "2.66|16|3"
    r = http.get("/api/flashcards/%d" % c["id"], headers=me)
    assert r.json() == got


def test_review_ease_has_a_floor(http, me):
    c = new_card(http, me)
    for _ in range(10):
        got = review(http, me, c["id"], 3)
    assert got["ease"] == 1.3 and got["repetitions"] == 10


@pytest.mark.parametrize("body,why", [
    ({"grade": 6}, "is out of range"),
    ({"grade": -1}, "is out of range"),
    ({"grade": "5"}, "must be an integer"),
    ({"grade": 5.5}, "must be an integer"),
    ({"grade": None}, "must not be null"),
    ({"grade": True}, "must be an integer"),
    ({}, "is required"),
])
def test_review_bad_grade_is_422_naming_grade(http, me, body, why):
    c = new_card(http, me)
    r = http.post("/api/flashcards/%d/review" % c["id"], json=body,
                  headers=me)
    assert assert_error(r, 422, "validation_failed")["fields"] == {
        "grade": why}
    assert http.get("/api/flashcards/%d" % c["id"], headers=me).json() == c


def test_concurrent_reviews_lose_no_update(stack, http, me):
    """Reviews racing on one card each start from the state the one
    before left (the UPDATE is guarded by the row version read): every
    200 moved the schedule one step, none was lost."""
    c = new_card(http, me)
    url = stack.base_url + "/api/flashcards/%d/review" % c["id"]

    def one(_):
        return request("POST", url, json={"grade": 4}, headers=me)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(8)))
    ok = [r.json()["repetitions"] for r in got if r.status_code == 200]
    for r in got:
        if r.status_code != 200:
            assert_error(r, 409, "conflict")
    assert sorted(ok) == list(range(1, len(ok) + 1))
    assert http.get("/api/flashcards/%d" % c["id"],
                    headers=me).json()["repetitions"] == len(ok)


def test_review_of_a_missing_card_is_404(http, me):
    assert_error(http.post("/api/flashcards/%d/review" % NOBODY,
                           json={"grade": 4}, headers=me), 404, "not_found")


def test_review_is_idempotent_with_a_key(http, me):
    c = new_card(http, me)
    h = dict(me, **{"Idempotency-Key": uniq("review-")})
    r1 = http.post("/api/flashcards/%d/review" % c["id"], json={"grade": 5},
                   headers=h)
    r2 = http.post("/api/flashcards/%d/review" % c["id"], json={"grade": 5},
                   headers=h)
    assert r1.status_code == r2.status_code == 200
    assert r2.headers.get("Idempotent-Replayed") == "true"
    assert r1.json() == r2.json() and r2.json()["repetitions"] == 1
    assert http.get("/api/flashcards/%d" % c["id"],
                    headers=me).json()["repetitions"] == 1


# -------------------------------------------------------------- due list

def test_due_lists_due_cards_oldest_first(stack, http, me):
    cards = [new_card(http, me)["id"] for _ in range(5)]
    a, b, c, d, e = cards
    review(http, me, e, 5)                  # due tomorrow now
    for card, due in ((a, "now() - interval '3 days'"),
                      (b, "now() - interval '1 day'"),
                      (c, "now() + interval '1 hour'"),
                      (d, None)):
        if due is not None:
            stack.psql("UPDATE flashcards SET due_at = %s WHERE id = %d"
                       % (due, card))
    # d ties with a: the same due_at, ordered by id.
    stack.psql("UPDATE flashcards SET due_at = (SELECT due_at FROM "
               "flashcards WHERE id = %d) WHERE id = %d" % (a, d))
    replicated(stack)
    r = http.get("/api/flashcards/due", headers=me)
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["data"]] == [a, d, b]
    assert all_pages(http, me, "/api/flashcards/due", 2) == [a, d, b]
    # Reviewing the most overdue takes it off the list.
    review(http, me, a, 4)
    assert [x["id"] for x in http.get("/api/flashcards/due",
                                      headers=me).json()["data"]] == [d, b]


def test_due_is_not_an_id(http, me):
    # /api/flashcards/due is the list, never the card "due"; other
    # methods on it are not routes.
    assert http.get("/api/flashcards/due", headers=me).status_code == 200
    r = http.delete("/api/flashcards/due", headers=me)
    assert_error(r, 405, "method_not_allowed")


def test_due_rejects_unknown_parameters(http, me):
    r = http.get("/api/flashcards/due", params={"topic": "x"}, headers=me)
    assert_error(r, 400, "validation_failed")


# ----------------------------------------------------------- study plans

def test_study_plan_crud_embeds_tests(stack, http, me):
    tid, title = new_test(stack)
    p = new_plan(http, me, targetDate="2027-06-30", items=[
        {"topic": "Limits", "testId": tid, "done": False},
        {"topic": "Series", "done": True},
        {"topic": "Vectors", "testId": None}])
    assert p["targetDate"] == "2027-06-30"
    assert p["items"] == [
        {"topic": "Limits", "testId": tid, "done": False,
         "test": {"id": tid, "title": title}, "lastAttempt": None},
        {"topic": "Series", "done": True, "test": None, "lastAttempt": None},
        {"topic": "Vectors", "done": False, "test": None,
         "lastAttempt": None}]
    r = http.get("/api/study-plans/%d" % p["id"], headers=me)
    assert r.status_code == 200 and r.json() == p
    r = http.patch("/api/study-plans/%d" % p["id"], headers=me,
                   json={"title": "Renamed", "targetDate": None})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Renamed" and r.json()["targetDate"] is None
    assert r.json()["items"] == p["items"]
    r = http.patch("/api/study-plans/%d" % p["id"], headers=me,
                   json={"items": [{"topic": "Limits", "testId": tid,
                                    "done": True}]})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [{"topic": "Limits", "testId": tid,
                                  "done": True,
                                  "test": {"id": tid, "title": title},
                                  "lastAttempt": None}]
    assert r.json()["title"] == "Renamed"
    r = http.get("/api/study-plans", headers=me)
    assert r.json()["data"] == [http.get("/api/study-plans/%d" % p["id"],
                                         headers=me).json()]
    r = http.delete("/api/study-plans/%d" % p["id"], headers=me)
    assert r.status_code == 204 and r.content == b""
    assert_error(http.get("/api/study-plans/%d" % p["id"], headers=me), 404,
                 "not_found")


def test_study_plan_of_another_user_is_404(http, me, them):
    p = new_plan(http, them)
    assert_hidden(http, me, them, "/api/study-plans/%d" % p["id"], p,
                  {"title": "mine"}, ("/api/study-plans",))


def test_study_plan_pages_newest_first(http, me):
    made = [new_plan(http, me)["id"] for _ in range(5)]
    assert all_pages(http, me, "/api/study-plans", 2) == made[::-1]


def test_unpublished_test_embeds_null(stack, http, me):
    tid, _ = new_test(stack)
    p = new_plan(http, me, items=[{"topic": "T", "testId": tid}])
    stack.psql("UPDATE tests SET published = false WHERE id = %d" % tid)
    replicated(stack)
    r = http.get("/api/study-plans/%d" % p["id"], headers=me)
    assert r.json()["items"] == [{"topic": "T", "testId": tid, "done": False,
                                  "test": None, "lastAttempt": None}]


@pytest.mark.parametrize("body,field", [
    ({"title": "x" * 201}, "title"),
    ({"title": ""}, "title"),
    ({}, "title"),
    ({"title": "t", "targetDate": "2027-02-30"}, "targetDate"),
    ({"title": "t", "targetDate": "tomorrow"}, "targetDate"),
    ({"title": "t", "items": {"topic": "x"}}, "items"),
    ({"title": "t", "items": "x"}, "items"),
    ({"title": "t", "items": [{"topic": "x"}] * 101}, "items"),
    ({"title": "t", "items": [1]}, "items[0]"),
    ({"title": "t", "items": [{"done": True}]}, "items[0].topic"),
    ({"title": "t", "items": [{"topic": "x" * 101}]}, "items[0].topic"),
    ({"title": "t", "items": [{"topic": "x", "testId": "3"}]},
     "items[0].testId"),
    ({"title": "t", "items": [{"topic": "x", "testId": 0}]},
     "items[0].testId"),
    ({"title": "t", "items": [{"topic": "x", "done": "yes"}]},
     "items[0].done"),
    ({"title": "t", "items": [{"topic": "x", "extra": 1}]},
     "items[0].extra"),
])
def test_study_plan_bad_input_named(http, me, body, field):
    r = http.post("/api/study-plans", json=body, headers=me)
    assert field in assert_error(r, 422, "validation_failed")["fields"]
    assert http.get("/api/study-plans", headers=me).json()["data"] == []


def test_study_plan_unknown_test_is_422_naming_the_item(stack, http, me):
    tid, _ = new_test(stack)
    hidden, _ = new_test(stack, published=False)
    for bad in (NOBODY, hidden):
        r = http.post("/api/study-plans", headers=me, json={
            "title": "t", "items": [{"topic": "a", "testId": tid},
                                    {"topic": "b", "testId": bad}]})
        assert assert_error(r, 422, "validation_failed")["fields"] == {
            "items[1].testId": "no such test"}
    assert http.get("/api/study-plans", headers=me).json()["data"] == []
    # A patch is checked alike, and changes nothing.
    p = new_plan(http, me, items=[{"topic": "a", "testId": tid}])
    r = http.patch("/api/study-plans/%d" % p["id"], headers=me,
                   json={"title": "new", "items": [{"topic": "b",
                                                    "testId": NOBODY}]})
    assert assert_error(r, 422, "validation_failed")["fields"] == {
        "items[0].testId": "no such test"}
    assert http.get("/api/study-plans/%d" % p["id"], headers=me).json() == p


def attempt(stack, h_user, test, score, ago):
    """A submitted attempt of the user (by id) at test, `ago` seconds
    ago; its id."""
    return int(stack.psql(
        "INSERT INTO test_attempts (test_id, user_id, started_at, "
        "expires_at, submitted_at, score, correct, total, answers, "
        "answer_key) VALUES (%d, %d, now() - interval '1 hour', now(), "
        "now() - %d * interval '1 second', %d, %d, 100, '{}', '{}') "
        "RETURNING id" % (test, h_user, ago, score, score)))


def user_id(http, h):
    r = http.get("/api/auth/me", headers=h)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_plan_list_loads_tests_and_attempts_in_one_query_each(stack, http,
                                                              me, them):
    """A page of 1 plan naming 1 test and a page of 20 plans naming 40
    tests run the same statements: the list, then one = ANY($1) load per
    relation -- the tests, and the caller's latest attempts at them."""
    tid, _ = new_test(stack)
    attempt(stack, user_id(http, me), tid, 70, 60)
    new_plan(http, me, items=[{"topic": "a", "testId": tid}])
    uid = user_id(http, them)
    for i in range(20):
        t1, _ = new_test(stack)
        t2, _ = new_test(stack)
        attempt(stack, uid, t1, i, 60)
        new_plan(http, them, items=[{"topic": "a", "testId": t1},
                                    {"topic": "b", "testId": t2},
                                    {"topic": "c"}])
    replicated(stack)
    r1 = http.get("/api/study-plans", headers=me)
    r20 = http.get("/api/study-plans", headers=them)
    assert len(r1.json()["data"]) == 1 and len(r20.json()["data"]) == 20
    assert all(i.get("testId") is None or i["test"]["id"] == i["testId"]
               for p in r20.json()["data"] for i in p["items"])
    # Each plan's first item has an attempt of its own, the others none.
    assert [[i["lastAttempt"] and i["lastAttempt"]["score"]
             for i in p["items"]] for p in r20.json()["data"]] == [
        [s, None, None] for s in range(19, -1, -1)]
    assert r1.json()["data"][0]["items"][0]["lastAttempt"]["score"] == 70
    assert db_queries(r1) == db_queries(r20) == 3


def test_plan_item_embeds_the_callers_latest_submitted_attempt(stack, http,
                                                                me, them):
    """The test attempts loader: an item's lastAttempt is the caller's own
    latest submitted attempt at its test -- not an older one, not one
    still running, not another user's."""
    tid, _ = new_test(stack)
    uid = user_id(http, me)
    attempt(stack, uid, tid, 90, 300)
    latest = attempt(stack, uid, tid, 40, 100)
    attempt(stack, user_id(http, them), tid, 100, 10)    # not mine
    stack.psql("INSERT INTO test_attempts (test_id, user_id, started_at, "
               "expires_at) VALUES (%d, %d, now(), now() + interval "
               "'1 hour')" % (tid, uid))                  # running
    p = new_plan(http, me, items=[{"topic": "a", "testId": tid}])
    last = p["items"][0]["lastAttempt"]
    assert (last["testId"], last["id"], last["score"]) == (tid, latest, 40)
    when = stack.psql("SELECT to_char(submitted_at AT TIME ZONE 'UTC', "
                      "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM "
                      "test_attempts WHERE id = %d" % latest)
    assert last["submittedAt"] == when
    # Another user's plan naming the same test shows their own.
    q = new_plan(http, them, items=[{"topic": "a", "testId": tid}])
    assert q["items"][0]["lastAttempt"]["score"] == 100


# ------------------------------------------- tests unpublished since

def unpublish(stack, http, tid):
    """Staff unpublish test tid through the tests app, as the probe did."""
    staff = session_for(stack, http, "staff")[1]
    r = http.patch("/api/tests/%d" % tid, json={"published": False},
                   headers=staff)
    assert r.status_code == 200, r.text


def test_plan_keeps_a_test_unpublished_since(stack, http, me):
    """A testId the plan already holds stays acceptable on a patch after
    its test was unpublished: the plan can still be marked done, its
    item keeps its testId and its history (lastAttempt)."""
    tid, _ = new_test(stack)
    attempt(stack, user_id(http, me), tid, 80, 60)
    p = new_plan(http, me, items=[{"topic": "x", "testId": tid},
                                  {"topic": "y"}])
    unpublish(stack, http, tid)
    url = "/api/study-plans/%d" % p["id"]
    r = http.patch(url, headers=me, json={"items": [
        {"topic": "x", "testId": tid, "done": False},
        {"topic": "y", "done": True}]})
    assert r.status_code == 200, r.text
    got = r.json()["items"]
    assert [(i["topic"], i.get("testId"), i["done"], i["test"])
            for i in got] == [("x", tid, False, None),
                              ("y", None, True, None)]
    assert got[0]["lastAttempt"]["score"] == 80
    # Its own item's done, and a reordering, alike.
    r = http.patch(url, headers=me, json={"items": [
        {"topic": "y", "done": True},
        {"topic": "x again", "testId": tid, "done": True}]})
    assert r.status_code == 200, r.text
    assert r.json()["items"][1]["testId"] == tid
    assert r.json()["items"][1]["done"] is True


def test_unpublished_test_is_new_to_other_plans(stack, http, me):
    """Only the plan that holds it keeps it: creating a plan with it,
    adding it to another plan, or adding it back once dropped is naming
    a test the student can't see, 422, and nothing changes."""
    tid, _ = new_test(stack)
    p = new_plan(http, me, items=[{"topic": "x", "testId": tid}])
    q = new_plan(http, me, items=[{"topic": "y"}])
    unpublish(stack, http, tid)
    r = http.post("/api/study-plans", headers=me, json={
        "title": "t", "items": [{"topic": "x", "testId": tid}]})
    assert assert_error(r, 422, "validation_failed")["fields"] == {
        "items[0].testId": "no such test"}
    r = http.patch("/api/study-plans/%d" % q["id"], headers=me, json={
        "items": [{"topic": "y"}, {"topic": "x", "testId": tid}]})
    assert assert_error(r, 422, "validation_failed")["fields"] == {
        "items[1].testId": "no such test"}
    assert http.get("/api/study-plans/%d" % q["id"], headers=me).json() == q
    url = "/api/study-plans/%d" % p["id"]
    r = http.patch(url, headers=me, json={"items": []})
    assert r.status_code == 200, r.text
    r = http.patch(url, headers=me, json={
        "items": [{"topic": "x", "testId": tid}]})
    assert assert_error(r, 422, "validation_failed")["fields"] == {
        "items[0].testId": "no such test"}
    assert http.get(url, headers=me).json()["items"] == []


def test_plan_held_by_another_user_is_not_held_by_mine(stack, http, me,
                                                       them):
    """Another user's plan holding an unpublished test doesn't make it
    acceptable in mine, nor does patching their plan (a 404 to me)."""
    tid, _ = new_test(stack)
    theirs = new_plan(http, them, items=[{"topic": "x", "testId": tid}])
    mine = new_plan(http, me, items=[{"topic": "y"}])
    unpublish(stack, http, tid)
    body = {"items": [{"topic": "x", "testId": tid}]}
    r = http.patch("/api/study-plans/%d" % mine["id"], headers=me,
                   json=body)
    assert "items[0].testId" in assert_error(r, 422,
                                             "validation_failed")["fields"]
    r = http.patch("/api/study-plans/%d" % theirs["id"], headers=me,
                   json=body)
    assert r.status_code in (404, 422), r.text
    r = http.get("/api/study-plans/%d" % theirs["id"], headers=them)
    assert r.json() == dict(theirs, items=[dict(theirs["items"][0],
                                                test=None)])


def test_plan_patch_racing_one_that_drops_the_test_sees_it(stack, http):
    """A patch that drops the unpublished test holds the plan's row
    uncommitted; a patch keeping it waits, then finds it no longer held:
    the test is new to the plan again, 422, and the drop stands."""
    u = make_user(stack, "student")
    token = login(http, u["email"])
    tid, _ = new_test(stack)
    p = new_plan(http, bearer(token), items=[{"topic": "x", "testId": tid}])
    unpublish(stack, http, tid)
    r = while_held(stack, "UPDATE study_plans SET items = '[]' WHERE id = %d"
                   % p["id"], "PATCH", stack.url("/api/study-plans/%d"
                                                 % p["id"]), token,
                   {"items": [{"topic": "x", "testId": tid, "done": True}]})
    assert assert_error(r, 422, "validation_failed")["fields"] == {
        "items[0].testId": "no such test"}
    assert http.get("/api/study-plans/%d" % p["id"],
                    headers=bearer(token)).json()["items"] == []
