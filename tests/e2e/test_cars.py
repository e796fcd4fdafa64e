# SPDX-License-Identifier: ISC
"""test_cars.py -- /api/cars end to end (API.md "Fleet", "Lists").

Every test makes its own cars with unique plates (and, where a list is
checked, a unique manufacturer), so tests don't depend on each other or on
their order.  Bulk setup goes through psql; one INSERT ... SELECT gives all
its rows the same created_at, which is what the pagination tests need.
"""

from collections import Counter

import pytest

from helpers import (JSON_CT, assert_error, car_body, memcached_cmd, new_car,
                     replicated, uniq)

CAR_FIELDS = {"id", "licensePlate", "manufacturer", "model", "category",
              "status", "year", "isArchived", "createdAt", "updatedAt"}


def flush_cache(stack):
    """Rows written with psql bypass the API's cache invalidation: after
    such setup, wait for the replica and empty memcached."""
    replicated(stack)
    assert memcached_cmd(stack, "flush_all").startswith("OK")


_STACK = []


@pytest.fixture(autouse=True)
def _remember_stack(stack):
    _STACK[:] = [stack]


def create(http, **kw):
    """POST a car; returns it once the replica has it too."""
    car = new_car(http, **kw)
    replicated(_STACK[0])
    return car


def ids(r):
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["data"]]


# ------------------------------------------------------------------ create

