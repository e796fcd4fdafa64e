# SPDX-License-Identifier: ISC
"""tests/ops/units.py -- ops/systemd's units as systemd would read them,
for tests/ops/run and tests/e2e/test_install.py: a unit with its
drop-ins (NAME.d/*.conf, for an instance the template's and its own),
the specifiers keel's units use (%i, %%) and ${VAR} from Environment=,
and ExecStart= split into the argv systemd would run."""

import glob
import os
import shlex
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
UNITS = os.path.join(ROOT, "ops", "systemd")


def unit_name(app, kind):
    """The unit that runs an apps.conf app: keel@NAME, or keel-stream
    for the http one."""
    return "keel-stream.service" if kind == "http" else \
        "keel@%s.service" % app


def files(unit, units=UNITS):
    """The unit's file and its drop-ins, in the order systemd reads
    them."""
    instance = None
    base = unit
    if "@" in unit:
        prefix, rest = unit.split("@", 1)
        instance = rest.rsplit(".", 1)[0]
        base = prefix + "@.service"
    out = [os.path.join(units, base)]
    dirs = [base + ".d"] + ([unit + ".d"] if instance else [])
    drop = {}
    for d in dirs:
        for f in glob.glob(os.path.join(units, d, "*.conf")):
            drop[os.path.basename(f)] = f
    return out + [drop[k] for k in sorted(drop)], instance


def settings(unit, units=UNITS):
    """[(key, value)] of the unit's [Service] lines, drop-ins included,
    with %i and %% substituted; continuation lines joined."""
    paths, instance = files(unit, units)
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read().replace("\\\n", " ")
        section = None
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            key, _, value = line.partition("=")
            if section != "[Service]":
                continue
            value = value.strip().replace("%i", instance or "")
            value = value.replace("%%", "%")
            out.append((key.strip(), value))
    return out


def environment(unit, units=UNITS):
    env = {}
    for k, v in settings(unit, units):
        if k == "Environment":
            for word in shlex.split(v):
                name, _, val = word.partition("=")
                env[name] = val
    return env


def exec_start(unit, units=UNITS):
    """ExecStart's argv: the last one set (an empty one resets), ${VAR}
    from Environment=, $$ as $."""
    cmd = None
    for k, v in settings(unit, units):
        if k == "ExecStart":
            cmd = v or None
    if cmd is None:
        return None
    env = environment(unit, units)
    argv = []
    for word in shlex.split(cmd):
        for name, val in env.items():
            word = word.replace("${%s}" % name, val)
        argv.append(word.replace("$$", "$"))
    return argv


def install(build, dest):
    """`make install DESTDIR=dest` (prefix /usr/local) of a built tree,
    without building it: only its two install targets, with every file
    they install marked up to date (make -o), so a build older than the
    sources (the shared checkout moves under it) is installed as it is,
    not rebuilt.  Raises RuntimeError with make's output."""
    base = ["make", "-s", "-C", build, "prefix=/usr/local"]
    p = subprocess.run(base + ["-f", "Makefile", "-f", "-", "keel-files"],
                       input="keel-files:\n\t@echo $(bin_PROGRAMS) "
                       "$(pkgdata_DATA)\n", stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    built = p.stdout.split()
    if p.returncode != 0 or not built:
        raise RuntimeError("make: no bin_PROGRAMS:\n" + p.stdout)
    keep = [a for f in built for a in ("-o", f)]
    p = subprocess.run(base + keep + ["DESTDIR=" + dest,
                                      "install-binPROGRAMS",
                                      "install-pkgdataDATA"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("make install:\n" + p.stdout[-3000:])
