# SPDX-License-Identifier: ISC
"""test_cache.py -- the memcached read-through cache (DESIGN.md "Caching",
issue 4): X-Cache MISS then HIT, invalidation on every write across
workers, hashed keys for client text, an evicted generation that must not
resurrect stale entries, and BYPASS while memcached is down.
"""

import concurrent.futures
import socket
import threading
import time

import pytest
import requests

from helpers import (cache_back, memcached_cmd, new_car, request, spawn_app,
                     stop_app, wait_until)


def fresh_get(http, path):
    """A GET on a new connection, as http's user (lighttpd hands each
    request to whichever worker accepts first)."""
    return request("GET", http.url(path), timeout=30, headers={
        "Authorization": http.headers["Authorization"]})


def test_cache_miss_then_hit(http):
    car = new_car(http)
    path = "/api/cars?manufacturer=" + car["manufacturer"]
    r1 = http.get(path)
    assert r1.status_code == 200
    assert r1.headers["X-Cache"] == "MISS"
    r2 = http.get(path)
    assert r2.status_code == 200
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.json() == r1.json()
    assert r2.headers["Content-Type"] == "application/json; charset=utf-8"
    assert [c["id"] for c in r2.json()["data"]] == [car["id"]]


def test_cache_item_miss_then_hit(http):
    car = new_car(http)
    r1 = http.get("/api/cars/%d" % car["id"])
    assert (r1.status_code, r1.headers["X-Cache"]) == (200, "MISS")
    r2 = http.get("/api/cars/%d" % car["id"])
    assert (r2.status_code, r2.headers["X-Cache"]) == (200, "HIT")
    assert r2.json() == car


def test_cache_dropped_prefetch_never_answers_another_request(http):
    """The router sends a cached GET's lookup before auth; a 401 drops it
    unread, and the next request on that worker reads its own answer."""
    a, b = new_car(http), new_car(http)
    for car in (a, b):
        http.get("/api/cars/%d" % car["id"])          # cached now
    for _ in range(10):
        r = request("GET", http.url("/api/cars/%d" % a["id"]), timeout=30)
        assert r.status_code == 401
        r = request("GET", http.url("/api/cars/%d" % a["id"]), timeout=30,
                    headers={"Authorization": "Bearer " + "x" * 43})
        assert r.status_code == 401
        r = fresh_get(http, "/api/cars/%d" % b["id"])
        assert (r.status_code, r.headers["X-Cache"]) == (200, "HIT")
        assert r.json() == b
        r = fresh_get(http, "/api/cars?manufacturer=" + a["manufacturer"])
        assert r.status_code == 200
        assert [c["id"] for c in r.json()["data"]] == [a["id"]]


def test_cache_not_found_is_not_cached(http):
    for _ in range(2):
        r = http.get("/api/cars/999999999")
        assert r.status_code == 404
        assert r.headers["X-Cache"] == "MISS"


def test_cache_bad_query_never_cached(http):
    for _ in range(2):
        r = http.get("/api/cars?status=flying")
        assert r.status_code == 400


def test_cache_write_then_read_never_stale(stack, http):
    car = new_car(http)
    item = "/api/cars/%d" % car["id"]
    lst = "/api/cars?manufacturer=" + car["manufacturer"]
    # Warm both paths in every worker.
    for _ in range(6):
        assert fresh_get(http, item).status_code == 200
        assert fresh_get(http, lst).status_code == 200
    for i in range(15):
        model = "M%d" % i
        r = http.patch(item, json={"model": model})
        assert r.status_code == 200, r.text
        got = fresh_get(http, item)
        assert got.json()["model"] == model, (i, got.headers.get("X-Cache"))
        got = fresh_get(http, lst)
        assert got.json()["data"][0]["model"] == model
    # Archiving (DELETE) invalidates too: the default list hides it.
    assert http.delete(item).status_code == 200
    assert fresh_get(http, item).json()["isArchived"] is True
    assert fresh_get(http, lst).json()["data"] == []
    # And a create shows up at once in a cached list.
    car2 = new_car(http, manufacturer=car["manufacturer"])
    assert [c["id"] for c in fresh_get(http, lst).json()["data"]] == [car2["id"]]


def test_cache_hostile_filter_text_is_hashed(http):
    # Spaces, control-ish and multi-byte text, longer than a memcached key.
    weird = "a b\u00e9\u4e2d" + "x" * 95
    path = "/api/cars?model=" + requests.utils.quote(weird)
    r1 = http.get(path)
    assert (r1.status_code, r1.headers["X-Cache"]) == (200, "MISS")
    r2 = http.get(path)
    assert (r2.status_code, r2.headers["X-Cache"]) == (200, "HIT")


