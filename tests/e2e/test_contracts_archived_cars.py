# SPDX-License-Identifier: ISC
"""test_contracts_archived_cars.py -- a booked car stays in service (API.md
"Fleet"): archiving a car with an active contract not yet ended is a 409,
even racing the contract's creation; a contract on a car archived before
that rule keeps its dates but can still be cancelled or completed.

The races are made deterministic with a psql session that holds a
transaction open -- the other side's statement, uncommitted -- while the
API request waits on it (seen in pg_stat_activity), then commits.
"""

import concurrent.futures
import threading
import time

import pytest

from accounts import bearer, make_user
from helpers import assert_error, new_car, request, while_held


@pytest.fixture(scope="module")
def customer(stack):
    return make_user(stack, "customer")


def contract(http, car, customer, start="2030-04-01", end="2030-04-10"):
    r = http.post("/api/contracts", json={
        "carId": car, "customerId": customer["id"], "startDate": start,
        "endDate": end})
    assert r.status_code == 201, r.text
    return r.json()


def archived(stack, car):
    return stack.psql("SELECT is_archived FROM cars WHERE id = %d" % car)


def test_archiving_a_booked_car_is_409_and_it_stays_in_service(
        stack, http, customer):
    car = new_car(http)["id"]
    contract(http, car, customer)
    body = assert_error(http.delete("/api/cars/%d" % car), 409, "conflict")
    assert "active contracts" in body["message"]
    assert archived(stack, car) == "f"
    # Still bookable: the refusal changed nothing.
    contract(http, car, customer, "2030-05-01", "2030-05-02")


def test_patch_is_archived_true_on_a_booked_car_is_409(stack, http, customer):
    car = new_car(http)["id"]
    contract(http, car, customer)
    r = http.patch("/api/cars/%d" % car, json={"isArchived": True})
    assert "active contracts" in assert_error(r, 409, "conflict")["message"]
    assert archived(stack, car) == "f"
    # A PATCH that doesn't archive is not held up by the contract.
    r = http.patch("/api/cars/%d" % car, json={"model": "Booked"})
    assert r.status_code == 200 and r.json()["model"] == "Booked", r.text


@pytest.mark.parametrize("ending", ["cancelled", "completed"])
def test_archiving_after_the_contract_ends_succeeds(http, customer, ending):
    car = new_car(http)["id"]
    c = contract(http, car, customer)
    assert_error(http.delete("/api/cars/%d" % car), 409, "conflict")
    r = http.patch("/api/contracts/%d" % c["id"], json={"status": ending})
    assert r.status_code == 200, r.text
    r = http.delete("/api/cars/%d" % car)
    assert r.status_code == 200 and r.json()["isArchived"] is True, r.text


def test_a_contract_whose_period_ended_does_not_keep_the_car(http, customer):
    car = new_car(http)["id"]
    contract(http, car, customer, "2020-01-01", "2020-01-05")
    r = http.delete("/api/cars/%d" % car)
    assert r.status_code == 200 and r.json()["isArchived"] is True, r.text


@pytest.mark.parametrize("ending", ["cancelled", "completed"])
def test_contract_on_a_car_archived_before_the_rule(stack, http, customer,
                                                    ending):
    """Data from before the rule: the car was archived under a booking."""
    car = new_car(http)["id"]
    c = contract(http, car, customer)
    stack.psql("UPDATE cars SET is_archived = true WHERE id = %d" % car)
    url = "/api/contracts/%d" % c["id"]
    for body in ({"endDate": "2030-12-31"}, {"startDate": "2030-04-02"},
                 {"startDate": "2030-03-01", "endDate": "2030-04-30"}):
        r = http.patch(url, json=body)
        assert "archived" in assert_error(r, 409, "conflict")["message"]
    got = http.get(url).json()
    assert (got["startDate"], got["endDate"]) == ("2030-04-01", "2030-04-10")
    assert got["status"] == "active"
    # Winding it down still works.
    r = http.patch(url, json={"status": ending})
    assert r.status_code == 200 and r.json()["status"] == ending, r.text
    assert r.json()["endDate"] == "2030-04-10"


