# SPDX-License-Identifier: ISC
"""test_install.py -- keel installed as README's "Installing on a server"
says, run the way its units run it, reached through the lighttpd
configuration scripts/lighttpd-conf writes for a server.

There is no systemd here to start the units, so this does what systemd
would, from the files as shipped: `make install DESTDIR=` of the build
(under a temp root standing for /), the directories of
ops/tmpfiles.d/keel.conf, an env file of mode 0640 root:GROUP, and for
each app of fcgi-apps/apps.conf its unit's ExecStart= (drop-ins, %i and
Environment= applied, tests/ops/units.py) with the unit's UMask=, run
as an unprivileged user (setpriv, `nobody`) in a clean environment.
lighttpd runs as another user whose only link to the apps is their
group, as www-data in group keel.  The stores are a stack's (KEEL_STACK_
APPS=0: no apps or lighttpd of its own).
"""

import os
import signal
import subprocess
import sys
import shutil
import tempfile

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "ops"))

import units  # noqa: E402
from accounts import make_user, login, bearer  # noqa: E402
from helpers import wait_until  # noqa: E402
from stack import ROOT, Stack, StackError, apps_conf, free_port  # noqa: E402

APP_UID = APP_GID = 65534      # nobody:nogroup, for keel:keel
WEB_UID = WEB_GID = 65533      # a throwaway user, for www-data
TMPFILES = os.path.join(ROOT, "ops", "tmpfiles.d", "keel.conf")
# The paths the units and the env file name, moved under the temp root.
SYSTEM_PATHS = ("/usr/local/", "/run/keel", "/etc/keel/", "/var/spool/keel")
# What systemd gives a service besides its Environment= (systemd.exec(5)).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def under(root, s):
    """s with each of SYSTEM_PATHS moved under root."""
    for p in SYSTEM_PATHS:
        s = s.replace(p, root + p)
    return s


def make_dirs(root):
    """ops/tmpfiles.d/keel.conf's `d` lines under root, keel as APP_UID."""
    ids = {"keel": APP_UID}
    with open(TMPFILES) as f:
        for line in f:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            assert w[0] == "d", line
            path = root + w[1]
            os.makedirs(path, exist_ok=True)
            os.chown(path, ids[w[3]], ids[w[4]])
            os.chmod(path, int(w[2], 8))


def write_env_file(stack, root):
    """/etc/keel/env: the stack's stores and secrets (its export lines,
    as an operator writes them), the paths a server has, mode 0640
    root:keel."""
    own = {"KEEL_METRICS_DIR": "/run/keel/metrics",
           "KEEL_REPORT_SPOOL": "/var/spool/keel/report",
           "KEEL_ROUTES_FILE": "/usr/local/share/keel/routes.json",
           "KEEL_LOCK_DIR": "/run/keel", "KEEL_WORKERS": "1"}
    lines = []
    with open(stack.path("env")) as f:
        for line in f:
            name = line.partition("=")[0].replace("export ", "").strip()
            if name not in own:
                lines.append(line.rstrip("\n"))
    lines += ["export %s=%s" % kv for kv in own.items()]
    path = root + "/etc/keel/env"
    os.makedirs(os.path.dirname(path), mode=0o755)
    with open(path, "w") as f:
        f.write(under(root, "\n".join(lines)) + "\n")
    os.chown(path, 0, APP_GID)
    os.chmod(path, 0o640)


def as_user(uid, gid, groups=()):
    """setpriv's words: run as uid:gid with only these extra groups."""
    g = "--groups=" + ",".join(map(str, groups)) if groups else \
        "--clear-groups"
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, g,
            "--no-new-privs", "--"]


def start_unit(root, app, kind, log):
    """The unit's ExecStart as systemd runs it: its user, umask, a clean
    environment plus Environment=, cwd /; returns the Popen."""
    unit = units.unit_name(app, kind)
    argv = units.exec_start(unit)
    assert argv, "%s has no ExecStart" % unit
    env = {"PATH": SYSTEMD_PATH}
    env.update({k: under(root, v)
                for k, v in units.environment(unit).items()})
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):   # a sanitizer build
        if k in os.environ:
            env[k] = os.environ[k]
    settings = dict(units.settings(unit))
    umask = int(settings["UMask"], 8)
    with open(log, "ab") as out:
        return subprocess.Popen(
            as_user(APP_UID, APP_GID) + [under(root, a) for a in argv],
            env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=out,
            stderr=out, start_new_session=True,
            preexec_fn=lambda: os.umask(umask))


