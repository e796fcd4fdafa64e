# SPDX-License-Identifier: ISC
"""test_fleet_pgbouncer.py -- a fleet through PgBouncer (issue 14 item 5):
two hosts (tests/e2e/fleet.py: scripts/fleet behind HAProxy), every app
and cron program of both reaching PostgreSQL through the stores' one
pgbouncer in transaction pooling (KEEL_PGBOUNCER=1, so KEEL_DB_PREPARED
is 0), POOL server connections per server.  Under a load through HAProxy
from more workers than the pool has connections -- hosts x apps x
workers -- PostgreSQL's connection count, sampled from a direct
connection throughout, never passes the pool, both hosts serve, and
every request succeeds.
"""

import concurrent.futures
import threading
import time

import pytest
import requests

from accounts import session_for
from fleet import Fleet
from helpers import BaseUrlSession, new_car
from stack import StackError, free_port
from test_pgbouncer import backends, console

POOL = 4                    # server connections per server (and user)
WORKERS = 3                 # per app and host
LOAD_CLIENTS = 16
LOAD_SECONDS = 6.0


@pytest.fixture(scope="module")
def fleet(request):
    f = Fleet(hosts=2, env={"KEEL_PGBOUNCER": "1",
                            "KEEL_PGBOUNCER_PORT": str(free_port()),
                            "KEEL_PGBOUNCER_POOL": str(POOL),
                            "KEEL_WORKERS": str(WORKERS)})
    request.addfinalizer(f.stop)
    try:
        f.start()
    except StackError as e:
        pytest.fail("could not start the fleet with pgbouncer: %s" % e)
    return f


def host_workers(host):
    """The pids of every app worker of host."""
    return [w for name in ("cars", "contracts", "notifications", "testapp")
            for w in host.worker_pids(name)]


def test_every_host_reaches_postgresql_through_the_one_pgbouncer(fleet):
    port = fleet.extra_env["KEEL_PGBOUNCER_PORT"]
    for h in fleet.hosts:
        assert h.env["DATABASE_URL"].endswith(":%s/keel" % port)
        assert h.env["DATABASE_READ_REPLICA_URL"].endswith(
            ":%s/keel_replica" % port)
        assert h.env.get("KEEL_DB_PREPARED") == "0"


def test_postgresql_connections_stay_within_the_pool_across_hosts(fleet):
    with BaseUrlSession(fleet.base_url) as s:
        _, staff = session_for(fleet.stores, s, "staff")
        cust, cust_headers = session_for(fleet.stores, s, "customer")
        s.headers.update(staff)
        cars = [new_car(s, manufacturer="Fleet")["id"]
                for _ in range(LOAD_CLIENTS)]
    stop = threading.Event()
    peak = {"primary": 0, "replica": 0}
    samples = []

    def sample():
        while not stop.is_set():
            for name in peak:
                n = backends(fleet.stores, replica=name == "replica")
                peak[name] = max(peak[name], n)
                samples.append(n)
            stop.wait(0.05)

    def client(i):
        done, bad, day = 0, [], 0
        deadline = time.monotonic() + LOAD_SECONDS
        with BaseUrlSession(fleet.base_url) as c:
            c.headers.update(staff)
            while time.monotonic() < deadline:
                day += 1
                calls = (
                    ("GET", "/_test/db/settings", None, None, 200),
                    ("PATCH", "/api/cars/%d" % cars[i],
                     {"year": 2000 + day % 20}, None, 200),
                    ("GET", "/api/contracts", None, None, 200),
                    ("POST", "/api/contracts", {
                        "carId": cars[i], "customerId": cust["id"],
                        "startDate": "2040-01-%02d" % (day % 27 + 1),
                        "endDate": "2040-01-%02d" % (day % 27 + 2)},
                     None, None),
                    ("GET", "/api/notifications", None, None, 200),
                    ("GET", "/api/contracts", None, cust_headers, 200),
                )
                for method, path, body, h, want in calls:
                    try:
                        r = c.request(method, path, json=body, headers=h,
                                      timeout=30)
                    except requests.RequestException as e:
                        bad.append("%s %s: %r" % (method, path, e))
                        continue
                    # A contract's day may be this client's already.
                    ok = r.status_code == want if want else \
                        r.status_code in (201, 409)
                    if not ok:
                        bad.append("%s %s: %d %s" % (method, path,
                                                     r.status_code,
                                                     r.text[:200]))
                    done += 1
        return done, bad

    served = [h.log("access").count("\n") for h in fleet.hosts]
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(LOAD_CLIENTS) as ex:
            results = list(ex.map(client, range(LOAD_CLIENTS)))
        clients = [r for r in console(fleet.stores, "SHOW CLIENTS")
                   if r[2] == "keel"]
    finally:
        stop.set()
        sampler.join(timeout=30)
    bad = [b for _, bs in results for b in bs]
    assert not bad, bad[:10]
    assert sum(d for d, _ in results) >= LOAD_CLIENTS * 5
    assert len(samples) >= 10
    # Both hosts took their share of the load.
    after = [h.log("access").count("\n") for h in fleet.hosts]
    assert all(a - b > 50 for a, b in zip(after, served)), (served, after)
    # Many more workers, and connections to PgBouncer, than the pool;
    # PostgreSQL saw the pool, not hosts x apps x workers.
    assert sum(len(host_workers(h)) for h in fleet.hosts) >= 4 * POOL
    assert len(clients) > POOL, clients
    assert 1 <= peak["primary"] <= POOL, peak
    assert peak["replica"] <= POOL, peak
