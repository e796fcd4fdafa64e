#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""paging.py -- benchmark: listing page 1 and page 1,000 of 100k cars must
cost the same within 1.5x (issue 3).  Not a timed test: it prints a
report (Markdown) to stdout; tests/bench/RESULTS-paging.md keeps one.

Starts a throwaway stack (tests/e2e/stack.py) with rate limits off, loads
100,000 cars, walks the list with cursors to page 1,000 (100 a page),
then measures both pages
  - in the database: EXPLAIN ANALYZE execution time of the statement the
    app runs (cars_list_after), median of RUNS; and the same rows fetched
    with OFFSET, for contrast;
  - over HTTP: median of RUNS requests, each with a different limit
    (100, 99, ...) so every one misses the response cache.

Usage: KEEL_BUILD_DIR=_build tests/bench/paging.py [--runs N]
"""

import argparse
import json
import os
import statistics
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from accounts import login, make_user  # noqa: E402
from stack import Stack  # noqa: E402

ROWS = 100_000
LIMIT = 100
DEEP = 1000

# cars_list_after of fcgi-apps/cars.c.
CARS_AFTER = (
    "SELECT id, license_plate, manufacturer, model, category, status, year, "
    "is_archived, created_at, updated_at FROM cars WHERE is_archived = $1 "
    "AND ($2::text IS NULL OR status = $2) "
    "AND ($3::text IS NULL OR manufacturer = $3) "
    "AND ($4::text IS NULL OR model = $4) "
    "AND ($5::text IS NULL OR category = $5) "
    "AND ($6::timestamptz IS NULL OR "
    "(created_at, id) < ($6::timestamptz, $7::bigint)) "
    "ORDER BY created_at DESC, id DESC LIMIT $8")
PREPARE = ("SET plan_cache_mode = force_custom_plan; PREPARE q(boolean, "
           "text, text, text, text, timestamptz, bigint, integer) AS "
           + CARS_AFTER + "; ")


def db_median(stack, execute, runs):
    times = []
    for _ in range(runs):
        out = stack.psql(PREPARE + "EXPLAIN (ANALYZE, FORMAT JSON) " + execute)
        times.append(json.loads(out)[0]["Execution Time"])
    return statistics.median(times)


def offset_median(stack, offset, runs):
    sql = ("EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM cars "
           "WHERE NOT is_archived ORDER BY created_at DESC, id DESC "
           "OFFSET %d LIMIT %d" % (offset, LIMIT))
    return statistics.median(json.loads(stack.psql(sql))[0]["Execution Time"]
                             for _ in range(runs))


def http_median(s, url, params, runs):
    times = []
    for i in range(runs):
        # Page 1 at limit 100 was cached by the walk: start below it.
        p = dict(params, limit=LIMIT - 1 - i)
        t0 = time.perf_counter()
        r = s.get(url, params=p, timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
        assert r.headers.get("X-Cache", "MISS") != "HIT", r.headers
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("KEEL_RATELIMIT", "0")
    st = Stack(extra_apps=None)
    st.start()
    try:
        t0 = time.monotonic()
        st.psql("INSERT INTO cars (license_plate, manufacturer, model, "
                "category, year, created_at) SELECT 'BN' || "
                "lpad(i::text, 7, '0'), 'Bench', 'Car', 'compact', 2020, "
                "timestamptz '2020-01-01Z' + i * interval '1 second' "
                "FROM generate_series(1, %d) i" % ROWS)
        st.psql("VACUUM ANALYZE cars")
        load_s = time.monotonic() - t0
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + login(
            _Base(st), make_user(st, "staff")["email"])
        url = st.url("/api/cars")
        # Walk to page DEEP with cursors, as a client would.
        cursor, t0 = None, time.monotonic()
        for n in range(1, DEEP):
            p = {"limit": LIMIT}
            if cursor:
                p["after"] = cursor
            cursor = s.get(url, params=p, timeout=30).json()["page"]["next"]
        walk_s = time.monotonic() - t0
        deep_key = st.psql("SELECT created_at, id FROM cars "
                           "ORDER BY created_at DESC, id DESC "
                           "OFFSET %d LIMIT 1" % ((DEEP - 1) * LIMIT - 1))
        created, cid = deep_key.split("|")
        first_db = db_median(st, "EXECUTE q(false, NULL, NULL, NULL, NULL, "
                             "NULL, NULL, %d)" % (LIMIT + 1), args.runs)
        deep_db = db_median(st, "EXECUTE q(false, NULL, NULL, NULL, NULL, "
                            "'%s', %s, %d)" % (created, cid, LIMIT + 1),
                            args.runs)
        first_off = offset_median(st, 0, args.runs)
        deep_off = offset_median(st, (DEEP - 1) * LIMIT, args.runs)
        first_http = http_median(s, url, {}, args.runs)
        deep_http = http_median(s, url, {"after": cursor}, args.runs)
    finally:
        st.stop()

    ratio_db = deep_db / first_db
    ratio_http = deep_http / first_http
    print("## Keyset paging: page 1 vs page %d of %d cars\n" % (DEEP, ROWS))
    print("%s, %d runs each (medians), %d rows a page; loaded in %.1f s, "
          "walked %d pages by cursor in %.1f s.\n"
          % (time.strftime("%Y-%m-%d"), args.runs, LIMIT, load_s, DEEP - 1,
             walk_s))
    print("| measure | page 1 | page %d | ratio |" % DEEP)
    print("|---|---|---|---|")
    print("| database, keyset (cars_list_after) | %.3f ms | %.3f ms | %.2fx |"
          % (first_db, deep_db, ratio_db))
    print("| HTTP GET /api/cars (cache miss) | %.2f ms | %.2f ms | %.2fx |"
          % (first_http, deep_http, ratio_http))
    print("| database, OFFSET (for contrast) | %.3f ms | %.3f ms | %.2fx |"
          % (first_off, deep_off, deep_off / first_off))
    ok = ratio_db <= 1.5 and ratio_http <= 1.5
    print("\nWithin 1.5x: %s." % ("yes" if ok else "NO"))
    return 0 if ok else 1


class _Base(requests.Session):
    """A session whose paths are relative to the stack (for login())."""

    def __init__(self, st):
        super().__init__()
        self.st = st

    def request(self, method, url, *a, **kw):
        return super().request(method, self.st.url(url), *a, **kw)


if __name__ == "__main__":
    sys.exit(main())