def test_cars_create_201_with_fields(http):
    body = car_body(manufacturer="Volvo", model="V60", category="midsize",
                    status="rented", year=2019)
    r = http.post("/api/cars", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"] == JSON_CT
    car = r.json()
    assert set(car) == CAR_FIELDS
    assert isinstance(car["id"], int) and car["id"] > 0
    for k in ("licensePlate", "manufacturer", "model", "category", "status",
              "year"):
        assert car[k] == body[k], k
    assert car["isArchived"] is False
    assert car["createdAt"].endswith("Z") and "T" in car["createdAt"]
    assert car["updatedAt"] == car["createdAt"]


def test_cars_create_default_status_available(http):
    assert create(http)["status"] == "available"


def test_cars_create_plate_upper_cased(http):
    p = uniq("ab-").lower()
    assert create(http, licensePlate=p)["licensePlate"] == p.upper()


def test_cars_create_missing_required_fields_422(http):
    body = assert_error(http.post("/api/cars", json={}), 422,
                        "validation_failed")
    assert set(body["fields"]) == {"licensePlate", "manufacturer", "model",
                                   "category", "year"}


def test_cars_create_is_archived_rejected_422(http):
    r = http.post("/api/cars", json=car_body(isArchived=True))
    assert "isArchived" in assert_error(r, 422, "validation_failed")["fields"]


@pytest.mark.parametrize("field,value", [
    ("licensePlate", "A"), ("licensePlate", "AB_1"), ("licensePlate", "-AB"),
    ("licensePlate", "X" * 17), ("category", "spaceship"),
    ("status", "stolen"), ("year", 1899), ("year", 2101),
    ("manufacturer", ""), ("model", "m" * 101),
    # Both reach customers' notifications and emails: one line, as a
    # user's name or a test's title must be.
    ("manufacturer", "Ford\r\nBcc: x@y.z"), ("model", "V60\x07"),
    ("model", "a\tb"),
])
def test_cars_create_invalid_value_422_names_field(http, field, value):
    r = http.post("/api/cars", json=car_body(**{field: value}))
    body = assert_error(r, 422, "validation_failed")
    assert list(body["fields"]) == [field]


def test_cars_duplicate_plate_conflict(http):
    car = create(http)
    r = http.post("/api/cars", json=car_body(licensePlate=car["licensePlate"]))
    body = assert_error(r, 409, "conflict")
    assert "licensePlate" in body["fields"]


def test_cars_duplicate_plate_case_insensitive_conflict(http):
    p = uniq("ab-").lower()
    create(http, licensePlate=p)
    r = http.post("/api/cars", json=car_body(licensePlate=p.upper()))
    assert "licensePlate" in assert_error(r, 409, "conflict")["fields"]


# --------------------------------------------------------------------- get

def test_cars_get_by_id(http):
    car = create(http)
    r = http.get("/api/cars/%d" % car["id"])
    assert r.status_code == 200
    assert r.json() == car


def test_cars_get_missing_id_404(http, stack):
    top = int(stack.psql("SELECT COALESCE(max(id), 0) FROM cars"))
    body = assert_error(http.get("/api/cars/%d" % (top + 1000)), 404,
                        "not_found")
    assert "fields" not in body


@pytest.mark.parametrize("path", ["/api/cars/abc", "/api/cars/0",
                                  "/api/cars/-1", "/api/cars/01",
                                  "/api/cars/1.5",
                                  "/api/cars/99999999999999999999"])
def test_cars_bad_id_404(http, path):
    assert_error(http.get(path), 404, "not_found")


def test_cars_create_then_immediate_get_sees_it(http):
    """API.md: a GET after a successful write never returns the old data --
    no waiting for the replica here, on purpose."""
    misses = []
    for _ in range(20):
        r = http.post("/api/cars", json=car_body())
        assert r.status_code == 201, r.text
        got = http.get("/api/cars/%d" % r.json()["id"])
        if got.status_code != 200 or got.json() != r.json():
            misses.append((got.status_code, got.headers.get("X-Cache")))
    assert misses == [], "%d of 20 reads missed the write" % len(misses)


def test_cars_patch_then_immediate_get_sees_it(http):
    car = create(http)
    stale = []
    for i in range(20):
        r = http.patch("/api/cars/%d" % car["id"], json={"year": 2000 + i})
        assert r.status_code == 200, r.text
        got = http.get("/api/cars/%d" % car["id"]).json()
        if got.get("year") != 2000 + i:
            stale.append((i, got.get("year")))
    assert stale == [], stale


def test_cars_create_then_immediate_list_sees_it(http):
    m = uniq("RYW")
    stale = 0
    for i in range(10):
        r = http.post("/api/cars", json=car_body(manufacturer=m))
        assert r.status_code == 201, r.text
        got = http.get("/api/cars", params={"manufacturer": m, "limit": 100})
        if len(got.json()["data"]) != i + 1:
            stale += 1
    assert stale == 0, "%d of 10 lists missed the write" % stale


def test_cars_stale_read_not_cached_past_replication(http, stack):
    """Even where an immediate read raced the replica, once the replica has
    the write no later read may still answer the old data (a stale row
    cached under the new generation would, for the cache's whole TTL)."""
    car = create(http)
    r = http.patch("/api/cars/%d" % car["id"], json={"model": "Fresh"})
    assert r.status_code == 200
    http.get("/api/cars/%d" % car["id"])          # may race the replica
    http.get("/api/cars", params={"manufacturer": car["manufacturer"]})
    replicated(stack)
    assert http.get("/api/cars/%d" % car["id"]).json()["model"] == "Fresh"
    listed = http.get("/api/cars", params={"limit": 100}).json()["data"]
    assert [c["model"] for c in listed if c["id"] == car["id"]] == ["Fresh"]


# ------------------------------------------------------------------- patch

@pytest.mark.parametrize("field,value,want", [
    ("licensePlate", "pa-tch", "PA-TCH"),
    ("manufacturer", "Saab", "Saab"),
    ("model", "9-3", "9-3"),
    ("category", "luxury", "luxury"),
    ("status", "maintenance", "maintenance"),
    ("year", 1999, 1999),
    ("isArchived", True, True),
])
def test_cars_patch_field(http, field, value, want):
    car = create(http)
    if field == "licensePlate":
        value = value + car["licensePlate"][-6:].lower()
        want = want + car["licensePlate"][-6:]
    r = http.patch("/api/cars/%d" % car["id"], json={field: value})
    assert r.status_code == 200, r.text
    replicated(_STACK[0])
    got = r.json()
    assert got[field] == want
    for k in CAR_FIELDS - {field, "updatedAt"}:
        assert got[k] == car[k], k
    assert got["updatedAt"] > car["updatedAt"]
    assert http.get("/api/cars/%d" % car["id"]).json() == got


def test_cars_patch_unknown_field_422(http):
    car = create(http)
    r = http.patch("/api/cars/%d" % car["id"], json={"colour": "red"})
    body = assert_error(r, 422, "validation_failed")
    assert "colour" in body["fields"]
    assert http.get("/api/cars/%d" % car["id"]).json() == car


def test_cars_patch_empty_object_422(http):
    car = create(http)
    r = http.patch("/api/cars/%d" % car["id"], json={})
    assert_error(r, 422, "validation_failed")


def test_cars_patch_null_field_422(http):
    car = create(http)
    r = http.patch("/api/cars/%d" % car["id"], json={"status": None})
    assert "status" in assert_error(r, 422, "validation_failed")["fields"]


def test_cars_patch_missing_car_404(http, stack):
    top = int(stack.psql("SELECT COALESCE(max(id), 0) FROM cars"))
    r = http.patch("/api/cars/%d" % (top + 1000), json={"model": "X"})
    assert_error(r, 404, "not_found")


def test_cars_patch_duplicate_plate_conflict(http):
    a, b = create(http), create(http)
    r = http.patch("/api/cars/%d" % b["id"],
                   json={"licensePlate": a["licensePlate"].lower()})
    assert "licensePlate" in assert_error(r, 409, "conflict")["fields"]
    assert http.get("/api/cars/%d" % b["id"]).json() == b


# ----------------------------------------------------------------- archive

def test_cars_delete_archives(http):
    car = create(http)
    r = http.delete("/api/cars/%d" % car["id"])
    assert r.status_code == 200, r.text
    replicated(_STACK[0])
    assert r.json()["isArchived"] is True
    assert r.json()["id"] == car["id"]
    got = http.get("/api/cars/%d" % car["id"])
    assert got.status_code == 200 and got.json()["isArchived"] is True


def test_cars_archived_hidden_from_default_list(http):
    m = uniq("ARC")
    kept, gone = create(http, manufacturer=m), create(http, manufacturer=m)
    assert http.delete("/api/cars/%d" % gone["id"]).status_code == 200
    replicated(_STACK[0])
    assert ids(http.get("/api/cars", params={"manufacturer": m})) == \
        [kept["id"]]
    assert ids(http.get("/api/cars", params={"manufacturer": m,
                                             "archived": "false"})) == \
        [kept["id"]]


def test_cars_archived_true_lists_archived(http):
    m = uniq("ARC")
    kept, gone = create(http, manufacturer=m), create(http, manufacturer=m)
    assert http.delete("/api/cars/%d" % gone["id"]).status_code == 200
    replicated(_STACK[0])
    r = http.get("/api/cars", params={"manufacturer": m, "archived": "true"})
    assert ids(r) == [gone["id"]]
    assert r.json()["data"][0]["isArchived"] is True


def test_cars_delete_missing_404(http, stack):
    top = int(stack.psql("SELECT COALESCE(max(id), 0) FROM cars"))
    assert_error(http.delete("/api/cars/%d" % (top + 1000)), 404,
                 "not_found")


# ----------------------------------------------------------------- filters

@pytest.fixture(scope="module")
def fleet(stack):
    """Six cars under one unique manufacturer, varied on every filter."""
    m = uniq("FLT")
    rows = [("available", "Alpha", "suv"), ("rented", "Alpha", "suv"),
            ("maintenance", "Beta", "van"), ("available", "Beta", "economy"),
            ("rented", "Gamma", "economy"), ("available", "Gamma", "suv")]
    values = ",".join("('%s', '%s', '%s', '%s', '%s', 2020)"
                      % (uniq("F"), m, model, cat, st)
                      for st, model, cat in rows)
    out = stack.psql("INSERT INTO cars (license_plate, manufacturer, model, "
                     "category, status, year) VALUES %s RETURNING id, "
                     "status, model, category" % values)
    cars = []
    for line in out.splitlines():
        i, st, model, cat = line.split("|")
        cars.append({"id": int(i), "status": st, "model": model,
                     "category": cat})
    flush_cache(stack)
    return m, cars


def expect(cars, **kw):
    return sorted(c["id"] for c in cars
                  if all(c[k] == v for k, v in kw.items()))


@pytest.mark.parametrize("status", ["available", "rented", "maintenance"])
def test_cars_filter_status(http, fleet, status):
    m, cars = fleet
    r = http.get("/api/cars", params={"manufacturer": m, "status": status})
    assert sorted(ids(r)) == expect(cars, status=status)
    # Without the manufacturer too: every row matches.
    r = http.get("/api/cars", params={"status": status, "limit": 100})
    assert all(c["status"] == status for c in r.json()["data"])


def test_cars_filter_manufacturer(http, fleet):
    m, cars = fleet
    r = http.get("/api/cars", params={"manufacturer": m, "limit": 100})
    assert sorted(ids(r)) == expect(cars)
    assert ids(http.get("/api/cars", params={"manufacturer": m.lower()})) \
        == []


def test_cars_filter_model(http, fleet):
    m, cars = fleet
    r = http.get("/api/cars", params={"manufacturer": m, "model": "Beta"})
    assert sorted(ids(r)) == expect(cars, model="Beta")


def test_cars_filter_category(http, fleet):
    m, cars = fleet
    r = http.get("/api/cars", params={"manufacturer": m,
                                      "category": "economy"})
    assert sorted(ids(r)) == expect(cars, category="economy")


def test_cars_filters_combine(http, fleet):
    m, cars = fleet
    r = http.get("/api/cars", params={"manufacturer": m, "status":
                                      "available", "category": "suv"})
    assert sorted(ids(r)) == expect(cars, status="available",
                                    category="suv")


@pytest.mark.parametrize("name,value", [
    ("status", "stolen"), ("status", ""), ("category", "SUV"),
    ("archived", "yes"), ("archived", "1"), ("manufacturer", ""),
    ("model", "m" * 101),
])
def test_cars_filter_invalid_value_400_names_field(http, name, value):
    r = http.get("/api/cars", params={name: value})
    body = assert_error(r, 400, "validation_failed")
    assert list(body["fields"]) == [name]


# ------------------------------------------------------------------ limits

def test_cars_list_shape_and_default_limit(http, fleet):
    r = http.get("/api/cars")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_CT
    doc = r.json()
    assert set(doc) == {"data", "page"}
    assert set(doc["page"]) == {"limit", "next", "prev"}
    assert doc["page"]["limit"] == 20
    assert doc["page"]["prev"] is None
    assert len(doc["data"]) <= 20
    for car in doc["data"]:
        assert set(car) == CAR_FIELDS


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_cars_limit_in_range(http, fleet, stack, limit):
    stack.psql("INSERT INTO cars (license_plate, manufacturer, model, "
               "category, year) SELECT '%s' || g, 'Limit', 'L', 'suv', 2020 "
               "FROM generate_series(1, 101) g ON CONFLICT DO NOTHING"
               % "LIM")
    flush_cache(stack)
    r = http.get("/api/cars", params={"limit": limit})
    assert len(ids(r)) == limit
    assert r.json()["page"]["limit"] == limit
    assert r.json()["page"]["next"] is not None


@pytest.mark.parametrize("limit", ["0", "101", "x", "-1", "", "1.5",
                                   "99999999999999999999"])
def test_cars_limit_out_of_range_400(http, limit):
    r = http.get("/api/cars", params={"limit": limit})
    assert "limit" in assert_error(r, 400, "validation_failed")["fields"]


# -------------------------------------------------------------- pagination

@pytest.fixture(scope="module")
def thousand(stack):
    """1,000 cars inserted by one statement: one created_at for all, so
    only the id orders them.  Returns the expected list order (newest
    first, id descending on ties) of all unarchived cars."""
    tag = uniq("K")[:7]
    stack.psql("INSERT INTO cars (license_plate, manufacturer, model, "
               "category, year) SELECT '%s' || g, 'Page', 'P', 'economy', "
               "2020 FROM generate_series(1, 1000) g" % tag)
    assert stack.psql("SELECT count(DISTINCT created_at) FROM cars WHERE "
                      "license_plate LIKE '%s%%'" % tag) == "1"
    flush_cache(stack)

    def order(where="true"):
        out = stack.psql("SELECT id FROM cars WHERE NOT is_archived AND %s "
                         "ORDER BY created_at DESC, id DESC" % where)
        return [int(x) for x in out.split()]
    return order


def walk(http, params, key, start=None):
    """Follows page[key] (next: after=, prev: before=) from the page that
    `start` (a cursor for that direction) or no cursor gives, repeating
    `params` on every request; returns the pages in the order visited."""
    arg = "after" if key == "next" else "before"
    pages = []
    cur = start
    while True:
        q = dict(params)
        if cur is not None:
            q[arg] = cur
        r = http.get("/api/cars", params=q)
        assert r.status_code == 200, r.text
        doc = r.json()
        pages.append(doc)
        assert len(pages) < 200, "the walk does not end"
        cur = doc["page"][key]
        if cur is None:
            return pages


def page_ids(pages):
    return [[c["id"] for c in p["data"]] for p in pages]


def test_cars_pagination_forward_no_gaps_no_repeats(http, thousand):
    want = thousand()
    pages = walk(http, {"limit": 37}, "next")
    got = [i for p in page_ids(pages) for i in p]
    assert len(got) == len(set(got)), "repeats"
    assert got == want
    assert all(len(p["data"]) == 37 for p in pages[:-1])
    assert pages[0]["page"]["prev"] is None
    assert all(p["page"]["prev"] is not None for p in pages[1:])


def test_cars_pagination_backward_to_start(http, thousand):
    want = thousand()
    fwd = walk(http, {"limit": 37}, "next")
    # Back from the last page with prev: the same pages in reverse.
    back = walk(http, {"limit": 37}, "prev", start=fwd[-1]["page"]["prev"])
    back.reverse()
    assert page_ids(back) == page_ids(fwd[:-1])
    got = [i for p in page_ids(back) + page_ids(fwd[-1:]) for i in p]
    assert got == want
    assert all(p["page"]["next"] is not None for p in back)


def test_cars_pagination_prev_then_next_returns_same_page(http, thousand):
    p1 = http.get("/api/cars", params={"limit": 50}).json()
    p2 = http.get("/api/cars", params={"limit": 50,
                                       "after": p1["page"]["next"]}).json()
    p3 = http.get("/api/cars", params={"limit": 50,
                                       "after": p2["page"]["next"]}).json()
    back = http.get("/api/cars", params={"limit": 50,
                                         "before": p3["page"]["prev"]}).json()
    assert page_ids([back]) == page_ids([p2])
    fwd = http.get("/api/cars", params={"limit": 50,
                                        "after": back["page"]["next"]}).json()
    assert page_ids([fwd]) == page_ids([p3])


def test_cars_pagination_ties_broken_by_id(http, thousand):
    rows = [c for p in walk(http, {"limit": 100}, "next") for c in p["data"]]
    keys = [(c["createdAt"], c["id"]) for c in rows]
    assert keys == sorted(keys, reverse=True)
    stamps = [c for c, _ in keys]
    # The bulk rows really tie on created_at, across page boundaries.
    assert Counter(stamps).most_common(1)[0][1] >= 1000, (len(rows), Counter(stamps).most_common(3))


def test_cars_pagination_with_filter(http, thousand):
    want = thousand("manufacturer = 'Page' AND category = 'economy'")
    params = {"limit": 64, "manufacturer": "Page", "category": "economy"}
    fwd = walk(http, params, "next")
    assert [i for p in page_ids(fwd) for i in p] == want
    back = walk(http, params, "prev", start=fwd[-1]["page"]["prev"])
    back.reverse()
    assert page_ids(back) == page_ids(fwd[:-1])


def test_cars_cursor_tampered_400(http, thousand):
    cur = http.get("/api/cars", params={"limit": 5}).json()["page"]["next"]
    alphabet = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                "0123456789-_")
    for i in (0, len(cur) // 2, len(cur) - 2):
        c = cur[i]
        flipped = cur[:i] + alphabet[(alphabet.index(c) + 1) % 64] + \
            cur[i + 1:]
        r = http.get("/api/cars", params={"after": flipped})
        assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("cursor", ["", "x", "not-a-cursor", "A" * 2000,
                                    "%%%"])
def test_cars_cursor_garbage_400(http, cursor):
    assert_error(http.get("/api/cars", params={"after": cursor}), 400,
                 "bad_request")


def test_cars_cursor_after_and_before_400(http, thousand):
    cur = http.get("/api/cars", params={"limit": 5}).json()["page"]["next"]
    r = http.get("/api/cars", params={"after": cur, "before": cur})
    assert_error(r, 400, "bad_request")
