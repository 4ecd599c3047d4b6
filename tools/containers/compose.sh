#!/usr/bin/env bash
# (a) of make containers: the project's docker-compose.yml with the local
# images (tools/containers/images.sh builds them), on free host ports since
# make run's are usually taken: docker compose up --build, the README's curl
# session with its outcomes checked (e2e TestSmoke, SAGASHOP_SMOKE=1), then
# docker compose down -v and a check that nothing is left.
#
#   tools/containers/compose.sh
#
# The engine is started if it is not running, and then stopped at the end.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROJECT=sagashop-smoke # compose project of this run; users' default is "sagashop"

# free_ports VAR...: set each VAR to a distinct free port on 127.0.0.1 (the
# local stack holds 5432, 9092, 4317, 16686 and 8081-8085), below the
# ephemeral range, whose ports outgoing connections hold without listening.
free_ports() {
	local var port used=" " low
	low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
	for var in "$@"; do
		while true; do
			port=$((20000 + RANDOM % (low - 20000)))
			[[ $used == *" $port "* ]] && continue
			port_open "$port" || break
		done
		used+="$port "
		export "$var=$port"
	done
}

# The project's docker-compose.yml, plus fixed addresses for podman's sake
# (compose.podman.yml says why).
compose() { docker compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" -f "$HERE/compose.podman.yml" "$@"; }

# stamp: copy stdin to stdout, each line prefixed with the time.
stamp() {
	local line
	while IFS= read -r line; do printf '%(%T)T %s\n' -1 "$line"; done
}

compose_up() {
	# One job at a time: the five images share the build stage, so the first
	# build compiles and the other four come from the layer cache, where five
	# parallel builds would each compile (BuildKit shares the work, podman's
	# classic builder does not).
	compose --parallel 1 up --build -d --quiet-pull 2>&1 | stamp >"$STATE/compose-up.log" ||
		{ tail -n 40 "$STATE/compose-up.log" >&2; return 1; }
}

wait_seed() {
	compose wait seed >/dev/null 2>&1 || true
	compose logs --no-color seed | sed 's/^/  /' >&2
	local code
	code=$(compose ps -a --format '{{.ExitCode}}' seed)
	[ "$code" = 0 ] || { log "seed exited with status $code"; return 1; }
}

# The README's curl session against the stack's host ports (ORDER_PORT ...
# JAEGER_UI_PORT, exported by free_ports), in Go: e2e/smoke_test.go.
smoke() {
	(cd "$ROOT" && SAGASHOP_SMOKE=1 go test -count=1 -run '^TestSmoke$' -v ./e2e/)
}

compose_down() {
	log "docker compose down -v"
	compose down -v --remove-orphans --timeout 10 2>&1 | stamp >"$STATE/compose-down.log" ||
		{ tail -n 20 "$STATE/compose-down.log" >&2; return 1; }
}

# On a failure: the state and the last log lines, then down -v.
compose_failed() {
	log "compose run FAILED; state and last log lines (all of them: $STATE/compose-logs.txt):"
	compose ps -a >&2 || true
	compose logs --no-color --timestamps >"$STATE/compose-logs.txt" 2>&1 || true
	compose logs --no-color --tail 30 >&2 || true
	compose_down || true
}

COMPOSE_ACTIVE=0 # a compose project is up: take it down on the way out
on_exit() {
	local status=$?
	trap - EXIT
	[ "$COMPOSE_ACTIVE" = 0 ] || compose_failed
	engine_release
	print_timings
	exit $status
}
trap on_exit EXIT

require_images "$POSTGRES_LOCAL" "$KAFKA_LOCAL" "$JAEGER_LOCAL" "$GO_LOCAL"
engine_use
image_env
free_ports POSTGRES_PORT KAFKA_PORT OTLP_GRPC_PORT OTLP_HTTP_PORT JAEGER_UI_PORT \
	ORDER_PORT PAYMENT_PORT INVENTORY_PORT SHIPPING_PORT EMAIL_PORT
log "host ports: order $ORDER_PORT, payment $PAYMENT_PORT, inventory $INVENTORY_PORT, shipping $SHIPPING_PORT," \
	"email $EMAIL_PORT, postgres $POSTGRES_PORT, kafka $KAFKA_PORT, jaeger UI $JAEGER_UI_PORT"
compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true # leftovers of an interrupted run
COMPOSE_ACTIVE=1

log "docker compose up --build -d (project $PROJECT)"
timed "compose up --build" compose_up
timed "seed" wait_seed
timed "curl session (e2e TestSmoke)" smoke
COMPOSE_ACTIVE=0
compose logs --no-color --timestamps >"$STATE/compose-logs.txt" 2>&1 || true
timed "compose down -v" compose_down
left=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT"; podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$left" ] || fail "containers or volumes left after down -v: $left"
log "compose: down -v left no containers or volumes"
