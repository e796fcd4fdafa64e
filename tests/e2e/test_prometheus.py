# SPDX-License-Identifier: ISC
"""test_prometheus.py -- the shipped operations files against a real
stack (issue 12 item 5): scripts/stack runs Debian's prometheus
(KEEL_PROMETHEUS=1) with ops/prometheus's scrape config and alert rules,
and its HTTP API says that every keel target is up, that the requests
this test sends are counted, that the rule group is loaded and
evaluated, and that an alert goes pending when a dependency goes down.
"""

import json
import os
import re
import subprocess

import pytest
import requests
import yaml

from helpers import BaseUrlSession, own_stack, wait_until
from stack import ROOT, STACK_SCRIPT, free_port

INTERVAL = 2        # seconds between scrapes and between rule evaluations
WAIT = 30           # seconds: several scrapes on a loaded 2-core machine


@pytest.fixture(scope="module")
def stack(request):
    """This module's own stack, with prometheus (no test-only apps)."""
    return own_stack(request, "the stack with prometheus", extra_apps=None,
                     env={"KEEL_PROMETHEUS": "1",
                          "KEEL_PROMETHEUS_PORT": str(free_port()),
                          "KEEL_PROMETHEUS_INTERVAL": "%ds" % INTERVAL})


def api(stack, path, **params):
    """GET Prometheus's /api/v1/<path>; its "data" (status success)."""
    port = stack.extra_env["KEEL_PROMETHEUS_PORT"]
    r = requests.get("http://127.0.0.1:%s/api/v1/%s" % (port, path),
                     params=params, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def query(stack, expr):
    """{labels as a sorted tuple: value} of an instant query."""
    data = api(stack, "query", query=expr)
    assert data["resultType"] == "vector", data
    return {tuple(sorted(s["metric"].items())): float(s["value"][1])
            for s in data["result"]}


def shipped_rules():
    path = os.path.join(ROOT, "ops", "prometheus", "rules", "keel.yml")
    with open(path, encoding="utf-8") as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def test_the_stack_status_shows_prometheus(stack):
    status = stack.status()
    assert "prometheus" in status and "running" in status.split(
        "prometheus", 1)[1].splitlines()[0], status


def test_every_keel_target_is_up(stack):
    instance = "127.0.0.1:%d" % stack.ports["http"]

    def targets_up():
        active = api(stack, "targets", state="active")["activeTargets"]
        keel = [t for t in active if t["labels"]["job"].startswith("keel")]
        return keel if keel and all(t["health"] == "up"
                                    for t in keel) else None

    keel = wait_until(targets_up, WAIT, "every keel target to be up")
    assert [t["labels"]["instance"] for t in keel] == [instance]
    assert keel[0]["scrapeUrl"] == "http://%s/api/metrics" % instance
    assert keel[0]["lastError"] == ""
    assert query(stack, 'up{job="keel"}') == {
        (("__name__", "up"), ("instance", instance), ("job", "keel")): 1.0}


def test_a_query_counts_the_requests_sent(stack):
    expr = ('sum(keel_http_requests_total{job="keel", app="cars", '
            'route="/api/cars", method="GET", code="401"})')
    sent = 17
    with BaseUrlSession(stack.base_url) as anon:
        for _ in range(sent):
            assert anon.get("/api/cars").status_code == 401
    # This module's stack is its own: nothing else asked for /api/cars.
    got = wait_until(lambda: query(stack, expr).get(()) == sent, WAIT)
    assert got, "Prometheus counts %r of the %d requests sent" % (
        query(stack, expr), sent)


def dashboard_exprs():
    """[(panel title, expr)] of ops/grafana/keel.json, with Grafana's
    variables as it would fill them for this stack: every host of job
    keel, a rate window of a few scrapes."""
    path = os.path.join(ROOT, "ops", "grafana", "keel.json")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    out = []
    for p in d["panels"]:
        for t in p.get("targets") or []:
            e = t["expr"].replace("$__rate_interval", "%ds" % (4 * INTERVAL))
            e = re.sub(r"\$job\b", "keel", e)
            e = re.sub(r"\$instance\b", ".+", e)
            assert "$" not in e, e
            out.append((p["title"], e))
    return out


def test_every_dashboard_query_runs_and_requests_show(stack):
    """Each panel's query evaluates on real scrapes (promtool only parses:
    a vector-matching error shows at run time), and the request panels
    show the requests sent."""
    with BaseUrlSession(stack.base_url) as anon:
        for _ in range(5):
            assert anon.get("/api/cars").status_code == 401

    def request_rate():
        for title, e in dashboard_exprs():
            if title == "Request rate by app and route":
                return [v for labels, v in query(stack, e).items()
                        if ("route", "/api/cars") in labels and v > 0]
        pytest.fail("the dashboard has no request rate panel")

    wait_until(request_rate, WAIT, "the dashboard's request rate to "
               "show /api/cars")
    for title, e in dashboard_exprs():
        port = stack.extra_env["KEEL_PROMETHEUS_PORT"]
        r = requests.get("http://127.0.0.1:%s/api/v1/query" % port,
                         params={"query": e}, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "success", (
            title, e, r.text)


def test_the_rule_group_is_loaded_and_evaluated(stack):
    want = {r["alert"] for r in shipped_rules() if "alert" in r}

    def evaluated():
        groups = [g for g in api(stack, "rules")["groups"]
                  if g["name"] == "keel"]
        if len(groups) != 1:
            return None
        rules = groups[0]["rules"]
        done = [r for r in rules if r["health"] == "ok" and
                not r["lastEvaluation"].startswith("0001-")]
        return rules if len(done) == len(rules) else None

    rules = wait_until(evaluated, WAIT, "every rule of group keel to be "
                       "evaluated with health ok")
    assert {r["name"] for r in rules} == want
    assert all(r["type"] == "alerting" and r["lastError"] == ""
               for r in rules if "lastError" in r), rules


def test_a_dependency_down_makes_its_alert_pending(stack):
    instance = "127.0.0.1:%d" % stack.ports["http"]

    def alert():
        for a in api(stack, "alerts")["alerts"]:
            lab = a["labels"]
            if (lab["alertname"] == "KeelDependencyDown" and
                    lab.get("dependency") == "memcached"):
                return a
        return None

    assert alert() is None
    stack.stop_component("memcached")
    try:
        a = wait_until(alert, WAIT, "KeelDependencyDown for memcached")
        assert a["state"] in ("pending", "firing")
        assert a["labels"]["instance"] == instance
        assert a["labels"]["severity"] == "critical"
        assert a["annotations"]["summary"] == (
            "%s cannot reach memcached" % instance)
    finally:
        stack.start_component("memcached")
    wait_until(lambda: alert() is None, WAIT,
               "KeelDependencyDown to clear once memcached is back")


def test_prometheus_comes_back_on_its_own_port(stack):
    """The stack remembers its prometheus settings with its ports: an
    operator's `scripts/stack start prometheus` with only KEEL_STACK_DIR
    set brings it back on the port it was started with (it used to come
    back on 19090)."""
    port = stack.extra_env["KEEL_PROMETHEUS_PORT"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_STACK_DIR"] = stack.dir
    stack.stop_component("prometheus")
    p = subprocess.run(stack.wrapper + [STACK_SCRIPT, "start", "prometheus"],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    assert "prometheus on http://127.0.0.1:%s/" % port in p.stdout, p.stdout
    r = requests.get("http://127.0.0.1:%s/-/ready" % port, timeout=10)
    assert r.status_code == 200
    # And it scrapes this stack again (a new process: a target's health
    # is "unknown" until its first scrape).
    def scraped():
        active = api(stack, "targets", state="active")["activeTargets"]
        return [t for t in active if t["labels"]["job"] == "keel" and
                t["labels"]["instance"] == "127.0.0.1:%d" %
                stack.ports["http"] and t["health"] == "up"]
    wait_until(scraped, WAIT, "this stack scraped after the restart")
