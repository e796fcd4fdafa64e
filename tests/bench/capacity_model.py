#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""capacity_model.py -- docs/capacity.md's arithmetic, from the figures
tests/bench/capacity.py measured (its --json files), so that the
document's numbers can be re-derived after any re-run:

    /usr/bin/python3 tests/bench/capacity_model.py \\
        --host tests/bench/capacity-1host.json \\
        [--fleet tests/bench/capacity-fleet.json] [--users 100000] \\
        [--before OLD.json ...]

Prints Markdown: the cost table, the seeds' mix, the cores and memory
for USERS concurrent users, each shared store's ceiling, and (with
--fleet) the prediction for the 1-, 2- and 3-host fleets on this machine
beside what they measured.  With --before (capacity.py's --json of
another build, run beside --host's in the same session; several runs of
each are given as --host A --before B --before C, medians taken per
figure), a table of what each path cost then and now, per component.
"""

import argparse
import json
import statistics

# The seeds' traffic shape (docs/capacity.md, "A concurrent user"): per
# concurrent user per 15 minutes, at the seeds' global limit of 100.
MIX = [
    # (path measured, requests per user per 15 min, what)
    ("list", 45.5, "list page, cache hit (65 lists x 70%)"),
    ("uncached", 19.5, "list page, cache miss (65 x 30%)"),
    ("board", 6.5, "leaderboard top, hit (10 x 65%)"),
    ("uncached", 3.5, "leaderboard miss, costed as a list miss (10 x 35%)"),
    ("submit", 20.0, "write, costed as a submit (the heaviest)"),
    ("drain", 20.0, "its 3 jobs drained by cron (per write)"),
    ("ticket", 5.0, "stream ticket"),
    ("open", 5.0, "stream (re)opened"),
    ("login", 0.25, "login (one per 60-minute visit)"),
]
WINDOW = 900.0

GROUPS = ("host", "redis", "pg-primary", "pg-replica", "memcached",
          "haproxy")


def groups(p):
    """A path's CPU us per request by group: host = the apps, the stream
    process, the drainers and lighttpd (what a web host runs)."""
    c = p["cpu_us"]
    g = {k: 0.0 for k in GROUPS}
    for k, v in c.items():
        if k.startswith("app:") or k in ("stream", "drainers", "lighttpd"):
            g["host"] += v
        elif k in g:
            g[k] += v
    return g


def load(path):
    with open(path) as f:
        return json.load(f)


def costs(host):
    out = {name: groups(p) for name, p in host["paths"].items()}
    s = host["streams"]
    out["open"] = {k: 0.0 for k in GROUPS}
    for k, v in s["open"]["cpu_us"].items():
        if k in ("stream", "lighttpd"):
            out["open"]["host"] += v
        elif k in out["open"]:
            out["open"][k] += v
    return out


def fmt(x, d=0):
    if x == float("inf"):
        return "-"
    return ("{:,.%df}" % d).format(x)


def model(host, users, out):
    c = costs(host)
    s = host["streams"]
    idle = s["idle_us_per_stream_s"]
    w = out.append
    w("### Cost per request, CPU us by component (measured)\n")
    w("| path | host (apps + lighttpd) | Redis | PG primary | PG replica "
      "| memcached | total | req/s per core: all / host's part |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("list", "uncached", "board", "submit", "drain", "ticket",
                 "open", "login"):
        g = c[name]
        w("| %s | %s | %s | %s | %s | %s | **%s** | %s / %s |" % (
            name, fmt(g["host"]), fmt(g["redis"]), fmt(g["pg-primary"]),
            fmt(g["pg-replica"]), fmt(g["memcached"]),
            fmt(sum(g.values())), fmt(1e6 / sum(g.values()), 1 if
                                      sum(g.values()) > 1e5 else 0),
            fmt(1e6 / g["host"], 1 if g["host"] > 1e5 else 0)))
    w("")
    rate = users / WINDOW
    tot = {k: 0.0 for k in GROUPS}
    w("### %s concurrent users: requests and cores\n" % fmt(users))
    w("| what | per user per 15 min | per second | host cores | Redis "
      "cores | PG primary cores | PG replica cores | memcached cores |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    http = 0.0
    for name, per, what in MIX:
        r = per * rate
        if name not in ("drain", "open"):
            http += r
        g = c[name]
        for k in GROUPS:
            tot[k] += r * g[k] / 1e6
        w("| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            what, fmt(per, 2), fmt(r), r * g["host"] / 1e6,
            r * g["redis"] / 1e6, r * g["pg-primary"] / 1e6,
            r * g["pg-replica"] / 1e6, r * g["memcached"] / 1e6))
    held = {"host": idle.get("stream", 0) + idle.get("lighttpd", 0),
            "redis": idle.get("redis", 0)}
    w("| streams held (1 per user; idle CPU per stream per second) | - | "
      "%s open | %.2f | %.2f | - | - | - |" % (
          fmt(users), users * held["host"] / 1e6,
          users * held["redis"] / 1e6))
    tot["host"] += users * held["host"] / 1e6
    tot["redis"] += users * held["redis"] / 1e6
    w("| **total** | 100.25 | **%s req/s** | **%.1f** | **%.1f** | **%.1f**"
      " | **%.1f** | **%.1f** |" % (fmt(http), tot["host"], tot["redis"],
                                     tot["pg-primary"], tot["pg-replica"],
                                     tot["memcached"]))
    w("")
    return c, tot, http


def before_after(befores, host, out):
    """Each path's CPU per request by group on the builds of befores (a
    list of capacity.py JSON, medians over them) and of host."""
    old = [costs(b) for b in befores]
    new = costs(host)
    w = out.append
    w("### Then and now: CPU us per request, the earlier build -> this "
      "one\n")
    w("| path | host | Redis | PG primary | PG replica | memcached | "
      "total | now / then |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("list", "uncached", "board", "submit", "drain", "ticket",
                 "open", "login"):
        if name not in new or any(name not in o for o in old):
            continue
        cells = []
        for k in ("host", "redis", "pg-primary", "pg-replica",
                  "memcached"):
            a = statistics.median(o[name][k] for o in old)
            cells.append("%s -> %s" % (fmt(a), fmt(new[name][k])))
        a = statistics.median(sum(o[name].values()) for o in old)
        b = sum(new[name].values())
        w("| %s | %s | %s -> **%s** | %.2f |" % (
            name, " | ".join(cells), fmt(a), fmt(b), b / a))
    w("")


def med_cost(res, name, part):
    """Median over runs of a path's CPU us per request: part "all" (every
    process, wrk included), "host" (apps + lighttpd), or "rest" (all
    but the hosts')."""
    vals = []
    for r in res["raw"][name]:
        g = groups(r)
        total = r["server_us"] + r["cpu_us"].get("wrk", 0)
        vals.append({"all": total, "host": g["host"],
                     "rest": total - g["host"]}[part])
    return statistics.median(vals)


def norm(fleet):
    """{(hosts, connections): result}; old files keyed by host count."""
    out = {}
    for k, v in fleet.items():
        n, _, c = k.partition("@")
        out[(int(n), int(c) if c else 16)] = v
    return out


def fleet_check(fleet, out):
    """Prediction for N hosts on THIS machine, from the 1-host fleet
    alone: throughput = (2 cores - what the rest of the box took during
    the run) / CPU per request, where CPU per request = the hosts' part
    as the 1-host fleet spends it when loaded as each of N hosts is (wrk
    with C/N connections: 1@8 for 2 hosts, 1@5 for 3) + everything else
    (HAProxy, the stores, wrk) as the 1-host fleet spends it at C."""
    w = out.append
    f = norm(fleet)
    c0 = 16
    w("| path | hosts | predicted CPU us/req (hosts' part from) | others' "
      "cores | predicted req/s | measured req/s | **measured / predicted**"
      " | the same, hosts' part at 16 too | measured CPU us/req | hosts / "
      "HAProxy / Redis / PG primary us/req |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ratios = {}
    base = f[(1, c0)]
    for name in base["paths"]:
        for n in sorted({k[0] for k in f if k[1] == c0}):
            cal = (1, round(c0 / n))
            src = cal if cal in f and name in f[cal]["raw"] else (1, c0)
            pred_us = med_cost(base, name, "rest") + \
                med_cost(f[src], name, "host")
            res = f[(n, c0)]
            runs = res["raw"][name]
            preds = [(2.0 - r["cores_others"]) / pred_us * 1e6 for r in runs]
            meas = [r["rps"] for r in runs]
            ratio = statistics.median(m / p for m, p in zip(meas, preds))
            flat = med_cost(base, name, "all")
            ratio_flat = statistics.median(
                m / ((2.0 - r["cores_others"]) / flat * 1e6)
                for m, r in zip(meas, runs))
            g = groups(res["paths"][name])
            ratios[(name, n)] = ratio
            w("| %s | %d | %s (1@%d) | %.2f | %s | %s | **%.2f** | %.2f | %s "
              "| %s |"
              % (name, n, fmt(pred_us), src[1],
                 statistics.median(r["cores_others"] for r in runs),
                 fmt(statistics.median(preds)), fmt(statistics.median(meas)),
                 ratio, ratio_flat, fmt(med_cost(res, name, "all")),
                 " / ".join(fmt(g[k]) for k in ("host", "haproxy", "redis",
                                                "pg-primary"))))
    w("")
    return ratios


def scale_out(fleet, out, host_cores=2, pg_cores=8, name="mix"):
    """Separate machines: N web hosts of host_cores each, Redis on its
    own (one core: one thread), the PG primary on pg_cores: the mix's
    throughput is the least of N x a host's and each store's ceiling."""
    w = out.append
    p = norm(fleet)[(1, 16)]["paths"][name]
    g = groups(p)
    host_us = g["host"] + g["haproxy"]
    lim = {"web hosts (N x %d cores)" % host_cores: 1e6 * host_cores /
           host_us if host_us else float("inf"),
           "Redis (1 core)": 1e6 / g["redis"],
           "PG primary (%d cores)" % pg_cores: 1e6 * pg_cores /
           g["pg-primary"] if g["pg-primary"] >= 1 else float("inf")}
    if g["pg-replica"] >= 1:
        lim["PG replica (%d cores)" % pg_cores] = 1e6 * pg_cores / \
            g["pg-replica"]
    if g["memcached"] >= 1:
        lim["memcached (1 core)"] = 1e6 / g["memcached"]
    w("**%s** -- per-request CPU through the 1-host fleet: host "
      "%s us (apps + lighttpd) + HAProxy %s, Redis %s, PG primary %s, PG "
      "replica %s, memcached %s.\n" % (
          name, fmt(g["host"]), fmt(g["haproxy"]), fmt(g["redis"]),
          fmt(g["pg-primary"]), fmt(g["pg-replica"]), fmt(g["memcached"])))
    w("| web hosts | hosts' ceiling req/s | " +
      " | ".join(k for k in lim if not k.startswith("web")) +
      " | throughput req/s | bound by |")
    w("|---:|---:|" + "---:|" * (len(lim) - 1) + "---:|---|")
    hosts1 = list(lim.values())[0]
    for n in range(1, 5):
        vals = dict(lim)
        k0 = list(lim)[0]
        vals[k0] = n * hosts1
        m = min(vals, key=vals.get)
        w("| %d | %s | %s | %s | %s |" % (
            n, fmt(vals[k0]), " | ".join(fmt(vals[k]) for k in lim
                                         if k != k0), fmt(vals[m]),
            m.split(" (")[0]))
    w("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--fleet")
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--before", action="append", default=[])
    args = ap.parse_args()
    out = []
    model(load(args.host), args.users, out)
    if args.before:
        before_after([load(b) for b in args.before], load(args.host), out)
    if args.fleet:
        f = load(args.fleet)["fleet"]
        out.append("### The fleets on this machine: prediction and "
                   "measurement\n")
        fleet_check(f, out)
        out.append("### Separate machines: where the shared stores "
                   "saturate\n")
        scale_out(f, out, name="list")
        scale_out(f, out, name="mix")
    print("\n".join(out))


if __name__ == "__main__":
    main()
