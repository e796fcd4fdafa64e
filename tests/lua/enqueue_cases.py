#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""tests/lua/enqueue_cases.py -- queue_enqueue.lua run by a real Redis.

What the enqueue script answers for a key it knows, by the origin (the
outbox row) of the job it holds and of the push (lib/outbox.c): the same
origin, or none on either side, is one job, as before origins; another
origin's job -- a row that is gone, its id reused by a restore of
PostgreSQL -- is replaced if it waits, is delayed, or completed or died
and its drainer marks rows by origin (marks), or, finished by older
code, past the grace, and answered 4 (ask again) while it is leased or
has just been finished by older code.  Every way a job finishes
(queue_finish.lua's done, fail and outage cap, queue_fetch.lua's stalled
lease) times it and says marks = origin, and a lease hands the drainer
the job's origin (lib/drain.c marks the outbox row by it).
Starts its own redis-server (luaredis.py) and stops it at the end.  Prints "lua
queue_enqueue case NAME: ok" or "... FAILED: why" per case, as
tests/lua/run does per script; exits 1 if any failed.
"""

import sys

import luaredis

KEYS = ["q:s", "q:d", "q:a", "q:c", "q:x", "q:r"]
JP = "q:j:"
# attempts backoff inflight rate rate_ms keep_c age_c keep_f age_f
POLICY = ["3", "1000", "100", "0", "1000", "100", "86400000", "500", "0"]
GRACE = 600000          # lib/queue_private.h, KEEL_QUEUE_REUSE_GRACE_MS
DEAD_TTL = 86400000     # lib/lua/queue_prelude.lua, a dead job's hash
OUTAGES_MAX = 3         # queue_finish.lua's ARGV[11] (lib/drain.c's)


def script(name="queue_enqueue"):
    return luaredis.script(name)


def now_ms(r):
    sec, usec = r.cli("TIME").split()
    return int(sec) * 1000 + int(usec) // 1000


def enqueue(r, text, key, payload, origin, delay=0):
    """One push of key; the script's answer."""
    out = r.cli("EVAL", text, len(KEYS), *KEYS, JP, *POLICY, GRACE, key,
                "k", payload, delay, "", origin)
    return int(out)


def job(r, key, state, origin=None, finished=None, payload="old",
        ttl=None, marks=None):
    """A job hash as the queue scripts leave one in state; a dead one
    with its TTL (ms) if ttl, as dead() leaves one; marks as this code's
    finish leaves it (none: older code's)."""
    r.cli("DEL", JP + key)
    r.cli("HSET", JP + key, "kind", "k", "payload", payload, "attempts",
          1, "lease", 1, "created", 1, "rid", "", "state", state)
    if origin is not None:
        r.cli("HSET", JP + key, "origin", origin)
    if marks is not None:
        r.cli("HSET", JP + key, "marks", marks)
    if finished is not None:
        r.cli("HSET", JP + key, "finished", finished)
    if finished is not None and state == "completed":
        r.cli("ZADD", "q:c", finished, key)
    if ttl is not None:
        r.cli("PEXPIRE", JP + key, ttl)
    if state == "delayed":
        r.cli("ZADD", "q:d", now_ms(r) + 3600000, key)
    if state == "failed":
        r.cli("XADD", "q:x", "*", "job", key, "kind", "k", "payload",
              payload, "reason", "test")
    if state == "active":
        r.cli("ZADD", "q:a", now_ms(r) + 60000, key)


def h(r, key, field):
    return r.cli("HGET", JP + key, field)


def dead_letters(r, key):
    out = r.cli("XRANGE", "q:x", "-", "+").splitlines()
    return sum(1 for i, v in enumerate(out)
               if v == "job" and i + 1 < len(out) and out[i + 1] == key)


def case_same_origin_is_one_job(r, text):
    job(r, "a1", "completed", origin="7@100", finished=now_ms(r) - 10**9)
    assert enqueue(r, text, "a1", "new", "7@100") == 2
    assert h(r, "a1", "payload") == "old"


