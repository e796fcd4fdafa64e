# SPDX-License-Identifier: ISC
# scripts/procs.sh -- sourced by scripts/stack and scripts/fleet: which
# processes are the ones a script started.  A pid alone proves nothing: once
# our process is gone its pid may be anyone's, whatever its command line
# says, so a pid file is kept with the process's start (record_pid) and a
# process is ours only while both match (pid_alive, same_proc).

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
