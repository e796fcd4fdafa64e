# SPDX-License-Identifier: ISC
"""test_leaderboard.py -- the leaderboards (DESIGN.md "Leaderboards", issue
10): ranks and ties, best scores, periods, per-test and global boards, the
drainer (keel-drain-leaderboard) and its idempotency, the rebuild
(keel-leaderboard-rebuild) under concurrent reads, the PostgreSQL fallback,
bad input; and the attempt_graded notification (keel-drain-notifications).

Attempts are written as the submit transaction writes them: a submitted
row in test_attempts and, in the same statement, its outbox job (queue
leaderboard, kind attempt_submitted, key leaderboard:attempt:<id>), which
keel-outbox-relay pushes and the drainer runs, as under cron.  Each test
uses tests of its own, so per-test boards start empty; the global board is
shared, so its checks look at the test's own users only.
"""

import contextlib
import json
import random
import re
import signal
import subprocess
import threading
import time

import pytest

from accounts import bearer, login, make_user
from helpers import (assert_error, db_queries, memcached_cmd, redis_cli,
                     wait_until)
from stack import psql_env

DRAIN_ENV = {"KEEL_JOB_VISIBILITY": "3"}


@pytest.fixture(scope="module")
def lb(stack):
    for q in ("leaderboard", "notifications"):
        p = stack.program("keel-queues", "purge", q, "all")
        assert p.returncode == 0, p.stderr
    return stack


def new_test(stack, title="Leaderboard test"):
    return int(stack.psql(
        "INSERT INTO tests (title, subject, duration_minutes, published) "
        "VALUES ('%s', 'e2e', 30, true) RETURNING id"
        % title.replace("'", "''")))


def student(stack):
    return make_user(stack, "student")


def submit(stack, test, user, score, at=None, late=False):
    """A submitted attempt of user on test with score (percent) at Unix
    time `at` (default now), and its leaderboard job in the outbox, in
    one statement; returns the attempt id.  late: submitted a minute
    past its expiry, as the submit flags it."""
    ts = "now()" if at is None else "to_timestamp(%r)" % float(at)
    return int(stack.psql(
        "WITH a AS (INSERT INTO test_attempts (test_id, user_id, "
        "started_at, expires_at, submitted_at, score, correct, total, "
        "answers, answer_key, late) "
        "VALUES (%d, %d, %s - interval '10 minutes', %s + interval '%s', "
        "%s, %d, %d, 100, '{}', '{}', %s) RETURNING id), "
        "o AS (INSERT INTO outbox (queue, kind, payload, idempotency_key) "
        "SELECT 'leaderboard', 'attempt_submitted', "
        "jsonb_build_object('attemptId', id), 'leaderboard:attempt:' || id "
        "FROM a) SELECT id FROM a"
        % (test, user, ts, ts, "-1 minute" if late else "1 hour", ts,
           score, score, "true" if late else "false")))


def drain(stack, prog="keel-drain-leaderboard", relay=True):
    """cron's next minute: the relay, then the drainer until the queue is
    empty; the drainer's stdout (its summary)."""
    if relay:
        p = stack.program("keel-outbox-relay", "--once")
        assert p.returncode == 0, p.stderr
    p = stack.program(prog, "--until-empty", "--budget", 60,
                      env=DRAIN_ENV, timeout=90)
    assert p.returncode == 0, p.stderr
    return p.stdout


def enqueue(stack, queue, kind, payload, key):
    """A job straight onto queue (keel-queues), as a redelivery has it."""
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    p = stack.program("keel-queues", "enqueue", "--key", key, queue, kind,
                      payload)
    assert p.returncode == 0, p.stderr