def case_no_origin_on_either_side_is_known_by_key(r, text):
    # A hash of code older than origins, pushed with one; a push of
    # keel_queue_enqueue (no origin) onto a hash with one.
    job(r, "a2", "completed", finished=now_ms(r) - 10**9)
    assert enqueue(r, text, "a2", "new", "8@100") == 2
    job(r, "a3", "failed", origin="9@100")
    assert enqueue(r, text, "a3", "new", "") == 3
    job(r, "a4", "waiting", origin="9@100")
    assert enqueue(r, text, "a4", "new", "") == 0
    assert h(r, "a4", "payload") == "old"


def case_other_origin_completed_long_ago_is_replaced(r, text):
    job(r, "b1", "completed", origin="7@100", finished=now_ms(r) - GRACE - 1)
    assert enqueue(r, text, "b1", "new", "7@200") == 1
    assert (h(r, "b1", "state"), h(r, "b1", "payload"),
            h(r, "b1", "origin")) == ("waiting", "new", "7@200")
    # Out of the completed set: its retention mustn't drop the new job.
    assert r.cli("ZSCORE", "q:c", "b1") == ""
    # A second push of the new row is the same job.
    assert enqueue(r, text, "b1", "new", "7@200") == 0


def case_other_origin_just_completed_waits(r, text):
    job(r, "b2", "completed", origin="7@100", finished=now_ms(r) - 1000)
    assert enqueue(r, text, "b2", "new", "7@200") == 4
    assert (h(r, "b2", "state"), h(r, "b2", "origin")) == \
        ("completed", "7@100")


def case_other_origin_just_finished_marking_by_origin_is_replaced(r, text):
    # Its drainer marks the row of its own origin: no mark of it can
    # land on the new row, so nothing to wait for.
    job(r, "e1", "completed", origin="7@100", finished=now_ms(r) - 1000,
        marks="origin")
    assert enqueue(r, text, "e1", "new", "7@200") == 1
    assert (h(r, "e1", "state"), h(r, "e1", "payload"),
            h(r, "e1", "origin")) == ("waiting", "new", "7@200")
    assert r.cli("HEXISTS", JP + "e1", "marks") == "0"
    assert r.cli("ZSCORE", "q:c", "e1") == ""
    job(r, "e2", "failed", origin="7@100", finished=now_ms(r) - 1000,
        ttl=DEAD_TTL - 1000, marks="origin")
    assert enqueue(r, text, "e2", "new", "7@200") == 1
    assert (h(r, "e2", "state"), h(r, "e2", "payload")) == ("waiting", "new")
    assert dead_letters(r, "e2") == 0


def case_other_origin_leased_waits(r, text):
    job(r, "b3", "active", origin="7@100")
    assert enqueue(r, text, "b3", "new", "7@200") == 4
    assert (h(r, "b3", "state"), h(r, "b3", "payload")) == ("active", "old")


def case_other_origin_waiting_is_replaced(r, text):
    job(r, "b4", "waiting", origin="7@100")
    assert enqueue(r, text, "b4", "new", "7@200") == 1
    assert (h(r, "b4", "state"), h(r, "b4", "payload"),
            h(r, "b4", "attempts")) == ("waiting", "new", "0")


def case_other_origin_delayed_is_replaced(r, text):
    job(r, "b5", "delayed", origin="7@100")
    assert enqueue(r, text, "b5", "new", "7@200") == 1
    assert h(r, "b5", "state") == "waiting"
    # Its old due time can't promote the new job a second time.
    assert r.cli("ZSCORE", "q:d", "b5") == ""


def case_other_origin_dead_long_ago_is_replaced_with_its_dead_letter(
        r, text):
    job(r, "b6", "failed", origin="7@100", finished=now_ms(r) - GRACE - 1,
        ttl=DEAD_TTL - GRACE - 1)
    job(r, "b7", "failed", origin="8@100", finished=now_ms(r) - 1000)
    assert dead_letters(r, "b6") == 1
    assert enqueue(r, text, "b6", "new", "7@200") == 1
    assert (h(r, "b6", "state"), h(r, "b6", "payload")) == ("waiting", "new")
    # A retry of the dead letters can't bring the gone row's job back;
    # another key's stays.
    assert dead_letters(r, "b6") == 0 and dead_letters(r, "b7") == 1


