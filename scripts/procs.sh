# SPDX-License-Identifier: ISC
# scripts/procs.sh -- sourced by scripts/stack and scripts/fleet: which
# processes are the ones a script started.  A pid alone proves nothing: once
# our process is gone its pid may be anyone's, whatever its command line
# says, so a pid file is kept with the process's start (record_pid) and a
# process is ours only while both match (pid_alive, same_proc).  A pid
# file an older script wrote has no start beside it; while its pid runs,
# no command signals, replaces or reports that process (pid_unrecorded).

# proc_field PID N -- field N (3 or more) of /proc/PID/stat (proc(5)).
proc_field() {
	local stat
	local -a f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	# Field 2, the command name in parentheses, may itself hold spaces
	# and parentheses: field 3 on follow its last ") ".
	read -r -a f <<<"${stat##*) }"
	[[ -n ${f[$2 - 3]:-} ]] || return 1
	echo "${f[$2 - 3]}"
}

# proc_alive PID -- PID exists and is not a zombie (our daemons are
# reparented to pid 1, which may reap them late; kill -0 succeeds on zombies).
proc_alive() {
	kill -0 "$1" 2>/dev/null || return 1
	[[ $(proc_field "$1" 3) != Z ]]
}

# proc_start PID -- what tells this process from any other that has or
# will have its pid: the boot's id and the process's start time (clock
# ticks since boot, stat field 22; set at fork, kept across exec).
proc_start() {
	local boot start
	boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null) || return 1
	start=$(proc_field "$1" 22) || return 1
	echo "$boot $start"
}

# same_proc PID START -- PID runs and is the process proc_start said START of.
same_proc() {
	proc_alive "$1" && [[ $(proc_start "$1") == "$2" ]]
}

# record_pid PIDFILE PID -- remember PID, a child this shell just started
# in the background: its pid in PIDFILE, its proc_start in PIDFILE.start.
# A child that already exited is recorded with no start (so not alive);
# the parent check keeps a pid freed by such a child and taken by another
# process at once from being recorded as ours.
record_pid() {
	local start=
	if [[ $(proc_field "$2" 4) == "$BASHPID" ]]; then
		start=$(proc_start "$2") || start=
	fi
	echo "$start" >"$1.start"
	echo "$2" >"$1"
}

# pid_alive PIDFILE -- the process PIDFILE names runs and is the one this
# script started (record_pid).  A pid alone proves nothing: once our
# process is gone, its pid may be anyone's (another stack's lighttpd, a
# user's `less /var/log/auth.log`), whatever its command line says.
pid_alive() {
	local pid
	[[ -s $1 && -s $1.start ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	same_proc "$pid" "$(<"$1.start")"
}

# pid_unrecorded PIDFILE NAME -- PIDFILE was written by an older script,
# which kept no start beside it (no PIDFILE.start), and its pid runs: says
# so on stderr, naming the pid, and succeeds.  That process may be the
# NAME the older script started, or anyone who got its pid since; nothing
# here can tell, so no command may signal it, and no start may start a
# second NAME beside it (which would fight the first for its socket or
# port) or write over PIDFILE (which would hide the first from stop): the
# operator stops it by hand, once.  Such a file whose pid is gone is
# stale: removed, and false, as for no file at all.
pid_unrecorded() {
	local pid me=${0##*/}
	[[ -e $1 && ! -e $1.start ]] || return 1
	pid=$(<"$1")
	# Not 0 or -1: kill -0 takes those for a process group.
	if [[ $pid =~ ^[1-9][0-9]*$ ]] && proc_alive "$pid"; then
		echo "$me: $1: pid $pid runs, but no start time was recorded with it (an older scripts/$me wrote the file): left alone; if it is this $me's $2, stop it by hand once: kill $pid" >&2
		return 0
	fi
	rm -f "$1"
	return 1
}