def rebuild(stack, *args):
    p = stack.program("keel-leaderboard-rebuild", *args, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "processed=" in p.stdout, p.stdout
    return p.stdout


def board(http, test=None, period="all", limit=100, offset=0):
    q = {"period": period, "limit": limit, "offset": offset}
    if test is not None:
        q["testId"] = test
    r = http.get("/api/leaderboard", params=q)
    assert r.status_code == 200, r.text
    return r.json()


def me(http, token, test=None, period="all"):
    q = {"period": period}
    if test is not None:
        q["testId"] = test
    return http.get("/api/leaderboard/me", params=q,
                    headers=bearer(token))


def board_key(stack, test=None, period="all"):
    """The Redis key of a board of this period (lib/board.c)."""
    start = stack.psql(
        "SELECT CASE '%s' WHEN 'all' THEN '1970-01-01' ELSE "
        "date_trunc('%s', now() AT TIME ZONE 'UTC')::date::text END"
        % (period, "week" if period == "all" else period))
    return "keel:lb:%s:%s:%s" % ("t%d" % test if test else "g", period,
                                  start)


def ranks(page, users=None):
    """[(userId, rank, score, attempts)] of a page, or of its entries of
    users only."""
    return [(e["userId"], e["rank"], e["score"], e["attempts"])
            for e in page["data"] if users is None or e["userId"] in users]


# ------------------------------------------------------------ ranking

def test_ties_share_a_rank_and_the_earlier_reach_ranks_first(lb, http):
    t = new_test(lb)
    a, b, c, d = (student(lb)["id"] for _ in range(4))
    base = time.time() - 100
    submit(lb, t, a, 90, base)
    submit(lb, t, b, 80, base + 20)
    submit(lb, t, c, 80, base + 10)     # 80 reached before b
    submit(lb, t, d, 70, base + 5)
    drain(lb)
    # The drainer built the new test's board in Redis.
    key = board_key(lb, t)
    assert redis_cli(lb, "EXISTS", key) == "1"
    page = board(http, t)
    assert ranks(page) == [(a, 1, 90, 1), (c, 2, 80, 1), (b, 2, 80, 1),
                           (d, 4, 70, 1)]
    assert page["page"] == {"limit": 100, "offset": 0, "total": 4}
    assert (page["testId"], page["period"], page["periodStart"]) == (
        t, "all", "1970-01-01")
    # A page starting inside the tie ranks it the same (ZCOUNT above).
    page = board(http, t, limit=2, offset=2)
    assert ranks(page) == [(b, 2, 80, 1), (d, 4, 70, 1)]
    page = board(http, t, limit=1, offset=1)
    assert ranks(page) == [(c, 2, 80, 1)]
    # Names come with the page.
    names = dict(l.split("|") for l in lb.psql(
        "SELECT id, name FROM users WHERE id IN (%d, %d, %d, %d)"
        % (a, b, c, d)).splitlines())
    assert [e["name"] for e in board(http, t)["data"]] == [
        names[str(u)] for u in (a, c, b, d)]


def test_best_score_kept_attempts_counted_first_reach_wins(lb, http):
    t = new_test(lb)
    u, v = student(lb), student(lb)
    now = time.time()
    for score, ago in ((60, 50), (85, 40), (70, 30), (85, 10)):
        submit(lb, t, u["id"], score, now - ago)
    submit(lb, t, v["id"], 85, now - 20)   # 85 after u first had it
    drain(lb)
    assert ranks(board(http, t)) == [(u["id"], 1, 85, 4), (v["id"], 1, 85, 1)]
    r = me(http, login(http, u["email"]), t)
    assert r.status_code == 200, r.text
    assert r.json() == {"userId": u["id"], "rank": 1, "score": 85,
                        "attempts": 4}
    # A worse attempt later changes the count only.
    submit(lb, t, v["id"], 10)
    drain(lb)
    assert ranks(board(http, t)) == [(u["id"], 1, 85, 4), (v["id"], 1, 85, 2)]


def test_week_month_and_all_time_are_separate_boards(lb, http):
    t = new_test(lb)
    old, cur, edge = student(lb)["id"], student(lb)["id"], student(lb)["id"]
    week0, month0 = (float(x) for x in lb.psql(
        "SELECT extract(epoch FROM date_trunc('week', now() AT TIME ZONE "
        "'UTC') AT TIME ZONE 'UTC'), extract(epoch FROM date_trunc('month', "
        "now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')").split("|"))
    now = time.time()
    submit(lb, t, old, 95, now - 40 * 86400)    # all time only
    submit(lb, t, cur, 50, now - 1)
    submit(lb, t, cur, 40, now - 40 * 86400)
    # An hour before the later of the two period starts: in exactly the
    # period that began first (in neither when both began together).
    edge_at = max(week0, month0) - 3600
    submit(lb, t, edge, 77, edge_at)
    drain(lb)
    assert ranks(board(http, t, period="all"))[:2] == [
        (old, 1, 95, 1), (edge, 2, 77, 1)]
    assert (cur, 3, 50, 2) in ranks(board(http, t, period="all"))
    for period, start in (("week", week0), ("month", month0)):
        want = [(cur, 1, 50, 1)] if edge_at < start else [
            (edge, 1, 77, 1), (cur, 2, 50, 1)]
        page = board(http, t, period=period)
        assert ranks(page) == want, period
        assert page["periodStart"] == time.strftime(
            "%Y-%m-%d", time.gmtime(start))
    # The global boards of the same periods sum each test's best.
    tok = login(http, make_user_email(lb, cur))
    r = me(http, tok, None, "all")
    assert r.status_code == 200 and r.json()["score"] == 50
    assert r.json()["attempts"] == 2
    r = me(http, tok, None, "week")
    assert r.status_code == 200 and r.json()["attempts"] == 1


def make_user_email(stack, uid):
    return stack.psql("SELECT email FROM users WHERE id = %d" % uid)


def test_global_board_sums_each_tests_best(lb, http):
    t1, t2 = new_test(lb), new_test(lb)
    u, v = student(lb), student(lb)
    now = time.time()
    submit(lb, t1, u["id"], 80, now - 30)
    submit(lb, t1, u["id"], 60, now - 20)
    submit(lb, t2, u["id"], 70, now - 10)
    submit(lb, t1, v["id"], 100, now - 5)
    drain(lb)
    # Per test: v leads t1; u alone on t2.
    assert ranks(board(http, t1)) == [(v["id"], 1, 100, 1),
                                      (u["id"], 2, 80, 2)]
    assert ranks(board(http, t2)) == [(u["id"], 1, 70, 1)]
    # Global: u's 80 + 70 = 150 beats v's 100, whatever else is on it.
    g = ranks(board(http, None, limit=100), {u["id"], v["id"]})
    r_u = me(http, login(http, u["email"]))
    r_v = me(http, login(http, v["email"]))
    assert r_u.json()["score"] == 150 and r_u.json()["attempts"] == 3
    assert r_v.json()["score"] == 100 and r_v.json()["attempts"] == 1
    assert r_u.json()["rank"] < r_v.json()["rank"]
    if len(g) == 2:
        assert [x[0] for x in g] == [u["id"], v["id"]]


def test_page_names_load_in_one_query_whatever_its_size(lb, http):
    """The entries' names (and attempts) come by one = ANY($1) statement
    per page (the users DataLoader): a page of 1 and one of 20 run the
    same statements, counted by Server-Timing."""
    t = new_test(lb)
    users = [student(lb) for _ in range(20)]
    for i, u in enumerate(users):
        submit(lb, t, u["id"], 50 + i)
    drain(lb)
    memcached_cmd(lb, "flush_all")
    r1 = http.get("/api/leaderboard", params={"testId": t, "limit": 1})
    r20 = http.get("/api/leaderboard", params={"testId": t, "limit": 20})
    assert r1.headers["X-Cache"] == r20.headers["X-Cache"] == "MISS"
    assert len(r1.json()["data"]) == 1 and len(r20.json()["data"]) == 20
    names = {u["id"]: lb.psql("SELECT name FROM users WHERE id = %d"
                              % u["id"]) for u in users}
    assert [(e["userId"], e["name"]) for e in r20.json()["data"]] == [
        (u["id"], names[u["id"]]) for u in reversed(users)]
    assert db_queries(r1) == db_queries(r20) == 1


# -------------------------------------------------------------- drainer

def test_submitted_attempt_is_on_the_board_within_2s(lb, http):
    t = new_test(lb)
    u = student(lb)
    rebuild(lb, "--test", t)        # an existing (empty) board
    assert board(http, t)["data"] == []
    p = lb.spawn("keel-drain-leaderboard", "--budget", 30, env=DRAIN_ENV)
    try:
        time.sleep(0.5)             # the drainer is waiting for jobs
        submit(lb, t, u["id"], 64)
        relay = lb.program("keel-outbox-relay", "--once")
        assert relay.returncode == 0, relay.stderr
        t0 = time.monotonic()
        wait_until(lambda: board(http, t)["data"] != [], 2.0,
                   "the attempt on the board")
        assert time.monotonic() - t0 <= 2.0
        assert ranks(board(http, t)) == [(u["id"], 1, 64, 1)]
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)


