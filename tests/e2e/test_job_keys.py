# SPDX-License-Identifier: ISC
"""test_job_keys.py -- a job's key names its outbox row, not just an id.

Job keys are built on sequence ids (email:attempt:<id>, ...).  PostgreSQL
restored to an earlier point hands those ids out again while Redis keeps
the jobs of the rows the restore took away (completed ones for a day).
The new row's key is then known to Redis; known used to mean done, and
the new attempt's result email, notification and leaderboard entry were
marked completed without ever running.  Each push now carries its row's
origin (id and creation time, lib/outbox.c), and a key known from
another row is that row's job, not this one's (lib/lua/queue_enqueue.lua;
tests/lua/enqueue_cases.py has the script's every case).
"""

import time

import pytest

from accounts import session_for
from helpers import redis_cli
from test_leaderboard import DRAIN_ENV
from test_tests import new_question, new_test, start

SEQS = ("test_attempts_id_seq", "outbox_id_seq", "notifications_id_seq")
GRACE_MS = 600000       # lib/queue_private.h, KEEL_QUEUE_REUSE_GRACE_MS


@pytest.fixture
def queues(stack):
    for q in ("email", "leaderboard", "notifications"):
        p = stack.program("keel-queues", "purge", q, "all")
        assert p.returncode == 0, p.stderr
    stack.clear_mail()
    return stack


def drain_all(stack):
    """What cron does next: the relay, then every exam queue's drainer
    until its queue is empty."""
    p = stack.program("keel-outbox-relay", "--once")
    assert p.returncode == 0, p.stderr
    for prog in ("keel-drain-leaderboard", "keel-drain-notifications",
                 "keel-drain-email"):
        p = stack.program(prog, "--until-empty", "--budget", 20,
                          env=DRAIN_ENV, timeout=60)
        assert p.returncode == 0, p.stderr


def submit(stack, http, test, qids):
    """A new student's attempt at test, submitted: (student, attempt id)."""
    u, h = session_for(stack, http, "student")
    aid = start(http, test, h)["id"]
    r = http.post("/api/attempts/%d/submit" % aid, headers=h,
                  json={"answers": {str(q): 0 for q in qids}})
    assert r.status_code == 200, r.text
    return u, aid


def sequences(stack):
    """{sequence: (the last id handed out, its setval arguments)}."""
    out = {}
    for seq in SEQS:
        last, called = stack.psql("SELECT last_value, is_called FROM %s"
                                  % seq).split("|")
        out[seq] = (int(last) if called == "t" else int(last) - 1,
                    "%s, %s" % (last, "true" if called == "t" else "false"))
    return out


def restore(stack, seqs):
    """PostgreSQL as a restore to the point seqs were read leaves it: the
    rows written since gone, the sequences back.  Redis keeps its jobs."""
    last = {s: v[0] for s, v in seqs.items()}
    stack.psql(
        "BEGIN; DELETE FROM notifications WHERE id > %d; "
        "DELETE FROM leaderboard_entries WHERE user_id IN "
        "(SELECT user_id FROM test_attempts WHERE id > %d); "
        "DELETE FROM test_attempts WHERE id > %d; "
        "DELETE FROM outbox WHERE id > %d; " % (
            last["notifications_id_seq"], last["test_attempts_id_seq"],
            last["test_attempts_id_seq"], last["outbox_id_seq"]) +
        "".join("SELECT setval('%s', %s); " % (s, v[1])
                for s, v in seqs.items()) + "COMMIT;")


def attempt_keys(aid):
    return {"email": "email:attempt:%d" % aid,
            "leaderboard": "leaderboard:attempt:%d" % aid,
            "notifications": "notification:attempt:%d" % aid}


def age_completions(stack, aid):
    """The attempt's jobs completed past the grace: a restore takes
    longer than that, so the old jobs' drainers have long marked them."""
    for q, key in attempt_keys(aid).items():
        jk = "keel:q:%s:j:%s" % (q, key)
        assert redis_cli(stack, "HGET", jk, "state") == "completed", jk
        redis_cli(stack, "HSET", jk, "finished",
                  int(time.time() * 1000) - GRACE_MS - 1000)


