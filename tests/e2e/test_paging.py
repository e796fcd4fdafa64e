# SPDX-License-Identifier: ISC
"""test_paging.py -- keyset pagination (API.md "Lists"; issue 3): forward
and back over 1,000 rows with no gaps or repeats, ties on the sort key
broken by id, and EXPLAIN showing a deep page is an index range scan that
reads only the page (no OFFSET, so cost does not grow with the page);
staff's pages of attempts and contracts read from their indexes, as
auto_explain logs the statements the apps run for them.
A cursor is bound to its list's filters (in any order; limit may change)
and, on a list of the caller's own rows, to the caller; on a list whose
pages are cached for everyone, anyone may follow it.
"""

import json
import os
import re
import urllib.parse
import uuid

import pytest

from accounts import session_for
from helpers import plan_nodes, replicated, wait_until
from test_tests import new_question, new_test, start

N = 1000


@pytest.fixture(scope="module")
def thousand(stack):
    """1,000 cars of one manufacturer; three share each created_at, so
    the id tie-breaker matters.  Returns (manufacturer, ids in list
    order: created_at DESC, id DESC)."""
    tag = uuid.uuid4().hex[:6].upper()
    make = "Page" + tag
    stack.psql(
        "INSERT INTO cars (license_plate, manufacturer, model, category, "
        "year, created_at) SELECT 'PG%s' || lpad(i::text, 4, '0'), '%s', "
        "'Keyset', 'compact', 2020, timestamptz '2020-01-01 00:00:00Z' + "
        "(i / 3) * interval '1 second' FROM generate_series(1, %d) i"
        % (tag, make, N))
    stack.psql("ANALYZE cars")
    ids = [int(x) for x in stack.psql(
        "SELECT id FROM cars WHERE manufacturer = '%s' "
        "ORDER BY created_at DESC, id DESC" % make).split()]
    assert len(ids) == N
    return make, ids


def page(http, make, **q):
    r = http.get("/api/cars", params=dict(q, manufacturer=make))
    assert r.status_code == 200, r.text
    return r.json()


def test_forward_then_back_over_1000_rows(http, thousand):
    make, ids = thousand
    seen, pages = [], []
    p = page(http, make, limit=100)
    assert p["page"]["prev"] is None
    while True:
        pages.append(p)
        seen += [c["id"] for c in p["data"]]
        if p["page"]["next"] is None:
            break
        p = page(http, make, limit=100, after=p["page"]["next"])
    assert seen == ids                      # no gap, no repeat, in order
    assert len(pages) == N // 100

    # Back from the last page to the first, by prev cursors.
    back = []
    p = pages[-1]
    back = [c["id"] for c in p["data"]]
    while p["page"]["prev"] is not None:
        p = page(http, make, limit=100, before=p["page"]["prev"])
        back = [c["id"] for c in p["data"]] + back
    assert back == ids


def test_odd_page_sizes_meet_exactly(http, thousand):
    make, ids = thousand
    seen, p = [], page(http, make, limit=37)
    while True:
        seen += [c["id"] for c in p["data"]]
        if p["page"]["next"] is None:
            break
        p = page(http, make, limit=37, after=p["page"]["next"])
    assert seen == ids


def test_foreign_and_tampered_cursors_are_400(http, stack, thousand):
    make, _ = thousand
    nxt = page(http, make, limit=5)["page"]["next"]
    flipped = nxt[:-2] + ("A" if nxt[-2] != "A" else "B") + nxt[-1]
    for bad in (flipped, nxt + "A", "", "!!!!"):
        r = http.get("/api/cars", params={"after": bad})
        assert r.status_code == 400, (bad, r.text)
    # A users cursor is foreign to cars.
    users = http.get("/api/users", params={"limit": 1}).json()
    if users["page"]["next"]:
        r = http.get("/api/cars", params={"after": users["page"]["next"]})
        assert r.status_code == 400


def raw_page(http, qs, headers=None):
    """GET /api/cars with the query string exactly as given."""
    return http.get("/api/cars?" + urllib.parse.urlencode(qs),
                    headers=headers)


