#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""tests/lua/idem_cases.py -- idem_done.lua and idem_keep.lua run by a
real Redis.

What one client keeps (lib/idem.c): idem_done.lua on a single Redis keeps
an answer and its place in the client's index, and past the most a client
keeps deletes the oldest answers; a key kept again takes one place; index
entries older than an answer's life count for nothing; a claim that is no
longer ours keeps and indexes nothing.  idem_keep.lua (cluster mode) keeps
the index alone and hands back what it took out.  A 201's Location is kept
(last of the arguments, either mode) and idem_begin.lua reads it back; an
answer kept without one reads as none; and an older binary's
idem_begin.lua (OLD_BEGIN, as it was before the Location: a roll runs both)
still reads an answer kept with one as its four elements.  Starts its own
redis-server on a free loopback port in a temporary directory and stops
it (its pid) at the end.  Prints "lua idem case NAME: ok" or "... FAILED:
why" per case, as tests/lua/run does per script; exits 1 if any failed.
"""

import json
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


def done(r, s, h, fp="fp", body="b", location=None):
    """idem_done.lua on a single Redis for hash h; its answer.  Without
    location, the arguments as an older idem.c passed them."""
    more = [] if location is None else [location]
    return int(r.cli("EVAL", s["idem_done"], 2, PREFIX + h, INDEX, fp,
                     "201", "application/json", body, TTL, h, MAX, PREFIX,
                     *more))


# lib/lua/idem_begin.lua before answers kept a Location: what an older
# binary still runs on the same Redis while a roll replaces it.
OLD_BEGIN = """
local v = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'ctype',
  'body')
if not v[1] then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
if v[2] ~= ARGV[1] then return {'mismatch'} end
if v[1] ~= 'done' then return {'running'} end
return {'done', v[3], v[4] or '', v[5] or ''}
"""


def begin(r, lua, h, fp="fp"):
    """idem_begin.lua (or lua) for hash h: its reply's elements (quoted
    by --no-raw, so that an empty last one is not lost)."""
    out = r.cli("--no-raw", "EVAL", lua, 1, PREFIX + h, fp, 60000)
    return [json.loads(line.split(") ", 1)[1])
            for line in out.split("\n")]


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


def case_a_location_is_kept_and_read_back(r, s):
    claim(r, "h1")
    assert done(r, s, "h1", location="/api/cars/12") == 1
    assert begin(r, s["idem_begin"], "h1") == [
        "done", "201", "application/json", "b", "/api/cars/12"]


def case_an_answer_kept_without_a_location_reads_as_none(r, s):
    # As an older binary's idem_done.lua kept it: no 'location' field.
    for h, more in (("h1", None), ("h2", "")):
        claim(r, h)
        assert done(r, s, h, location=more) == 1
        assert r.cli("HEXISTS", PREFIX + h, "location") == "0"
        assert begin(r, s["idem_begin"], h) == [
            "done", "201", "application/json", "b", ""]


def case_an_older_reader_reads_a_location_answer_as_before(r, s):
    claim(r, "h1")
    assert done(r, s, "h1", location="/api/cars/12") == 1
    assert begin(r, OLD_BEGIN, "h1") == [
        "done", "201", "application/json", "b"]


def case_cluster_mode_keeps_the_location_last(r, s):
    claim(r, "h1")
    assert int(r.cli("EVAL", s["idem_done"], 1, PREFIX + "h1", "fp",
                     "201", "application/json", "b", TTL,
                     "/api/tests/3")) == 1
    assert r.cli("HGET", PREFIX + "h1", "location") == "/api/tests/3"
    assert index(r) == []


def case_a_claim_taken_again_keeps_its_own_location(r, s):
    # The first run's answer, then the key claimed again after it was
    # lost: the second answer has none and must not show the first's.
    claim(r, "h1")
    assert done(r, s, "h1", location="/api/cars/12") == 1
    r.cli("HSET", PREFIX + "h1", "state", "running")
    assert done(r, s, "h1") == 1
    assert r.cli("HEXISTS", PREFIX + "h1", "location") == "0"


def main():
    return run_cases("idem", globals(), {n: script(n) for n in
                                          ("idem_begin", "idem_done",
                                           "idem_keep")},
                     flush=True)


if __name__ == "__main__":
    sys.exit(main())
