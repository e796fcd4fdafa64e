# SPDX-License-Identifier: ISC
"""test_auth_hardening.py -- the login as an attacker tries it (issue 9,
items 1-3): no password oracle while Redis is away, a brute-force limit
that holds exactly under concurrency, per address and login string as
the lookup folds it and per account over every address, and says
neither whether an account exists nor which login strings name one;
and no login token kept by idempotency.

The brute-force tests run their own keel-auth on the stack's auth socket
with a low auth limit (the shared stack's limits are huge), and give the
stack's own back afterwards.
"""

import concurrent.futures
import hashlib
import re
import uuid

from accounts import PASSWORD, make_user, session_for
from helpers import (OwnApp, assert_error, car_body, post_from, redis_cli,
                     request, wait_until)

AUTH_LIMIT = 5


def OwnAuth(stack, **env):
    return OwnApp(stack, "auth", **env)


def login(anon, who, password, headers=None):
    return anon.post("/api/auth/login", json={"login": who,
                                              "password": password},
                     headers=headers)


def test_login_while_redis_is_down_answers_503_whatever_the_password(
        stack, anon):
    u = make_user(stack, "student")
    stack.stop_component("redis")
    try:
        wrong = [login(anon, u["email"], "wrong-password-%d" % i)
                 for i in range(12)]
        right = login(anon, u["email"], PASSWORD)
    finally:
        stack.start_component("redis")
    # Neither the answer nor its kind tells a right guess from a wrong
    # one, and no guess is checked unlimited: all are refused first.
    assert [r.status_code for r in wrong] == [503] * 12
    assert right.status_code == 503, right.text
    assert right.json()["error"] == "unavailable"
    wait_until(lambda: login(anon, u["email"], PASSWORD).status_code == 200,
               20, "a login once Redis is back", step=0.2)


def test_brute_force_limit_is_exact_under_concurrency(stack):
    u = make_user(stack, "student")
    url = stack.url("/api/auth/login")

    def attempt(i):
        return request("POST", url, json={"login": u["email"],
                                          "password": "wrong-%d" % i},
                       timeout=60).status_code

    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT,
                 KEEL_WORKERS="2"):
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as ex:
            codes = list(ex.map(attempt, range(40)))
    # Each admitted attempt held its place before its password was
    # checked: exactly the limit reaches the check, the rest are 429.
    assert codes.count(401) == AUTH_LIMIT, codes
    assert codes.count(429) == 40 - AUTH_LIMIT, codes


KELVIN = "\u212a"   # KELVIN SIGN: PostgreSQL's lower() makes it 'k'


def test_brute_force_limit_counts_the_login_as_the_lookup_folds_it(
        stack, anon):
    """An address's bucket is the login string as the account lookup
    folds it (lower(), Unicode and all): a case spelling of the email
    shares the email's, the username has its own."""
    u = with_k_email(stack, "student")
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        by_email = [login(anon, u["email"], "wrong-a-%d" % i).status_code
                    for i in range(3)]
        by_upper = [login(anon, u["email"].upper(), "wrong-b-%d" % i)
                    .status_code for i in range(3)]
        # The route's limiter lowers ASCII only: KELVIN SIGN is a fresh
        # string to it, and the email's own to the lookup and its bucket.
        kelvin = login(anon, KELVIN + u["email"][1:], PASSWORD)
        by_name = login(anon, u["username"].upper(), PASSWORD)
    assert by_email == [401] * 3
    assert by_upper == [401, 401, 429], by_upper
    assert kelvin.status_code == 429, kelvin.text
    assert int(kelvin.headers["Retry-After"]) > 0
    assert by_name.status_code == 200, by_name.text


def login_from(stack, src, who, password):
    """A login sent from the loopback address src: its status."""
    return post_from(stack, src, "/api/auth/login",
                     {"login": who, "password": password})