# ------------------------------------------------------------------ races

def test_archive_racing_a_contract_insert_sees_it(stack, http, admin_token,
                                                  customer):
    """The contract's insert (as contracts.c makes it) holds the car's row
    uncommitted; the archive waits for it, then sees the contract: 409."""
    car = new_car(http)["id"]
    r = while_held(stack, "INSERT INTO contracts (car_id, customer_id, "
                   "start_date, end_date) SELECT id, %d, '2030-06-01', "
                   "'2030-06-05' FROM cars WHERE id = %d AND NOT is_archived "
                   "FOR SHARE" % (customer["id"], car),
                   "DELETE", http.url("/api/cars/%d" % car), admin_token)
    assert_error(r, 409, "conflict")
    assert archived(stack, car) == "f"


def test_contract_insert_racing_an_archive_sees_it(stack, http, admin_token,
                                                   customer):
    """The archive holds the car's row uncommitted; a new contract waits
    for it, then finds the car archived: 422, and no contract."""
    car = new_car(http)["id"]
    r = while_held(stack, "UPDATE cars SET is_archived = true WHERE id = %d"
                   % car, "POST", http.url("/api/contracts"), admin_token,
                   {"carId": car, "customerId": customer["id"],
                    "startDate": "2030-06-01", "endDate": "2030-06-05"})
    body = assert_error(r, 422, "validation_failed")
    assert "carId" in body["fields"]
    assert stack.psql("SELECT count(*) FROM contracts WHERE car_id = %d"
                      % car) == "0"


def test_contract_dates_racing_an_archive_see_it(stack, http, admin_token,
                                                 customer):
    """A contract whose period ended doesn't keep its car; moving its
    dates into the future while the car is being archived waits for the
    archive, then finds the car archived: 409, the dates unchanged."""
    car = new_car(http)["id"]
    c = contract(http, car, customer, "2020-02-01", "2020-02-05")
    r = while_held(stack, "UPDATE cars SET is_archived = true WHERE id = %d"
                   % car, "PATCH", http.url("/api/contracts/%d" % c["id"]),
                   admin_token, {"endDate": "2030-02-05"})
    assert "archived" in assert_error(r, 409, "conflict")["message"]
    assert stack.psql("SELECT end_date FROM contracts WHERE id = %d"
                      % c["id"]) == "2020-02-05"


def test_creates_and_archives_racing_never_book_an_archived_car(
        stack, admin_token, customer, http):
    """Many rounds of a contract's creation and its car's archive sent
    at once (bounded in time): one of them wins, never both."""
    deadline = time.monotonic() + 40
    rounds = 0
    seen = set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        while rounds < 40 and time.monotonic() < deadline:
            car = new_car(http)["id"]
            go = threading.Barrier(2)

            def create():
                go.wait(10)
                return request("POST", http.url("/api/contracts"), json={
                    "carId": car, "customerId": customer["id"],
                    "startDate": "2030-07-01", "endDate": "2030-07-02"},
                    headers=bearer(admin_token), timeout=60).status_code

            def archive():
                go.wait(10)
                return request("DELETE", http.url("/api/cars/%d" % car),
                               headers=bearer(admin_token),
                               timeout=60).status_code

            fc, fa = pool.submit(create), pool.submit(archive)
            codes = (fc.result(), fa.result())
            assert codes in ((201, 409), (422, 200)), codes
            seen.add(codes)
            n = stack.psql("SELECT count(*) FROM contracts k JOIN cars c "
                           "ON c.id = k.car_id WHERE c.id = %d AND "
                           "c.is_archived AND k.status = 'active'" % car)
            assert n == "0", (rounds, codes)
            rounds += 1
    assert rounds >= 10, rounds
    print("rounds %d, outcomes %s" % (rounds, sorted(seen)))
