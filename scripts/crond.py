# SPDX-License-Identifier: ISC
"""crond.py -- run one crontab as the calling user: the stack's cron.

    python3 scripts/crond.py CRONTAB          # run it until SIGTERM
    python3 scripts/crond.py --check CRONTAB  # parse it, say what's wrong

scripts/stack runs cron/crontab with this, its paths filled in.  Not a
system cron daemon, on purpose: Debian's cron reads only fixed paths
(/etc/crontab, /etc/cron.d, the spool, /run/crond.pid) and runs as root,
so a private instance needed a mount namespace, hence CAP_SYS_ADMIN, which
an unprivileged container lacks; busybox's crond (busybox-static) is root
only too (it ignores a crontab not owned by root, and each job's
initgroups fails otherwise) and writes /run/crond.pid and
/run/crond.reboot, the files Debian's cron uses.  This one needs no
privilege, and reads and writes nothing but its crontab, its stdout and
what the jobs do: any number of stacks and the machine's cron coexist.

What it does, as Debian's cron (crontab(5)) does for a user crontab:
  - NAME=value lines (quotes around the value dropped, nothing expanded)
    set the environment of the jobs below them.  A job starts from
    SHELL=/bin/sh, PATH=/usr/bin:/bin, HOME, LOGNAME and USER of the
    calling user -- not this program's environment -- in HOME.
  - Times: five fields of *, N, N-M, and /STEP after either, in lists;
    names for months and days of week; day of week 7 is Sunday; when
    neither day field starts with *, either matching is enough.  @hourly,
    @daily (@midnight), @weekly, @monthly, @yearly (@annually); @reboot
    runs once when this program starts.
  - The command runs as `$SHELL -c COMMAND` in its own session; an
    unescaped % ends the command, the rest (each further % a newline) is
    its stdin.
  - Every job whose minute has come starts, even if its previous run still
    goes (keel's programs take a lock).  The minutes skipped while the
    machine was suspended or the clock jumped ahead (up to an hour) have
    their jobs run once; a larger jump runs nothing; after a jump back,
    nothing runs until the clock is past the minute last handled.
  - The crontab is read again when it changes; a crontab with an error is
    refused: at start this program exits 1, later the one in force stays.

Differences: MAILTO is ignored -- the jobs' output (cron would mail it)
goes to this program's stdout, with the log lines; LOGNAME may be set; no
special case for daylight saving time (a skipped hour's jobs don't run, a
repeated hour's run twice).
SIGTERM, SIGINT or SIGHUP ends this program within a second and leaves
the jobs it started running, as cron does (scripts/stack stops those by
their lock files).
"""

import os
import pwd
import re
import signal
import subprocess
import sys
import time

MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
DAYS = "sun mon tue wed thu fri sat".split()
# (low, high, names and the number of the first name) per field.
FIELDS = ((0, 59, None, 0), (0, 23, None, 0), (1, 31, None, 0),
          (1, 12, MONTHS, 1), (0, 7, DAYS, 0))
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
          "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
ENV_LINE = re.compile(r"\s*([^\s=]+)\s*=\s*(.*?)\s*$")
MAX_CATCH_UP = 60           # minutes


class CrontabError(ValueError):
    pass


def log(msg):
    print("%s crond: %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), msg),
          flush=True)


def parse_field(text, index):
    """The set of values a time field allows ("*/15", "1-5", "mon,fri")."""
    low, high, names, first = FIELDS[index]

    def value(s):
        if names and s.lower() in names:
            return names.index(s.lower()) + first
        if not s.isdigit() or not low <= int(s) <= high:
            raise CrontabError("%r is not %d-%d%s" % (
                s, low, high, " or a name" if names else ""))
        return int(s)

    allowed = set()
    for part in text.split(","):
        span, slash, step = part.partition("/")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            start, end = value(a), value(b)
        elif not slash:
            start = end = value(span)
        else:
            raise CrontabError("a step needs * or a range: %r" % text)
        if slash and (not step.isdigit() or int(step) == 0):
            raise CrontabError("bad step in %r" % text)
        if start > end:
            raise CrontabError("backwards range in %r" % text)
        allowed.update(range(start, end + 1, int(step) if slash else 1))
    if index == 4 and 7 in allowed:     # Sunday is 0 and 7
        allowed.add(0)
    return allowed


def split_command(text):
    """cron's %: the command up to the first unescaped %, and stdin."""
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 2] == "%":
            cur += "%"
            i += 2
            continue
        if text[i] == "%":
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    stdin = "\n".join(parts[1:]) + "\n" if len(parts) > 1 else None
    return parts[0], stdin