def test_the_same_job_run_twice_counts_its_attempt_once(lb, http):
    t = new_test(lb)
    u = student(lb)
    aid = submit(lb, t, u["id"], 55)
    drain(lb)
    assert ranks(board(http, t)) == [(u["id"], 1, 55, 1)]
    # Redeliveries: the handler runs again on the same attempt (pushed
    # straight to the queue under a key no outbox row has finished, as a
    # job whose lease expired after the commit would run again).
    for i in range(2):
        enqueue(lb, "leaderboard", "attempt_submitted",
                {"attemptId": aid, "score": 100},
                "leaderboard:attempt:%d:again-%d" % (aid, i))
        out = drain(lb, relay=False)
        assert "processed=1 " in out, out
    # Same entry: one attempt, its score (the payload's is ignored).
    assert ranks(board(http, t)) == [(u["id"], 1, 55, 1)]
    assert lb.psql(
        "SELECT count(*), sum(attempts) FROM leaderboard_entries WHERE "
        "user_id = %d" % u["id"]) == "6|6"


def test_a_jobs_six_entries_are_written_together(lb, http):
    """One statement, one transaction, for the six boards: all six
    entries or none (and one plan on the primary, not six)."""
    t = new_test(lb)
    u = student(lb)
    # Both attempts at one instant: two submits that straddled Monday
    # 00:00 or a month's first would make eight or ten entries, not six.
    at = time.time()
    submit(lb, t, u["id"], 70, at)
    drain(lb)
    assert lb.psql(
        "SELECT count(*), count(DISTINCT xmin::text) FROM "
        "leaderboard_entries WHERE user_id = %d" % u["id"]) == "6|1"
    # A better attempt changes all six, again together; the entries are
    # the recomputed ones (the best, both attempts counted).
    submit(lb, t, u["id"], 90, at)
    drain(lb)
    assert lb.psql(
        "SELECT count(*), count(DISTINCT xmin::text), min(score), "
        "max(score), min(attempts), max(attempts) FROM "
        "leaderboard_entries WHERE user_id = %d" % u["id"]) == \
        "6|1|90|90|2|2"
    assert ranks(board(http, t)) == [(u["id"], 1, 90, 2)]


def test_a_late_attempt_is_graded_but_never_ranked(lb, http):
    """Past its time an attempt still grades (API.md), but a board of
    timed tests ranks only attempts made in time: else anyone could keep
    an attempt open for days and top the board."""
    t = new_test(lb)
    u, v = student(lb), student(lb)
    at = time.time()
    submit(lb, t, u["id"], 50, at)
    submit(lb, t, u["id"], 100, at, late=True)
    submit(lb, t, v["id"], 90, at, late=True)
    drain(lb)
    for period in ("all", "week", "month"):
        assert ranks(board(http, t, period=period)) == [
            (u["id"], 1, 50, 1)], period
    r = me(http, login(http, u["email"]))
    assert r.status_code == 200
    assert (r.json()["score"], r.json()["attempts"]) == (50, 1)
    assert me(http, login(http, v["email"])).status_code == 404
    # The rebuild computes the same: nothing to change.
    before = lb.psql("SELECT count(*), sum(score), sum(attempts) FROM "
                     "leaderboard_entries WHERE user_id IN (%d, %d)"
                     % (u["id"], v["id"]))
    rebuild(lb, "--test", t)
    assert ranks(board(http, t)) == [(u["id"], 1, 50, 1)]
    assert lb.psql("SELECT count(*), sum(score), sum(attempts) FROM "
                   "leaderboard_entries WHERE user_id IN (%d, %d)"
                   % (u["id"], v["id"])) == before == "6|300|6"


def test_unknown_attempt_is_dead_lettered(lb):
    enqueue(lb, "leaderboard", "attempt_submitted",
            {"attemptId": 999999999}, "leaderboard:attempt:999999999")
    out = drain(lb, relay=False)
    assert "processed=0 failed=1 " in out, out
    dead = redis_cli(lb, "XRANGE", "keel:q:leaderboard:x", "-", "+")
    assert "no submitted attempt 999999999" in dead


# -------------------------------------------------------------- rebuild

def test_rebuild_under_concurrent_reads_never_shows_a_partial_board(lb,
                                                                   http):
    t = new_test(lb)
    n = 1500
    # n students, each with a best score the reader can check against.
    lb.psql(
        "WITH u AS (INSERT INTO users (email, username, name, role) "
        "SELECT 'lb%d-' || g || '@e2e.test', 'lb%d_' || g, 'Student ' || g, "
        "'student' FROM generate_series(1, %d) g RETURNING id) "
        "INSERT INTO test_attempts (test_id, user_id, started_at, "
        "expires_at, submitted_at, score, correct, total, answers, "
        "answer_key) "
        "SELECT %d, id, now() - interval '1 hour', now(), "
        "now() - (id %% 1000) * interval '1 second', s, s, 100, '{}', '{}' "
        "FROM u, LATERAL (VALUES (id %% 101), ((id * 7) %% 101)) v(s)"
        % (t, t, n, t))
    best = dict((int(a), int(b)) for a, b in (l.split("|") for l in lb.psql(
        "SELECT user_id, max(score) FROM test_attempts WHERE test_id = %d "
        "GROUP BY user_id" % t).splitlines()))
    out = rebuild(lb, "--test", t, "--period", "all")
    assert "processed=1 failed=0" in out and "entries=%d" % n in out, out
    key = board_key(lb, t)
    stop = threading.Event()
    seen = {"reads": 0, "bad": []}

    def reader():
        while not stop.is_set():
            if redis_cli(lb, "EXISTS", key) != "1":
                seen["bad"].append("board key missing")
            # A miss, so the page is read from Redis now.
            memcached_cmd(lb, "flush_all")
            off = random.randrange(0, n - 100)
            page = board(http, t, limit=100, offset=off)
            if page["page"]["total"] != n or len(page["data"]) != 100:
                seen["bad"].append("total %d, %d entries" % (
                    page["page"]["total"], len(page["data"])))
            for e in page["data"]:
                if best.get(e["userId"]) != e["score"]:
                    seen["bad"].append("user %d score %d" % (
                        e["userId"], e["score"]))
            seen["reads"] += 1

    th = threading.Thread(target=reader)
    th.start()
    try:
        for _ in range(5):
            rebuild(lb, "--test", t, "--period", "all")
    finally:
        stop.set()
        th.join(60)
    assert seen["reads"] >= 5, seen
    assert seen["bad"] == [], seen["bad"][:10]
    # The board is whole: n entries and the sentinel.
    assert redis_cli(lb, "ZCARD", key) == str(n + 1)
    assert redis_cli(lb, "EXISTS", key + ":new") == "0"


