# SPDX-License-Identifier: ISC
"""test_contracts.py -- rental contracts (API.md "Fleet"; issue 3): no
double booking even under concurrency, date rules, overlap filters,
customers confined to their own, embedded relations in one query each.
"""

import concurrent.futures

import pytest

from accounts import bearer, login, make_user
from helpers import assert_error, db_queries, new_car, request, while_held


def car_id(http):
    """A new car's id."""
    return new_car(http, manufacturer="Contracts", category="midsize",
                   year=2022)["id"]


def new_contract(http, car, customer, start, end, status=201):
    r = http.post("/api/contracts", json={
        "carId": car, "customerId": customer, "startDate": start,
        "endDate": end})
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(scope="module")
def customer(stack):
    return make_user(stack, "customer")


def test_create_embeds_car_and_customer(http, customer):
    car = car_id(http)
    c = new_contract(http, car, customer["id"], "2030-03-01", "2030-03-10")
    assert c["carId"] == car and c["customerId"] == customer["id"]
    assert c["status"] == "active"
    assert c["startDate"] == "2030-03-01" and c["endDate"] == "2030-03-10"
    assert c["car"]["id"] == car and c["car"]["manufacturer"] == "Contracts"
    assert c["customer"] == {"id": customer["id"], "name": customer["name"],
                             "email": customer["email"]}
    r = http.get("/api/contracts/%d" % c["id"])
    assert r.status_code == 200 and r.json() == c


def test_overlaps_are_409_adjacent_and_other_cars_are_fine(http, customer):
    car, other = car_id(http), car_id(http)
    new_contract(http, car, customer["id"], "2030-05-10", "2030-05-20")
    for start, end in (("2030-05-15", "2030-05-25"),   # overlaps the end
                       ("2030-05-01", "2030-05-10"),   # shares a day
                       ("2030-05-12", "2030-05-13"),   # inside
                       ("2030-05-01", "2030-06-01")):  # around
        r = http.post("/api/contracts", json={
            "carId": car, "customerId": customer["id"],
            "startDate": start, "endDate": end})
        assert_error(r, 409, "conflict")
    new_contract(http, car, customer["id"], "2030-05-21", "2030-05-22")
    new_contract(http, car, customer["id"], "2030-05-01", "2030-05-09")
    new_contract(http, other, customer["id"], "2030-05-10", "2030-05-20")


