# SPDX-License-Identifier: ISC
"""smtp_sink.py -- a real local SMTP server for the stack and the tests.

aiosmtpd (Debian python3-aiosmtpd) runs it; this is only the handler:

    PYTHONPATH=scripts python3 -m aiosmtpd -n -l 127.0.0.1:PORT \\
        -c smtp_sink.MaildirSink MAILDIR

Every message received is stored in the maildir MAILDIR (new/), exactly as
sent, behind trace headers: X-Sink-Received (epoch seconds, float: when
DATA ended), X-Sink-Concurrent (messages in DATA at that moment) and
X-Sink-TLS ("yes" when the session was encrypted with STARTTLS; aiosmtpd
offers it when started with --tlscert and --tlskey).

Faults for the tests: MAILDIR/../smtp-mode (read on every message) holds
one word -- "accept" (default), "refuse" (451 to DATA), "reject" (550 to
DATA), "reject-rcpt" (550 to RCPT TO: a mailbox that doesn't exist),
"full-rcpt" (552 to RCPT TO: too many recipients, temporary by RFC 5321
§4.5.3.1.10), "reject-mail" (550 to MAIL FROM: a sender the server won't
take), or "hang" (never answer DATA) -- optionally followed by a delay in
seconds applied before answering ("accept 0.3").  Every DATA, whatever
the mode, appends "<epoch seconds> <mode> <Message-ID>" to
MAILDIR/../smtp-attempts; a refused MAIL FROM or RCPT TO appends
"<epoch seconds> <mode> -".
"""

import asyncio
import mailbox
import os
import time


class MaildirSink:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        # Maildir(create=True) skips the subdirectories when the
        # directory itself already exists.
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.path, sub), exist_ok=True)
        self.box = mailbox.Maildir(self.path, create=True)
        self.mode_file = os.path.join(os.path.dirname(self.path), "smtp-mode")
        self.attempts = os.path.join(os.path.dirname(self.path),
                                     "smtp-attempts")
        self.busy = 0

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("MaildirSink takes one argument: the maildir")
        return cls(args[0])

    def _mode(self):
        try:
            with open(self.mode_file) as f:
                words = f.read().split()
        except OSError:
            words = []
        mode = words[0] if words else "accept"
        delay = float(words[1]) if len(words) > 1 else 0.0
        return mode, delay

    def _refused(self, mode):
        with open(self.attempts, "a") as f:
            f.write("%.6f %s -\n" % (time.time(), mode))

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        if self._mode()[0] == "reject-mail":
            self._refused("reject-mail")
            return "550 5.7.1 sink told to reject the sender"
        # What aiosmtpd does without this hook.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        mode = self._mode()[0]
        if mode == "reject-rcpt":
            self._refused(mode)
            return "550 5.1.1 sink told to reject the recipient"
        if mode == "full-rcpt":
            self._refused(mode)
            return "552 5.3.4 sink told to have too many recipients"
        # What aiosmtpd does without this hook.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        mode, delay = self._mode()
        mid = "-"
        for line in (envelope.content or b"").split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"message-id:"):
                mid = line.split(b":", 1)[1].strip().decode("ascii", "replace")
        with open(self.attempts, "a") as f:
            f.write("%.6f %s %s\n" % (time.time(), mode, mid))
        self.busy += 1
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if mode == "hang":
                await asyncio.sleep(3600)
            if mode == "refuse":
                return "451 4.3.0 sink told to refuse"
            if mode == "reject":
                return "550 5.7.1 sink told to reject"
            head = ("X-Sink-Received: %.6f\r\nX-Sink-Concurrent: %d\r\n"
                    "X-Sink-Rcpt: %s\r\nX-Sink-TLS: %s\r\n"
                    % (time.time(), self.busy, ",".join(envelope.rcpt_tos),
                       "yes" if session.ssl else "no"))
            data = envelope.original_content or envelope.content
            if isinstance(data, str):
                data = data.encode("utf-8", "surrogateescape")
            self.box.add(head.encode() + data)
            return "250 OK stored"
        finally:
            self.busy -= 1