def unannounced_attempt(stack, test, user, score):
    """A graded attempt inserted without its job (as if the drainer missed
    it): only a rebuild puts it on the boards.  Returns its id."""
    return int(stack.psql(
        "INSERT INTO test_attempts (test_id, user_id, started_at, "
        "expires_at, submitted_at, score, correct, total, answers, "
        "answer_key) VALUES (%d, %d, now() - interval '1 hour', now(), "
        "now(), %d, %d, 100, '{}', '{}') RETURNING id"
        % (test, user, score, score)))


@contextlib.contextmanager
def refusing_durable_writes(stack, name, condition):
    """A trigger refusing leaderboard_entries inserts where condition (SQL
    over NEW) holds, for the with block; dropped after it."""
    stack.psql("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS "
               "$$BEGIN IF %s THEN RAISE EXCEPTION 'refused'; END IF; "
               "RETURN NEW; END$$; CREATE TRIGGER %s BEFORE INSERT ON "
               "leaderboard_entries FOR EACH ROW EXECUTE FUNCTION %s()"
               % (name, condition, name, name))
    try:
        yield
    finally:
        stack.psql("DROP TRIGGER %s ON leaderboard_entries; DROP FUNCTION "
                   "%s()" % (name, name))


def board_dump(stack, test):
    """Every board of test (and the global ones' entries of its users) as
    Redis has them, and its durable entries with when they changed."""
    users = stack.psql("SELECT string_agg(DISTINCT user_id::text, ' ') "
                       "FROM test_attempts WHERE test_id = %d" % test).split()
    boards = {}
    for period in ("all", "week", "month"):
        z = redis_cli(stack, "ZRANGE", board_key(stack, test, period), "0",
                      "-1", "WITHSCORES").split("\n")
        # Members and their exact values; the sentinel names its run.
        boards[period] = [(m, v) for m, v in zip(z[::2], z[1::2])
                          if not m.startswith("~")]
        boards["g" + period] = [redis_cli(stack, "ZSCORE", board_key(
            stack, None, period), u) for u in users]
    rows = stack.psql(
        "SELECT COALESCE(test_id, 0), period, period_start, user_id, score, "
        "attempts, reached_at, updated_at FROM leaderboard_entries WHERE "
        "test_id = %d OR (test_id IS NULL AND user_id IN (SELECT user_id "
        "FROM test_attempts WHERE test_id = %d)) ORDER BY 1, 2, 3, 4"
        % (test, test))
    return boards, rows


def test_rebuild_computes_what_the_drainer_computes(lb, http):
    """The rebuild computes every board in one pass; the drainer one
    user's entries at a time: the same entries, the same encoded values
    (ties, best of several, first reach, week and month), so a rebuild
    after the drainer rewrites no durable row."""
    t = new_test(lb)
    us = [student(lb)["id"] for _ in range(6)]
    now = time.time()
    for i, (u, score, ago) in enumerate(zip(
            us + us[:3], (70, 90, 70, 50, 90, 100, 95, 60, 70),
            (50, 40, 30, 20, 10, 40 * 86400, 5, 3, 1))):
        submit(lb, t, u, score, now - ago - i)
    drain(lb)
    before = board_dump(lb, t)
    assert len(before[0]["all"]) == 6
    assert len(before[0]["week"]) == 5      # one attempt 40 days ago
    # The boards gone from Redis, rebuilt from PostgreSQL: identical.
    for period in ("all", "week", "month"):
        redis_cli(lb, "DEL", board_key(lb, t, period))
    out = rebuild(lb, "--test", t)
    assert "processed=3 failed=0" in out and "written=0" in out, out
    after = board_dump(lb, t)
    assert after[0] == before[0]
    assert after[1] == before[1]            # not one row rewritten
    # The whole rebuild agrees with the drainer on the global boards too.
    out = rebuild(lb)
    assert "failed=0" in out, out
    assert board_dump(lb, t) == before
    # An entry changed in PostgreSQL (its board's count the same) is
    # found and written back; so is one lost.
    lb.psql("UPDATE leaderboard_entries SET score = score - 1 WHERE "
            "test_id = %d AND period = 'all' AND user_id = %d" % (t, us[1]))
    out = rebuild(lb, "--test", t)
    assert "written=1" in out, out
    assert board_dump(lb, t)[0] == before[0]
    lb.psql("DELETE FROM leaderboard_entries WHERE test_id = %d AND "
            "user_id = %d" % (t, us[0]))
    out = rebuild(lb, "--test", t)
    assert "written=3" in out, out
    assert board_dump(lb, t)[0] == before[0]
    # The same rows but for when they were written.
    assert [r.rsplit("|", 1)[0] for r in board_dump(lb, t)[1].splitlines()] \
        == [r.rsplit("|", 1)[0] for r in before[1].splitlines()]


def test_a_zero_on_another_test_keeps_a_global_ties_order(lb, http):
    """u and v tie on the global board, u first.  u's 0 on another test
    adds nothing to u's sum, so it must not make u's time later: the
    drainer (Redis only raises a value) and a rebuild (which computes it
    afresh) then order the tie alike, and agree to the encoded value."""
    t1, t2 = new_test(lb), new_test(lb)
    u, v = student(lb)["id"], student(lb)["id"]
    now = time.time()
    submit(lb, t1, u, 100, now - 30)
    submit(lb, t1, v, 100, now - 20)
    drain(lb)
    submit(lb, t2, u, 0, now - 10)
    drain(lb)
    key = board_key(lb, None, "all")
    drained = [redis_cli(lb, "ZSCORE", key, str(x)) for x in (u, v)]
    durable = lb.psql("SELECT user_id, score, reached_at FROM "
                      "leaderboard_entries WHERE test_id IS NULL AND "
                      "period = 'all' AND user_id IN (%d, %d) ORDER BY "
                      "user_id" % (u, v))
    assert float(drained[0]) > float(drained[1]), drained   # u first
    out = rebuild(lb, "--global", "--period", "all")
    assert "failed=0" in out, out
    assert [redis_cli(lb, "ZSCORE", key, str(x)) for x in (u, v)] == drained
    assert lb.psql("SELECT user_id, score, reached_at FROM "
                   "leaderboard_entries WHERE test_id IS NULL AND "
                   "period = 'all' AND user_id IN (%d, %d) ORDER BY user_id"
                   % (u, v)) == durable


