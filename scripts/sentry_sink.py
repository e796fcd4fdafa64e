# SPDX-License-Identifier: ISC
"""sentry_sink.py -- a local Sentry envelope endpoint for the stack and the
tests: stores what it gets.

    python3 scripts/sentry_sink.py --port PORT --key-file FILE --dir DIR

Takes `POST /api/<project>/envelope/` (Sentry's envelope format, as
Debian's python3-sentry-sdk writes it: a header line, then items, each an
item header line with "type" and "length" and that many bytes of
payload), checks `X-Sentry-Auth` (sentry_version=7 and sentry_key= the
key FILE holds: a file, so no command line shows it; else 401) and
`Content-Type: application/x-sentry-envelope`, and stores each envelope
as it came, DIR/<event_id>.envelope, and each event or transaction item
as DIR/<event_id>.json (written to a temp name and renamed, so a reader
never sees half of one).  A malformed envelope is
400.  Every request appends "<epoch> <mode> <status> <event_id>" to
DIR/../sentry-attempts.

Faults for the tests: DIR/../sentry-mode (read on every request) holds one
word -- "accept" (default: 200 {"id": ...}), "ratelimit" (429 with
Retry-After and X-Sentry-Rate-Limits, both the number of seconds after it:
"ratelimit 5"), "error" (503), or "hang" (read the request, answer
nothing until the mode changes, at most 120 s).
"""

import argparse
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = re.compile(r"^/api/(\d+)/envelope/$")


def parse_envelope(body):
    """(header dict, [(item header dict, payload bytes)]); ValueError if
    it isn't an envelope."""
    nl = body.find(b"\n")
    if nl < 0:
        raise ValueError("no header line")
    header = json.loads(body[:nl])
    items, pos = [], nl + 1
    while pos < len(body):
        nl = body.find(b"\n", pos)
        if nl < 0:
            nl = len(body)
        line = body[pos:nl].strip()
        pos = nl + 1
        if not line:
            continue
        ih = json.loads(line)
        if "length" in ih:
            n = int(ih["length"])
            payload = body[pos:pos + n]
            if len(payload) != n:
                raise ValueError("item shorter than its length")
            pos += n + 1
        else:
            nl = body.find(b"\n", pos)
            nl = len(body) if nl < 0 else nl
            payload = body[pos:nl]
            pos = nl + 1
        items.append((ih, payload))
    if not items:
        raise ValueError("no item")
    return header, items


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    key = None
    dir = None

    def log_message(self, fmt, *args):
        pass

    def mode(self):
        try:
            with open(os.path.join(os.path.dirname(self.dir),
                                   "sentry-mode")) as f:
                words = f.read().split()
        except OSError:
            words = []
        return (words[0] if words else "accept"), words[1:]

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def note(self, mode, status, eid):
        with open(os.path.join(os.path.dirname(self.dir),
                               "sentry-attempts"), "a") as f:
            f.write("%.6f %s %d %s\n" % (time.time(), mode, status, eid))

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        mode, args = self.mode()
        if mode == "hang":
            deadline = time.time() + 120
            while self.mode()[0] == "hang" and time.time() < deadline:
                time.sleep(0.1)
            self.note(mode, 0, "-")
            self.close_connection = True
            return
        if not PATH.match(self.path):
            return self.answer(404, b'{"detail":"no such path"}')
        auth = self.headers.get("X-Sentry-Auth", "")
        fields = dict(p.strip().split("=", 1) for p in
                      auth[len("Sentry "):].split(",") if "=" in p)
        if (not auth.startswith("Sentry ")
                or fields.get("sentry_version") != "7"
                or fields.get("sentry_key") != self.key):
            self.note(mode, 401, "-")
            return self.answer(401, b'{"detail":"bad X-Sentry-Auth"}')
        if self.headers.get("Content-Type") != \
                "application/x-sentry-envelope":
            return self.answer(415, b'{"detail":"not an envelope"}')
        try:
            header, items = parse_envelope(body)
            eid = header["event_id"]
            if not re.fullmatch(r"[0-9a-f]{32}", eid):
                raise ValueError("bad event_id")
        except (ValueError, KeyError, TypeError) as e:
            self.note(mode, 400, "-")
            return self.answer(400, json.dumps({"detail": str(e)}).encode())
        if mode == "ratelimit":
            secs = args[0] if args else "60"
            self.note(mode, 429, eid)
            return self.answer(429, b'{"detail":"rate limited"}', (
                ("Retry-After", secs),
                ("X-Sentry-Rate-Limits", "%s::organization" % secs)))
        if mode == "error":
            self.note(mode, 503, eid)
            return self.answer(503, b'{"detail":"sink told to fail"}')
        write_atomic(os.path.join(self.dir, eid + ".envelope"), body)
        for ih, payload in items:
            if ih.get("type") in ("event", "transaction"):
                write_atomic(os.path.join(self.dir, eid + ".json"), payload)
        self.note(mode, 200, eid)
        self.answer(200, json.dumps({"id": eid}).encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    with open(a.key_file) as f:
        Sink.key = f.read().strip()
    Sink.dir = os.path.abspath(a.dir)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Sink)
    srv.daemon_threads = True
    print("sentry sink on 127.0.0.1:%d, storing in %s" % (a.port, a.dir),
          flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()


if __name__ == "__main__":
    threading.current_thread().name = "sentry-sink"
    main()