def case_other_origin_just_dead_waits(r, text):
    # Its drainer's mark of outbox rows dead by key may not have landed:
    # a new row pushed now would be marked dead while its job waits.
    job(r, "b8", "failed", origin="7@100", finished=now_ms(r) - 1000,
        ttl=DEAD_TTL - 1000)
    assert enqueue(r, text, "b8", "new", "7@200") == 4
    assert (h(r, "b8", "state"), h(r, "b8", "origin")) == ("failed", "7@100")
    assert dead_letters(r, "b8") == 1


def case_other_origin_dead_untimed_is_timed_by_its_ttl(r, text):
    # A hash an older drainer dead-lettered: no finished, but dead() gave
    # it DEAD_TTL at the death.
    job(r, "b9", "failed", origin="7@100", ttl=DEAD_TTL - 1000)
    assert enqueue(r, text, "b9", "new", "7@200") == 4
    assert h(r, "b9", "state") == "failed"
    job(r, "b10", "failed", origin="7@100", ttl=DEAD_TTL - GRACE - 1000)
    assert enqueue(r, text, "b10", "new", "7@200") == 1
    assert (h(r, "b10", "state"), h(r, "b10", "payload")) == \
        ("waiting", "new")


def case_other_origin_dead_untold_is_replaced(r, text):
    # Neither finished nor a TTL (removed by hand): such a hash never
    # ages, so waiting for it would hold the new row for good.
    job(r, "b11", "failed", origin="7@100")
    assert enqueue(r, text, "b11", "new", "7@200") == 1
    assert h(r, "b11", "payload") == "new"


# The scripts that kill a job, each on a queue of its own (p:*) so their
# leases and sweeps leave the other cases' jobs alone.
PKEYS = ["p:s", "p:d", "p:a", "p:c", "p:x", "p:r"]
PJP = "p:j:"


def leased(r, key, att):
    """key's job leased by consumer c1 for its attempt att, its lease
    already past its deadline; the stream message's id."""
    r.cli("XGROUP", "CREATE", "p:s", "workers", "0", "MKSTREAM")
    r.cli("DEL", PJP + key)
    r.cli("HSET", PJP + key, "kind", "k", "payload", "old", "attempts",
          att, "lease", att, "created", 1, "rid", "", "state", "active",
          "origin", "7@100", "deadline", now_ms(r) - 1, "started", 1)
    r.cli("ZADD", "p:a", now_ms(r) - 1, key)
    mid = r.cli("XADD", "p:s", "*", "job", key)
    r.cli("XREADGROUP", "GROUP", "workers", "c1", "COUNT", 1,
          "STREAMS", "p:s", ">")
    return mid


def finished_now(r, text, key, state="failed"):
    """key's job is in state, its finish timed just now and marked as
    this code's (its row marked by origin), and another origin's push
    replaces it at once."""
    assert r.cli("HGET", PJP + key, "state") == state
    died = int(r.cli("HGET", PJP + key, "finished") or 0)
    assert abs(now_ms(r) - died) < 5000, died
    assert r.cli("HGET", PJP + key, "marks") == "origin"
    out = r.cli("EVAL", text, len(PKEYS), *PKEYS, PJP, *POLICY, GRACE, key,
                "k", "new", 0, "", "7@200")
    assert int(out) == 1, out
    assert r.cli("HGET", PJP + key, "origin") == "7@200"


def case_a_completed_job_finishes_timed_and_marked(r, text):
    mid = leased(r, "d0", 1)
    out = r.cli("EVAL", script("queue_finish"), len(PKEYS), *PKEYS, PJP,
                *POLICY, OUTAGES_MAX, mid, "d0", 1, "done", "")
    assert out == "1", out
    finished_now(r, text, "d0", "completed")


def case_a_lease_hands_over_the_jobs_origin(r, text):
    # The drainer marks the outbox row of this origin (lib/drain.c).
    r.cli("DEL", "p:s", "p:a", "p:r")
    # o1 last: redis-cli's output loses a trailing empty string.
    assert int(r.cli("EVAL", text, len(PKEYS), *PKEYS, PJP, *POLICY, GRACE,
                     "o2", "k", "{}", 0, "", "")) == 1
    assert int(r.cli("EVAL", text, len(PKEYS), *PKEYS, PJP, *POLICY, GRACE,
                     "o1", "k", "{}", 0, "", "5@100")) == 1
    out = r.cli("EVAL", script("queue_fetch"), len(PKEYS), *PKEYS, PJP,
                *POLICY, "c3", 10, 60000).splitlines()
    # Six header elements, then 7 per job, flattened by redis-cli.
    assert len(out) == 6 + 2 * 7, out
    jobs = [out[i:i + 7] for i in range(6, len(out), 7)]
    assert {j[1]: j[6] for j in jobs} == {"o1": "5@100", "o2": ""}, out