def test_drainers_and_rebuilds_together_lose_nothing_and_never_deadlock(
        lb, tmp_path):
    """Two drainers on the same users' jobs while full rebuilds run (the
    global boards, then each test's, in one transaction): a job locks its
    six entries in the order a rebuild writes boards, so nothing waits on
    a cycle -- every job done at the first try (with the test's boards
    locked first, PostgreSQL broke a deadlock in each of three runs: a
    retry), every rebuild whole, and the entries after are what a
    rebuild computes."""
    t = new_test(lb)
    us = [student(lb)["id"] for _ in range(8)]
    # 600 attempts over the eight, a second apart, and their jobs, as
    # submit() writes one.
    lb.psql(
        "WITH a AS (INSERT INTO test_attempts (test_id, user_id, "
        "started_at, expires_at, submitted_at, score, correct, total, "
        "answers, answer_key) SELECT %d, (ARRAY[%s])[1 + g %% 8], "
        "now() - interval '1 hour', now() + interval '1 hour', "
        "now() - g * interval '1 second', (g * 37) %% 101, "
        "(g * 37) %% 101, 100, '{}', '{}' FROM generate_series(1, %d) g "
        "RETURNING id) INSERT INTO outbox (queue, kind, payload, "
        "idempotency_key) SELECT 'leaderboard', 'attempt_submitted', "
        "jsonb_build_object('attemptId', id), 'leaderboard:attempt:' || id "
        "FROM a" % (t, ",".join(str(u) for u in us), 600))
    p = lb.program("keel-outbox-relay", "--once")
    assert p.returncode == 0, p.stderr
    got = [None, None]

    def drainer(i):             # a lock of its own, as on two hosts
        (tmp_path / str(i)).mkdir()
        env = dict(DRAIN_ENV, KEEL_LOCK_DIR=str(tmp_path / str(i)))
        got[i] = lb.program("keel-drain-leaderboard", "--until-empty",
                            "--budget", 60, timeout=90, env=env)
    drainers = [threading.Thread(target=drainer, args=(i,))
                for i in range(2)]
    for d in drainers:
        d.start()
    outs = []
    try:
        while any(d.is_alive() for d in drainers):
            outs.append(rebuild(lb))     # cron's: every board, one go
    finally:
        for d in drainers:
            d.join(timeout=120)
    for p in got:
        assert p.returncode == 0, p.stderr
        assert re.search(r"failed=0 retried=0 ", p.stdout), \
            p.stdout + p.stderr
    assert sum(int(re.search(r"processed=(\d+)", p.stdout).group(1))
               for p in got) == 600
    for out in outs:
        assert " failed=0 " in out, out
    before = durable(lb, us)
    # What a rebuild computes from the attempts is what they wrote.
    out = rebuild(lb, "--test", t)
    assert "written=0" in out, out
    out = rebuild(lb, "--global")
    assert "written=0" in out, out
    assert durable(lb, us) == before
    # Each user on the six (scope, period) boards; the attempts' ten
    # minutes may span two weeks or months, and then two of a period.
    assert len({(r.split("|")[0], r.split("|")[1], r.split("|")[3])
                for r in before.splitlines()}) == 6 * len(us)


def durable(stack, users):
    """users' durable entries, every scope's, with when they changed."""
    return stack.psql(
        "SELECT COALESCE(test_id, 0), period, period_start, user_id, score, "
        "attempts, reached_at, updated_at FROM leaderboard_entries WHERE "
        "user_id IN (%s) ORDER BY 1, 2, 3, 4"
        % ", ".join(str(u) for u in users))


def test_rebuild_writes_what_the_drainer_missed(lb, http):
    """The rebuild compares each board's durable copy with the entries
    it computes (a count and a hash per board) and writes the boards that
    differ, only their changed entries: attempts the drainer never saw
    (no job) land in the durable copy as the drainer would have written
    them, on the test's boards and, by a full rebuild, the global ones."""
    t = new_test(lb)
    a, b, c = (student(lb)["id"] for _ in range(3))
    submit(lb, t, a, 40)
    submit(lb, t, b, 70)
    drain(lb)
    out = rebuild(lb, "--test", t)
    assert "processed=3 failed=0" in out and "written=0" in out, out
    # Two attempts no job announced: b's better score, a new user c.
    missed = [unannounced_attempt(lb, t, u, s) for u, s in ((b, 90), (c, 80))]
    out = rebuild(lb, "--test", t)
    # b's and c's entries on the test's three boards; a's untouched.
    assert "processed=3 failed=0" in out and "written=6" in out, out
    memcached_cmd(lb, "flush_all")
    assert ranks(board(http, t)) == [(b, 1, 90, 2), (c, 2, 80, 1),
                                     (a, 3, 40, 1)]
    out = rebuild(lb)
    assert "failed=0" in out, out
    # Their global entries (their only test): the same scores.
    for period in ("all", "week", "month"):
        assert [int(float(redis_cli(lb, "ZSCORE", board_key(
            lb, None, period), u))) >> 32 for u in (a, b, c)] == [40, 90, 80]
    # What the drainer computes from the same attempts: nothing to
    # change, not one row rewritten, the boards as they are.
    before = durable(lb, [a, b, c]), board_dump(lb, t)[0]
    assert len(before[0].splitlines()) == 18
    for aid in missed:
        enqueue(lb, "leaderboard", "attempt_submitted", {"attemptId": aid},
                "leaderboard:attempt:%d" % aid)
    assert "processed=2 " in drain(lb, relay=False)
    assert (durable(lb, [a, b, c]), board_dump(lb, t)[0]) == before
    assert "written=0" in rebuild(lb, "--test", t)


