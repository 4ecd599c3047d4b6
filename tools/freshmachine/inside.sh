#!/usr/bin/env bash
# Inside the fresh-machine container (tools/freshmachine/check.sh starts it),
# as root, on the clean clone mounted at /fresh/sagashop: the README's two
# commands as written, `make run` then `make test`.
#
# `make run` stays in the foreground, so it runs in a session of its own in
# the background; once it says it is running, the README's curl session
# (its "Try it" block, as written) and e2e TestSmoke, which checks the
# outcomes the README describes, run against it; then SIGINT goes to its
# process group, as Ctrl-C in a terminal does, and everything it started
# must be gone. Then `make test`.
set -euo pipefail

cp -a /fresh/sagashop /root/sagashop
cd /root/sagashop
LOG_TAG=fresh-machine
. tools/lib.sh

STEPS=()
step_done() { STEPS+=("$(printf '%-40s %5ds' "$1" $(($(date +%s) - $2)))"); }
summary() {
	log "steps:"
	printf '  %s\n' "${STEPS[@]}" >&2
}
# The logs go to /out (the host's .local/freshmachine/logs) however this ends.
save_logs() {
	[ -d /out ] || return 0
	cp /root/*.log /root/*.out /root/*.sh /out/ 2>/dev/null || true
	[ ! -d /root/sagashop/.local ] || (cd /root/sagashop/.local && find . -name '*.log' -print0 |
		tar --null -cf - -T - | tar -C /out -xf -) 2>/dev/null || true
}
trap 'summary; save_logs' EXIT

log "$(. /etc/os-release && echo "$PRETTY_NAME"); $(go version); $(java -version 2>&1 | head -n 1); $(mvn -B -v 2>/dev/null | head -n 1)"
log "clone at $(git log -1 --format='%h %s'); running as $(id -un)"

# ------------------------------------------------------------------ make run

RUN_LOG=/root/make-run.log
t0=$(date +%s)
log "make run (in the background; log: $RUN_LOG)"
setsid make run >"$RUN_LOG" 2>&1 </dev/null &
RUN_PID=$!

run_alive() { kill -0 "$RUN_PID" 2>/dev/null; }
running() {
	run_alive || { tail -n 60 "$RUN_LOG" >&2; fail "make run exited before it was running"; }
	grep -q 'is running' "$RUN_LOG"
}
if ! wait_for 1800 running; then
	tail -n 40 "$RUN_LOG" >&2
	fail "make run did not say it is running within 30 minutes"
fi
sed -n '/is running/,$p' "$RUN_LOG" >&2
step_done "make run, until it is running" "$t0"

# The README's session as written: its first sh block that posts an order.
t0=$(date +%s)
awk '/^```/ { if (inblock) { if (block ~ /\/orders/) { printf "%s", block; exit } block = ""; inblock = 0 } else if ($0 ~ /^```(sh|bash)/) inblock = 1; next }
	inblock { block = block $0 "\n" }' README.md >/root/try-it.sh
[ -s /root/try-it.sh ] || fail "README.md has no sh block that posts an order (the curl session)"
log "the README's curl session:"
sed 's/^/  | /' /root/try-it.sh >&2
bash /root/try-it.sh >/root/try-it.out 2>&1 || fail "the README's curl session exited with status $?: $(cat /root/try-it.out)"
sed 's/^/  > /' /root/try-it.out >&2
for want in '"status":"SHIPPED"' '"reason":"payment_failed"'; do
	grep -qF "$want" /root/try-it.out || log "note: the session's output has no $want (it waits only a few seconds; TestSmoke waits up to a minute)"
done
step_done "the README's curl session" "$t0"

t0=$(date +%s)
log "e2e TestSmoke against make run: the outcomes the README describes"
SAGASHOP_SMOKE=1 go test -count=1 -run '^TestSmoke$' -v ./e2e/ >&2 || fail "TestSmoke against make run"
step_done "e2e TestSmoke (compiles e2e first)" "$t0"

t0=$(date +%s)
log "Ctrl-C: SIGINT to make run's process group"
kill -INT -- "-$RUN_PID"
# leftovers: the processes still running a program or data of the clone
# (the services, PostgreSQL, Kafka, Jaeger: all started by absolute path).
leftovers() {
	local d cmd
	for d in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		[[ $cmd == *"/root/sagashop/"* ]] && echo "${d#/proc/} $cmd"
	done
	return 0
}
stopped() { ! run_alive && [ -z "$(leftovers)" ]; }
if ! wait_for 120 stopped; then
	tail -n 30 "$RUN_LOG" >&2
	fail "120s after SIGINT, still running: $(run_alive && echo "make run (pid $RUN_PID); ")$(leftovers)"
fi
wait "$RUN_PID" || true
tail -n 12 "$RUN_LOG" | sed 's/^/  /' >&2
for port in 8081 8082 8083 8084 8085 5432 9092 4317 16686; do
	if port_open "$port"; then fail "port $port still open after make run stopped"; fi
done
log "make run stopped; no process or port of it is left"
step_done "make run stops on SIGINT" "$t0"

# ----------------------------------------------------------------- make test

t0=$(date +%s)
log "make test"
make test >&2 || fail "make test (exit status $?)"
step_done "make test" "$t0"
log "PASSED: make run (with the README's session) and make test on a fresh Debian 12"
