# SPDX-License-Identifier: ISC
"""test_time_zone.py -- the API's day is UTC's, whatever PostgreSQL's
TimeZone setting says (lib/db.c sets TimeZone UTC on every session): a
booked car or customer stays booked through its contract's last UTC
day, a contract that ended yesterday (UTC) books nothing, and a
flashcard's next review is a whole number of days later across a
change of the zone's offset.  Each test moves the server's zone on the
primary and the replica (ALTER SYSTEM, reload: sessions without their
own TimeZone follow at once) and puts it back.
"""

import datetime

import pytest

from accounts import make_user, session_for
from helpers import assert_error, new_car, uniq
from test_plans import superuser_sql


def utc_day(shift=0):
    return (datetime.datetime.now(datetime.timezone.utc).date()
            + datetime.timedelta(days=shift)).isoformat()


def zone_off_by_a_day():
    """A zone whose date is not UTC's now, and its date less UTC's: UTC+14
    is a day ahead from 10:00 UTC, UTC-12 a day behind until 12:00."""
    hour = datetime.datetime.now(datetime.timezone.utc).hour
    return ("Etc/GMT-14", 1) if hour >= 10 else ("Etc/GMT+12", -1)


@pytest.fixture
def server_zone(stack):
    """server_zone(name) sets PostgreSQL's TimeZone on both servers."""
    def set_zone(name):
        for replica in (False, True):
            superuser_sql(stack, ["ALTER SYSTEM SET timezone = '%s'" % name,
                                  "SELECT pg_reload_conf()"],
                          replica=replica)
    yield set_zone
    for replica in (False, True):
        superuser_sql(stack, ["ALTER SYSTEM RESET timezone",
                              "SELECT pg_reload_conf()"], replica=replica)


def contract(http, car, customer, start, end):
    r = http.post("/api/contracts", json={
        "carId": car, "customerId": customer, "startDate": start,
        "endDate": end})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_contracts_last_day_is_utcs(stack, http, server_zone):
    """In a zone a day ahead, a contract ending today (UTC) still books
    its car and customer (409 on archiving, deactivating, re-roling);
    in one a day behind, one that ended yesterday (UTC) books nothing."""
    zone, ahead = zone_off_by_a_day()
    server_zone(zone)
    car = new_car(http, manufacturer=uniq("Zone"))["id"]
    cust = make_user(stack, "customer")["id"]
    if ahead > 0:
        contract(http, car, cust, utc_day(-3), utc_day(0))
        assert_error(http.delete("/api/cars/%d" % car), 409, "conflict")
        assert_error(http.patch("/api/users/%d" % cust,
                                json={"role": "student"}), 409, "conflict")
        assert_error(http.delete("/api/users/%d" % cust), 409, "conflict")
    else:
        contract(http, car, cust, utc_day(-3), utc_day(-1))
        assert http.delete("/api/cars/%d" % car).status_code == 200
        assert http.delete("/api/users/%d" % cust).status_code == 200


def zone_springing_forward_tonight():
    """A POSIX zone at UTC's offset that moves its clocks an hour forward
    at 00:00 tomorrow (UTC) and back 100 days later: a day from now is
    23 hours of its wall clock."""
    tomorrow = (datetime.datetime.now(datetime.timezone.utc).date()
                + datetime.timedelta(days=1))
    start = tomorrow.timetuple().tm_yday - 1     # 0-based, leap days too
    return "KST0KDT,%d/0,%d/0" % (start, (start + 100) % 365)


def test_a_review_interval_is_whole_days_across_dst(stack, http,
                                                    server_zone):
    """A card reviewed today is due exactly intervalDays later, though
    the server's zone changes its offset before then."""
    server_zone(zone_springing_forward_tonight())
    _, me = session_for(stack, http, "student")
    r = http.post("/api/flashcards", json={"front": uniq("Q "),
                                           "back": "A"}, headers=me)
    assert r.status_code == 201, r.text
    r = http.post("/api/flashcards/%d/review" % r.json()["id"],
                  json={"grade": 5}, headers=me)
    assert r.status_code == 200, r.text
    got = r.json()

    def at(s):
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    due, reviewed = at(got["dueAt"]), at(got["updatedAt"])
    assert abs((due - reviewed) - datetime.timedelta(
        days=got["intervalDays"])) < datetime.timedelta(seconds=1), got
