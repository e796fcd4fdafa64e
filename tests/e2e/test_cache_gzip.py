# SPDX-License-Identifier: ISC
"""test_cache_gzip.py -- cached answers stored with their gzip form
(issue 13, item 2): a client that accepts gzip gets the stored gzip bytes
(Content-Encoding: gzip), every other client the identity bytes, both
with Vary: Accept-Encoding; a write invalidates both forms at once.  keel
codes the answers it doesn't cache as it sends them, HEAD included;
lighttpd passes a coded answer through without coding it again.

Requests go over http.client with exactly the headers given (it adds no
Accept-Encoding and decodes nothing), so a test sees the bytes on the
wire; each is then checked against docs/openapi.yaml decoded.
"""

import gzip
import http.client
import itertools
import json

import pytest
from requests.structures import CaseInsensitiveDict

import apicheck
from helpers import (BaseUrlSession, cache_back, car_body, db_queries,
                     uniq)

CARS = 8        # a list of 8 cars is ~2 KB: over KEEL_GZIP_MIN (1 KB)
GZ = {"Accept-Encoding": "gzip"}


class Raw:
    """A response as it came: status, headers (all lines, and by name),
    body bytes undecoded."""

    def __init__(self, status, lines, body):
        self.status_code = status
        self.lines = lines
        self.headers = CaseInsensitiveDict(lines)
        self.content = body

    def count(self, name):
        return sum(1 for k, _ in self.lines if k.lower() == name.lower())

    def decoded(self):
        """The body with its Content-Encoding undone, once."""
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.content)
        assert "content-encoding" not in self.headers, self.lines
        return self.content


def raw(stack, token, path, headers=None, method="GET"):
    """One request on a connection of its own (any worker may take it),
    with the admin's session and exactly `headers`; its Raw response,
    checked against the contract."""
    c = http.client.HTTPConnection("127.0.0.1", stack.ports["http"],
                                   timeout=30)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        c.putheader("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        got = Raw(r.status, r.getheaders(), r.read())
    finally:
        c.close()
    apicheck.check(method, path, got.status_code, got.headers,
                   b"" if method == "HEAD" else got.decoded())
    return got


@pytest.fixture(scope="module")
def make(stack, admin_token):
    """CARS cars of one new manufacturer; returns it."""
    make = uniq("Gz")
    with BaseUrlSession(stack.base_url) as s:
        s.headers["Authorization"] = "Bearer " + admin_token
        for i in range(CARS):
            r = s.post("/api/cars", json=car_body(manufacturer=make,
                                                  model="Gz %d" % i))
            assert r.status_code == 201, r.text
    return make


LIMITS = itertools.count(CARS + 1)


@pytest.fixture
def path(make):
    """A list path of those cars no other test caches (its own key)."""
    return "/api/cars?manufacturer=%s&limit=%d" % (make, next(LIMITS))


def warm(stack, token, path):
    """The identity body of path, cached (a miss, then a hit)."""
    first = raw(stack, token, path)
    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    hit = raw(stack, token, path)
    assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
    assert hit.content == first.content
    return hit.content


def test_hit_gzip_gunzips_to_identity(stack, admin_token, path):
    identity = warm(stack, admin_token, path)
    assert len(identity) > 1024
    r = raw(stack, admin_token, path, GZ)
    assert r.status_code == 200
    assert r.headers["x-cache"] == "HIT"
    # From the cache: no statement ran.
    assert db_queries(r) == 0
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.count("Vary") == 1
    assert int(r.headers["content-length"]) == len(r.content)
    assert len(r.content) < len(identity)
    # Coded once: one gunzip gives the identity bytes exactly.
    assert gzip.decompress(r.content) == identity
    assert r.headers["content-type"] == "application/json; charset=utf-8"


def test_hit_bytes_are_the_stored_ones(stack, admin_token, path):
    """Every hit sends the bytes keel stored, coded once: the same bytes
    each time, and one gunzip gives the identity body back."""
    identity = warm(stack, admin_token, path)
    bodies = {raw(stack, admin_token, path, GZ).content for _ in range(6)}
    assert len(bodies) == 1
    body = bodies.pop()
    assert body[:3] == b"\x1f\x8b\x08"
    assert gzip.decompress(body) == identity


@pytest.mark.parametrize("headers", [
    {},
    {"Accept-Encoding": "identity"},
    {"Accept-Encoding": "gzip;q=0"},
    {"Accept-Encoding": "gzip;q=0, *"},
    {"Accept-Encoding": "deflate, br"},
    {"Accept-Encoding": "gzip", "x-no-compression": "1"},
], ids=["none", "identity", "gzip-q0", "gzip-q0-star", "deflate-br",
        "x-no-compression"])
def test_hit_identity_for_others(stack, admin_token, path, headers):
    identity = warm(stack, admin_token, path)
    r = raw(stack, admin_token, path, headers)
    assert (r.status_code, r.headers["x-cache"]) == (200, "HIT")
    assert "content-encoding" not in r.headers, r.lines
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.content == identity
    assert int(r.headers["content-length"]) == len(identity)


@pytest.mark.parametrize("accept", [
    "GZIP", "x-gzip", "*", "br;q=1, gzip;q=0.5", "gzip;q=0.5, identity"])
def test_hit_gzip_for_other_spellings(stack, admin_token, path, accept):
    identity = warm(stack, admin_token, path)
    r = raw(stack, admin_token, path, {"Accept-Encoding": accept})
    assert r.headers["x-cache"] == "HIT"
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.content) == identity


