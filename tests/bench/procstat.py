# SPDX-License-Identifier: ISC
"""procstat.py -- what the issue-11 benchmarks read from /proc: a process
tree's CPU time, a process's RSS and PSS, its open file descriptors.

CPU is utime + stime of each live process plus cutime + cstime (what it
reaped: a PostgreSQL backend that ended during the run), in seconds; the
caller takes a reading before and after and divides the difference by the
wall time to get cores.
"""

import os

TCK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    """(ppid, comm, cpu seconds incl. reaped children) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    comm = st[st.index("(") + 1:st.rindex(")")]
    rest = st[st.rindex(")") + 2:].split()
    return (int(rest[1]), comm, sum(int(x) for x in rest[11:15]) / TCK)


def tree(pid):
    """pid and every descendant of it (from each process's ppid)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = stat(int(d))
            if s:
                parent[int(d)] = s[0]
    out, grew = {pid}, True
    while grew:
        grew = False
        for p, pp in parent.items():
            if pp in out and p not in out:
                out.add(p)
                grew = True
    return out


def cpu(pids):
    """Total CPU seconds of pids (each with what it reaped)."""
    total = 0.0
    for p in pids:
        s = stat(p)
        if s:
            total += s[2]
    return total


def tree_cpu(pid):
    """CPU seconds of pid and its descendants, as they are now."""
    return cpu(tree(pid))


def self_cpu(pid):
    """utime + stime of pid alone (not its children), in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0.0
    rest = st[st.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / TCK


def rss_mb(pid):
    """VmRSS of pid in MB (0 when gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pss_mb(pid):
    """Pss of pid in MB, from smaps_rollup (0 when unreadable)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def fd_count(pid):
    """Open file descriptors of pid (-1 when gone)."""
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
