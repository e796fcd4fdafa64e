# SPDX-License-Identifier: ISC
"""test_question_bank.py -- /api/question-bank end to end (API.md "Exam
prep"): staff writes and their validation, the filters, full-text search
(ranked, paged by (rank, id), hostile q text never a 500, the GIN index
in the plan, a q of more than 32 words a 400, a broad q ranking 1,000
matches at most), and the two views: students and customers never see
`answer` or `explanation`, neither fresh nor from a cache a staff member
warmed.

Every test makes its own questions under a unique subject, so a list
filtered by it holds only that test's rows.
"""

import datetime
import json
import os
import re
import subprocess

import pytest

from accounts import session_for
from helpers import (BaseUrlSession, assert_error, plan_nodes, replicated,
                     request, uniq, wait_until)
from stack import psql_env

PUBLIC = {"id", "subject", "topic", "difficulty", "body", "options",
          "isArchived", "createdAt", "updatedAt"}
STAFF = PUBLIC | {"answer", "explanation"}


@pytest.fixture(scope="module")
def who(stack, admin_token):
    """Headers of a staff member, a student and a customer."""
    with BaseUrlSession(stack.base_url) as s:
        return {role: session_for(stack, s, role)[1]
                for role in ("staff", "student", "customer")}


def body(**kw):
    """A valid POST body under a fresh subject; kw overrides."""
    b = {"subject": uniq("Subj"), "topic": "Arithmetic",
         "difficulty": "easy", "body": "What is 2 + 3?",
         "options": ["4", "5", "6", "7"], "answer": 1,
         "explanation": "2 + 3 = 5"}
    b.update(kw)
    return b


def made_up(prefix):
    """A made-up word no other test uses, as the stemmer keeps it."""
    return prefix + uniq("").lower()[:8].translate(
        str.maketrans("0123456789", "ghijklmnop")) + "t"