def test_cursor_with_other_filters_is_400(http, thousand):
    make, _ = thousand
    q = {"manufacturer": make, "status": "available", "limit": 5}
    nxt = page(http, make, status="available", limit=5)["page"]["next"]
    for changed in ({"status": "rented"}, {"status": None},
                    {"category": "compact"}, {"manufacturer": make + "X"}):
        qs = dict(q, after=nxt, **changed)
        qs = {k: v for k, v in qs.items() if v is not None}
        r = raw_page(http, qs)
        assert r.status_code == 400, (changed, r.text)
        assert r.json()["message"] == "the cursor is not valid for this list"


def test_cursor_filter_order_does_not_matter(http, thousand):
    make, ids = thousand
    first = raw_page(http, [("manufacturer", make), ("status", "available"),
                            ("limit", 5)])
    nxt = first.json()["page"]["next"]
    r = raw_page(http, [("after", nxt), ("status", "available"),
                        ("limit", 5), ("manufacturer", make)])
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["data"]] == ids[5:10]


def test_cursor_limit_may_change(http, thousand):
    make, ids = thousand
    nxt = page(http, make, limit=5)["page"]["next"]
    p = page(http, make, limit=12, after=nxt)
    assert [c["id"] for c in p["data"]] == ids[5:17]
    p = page(http, make, before=p["page"]["prev"])
    assert [c["id"] for c in p["data"]] == ids[:5]


def test_owner_list_cursor_of_another_user_is_400(stack, http):
    """Attempts are a student's own: student2 can't walk student1's."""
    t = new_test(http, [new_question(stack)])
    _, h1 = session_for(stack, http, "student")
    _, h2 = session_for(stack, http, "student")
    replicated(stack)
    mine = [start(http, t["id"], h1)["id"] for _ in range(3)]
    start(http, t["id"], h2)
    replicated(stack)
    got = http.get("/api/attempts", headers=h1, params={"limit": 2}).json()
    nxt = got["page"]["next"]
    assert nxt is not None
    r = http.get("/api/attempts", headers=h2,
                 params={"limit": 2, "after": nxt})
    assert r.status_code == 400, r.text
    # Their own cursor still pages, and staff (who see everyone's) aren't
    # bound to a student's.
    r = http.get("/api/attempts", headers=h1,
                 params={"limit": 2, "after": nxt})
    assert r.status_code == 200, r.text
    assert [a["id"] for a in r.json()["data"]] == [mine[0]]
    r = http.get("/api/attempts", params={"limit": 2, "after": nxt})
    assert r.status_code == 400, r.text


def test_shared_cached_page_cursor_serves_another_user(stack, http,
                                                       thousand):
    """A cars page is cached for every caller, cursors inside: user B
    gets the page user A warmed, and its next cursor works for B."""
    make, ids = thousand
    _, hb = session_for(stack, http, "customer")
    qs = {"manufacturer": make, "limit": 7}
    a = raw_page(http, qs)
    assert (a.status_code, a.headers["X-Cache"]) == (200, "MISS"), a.text
    b = raw_page(http, qs, headers=hb)
    assert (b.status_code, b.headers["X-Cache"]) == (200, "HIT"), b.text
    assert b.json()["page"]["next"] == a.json()["page"]["next"]
    r = raw_page(http, dict(qs, after=b.json()["page"]["next"]), headers=hb)
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["data"]] == ids[7:14]


# cars_list_after of fcgi-apps/cars.c, as the app prepares it: the
# cursor's keys and the row count first (resource.h, KEEL_SQL_AFTER),
# then the filters.
CARS_AFTER = (
    "SELECT id FROM cars WHERE is_archived = $4 "
    "AND ($5::text IS NULL OR status = $5) "
    "AND ($6::text IS NULL OR manufacturer = $6) "
    "AND ($7::text IS NULL OR model = $7) "
    "AND ($8::text IS NULL OR category = $8) "
    "AND ($1::timestamptz IS NULL OR "
    "(created_at, id) < ($1::timestamptz, $2::bigint)) "
    "ORDER BY created_at DESC, id DESC LIMIT $3")