def test_cache_evicted_generation_does_not_resurrect(stack, http):
    car = new_car(http)
    item = "/api/cars/%d" % car["id"]
    assert http.get(item).headers["X-Cache"] == "MISS"
    assert http.get(item).headers["X-Cache"] == "HIT"
    # The generation counter vanishes (as an eviction would drop it):
    # the entry stored under it must not count any more.
    assert "DELETED" in memcached_cmd(stack, "delete keel:g:cars")
    assert http.get(item).headers["X-Cache"] == "MISS"
    assert http.get(item).headers["X-Cache"] == "HIT"


def test_cache_cold_key_under_concurrency(stack, http):
    car = new_car(http)
    path = "/api/cars?manufacturer=%s&limit=7" % car["manufacturer"]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda _: fresh_get(http, path), range(32)))
    assert all(r.status_code == 200 for r in rs)
    assert len({r.text for r in rs}) == 1
    assert {r.headers["X-Cache"] for r in rs} <= {"HIT", "MISS"}


class Gate:
    """A TCP relay to memcached that can be shut: shut, it drops its
    connections and refuses new ones (memcached itself keeps running and
    keeps its entries, as through a network blip)."""

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.lsock = None
        self.conns = []
        self.port = None
        self.open()

    def open(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port or 0))
        self.port = self.lsock.getsockname()[1]
        self.lsock.listen(16)
        threading.Thread(target=self._accept, args=(self.lsock,),
                         daemon=True).start()

    def _accept(self, lsock):
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            u = socket.create_connection(self.target)
            self.conns += [c, u]
            for x, y in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(x, y),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def shut(self):
        # shutdown() first: close() alone leaves a blocked accept() holding
        # the port, listening.
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.conns = []


def test_cache_a_write_just_after_a_memcached_blip_still_invalidates(
        stack, http):
    """A worker that could not reach memcached skips it for libmemcached's
    retry delay (2 s), while memcached and the other workers carry on.  A
    write that worker serves in the delay must still bump the generation,
    or every reader, the writer too, gets the old entry until its TTL.
    The stack's cars app is replaced by one worker that reaches memcached
    through a Gate."""
    gate = Gate(stack.ports["memcached"])
    stack.stop_component("cars")
    proc = spawn_app(stack, "fcgi-apps/keel-cars",
                     stack.path("run", "cars.sock"),
                     {"KEEL_WORKERS": "1",
                      "MEMCACHED_SERVERS": "127.0.0.1:%d" % gate.port},
                     "cars-blip.log")
    try:
        car = new_car(http)
        item = "/api/cars/%d" % car["id"]
        fresh_get(http, item)
        assert fresh_get(http, item).headers["X-Cache"] == "HIT"
        gate.shut()
        # The first fails on its connection, the next ones to connect:
        # that starts the delay.
        for _ in range(3):
            assert fresh_get(http, item).headers["X-Cache"] == "BYPASS"
        gate.open()
        # In the worker's retry delay: the write's bump is tried anyway.
        r = http.patch(item, json={"model": "After the blip"})
        assert r.status_code == 200, r.text
        # The first answer from the cache once the delay is over.
        r = wait_until(lambda: next((r for r in [fresh_get(http, item)]
                                     if r.headers["X-Cache"] != "BYPASS"),
                                    None), 10, "the worker back on memcached")
        assert r.json()["model"] == "After the blip", r.headers["X-Cache"]
    finally:
        stop_app(proc)
        gate.shut()
        stack.start_component("cars")


def test_cache_memcached_down_bypasses(stack, http):
    car = new_car(http)
    item = "/api/cars/%d" % car["id"]
    http.get(item)
    stack.stop_component("memcached")
    try:
        for i in range(6):
            r = fresh_get(http, item)
            assert r.status_code == 200, r.text
            assert r.headers["X-Cache"] == "BYPASS"
        # Writes still succeed.  Uncached reads follow the database's
        # routing (a replica may lag a moment behind an anonymous write:
        # read-your-writes is per user, auth's business), so poll.
        r = http.patch(item, json={"model": "Down"})
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while fresh_get(http, item).json()["model"] != "Down":
            assert time.monotonic() < deadline, "write never visible"
            time.sleep(0.05)
        assert fresh_get(http, "/api/cars").status_code == 200
    finally:
        stack.start_component("memcached")
    # Back: workers retry the server within a few seconds.
    cache_back(lambda: fresh_get(http, item).headers["X-Cache"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if fresh_get(http, item).headers["X-Cache"] == "HIT":
            break
        time.sleep(0.2)
    else:
        pytest.fail("cache never came back after memcached restarted")
    assert fresh_get(http, item).json()["model"] == "Down"