def test_rebuild_finds_an_entry_off_by_a_fraction_of_a_second(lb, http):
    """The boards' hashes take reached_at to the microsecond: a durable
    entry that differs by half a second alone is found and written back."""
    t = new_test(lb)
    u = student(lb)["id"]
    submit(lb, t, u, 75)
    drain(lb)
    before = board_dump(lb, t)
    lb.psql("UPDATE leaderboard_entries SET reached_at = reached_at + "
            "interval '0.5 second' WHERE test_id = %d AND period = 'month'"
            % t)
    out = rebuild(lb, "--test", t)
    assert "processed=3 failed=0" in out and "written=1" in out, out
    after = board_dump(lb, t)
    assert after[0] == before[0]
    assert [r.rsplit("|", 1)[0] for r in after[1].splitlines()] \
        == [r.rsplit("|", 1)[0] for r in before[1].splitlines()]


def test_a_rebuild_that_fails_changes_nothing(lb, http):
    """A failure in the rebuild's transaction (here the durable write,
    refused by a trigger) fails every board: the live boards and the
    durable copy stay as they were and no fresh key is left behind."""
    t = new_test(lb)
    a, b, c = (student(lb)["id"] for _ in range(3))
    submit(lb, t, a, 50)
    submit(lb, t, b, 60)
    drain(lb)
    # An attempt no job announced: the rebuild has an entry to write.
    unannounced_attempt(lb, t, c, 99)
    before = board_dump(lb, t)
    with refusing_durable_writes(lb, "e2e_refuse_%d" % t,
                                 "NEW.user_id = %d" % c):
        p = lb.program("keel-leaderboard-rebuild", "--test", t)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "processed=0 failed=3" in p.stdout, p.stdout
    assert board_dump(lb, t) == before
    for period in ("all", "week", "month"):
        assert redis_cli(lb, "EXISTS", board_key(lb, t, period)) == "1"
        assert redis_cli(lb, "EXISTS", board_key(lb, t, period) + ":new") \
            == "0"
    # The next run does it all.
    assert "processed=3 failed=0" in rebuild(lb, "--test", t)
    memcached_cmd(lb, "flush_all")
    assert ranks(board(http, t)) == [(c, 1, 99, 1), (b, 2, 60, 1),
                                     (a, 3, 50, 1)]


def test_a_write_failing_on_a_later_board_keeps_the_boards_swapped_before(
        lb, http):
    """Boards are swapped in one by one, each after its durable write: a
    write failing on the third board (month) fails it and every board
    after it; the two swapped before hold what the attempts say, the
    durable copy is rolled back whole, and the next run writes it."""
    t = new_test(lb)
    a, c = student(lb)["id"], student(lb)["id"]
    submit(lb, t, a, 50)
    drain(lb)
    unannounced_attempt(lb, t, c, 99)
    before = board_dump(lb, t)
    with refusing_durable_writes(lb, "e2e_refuse_m%d" % t,
                                 "NEW.test_id = %d AND NEW.period = 'month'"
                                 % t):
        p = lb.program("keel-leaderboard-rebuild", "--test", t)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "processed=2 failed=1" in p.stdout, p.stdout
    after = board_dump(lb, t)
    assert after[1] == before[1]            # the durable copy as it was
    assert after[0]["month"] == before[0]["month"]
    for period in ("all", "week"):
        # ZRANGE: lowest first.
        assert [m for m, _ in after[0][period]] == [str(a), str(c)]
    assert redis_cli(lb, "EXISTS", board_key(lb, t, "month") + ":new") \
        == "0"
    out = rebuild(lb, "--test", t)
    assert "processed=3 failed=0" in out and "written=3" in out, out
    memcached_cmd(lb, "flush_all")
    assert ranks(board(http, t, period="month")) == [(c, 1, 99, 1),
                                                     (a, 2, 50, 1)]


def test_a_change_to_one_board_leaves_other_tests_pages_cached(lb, http):
    """DESIGN.md's leaderboard:<scope> namespaces: the drainer and the
    rebuild invalidate the scopes they change, not every board's pages."""
    ta, tb = new_test(lb), new_test(lb)
    ua, ub = student(lb)["id"], student(lb)["id"]
    submit(lb, ta, ua, 40)
    submit(lb, tb, ub, 60)
    drain(lb)
    memcached_cmd(lb, "flush_all")

    def get(test):
        r = http.get("/api/leaderboard", params={"testId": test})
        assert r.status_code == 200, r.text
        return r

    for test in (ta, tb, None):
        assert get(test).headers["X-Cache"] == "MISS"
        assert get(test).headers["X-Cache"] == "HIT"
    # A submit to test A: A's and the global pages are new, B's stay.
    submit(lb, ta, ub, 90)
    drain(lb)
    a = get(ta)
    assert a.headers["X-Cache"] == "MISS"
    assert ranks(a.json()) == [(ub, 1, 90, 1), (ua, 2, 40, 1)]
    assert get(None).headers["X-Cache"] == "MISS"
    assert get(tb).headers["X-Cache"] == "HIT"
    # A rebuild of test B's boards: B's pages only.
    assert get(ta).headers["X-Cache"] == "HIT"
    rebuild(lb, "--test", tb)
    assert get(tb).headers["X-Cache"] == "MISS"
    assert get(ta).headers["X-Cache"] == "HIT"
    assert get(None).headers["X-Cache"] == "HIT"
    # A testId the route refuses is never cached, in no namespace.
    for _ in range(2):
        r = http.get("/api/leaderboard?testId=x")
        assert_error(r, 400, "validation_failed")