def test_cancelled_contract_frees_the_dates(http, customer):
    car = car_id(http)
    c = new_contract(http, car, customer["id"], "2030-07-01", "2030-07-05")
    r = http.patch("/api/contracts/%d" % c["id"], json={"status": "cancelled"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # An ended contract doesn't change any more.
    r = http.patch("/api/contracts/%d" % c["id"], json={"status": "completed"})
    assert_error(r, 409, "conflict")
    new_contract(http, car, customer["id"], "2030-07-03", "2030-07-04")


def test_patch_dates_keeps_the_overlap_rule(http, customer):
    car = car_id(http)
    a = new_contract(http, car, customer["id"], "2030-08-01", "2030-08-05")
    new_contract(http, car, customer["id"], "2030-08-10", "2030-08-15")
    r = http.patch("/api/contracts/%d" % a["id"], json={"endDate": "2030-08-12"})
    assert_error(r, 409, "conflict")
    r = http.patch("/api/contracts/%d" % a["id"], json={"endDate": "2030-08-09"})
    assert r.status_code == 200 and r.json()["endDate"] == "2030-08-09"
    # Start after the stored end: the table's CHECK says 422.
    r = http.patch("/api/contracts/%d" % a["id"], json={"startDate": "2030-08-30"})
    body = assert_error(r, 422, "validation_failed")
    assert "endDate" in body["fields"]
    r = http.patch("/api/contracts/999999999", json={"status": "completed"})
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize("body,field", [
    ({"startDate": "2030-01-10", "endDate": "2030-01-09"}, "endDate"),
    ({"startDate": "2030-02-30", "endDate": "2030-03-01"}, "startDate"),
    ({"startDate": "10/01/2030", "endDate": "2030-03-01"}, "startDate"),
    ({"startDate": "2030-01-01", "endDate": "2030-01-01'; --"}, "endDate"),
    ({"startDate": "2030-01-01", "endDate": 20300102}, "endDate"),
    ({"startDate": "2030-01-01", "endDate": "2030-01-02", "status": "active"},
     "status"),
])
def test_bad_dates_are_422_naming_the_field(http, customer, body, field):
    car = car_id(http)
    body = dict(body, carId=car, customerId=customer["id"])
    r = http.post("/api/contracts", json=body)
    assert field in assert_error(r, 422, "validation_failed")["fields"]


def test_unknown_car_or_non_customer_is_422(stack, http, customer):
    car = car_id(http)
    student = make_user(stack, "student")
    r = http.post("/api/contracts", json={
        "carId": 999999999, "customerId": customer["id"],
        "startDate": "2030-01-01", "endDate": "2030-01-02"})
    assert "carId" in assert_error(r, 422, "validation_failed")["fields"]
    r = http.post("/api/contracts", json={
        "carId": car, "customerId": student["id"],
        "startDate": "2030-01-01", "endDate": "2030-01-02"})
    assert "customerId" in assert_error(r, 422, "validation_failed")["fields"]
    n = stack.psql("SELECT count(*) FROM contracts WHERE car_id = %d" % car)
    assert n == "0"


def test_fifty_concurrent_conflicting_creations_make_one(stack, http,
                                                        admin_token,
                                                        customer):
    car = car_id(http)
    body = {"carId": car, "customerId": customer["id"]}
    url = http.url("/api/contracts")

    def create(i):
        # Each its own overlapping range, all through the 3rd.
        b = dict(body, startDate="2030-09-%02d" % (1 + i % 3),
                 endDate="2030-09-%02d" % (3 + i % 5))
        return request("POST", url, json=b, headers=bearer(admin_token),
                       timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        codes = list(pool.map(create, range(50)))
    assert codes.count(201) == 1, codes
    assert codes.count(409) == 49, codes
    assert stack.psql("SELECT count(*) FROM contracts WHERE car_id = %d "
                      "AND status = 'active'" % car) == "1"


def test_from_to_filters_find_overlapping_contracts(http, customer):
    car = car_id(http)
    ids = {}
    for name, (s, e) in {"jan": ("2032-01-05", "2032-01-20"),
                         "feb": ("2032-02-01", "2032-02-10"),
                         "mar": ("2032-03-01", "2032-03-31")}.items():
        ids[name] = new_contract(http, car, customer["id"], s, e)["id"]

    def found(**q):
        r = http.get("/api/contracts", params=dict(q, carId=car, limit=100))
        assert r.status_code == 200, r.text
        return {c["id"] for c in r.json()["data"]}

    assert found(**{"from": "2032-01-20", "to": "2032-02-01"}) == \
        {ids["jan"], ids["feb"]}
    assert found(**{"from": "2032-02-11", "to": "2032-02-28"}) == set()
    assert found(**{"from": "2032-03-15"}) == {ids["mar"]}
    assert found(to="2032-01-05") == {ids["jan"]}
    assert found() == set(ids.values())
    r = http.get("/api/contracts", params={"from": "2032-02-01",
                                           "to": "2032-01-01"})
    assert_error(r, 400, "validation_failed")
    r = http.get("/api/contracts", params={"from": "yesterday"})
    assert_error(r, 400, "validation_failed")


def test_customers_see_only_their_own(stack, http, customer):
    car = car_id(http)
    mine = new_contract(http, car, customer["id"], "2033-01-01", "2033-01-02")
    other = make_user(stack, "customer")
    theirs = new_contract(http, car, other["id"], "2033-02-01", "2033-02-02")
    h = bearer(login(http, customer["email"]))
    r = http.get("/api/contracts", params={"limit": 100}, headers=h)
    assert r.status_code == 200
    seen = {c["customerId"] for c in r.json()["data"]}
    assert seen == {customer["id"]}
    assert mine["id"] in {c["id"] for c in r.json()["data"]}
    # Asking for someone else's is an empty list, their contract a 404.
    r = http.get("/api/contracts", params={"customerId": other["id"]},
                 headers=h)
    assert r.status_code == 200 and r.json()["data"] == []
    r = http.get("/api/contracts/%d" % theirs["id"], headers=h)
    assert_error(r, 404, "not_found")
    r = http.get("/api/contracts/%d" % mine["id"], headers=h)
    assert r.status_code == 200


def test_list_embeds_with_one_query_per_relation(stack, http):
    """The batch loader: a page of 1 and a page of 20 contracts, each with
    its own car and customer, run the same number of statements."""
    tag = make_user(stack, "customer")

    def contracts_of(n):
        cust = make_user(stack, "customer")
        for i in range(n):
            new_contract(http, car_id(http), cust["id"], "2034-01-01",
                         "2034-01-02")
        return cust

    one, twenty = contracts_of(1), contracts_of(20)
    r1 = http.get("/api/contracts", params={"customerId": one["id"]})
    r20 = http.get("/api/contracts", params={"customerId": twenty["id"]})
    assert len(r1.json()["data"]) == 1 and len(r20.json()["data"]) == 20
    assert all(c["car"]["id"] == c["carId"] for c in r20.json()["data"])
    # The list, its cars, its customers: three, whatever the page size.
    assert db_queries(r1) == db_queries(r20) == 3
    del tag


def test_contract_paging_forward_and_back(stack, http):
    cust = make_user(stack, "customer")
    car = car_id(http)
    made = [new_contract(http, car, cust["id"], "2035-%02d-01" % m,
                         "2035-%02d-02" % m)["id"] for m in range(1, 8)]
    seen, page = [], http.get("/api/contracts", params={
        "customerId": cust["id"], "limit": 3}).json()
    while True:
        seen += [c["id"] for c in page["data"]]
        if page["page"]["next"] is None:
            break
        page = http.get("/api/contracts", params={
            "customerId": cust["id"], "limit": 3,
            "after": page["page"]["next"]}).json()
    assert seen == sorted(made, reverse=True)
    back = http.get("/api/contracts", params={
        "customerId": cust["id"], "limit": 3,
        "before": page["page"]["prev"]}).json()
    assert [c["id"] for c in back["data"]] == seen[3:6]
    r = http.get("/api/contracts", params={"after": "x" + page["page"]["prev"]})
    assert_error(r, 400, "bad_request")


def past_contract_of_a_deactivated_customer(stack, http):
    """An active contract that ended yesterday, of a customer deactivated
    since (users.c refuses only while a contract hasn't ended)."""
    u = make_user(stack, "customer")
    k = new_contract(http, car_id(http), u["id"], "2020-03-01", "2020-03-05")
    r = http.delete("/api/users/%d" % u["id"])
    assert r.status_code == 200, r.text
    return k


def test_a_deactivated_customers_contract_is_not_re_dated(stack, http):
    k = past_contract_of_a_deactivated_customer(stack, http)
    r = http.patch("/api/contracts/%d" % k["id"],
                   json={"startDate": "2031-01-01", "endDate": "2031-01-05"})
    assert_error(r, 409, "conflict")
    assert "customer" in r.json()["message"]
    assert stack.psql("SELECT end_date FROM contracts WHERE id = %d"
                      % k["id"]) == "2020-03-05"
    # Winding it down still works.
    r = http.patch("/api/contracts/%d" % k["id"], json={"status": "completed"})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text


def test_re_dating_racing_a_deactivation_waits_and_sees_it(stack, http,
                                                          admin_token):
    u = make_user(stack, "customer")
    k = new_contract(http, car_id(http), u["id"], "2020-04-01", "2020-04-05")
    r = while_held(stack, "UPDATE users SET is_active = false WHERE id = %d"
                   % u["id"], "PATCH", http.url("/api/contracts/%d" % k["id"]),
                   admin_token, {"startDate": "2031-02-01",
                                 "endDate": "2031-02-05"})
    assert_error(r, 409, "conflict")
