# SPDX-License-Identifier: ISC
"""test_config_check.py -- a bad setting stops a program at start with a
message naming the variable (README "Configuration"), for the values that
once passed and then failed quietly: a Redis db or port with junk after
it, a memcached port with junk after it, an SMTP or public URL of another
scheme, an empty DATABASE_URL, a relative lock directory or env file, a
list with an empty item; the routes app's missing KEEL_ROUTES_FILE; a
cron program's lock directory that isn't there.

No stack: each test runs a built binary with a clean environment of
valid values plus the one under test, and reads its exit status and
stderr.  --check loads the configuration exactly as a start does.
"""

import os
import subprocess

import pytest

from stack import ROOT

BUILD = os.path.abspath(os.environ.get("KEEL_BUILD_DIR")
                        or os.path.join(ROOT, "_build-test"))

# Valid values of every required variable; nothing here is contacted.
BASE = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "ASAN_OPTIONS": "detect_leaks=0",
    "KEEL_SECRET": "0123456789abcdef0123456789abcdef",
    "DATABASE_URL": "postgresql://keel:pw@127.0.0.1:5432/keel",
    "KEEL_METRICS_DIR": "",
    "KEEL_ROUTES_FILE": os.path.join(BUILD, "routes.json"),
}


def run(prog, args=("--check",), timeout=20, **env):
    """Runs BUILD/prog with BASE plus env; (exit status, stderr)."""
    p = subprocess.run([os.path.join(BUILD, prog)] + list(args),
                       env=dict(BASE, **env), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stderr.decode(errors="replace")


def test_valid_settings_pass_the_check():
    rc, err = run("fcgi-apps/keel-cars")
    assert rc == 0, err
    rc, err = run("fcgi-apps/keel-cars", REDIS_URL="unix:///run/r.sock?db=2",
                  MEMCACHED_SERVERS="mc1:11211,10.0.0.2:11211",
                  SMTP_URL="smtps://u:p@mail.example.com:465",
                  KEEL_PUBLIC_URL="https://exams.example.com/keel",
                  KEEL_ENV_FILE="/etc/keel/env", KEEL_LOCK_DIR="/run/lock")
    assert rc == 0, err


@pytest.mark.parametrize("servers", [
    "memcached",                            # a bare host: port 11211
    "/var/run/memcached/memcached.sock",    # a socket path
    "mc1:11211:2,mc2:11211:1",              # weights
    "mc1:11211, mc2:11211",                 # a blank after the comma
])
def test_memcached_forms_libmemcached_reads_pass(servers):
    """Every form libmemcached's memcached_servers_parse() reads right
    passes, as before the check was made strict (9e4a293 took them)."""
    rc, err = run("fcgi-apps/keel-cars", MEMCACHED_SERVERS=servers)
    assert rc == 0, err


@pytest.mark.parametrize("name,value", [
    # libpq reads a URL's credentials raw, up to the first '@'.
    ("DATABASE_URL", "postgresql://keel:p?w#d@127.0.0.1:5432/keel"),
    ("DATABASE_URL", "postgresql://keel:a,b@127.0.0.1:5432/keel"),
    # One REDIS_URL outside a cluster: the comma is the password's.
    ("REDIS_URL", "redis://:pa,ss@127.0.0.1:6379/0"),
])
def test_passwords_libpq_and_redis_read_pass(name, value):
    """A password the library reads right passes: the check reads a URL
    as libpq and redis.c do (the strict check of 7ea1422 refused the
    first and the third, which 9e4a293 took)."""
    rc, err = run("fcgi-apps/keel-cars", **{name: value})
    assert rc == 0, err


@pytest.mark.parametrize("name,value", [
    ("REDIS_URL", "redis://127.0.0.1:6379/4294967296"),
    ("REDIS_URL", "redis://127.0.0.1:6379/0abc"),
    ("REDIS_URL", "redis://127.0.0.1:41497x/0"),
    ("REDIS_URL", "redis://"),
    ("MEMCACHED_SERVERS", "mc1:11211x"),
    ("MEMCACHED_SERVERS", "mc1:99999"),
    ("MEMCACHED_SERVERS", "mc1:11211,,mc2:11211"),
    ("SMTP_URL", "garbage"),
    ("SMTP_URL", "http://x"),
    ("DATABASE_URL", ""),
    ("DATABASE_URL", "postgresql://keel@127.0.0.1:99999999/keel"),
    ("KEEL_LOCK_DIR", ""),
    ("KEEL_PUBLIC_URL", "garbage"),
    ("KEEL_ENV_FILE", "relative"),
    ("KEEL_RATELIMIT_FAIL_CLOSED", "auth,,"),
    ("TRUSTED_PROXIES", ","),
])
def test_bad_value_stops_the_check_naming_the_variable(name, value):
    rc, err = run("fcgi-apps/keel-cars", **{name: value})
    assert rc == 1, err
    assert "configuration: %s" % name in err, err


def test_bad_value_stops_an_app_before_it_serves(tmp_path):
    """Without --check: the supervisor exits before it binds the socket."""
    sock = str(tmp_path / "cars.sock")
    rc, err = run("fcgi-apps/keel-cars", args=("--socket", sock),
                  REDIS_URL="redis://127.0.0.1:6379/0abc")
    assert rc == 1, err
    assert "configuration: REDIS_URL" in err, err
    assert not os.path.exists(sock)


def test_routes_app_stops_on_a_missing_routes_file():
    rc, err = run("fcgi-apps/keel-routes",
                  KEEL_ROUTES_FILE="/nonexistent/routes.json")
    assert rc == 1, err
    assert "KEEL_ROUTES_FILE" in err, err
    rc, err = run("fcgi-apps/keel-routes")
    assert rc == 0, err


def test_cron_program_stops_on_a_missing_lock_dir(tmp_path):
    rc, err = run("cron/keel-drain-email", args=(),
                  KEEL_LOCK_DIR=str(tmp_path / "gone"))
    assert rc == 1, err
    assert "KEEL_LOCK_DIR" in err, err
