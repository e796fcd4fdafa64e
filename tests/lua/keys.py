#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""tests/lua/keys.py NAME FILE -- the keys a Lua script builds itself.

Redis Cluster runs a script on the node of its declared keys (KEYS) and
refuses one that touches a key of another slot, so every key a script
touches should come from KEYS.  A script that builds a key -- a literal
"keel:..." name, or a name concatenated onto a prefix passed in ARGV --
is listed here with why that is safe: the built key shares the declared
keys' hash tag (the queue's job hashes), or the script runs on a single
Redis only and cluster mode does the work another way (lib/auth.c,
lib/limit.c).  Any other built key is an offence.  FILE is the script as
Redis receives it (scripts/lua-embed -e).  Prints one offence a line;
exits 1 when there is one.
"""

import re
import sys

SINGLE = ("a single Redis only: in cluster mode lib/auth.c does this a "
          "command at a time")
RIDE = ("a single Redis only: in cluster mode the pipeline reads the "
        "session itself and the check runs without a ride, every list "
        "declared (lib/limit.c)")
TICKET = ("a single Redis only: in cluster mode stream/stream.c takes the "
          "ticket, then reads its session, a command at a time")
IDEM = ("a single Redis only: in cluster mode lib/idem.c keeps the index "
        "with idem_keep.lua and deletes the answers it hands back a "
        "command at a time")
JOBS = ("the queue's job hashes, under the prefix ARGV[1] that lib/queue.c "
        "builds with the queue's hash tag in cluster mode: KEYS' slot")

# script -> {what it builds: why that is fine}
ALLOWED = {
    "auth_session_new": {"'keel:sess:'": SINGLE},
    "auth_session_end_all": {"'keel:sess:'": SINGLE},
    "auth_session_ride": {"'keel:ryw:'": RIDE},
    "stream_ticket": {"'keel:sess:'": TICKET},
    "auth_session_get": {"'keel:ryw:'": RIDE},
    "limit_check": {"'keel:ryw:'": RIDE, "ARGV[3]": RIDE, "ARGV[b]": RIDE},
    "idem_done": {"prefix": IDEM},
}
for q in ("prelude", "enqueue", "fetch", "finish", "prune", "retry_failed",
          "stats"):
    ALLOWED["queue_" + q] = {"JP": JOBS}

LITERAL = re.compile(r"""(['"])(keel:[^'"]*)\1""")
ARGV_LOCAL = re.compile(r"local\s+([\w\s,]+?)\s*=\s*([^\n]+)")
CONCAT = re.compile(r"(ARGV\[[^\]]+\]|\b[A-Za-z_]\w*)\s*\.\.")


def built(text):
    """What the script builds keys from: literals and ARGV prefixes."""
    # Comments say what keys are; they build none.
    code = re.sub(r"--[^\n]*", "", text)
    found = {"'%s'" % m.group(2) for m in LITERAL.finditer(code)}
    # Locals bound to ARGV (local JP = ARGV[1]; local a, b = ARGV[1], ...).
    argv = set()
    for m in ARGV_LOCAL.finditer(code):
        names = [n.strip() for n in m.group(1).split(",")]
        vals = [v.strip() for v in m.group(2).split(",")]
        for n, v in zip(names, vals):
            if re.fullmatch(r"ARGV\[[^\]]+\]", v):
                argv.add(n)
    # A concatenation onto an ARGV value or such a local: a name.  (A
    # value built onto ARGV, "now .. ':' .. ARGV[1]", starts elsewhere.)
    for m in CONCAT.finditer(code):
        left = m.group(1)
        if left.startswith("ARGV[") or left in argv:
            found.add(left)
    return found


def main():
    name, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    allowed = ALLOWED.get(name, {})
    bad = sorted(b for b in built(text) if b not in allowed)
    for b in bad:
        print("builds a key from %s, not from KEYS (Redis Cluster refuses "
              "a key of another slot; tests/lua/keys.py lists the allowed "
              "ones)" % b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