def test_miss_answers_what_hits_will(stack, admin_token, path):
    """The filler codes the body when it stores it, and its own client
    gets the form a hit would give it."""
    r1 = raw(stack, admin_token, path, GZ)
    assert (r1.status_code, r1.headers["x-cache"]) == (200, "MISS")
    assert r1.headers["content-encoding"] == "gzip"
    assert r1.headers["vary"] == "Accept-Encoding"
    assert r1.count("Content-Encoding") == 1
    r2 = raw(stack, admin_token, path, GZ)
    assert r2.headers["x-cache"] == "HIT"
    assert r2.content == r1.content
    identity = raw(stack, admin_token, path)
    assert identity.headers["x-cache"] == "HIT"
    assert gzip.decompress(r1.content) == identity.content


def test_head_matches_get(stack, admin_token, path):
    identity = warm(stack, admin_token, path)
    coded = raw(stack, admin_token, path, GZ)
    h = raw(stack, admin_token, path, GZ, "HEAD")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["content-encoding"] == "gzip"
    assert h.headers["vary"] == "Accept-Encoding"
    assert int(h.headers["content-length"]) == len(coded.content)
    h = raw(stack, admin_token, path, method="HEAD")
    assert "content-encoding" not in h.headers
    assert int(h.headers["content-length"]) == len(identity)


def models(r):
    return sorted(c["model"] for c in json.loads(r.decoded())["data"])


def test_write_invalidates_both_forms(stack, admin_token, make):
    path = "/api/cars?manufacturer=%s" % make
    s = BaseUrlSession(stack.base_url)
    s.headers["Authorization"] = "Bearer " + admin_token
    car = s.get(path).json()["data"][0]
    for i, first in enumerate(("gzip", None, "gzip", None)):
        # Both forms cached, on whichever workers answer.
        for _ in range(3):
            raw(stack, admin_token, path, GZ)
            raw(stack, admin_token, path)
        g = raw(stack, admin_token, path, GZ)
        assert (g.headers["x-cache"], g.headers["content-encoding"]) == (
            "HIT", "gzip")
        model = "Rewritten %d" % i
        r = s.patch("/api/cars/%d" % car["id"], json={"model": model})
        assert r.status_code == 200, r.text
        # Whichever form is asked first, both show the write at once.
        order = ("gzip", None) if first else (None, "gzip")
        for enc in order:
            got = raw(stack, admin_token, path,
                      {"Accept-Encoding": enc} if enc else None)
            assert got.status_code == 200
            assert model in models(got), (enc, got.headers["x-cache"])
            assert ("content-encoding" in got.headers) == bool(enc)
    s.close()


def test_small_answer_stays_identity(stack, admin_token, make):
    """Under 1 KB nothing is coded, by keel or by lighttpd."""
    s = BaseUrlSession(stack.base_url)
    s.headers["Authorization"] = "Bearer " + admin_token
    car = s.get("/api/cars?manufacturer=" + make).json()["data"][0]
    s.close()
    item = "/api/cars/%d" % car["id"]
    raw(stack, admin_token, item)
    r = raw(stack, admin_token, item, GZ)
    assert (r.status_code, r.headers["x-cache"]) == (200, "HIT")
    assert len(r.content) < 1024
    assert "content-encoding" not in r.headers
    assert r.headers["vary"] == "Accept-Encoding"


def test_uncached_answers_are_coded_by_keel(stack, admin_token):
    """/routes is not cached: keel codes it as it sends it, by the same
    reading of Accept-Encoding as a cached answer (lighttpd 1.4.69 reads
    no q-values: it would code for gzip;q=0), and says Vary either way
    (lighttpd would say it only when it coded)."""
    plain = raw(stack, admin_token, "/routes")
    assert len(plain.content) > 1024 and "x-cache" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    r = raw(stack, admin_token, "/routes", GZ)
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.count("Content-Encoding") == 1 and r.count("Vary") == 1
    assert gzip.decompress(r.content) == plain.content
    for refused in ({"Accept-Encoding": "gzip;q=0"},
                    {"Accept-Encoding": "gzip;q=0, *"},
                    {"Accept-Encoding": "gzip", "x-no-compression": "1"}):
        r = raw(stack, admin_token, "/routes", refused)
        assert "content-encoding" not in r.headers, refused
        assert r.content == plain.content


def test_uncached_head_has_the_headers_of_get(stack, admin_token):
    """RFC 9110 §9.3.2.  lighttpd codes no HEAD (there is no body to
    code), so when it coded the GET, a HEAD said the identity length."""
    for headers in (GZ, None):
        get = raw(stack, admin_token, "/routes", headers)
        h = raw(stack, admin_token, "/routes", headers, "HEAD")
        assert h.status_code == get.status_code == 200 and h.content == b""
        assert int(h.headers["content-length"]) == len(get.content)
        for name in ("content-type", "content-encoding", "vary"):
            assert h.headers.get(name) == get.headers.get(name), name


def test_bypass_head_has_the_headers_of_get(stack, admin_token, path):
    """With memcached down the list is answered uncached (BYPASS): its GET
    and HEAD are coded alike, as an uncached route's are."""
    stack.stop_component("memcached")
    try:
        get = raw(stack, admin_token, path, GZ)
        h = raw(stack, admin_token, path, GZ, "HEAD")
        assert get.headers["x-cache"] == h.headers["x-cache"] == "BYPASS"
        assert get.headers["content-encoding"] == "gzip"
        assert int(h.headers["content-length"]) == len(get.content)
        for name in ("content-encoding", "vary"):
            assert h.headers.get(name) == get.headers.get(name), name
    finally:
        stack.start_component("memcached")
        cache_back(lambda: raw(stack, admin_token, path).headers["x-cache"])