def kill(stack, aid):
    """The attempt's jobs dead-lettered just now, as older code's dead()
    left them (their hash a tombstone for a day, its death timed, no
    marks): its drainer's mark of outbox rows dead by key may still be
    on its way."""
    for q, key in attempt_keys(aid).items():
        jk = "keel:q:%s:j:%s" % (q, key)
        assert redis_cli(stack, "HGET", jk, "state") == "completed", jk
        redis_cli(stack, "ZREM", "keel:q:%s:c" % q, key)
        redis_cli(stack, "HSET", jk, "state", "failed", "error", "test",
                  "finished", int(time.time() * 1000))
        redis_cli(stack, "HDEL", jk, "marks")
        redis_cli(stack, "PEXPIRE", jk, 86400000)


def rows(stack, aid):
    """{key: (pushed, outcome)} of the attempt's outbox rows."""
    out = stack.psql(
        "SELECT idempotency_key, (pushed_at IS NOT NULL)::text, "
        "coalesce(outcome, '') FROM outbox WHERE idempotency_key IN "
        "('%s') ORDER BY 1" % "', '".join(attempt_keys(aid).values()))
    return {k: (p, o) for k, p, o in
            (line.split("|") for line in out.splitlines())}


def delivered(stack, http, u, test):
    """What reached the student: result emails, notification rows, and
    whether their attempt is on the test's board."""
    mails = [m for m in stack.mail()
             if m["To"].addresses[0].addr_spec == u["email"]]
    notes = int(stack.psql("SELECT count(*) FROM notifications WHERE "
                           "user_id = %d" % u["id"]))
    board = int(stack.psql("SELECT count(*) FROM leaderboard_entries WHERE "
                           "user_id = %d AND test_id = %d"
                           % (u["id"], test)))
    return len(mails), notes, board > 0


def reused(stack, http):
    """Student A's attempt runs its three jobs; PostgreSQL is restored to
    before it; student B's attempt gets A's id.  (test, qids, B, id)."""
    qids = [new_question(stack, answer=0) for _ in range(2)]
    test = new_test(http, qids, title="Restored test")["id"]
    drain_all(stack)
    seqs = sequences(stack)
    a, aid_a = submit(stack, http, test, qids)
    drain_all(stack)
    assert delivered(stack, http, a, test) == (1, 1, True)
    restore(stack, seqs)
    return test, qids, aid_a


def again(stack, http, test, qids, aid_a):
    """Student B's attempt, submitted: it must get A's id, else the
    restore reused none and nothing is tested.  (B, its id)."""
    b, aid_b = submit(stack, http, test, qids)
    assert aid_b == aid_a, "the restore reused no id: nothing tested"
    return b, aid_b


def every_row(aid, pushed, outcome):
    """rows()'s answer when each of the attempt's rows is so."""
    return {k: (pushed, outcome) for k in attempt_keys(aid).values()}


def recheck(stack):
    """The relay's recheck of rows pushed over a second ago."""
    time.sleep(1.2)
    p = stack.program("keel-outbox-relay", "--once",
                      env={"KEEL_RELAY_RECHECK": "1"})
    assert p.returncode == 0, p.stderr


def test_a_restored_attempt_id_runs_the_new_attempts_jobs(queues, http):
    test, qids, aid_a = reused(queues, http)
    age_completions(queues, aid_a)
    b, aid_b = again(queues, http, test, qids, aid_a)
    drain_all(queues)
    assert delivered(queues, http, b, test) == (1, 1, True)
    assert rows(queues, aid_b) == every_row(aid_b, "true", "completed")
    # And once only: the relay's recheck finds them finished.
    recheck(queues)
    drain_all(queues)
    assert delivered(queues, http, b, test) == (1, 1, True)


