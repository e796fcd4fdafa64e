# SPDX-License-Identifier: ISC
"""chromium.py -- Debian's headless Chromium, driven over the Chrome
DevTools Protocol, for tests/e2e/test_browser.py.

The protocol runs over a pipe (--remote-debugging-pipe: commands on the
browser's fd 3, answers and events on its fd 4, each message JSON ended by
a NUL byte), not a TCP debugging port: a port on loopback would give any
local process full control of the browser, and needs a WebSocket client;
the pipe needs nothing beyond the standard library.

    b = Chromium(log_path).start()      # a fresh profile in a temp dir
    b.navigate("http://127.0.0.1:8080/app/")
    b.evaluate("document.title")        # Runtime.evaluate, by value
    b.stop()                            # Browser.close, else by pid

The browser is started by pid and stopped by pid (its helper processes,
children of that pid, too); every wait has a deadline.
"""

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

from stack import alive, children

CHROMIUM = "/usr/bin/chromium"          # Debian's launcher (package chromium)


class BrowserError(RuntimeError):
    pass


def sandbox_flags():
    """--no-sandbox where Chromium's sandbox cannot work, nothing else.
    Chromium refuses to run as root with its sandbox on; as another user
    its (namespace) sandbox needs unprivileged user namespaces, which an
    unprivileged container's seccomp profile usually forbids, and Debian's
    package has no setuid helper to fall back on.  The browser only ever
    loads the test stack's own page on loopback."""
    if os.geteuid() == 0:
        return ["--no-sandbox"]
    p = subprocess.run(["unshare", "--user", "--map-root-user", "true"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [] if p.returncode == 0 else ["--no-sandbox"]


def _high(fd):
    """fd moved to a number of 10 or more (close-on-exec)."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def descendants(pid):
    """Every live process below pid."""
    out = []
    todo = [pid]
    while todo:
        for kid in children(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


class Chromium:
    def __init__(self, log_path, wrapper=()):
        self.log_path = log_path
        self.wrapper = list(wrapper)    # runs the browser: setpriv ...
        self.proc = None
        self.profile = None
        self.session = None     # the page's CDP session (flattened)
        self.events = []        # every event received, in order
        self._wfd = self._rfd = None
        self._buf = b""
        self._next_id = 0

    # ---------------------------------------------------------------- life

    def start(self, timeout=30):
        self.profile = tempfile.mkdtemp(prefix="keel-chromium-")
        cmd_r, self._wfd = os.pipe()        # we write, it reads (fd 3)
        self._rfd, res_w = os.pipe()        # it writes (fd 4), we read
        # Its ends above 3 and 4, so that moving one cannot clobber the
        # other.
        cmd_r, res_w = (_high(fd) for fd in (cmd_r, res_w))
        args = [
            "--headless", "--remote-debugging-pipe",
            "--user-data-dir=" + self.profile,
            # no GPU in a container; /dev/shm is 64 MB under Docker
            "--disable-gpu", "--disable-dev-shm-usage",
            # a test talks to nothing but the stack
            "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps",
            "--password-store=basic", "--use-mock-keychain",
            "--mute-audio",
        ] + sandbox_flags() + ["about:blank"]
        # The pipe's ends onto fds 3 and 4 of the browser: the shell (bash:
        # dash knows fds 0-9 only) moves them there and execs the launcher,
        # which execs the browser, so Popen's pid is the browser's (the
        # wrapper execs too).
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.wrapper + ["/bin/bash", "-c",
                 'exec "$0" "$@" 3<&%d 4>&%d %d<&- %d>&-'
                 % (cmd_r, res_w, cmd_r, res_w), CHROMIUM] + args,
                pass_fds=(cmd_r, res_w), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        os.close(cmd_r)
        os.close(res_w)
        try:
            info = self.call("Browser.getVersion", timeout=timeout)
            self.version = info["product"]
            target = self.call("Target.createTarget",
                               {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget",
                                     {"targetId": target,
                                      "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(domain + ".enable", session=True)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, timeout=10):
        """Browser.close, then SIGTERM and SIGKILL by pid if it lingers;
        its helper processes too; the profile removed."""
        if self.proc is None:
            return
        pid = self.proc.pid
        kids = descendants(pid)
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except (BrowserError, OSError):
                    pass
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        self.proc.wait(timeout=timeout)
                        break
                    except subprocess.TimeoutExpired:
                        os.kill(pid, sig)
                self.proc.wait(timeout=timeout)
            # Helpers outlive a killed browser only briefly; these pids are
            # the ones it started.
            deadline = time.monotonic() + timeout
            for k in kids:
                while alive(k) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if alive(k):
                    os.kill(k, signal.SIGKILL)
        finally:
            for fd in (self._wfd, self._rfd):
                if fd is not None:
                    os.close(fd)
            self._wfd = self._rfd = None
            self.proc = None
            shutil.rmtree(self.profile, ignore_errors=True)

    # ------------------------------------------------------------ protocol

    def _send(self, msg):
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._wfd, data)
            data = data[n:]

    def _read(self, deadline):
        """The next message, or BrowserError at the deadline."""
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no answer from the browser in time")
            r, _, _ = select.select([self._rfd], [], [], left)
            if not r:
                continue
            chunk = os.read(self._rfd, 1 << 16)
            if not chunk:
                raise BrowserError("the browser closed its pipe (exit %s)"
                                   % self.proc.poll())
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method, params=None, session=False, timeout=30):
        """One command; its result (BrowserError on an error answer)."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self._send(msg)
        deadline = time.monotonic() + timeout
        while True:
            got = self._read(deadline)
            if got.get("id") == msg["id"]:
                if "error" in got:
                    raise BrowserError("%s: %s" % (method, got["error"]))
                return got.get("result", {})
            if "method" in got:
                self.events.append(got)

    # ---------------------------------------------------------------- page

    def navigate(self, url, timeout=30):
        """Load url and wait until its document is complete."""
        r = self.call("Page.navigate", {"url": url}, session=True)
        if r.get("errorText"):
            raise BrowserError("navigate %s: %s" % (url, r["errorText"]))
        deadline = time.monotonic() + timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise BrowserError("%s did not finish loading" % url)
            time.sleep(0.05)

    def evaluate(self, expr, timeout=30):
        """The value of a JavaScript expression in the page (promises
        awaited); BrowserError when it throws."""
        r = self.call("Runtime.evaluate",
                      {"expression": expr, "returnByValue": True,
                       "awaitPromise": True}, session=True, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError("%s: %s" % (
                expr[:80], d.get("exception", {}).get("description")
                or d.get("text")))
        return r["result"].get("value")

    def type_text(self, text):
        """Text into the focused element, as keystrokes would put it."""
        self.call("Input.insertText", {"text": text}, session=True)

    def press_enter(self):
        for kind in ("keyDown", "keyUp"):
            p = {"type": kind, "key": "Enter", "code": "Enter",
                 "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
            if kind == "keyDown":
                p["text"] = "\r"
            self.call("Input.dispatchKeyEvent", p, session=True)

    def problems(self):
        """Uncaught exceptions and Content-Security-Policy violations the
        page reported so far, as text."""
        self.evaluate("0")          # collect the events sent meanwhile
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s" % (
                    d.get("exception", {}).get("description")
                    or d.get("text")))
            elif e["method"] == "Log.entryAdded":
                text = p.get("entry", {}).get("text", "")
                if "Content Security Policy" in text:
                    out.append("CSP: " + text)
            elif e["method"] == "Runtime.consoleAPICalled":
                if p.get("type") == "error":
                    out.append("console.error: %r" % p.get("args"))
        return out