class Server:
    """The temp root, its apps and lighttpd."""

    def __init__(self, stack):
        self.stack = stack
        self.root = tempfile.mkdtemp(prefix="keel-install-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.procs = {}
        self.web = None
        self.port = free_port()
        self.journal = os.path.join(self.root, "journal")
        os.mkdir(self.journal)

    def start(self):
        units.install(self.stack.build_dir, self.root)
        make_dirs(self.root)
        write_env_file(self.stack, self.root)
        apps = {}
        for w in apps_conf():
            apps.setdefault(w[0], w[3] if len(w) > 3 else "fcgi")
        for app, kind in apps.items():
            self.procs[app] = start_unit(
                self.root, app, kind,
                os.path.join(self.journal, app + ".log"))
        for app in apps:
            self.wait_socket(app)
        self.start_lighttpd()
        return self

    def wait_socket(self, app):
        sock = self.root + "/run/keel/%s.sock" % app

        def up():
            assert self.procs[app].poll() is None, \
                "%s exited:\n%s" % (app, self.journal_of(app))
            return os.path.exists(sock)
        wait_until(up, 60, "%s's socket" % app, step=0.05)

    def journal_of(self, app):
        with open(os.path.join(self.journal, app + ".log"),
                  errors="replace") as f:
            return f.read()[-3000:]

    def start_lighttpd(self):
        """scripts/lighttpd-conf for this root, lighttpd as WEB_UID in
        the apps' group (KEEL_LIGHTTPD_USER: it starts unprivileged)."""
        conf = self.root + "/etc/lighttpd"
        logs = self.root + "/var/log/lighttpd"
        os.makedirs(logs)
        os.chown(logs, WEB_UID, WEB_GID)
        env = dict(os.environ, KEEL_HTTP_ADDR="127.0.0.1",
                   KEEL_HTTP_PORT=str(self.port),
                   KEEL_LIGHTTPD_SOCKETS=self.root + "/run/keel",
                   KEEL_LIGHTTPD_LOG=logs,
                   KEEL_LIGHTTPD_WWW=os.path.join(ROOT, "www"),
                   KEEL_LIGHTTPD_USER="")
        env.pop("KEEL_EXTRA_APPS", None)
        p = subprocess.run([os.path.join(ROOT, "scripts", "lighttpd-conf"),
                            conf], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        assert p.returncode == 0, p.stdout
        with open(os.path.join(self.journal, "lighttpd.log"), "ab") as out:
            self.web = subprocess.Popen(
                as_user(WEB_UID, WEB_GID, [APP_GID]) +
                ["lighttpd", "-D", "-f", conf + "/lighttpd.conf"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)

        def up():
            assert self.web.poll() is None, "lighttpd exited"
            try:
                requests.get(self.url("/health"), timeout=2)
            except requests.ConnectionError:
                return False
            return True
        wait_until(up, 30, "lighttpd", step=0.05)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        """SIGTERM, as systemctl stop (KillMode=mixed: the supervisor)."""
        procs = list(self.procs.values()) + ([self.web] if self.web else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    if os.geteuid() != 0:
        pytest.skip("needs root to run the apps as another user (setpriv)")
    s = Stack(extra_apps=None, env={"KEEL_STACK_APPS": "0"})
    try:
        s.start()
    except StackError as e:
        pytest.fail("could not start the stores: %s" % e)
    srv = Server(s)
    try:
        yield srv.start()
    finally:
        srv.stop()
        s.stop()


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def test_install_health_through_lighttpd(server):
    r = requests.get(server.url("/health"), timeout=10)
    assert r.status_code == 200, r.text


def test_install_signed_in_cars_through_lighttpd(server):
    """A login (KEEL_SECRET and the stores from the env file) and a
    signed-in GET, through lighttpd as another user in the apps' group."""
    admin = make_user(server.stack, "admin")
    token = login(_Http(server), admin["email"])
    r = requests.get(server.url("/api/cars"), timeout=10,
                     headers=bearer(token))
    assert r.status_code == 200, r.text
    assert isinstance(r.json().get("data"), list), r.text


def test_install_apps_run_as_their_user(server):
    """setpriv ran what the unit's ExecStart execs: the app's binary
    itself (sh exec'd it, so the pid systemd watches is the
    supervisor's), as the unprivileged user; its socket is 0660."""
    for app, p in server.procs.items():
        exe = os.readlink("/proc/%d/exe" % p.pid)
        assert exe.startswith(server.root + "/usr/local/bin/keel-"), \
            (app, exe)
        assert uid_of(p.pid) == APP_UID, app
        st = os.stat(server.root + "/run/keel/%s.sock" % app)
        assert (st.st_mode & 0o777, st.st_gid) == (0o660, APP_GID), app


def test_install_reload_reads_the_env_file(server):
    """ExecReload (SIGHUP): the supervisor sources the env file again as
    its user (0640 root:keel) and rolls its workers; cars still serves."""
    p = server.procs["cars"]
    os.kill(p.pid, signal.SIGHUP)
    wait_until(lambda: "workers replaced" in server.journal_of("cars"),
               60, "cars's reload")
    assert p.poll() is None
    r = requests.get(server.url("/health"), timeout=10)
    assert r.status_code == 200
    admin = make_user(server.stack, "admin")
    token = login(_Http(server), admin["email"])
    r = requests.get(server.url("/api/cars"), timeout=10,
                     headers=bearer(token))
    assert r.status_code == 200, r.text


class _Http:
    """What accounts.login needs of a session: post(path, json=)."""

    def __init__(self, server):
        self.server = server

    def post(self, path, **kw):
        return requests.post(self.server.url(path), timeout=10, **kw)