def older_code(stack, aid):
    """The attempt's jobs as older code finished them: without marks, so
    their drainer marked outbox rows by key alone (queue_prelude.lua)."""
    for q, key in attempt_keys(aid).items():
        redis_cli(stack, "HDEL", "keel:q:%s:j:%s" % (q, key), "marks")


def origins(stack, aid):
    """{queue: the origin of the attempt's job in Redis}."""
    return {q: redis_cli(stack, "HGET", "keel:q:%s:j:%s" % (q, key),
                         "origin")
            for q, key in attempt_keys(aid).items()}


def test_a_key_whose_old_job_just_completed_runs_the_new_job_at_once(
        queues, http):
    """The old job's drainer marks the row of its own origin, so no mark
    of it can land on the new rows: they are pushed and run at once."""
    test, qids, aid_a = reused(queues, http)
    b, aid_b = again(queues, http, test, qids, aid_a)
    drain_all(queues)
    assert delivered(queues, http, b, test) == (1, 1, True)
    assert rows(queues, aid_b) == every_row(aid_b, "true", "completed")


def test_a_late_mark_of_another_origins_job_finishes_no_row(queues, http):
    """A job of the gone row, finished after the new row was pushed (a
    stalled drainer's late answer), marks the row of its origin: the new
    row stays unfinished, and the relay's recheck finds its job gone and
    runs it."""
    test, qids, aid_a = reused(queues, http)
    old = origins(queues, aid_a)
    b, aid_b = again(queues, http, test, qids, aid_a)
    assert origins(queues, aid_b) != old
    # The jobs on the queues are the gone row's again, as when its
    # drainer answers late.
    for q, key in attempt_keys(aid_b).items():
        redis_cli(queues, "HSET", "keel:q:%s:j:%s" % (q, key), "origin",
                  old[q])
    drain_all(queues)
    assert rows(queues, aid_b) == every_row(aid_b, "true", "")
    recheck(queues)
    drain_all(queues)
    assert rows(queues, aid_b) == every_row(aid_b, "true", "completed")
    assert delivered(queues, http, b, test)[1:] == (1, True)


def test_a_key_whose_old_job_older_code_just_completed_waits_unpushed(
        queues, http):
    """Within the grace after older code completed the old job (its
    drainer may still be marking outbox rows by key alone), the new rows
    are left unpushed -- never marked as run -- and the relay pushes them
    once the grace is over."""
    test, qids, aid_a = reused(queues, http)
    older_code(queues, aid_a)
    b, aid_b = again(queues, http, test, qids, aid_a)
    drain_all(queues)
    assert delivered(queues, http, b, test) == (0, 0, False)
    assert rows(queues, aid_b) == every_row(aid_b, "false", "")
    age_completions(queues, aid_b)
    time.sleep(1.2)                 # the relay asks a row once a second
    drain_all(queues)
    assert delivered(queues, http, b, test) == (1, 1, True)
    assert rows(queues, aid_b) == every_row(aid_b, "true", "completed")


def test_a_key_whose_old_job_older_code_just_killed_waits_unpushed(
        queues, http):
    """As for a completion: pushed before older code's drainer marked
    its rows dead by key, a new row would be marked dead while its job
    waits, and the relay, which watches no finished row, would let a
    Redis loss lose that job.  So the new rows wait unpushed too."""
    test, qids, aid_a = reused(queues, http)
    kill(queues, aid_a)
    b, aid_b = again(queues, http, test, qids, aid_a)
    drain_all(queues)
    assert delivered(queues, http, b, test) == (0, 0, False)
    assert rows(queues, aid_b) == every_row(aid_b, "false", "")
    for q, key in attempt_keys(aid_b).items():
        redis_cli(queues, "HSET", "keel:q:%s:j:%s" % (q, key), "finished",
                  int(time.time() * 1000) - GRACE_MS - 1000)
    time.sleep(1.2)                 # the relay asks a row once a second
    drain_all(queues)
    assert delivered(queues, http, b, test) == (1, 1, True)
    assert rows(queues, aid_b) == every_row(aid_b, "true", "completed")
