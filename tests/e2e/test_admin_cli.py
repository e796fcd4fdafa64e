# SPDX-License-Identifier: ISC
"""test_admin_cli.py -- keel-admin, the operator's command (README "First
admin"): the password comes from stdin, never argv; only the first admin
is made without --force; the account it makes can log in.
"""

import os
import subprocess
import uuid

from accounts import login


def keel_admin(stack, *args, stdin=""):
    env = dict(os.environ)
    env.update(stack.env)
    return subprocess.run(
        [os.path.join(stack.build_dir, "admin", "keel-admin")] + list(args),
        input=stdin, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, timeout=60)


def test_create_admin_refuses_a_second_admin_without_force(stack,
                                                           admin_token):
    # The http fixture's admin exists already.
    tag = uuid.uuid4().hex[:8]
    p = keel_admin(stack, "create-admin", "--email", "a%s@e2e.test" % tag,
                   "--username", "a_" + tag, "--name", "A",
                   stdin="admin-password-1\n")
    assert p.returncode == 1
    assert "admin exists" in p.stderr


def test_create_admin_with_password_from_stdin(stack, anon, admin_token):
    tag = uuid.uuid4().hex[:8]
    email = "root%s@e2e.test" % tag
    p = keel_admin(stack, "create-admin", "--email", email,
                   "--username", "root_" + tag, "--name", "Root " + tag,
                   "--force", stdin="first-admin-password\n")
    assert p.returncode == 0, p.stderr
    assert "first-admin-password" not in p.stdout + p.stderr
    token = login(anon, email, "first-admin-password")
    me = anon.get("/api/auth/me", headers={"Authorization": "Bearer " + token})
    assert me.json()["role"] == "admin"
    hashed = stack.psql("SELECT password_hash FROM users WHERE email = '%s'"
                        % email)
    assert hashed.startswith("$argon2id$")


def test_create_admin_rejects_short_passwords_and_bad_args(stack):
    tag = uuid.uuid4().hex[:8]
    p = keel_admin(stack, "create-admin", "--email", "s%s@e2e.test" % tag,
                   "--username", "s_" + tag, "--name", "S", "--force",
                   stdin="short\n")
    assert p.returncode == 1 and "at least 10" in p.stderr
    p = keel_admin(stack, "create-admin", "--password", "x" * 12)
    assert p.returncode == 2


def test_create_admin_refuses_an_address_the_mailer_refuses(stack):
    tag = uuid.uuid4().hex[:8]
    for email in ("root%s@localhost" % tag, "r\u00fc%s@e2e.test" % tag,
                  "root%s@e2e.test." % tag):
        p = keel_admin(stack, "create-admin", "--email", email,
                       "--username", "r_" + tag, "--name", "R", "--force",
                       stdin="first-admin-password\n")
        assert p.returncode == 1 and "--email" in p.stderr, p.stderr
    assert stack.psql("SELECT count(*) FROM users WHERE username = "
                      "'r_%s'" % tag) == "0"


def test_hash_password_prints_an_argon2id_hash(stack):
    p = keel_admin(stack, "hash-password", stdin="some-long-password\n")
    assert p.returncode == 0
    assert p.stdout.startswith("$argon2id$v=19$")


def test_create_admin_refuses_what_the_users_api_refuses(stack):
    # The users API's checks (PATCH /api/users/N answers 422 to each): a
    # name is one line without control characters, 1-100 characters; a
    # username 3-32 of [A-Za-z0-9_.-].
    tag = uuid.uuid4().hex[:8]
    good = {"--email": "v%s@e2e.test" % tag, "--username": "v_" + tag,
            "--name": "V"}
    for opt, bad, why in (
            ("--name", "Evil\nAdmin\x1b[31m", "one line"),
            ("--name", "Tab\there", "one line"),
            ("--name", "x" * 101, "too long"),
            ("--name", "", "empty"),
            ("--username", "v " + tag, "letters, digits"),
            ("--username", "v\x1b" + tag, "letters, digits"),
            ("--username", "v" * 33, "too long"),
            ("--username", "vv", "too short")):
        args = dict(good, **{opt: bad})
        p = keel_admin(stack, "create-admin", *sum(args.items(), ()),
                       "--force", stdin="first-admin-password\n")
        assert p.returncode == 1, (opt, bad, p.stdout)
        assert opt in p.stderr and why in p.stderr, (opt, bad, p.stderr)
        assert "\x1b" not in p.stderr
    assert stack.psql("SELECT count(*) FROM users WHERE email = "
                      "'v%s@e2e.test'" % tag) == "0"


def test_hash_password_refuses_a_nul_rather_than_cutting_there(stack):
    for pw in ("abcdefghij\0klmnop\n", "abcdefghijkl\0\n",
               "\0abcdefghijkl\n"):
        p = keel_admin(stack, "hash-password", stdin=pw)
        assert p.returncode == 1, repr(pw)
        assert p.stdout == "" and "NUL" in p.stderr, p.stderr


def test_hash_password_refuses_a_carriage_return_inside_the_line(stack):
    p = keel_admin(stack, "hash-password", stdin="abcdefghij\rklmnop\n")
    assert p.returncode == 1
    assert p.stdout == "" and "carriage return" in p.stderr, p.stderr


def test_hash_password_takes_1024_bytes_and_refuses_more(stack):
    p = keel_admin(stack, "hash-password", stdin="p" * 1024 + "\r\n")
    assert p.returncode == 0 and p.stdout.startswith("$argon2id$"), p.stderr
    p = keel_admin(stack, "hash-password", stdin="p" * 1025 + "\n")
    assert p.returncode == 1 and "1024" in p.stderr, p.stderr


def test_create_admin_refuses_a_password_with_a_nul(stack, anon):
    tag = uuid.uuid4().hex[:8]
    email = "n%s@e2e.test" % tag
    p = keel_admin(stack, "create-admin", "--email", email, "--username",
                   "n_" + tag, "--name", "N", "--force",
                   stdin="abcdefghij\0klmnop\n")
    assert p.returncode == 1 and "NUL" in p.stderr, p.stderr
    assert stack.psql("SELECT count(*) FROM users WHERE email = '%s'"
                      % email) == "0"
    # A CRLF line end is the line's end, not part of the password.
    p = keel_admin(stack, "create-admin", "--email", email, "--username",
                   "n_" + tag, "--name", "N", "--force",
                   stdin="crlf-admin-password\r\n")
    assert p.returncode == 0, p.stderr
    login(anon, email, "crlf-admin-password")


def test_create_admin_refuses_an_option_given_twice(stack):
    # "--email a --email b" took the last one: an admin nobody meant.
    tag = uuid.uuid4().hex[:8]
    args = {"--email": ("t%s@e2e.test" % tag, "u%s@e2e.test" % tag),
            "--username": ("t_" + tag, "u_" + tag),
            "--name": ("T", "U")}
    for opt in args:
        argv = ["create-admin", "--force"]
        for o, (first, second) in args.items():
            argv += [o, first] + ([o, second] if o == opt else [])
        p = keel_admin(stack, *argv, stdin="first-admin-password\n")
        assert p.returncode == 2, (opt, p.stdout, p.stderr)
        assert "usage:" in p.stderr and opt + " given twice" in p.stderr, \
            p.stderr
    assert stack.psql("SELECT count(*) FROM users WHERE username IN "
                      "('t_%s', 'u_%s')" % (tag, tag)) == "0"
