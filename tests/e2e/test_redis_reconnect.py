# SPDX-License-Identifier: ISC
"""Redis restarted under running workers (DESIGN.md, "When a dependency
fails"): every worker holds a connection that went stale, and the first
command on it must reconnect and succeed, not cost a request a 503.
"""

from concurrent.futures import ThreadPoolExecutor

from helpers import request


def test_redis_restart_first_request_on_every_worker_succeeds(stack,
                                                             admin_token):
    auth = {"Authorization": "Bearer " + admin_token}
    workers = int(stack.env.get("KEEL_WORKERS", "2"))
    n = 4 * workers

    def get(_):
        return request("GET", stack.url("/api/cars"), headers=auth,
                       timeout=30)

    # Concurrent requests, so that every worker of the app has opened
    # its Redis connection (a session read) before Redis goes away.
    with ThreadPoolExecutor(n) as pool:
        assert all(r.status_code == 200 for r in pool.map(get, range(n)))
    stack.stop_component("redis")
    stack.start_component("redis")
    # One after another: whichever worker takes each, the first command
    # on its stale connection is the one that must succeed.  Sessions
    # survive the restart (AOF), so every answer is a 200; and the
    # limiter's script (which reads the session when limits are on)
    # answered too, rather than failing open: its counts are there.
    rs = [get(i) for i in range(n)]
    assert [r.status_code for r in rs] == [200] * n
    limits = "RateLimit-Policy" in rs[0].headers
    if limits:
        assert all("RateLimit-Remaining" in r.headers for r in rs)
    with ThreadPoolExecutor(n) as pool:
        assert all(r.status_code == 200 for r in pool.map(get, range(n)))
