# SPDX-License-Identifier: ISC
"""test_paging.py -- keyset pagination (API.md "Lists"; issue 3): forward
and back over 1,000 rows with no gaps or repeats, ties on the sort key
broken by id, and EXPLAIN showing a deep page is an index range scan that
reads only the page (no OFFSET, so cost does not grow with the page).
"""

import json
import uuid

import pytest

from helpers import plan_nodes

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