def test_another_address_still_logs_in_when_one_spent_the_emails_tries(
        stack):
    """The limit is per address and login string (API.md): five wrong
    passwords from one address are no lockout of the account's owner
    elsewhere (a trivial denial of service, admins included)."""
    u = make_user(stack, "admin")
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        spent = [login_from(stack, "127.0.0.2", u["email"], "wrong-%d" % i)
                 for i in range(AUTH_LIMIT + 1)]
        upper = login_from(stack, "127.0.0.2", u["email"].upper(), PASSWORD)
        by_name = login_from(stack, "127.0.0.2", u["username"], PASSWORD)
        owner = login_from(stack, "127.0.0.3", u["email"], PASSWORD)
    assert spent == [401] * AUTH_LIMIT + [429], spent
    assert upper == 429         # the email however it is cased
    assert by_name == 200       # the username is a bucket of its own
    assert owner == 200


def auth_fields(r):
    """The auth limiter's items of r's RateLimit field (the address's,
    and a login's own buckets), as (name, remaining), sorted."""
    return sorted((name, int(n)) for name, n in re.findall(
        r'"(auth(?:-login|-account)?)";r=(\d+)', r.headers["RateLimit"]))


def item_names(field):
    """The names of a RateLimit or RateLimit-Policy field's items."""
    return [item.split(";")[0].strip() for item in field.split(",")]


def test_a_login_s_ratelimit_items_each_have_a_name_of_their_own(
        stack, anon):
    """A client pairs the RateLimit field's items with the policy's by
    name: a login's buckets (the address's, the login string's, the
    account's once spent) each go by a name of their own, and both
    fields name the same items."""
    u = make_user(stack, "student")
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT,
                 KEEL_RATELIMIT_AUTH_ACCOUNT="2/900"):
        rs = [login(anon, u["email"], "wrong-%d" % i) for i in range(3)]
    for r in rs:
        policy = item_names(r.headers["RateLimit-Policy"])
        fields = item_names(r.headers["RateLimit"])
        assert len(set(policy)) == len(policy), policy
        assert fields == policy, (fields, policy)
    assert {'"auth"', '"auth-login"'} <= set(
        item_names(rs[0].headers["RateLimit-Policy"]))
    # The account's bucket, spent by the second try, shows from then on.
    assert rs[2].status_code == 429, rs[2].text
    assert '"auth-account"' in item_names(rs[2].headers["RateLimit"])


def test_a_spent_email_says_nothing_of_its_username(stack, anon):
    """Five wrong passwords on an email, then a guessed username: the
    account's username answers as a missing one does (401, and the same
    counts), so no 429 links a username to an email."""
    u = make_user(stack, "student")
    missing = "nobody_" + uuid.uuid4().hex[:12]
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        spent = [login(anon, u["email"], "wrong-%d" % i).status_code
                 for i in range(AUTH_LIMIT + 1)]
        own = login(anon, u["username"], "wrong-x")
        other = login(anon, missing, "wrong-x")
    assert spent == [401] * AUTH_LIMIT + [429], spent
    assert own.status_code == other.status_code == 401, (own.text,
                                                         other.text)
    assert auth_fields(own) == auth_fields(other), (
        own.headers["RateLimit"], other.headers["RateLimit"])
    assert own.headers["RateLimit-Policy"] == \
        other.headers["RateLimit-Policy"]


def test_a_login_s_counts_say_nothing_of_which_logins_are_one_account(
        stack, anon):
    """One wrong password on an email, then one on a username: the
    RateLimit counts the username's answer shows are a missing
    username's, whether or not it is the email's account (the account's
    count over every address stays out of the headers)."""
    u = make_user(stack, "student")
    missing = "nobody_" + uuid.uuid4().hex[:12]
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        assert login(anon, u["email"], "wrong-1").status_code == 401
        own = login(anon, u["username"], "wrong-2")
        other = login(anon, missing, "wrong-2")
    assert own.status_code == other.status_code == 401
    assert auth_fields(own) == auth_fields(other), (
        own.headers["RateLimit"], other.headers["RateLimit"])
    assert own.headers["RateLimit-Policy"] == \
        other.headers["RateLimit-Policy"]


def with_k_email(stack, role):
    """make_user's user, with an email that holds a 'k'."""
    u = make_user(stack, role)
    u["email"] = "kate-%s@e2e.test" % uuid.uuid4().hex[:12]
    stack.psql("UPDATE users SET email = '%s' WHERE id = %d"
               % (u["email"], u["id"]))
    return u


