#!/usr/bin/env bash
# make run: the whole system in the foreground. Starts the local
# infrastructure (tools/infra.sh), builds and starts the five services,
# seeds demo data, prints where everything listens, and on Ctrl-C or SIGTERM
# stops everything it started (infrastructure that was already running is
# left running).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOGS=$ROOT/.local/logs
BIN=$ROOT/.local/bin
SERVICES=(inventory payment order shipping email)
declare -A PORT=([order]=8081 [payment]=8082 [inventory]=8083 [shipping]=8084 [email]=8085)

say() { printf '[run] %s\n' "$*"; }

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
	say "stopping the services"
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ ${#started_infra[@]} -gt 0 ]; then
		tools/infra.sh down "${started_infra[@]}"
	fi
	say "stopped"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

tools/infra.sh up

say "building the services"
mkdir -p "$BIN" "$LOGS"
go build -o "$BIN/" ./services/...

for svc in "${SERVICES[@]}"; do
	HTTP_ADDR=":${PORT[$svc]}" OTEL_SERVICE_NAME="$svc" "$BIN/$svc" >>"$LOGS/$svc.log" 2>&1 &
	pids+=($!)
done

for i in "${!SERVICES[@]}"; do
	svc=${SERVICES[$i]}
	deadline=$((SECONDS + 60))
	until curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$svc]}/readyz" 2>/dev/null; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
			say "$svc FAILED to start; last lines of $LOGS/$svc.log:"
			tail -n 30 "$LOGS/$svc.log" >&2
			exit 1
		fi
		sleep 0.2
	done
done

say "seeding demo data: products mug, tshirt, poster; customers alice (100.00) and bob (5.00)"
put_product() {
	curl -fsS -o /dev/null -X PUT "http://127.0.0.1:8083/products/$1" -H 'Content-Type: application/json' \
		-d "{\"name\": \"$2\", \"price_cents\": $3, \"available\": $4}"
}
put_product mug "Mug" 1299 50
put_product tshirt "T-shirt" 2500 20
put_product poster "Poster" 900 3
for pair in alice:10000 bob:500; do
	customer=${pair%%:*}
	if ! curl -fs -o /dev/null "http://127.0.0.1:8082/accounts/$customer"; then
		curl -fsS -o /dev/null -X POST "http://127.0.0.1:8082/accounts/$customer/deposits" \
			-H 'Content-Type: application/json' -d "{\"amount_cents\": ${pair##*:}}"
	fi
done

# The order service prices orders from its own copy of the catalog, which
# it learns from inventory's events: wait until it has seen the three
# seeded products, so the README's first order does not race the seeding.
deadline=$((SECONDS + 30))
until [ "$(curl -fs http://127.0.0.1:8081/metrics |
	awk '/^consumer_messages_processed_total\{.*type="ProductUpdated"/ {n += $NF} END {print n + 0}')" -ge 3 ]; do
	if [ $SECONDS -ge $deadline ]; then
		say "the order service has not seen the demo catalog after 30s; see $LOGS/order.log"
		break
	fi
	sleep 0.2
done

cat <<EOF
[run] Sagashop is running (Ctrl-C stops it):
      order      http://127.0.0.1:8081   (POST /orders, GET /orders/{id})
      payment    http://127.0.0.1:8082   (POST /accounts/{id}/deposits, GET /accounts/{id}, GET /payments/{order_id})
      inventory  http://127.0.0.1:8083   (PUT|GET /products/{sku})
      shipping   http://127.0.0.1:8084   (GET /shipments/{order_id})
      email      http://127.0.0.1:8085   (GET /emails?order_id=)
      every service: /livez /readyz /metrics
      jaeger     http://127.0.0.1:16686/api/traces?service=order   (OTLP on 127.0.0.1:4317)
      logs       $LOGS/<service>.log
EOF

# Stay in the foreground until a signal arrives or a service dies.
set +e
wait -n "${pids[@]}"
status=$?
if [ $stopping = 0 ]; then
	say "a service exited (status $status); see $LOGS"
	exit 1
fi
