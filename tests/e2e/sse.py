# SPDX-License-Identifier: ISC
"""sse.py -- a Server-Sent Events client for the end-to-end tests.

    s = SSE.open(stack, headers=bearer(token), last_id=5)
    s.status, s.headers                  # the response
    ev = s.next_event(timeout=2)         # {"id", "event", "data"} or None
    s.close()

A raw socket and its own chunked decoding, so a read that times out
loses nothing (http.client's chunk state does not survive a timeout).
Through lighttpd, or straight from an app's unix socket (open_unix).
Every read has a deadline: a test waiting for an event it never gets
fails instead of hanging.  Comment lines (": hb") go to .comments.
"""

import json
import socket
import time


class SSE:
    def __init__(self, sock, path, headers, timeout=10, method="GET"):
        self.sock = sock
        self.raw = b""          # bytes read, not yet decoded
        self.buf = b""          # the decoded body, not yet parsed
        self.chunked = False
        self.eof = False
        self.ended = False
        self.comments = []
        self.retry = None
        self.body = None
        h = {"Host": "localhost", "Accept": "text/event-stream"}
        h.update(headers)
        req = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
            "%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        sock.settimeout(timeout)
        sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.raw:
            if not self._recv(time.monotonic() + timeout):
                raise OSError("no response head")
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().title()] = v.strip()
        self.chunked = self.headers.get(
            "Transfer-Encoding", "").lower() == "chunked"
        if self.status != 200:
            n = int(self.headers.get("Content-Length", "-1"))
            deadline = time.monotonic() + timeout
            while not self.eof and (n < 0 or len(self._body()) < n):
                if not self._recv(deadline):
                    break
            self.body = self._body()

    @classmethod
    def open(cls, stack, headers=None, last_id=None, query="",
             timeout=10, source="127.0.0.1"):
        """source: the loopback address to connect from (127.0.0.0/8
        is all this host's): another client to the stack."""
        h = dict(headers or {})
        if last_id is not None:
            h["Last-Event-ID"] = str(last_id)
        s = socket.create_connection(("127.0.0.1", stack.ports["http"]),
                                     timeout=timeout,
                                     source_address=(source, 0))
        return cls(s, "/api/notifications/stream" + query, h, timeout)

    @classmethod
    def open_unix(cls, path, headers=None, query="", rcvbuf=None,
                  timeout=10, method="GET"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s, "/api/notifications/stream" + query,
                   dict(headers or {}), timeout, method)

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            b = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            b = b""
        if not b:
            self.eof = True
            return False
        self.raw += b
        return True

    def _body(self):
        """Moves what is decodable from raw to buf; returns buf."""
        if not self.chunked:
            self.buf += self.raw
            self.raw = b""
            return self.buf
        while b"\r\n" in self.raw:
            size_line, rest = self.raw.split(b"\r\n", 1)
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                self.eof = True
                self.raw = b""
                break
            if len(rest) < n + 2:
                break
            self.buf += rest[:n]
            self.raw = rest[n + 2:]
        return self.buf

    def json(self):
        return json.loads(self.body)

    def _line(self, deadline):
        while True:
            self._body()
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                return line.decode().rstrip("\r")
            if self.eof or not self._recv(deadline):
                if self.eof and b"\n" not in self._body():
                    self.ended = True
                return None

    def next_event(self, timeout=5.0):
        """The next event, or None if none came in time or the stream
        ended (then .ended is True).  A partly read event is kept."""
        deadline = time.monotonic() + timeout
        while True:
            mark = self.buf
            ev, data = {}, []
            while True:
                line = self._line(deadline)
                if line is None:
                    # Not whole yet: put the event's lines back.
                    self.buf = mark
                    return None
                if line == "":
                    if data or ev:
                        ev["data"] = "\n".join(data)
                        return ev
                    mark = self.buf
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    mark = self.buf
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry = int(value)
                    mark = self.buf
                else:
                    ev[field] = value

    def events(self, n, timeout=5.0):
        """n events (fewer if they don't come within timeout overall)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.next_event(max(0.0, deadline - time.monotonic()))
            if ev is None:
                break
            out.append(ev)
        return out

    def close(self):
        self.sock.close()
