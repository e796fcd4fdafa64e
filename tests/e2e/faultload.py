# SPDX-License-Identifier: ISC
"""faultload.py -- the steady, bounded load of the fault suite
(test_faults.py) and the table it reports.

Load runs one thread per actor (a user of the stack: staff writing cars
and contracts, customers reading, a mailer asking for resets and
invitations), each sending one request at a time on a new connection
(helpers.request: every answer checked against docs/openapi.yaml) with a
client timeout, a short pause between requests, until told to stop and
never more than MAX_REQUESTS each.  Every request becomes a Record: what
was asked, when, how long it took, what came back.  An actor is a
generator: it yields an Op and is sent the Record of its answer (so a
writer knows the id of the car it made).  The test judges the records
against DESIGN.md's failure table; render() turns its rows into the
markdown table README's "What survives what" shows.
"""

import collections
import datetime
import itertools
import threading
import time

import pytest
import requests

import apicheck
from helpers import car_body, request, uniq

READ, WRITE, RESET = "read", "write", "reset"
MAX_REQUESTS = 3000         # per actor and run: the count bound
TABLE = pytest.StashKey()   # the rendered table, for conftest's summary


class Op:
    """One request to send: `ok` is its status when all is well; kind is
    READ, WRITE (both need a session) or RESET (a password-reset ask,
    anonymous, which commits an email job); cached: a GET the cache
    serves (X-Cache)."""

    def __init__(self, kind, method, path, ok, headers=None, body=None,
                 cached=False):
        self.kind, self.method, self.path, self.ok = kind, method, path, ok
        self.headers, self.body, self.cached = headers or {}, body, cached

    @property
    def name(self):
        return "%s %s" % (self.method, self.path)


class Record:
    """What one request got.  status is None when no answer came
    (error says why); body is the JSON of a 2xx answer."""

    def __init__(self, actor, op):
        self.actor, self.op = actor, op
        self.start = self.end = 0.0
        self.status = self.error = self.code = self.xcache = None
        self.body = None
        self.verdict = None     # why it breaks the table (the test's)

    @property
    def duration(self):
        return self.end - self.start


class Load:
    """Actors (name, generator, pause in seconds) run against base_url
    from start() to stop(); records holds every request."""

    def __init__(self, base_url, actors, timeout, hard_limit):
        self.base_url = base_url
        self.actors = actors
        self.timeout = timeout          # seconds, per request
        self.hard_limit = hard_limit    # seconds a run may last at most
        self.records = []
        self._stop = threading.Event()
        self._threads = []
        self.broken = []                # actors that raised, and why

    def start(self):
        end = time.monotonic() + self.hard_limit
        for name, gen, pause in self.actors:
            t = threading.Thread(target=self._run, daemon=True,
                                 args=(name, gen, pause, end))
            t.start()
            self._threads.append(t)

    def stop(self):
        """Stop and wait for every actor; a request in flight ends by
        its client timeout, so this is bounded too."""
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 10)
        alive = [t for t in self._threads if t.is_alive()]
        assert not alive, "%d load threads did not stop" % len(alive)

    def _run(self, name, gen, pause, end):
        try:
            op = next(gen)
            for _ in range(MAX_REQUESTS):
                if self._stop.is_set() or time.monotonic() >= end:
                    break
                rec = self._send(name, op)
                self.records.append(rec)
                op = gen.send(rec)
                self._stop.wait(pause)
        except Exception as e:          # a bug of the driver: reported
            self.broken.append("%s: %r" % (name, e))

    def _send(self, name, op):
        rec = Record(name, op)
        rec.start = time.monotonic()
        try:
            r = request(op.method, self.base_url + op.path,
                        headers=op.headers, json=op.body,
                        timeout=self.timeout)
        except apicheck.ContractError as e:
            rec.error = "breaks docs/openapi.yaml: %s" % str(e)[:200]
        except requests.Timeout:
            rec.error = "no answer in %d s" % self.timeout
        except requests.RequestException as e:
            rec.error = "connection: %s" % str(e)[:200]
        else:
            rec.status = r.status_code
            rec.xcache = r.headers.get("X-Cache")
            if r.status_code >= 400:
                rec.code = r.json().get("error")
            elif r.content:
                rec.body = r.json()
        rec.end = time.monotonic()
        return rec