def create(http, headers=None, **kw):
    r = http.post("/api/question-bank", json=body(**kw), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def get(http, path, headers, **params):
    """A GET on a connection of its own as the holder of headers."""
    return request("GET", http.url(path), params=params, headers=headers,
                   timeout=30)


def ids(r):
    assert r.status_code == 200, r.text
    return [q["id"] for q in r.json()["data"]]


# ------------------------------------------------------------------ writes

def test_bank_create_by_staff_201_whole(http, who):
    b = body(options=["a", "b", "c"], answer=2)
    r = http.post("/api/question-bank", json=b, headers=who["staff"])
    assert r.status_code == 201, r.text
    q = r.json()
    assert set(q) == STAFF
    for k in ("subject", "topic", "difficulty", "body", "options", "answer",
              "explanation"):
        assert q[k] == b[k], k
    assert q["isArchived"] is False


def test_bank_create_without_explanation(http):
    b = body()
    del b["explanation"]
    r = http.post("/api/question-bank", json=b)
    assert r.status_code == 201, r.text
    assert r.json()["explanation"] is None


@pytest.mark.parametrize("change, field", [
    ({"answer": 4}, "answer"),                        # 4 options: 0..3
    ({"options": ["x", "y"], "answer": 2}, "answer"),
    ({"answer": -1}, "answer"),
    ({"answer": 6}, "answer"),
    ({"answer": "1"}, "answer"),
    ({"options": ["only"], "answer": 0}, "options"),
    ({"options": ["1", "2", "3", "4", "5", "6", "7"]}, "options"),
    ({"options": ["a", ""]}, "options"),
    ({"options": ["a", "   "]}, "options"),
    ({"options": ["a", 2]}, "options"),
    ({"options": "a,b"}, "options"),
    ({"options": ["a", "b" * 1001]}, "options"),
    ({"difficulty": "trivial"}, "difficulty"),
    ({"subject": ""}, "subject"),
    ({"topic": "t" * 101}, "topic"),
    ({"body": "b" * 10001}, "body"),
    ({"explanation": "e" * 10001}, "explanation"),
    ({"isArchived": True}, "isArchived"),
    ({"rightAnswer": 1}, "rightAnswer"),
])
def test_bank_create_invalid_422_names_the_field(http, change, field):
    r = http.post("/api/question-bank", json=body(**change))
    b = assert_error(r, 422, "validation_failed")
    # An option is named by its place: "options[1]".
    assert [k for k in b["fields"] if k.split("[")[0] == field], b


def test_bank_create_missing_fields_422(http):
    b = assert_error(http.post("/api/question-bank", json={}), 422,
                     "validation_failed")
    assert set(b["fields"]) == {"subject", "topic", "difficulty", "body",
                                "options", "answer"}


def test_bank_create_refused_to_student_and_customer(http, who):
    for role in ("student", "customer"):
        r = http.post("/api/question-bank", json=body(), headers=who[role])
        assert_error(r, 403, "forbidden")


def test_bank_patch_changes_and_clears_explanation(http, who):
    q = create(http)
    path = "/api/question-bank/%d" % q["id"]
    r = http.patch(path, json={"body": "What is 3 + 3?",
                               "options": ["6", "7"], "answer": 0},
                   headers=who["staff"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["body"], got["options"], got["answer"]) == (
        "What is 3 + 3?", ["6", "7"], 0)
    assert got["explanation"] == q["explanation"]     # absent: kept
    assert got["updatedAt"] > q["updatedAt"]
    r = http.patch(path, json={"explanation": None})
    assert r.status_code == 200 and r.json()["explanation"] is None


def test_bank_patch_answer_past_options_422_names_answer(http):
    q = create(http, options=["a", "b", "c", "d"], answer=3)
    path = "/api/question-bank/%d" % q["id"]
    # Fewer options than the answer's index: the row's own rule.
    b = assert_error(http.patch(path, json={"options": ["a", "b"]}), 422,
                     "validation_failed")
    assert set(b["fields"]) == {"answer"}
    b = assert_error(http.patch(path, json={"answer": 5}), 422,
                     "validation_failed")
    assert set(b["fields"]) == {"answer"}
    # Nothing changed.
    assert http.get(path).json()["options"] == ["a", "b", "c", "d"]


def test_bank_patch_empty_null_and_missing(http):
    q = create(http)
    path = "/api/question-bank/%d" % q["id"]
    assert_error(http.patch(path, json={}), 422, "validation_failed")
    b = assert_error(http.patch(path, json={"body": None}), 422,
                     "validation_failed")
    assert "body" in b["fields"]
    assert_error(http.patch("/api/question-bank/999999999",
                            json={"body": "x"}), 404, "not_found")


def test_bank_delete_archives_and_tests_keep_it(stack, http, who):
    q = create(http)
    path = "/api/question-bank/%d" % q["id"]
    # A test holds it (test_questions -> questions).
    stack.psql(
        "WITH t AS (INSERT INTO tests (title, subject, duration_minutes, "
        "published) VALUES ('Bank e2e', 'x', 10, true) RETURNING id) "
        "INSERT INTO test_questions (test_id, question_id, position) "
        "SELECT id, %d, 0 FROM t" % q["id"])
    r = http.delete(path, headers=who["staff"])
    assert r.status_code == 200, r.text
    assert r.json()["isArchived"] is True
    assert stack.psql("SELECT count(*) FROM test_questions "
                      "WHERE question_id = %d" % q["id"]) == "1"
    lst = {"subject": q["subject"]}
    assert ids(http.get("/api/question-bank", params=lst)) == []
    assert ids(http.get("/api/question-bank",
                        params=dict(lst, archived="true"))) == [q["id"]]
    assert http.get(path).json()["isArchived"] is True
    # Restored by a PATCH.
    r = http.patch(path, json={"isArchived": False})
    assert r.status_code == 200 and r.json()["isArchived"] is False
    assert ids(http.get("/api/question-bank", params=lst)) == [q["id"]]
    assert_error(http.delete("/api/question-bank/999999999"), 404,
                 "not_found")


# ----------------------------------------------------------------- filters

def test_bank_filters(http):
    subj = uniq("Subj")
    a = create(http, subject=subj, topic="Algebra", difficulty="hard")
    b = create(http, subject=subj, topic="Algebra", difficulty="easy")
    c = create(http, subject=subj, topic="Geometry", difficulty="hard")
    create(http)                                   # another subject
    lst = "/api/question-bank"
    assert ids(http.get(lst, params={"subject": subj})) == [
        c["id"], b["id"], a["id"]]
    assert ids(http.get(lst, params={"subject": subj, "topic": "Algebra"})
               ) == [b["id"], a["id"]]
    assert ids(http.get(lst, params={"subject": subj, "difficulty": "hard"})
               ) == [c["id"], a["id"]]
    assert ids(http.get(lst, params={"subject": subj, "topic": "Algebra",
                                     "difficulty": "hard"})) == [a["id"]]
    # Pages of one.
    p1 = http.get(lst, params={"subject": subj, "limit": 1}).json()
    p2 = http.get(lst, params={"subject": subj, "limit": 1,
                               "after": p1["page"]["next"]}).json()
    assert [q["id"] for q in p1["data"] + p2["data"]] == [c["id"], b["id"]]


@pytest.mark.parametrize("params, name", [
    ({"difficulty": "trivial"}, "difficulty"),
    ({"difficulty": ""}, "difficulty"),
    ({"subject": ""}, "subject"),
    ({"topic": "t" * 101}, "topic"),
    ({"q": ""}, "q"),
    ({"q": "w" * 201}, "q"),
    ({"archived": "maybe"}, "archived"),
    ({"search": "x"}, "search"),
])
def test_bank_bad_filters_400_named(http, params, name):
    b = assert_error(http.get("/api/question-bank", params=params), 400,
                     "validation_failed")
    assert name in b["fields"], b


def test_bank_item_takes_no_query(http):
    q = create(http)
    assert_error(http.get("/api/question-bank/%d?q=x" % q["id"]), 400,
                 "validation_failed")


# ------------------------------------------------------------------ search

def test_bank_search_ranks_stronger_match_first(http):
    subj = uniq("Subj")
    word = made_up("quokka")
    weak = create(http, subject=subj, body="Which animal is a %s?" % word)
    strong = create(http, subject=subj, topic="%s facts" % word,
                    body="The %s: where does a %s live, and what does a "
                    "%s eat?" % (word, word, word))
    create(http, subject=subj, body="Which animal is a wombat?")
    r = http.get("/api/question-bank", params={"q": word})
    assert ids(r) == [strong["id"], weak["id"]]
    # Stemmed like the column: the plural finds them too; web syntax.
    assert ids(http.get("/api/question-bank", params={
        "q": word + "s", "subject": subj})) == [strong["id"], weak["id"]]
    assert ids(http.get("/api/question-bank", params={
        "q": '"%s facts"' % word})) == [strong["id"]]
    assert ids(http.get("/api/question-bank", params={
        "q": "%s -eat" % word})) == [weak["id"]]
    got = ids(http.get("/api/question-bank", params={
        "q": "%s or wombat" % word, "subject": subj}))
    assert got[0] == strong["id"] and len(got) == 3


def test_bank_search_pages_by_rank_both_ways(http):
    subj = uniq("Subj")
    word = made_up("numbat")
    made = [create(http, subject=subj, body=" ".join([word] * n) +
                   " question %d" % n) for n in (1, 2, 3, 1, 2)]
    everything = ids(http.get("/api/question-bank", params={"q": word,
                                                            "limit": 100}))
    assert sorted(everything) == sorted(q["id"] for q in made)
    assert everything[0] == made[2]["id"]          # three times: best
    seen, p = [], http.get("/api/question-bank",
                           params={"q": word, "limit": 2}).json()
    pages = [p]
    while True:
        seen += [q["id"] for q in p["data"]]
        if p["page"]["next"] is None:
            break
        p = http.get("/api/question-bank", params={
            "q": word, "limit": 2, "after": p["page"]["next"]}).json()
        pages.append(p)
    assert seen == everything and len(pages) == 3
    back = [q["id"] for q in pages[-1]["data"]]
    while p["page"]["prev"] is not None:
        p = http.get("/api/question-bank", params={
            "q": word, "limit": 2, "before": p["page"]["prev"]}).json()
        back = [q["id"] for q in p["data"]] + back
    assert back == everything
    # A rank cursor belongs to its own q, and not to the plain list.
    nxt = pages[0]["page"]["next"]
    for params in ({"q": word + "x", "after": nxt}, {"after": nxt}):
        assert_error(http.get("/api/question-bank", params=params), 400,
                     "bad_request")
    plain = http.get("/api/question-bank",
                     params={"subject": subj, "limit": 1}).json()
    assert_error(http.get("/api/question-bank", params={
        "q": word, "after": plain["page"]["next"]}), 400, "bad_request")


HOSTILE = [
    '"foo" -bar OR', '"', '""', '"unterminated', 'or', 'OR OR OR', '-',
    '- - -', 'a & b | !c', 'foo:*', "foo:* & bar", '(((', ')))', "'",
    "'; DROP TABLE questions; --", '\\', '\\\\x', '<->', 'a <-> b',
    '!!!', '*', ':', '@@', '\u00e9t\u00e9 \u4e2d\u6587', '\U0001F600', 'the', 'the and of',
    ' ', 'a' * 200, '"x" -y or ' * 10,
]


@pytest.mark.parametrize("q", HOSTILE)
def test_bank_search_hostile_q_never_500(http, q):
    r = http.get("/api/question-bank", params={"q": q})
    assert r.status_code == 200, (q, r.status_code, r.text[:300])
    assert isinstance(r.json()["data"], list)


@pytest.mark.parametrize("q", ['\x01\x02\x1f', 'tab\there', 'new\nline',
                               '\x7f', 'a\x00b'])
def test_bank_search_control_bytes_are_a_clean_400(http, q):
    """lighttpd refuses control bytes in a URL (escaped or not) before
    any app sees them; NUL never gets past the query parser either."""
    r = http.get("/api/question-bank", params={"q": q})
    assert_error(r, 400, "bad_request")


def test_bank_search_stop_words_only_is_an_empty_page(http):
    create(http, body="What is the capital of the country?")
    r = http.get("/api/question-bank", params={"q": "the of"})
    assert ids(r) == []
    assert r.json()["page"]["next"] is None


def test_bank_search_oversized_or_nul_q_is_a_clean_4xx(http):
    r = http.get("/api/question-bank", params={"q": "x" * 10240})
    assert r.status_code in (400, 431), r.text
    if r.status_code == 400:
        assert "q" in r.json()["fields"]
    assert_error(http.get("/api/question-bank?q=%ff%fe"), 400,
                 "bad_request")
    b = assert_error(http.get("/api/question-bank",
                              params={"q": "x" * 201}), 400,
                     "validation_failed")
    assert set(b["fields"]) == {"q"}


def short_word():
    """Five made-up letters: a word short enough for 32 in a q."""
    return made_up("")[:5]


def words(n, sep=" "):
    """A q of n distinct short words (w00, w01, ...), joined by sep."""
    return sep.join("w%02d" % i for i in range(n))


@pytest.mark.parametrize("q", [
    words(33), words(17, " or "), words(33, "-"), ('"x" -y or ' * 20)[:200],
    " ".join(["\u00e9t\u00e9"] * 33),
])
def test_bank_search_of_more_than_32_words_is_400(http, q):
    """Each word is read from the index and ranked: q is bounded in words,
    "or" one of them, as well as in characters."""
    b = assert_error(http.get("/api/question-bank", params={"q": q}), 400,
                     "validation_failed")
    assert b["fields"] == {"q": "must be at most 32 words"}, b


@pytest.mark.parametrize("q", [
    words(32), words(16, " or "), " ".join(["\u00e9t\u00e9"] * 32),
    "- - - " + words(32, " ! "),
])
def test_bank_search_of_32_words_is_answered(http, q):
    r = http.get("/api/question-bank", params={"q": q})
    assert r.status_code == 200, r.text


BROAD_RANKED = 1000      # BANK_RANKED of fcgi-apps/question-bank.c


@pytest.fixture(scope="module")
def broad(stack):
    """1,200 questions holding one made-up word: 200 (a subject of
    their own) three times, 1,000 once; and a q of 16 words or'ed, the
    others matching nothing."""
    word = made_up("dugong")
    own_subj = uniq("Own")
    for n, subj, times in ((200, own_subj, 3), (BROAD_RANKED, "Broad", 1)):
        stack.psql(
            "INSERT INTO questions (subject, topic, difficulty, body, "
            "options, answer) SELECT '%s', 'Broad', 'easy', 'Broad question "
            "' || i || repeat(' %s', %d), '[\"a\", \"b\"]', 0 "
            "FROM generate_series(1, %d) i" % (subj, word, times, n))
    stack.psql("VACUUM ANALYZE questions")
    replicated(stack)
    ids = [int(x) for x in stack.psql(
        "SELECT id FROM questions WHERE subject = '%s'" % own_subj).split()]
    return {"q": " or ".join([word] + [short_word() for _ in range(15)]),
            "own": set(ids), "own_subject": own_subj}


def test_bank_broad_search_lists_1000_matches(http, broad):
    """More matches than BANK_RANKED: only that many are ranked and
    listed (README "The question bank's search"); a filter that leaves
    fewer matches reaches every one of them."""
    seen, p = [], {"page": {"next": None}}
    for _ in range(BROAD_RANKED // 100 + 2):
        params = {"q": broad["q"], "limit": 100}
        if p["page"]["next"]:
            params["after"] = p["page"]["next"]
        r = http.get("/api/question-bank", params=params)
        seen += ids(r)
        p = r.json()
        if p["page"]["next"] is None:
            break
    assert len(seen) == BROAD_RANKED and len(set(seen)) == len(seen)
    # The subject filter comes before the bound: all 200 of its own.
    r = http.get("/api/question-bank", params={
        "q": broad["q"], "subject": broad["own_subject"], "limit": 100})
    p = r.json()
    r = http.get("/api/question-bank", params={
        "q": broad["q"], "subject": broad["own_subject"], "limit": 100,
        "after": p["page"]["next"]})
    assert set(q["id"] for q in p["data"]) | set(ids(r)) == broad["own"]


def test_bank_broad_search_ranks_at_most_1000_rows(stack, http, broad):
    """The statement the app ran for a broad q of 16 words, as
    auto_explain logged it with its row counts: no node that computes
    ts_rank sees more than BANK_RANKED rows (it saw every match, 1,200
    here, ~53,000 for the 60,000 questions of the commit's measurement,
    before)."""
    from test_paging import logged_plans, read_from
    from helpers import superuser_sql
    settings = ("log_min_duration", "log_analyze", "log_verbose",
                "log_format")
    logs = [stack.path("pg", "log", n) for n in ("primary.log",
                                                 "replica.log")]
    try:
        for replica in (False, True):
            superuser_sql(stack, ["LOAD 'auto_explain'", "ALTER SYSTEM SET "
                                  "session_preload_libraries = "
                                  "'auto_explain'"] + [
                "ALTER SYSTEM SET auto_explain.%s = %s" % (k, v) for k, v in
                zip(settings, ("0", "on", "on", "json"))] + [
                "SELECT pg_reload_conf()"], replica=replica)
        # New connections, which load auto_explain.
        stack.restart_component("question-bank", {})
        offsets = [os.path.getsize(f) for f in logs]
        r = http.get("/api/question-bank", params={"q": broad["q"],
                                                   "limit": 7})
        assert len(ids(r)) == 7

        def plans():
            # The server's log may trail the reply a little.
            return [d["Plan"] for d in logged_plans(read_from(logs, offsets))
                    if "websearch_to_tsquery" in d["Query Text"] and
                    "ORDER BY rank DESC" in d["Query Text"]]
        found = wait_until(plans, 10, "the search's plan in the log")
    finally:
        for replica in (False, True):
            superuser_sql(stack, ["ALTER SYSTEM RESET "
                                  "session_preload_libraries"] + [
                "ALTER SYSTEM RESET auto_explain.%s" % k for k in settings] +
                ["SELECT pg_reload_conf()"], replica=replica)
        stack.stop_component("question-bank")
        stack.start_component("question-bank")
    text = json.dumps(found)
    ranking = [n for n in plan_nodes(found[0])
               if "ts_rank" in " ".join(n.get("Output", []))]
    assert ranking, text
    for n in ranking:
        assert n["Actual Rows"] * n["Actual Loops"] <= BROAD_RANKED, (
            n["Node Type"], n["Actual Rows"], n["Actual Loops"], text)


# ---------------------------------------------------------------- the views

def test_bank_student_and_customer_never_see_answers(http, who):
    q = create(http)
    item = "/api/question-bank/%d" % q["id"]
    for role in ("student", "customer"):
        for path, params in ((item, {}),
                             ("/api/question-bank", {"subject": q["subject"]}),
                             ("/api/question-bank", {"q": "arithmetic",
                                                     "subject": q["subject"]})):
            r = get(http, path, who[role], **params)
            assert r.status_code == 200, r.text
            objs = r.json()["data"] if "data" in r.json() else [r.json()]
            assert objs, (role, path)
            for o in objs:
                assert set(o) == PUBLIC, (role, path, o)
            assert "explanation" not in r.text and '"answer"' not in r.text
    r = get(http, item, who["staff"])
    assert set(r.json()) == STAFF


def test_bank_cache_miss_then_hit_per_view(http, who):
    q = create(http)
    for path, params in (("/api/question-bank/%d" % q["id"], {}),
                         ("/api/question-bank", {"subject": q["subject"]})):
        r1 = get(http, path, who["staff"], **params)
        r2 = get(http, path, who["staff"], **params)
        assert (r1.headers["X-Cache"], r2.headers["X-Cache"]) == (
            "MISS", "HIT")
        assert r2.json() == r1.json()
        # The student's view is its own entry: a miss, then a hit, and
        # neither holds an answer.
        s1 = get(http, path, who["student"], **params)
        s2 = get(http, path, who["student"], **params)
        assert (s1.headers["X-Cache"], s2.headers["X-Cache"]) == (
            "MISS", "HIT")
        for r in (s1, s2):
            assert "answer" not in r.text and "explanation" not in r.text
        # A customer shares the student view's entry.
        c = get(http, path, who["customer"], **params)
        assert c.headers["X-Cache"] == "HIT"
        assert c.json() == s2.json()
        # And the staff entry is still whole.
        r3 = get(http, path, who["staff"], **params)
        assert r3.headers["X-Cache"] == "HIT" and r3.json() == r1.json()


def test_bank_cache_student_first_does_not_hide_staff_answers(http, who):
    q = create(http)
    item = "/api/question-bank/%d" % q["id"]
    for _ in range(2):
        assert set(get(http, item, who["student"]).json()) == PUBLIC
    r = get(http, item, who["staff"])
    assert r.headers["X-Cache"] == "MISS"
    assert r.json()["answer"] == q["answer"]


def test_bank_cache_invalidated_by_every_write(http, who):
    q = create(http)
    item = "/api/question-bank/%d" % q["id"]
    lst = ("/api/question-bank", {"subject": q["subject"]})
    for role in ("staff", "student"):
        get(http, item, who[role])
        assert get(http, item, who[role]).headers["X-Cache"] == "HIT"
        get(http, lst[0], who[role], **lst[1])
    r = http.patch(item, json={"body": "What is 2 + 2?", "answer": 0})
    assert r.status_code == 200
    for role in ("staff", "student"):
        got = get(http, item, who[role])
        assert got.headers["X-Cache"] == "MISS"
        assert got.json()["body"] == "What is 2 + 2?"
        got = get(http, lst[0], who[role], **lst[1])
        assert [o["body"] for o in got.json()["data"]] == ["What is 2 + 2?"]
    assert get(http, item, who["staff"]).json()["answer"] == 0
    # A create and a delete invalidate too.
    q2 = create(http, subject=q["subject"])
    assert ids(get(http, lst[0], who["student"], **lst[1])) == [
        q2["id"], q["id"]]
    assert http.delete(item).status_code == 200
    assert ids(get(http, lst[0], who["student"], **lst[1])) == [q2["id"]]
    assert get(http, item, who["student"]).json()["isArchived"] is True


# ------------------------------------------------------------------- plans

# bank_staff_search_after of fcgi-apps/question-bank.c, as the app
# prepares it: cursor, row count, then the filters (archived, subject,
# topic, difficulty, q).
SEARCH_AFTER = (
    "SELECT id, (ts_rank(search, websearch_to_tsquery('english', $8))"
    "::float8 * 1e9)::bigint AS rank FROM (SELECT * FROM questions "
    "WHERE is_archived = $4 "
    "AND ($5::text IS NULL OR subject = $5) "
    "AND ($6::text IS NULL OR topic = $6) "
    "AND ($7::text IS NULL OR difficulty = $7) "
    "AND search @@ websearch_to_tsquery('english', $8) "
    "LIMIT 1000) m WHERE true "
    "AND ($1::bigint IS NULL OR ((ts_rank(search, "
    "websearch_to_tsquery('english', $8))::float8 * 1e9)::bigint, id) "
    "< ($1::bigint, $2::bigint)) ORDER BY rank DESC, id DESC LIMIT $3")


def test_bank_search_uses_the_gin_index(stack, http):
    word = made_up("bilby")
    stack.psql(
        "INSERT INTO questions (subject, topic, difficulty, body, options, "
        "answer) SELECT 'Plan', 'Filler', 'easy', 'Filler question number ' "
        "|| i || CASE WHEN i %% 500 = 0 THEN ' %s' ELSE '' END, "
        "'[\"a\", \"b\"]', 0 FROM generate_series(1, 3000) i" % word)
    # GIN's pending list (fastupdate) holds fresh rows until a vacuum
    # merges them; autovacuum would, the test does it now.
    stack.psql("VACUUM ANALYZE questions")
    out = stack.psql(
        "SET plan_cache_mode = force_custom_plan; "
        "PREPARE q(bigint, bigint, integer, boolean, text, text, text, "
        "text) AS " + SEARCH_AFTER + "; "
        "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q(NULL, NULL, 21, false, "
        "NULL, NULL, NULL, '%s')" % word)
    plan = json.loads(out)[0]["Plan"]
    text = json.dumps(plan)
    used = [n for n in plan_nodes(plan) if n.get("Index Name") ==
            "questions_search_idx"]
    assert used and used[0]["Node Type"] == "Bitmap Index Scan", text
    assert "Seq Scan" not in [n["Node Type"] for n in plan_nodes(plan)], text
    # And the app finds the six of them.
    replicated(stack)
    r = http.get("/api/question-bank", params={"q": word, "limit": 100})
    assert len(ids(r)) == 6


def test_bank_requests_quote_roundtrip(http):
    """A q with every reserved URL character survives the query string."""
    q = create(http, body="Ratio 3/4 & 50% + more = ? #1")
    r = http.get("/api/question-bank", params={
        "q": "ratio 3/4 & 50% + more = ? #1", "subject": q["subject"]})
    assert ids(r) == [q["id"]]


# --------------------------------------------------------------- demo data

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                    "sql", "demo", "040_exam.sql")
# The questions, and the demo's tests by their titles ("<subject> practice
# test <n>"), before and after each run.
DEMO_COUNTS = (
    "SELECT 'counts', (SELECT count(*) FROM questions), "
    "(SELECT count(*) FROM tests WHERE title LIKE '% practice test _'), "
    "(SELECT count(*) FROM tests WHERE title LIKE '% practice test _' "
    "AND published);\n")


def test_bank_demo_data_loads_twice_fast_and_reads_right(stack):
    """sql/demo/040_exam.sql, run twice in one transaction (rolled back:
    the suite's database stays the tests'): the second run adds nothing,
    each run is quick, and the generated questions are right."""
    script = "\\set ON_ERROR_STOP 1\nBEGIN;\n" + DEMO_COUNTS
    for _ in range(2):
        script += ("SELECT 'start', clock_timestamp();\n\\i %s\n"
                   "SELECT 'end', clock_timestamp();\n" % DEMO + DEMO_COUNTS)
    script += (
        # Tests: 10-20 questions each at 0..n-1, 10-60 minutes, one
        # subject.
        "SELECT 'tests', count(*), min(n), max(n), bool_and(ok), "
        "min(d), max(d) FROM (SELECT t.id, count(*) AS n, "
        "max(tq.position) = count(*) - 1 AND bool_and(q.subject = "
        "t.subject) AS ok, min(t.duration_minutes) AS d FROM tests t "
        "JOIN test_questions tq ON tq.test_id = t.id JOIN questions q "
        "ON q.id = tq.question_id WHERE t.title LIKE '% practice test _' "
        "GROUP BY t.id) x;\n"
        "SELECT 'subjects', count(DISTINCT subject) FROM questions "
        "WHERE subject IN ('Mathematics', 'Physics', 'Chemistry', "
        "'Biology', 'History', 'Geography', 'English');\n"
        # Four different options each; the answer spread over them.
        "SELECT 'options', count(*) FILTER (WHERE (SELECT count(DISTINCT v) "
        "FROM jsonb_array_elements_text(options) v) <> 4), "
        "count(DISTINCT answer) FROM questions WHERE subject IN "
        "('Mathematics', 'Geography', 'Chemistry');\n"
        "SELECT 'q', body, options ->> answer FROM questions WHERE topic "
        "= 'Arithmetic' AND subject = 'Mathematics';\n"
        "SELECT 'q', body, options ->> answer FROM questions WHERE body "
        "LIKE 'What is the capital of %' OR body LIKE "
        "'What is the chemical symbol for %';\n"
        "ROLLBACK;\n")
    url, env = psql_env(stack.env["DATABASE_URL"], dict(
        os.environ, PGOPTIONS="-c client_min_messages=warning"))
    p = subprocess.run(["psql", "-X", "-q", "-At", "-d", url], input=script,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    rows = [line.split("|") for line in p.stdout.splitlines()]
    counts = [[int(x) for x in r[1:]] for r in rows if r[0] == "counts"]
    assert len(counts) == 3
    added = counts[1][0] - counts[0][0]
    assert 2500 <= added <= 4000, counts
    assert counts[1][1:] == [counts[0][1] + 42, counts[0][2] + 35], counts
    assert counts[2] == counts[1], "the second run added rows"
    times = [datetime.datetime.fromisoformat(r[1]) for r in rows
             if r[0] in ("start", "end")]
    for start, end in zip(times[::2], times[1::2]):
        assert (end - start).total_seconds() < 2, times
    r = {x[0]: x[1:] for x in rows if x[0] not in ("q", "counts")}
    n, qmin, qmax, ok, dmin, dmax = r["tests"]
    assert (int(n), ok) == (42, "t")
    assert 10 <= int(qmin) <= int(qmax) <= 20
    assert 10 <= int(dmin) and int(dmax) <= 60
    assert r["subjects"] == ["7"]
    assert r["options"] == ["0", "4"]
    capitals = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi",
                "Australia": "Canberra", "Brazil": "Brasília"}
    symbols = {"Sodium": "Na", "Iron": "Fe", "Gold": "Au", "Carbon": "C"}
    seen = 0
    for _, body, right in (x for x in rows if x[0] == "q"):
        m = re.fullmatch(r"What is (\d+) ([-+×]) (\d+)\?", body)
        if m:
            a, op, b = int(m[1]), m[2], int(m[3])
            assert int(right) == {"+": a + b, "-": a - b, "×": a * b}[op]
            seen += 1
        m = re.fullmatch(r"What is the capital of (.+)\?", body)
        if m and m[1] in capitals:
            assert right == capitals[m[1]], body
            seen += 1
        m = re.fullmatch(r"What is the chemical symbol for (.+)\?", body)
        if m and m[1] in symbols:
            assert right == symbols[m[1]], body
            seen += 1
    assert seen > 500
