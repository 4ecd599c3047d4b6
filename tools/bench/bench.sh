#!/usr/bin/env bash
# make bench: sagashopctl load at several offered rates for each tracing
# variant, the relay against Watermill's forwarder (make bench-relay), then
# the plots (docs/bench/*.png) and the generated section of
# docs/BENCHMARKS.md (tools/bench report).
#
# For each variant it starts the whole system with tools/run.sh (which
# builds the services and sagashopctl), runs the rates in ascending order
# and stops after the first rate past the knee (orders/s to terminal below
# 90 % of offered), then stops the system, so each variant starts fresh.
# A run that ends with invariant violations (at overload, orders that did not
# end within the drain) is recorded and the bench goes on, once the system
# has worked off its backlog.
#
# Variables:
#   BENCH_VARIANTS      "shipped sampled": shipped is tracing as shipped; sampled
#                       samples 1 % of the traces (standard OTel variables)
#   BENCH_RATES         "50 100 200 500 1000 1500" orders/s
#   BENCH_DURATION      60s  how long each rate is offered
#   BENCH_DRAIN         180s how long sagashopctl waits for the last orders to end
#   BENCH_IDLE_TIMEOUT  300  seconds to wait for the system to be idle after a run
#   BENCH_RELAY         1    0 skips the relay comparison
#   BENCH_DIR           .local/bench/<UTC timestamp>: where the raw reports go
#
# The raw reports stay in BENCH_DIR (git-ignored); tools/bench/manifest.go
# describes what is there. Services on 8081-8085 must not be running: the
# bench starts its own.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=bench
# shellcheck source=tools/lib.sh
. "$ROOT/tools/lib.sh"
cd "$ROOT"
LOCAL=${SAGASHOP_LOCAL:-$ROOT/.local}

VARIANTS=${BENCH_VARIANTS:-shipped sampled}
RATES=${BENCH_RATES:-50 100 200 500 1000 1500}
DURATION=${BENCH_DURATION:-60s}
DRAIN=${BENCH_DRAIN:-180s}
IDLE_TIMEOUT=${BENCH_IDLE_TIMEOUT:-300}
RELAY=${BENCH_RELAY:-1}
OUT=${BENCH_DIR:-$LOCAL/bench/$(date -u +%Y%m%dT%H%M%SZ)}
PORTS=(8081 8082 8083 8084 8085)

# The services' extra environment for each variant.
declare -A VARIANT_ENV=(
	[shipped]=""
	[sampled]="OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01"
)
for v in $VARIANTS; do
	[ -n "${VARIANT_ENV[$v]+set}" ] || fail "BENCH_VARIANTS: unknown variant $v (known: ${!VARIANT_ENV[*]})"