def test_a_rename_refreshes_every_cached_page_showing_the_user(lb, http):
    """API.md: a GET after a successful write never returns the old data.
    A user's name is on the pages of every scope they have entries in
    (two tests here, and the global board), every period's; a test they
    are not on keeps its pages cached."""
    ta, tb, tc = new_test(lb), new_test(lb), new_test(lb)
    u, other = student(lb)["id"], student(lb)["id"]
    submit(lb, ta, u, 70)
    submit(lb, tb, u, 50)
    submit(lb, tc, other, 90)
    drain(lb)
    pages = [(t, p) for t in (ta, tb, None) for p in ("all", "week",
                                                        "month")]
    # The global board holds the module's other users too: the page
    # that starts at this user's rank.
    token = login(http, make_user_email(lb, u))
    offset = {p: me(http, token, period=p).json()["rank"] - 1
              for p in ("all", "week", "month")}

    def get(test, period):
        q = {"period": period, "limit": 100}
        if test is not None:
            q["testId"] = test
        else:
            q["offset"] = offset[period]
        r = http.get("/api/leaderboard", params=q)
        assert r.status_code == 200, r.text
        return r

    def name_on(r):
        return [e["name"] for e in r.json()["data"] if e["userId"] == u]

    for test, period in pages + [(tc, "all")]:
        get(test, period)
        assert get(test, period).headers["X-Cache"] == "HIT"
    r = http.patch("/api/users/%d" % u, json={"name": "Renamed Person"})
    assert r.status_code == 200, r.text
    for test, period in pages:
        r = get(test, period)
        assert name_on(r) == ["Renamed Person"], (test, period, r.text)
        assert r.headers["X-Cache"] == "MISS", (test, period)
    assert get(tc, "all").headers["X-Cache"] == "HIT"


def test_postgres_fallback_same_answer_then_rebuild_restores(lb, http):
    t = new_test(lb)
    users = [student(lb) for _ in range(5)]
    now = time.time()
    for i, (u, s) in enumerate(zip(users, (70, 90, 70, 50, 90))):
        submit(lb, t, u["id"], s, now - 60 + i)
    drain(lb)
    tok = login(http, users[2]["email"])
    key = board_key(lb, t)
    memcached_cmd(lb, "flush_all")
    from_redis = [board(http, t), board(http, t, limit=2, offset=1)]
    mine = me(http, tok, t).json()
    assert mine == {"userId": users[2]["id"], "rank": 3, "score": 70,
                    "attempts": 1}
    # Those came from Redis: a score changed in PostgreSQL alone shows
    # only once the board is gone.
    lb.psql("UPDATE leaderboard_entries SET score = 1 WHERE test_id = %d "
            "AND period = 'all' AND user_id = %d" % (t, users[3]["id"]))
    memcached_cmd(lb, "flush_all")
    assert board(http, t) == from_redis[0]
    lb.psql("UPDATE leaderboard_entries SET score = 50 WHERE test_id = %d "
            "AND period = 'all' AND user_id = %d" % (t, users[3]["id"]))
    assert redis_cli(lb, "DEL", key) == "1"
    memcached_cmd(lb, "flush_all")
    from_pg = [board(http, t), board(http, t, limit=2, offset=1)]
    assert redis_cli(lb, "EXISTS", key) == "0"     # read without it
    assert from_pg == from_redis
    assert me(http, tok, t).json() == mine
    # A page past the end, and the size, agree too.
    assert board(http, t, offset=50) == {**from_redis[0], "data": [],
                                         "page": {"limit": 100, "offset": 50,
                                                  "total": 5}}
    # The next rebuild restores the board.
    out = rebuild(lb, "--test", t)
    assert "processed=3 failed=0" in out, out
    assert redis_cli(lb, "ZCARD", key) == "6"
    memcached_cmd(lb, "flush_all")
    assert [board(http, t), board(http, t, limit=2, offset=1)] == from_redis


def test_rebuild_of_everything_prints_a_summary(lb):
    out = rebuild(lb)
    assert "failed=0" in out and "skipped=0" in out, out
    # The global boards are back too.
    assert redis_cli(lb, "EXISTS", board_key(lb, None, "all")) == "1"


# ------------------------------------------------------------ bad input

@pytest.mark.parametrize("query,field", [
    ("period=year", "period"), ("limit=0", "limit"), ("limit=1000", "limit"),
    ("offset=-1", "offset"), ("offset=10001", "offset"),
    ("testId=abc", "testId"), ("testId=0", "testId"), ("sort=rank", "sort"),
])
def test_bad_query_is_a_400_naming_it(lb, http, query, field):
    r = http.get("/api/leaderboard?" + query)
    assert_error(r, 400, "validation_failed")
    assert field in r.json()["fields"]
    if field not in ("limit", "offset"):
        r = http.get("/api/leaderboard/me?" + query)
        assert_error(r, 400, "validation_failed")
        assert field in r.json()["fields"]


def test_me_is_404_off_the_board(lb, http):
    t = new_test(lb)
    submit(lb, t, student(lb)["id"], 30)
    drain(lb)
    assert_error(http.get("/api/leaderboard/me", params={"testId": t}),
                 404, "not_found")


# -------------------------------------------------------- notifications

def test_attempt_graded_notification_once_even_when_run_twice(lb):
    u = student(lb)
    t = new_test(lb, "Čeština ✓")
    payload = json.dumps({"userId": u["id"], "attemptId": 4242,
                          "testId": t, "testTitle": "Čeština ✓",
                          "score": 85, "correct": 17, "total": 20,
                          "late": True, "extra": "ignored"})
    key = "notification:attempt:%d:%d" % (4242, u["id"])
    for _ in range(2):
        enqueue(lb, "notifications", "attempt_graded", payload, key)
        out = drain(lb, "keel-drain-notifications", relay=False)
        assert "processed=1 " in out, out
        # Forgotten by Redis: the same job can be delivered again.
        p = lb.program("keel-queues", "purge", "notifications", "all")
        assert p.returncode == 0, p.stderr
    rows = lb.psql(
        "SELECT kind, title, body, data::text FROM notifications "
        "WHERE user_id = %d" % u["id"]).splitlines()
    assert len(rows) == 1, rows
    kind, title, body, data = rows[0].split("|")
    assert (kind, title) == ("attempt_graded", "Result: Čeština ✓")
    assert "85%" in body and "17 of 20" in body and "late" in body
    assert json.loads(data) == {"attemptId": 4242, "testId": t,
                                "score": 85, "late": True}


def test_attempt_graded_with_a_bad_payload_is_dead_lettered(lb):
    enqueue(lb, "notifications", "attempt_graded", {"userId": 1},
            "bad-graded")
    out = drain(lb, "keel-drain-notifications", relay=False)
    assert "failed=1 " in out, out


# ------------------------------------------- Redis lost during a rebuild

def abandoned_fresh_key(stack, key, members, sentinel=False, ttl=0):
    """key as a writer that recreated it after Redis lost it leaves it:
    members {user: score}, with no TTL and no sentinel unless asked."""
    args = []
    for u, s in members.items():
        args += ["%d" % (s << 32), str(u)]
    if sentinel:
        args += ["-1", "~rebuild:gone:1:1"]
    redis_cli(stack, "ZADD", key, *args)
    if ttl:
        redis_cli(stack, "EXPIRE", key, ttl)