# ----------------------------------------------------------------- actors

def staff_writer(headers, customer_ids):
    """Cars made, read back (cached), changed; contracts on them for the
    customers, each car's on days of its own so none overlap."""
    make = uniq("Make")
    cars = []                   # [id, contracts made on it]
    for n in itertools.count():
        rec = yield Op(WRITE, "POST", "/api/cars", 201, headers,
                       car_body(manufacturer=make))
        if rec.status == 201:
            cars.append([rec.body["id"], 0])
        yield Op(READ, "GET", "/api/cars?manufacturer=" + make, 200,
                 headers, cached=True)
        if not cars:
            continue
        car = cars[n % len(cars)]
        path = "/api/cars/%d" % car[0]
        yield Op(READ, "GET", path, 200, headers, cached=True)
        yield Op(WRITE, "PATCH", path, 200, headers,
                 {"model": "Probe-%d" % n})
        day = datetime.date(2031, 1, 1) + datetime.timedelta(3 * car[1])
        car[1] += 1
        yield Op(WRITE, "POST", "/api/contracts", 201, headers, {
            "carId": car[0],
            "customerId": customer_ids[n % len(customer_ids)],
            "startDate": day.isoformat(),
            "endDate": (day + datetime.timedelta(1)).isoformat()})
        yield Op(READ, "GET", "/api/contracts?carId=%d" % car[0], 200,
                 headers)


def customer_reader(headers, car_ids):
    """A customer who never writes: their reads may go to the replica."""
    for n in itertools.count():
        yield Op(READ, "GET", "/api/contracts", 200, headers)
        yield Op(READ, "GET", "/api/cars?limit=5", 200, headers,
                 cached=True)
        yield Op(READ, "GET", "/api/auth/me", 200, headers)
        yield Op(READ, "GET", "/api/cars/%d" % car_ids[n % len(car_ids)],
                 200, headers, cached=True)


def mailer(admin_headers, reset_emails, tag):
    """Writes that queue an email through the outbox: a reset for a
    known address (anonymous), an invitation (admin)."""
    for n in itertools.count():
        yield Op(RESET, "POST", "/api/auth/password-reset", 202, None,
                 {"email": reset_emails[n % len(reset_emails)]})
        u = uniq("").lower()
        yield Op(WRITE, "POST", "/api/users", 201, admin_headers, {
            "email": "inv-%s-%s@e2e.test" % (tag, u),
            "username": "inv_" + u, "name": "Invited " + u,
            "role": "student", "sendCredentials": True})


# ------------------------------------------------------------------ table

class Row:
    """One phase's figures.  jobs: "committed / delivered" as the table
    shows it; problems: why it does not match DESIGN.md's row (empty: it
    does)."""

    def __init__(self, phase, records, jobs, problems):
        self.phase = phase
        self.sent = len(records)
        self.statuses = collections.Counter(
            r.status if r.status is not None else "none" for r in records)
        self.failed = sum(1 for r in records if r.verdict)
        self.jobs = jobs
        self.longest = max((r.duration for r in records), default=0.0)
        self.problems = problems


def render(rows):
    """The markdown table of rows."""
    out = ["| phase | requests | by status | failed | jobs committed / "
           "delivered | longest request | matches DESIGN.md |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        by = " ".join("%s: %d" % (k, v) for k, v in
                      sorted(r.statuses.items(), key=lambda kv: str(kv[0])))
        out.append("| %s | %d | %s | %d | %s | %d ms | %s |" % (
            r.phase, r.sent, by, r.failed, r.jobs,
            round(r.longest * 1000),
            "yes" if not r.problems else "**no**: " + "; ".join(r.problems)))
    return "\n".join(out) + "\n"
