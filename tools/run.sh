#!/usr/bin/env bash
# make run: the whole system in the foreground. Starts the local
# infrastructure (tools/infra.sh), builds and starts the five services,
# seeds the demo data (sagashopctl seed, as compose does), prints where
# everything listens, and on Ctrl-C or SIGTERM stops everything it started
# (infrastructure that was already running is left running).
#
# Everything listens on 127.0.0.1 only. SAGASHOP_BIND is the address the five
# services listen on instead, e.g. SAGASHOP_BIND=0.0.0.0 for every interface
# (mind that the demo has no authentication). The infrastructure stays on
# loopback. SAGA_DEADLINE (a Go duration, default 5m) is the order service's
# saga deadline: an order still open then is expired and, unless it shipped,
# cancelled with reason timed_out.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=run
# shellcheck source=tools/lib.sh
. "$ROOT/tools/lib.sh"
cd "$ROOT"
LOCAL=${SAGASHOP_LOCAL:-$ROOT/.local}
LOGS=$LOCAL/logs
BIN=$LOCAL/bin
BIND=${SAGASHOP_BIND:-127.0.0.1}

# The services in start order, and their ports: each one's default
# (services/<name>/config.go), which docker-compose.yml publishes too.
SERVICES=(inventory payment order shipping email)
declare -A PORT=([order]=8081 [payment]=8082 [inventory]=8083 [shipping]=8084 [email]=8085)

# LISTEN is the host part of HTTP_ADDR; REACH is where this script (and the
# banner's reader, on this machine) reaches the services.
case $BIND in
0.0.0.0) LISTEN=$BIND REACH=127.0.0.1 WHERE="every interface (SAGASHOP_BIND=$BIND)" ;;
::) LISTEN="[::]" REACH="[::1]" WHERE="every interface (SAGASHOP_BIND=$BIND)" ;;
*:*) LISTEN="[$BIND]" REACH="[$BIND]" WHERE="$BIND only" ;;
*) LISTEN=$BIND REACH=$BIND WHERE="$BIND only" ;;
esac
[ "$BIND" != 127.0.0.1 ] || WHERE="127.0.0.1 only (SAGASHOP_BIND=0.0.0.0 for every interface)"
url() { echo "http://$REACH:${PORT[$1]}"; }

# Which infrastructure components are down now, so we stop only those later.
started_infra=()
while read -r name state _; do
	[ "$state" = down ] && started_infra+=("$name")
done < <(tools/infra.sh status)

pids=()
stopping=0
cleanup() {
	[ $stopping = 1 ] && return
	stopping=1
	trap - INT TERM
	log "stopping the services"
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ ${#started_infra[@]} -gt 0 ]; then
		tools/infra.sh down "${started_infra[@]}"
	fi
	log "stopped"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

tools/infra.sh up

log "building the services and sagashopctl"
mkdir -p "$BIN" "$LOGS"
go build -o "$BIN/" ./services/...
(cd tools/sagashopctl && go build -o "$BIN/sagashopctl" .)

# Settings of one service only, as NAME=value words for env.
declare -A SETTINGS=([order]="SAGA_DEADLINE=${SAGA_DEADLINE:-5m}")
for svc in "${SERVICES[@]}"; do
	# shellcheck disable=SC2086 # the settings are NAME=value words
	env ${SETTINGS[$svc]:-} HTTP_ADDR="$LISTEN:${PORT[$svc]}" OTEL_SERVICE_NAME="$svc" "$BIN/$svc" >>"$LOGS/$svc.log" 2>&1 &
	pids+=($!)
done

# service_ready I: the I-th service answers /readyz (and has not exited).
service_ready() {
	local svc=${SERVICES[$1]}
	kill -0 "${pids[$1]}" 2>/dev/null || fail_log "$LOGS/$svc.log" "$svc exited during start-up"
	curl -fsS -o /dev/null "$(url "$svc")/readyz" 2>/dev/null
}
for i in "${!SERVICES[@]}"; do
	wait_for 60 service_ready "$i" || fail_log "$LOGS/${SERVICES[$i]}.log" "${SERVICES[$i]} not ready after 60s"
done

log "seeding the demo data (sagashopctl seed)"
seeded=$("$BIN/sagashopctl" seed -inventory "$(url inventory)" -payment "$(url payment)" -timeout 30s) ||
	fail "sagashopctl seed failed (service logs: $LOGS)"
log "$seeded"

# The order service prices orders from its own copy of the catalog, which
# it learns from inventory's events: wait until it has seen the three
# products sagashopctl seeds, so the README's first order does not race the
# seeding.
catalog_seen() {
	[ "$(curl -fs "$(url order)/metrics" |
		awk '/^consumer_messages_processed_total\{.*type="ProductUpdated"/ {n += $NF} END {print n + 0}')" -ge 3 ]
}
wait_for 30 catalog_seen || log "the order service has not seen the demo catalog after 30s; see $LOGS/order.log"

cat <<EOF
[run] Sagashop is running (Ctrl-C stops it); the services listen on $WHERE:
      order      $(url order)   (POST /orders, GET /orders/{id})
      payment    $(url payment)   (POST /accounts/{id}/deposits, GET /accounts/{id}, GET /payments/{order_id})
      inventory  $(url inventory)   (PUT|GET /products/{sku}, POST /products/{sku}/restock)
      shipping   $(url shipping)   (GET /shipments/{order_id})
      email      $(url email)   (GET /emails?order_id=)
      every service: /livez /readyz /metrics
      jaeger     http://127.0.0.1:16686/api/traces?service=order   (OTLP on 127.0.0.1:4317)
      logs       $LOGS/<service>.log
EOF

# Stay in the foreground until a signal arrives or a service dies.
set +e
wait -n "${pids[@]}"
status=$?
if [ $stopping = 0 ]; then
	# A service exits with 0 only when told to stop: Ctrl-C in a terminal
	# reaches the services along with this script, and one of them may end
	# before this script's trap runs. That is a stop, not a failure.
	if [ "$status" = 0 ]; then
		exit 130
	fi
	log "a service exited (status $status); see $LOGS"
	exit 1
fi
