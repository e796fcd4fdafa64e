#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""tests/lua/idem_cases.py -- idem_done.lua and idem_keep.lua run by a
real Redis.

What one client keeps (lib/idem.c): idem_done.lua on a single Redis keeps
an answer and its place in the client's index, and past the most a client
keeps deletes the oldest answers; a key kept again takes one place; index
entries older than an answer's life count for nothing; a claim that is no
longer ours keeps and indexes nothing.  idem_keep.lua (cluster mode) keeps
the index alone and hands back what it took out.  Starts its own
redis-server on a free loopback port in a temporary directory and stops
it (its pid) at the end.  Prints "lua idem case NAME: ok" or "... FAILED:
why" per case, as tests/lua/run does per script; exits 1 if any failed.
"""

import sys
import time

from luaredis import run_cases, script

PREFIX = "keel:idem:a:192.0.2.1:"
INDEX = "keel:idem:i:a:192.0.2.1"
TTL = 86400
MAX = 3


def claim(r, h, fp="fp"):
    """A claim as idem_begin.lua leaves one."""
    r.cli("HSET", PREFIX + h, "state", "running", "fp", fp)


def done(r, s, h, fp="fp", body="b"):
    """idem_done.lua on a single Redis for hash h; its answer."""
    return int(r.cli("EVAL", s["idem_done"], 2, PREFIX + h, INDEX, fp,
                     "201", "application/json", body, TTL, h, MAX, PREFIX))


def kept(r):
    return sorted(k[len(PREFIX):] for k in
                  r.cli("--scan", "--pattern", PREFIX + "*").split())


def index(r):
    return r.cli("ZRANGE", INDEX, 0, -1).split()


def case_past_the_most_the_oldest_go(r, s):
    for h in ("h1", "h2", "h3", "h4"):
        claim(r, h)
        assert done(r, s, h) == 1
        time.sleep(0.002)       # scores in ms: an order to keep
    assert kept(r) == ["h2", "h3", "h4"]
    assert index(r) == ["h2", "h3", "h4"]
    assert r.cli("HGET", PREFIX + "h4", "state") == "done"
    assert 0 < int(r.cli("TTL", INDEX)) <= TTL


def case_a_key_kept_again_takes_one_place(r, s):
    for h in ("h1", "h2", "h1", "h1"):
        claim(r, h)
        assert done(r, s, h) == 1
    assert kept(r) == ["h1", "h2"]
    assert sorted(index(r)) == ["h1", "h2"]


def case_entries_past_an_answers_life_count_for_nothing(r, s):
    # Entries whose answers expired (Redis dropped them) hold no place.
    r.cli("ZADD", INDEX, 1000, "old1", 2000, "old2", 3000, "old3")
    claim(r, "h1")
    assert done(r, s, "h1") == 1
    assert index(r) == ["h1"]


def case_a_claim_not_ours_keeps_nothing(r, s):
    claim(r, "h1", fp="another")
    assert done(r, s, "h1") == 0
    assert r.cli("HGET", PREFIX + "h1", "state") == "running"
    assert index(r) == []


def case_keep_alone_hands_back_what_it_took_out(r, s):
    # Cluster mode: the answers are elsewhere; idem.c deletes them.
    for h in ("h1", "h2", "h3"):
        claim(r, h)
        out = r.cli("EVAL", s["idem_keep"], 1, INDEX, h, TTL, MAX)
        assert out == "", out
        time.sleep(0.002)
    out = r.cli("EVAL", s["idem_keep"], 1, INDEX, "h4", TTL, MAX)
    assert out.split() == ["h1"], out
    assert index(r) == ["h2", "h3", "h4"]
    assert kept(r) == ["h1", "h2", "h3"]


def main():
    return run_cases("idem", globals(), {n: script(n) for n in
                                          ("idem_done", "idem_keep")},
                     flush=True)


if __name__ == "__main__":
    sys.exit(main())