class Job:
    def __init__(self, fields, command, env, lineno):
        self.reboot = fields is None
        if not self.reboot:
            self.sets = [parse_field(f, i) for i, f in enumerate(fields)]
            # Vixie cron: a day field starting with * leaves the choice
            # to the other one.
            self.either_day = not (fields[2].startswith("*")
                                   or fields[4].startswith("*"))
        self.command, self.stdin = split_command(command)
        self.env = env
        self.lineno = lineno

    def due(self, tm):
        """The job runs in the minute of tm (a time.struct_time)."""
        if self.reboot:
            return False
        mins, hours, mdays, months, wdays = self.sets
        dom = tm.tm_mday in mdays
        dow = (tm.tm_wday + 1) % 7 in wdays     # struct_time: Monday is 0
        day = (dom or dow) if self.either_day else (dom and dow)
        return (tm.tm_min in mins and tm.tm_hour in hours and day
                and tm.tm_mon in months)


def base_env():
    """What cron gives a job before the crontab's own lines."""
    pw = pwd.getpwuid(os.getuid())
    return {"SHELL": "/bin/sh", "PATH": "/usr/bin:/bin",
            "HOME": pw.pw_dir, "LOGNAME": pw.pw_name, "USER": pw.pw_name}


def parse_crontab(text):
    """The jobs of a crontab, each with the environment set above it."""
    env, jobs = base_env(), []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            m = ENV_LINE.match(line)
            if m and stripped[0] not in "0123456789*@":
                value = m.group(2)
                if len(value) >= 2 and value[0] == value[-1] \
                        and value[0] in "'\"":
                    value = value[1:-1]
                env[m.group(1)] = value
                continue
            if stripped.startswith("@"):
                macro, command = (stripped.split(None, 1) + [""])[:2]
                if macro == "@reboot":
                    fields = None
                elif macro in MACROS:
                    fields = MACROS[macro].split()
                else:
                    raise CrontabError("unknown %s" % macro)
            else:
                parts = stripped.split(None, 5)
                if len(parts) < 6:
                    raise CrontabError("five time fields and a command")
                fields, command = parts[:5], parts[5]
            if not command:
                raise CrontabError("no command")
            jobs.append(Job(fields, command, dict(env), lineno))
        except CrontabError as e:
            raise CrontabError("line %d: %s" % (lineno, e)) from None
    return jobs


def load(path):
    with open(path, encoding="utf-8") as f:
        return parse_crontab(f.read())


def start(job):
    """Run one job in its own session; its output goes to ours."""
    home = job.env.get("HOME", "/")
    try:
        p = subprocess.Popen(
            [job.env.get("SHELL", "/bin/sh"), "-c", job.command],
            env=job.env, cwd=home if os.path.isdir(home) else "/",
            stdin=subprocess.PIPE if job.stdin else subprocess.DEVNULL,
            start_new_session=True)
    except OSError as e:
        log("line %d: cannot start: %s" % (job.lineno, e))
        return None
    if job.stdin:
        try:
            p.stdin.write(job.stdin.encode())
            p.stdin.close()
        except OSError:
            pass
    log("line %d: pid %d: %s" % (job.lineno, p.pid, job.command))
    return p


def run(path):
    stop = []
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda signum, _frame: stop.append(signum))
    jobs, mtime = load(path), os.stat(path).st_mtime
    log("running %s (%d jobs), pid %d" % (path, len(jobs), os.getpid()))
    running = [p for p in map(start, (j for j in jobs if j.reboot)) if p]
    last = int(time.time()) // 60       # the minute already handled
    while not stop:
        for p in running:
            if p.poll() is not None and p.returncode != 0:
                log("pid %d exited %d" % (p.pid, p.returncode))
        running = [p for p in running if p.returncode is None]
        now = int(time.time()) // 60
        if now < last - MAX_CATCH_UP:
            log("clock went back %d minutes" % (last - now))
            last = now
        if now <= last:
            # Naps of a second at most, so that a signal is seen soon;
            # the minute's jobs just after it starts.
            time.sleep(min(1.0, max(0.0, (last + 1) * 60 - time.time()))
                       + 0.01)
            continue
        try:
            st = os.stat(path).st_mtime
            if st != mtime:
                jobs, mtime = load(path), st
                log("read %s again (%d jobs)" % (path, len(jobs)))
        except (OSError, CrontabError) as e:
            log("keeping the jobs in force: %s" % e)
        if now - last > MAX_CATCH_UP:
            log("clock jumped %d minutes ahead: nothing run" % (now - last))
            minutes = []
        else:
            minutes = range(last + 1, now + 1)
        last = now
        due = [j for j in jobs
               if any(j.due(time.localtime(m * 60)) for m in minutes)]
        running += [p for p in map(start, due) if p]
    log("stopped by signal %d; %d jobs left running"
        % (stop[0], sum(p.poll() is None for p in running)))


def main(argv):
    args = argv[1:]
    check = args[:1] == ["--check"]
    if check:
        args = args[1:]
    if len(args) != 1:
        print("usage: crond.py [--check] CRONTAB", file=sys.stderr)
        return 2
    try:
        jobs = load(args[0])
    except (OSError, CrontabError) as e:
        print("crond: %s: %s" % (args[0], e), file=sys.stderr)
        return 1
    if check:
        print("crond: %s: %d jobs" % (args[0], len(jobs)))
        return 0
    run(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