def test_a_fresh_key_no_run_owns_is_taken_over_by_the_next_rebuild(lb):
    """Redis emptied while a rebuild filled a board: a fresh key with
    no TTL or no sentinel is no run's.  The next rebuild takes it over
    and builds every board (it used to skip them all, forever, and say
    failed=0)."""
    t = new_test(lb)
    a, b = student(lb)["id"], student(lb)["id"]
    submit(lb, t, a, 40)
    submit(lb, t, b, 70)
    drain(lb)
    for period in ("all", "week", "month"):
        redis_cli(lb, "DEL", board_key(lb, t, period))
    # No TTL, no sentinel (as the flush left it); a sentinel but no
    # TTL; a TTL but no sentinel.
    abandoned_fresh_key(lb, board_key(lb, t, "all") + ":new", {a: 40})
    abandoned_fresh_key(lb, board_key(lb, t, "week") + ":new", {a: 40},
                        sentinel=True)
    abandoned_fresh_key(lb, board_key(lb, t, "month") + ":new", {a: 40},
                        ttl=600)
    p = lb.program("keel-leaderboard-rebuild", "--test", t)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "processed=3 failed=0" in p.stdout, p.stdout
    assert "skipped=0" in p.stdout, p.stdout
    assert p.stderr.count("took over a fresh key no run owned") == 3, \
        p.stderr
    for period in ("all", "week", "month"):
        key = board_key(lb, t, period)
        assert redis_cli(lb, "ZCARD", key) == "3", period
        assert redis_cli(lb, "EXISTS", key + ":new") == "0", period
        assert int(float(redis_cli(lb, "ZSCORE", key, b))) >> 32 == 70


def test_the_drainers_add_skips_a_fresh_key_no_run_owns(lb, http):
    """The drainer's add, finding the board lost and only a fresh key no
    run owns, doesn't count that as stored (no swap will ever make it
    the board): it builds the board, its entry on it."""
    t = new_test(lb)
    a, b = student(lb)["id"], student(lb)["id"]
    submit(lb, t, a, 40)
    drain(lb)
    key = board_key(lb, t)
    redis_cli(lb, "DEL", key)
    abandoned_fresh_key(lb, key + ":new", {a: 40})
    submit(lb, t, b, 90)
    drain(lb)
    assert redis_cli(lb, "EXISTS", key + ":new") == "0"
    assert redis_cli(lb, "ZCARD", key) == "3"
    assert int(float(redis_cli(lb, "ZSCORE", key, b))) >> 32 == 90
    memcached_cmd(lb, "flush_all")
    assert ranks(board(http, t)) == [(b, 1, 90, 1), (a, 2, 40, 1)]


@contextlib.contextmanager
def held_advisory_lock(stack, k):
    """Advisory lock k held by a psql session of its own for the with
    block (a trigger taking it waits until then)."""
    url, env = psql_env(stack.env.get("KEEL_STACK_PG_URL")
                        or stack.env["DATABASE_URL"])
    p = subprocess.Popen(["psql", "-X", "-q", "-At", "-d", url],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        p.stdin.write("SELECT pg_advisory_lock(%d);\n" % k)
        p.stdin.flush()
        wait_until(lambda: stack.psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
            "objid = %d AND granted" % k) == "1", 10, "the advisory lock")
        yield
    finally:
        p.stdin.write("SELECT pg_advisory_unlock(%d);\n\\q\n" % k)
        p.stdin.close()
        p.wait(30)


def test_a_fresh_key_redis_lost_mid_rebuild_is_never_recreated(lb):
    """Redis emptied while a rebuild feeds its boards: the fill adds only
    to a fresh key holding the run's sentinel, so it never recreates one
    without (no sentinel, no TTL: no swap takes it, nothing drops it).
    The rebuild is held in the first board's durable write (a trigger
    waiting on a lock) while the later boards' fresh keys hold only the
    sentinel; the boards are emptied then.  That run fails every board
    and says so; the next builds them all."""
    t = new_test(lb)
    a, c = student(lb)["id"], student(lb)["id"]
    submit(lb, t, a, 50)
    drain(lb)
    unannounced_attempt(lb, t, c, 99)      # a durable write to make
    name = "e2e_hold_%d" % t
    lb.psql("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN PERFORM pg_advisory_xact_lock_shared(%d); RETURN NEW; "
            "END$$; CREATE TRIGGER %s BEFORE INSERT ON leaderboard_entries "
            "FOR EACH ROW WHEN (NEW.test_id = %d AND NEW.period = 'all') "
            "EXECUTE FUNCTION %s()" % (name, t, name, t, name))
    keys = [board_key(lb, t, period) for period in ("all", "week",
                                                     "month")]
    try:
        with held_advisory_lock(lb, t):
            p = lb.spawn("keel-leaderboard-rebuild", "--test", t)
            try:
                wait_until(lambda: lb.psql(
                    "SELECT count(*) FROM pg_locks WHERE locktype = "
                    "'advisory' AND objid = %d AND NOT granted" % t) == "1",
                    60, "the rebuild waiting in its first durable write")
                # The first board filled (two entries, the sentinel),
                # the later ones not yet.
                assert [redis_cli(lb, "ZCARD", k + ":new") for k in keys] \
                    == ["3", "1", "1"]
                # Redis loses the boards (FLUSHALL would take the queues
                # of the tests around too).
                redis_cli(lb, "DEL", *(keys + [k + ":new" for k in keys]))
            except BaseException:
                p.kill()
                p.wait()
                raise
        out, err = p.communicate(timeout=120)
    finally:
        lb.psql("DROP TRIGGER %s ON leaderboard_entries; DROP FUNCTION "
                "%s()" % (name, name))
    assert p.returncode == 1, out + err
    assert "processed=0 failed=3" in out, out
    assert "the fresh key was lost before the swap" in err, err
    for k in keys:
        assert redis_cli(lb, "EXISTS", k + ":new") == "0", k
        assert redis_cli(lb, "EXISTS", k) == "0", k
    out = rebuild(lb, "--test", t)
    assert "processed=3 failed=0" in out and "skipped=0" in out, out
    for k in keys:
        assert redis_cli(lb, "ZCARD", k) == "3", k
