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

import pytest

from accounts import session_for
from fleet import Fleet
from helpers import BaseUrlSession
from stack import StackError, free_port
from test_pgbouncer import POOL, WORKERS, PooledLoad


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
        staff = session_for(fleet.stores, s, "staff")[1]
        customer = session_for(fleet.stores, s, "customer")
    served = [h.log("access").count("\n") for h in fleet.hosts]
    load = PooledLoad(fleet.stores, fleet.base_url, staff, customer).run()
    load.assert_within_the_pool()
    # Both hosts took their share, and they run many more workers (each
    # with its connection to PgBouncer) than the pool.
    after = [h.log("access").count("\n") for h in fleet.hosts]
    assert all(a - b > 50 for a, b in zip(after, served)), (served, after)
    assert sum(len(host_workers(h)) for h in fleet.hosts) >= 4 * POOL
