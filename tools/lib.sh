# shellcheck shell=bash
# The helpers Sagashop's scripts share. Source it; do not run it:
#
#   LOG_TAG=infra                       # the [tag] in front of every message
#   . "$ROOT/tools/lib.sh"
#
# Every message goes to stderr, so a function whose stdout is captured
# ($(...)) can log. The names below are stable: other scripts rely on them.
#
#   log MSG...                      "[tag] MSG" on stderr
#   fail MSG...                     "[tag] FAILED: MSG" on stderr, exit 1
#   fail_log LOGFILE MSG...         fail, after printing the last 30 lines of LOGFILE (if it exists)
#   port_open PORT [HOST]           true when something accepts TCP connections on HOST:PORT
#                                   (HOST defaults to 127.0.0.1)
#   wait_for SECONDS CHECK [ARG...] run CHECK every 0.2 s until it succeeds (true) or SECONDS
#                                   pass (false); CHECK may call fail itself to give up early
#   pid_of PIDFILE EXPECT           print the pid on the first line of PIDFILE (so PostgreSQL's
#                                   postmaster.pid works too) if that process is alive and its
#                                   command line contains EXPECT (a program or data path only ours
#                                   has), so a pid reused after a reboot is never taken for ours;
#                                   else print nothing and return false
#   pid_alive PIDFILE EXPECT        pid_of without the output
#   pid_exited PIDFILE EXPECT       the process started for PIDFILE is gone for sure (no such pid, a
#                                   zombie, or another program's command line): what a readiness
#                                   check asks, since while a process execs (nohup, setsid, the java
#                                   launcher re-executing itself) its command line reads empty for
#                                   an instant and pid_alive says false
#   start_bg PIDFILE LOGFILE CMD... start CMD detached (own session, stdin closed, stdout and stderr
#                                   to LOGFILE), write its pid to PIDFILE; returns once that pid runs
#                                   CMD, so pid_of PIDFILE works right away
#   stop_pid NAME PIDFILE EXPECT [SECONDS]
#                                   stop the process of PIDFILE (checked as pid_of does): SIGTERM,
#                                   SIGKILL after SECONDS (default 30); remove PIDFILE. A pidfile
#                                   whose process is gone or is not ours is removed with a message,
#                                   and nothing is signalled.

LOG_TAG=${LOG_TAG:-sagashop}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }

fail() {
	printf '[%s] FAILED: %s\n' "$LOG_TAG" "$*" >&2
	exit 1
}

fail_log() {
	local logfile=$1
	shift
	if [ -n "$logfile" ] && [ -f "$logfile" ]; then
		printf '[%s] last lines of %s:\n' "$LOG_TAG" "$logfile" >&2
		tail -n 30 "$logfile" >&2
	fi
	fail "$@"
}

port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}

pid_of() {
	local pidfile=$1 expect=$2 pid cmdline
	[ -f "$pidfile" ] || return 1
	read -r pid 2>/dev/null <"$pidfile" || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmdline == *"$expect"* ]] || return 1
	echo "$pid"
}

pid_alive() { pid_of "$@" >/dev/null; }

pid_exited() {
	local pidfile=$1 expect=$2 pid cmdline state
	pid_alive "$pidfile" "$expect" && return 1
	read -r pid 2>/dev/null <"$pidfile" || return 0
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	state=$(awk '{print $3}' 2>/dev/null <"/proc/$pid/stat") || return 0
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] || return 0
	cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
	# Empty while it execs; anything else not ours means the pid was reused.
	[ -n "$cmdline" ] && [[ $cmdline != *"$expect"* ]]
}

start_bg() {
	local pidfile=$1 logfile=$2
	shift 2
	nohup setsid "$@" >"$logfile" 2>&1 </dev/null &
	local pid=$! self deadline=$((SECONDS + 2))
	echo "$pid" >"$pidfile"
	# Until it execs, the child is a copy of this shell, whose command line
	# pid_of would not take for CMD's: return once it has changed.
	self=$(tr '\0' ' ' 2>/dev/null <"/proc/$BASHPID/cmdline") || true
	while [ "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" = "$self" ] && [ $SECONDS -lt $deadline ]; do
		sleep 0.01
	done
}

stop_pid() {
	local name=$1 pidfile=$2 expect=$3 secs=${4:-30} pid
	[ -f "$pidfile" ] || return 0
	if ! pid=$(pid_of "$pidfile" "$expect"); then
		pid=
		read -r pid 2>/dev/null <"$pidfile" || true
		if [[ $pid =~ ^[0-9]+$ ]] && [ -e "/proc/$pid" ]; then
			log "$name: pid $pid of $pidfile is another program now (its command line lacks $expect); removing the stale pidfile"
		else
			log "$name: pid ${pid:-?} of $pidfile is gone; removing the stale pidfile"
		fi
		rm -f "$pidfile"
		return 0
	fi
	log "stopping $name (pid $pid)"
	kill "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + secs))
	while [ -e "/proc/$pid" ] && [ $SECONDS -lt $deadline ]; do
		sleep 0.1
	done
	if [ -e "/proc/$pid" ]; then
		log "$name did not stop in ${secs}s, killing it"
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}