done
# Ascending, whatever order they were given in: the knee stops the climb.
read -r -a RATES_SORTED <<<"$(printf '%s\n' $RATES | sort -g | tr '\n' ' ')"
[ ${#RATES_SORTED[@]} -gt 0 ] || fail "BENCH_RATES is empty"

# rel PATH: PATH relative to the repository, as the committed report shows it.
rel() { echo "${1#"$ROOT"/}"; }

# Before anything else: the bench starts the services itself.
for p in "${PORTS[@]}"; do
	! port_open "$p" || fail "port $p is taken (is make run going?): the bench starts the services itself; stop whatever listens on 8081-8085 first"
done

mkdir -p "$OUT"
MANIFEST=$OUT/manifest.tsv
: >"$MANIFEST"
record() {
	local IFS=$'\t'
	printf '%s\n' "$*" >>"$MANIFEST"
}

# The one command that reproduces this bench, with the knobs it ran with.
record command "BENCH_VARIANTS='$VARIANTS' BENCH_RATES='$RATES' BENCH_DURATION=$DURATION BENCH_DRAIN=$DRAIN BENCH_RELAY=$RELAY make bench"
record started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# Before anything of ours runs: how busy the shared machine already is.
record loadavg before "$(cut -d' ' -f1-3 /proc/loadavg)"

tools/infra.sh up

log "building tools/bench"
mkdir -p "$LOCAL/bin"
(cd tools/bench && go build -o "$LOCAL/bin/bench" .)
BENCH=$LOCAL/bin/bench
"$BENCH" env -root "$ROOT" -pg-port "${PG_PORT:-5432}" >"$OUT/env.json"

# in_group LOG CMD...: CMD in a process group of its own, its output to LOG
# ("" leaves it on ours), waited for. Bash runs a trap only once the
# foreground command ends, and a load or the relay comparison runs for
# minutes: waited for in the background, they stop with the bench on TERM or
# Ctrl-C. stop_system signals their whole group, since go run (make
# bench-relay) leaves the program it started running when it is killed.
child=
in_group() {
	local log=$1
	shift
	if [ -n "$log" ]; then
		setsid "$@" >"$log" 2>&1 &
	else
		setsid "$@" &
	fi
	child=$!
	local status=0
	wait "$child" || status=$?
	child=
	return $status
}

run_pid=
stop_system() {
	if [ -n "$child" ]; then
		kill -TERM -- "-$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
		child=
	fi
	[ -n "$run_pid" ] || return 0
	log "stopping the services"
	kill -TERM "$run_pid" 2>/dev/null || true
	wait "$run_pid" 2>/dev/null || true
	run_pid=
}
trap 'stop_system; exit 130' INT
trap 'stop_system; exit 143' TERM
trap stop_system EXIT

# start_system VARIANT: tools/run.sh in the background with the variant's
# environment, until its banner says everything is up and seeded.
start_system() {
	local v=$1 runlog=$OUT/run-$1.log
	log "starting the system for variant $v${VARIANT_ENV[$v]:+ (${VARIANT_ENV[$v]})}"
	# shellcheck disable=SC2086 # the variant's environment is words on purpose
	env ${VARIANT_ENV[$v]} tools/run.sh >"$runlog" 2>&1 &
	run_pid=$!
	started() {
		kill -0 "$run_pid" 2>/dev/null || fail_log "$runlog" "tools/run.sh exited before the system was up"
		grep -q '^\[run\] Sagashop is running' "$runlog"
	}
	# The first run.sh on a machine builds everything: minutes.
	wait_for 900 started || fail_log "$runlog" "the system was not up after 900s"
}

# busy: what still has work queued, summed over the services' /metrics
# (empty when idle): rows in the outboxes, messages not yet committed.
busy() {
	local p pending=0 lag=0 m
	for p in "${PORTS[@]}"; do
		m=$(curl -fsS --max-time 5 "http://127.0.0.1:$p/metrics" 2>/dev/null) || {
			echo "port $p did not answer /metrics"
			return
		}
		pending=$(awk -v n="$pending" '/^outbox_pending_rows[ {]/ {n += $NF} END {print n + 0}' <<<"$m")
		lag=$(awk -v n="$lag" '/^consumer_lag[ {]/ {n += $NF} END {print n + 0}' <<<"$m")
	done
	[ "$pending" = 0 ] && [ "$lag" = 0 ] || echo "outbox pending $pending, consumer lag $lag"
}

# wait_idle VARIANT RATE: until nothing is queued, twice in a row over more
# than consumer_lag's refresh (5 s), so a stale gauge cannot pass; at most
# IDLE_TIMEOUT seconds. Records how long it took and what was left.
wait_idle() {
	local start=$SECONDS deadline=$((SECONDS + IDLE_TIMEOUT)) state
	while :; do
		state=$(busy)
		if [ -z "$state" ]; then
			sleep 6
			state=$(busy)
			[ -n "$state" ] || break
		fi
		if [ $SECONDS -ge $deadline ]; then
			log "$1 $2/s: still busy after ${IDLE_TIMEOUT}s ($state); going on"
			record idle "$1" "$2" $((SECONDS - start)) "$state"
			return
		fi
		sleep 2
	done
	record idle "$1" "$2" $((SECONDS - start)) ok
}

for v in $VARIANTS; do
	record variant "$v" "${VARIANT_ENV[$v]}"
	start_system "$v"
	for rate in "${RATES_SORTED[@]}"; do
		json=$OUT/$v-$rate.json
		cmd=("$(rel "$LOCAL/bin/sagashopctl")" load -rate "$rate" -duration "$DURATION" -drain "$DRAIN" -quiet -json "$(rel "$json")")
		log "$v: ${rate} orders/s for $DURATION"
		status=0
		in_group "$OUT/$v-$rate.log" "$LOCAL/bin/sagashopctl" "${cmd[@]:1}" || status=$?
		record run "$v" "$rate" "$status" "$(basename "$json")" "${cmd[*]}"
		# At overload the load reports orders that did not end in time and
		# exits 1: that is a result, not a reason to stop the bench.
		[ $status = 0 ] || log "$v ${rate}/s: sagashopctl load exited with status $status (see $(rel "$OUT/$v-$rate.log"))"
		grep -E '^(placed|  send|invariants)' "$OUT/$v-$rate.log" >&2 || true
		wait_idle "$v" "$rate"
		if [ ! -f "$json" ]; then
			log "$v ${rate}/s: no report written; not going higher"
			break
		fi
		knee=$("$BENCH" knee -json "$json") || knee="past: its report is unreadable"
		if [[ $knee == past* ]]; then
			log "$v ${rate}/s is past the knee ($knee); not going higher"
			break
		fi
	done
	stop_system
done

if [ "$RELAY" != 0 ]; then
	log "the relay against Watermill's forwarder (make bench-relay)"
	status=0
	in_group "" "${MAKE:-make}" --no-print-directory bench-relay BENCH_OUT="$OUT/relay" || status=$?
	record relay "$status" relay "make bench-relay BENCH_OUT=$(rel "$OUT/relay")"
	[ $status = 0 ] || log "make bench-relay exited with status $status"
fi

record loadavg after "$(cut -d' ' -f1-3 /proc/loadavg)"
record finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)"

log "writing the plots and docs/BENCHMARKS.md"
(cd tools/bench && "$BENCH" report -in "$OUT" -doc ../../docs/BENCHMARKS.md -png ../../docs/bench -root ../..)
log "done; raw reports in $(rel "$OUT")"
