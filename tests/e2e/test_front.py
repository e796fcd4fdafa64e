# SPDX-License-Identifier: ISC
"""test_front.py -- lighttpd as the front server: the HTTP versions it
speaks, what it does with slow clients, and its own error pages."""

import shutil
import socket
import subprocess
import time

import pytest

from accounts import login, make_user
from helpers import raw_request

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def port(stack):
    return int(stack.base_url.rsplit(":", 1)[1])


def curl_versions(url, *args):
    """(HTTP version, status) of every answer curl got for url."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                        "%{http_version} %{http_code}\\n"] + list(args)
                       + [url], capture_output=True, text=True, timeout=30)
    return [tuple(line.split()) for line in p.stdout.splitlines()]


# ----------------------------------------------------------- HTTP versions

def test_front_h2c_upgrade_is_answered_as_http_1_1(stack):
    """curl --http2 on http:// asks for h2c (Upgrade: h2c); lighttpd
    answers as HTTP/1.1, never 101: a tunnel of HTTP/2 requests would
    pass a proxy in front unread (no X-Forwarded-For of its own)."""
    assert curl_versions(stack.url("/health"), "--http2") == [("1.1", "200")]


def test_front_h2_prior_knowledge_is_refused_with_505_json(stack):
    resp = raw_request(stack, H2_PREFACE +
                       b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    assert resp.status_code == 505
    assert resp.json()["error"] == "bad_request"
    assert "HTTP version not supported" in resp.json()["message"]


# ------------------------------------------------------------ slow clients

def test_front_a_client_silent_mid_request_is_dropped_after_10s(stack):
    """server.max-read-idle: 10 s without a byte mid-headers or mid-body
    and the connection is closed (1.4.69's default held it 60 s)."""
    for head in (b"GET /health HTTP/1.1\r\nHost: t\r\n",
                 b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{"):
        with socket.create_connection(("127.0.0.1", port(stack)),
                                      timeout=25) as s:
            t0 = time.monotonic()
            s.sendall(head)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            took = time.monotonic() - t0
        assert 9 <= took <= 13, (head, took)


def test_front_a_stream_outlives_the_read_idle_limit(stack, anon):
    """An SSE client sends nothing after its GET: its stream is an
    answer in progress, which server.max-read-idle never cuts."""
    token = login(anon, make_user(stack, "student")["email"])
    with socket.create_connection(("127.0.0.1", port(stack)),
                                  timeout=5) as s:
        s.sendall(b"GET /api/notifications/stream HTTP/1.1\r\nHost: t\r\n"
                  b"Accept: text/event-stream\r\nAuthorization: Bearer "
                  + token.encode() + b"\r\n\r\n")
        t0 = time.monotonic()
        got = b""
        while time.monotonic() - t0 < 14:
            chunk = s.recv(65536)
            assert chunk, "the stream closed after %.1f s" % (
                time.monotonic() - t0)
            got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got[:200]


# ------------------------------------------------------------ error pages

@pytest.mark.parametrize("request_bytes, status, says", [
    (b"FOO /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
     501, "transfer coding is not implemented"),
    (b"POST /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
     b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     501, "transfer coding is not implemented"),
    (b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
     b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n",
     431, "headers are too large"),
    (b"GET /nowhere HTTP/2.1\r\nHost: t\r\n\r\n",
     505, "HTTP version not supported"),
    (b"POST /nowhere HTTP/1.0\r\nHost: t\r\n\r\n{}",
     411, "Content-Length header is required"),
])
def test_front_lighttpds_own_refusals_say_what_their_status_means(
        stack, request_bytes, status, says):
    """API.md's code (its list is closed: bad_request where the status
    has none), and a message of the status's own."""
    resp = raw_request(stack, request_bytes)
    assert resp.status_code == status, resp.content[:200]
    assert resp.json()["error"] == "bad_request"
    assert says in resp.json()["message"]