def test_kelvin_sign_tells_no_existing_email_from_a_missing_one(
        stack, anon):
    """KELVIN SIGN folds to 'k' in the lookup (lower()) but not in C's
    tolower(): a locked email, spelled with it, answers alike whether an
    account has the email or not -- 429, the locked bucket, both."""
    u = with_k_email(stack, "student")
    missing = "kim-%s@e2e.test" % uuid.uuid4().hex[:12]
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        spent = [login(anon, e, "wrong-%d" % i).status_code
                 for e in (u["email"], missing)
                 for i in range(AUTH_LIMIT + 1)]
        kelvin = [login(anon, KELVIN + e[1:], "wrong-x").status_code
                  for e in (u["email"], missing)]
    assert spent == ([401] * AUTH_LIMIT + [429]) * 2, spent
    assert kelvin == [429, 429], kelvin


def test_the_account_limit_holds_over_every_address(stack):
    """KEEL_RATELIMIT_AUTH_ACCOUNT bounds a guesser with many addresses:
    past it no address gets a password checked, the right one neither."""
    u = make_user(stack, "student")
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="3/900",
                 KEEL_RATELIMIT_AUTH_ACCOUNT="7/900"):
        codes = [login_from(stack, "127.0.0.%d" % (10 + i // 3), u["email"],
                            "wrong-%d" % i) for i in range(7)]
        late = [login_from(stack, "127.0.0.%d" % a, u["email"], PASSWORD)
                for a in (20, 21)]
    assert codes == [401] * 7, codes
    assert late == [429, 429], late


def test_current_password_guesses_are_logins_guesses(stack, anon):
    """A session's PATCH of its own password checks currentPassword: a
    password oracle unless its guesses count as a login's do, in the
    same buckets (a stolen session must not guess 10x faster than a
    login form)."""
    u = make_user(stack, "student")
    h = {"Authorization": "Bearer " +
         login(anon, u["email"], PASSWORD).json()["token"]}
    url = "/api/users/%d" % u["id"]

    def change(current):
        return anon.patch(url, headers=h, json={
            "password": "a-new-password-%d" % len(current),
            "currentPassword": current}).status_code

    limits = {"KEEL_RATELIMIT_AUTH": "%d/900" % AUTH_LIMIT,
              "KEEL_RATELIMIT_AUTH_ACCOUNT": "%d/900" % (AUTH_LIMIT + 2)}
    with OwnApp(stack, "users", **limits):
        guesses = [change("wrong-%d" % i) for i in range(AUTH_LIMIT + 1)]
        right = change(PASSWORD)
    assert guesses == [422] * AUTH_LIMIT + [429], guesses
    assert right == 429
    # A session names its account one way, its id: this address's
    # bucket of it is not the email's, which still has its tries ...
    with OwnAuth(stack, **limits):
        own = login_from(stack, "127.0.0.1", u["email"], PASSWORD)
        # ... while the account's bucket of every address is a login's:
        # the guesses spent five of its seven.
        more = [login_from(stack, "127.0.0.5", u["email"], "wrong-%d" % i)
                for i in range(2)]
        late = login_from(stack, "127.0.0.6", u["email"], PASSWORD)
    assert own == 200
    assert more == [401, 401], more
    assert late == 429


def test_a_right_current_password_gives_its_place_back(stack, anon):
    u = make_user(stack, "student")
    pw = PASSWORD
    with OwnApp(stack, "users", KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        for i in range(AUTH_LIMIT + 2):
            h = {"Authorization": "Bearer " +
                 login(anon, u["email"], pw).json()["token"]}
            new = "changed-password-%d" % i
            r = anon.patch("/api/users/%d" % u["id"], headers=h,
                           json={"password": new, "currentPassword": pw})
            assert r.status_code == 200, r.text
            pw = new


def test_a_successful_login_gives_its_place_back(stack, anon):
    u = make_user(stack, "student")
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        for _ in range(AUTH_LIMIT + 3):
            r = login(anon, u["email"], PASSWORD)
            assert r.status_code == 200, r.text
        left = int(r.headers["RateLimit-Remaining"])
    # The auth limiter counts failures: every success was given back.
    assert left >= 1


def test_login_takes_no_part_in_idempotency(stack, anon):
    u = make_user(stack, "student")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = login(anon, u["email"], PASSWORD, headers=key)
    again = login(anon, u["email"], PASSWORD, headers=key)
    assert first.status_code == 200 and again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    # A second login, not the first one's token handed out again ...
    assert first.json()["token"] != again.json()["token"]
    # ... and no answer kept anywhere in Redis holds a token.
    for k in redis_cli(stack, "--scan", "--pattern", "keel:idem:*").split():
        body = redis_cli(stack, "HGET", k, "body")
        assert first.json()["token"] not in body
        assert again.json()["token"] not in body


# --------------------------------------------- what a login's name at rest says

def keyed_name(secret, folded):
    """A folded login's name in the auth limiter's keys (limit.c's
    keel_limit_login_hash()): BLAKE2b-128 keyed with BLAKE2b-256 of
    KEEL_SECRET keyed by the label "keel rate logins"."""
    key = hashlib.blake2b(secret.encode(), key=b"keel rate logins",
                          digest_size=32).digest()
    return hashlib.blake2b(folded.encode(), key=key,
                           digest_size=16).hexdigest()


def test_a_typed_login_is_kept_under_a_keyed_hash(stack, anon):
    """A failed login's buckets name the login by a hash keyed with
    KEEL_SECRET: what Redis and its AOF keep can't be matched against a
    guess (the users table, a password typed as the login) without the
    secret."""
    typed = "Pa55word-typed-as-login-%s" % uuid.uuid4().hex[:8]
    with OwnAuth(stack, KEEL_RATELIMIT_AUTH="%d/900" % AUTH_LIMIT):
        assert login(anon, typed, "wrong").status_code == 401
    keys = redis_cli(stack, "--scan", "--pattern",
                     "keel:rate:auth:*").split()
    plain = hashlib.blake2b(typed.lower().encode(),
                            digest_size=16).hexdigest()
    keyed = keyed_name(stack.env["KEEL_SECRET"], typed.lower())
    assert not [k for k in keys if plain in k], keys
    # The route's bucket (ASCII-lowered), the lookup's (lower()), and,
    # no account answering, the account's bucket under the same name.
    assert "keel:rate:auth:s:login:%s:127.0.0.1" % keyed in keys, keys
    assert "keel:rate:auth:id:login:%s" % keyed in keys, keys
    assert [k for k in keys if k.startswith("keel:rate:auth:a:") and
            k.endswith(":" + keyed)], keys
    assert keyed != keyed_name("x" * 32, typed.lower())


# ------------------------------------------------ names shown to other users

# keel_text_one_line(): besides C0 and DEL, the C1 controls (NEL, an 8-bit
# CSI), the line and paragraph separators and the bidi embeddings,
# overrides and isolates, which reach leaderboards, notifications and
# emails other people read.
NOT_ONE_LINE = ["\u0080", "\u0085", "\u009b", "\u009f", "\u2028", "\u2029",
                "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066",
                "\u2067", "\u2068", "\u2069"]
ONE_LINE_MSG = "must be one line, without control characters"


def test_a_name_with_a_c1_or_bidi_control_is_refused(stack, anon):
    u, h = session_for(stack, anon, "customer")
    for c in NOT_ONE_LINE:
        r = anon.patch("/api/users/%d" % u["id"],
                       json={"name": "Ann" + c + "evil"}, headers=h)
        body = assert_error(r, 422, "validation_failed")
        assert body["fields"] == {"name": ONE_LINE_MSG}, (hex(ord(c)), body)
    assert stack.psql("SELECT name FROM users WHERE id = %d"
                      % u["id"]) == u["name"]
    # Names in any script, and a bidi mark, are still names.
    for ok in ("Zo\u00eb \u00dcnal", "\u05e9\u05e8\u05d4 \u200e",
               "\u5c71\u7530"):
        r = anon.patch("/api/users/%d" % u["id"], json={"name": ok},
                       headers=h)
        assert r.status_code == 200 and r.json()["name"] == ok, r.text


def test_a_car_maker_with_a_c1_or_bidi_control_is_refused(http):
    for c in NOT_ONE_LINE:
        r = http.post("/api/cars", json=car_body(
            manufacturer="Volvo" + c + "x"))
        body = assert_error(r, 422, "validation_failed")
        assert body["fields"] == {"manufacturer": ONE_LINE_MSG}, (
            hex(ord(c)), body)
    r = http.post("/api/cars", json=car_body(manufacturer="\u0160koda"))
    assert r.status_code == 201, r.text
