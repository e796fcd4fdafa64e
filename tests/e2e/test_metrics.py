# SPDX-License-Identifier: ISC
"""test_metrics.py -- lib/metrics.c and GET /api/metrics (issue 12): the
counters every app keeps in its host's shared memory, summed by a scrape,
exact, monotonic across kill -9 and respawn, one file per app whatever
the restarts, in a text format promtool accepts.
"""

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from accounts import bearer, login, make_user
from helpers import BaseUrlSession, request, wait_until
from stack import alive
from test_serve import fcgi_get, fcgi_request

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')


def scrape(http):
    r = http.get("/api/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith(
        "text/plain; version=0.0.4")
    return parse(r.text)


def parse(text):
    """{(name, labels text): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, "not a sample line: %r" % line
        out[(m.group(1), m.group(3) or "")] = float(m.group(4))
    return out


def value(samples, name, **labels):
    """The sample whose labels include every given one (exactly one)."""
    want = ['%s="%s"' % kv for kv in labels.items()]
    hits = [v for (n, ls), v in samples.items()
            if n == name and all(w in ls.split(",") for w in want)]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else 0.0


def test_a_scrape_counts_requests_exactly_by_route_pattern(http):
    car = http.post("/api/cars", json={
        "licensePlate": "MX" + str(time.time_ns())[-8:],
        "manufacturer": "Metric", "model": "Exact", "category": "compact",
        "year": 2022}).json()["id"]
    before = scrape(http)
    # Under load: eight clients at once, so both workers count together.
    paths = ["/api/cars/%d" % car] * 37 + ["/api/cars/999999999"] * 5
    token = http.headers["Authorization"]

    def get(path):
        with BaseUrlSession(http.url("")) as s:
            s.headers["Authorization"] = token
            return s.get(path).status_code
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(get, paths))
    assert codes == [200] * 37 + [404] * 5
    labels = dict(app="cars", route="/api/cars/{id:int}", method="GET")

    def counted():
        s = scrape(http)
        return s if all(value(s, "keel_http_requests_total", code=code,
                              **labels) - value(before,
                                                "keel_http_requests_total",
                                                code=code, **labels) >= n
                        for code, n in (("200", 37), ("404", 5))) else None
    # A worker counts a request once its reply went out (serve.c), so the
    # last one's count may trail its client's scrape by a moment; then
    # every count must be exact.
    after = wait_until(counted, 5, "all 42 requests counted")
    for code, n in (("200", 37), ("404", 5)):
        assert value(after, "keel_http_requests_total", code=code,
                     **labels) - value(before, "keel_http_requests_total",
                                       code=code, **labels) == n
    assert (value(after, "keel_http_request_duration_seconds_count",
                  **labels) - value(before,
                                    "keel_http_request_duration_seconds_count",
                                    **labels)) == 42
    # Never a raw path: no label carries the car's id.
    assert not any("/%d" % car in ls for (_, ls) in after)


def test_histograms_are_cumulative_and_end_at_count(http):
    http.get("/api/cars")
    s = scrape(http)
    buckets = sorted(((float(re.search(r'le="([^"]+)"', ls).group(1)
                             .replace("+Inf", "inf")), v)
                      for (n, ls), v in s.items()
                      if n == "keel_http_request_duration_seconds_bucket"
                      and 'app="cars"' in ls and 'route="/api/cars"' in ls
                      and 'method="GET"' in ls))
    assert buckets and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == value(s, "keel_http_request_duration_seconds_count",
                               app="cars", route="/api/cars", method="GET")


def test_db_cache_and_limit_series_appear(http):
    http.get("/api/cars")
    http.get("/api/cars")
    s = scrape(http)
    assert value(s, "keel_cache_requests_total", app="cars",
                 namespace="cars", result="hit") >= 1
    assert value(s, "keel_rate_limit_decisions_total", app="cars",
                 limiter="api", decision="allow") >= 1
    assert any(n == "keel_db_query_duration_seconds_count" and
               'app="cars"' in ls and "statement=" in ls
               for (n, ls) in s)
    assert value(s, "keel_up", dependency="postgres") == 1
    assert value(s, "keel_up", dependency="redis") == 1
    assert value(s, "keel_queue_depth", queue="email") >= 0
    assert ("keel_outbox_oldest_age_seconds", "") in s


def test_no_series_dropped_and_the_count_is_shown(http):
    # metrics.c counts the updates of a series that found its slot full;
    # the scrape shows that count for every file, 0 here (a full slot is
    # tests/unit/test_metrics.c's).
    http.get("/api/cars")
    s = scrape(http)
    assert s[("keel_metrics_dropped_total", 'app="cars"')] == 0
    assert all(v == 0 for (n, _), v in s.items()
               if n == "keel_metrics_dropped_total")


def test_no_user_ids_or_emails_in_labels(http, stack, anon):
    u = make_user(stack, "customer")
    h = bearer(login(anon, u["email"]))
    anon.get("/api/users/%d" % u["id"], headers=h)
    text = http.get("/api/metrics").text
    assert u["email"] not in text and "@" not in text
    assert '"/api/users/%d"' % u["id"] not in text


def test_counters_survive_kill_9_of_a_worker(http, stack):
    for _ in range(10):
        http.get("/api/cars")
    before = scrape(http)
    victim = stack.worker_pids("cars")[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in stack.worker_pids("cars") and
               len(stack.worker_pids("cars")) == 2, timeout=10)
    for _ in range(10):
        http.get("/api/cars")
    after = scrape(http)
    for key, v in before.items():
        name = key[0]
        if name.startswith("keel_up") or name in (
                "keel_queue_depth", "keel_queue_active",
                "keel_queue_dead_letters", "keel_outbox_oldest_age_seconds",
                "keel_cache_hit_ratio", "keel_db_replica_lag_seconds") or \
                name.startswith("keel_cron_last"):
            continue                      # gauges may go down
        assert after.get(key, 0) >= v, (key, v, after.get(key))
    assert value(after, "keel_worker_starts_total", app="cars") > \
        value(before, "keel_worker_starts_total", app="cars")


def test_promtool_accepts_a_real_scrape(http):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus) is not installed"
    http.get("/api/cars")
    text = http.get("/api/metrics").text
    p = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_cron_run_is_recorded(stack, http):
    t0 = time.time()
    p = stack.program("keel-outbox-relay")
    assert p.returncode == 0, p.stderr
    s = scrape(http)
    assert value(s, "keel_cron_runs_total", app="keel-outbox-relay",
                 result="completed") >= 1
    assert value(s, "keel_cron_last_start_timestamp_seconds",
                 app="keel-outbox-relay") >= int(t0)
    assert ("keel_cron_items_total",
            'app="keel-outbox-relay",outcome="processed"') in s


# --------------------------------------- a metrics app and a test app of our own

def spawn_app(stack, tmp_path, binary, name, **env):
    sock = str(tmp_path / (name + ".sock"))
    e = dict(os.environ)
    e.update(stack.env)
    e.update({"KEEL_WORKERS": "1", "KEEL_METRICS_DIR": str(tmp_path / "m")})
    e.update(env)
    log = open(tmp_path / (name + ".log"), "w")
    p = subprocess.Popen([os.path.join(stack.build_dir, binary),
                          "--socket", sock], env=e, stdout=log,
                         stderr=subprocess.STDOUT)
    wait_until(lambda: os.path.exists(sock), timeout=10)
    return p, sock


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)


def test_off_host_needs_the_token(stack, tmp_path):
    p, sock = spawn_app(stack, tmp_path, "fcgi-apps/keel-metrics",
                        "metrics", KEEL_METRICS_TOKEN="t" * 40)
    try:
        st, _, _ = fcgi_request(sock, "GET", "/api/metrics",
                                remote_addr="10.1.2.3")
        assert st == 403
        st, _, _ = fcgi_request(sock, "GET", "/api/metrics",
                                remote_addr="10.1.2.3",
                                headers={"Authorization": "Bearer " +
                                         "t" * 39 + "u"})
        assert st == 403
        st, h, body = fcgi_request(sock, "GET", "/api/metrics",
                                   remote_addr="10.1.2.3",
                                   headers={"Authorization": "Bearer " +
                                            "t" * 40})
        assert st == 200 and b"keel_up" in body
        st, _, _ = fcgi_request(sock, "GET", "/api/metrics",
                                remote_addr="127.0.0.1")
        assert st == 200
    finally:
        stop(p)


def test_a_client_a_local_proxy_forwards_needs_the_token(stack, tmp_path):
    """Behind HAProxy on the same host (scripts/fleet) every peer is
    127.0.0.1: the client is who the trusted proxy says, and one
    forwarded by a proxy not trusted is no one we know."""
    tok = "t" * 40
    p, sock = spawn_app(stack, tmp_path, "fcgi-apps/keel-metrics",
                        "metrics", KEEL_METRICS_TOKEN=tok,
                        TRUSTED_PROXIES="127.0.0.1")
    try:
        def get(xff=None, token=None, peer="127.0.0.1"):
            h = {}
            if xff is not None:
                h["X-Forwarded-For"] = xff
            if token is not None:
                h["Authorization"] = "Bearer " + token
            st, _, body = fcgi_request(sock, "GET", "/api/metrics",
                                       headers=h, remote_addr=peer)
            return st, body

        assert get("203.0.113.7")[0] == 403
        assert get("203.0.113.7", "t" * 39 + "u")[0] == 403
        st, body = get("203.0.113.7", tok)
        assert st == 200 and b"keel_up" in body
        # The proxy forwarding a scraper on this host; the scraper
        # asking this host directly.
        assert get("127.0.0.1")[0] == 200
        assert get()[0] == 200
        # A proxy we don't trust (here: any other peer) vouches for no
        # one, and an untrusted local peer forwarding is not local.
        assert get("127.0.0.1", peer="192.0.2.9")[0] == 403
    finally:
        stop(p)
    p, sock = spawn_app(stack, tmp_path, "fcgi-apps/keel-metrics",
                        "metrics", KEEL_METRICS_TOKEN=tok)
    try:
        st, _, _ = fcgi_request(sock, "GET", "/api/metrics",
                                headers={"X-Forwarded-For": "203.0.113.7"},
                                remote_addr="127.0.0.1")
        assert st == 403
    finally:
        stop(p)


RECYCLES = 1000


def test_the_file_count_stays_fixed_over_1000_recycles(stack, tmp_path):
    """Each request recycles the worker (KEEL_MAX_REQUESTS=1): a thousand
    workers count into the same slot of the same file."""
    p, sock = spawn_app(stack, tmp_path, "tests/e2e/keel-testapp", "testapp",
                        KEEL_MAX_REQUESTS="1")
    mdir = tmp_path / "m"
    try:
        for i in range(RECYCLES):
            for attempt in range(50):
                try:
                    st, _, _ = fcgi_get(sock, "/_test/pid")
                    break
                except (ConnectionError, OSError):
                    time.sleep(0.01)    # between a worker and the next
            assert st == 200
        assert sorted(os.listdir(mdir)) == ["testapp.metrics"]
        size = os.path.getsize(mdir / "testapp.metrics")
        assert size < 2 * 1024 * 1024
    finally:
        stop(p)
    m, msock = spawn_app(stack, tmp_path, "fcgi-apps/keel-metrics", "metrics",
                         KEEL_METRICS_DIR=str(mdir))
    try:
        st, _, body = fcgi_get(msock, "/api/metrics")
        s = parse(body.decode())
        assert value(s, "keel_http_requests_total", app="testapp",
                     route="/_test/pid", code="200") == RECYCLES
        assert value(s, "keel_worker_starts_total",
                     app="testapp") >= RECYCLES
        assert sorted(os.listdir(mdir)) == ["metrics.metrics",
                                            "testapp.metrics"]
    finally:
        stop(m)


# ------------------------------- forwarded by other headers than X-Forwarded-For

# lib/addr.c's keel_addr_forward_headers: keel reads the client only from
# X-Forwarded-For, so a request that names its client any other way, or
# says it was forwarded at all, is not "from this host".
OTHER_FORWARDING = {
    "Forwarded": "for=203.0.113.7;proto=https",
    "X-Real-IP": "203.0.113.7",
    "X-Forwarded-Host": "keel.example",
    "X-Forwarded-Proto": "https",
}


def test_any_forwarding_header_from_loopback_needs_the_token(stack, tmp_path):
    """From a loopback peer, each of Forwarded, X-Real-IP,
    X-Forwarded-Host and X-Forwarded-Proto makes the request a forwarded
    one: 403 without the token, trusted proxy or not, and 200 with it;
    the same peer without them is this host (200)."""
    tok = "t" * 40
    for i, trusted in enumerate(("", "127.0.0.1")):
        p, sock = spawn_app(stack, tmp_path, "fcgi-apps/keel-metrics",
                            "metrics-%d" % i, KEEL_METRICS_TOKEN=tok,
                            TRUSTED_PROXIES=trusted)
        try:
            def get(headers):
                return fcgi_request(sock, "GET", "/api/metrics",
                                    headers=headers,
                                    remote_addr="127.0.0.1")[0]

            assert get({}) == 200
            for name, v in OTHER_FORWARDING.items():
                assert get({name: v}) == 403, (trusted, name)
                assert get({name: v, "X-Forwarded-For": "127.0.0.1"}) \
                    == 403, (trusted, name)
                assert get({name: v, "Authorization": "Bearer " + tok}) \
                    == 200, (trusted, name)
                # An empty header names no one, as an empty XFF doesn't.
                assert get({name: ""}) == 200, (trusted, name)
        finally:
            stop(p)


def test_a_forwarded_header_through_lighttpd_needs_the_token(stack):
    """The stack's own /api/metrics, asked from this host through
    lighttpd: plain, 200; claiming to be forwarded, 403."""
    assert request("GET", stack.url("/api/metrics"),
                   timeout=10).status_code == 200
    for name, v in OTHER_FORWARDING.items():
        r = request("GET", stack.url("/api/metrics"), headers={name: v},
                    timeout=10)
        assert r.status_code == 403, (name, r.status_code)
        assert r.json()["error"] == "forbidden"