def case_a_failed_job_dies_timed_and_marked(r, text):
    mid = leased(r, "d1", 1)
    out = r.cli("EVAL", script("queue_finish"), len(PKEYS), *PKEYS, PJP,
                *POLICY, OUTAGES_MAX, mid, "d1", 1, "fail", "no")
    assert out == "3", out
    finished_now(r, text, "d1")


def case_a_job_past_the_outage_cap_dies_timed_and_marked(r, text):
    mid = leased(r, "d2", 3)
    r.cli("HSET", PJP + "d2", "outages", OUTAGES_MAX)
    out = r.cli("EVAL", script("queue_finish"), len(PKEYS), *PKEYS, PJP,
                *POLICY, OUTAGES_MAX, mid, "d2", 3, "outage", "db down")
    assert out == "3", out
    finished_now(r, text, "d2")


def case_a_stalled_last_lease_dies_timed_and_marked(r, text):
    leased(r, "d3", 3)
    # A visibility timeout of 0: the pending message is reclaimed now.
    out = r.cli("EVAL", script("queue_fetch"), len(PKEYS), *PKEYS, PJP,
                *POLICY, "c2", 1, 0).splitlines()
    assert out[4] == "1", out       # one job dead-lettered
    finished_now(r, text, "d3")


def retry(r):
    """queue_retry_failed.lua on q: its answer, one string a line."""
    return r.cli("EVAL", script("queue_retry_failed"), len(KEYS), *KEYS, JP,
                 *POLICY).splitlines()


def case_a_retried_dead_letter_keeps_its_origin(r, text):
    r.cli("DEL", "q:x")
    mid = leased(r, "f1", 3)
    out = r.cli("EVAL", script("queue_finish"), len(PKEYS), *PKEYS, PJP,
                *POLICY, OUTAGES_MAX, mid, "f1", 3, "fail", "no")
    assert out == "3", out
    # Moved to q's dead letters, as the death left them there.
    ents = r.cli("XRANGE", "p:x", "-", "+").splitlines()
    assert "origin" in ents and ents[ents.index("origin") + 1] == "7@100"
    r.cli("DEL", "p:x")
    r.cli("XADD", "q:x", "*", *ents[1:])
    r.cli("DEL", JP + "f1")
    assert retry(r) == ["1", "f1", "7@100"]
    assert (h(r, "f1", "state"), h(r, "f1", "origin")) == \
        ("waiting", "7@100")
    # Its row's push is the same job; another row's replaces it.
    assert enqueue(r, text, "f1", "new", "7@100") == 0
    assert enqueue(r, text, "f1", "new", "7@200") == 1


def case_an_older_dead_letter_takes_the_tombstones_origin(r, text):
    # Dead letters of code that didn't write origins: the job's hash,
    # a tombstone for a day, still has it.
    r.cli("DEL", "q:x")
    job(r, "f2", "failed", origin="8@100", ttl=DEAD_TTL - 1000)
    r.cli("DEL", JP + "f3")
    r.cli("XADD", "q:x", "*", "job", "f3", "kind", "k", "payload", "p")
    out = retry(r)
    assert out[0] == "2" and out[1:3] == ["f2", "8@100"], out
    assert out[3] == "f3" and out[4:] in ([], [""]), out
    assert h(r, "f2", "origin") == "8@100"
    assert r.cli("HEXISTS", JP + "f3", "origin") == "0"


def case_a_new_key_keeps_its_origin(r, text):
    assert enqueue(r, text, "c1", "new", "5@100") == 1
    assert h(r, "c1", "origin") == "5@100"
    assert enqueue(r, text, "c2", "new", "") == 1
    assert r.cli("HEXISTS", JP + "c2", "origin") == "0"


def main():
    return luaredis.run_cases("queue_enqueue", globals(), script())


if __name__ == "__main__":
    sys.exit(main())