def test_deep_page_is_an_index_range_scan(stack, thousand):
    """A cursor 900 rows deep reads 21 rows, as the first page does."""
    make, ids = thousand
    key = stack.psql("SELECT created_at, id FROM cars WHERE id = %d"
                     % ids[900])
    created, cid = key.split("|")
    out = stack.psql(
        "SET plan_cache_mode = force_custom_plan; "
        "PREPARE q(timestamptz, bigint, integer, boolean, text, text, "
        "text, text) AS " + CARS_AFTER + "; "
        "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q('%s', %s, 21, false, "
        "NULL, NULL, NULL, NULL)" % (created, cid))
    plan = json.loads(out)[0]["Plan"]
    text = json.dumps(plan)
    assert plan["Node Type"] == "Limit"
    scans = [n for n in plan_nodes(plan) if "Scan" in n["Node Type"]]
    assert len(scans) == 1, text
    scan = scans[0]
    assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), text
    assert scan["Index Name"] == "cars_page_idx", text
    # The cursor is a range condition on the index, not a filter: the
    # scan starts at the cursor and reads just the page.
    assert "created_at" in scan.get("Index Cond", ""), text
    assert scan["Actual Rows"] <= 21, text
    assert "Sort" not in [n["Node Type"] for n in plan_nodes(plan)]
    assert "OFFSET" not in CARS_AFTER.upper()


# Staff's lists that filter by nothing of the caller's (sql/018): the
# index each page must be read from, the page asked of its app, and the
# table its statement reads.
STAFF_PAGES = {
    "attempts, everyone's": (
        "test_attempts_page_idx", "/api/attempts", {}, "test_attempts"),
    "attempts of one test": (
        "test_attempts_test_page_idx", "/api/attempts",
        {"testId": "%(test)d"}, "test_attempts"),
    "contracts of a rare status": (
        "contracts_status_page_idx", "/api/contracts",
        {"status": "cancelled"}, "contracts"),
}
# Apps that run them, and the servers that may (lists read the replica).
STAFF_APPS = ("attempts", "contracts")
PG_LOGS = ("primary.log", "replica.log")


@pytest.fixture(scope="module")
def crowded(stack):
    """5,000 attempts, the oldest 100 at one test (its page is then
    cheapest through its own index), and 5,000 completed contracts of
    one car (no cancelled one), the tables analyzed."""
    tag = uuid.uuid4().hex[:6].upper()
    ids = stack.psql(
        "WITH u AS (INSERT INTO users (email, username, name, role, "
        "password_hash) VALUES ('crowd-%s@e2e.test', 'crowd%s', 'Crowd', "
        "'student', NULL) RETURNING id), t AS (INSERT INTO tests (title, "
        "subject, duration_minutes) VALUES ('Crowd', 'Paging', 30) "
        "RETURNING id), c AS (INSERT INTO cars (license_plate, "
        "manufacturer, model, category, year) VALUES ('CR%s', 'Crowd', "
        "'Page', 'compact', 2020) RETURNING id) "
        "SELECT u.id, t.id, c.id FROM u, t, c" % (tag, tag.lower(), tag))
    user, test, car = (int(x) for x in ids.split("|"))
    other = int(stack.psql("INSERT INTO tests (title, subject, "
                           "duration_minutes) VALUES ('Crowd other', "
                           "'Paging', 30) RETURNING id"))
    stack.psql(
        "INSERT INTO test_attempts (test_id, user_id, started_at, "
        "expires_at) SELECT CASE WHEN i > 4900 THEN %d ELSE %d END, %d, "
        "now() - i * interval '1 minute', "
        "now() - i * interval '1 minute' + interval '30 minutes' "
        "FROM generate_series(1, 5000) i" % (test, other, user))
    stack.psql(
        "INSERT INTO contracts (car_id, customer_id, start_date, end_date, "
        "status) SELECT %d, %d, date '2000-01-01' + i, "
        "date '2000-01-01' + i, 'completed' FROM generate_series(1, 5000) i"
        % (car, user))
    stack.psql("ANALYZE test_attempts; ANALYZE contracts")
    return {"test": test}


def logged_plans(text):
    """Each plan auto_explain logged in text (log_format json): a list of
    {"Query Text": ..., "Plan": ...}.  An entry is a log line and the
    tab-led lines of its message that follow it."""
    out = []
    for entry in re.split(r"\n(?=\S)", text):
        at = entry.find(" plan:\n")
        if at < 0:
            continue
        try:
            doc, _ = json.JSONDecoder().raw_decode(
                entry[at + len(" plan:\n"):].lstrip())
        except ValueError:
            continue
        if isinstance(doc, dict) and "Plan" in doc:
            out.append(doc)
    return out


def read_from(paths, offsets):
    """What each file of paths holds past its offset, together."""
    text = ""
    for path, at in zip(paths, offsets):
        with open(path, errors="replace") as f:
            f.seek(at)
            text += f.read()
    return text


def explain_everything(stack, on):
    """auto_explain for every new connection of primary and replica
    (session_preload_libraries; no restart), logging each statement's
    plan in JSON -- or, not on, as configured before."""
    from helpers import superuser_sql
    if on:
        sql = ["LOAD 'auto_explain'",
               "ALTER SYSTEM SET session_preload_libraries = "
               "'auto_explain'",
               "ALTER SYSTEM SET auto_explain.log_min_duration = 0",
               "ALTER SYSTEM SET auto_explain.log_format = 'json'"]
    else:
        sql = ["ALTER SYSTEM RESET session_preload_libraries",
               "ALTER SYSTEM RESET auto_explain.log_min_duration",
               "ALTER SYSTEM RESET auto_explain.log_format"]
    failed = None
    for replica in (False, True):
        # Each server on its own: one that fails leaves the other done.
        try:
            superuser_sql(stack, sql + ["SELECT pg_reload_conf()"],
                          replica=replica)
        except Exception as e:      # noqa: BLE001 -- re-raised below
            failed = failed or e
    if failed is not None:
        raise failed


@pytest.fixture(scope="module")
def staff_plans(stack, admin_token, crowded):
    """Each of STAFF_PAGES asked of its app by staff, and the plan of the
    statement the app ran for it, as auto_explain logged it: {which:
    [logged plan, ...]}.  The apps start again before (their new
    connections load auto_explain) and after (theirs no longer do)."""
    import subprocess
    from helpers import BaseUrlSession
    logs = [stack.path("pg", "log", n) for n in PG_LOGS]
    plans = {}
    try:
        try:
            explain_everything(stack, True)
        except subprocess.CalledProcessError as e:
            pytest.fail("auto_explain could not be loaded: %s" % e.stderr)
        for app in STAFF_APPS:
            stack.stop_component(app)
            stack.start_component(app)
        replicated(stack)
        with BaseUrlSession(stack.base_url) as s:
            s.headers["Authorization"] = "Bearer " + admin_token
            for which, (_, path, params, table) in STAFF_PAGES.items():
                offsets = [os.path.getsize(p) for p in logs]
                r = s.get(path, params={k: v % crowded
                                        for k, v in params.items()})
                assert r.status_code == 200, r.text

                def page_plans():
                    # The server's log may trail the reply a little.
                    return [d for d in logged_plans(read_from(logs,
                                                              offsets))
                            if " FROM %s " % table in d["Query Text"] and
                            "ORDER BY" in d["Query Text"]]
                plans[which] = wait_until(page_plans, 10, "the plan of "
                                          "%s's page in the log" % which)
    finally:
        explain_everything(stack, False)
        for app in STAFF_APPS:
            stack.stop_component(app)
            stack.start_component(app)
    return plans


@pytest.mark.parametrize("which", sorted(STAFF_PAGES))
def test_staff_list_pages_are_index_scans(staff_plans, which):
    """A page of staff's attempts or contracts reads the page from an
    index in list order, not every row and a sort (230-290 ms a page at
    300,000 rows before sql/018): the plan of the statement the app ran,
    so a change to its SQL is seen as well as one to the indexes."""
    index = STAFF_PAGES[which][0]
    assert len(staff_plans[which]) == 1, staff_plans[which]
    plan = staff_plans[which][0]["Plan"]
    text = json.dumps(staff_plans[which][0])
    nodes = [n["Node Type"] for n in plan_nodes(plan)]
    assert not [n for n in nodes if n.endswith("Sort")], text
    assert "Seq Scan" not in nodes, text
    assert index in [n.get("Index Name") for n in plan_nodes(plan)], text
