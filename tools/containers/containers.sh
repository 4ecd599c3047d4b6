#!/usr/bin/env bash
# Sagashop's containers on a machine with no Docker engine and no image
# registry (see INFRA.md): Debian's podman serves a Docker-compatible API,
# the docker CLI drives it with a compose plugin built from the Go module
# proxy, and every image is built here. The infrastructure images are
# assembled from Debian packages (a debootstrap root filesystem), the Kafka
# jars from Maven Central and Jaeger from tools/jaeger; the services' images
# come from the project's Dockerfile with GO_IMAGE and RUNTIME_IMAGE pointed
# at local images. Nothing here touches the local stack of tools/infra.sh.
#
#   tools/containers/containers.sh all      setup, images, then (a) and (b) below (make containers)
#   tools/containers/containers.sh compose  (a) docker compose up --build with the local images on free host
#                                           ports, the README's curl session, docker compose down -v
#   tools/containers/containers.sh e2e      (b) the e2e suite on PostgreSQL, Kafka and Jaeger containers
#                                           started by testcontainers-go from the local images
#   tools/containers/containers.sh setup    install podman, runc, debootstrap (apt-get), build the compose
#                                           plugin, start the engine and leave it running
#   tools/containers/containers.sh images   setup, then build the local images that are missing or stale
#   tools/containers/containers.sh env      the variables that point docker, compose and testcontainers at the
#                                           engine and the local images: eval "$(tools/containers/containers.sh env)"
#   tools/containers/containers.sh stop     stop the engine (podman's API service) and the healthcheck loop
#   tools/containers/containers.sh clean    stop, remove the images built here and .local/containers
#
# CONTAINERS_E2E_CMD is the command (b) runs (default: go test -race
# -count=1 -timeout 25m -v ./e2e/, with SAGASHOP_E2E_INFRA=containers);
# set it empty to skip (b) in `all`.
#
# Idempotent: each step skips what is there and up to date (images carry a
# label with the hash of their inputs; podman's layer cache does the rest).
# Every run that starts the engine stops it at the end, and every container
# it starts is removed. State lives in .local/containers (git-ignored),
# images in podman's storage.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tools/containers
STATE=$ROOT/.local/containers
SOCK=$STATE/podman.sock

export CONTAINERS_CONF=$HERE/containers.conf
export DOCKER_CONFIG=$STATE/docker
export DOCKER_HOST=unix://$SOCK
COMPOSE_PLUGIN=$DOCKER_CONFIG/cli-plugins/docker-compose

# One Kafka for the local stack and the image: the versions of tools/kafka/pom.xml.
KAFKA_VERSION=$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$ROOT/tools/kafka/pom.xml")
LOG4J_VERSION=$(sed -n 's|.*<log4j.version>\(.*\)</log4j.version>.*|\1|p' "$ROOT/tools/kafka/pom.xml")
GO_VERSION=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
BASE_IMAGE=localhost/sagashop-debian:bookworm
POSTGRES_LOCAL=localhost/sagashop-postgres:15
KAFKA_LOCAL=localhost/sagashop-kafka:$KAFKA_VERSION
JAEGER_LOCAL=localhost/sagashop-jaeger:2.13.0 # github.com/jaegertracing/jaeger v1.76.0 (tools/jaeger)
GO_LOCAL=localhost/sagashop-go:$GO_VERSION
SERVICES_PREFIX=localhost/sagashop # the services' images: localhost/sagashop/<service>:latest

PROJECT=sagashop-smoke # compose project of the (a) run; users' default is "sagashop"

log() { printf '[containers] %s\n' "$*"; }
fail() {
	printf '[containers] FAILED: %s\n' "$*" >&2
	exit 1
}

# Timings of the steps of this run, printed at the end.
TIMINGS=()
timed() {
	local name=$1 start=$SECONDS
	shift
	"$@"
	TIMINGS+=("$(printf '%-34s %4ds' "$name" $((SECONDS - start)))")
}
print_timings() {
	[ ${#TIMINGS[@]} -gt 0 ] || return 0
	log "timings:"
	printf '  %s\n' "${TIMINGS[@]}"
}

hash_of() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------------- setup

install_packages() {
	local missing=()
	command -v podman >/dev/null || missing+=(podman)
	command -v runc >/dev/null || missing+=(runc)
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]} (apt-get)"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) ||
			fail "apt-get install ${missing[*]}"
	fi
	command -v docker >/dev/null || fail "the docker CLI is missing (this machine's image has it; it is only a client)"
}

# The compose plugin, built from tools/containers/compose (a module of its
# own, so compose's dependencies stay out of the project's go.mod).
compose_plugin() {
	local mod=$HERE/compose stamp=$COMPOSE_PLUGIN.sha256 want
	want=$(cat "$mod/go.mod" "$mod/go.sum" | hash_of)
	if [ -x "$COMPOSE_PLUGIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		return 0
	fi
	log "building the docker compose plugin from tools/containers/compose (about a minute, once)"
	mkdir -p "$(dirname "$COMPOSE_PLUGIN")"
	(cd "$mod" && go build -o "$COMPOSE_PLUGIN" github.com/docker/compose/v5/cmd) >"$STATE/compose-build.log" 2>&1 ||
		{ tail -n 20 "$STATE/compose-build.log" >&2; fail "go build of the compose plugin"; }
	echo "$want" >"$stamp"
}

engine_answers() { curl -fsS -o /dev/null --max-time 2 --unix-socket "$SOCK" http://d/_ping 2>/dev/null; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# podman's Docker-compatible API on a socket of our own, and the loop that
# runs healthchecks: podman schedules them with systemd timers, and there is
# no systemd here, so without it no container would ever become healthy and
# compose's depends_on: service_healthy would wait forever.
engine_up() {
	mkdir -p "$STATE"
	if ! engine_answers; then
		pid_alive "$STATE/podman.pid" && kill "$(cat "$STATE/podman.pid")" 2>/dev/null
		rm -f "$SOCK"
		log "starting podman's API service on $SOCK"
		nohup setsid podman system service --time=0 "unix://$SOCK" >"$STATE/podman.log" 2>&1 </dev/null &
		echo $! >"$STATE/podman.pid"
		ENGINE_STARTED=1
		local deadline=$((SECONDS + 30))
		until engine_answers; do
			pid_alive "$STATE/podman.pid" || { tail -n 20 "$STATE/podman.log" >&2; fail "podman system service exited"; }
			[ $SECONDS -lt $deadline ] || fail "podman's API did not answer in 30s (log: $STATE/podman.log)"
			sleep 0.2
		done
	fi
	if ! pid_alive "$STATE/healthloop.pid"; then
		nohup setsid "$0" _healthloop >"$STATE/healthloop.log" 2>&1 </dev/null &
		echo $! >"$STATE/healthloop.pid"
	fi
}

engine_down() {
	local f pid
	for f in healthloop podman; do
		if pid_alive "$STATE/$f.pid"; then
			pid=$(cat "$STATE/$f.pid")
			log "stopping $f (pid $pid)"
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
		rm -f "$STATE/$f.pid"
	done
}

# Every second, run the healthcheck of each container still starting (all
# at once: each one execs a process in its container).
healthloop() {
	while true; do
		for id in $(podman ps -q --filter health=starting 2>/dev/null); do
			timeout 10 podman healthcheck run "$id" >/dev/null 2>&1 &
		done
		wait
		sleep 1
	done
}

setup() {
	install_packages
	mkdir -p "$STATE"
	compose_plugin
	engine_up
	docker compose version >/dev/null || fail "docker compose does not run"
}

# --------------------------------------------------------------------- images

# image_inputs IMAGE: the inputs hash recorded on IMAGE, if it exists.
image_inputs() { podman image inspect --format '{{index .Labels "sagashop.inputs"}}' "$1" 2>/dev/null || true; }

# The base of the infrastructure images: a minimal Debian 12 root filesystem
# (debootstrap, from Debian's archive) imported as an image.
base_image() {
	local want rootfs=$STATE/rootfs
	want=$( (cat "$HERE"/images/base/* /usr/local/share/ca-certificates/*.crt 2>/dev/null
		echo "bookworm minbase ca-certificates") | hash_of)
	if [ "$(image_inputs "$BASE_IMAGE")" = "$want" ]; then
		log "$BASE_IMAGE: up to date"
		return 0
	fi
	log "$BASE_IMAGE: debootstrap of Debian 12 (minbase), then podman import"
	rm -rf "$rootfs"
	debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" http://deb.debian.org/debian \
		>"$STATE/debootstrap.log" 2>&1 || { tail -n 20 "$STATE/debootstrap.log" >&2; fail "debootstrap"; }
	install -m 0644 "$HERE/images/base/sources.list" "$rootfs/etc/apt/sources.list"
	install -m 0644 "$HERE/images/base/apt.conf" "$rootfs/etc/apt/apt.conf.d/90sagashop"
	install -m 0755 "$HERE/images/base/policy-rc.d" "$rootfs/usr/sbin/policy-rc.d"
	# Trust what the host trusts: where TLS goes through an intercepting
	# proxy, its CA is one of the host's local CAs, and without it the
	# containers could not fetch Go modules.
	if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
		cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
		chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates in the root filesystem"
	fi
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
	tar --numeric-owner -C "$rootfs" -c . | podman import -q \
		--change "LABEL sagashop.inputs=$want" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null || fail "podman import"
	rm -rf "$rootfs"
}

# build_image IMAGE CONTEXT [podman build args...]: build IMAGE from the
# Containerfile in CONTEXT unless an image with the same inputs (context,
# base image, arguments) exists.
build_image() {
	local image=$1 context=$2 want
	shift 2
	want=$( (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum
		podman image inspect --format '{{.Id}}' "$BASE_IMAGE"
		echo "$*") | hash_of)
	if [ "$(image_inputs "$image")" = "$want" ]; then
		log "$image: up to date"
		return 0
	fi
	log "$image: building"
	local logf
	logf=$STATE/build-$(basename "${image%%:*}").log
	podman build --layers --build-arg BASE_IMAGE="$BASE_IMAGE" --label "sagashop.inputs=$want" -t "$image" "$@" "$context" \
		>"$logf" 2>&1 || { tail -n 30 "$logf" >&2; fail "podman build of $image (log: $logf)"; }
}

kafka_libs() {
	local pom=$HERE/images/kafka/pom.xml libs=$STATE/kafka/libs want
	want=$({ cat "$pom"; echo "$KAFKA_VERSION $LOG4J_VERSION"; } | hash_of)
	if [ "$(cat "$libs/.pom.hash" 2>/dev/null)" = "$want" ]; then
		return 0
	fi
	command -v mvn >/dev/null || fail "mvn not found (apt-get install maven)"
	log "fetching the Kafka jars from Maven Central (tools/containers/images/kafka/pom.xml)"
	rm -rf "$libs"
	mkdir -p "$libs"
	mvn -q -B -f "$pom" -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" \
		>"$STATE/kafka/mvn.log" 2>&1 || { tail -n 20 "$STATE/kafka/mvn.log" >&2; fail "mvn dependency:copy-dependencies"; }
	echo "$want" >"$libs/.pom.hash"
}

# jaeger_binary: prints the path of a Jaeger binary built from tools/jaeger:
# the one tools/infra.sh built when it is current, else one built here.
jaeger_binary() {
	local mod=$ROOT/tools/jaeger want bin=$STATE/jaeger/jaeger
	want=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -d' ' -f1)
	if [ -x "$ROOT/.local/bin/jaeger" ] && [ "$(cat "$ROOT/.local/bin/.jaeger.sha256" 2>/dev/null)" = "$want" ]; then
		echo "$ROOT/.local/bin/jaeger"
		return 0
	fi
	if [ ! -x "$bin" ] || [ "$(cat "$bin.sha256" 2>/dev/null)" != "$want" ]; then
		log "building Jaeger from tools/jaeger (a few minutes, once)" >&2
		mkdir -p "$(dirname "$bin")"
		(cd "$mod" && go build -o "$bin" github.com/jaegertracing/jaeger/cmd/jaeger) >"$STATE/jaeger/build.log" 2>&1 ||
			{ tail -n 20 "$STATE/jaeger/build.log" >&2; fail "go build of Jaeger"; }
		echo "$want" >"$bin.sha256"
	fi
	echo "$bin"
}

# stage NAME FILES...: a fresh build context under .local/containers/build.
stage() {
	local dir=$STATE/build/$1
	shift
	rm -rf "$dir"
	mkdir -p "$dir"
	cp -a "$@" "$dir/"
	echo "$dir"
}

images() {
	engine_up
	base_image
	build_image "$POSTGRES_LOCAL" "$HERE/images/postgres"

	kafka_libs
	local ctx
	ctx=$(stage kafka "$HERE"/images/kafka/{Containerfile,run,bin,tools-log4j2.properties} "$ROOT/tools/kafka/log4j2.properties" "$STATE/kafka/libs")
	rm -f "$ctx/libs/.pom.hash"
	build_image "$KAFKA_LOCAL" "$ctx"

	local jaeger
	jaeger=$(jaeger_binary)
	ctx=$(stage jaeger "$HERE/images/jaeger/Containerfile")
	cp "$jaeger" "$ctx/jaeger-linux"
	build_image "$JAEGER_LOCAL" "$ctx"

	local goroot
	goroot=$(go env GOROOT)
	build_image "$GO_LOCAL" "$HERE/images/go" -v "$goroot:/goroot:ro" --build-arg GOVERSION="$(go env GOVERSION)"
}

# -------------------------------------------------------------- (a) compose

# The variables that make docker-compose.yml use the local images.
image_env() {
	export POSTGRES_IMAGE=$POSTGRES_LOCAL KAFKA_IMAGE=$KAFKA_LOCAL JAEGER_IMAGE=$JAEGER_LOCAL
	export GO_IMAGE=$GO_LOCAL RUNTIME_IMAGE=scratch
	export SAGASHOP_IMAGE_PREFIX=$SERVICES_PREFIX SAGASHOP_IMAGE_TAG=latest
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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

compose_down() {
	log "docker compose down -v"
	compose down -v --remove-orphans --timeout 10 2>&1 | stamp >"$STATE/compose-down.log" || {
		tail -n 20 "$STATE/compose-down.log" >&2
		return 1
	}
}

compose_failed() {
	log "compose run FAILED; state and last log lines (all of them: $STATE/compose-logs.txt):"
	compose ps -a >&2 || true
	compose logs --no-color --timestamps >"$STATE/compose-logs.txt" 2>&1 || true
	compose logs --no-color --tail 30 >&2 || true
	compose_down || true
}

compose_run() {
	engine_up
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
	timed "curl session" curl_session
	COMPOSE_ACTIVE=0
	compose logs --no-color --timestamps >"$STATE/compose-logs.txt" 2>&1 || true
	timed "compose down -v" compose_down
	local left
	left=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT"; podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
	[ -z "$left" ] || fail "containers or volumes left after down -v: $left"
	log "compose: down -v left no containers or volumes"
}

compose_up() {
	# One job at a time: the five images share the build stage, so the first
	# build compiles and the other four come from the layer cache, where five
	# parallel builds would each compile (BuildKit shares the work, podman's
	# classic builder does not).
	if ! compose --parallel 1 up --build -d --quiet-pull 2>&1 | stamp >"$STATE/compose-up.log"; then
		tail -n 40 "$STATE/compose-up.log" >&2
		return 1
	fi
}

wait_seed() {
	compose wait seed >/dev/null 2>&1 || true
	compose logs --no-color seed | sed 's/^/  /'
	local code
	code=$(compose ps -a --format '{{.ExitCode}}' seed)
	if [ "$code" != 0 ]; then
		log "seed exited with status $code"
		return 1
	fi
}

# The README's curl session against the compose stack's host ports, with
# checks of the outcomes it describes.
curl_session() {
	local id body
	say() { printf '\n$ %s\n' "$*"; }

	say "alice orders two mugs"
	body=$(post_order '{"customer_id": "alice", "email": "alice@example.com", "items": [{"sku": "mug", "quantity": 2}]}')
	id=$(sed -E 's/.*"order_id":"([^"]+)".*/\1/' <<<"$body")
	wait_order "$id" SHIPPED ""
	say "curl localhost:$SHIPPING_PORT/shipments/$id"
	curl -fsS "http://127.0.0.1:$SHIPPING_PORT/shipments/$id"
	say "curl localhost:$EMAIL_PORT/emails?order_id=$id"
	wait_body "http://127.0.0.1:$EMAIL_PORT/emails?order_id=$id" '"shipped"|order_shipped|OrderShipped'
	say "curl localhost:$PAYMENT_PORT/accounts/alice"
	expect_body "http://127.0.0.1:$PAYMENT_PORT/accounts/alice" '"balance_cents":7402' # 10000 - 2 x 1299
	say "curl localhost:$INVENTORY_PORT/products/mug"
	expect_body "http://127.0.0.1:$INVENTORY_PORT/products/mug" '"available":48'

	say "bob cannot pay for a T-shirt"
	body=$(post_order '{"customer_id": "bob", "email": "bob@example.com", "items": [{"sku": "tshirt", "quantity": 1}]}')
	id=$(sed -E 's/.*"order_id":"([^"]+)".*/\1/' <<<"$body")
	wait_order "$id" CANCELLED payment_failed
	say "curl localhost:$EMAIL_PORT/emails?order_id=$id"
	wait_body "http://127.0.0.1:$EMAIL_PORT/emails?order_id=$id" '"cancelled"|order_cancelled|OrderCancelled'

	say "curl localhost:$JAEGER_UI_PORT/api/services   (every service's spans reached Jaeger)"
	wait_body "http://127.0.0.1:$JAEGER_UI_PORT/api/services" \
		'^(?=.*"order")(?=.*"payment")(?=.*"inventory")(?=.*"shipping")(?=.*"email")' -P
	echo
}

# post_order JSON: POST /orders, printing the answer (also to stdout for the
# caller). The order service learns the catalog from inventory's
# ProductUpdated events, a moment after the seeding: while it answers that a
# product is not in its catalog yet, try again (up to 30 s).
post_order() {
	local deadline=$((SECONDS + 30)) got
	while true; do
		got=$(curl -sS -X POST "http://127.0.0.1:$ORDER_PORT/orders" -H 'Content-Type: application/json' -d "$1")
		if [[ $got == *'"order_id"'* ]]; then
			echo "$got" >&2
			echo "$got"
			return 0
		fi
		if [[ $got != *"not in the catalog"* ]] || [ $SECONDS -ge $deadline ]; then
			log "POST /orders: $got" >&2
			return 1
		fi
		sleep 0.25
	done
}

# wait_order ID STATUS REASON: poll the order until it has STATUS (and
# REASON), for up to 60 s, printing it each time it changes.
wait_order() {
	local id=$1 status=$2 reason=$3 url="http://127.0.0.1:$ORDER_PORT/orders/$1" deadline=$((SECONDS + 60)) got last=
	printf '\n$ curl localhost:%s/orders/%s   (until %s)\n' "$ORDER_PORT" "$id" "$status"
	while true; do
		got=$(curl -fsS "$url" || true)
		[ "$got" = "$last" ] || echo "$got"
		last=$got
		if [[ $got == *"\"status\":\"$status\""* ]] && [[ $got == *"\"reason\":\"$reason\""* ]]; then
			return 0
		fi
		[ $SECONDS -lt $deadline ] || { log "order $id did not reach $status $reason in 60s"; return 1; }
		sleep 0.25
	done
}

# expect_body URL TEXT: GET URL, print the body, fail unless it has TEXT.
expect_body() {
	local got
	got=$(curl -fsS "$1")
	echo "$got"
	[[ $got == *"$2"* ]] || { log "$1: want $2"; return 1; }
}

# wait_body URL REGEX [GREP-FLAG]: poll URL until its body matches REGEX
# (grep -E, or -P when given): emails are sent by a consumer a moment after
# the order's last status, spans are exported in batches.
wait_body() {
	local deadline=$((SECONDS + 30)) got
	while true; do
		got=$(curl -fsS "$1" || true)
		if grep -q "${3:--E}" "$2" <<<"$got"; then
			echo "$got"
			return 0
		fi
		[ $SECONDS -lt $deadline ] || { echo "$got"; log "$1 does not match $2 after 30s"; return 1; }
		sleep 0.25
	done
}

# ------------------------------------------------------------------ (b) e2e

# The e2e suite with its infrastructure (PostgreSQL, Kafka, Jaeger) started
# by testcontainers-go from the local images (e2e/infra_test.go reads
# POSTGRES_IMAGE, KAFKA_IMAGE, JAEGER_IMAGE and SAGASHOP_E2E_INFRA).
e2e_run() {
	engine_up
	image_env
	export SAGASHOP_E2E_INFRA=containers TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
	local cmd=${CONTAINERS_E2E_CMD:-go test -race -count=1 -timeout 25m -v ./e2e/}
	log "e2e on testcontainers: $cmd"
	local status=0
	(cd "$ROOT" && eval "$cmd") || status=$?
	local left
	left=$(podman ps -aq --filter label=org.testcontainers=true)
	if [ -n "$left" ]; then
		log "removing containers the suite left behind: $left"
		podman rm -f $left >/dev/null
	fi
	[ $status = 0 ] || fail "e2e suite (exit status $status)"
}

# ----------------------------------------------------------------------- main

print_env() {
	image_env
	cat <<EOF
export CONTAINERS_CONF=$CONTAINERS_CONF
export DOCKER_CONFIG=$DOCKER_CONFIG
export DOCKER_HOST=$DOCKER_HOST
export TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
export POSTGRES_IMAGE=$POSTGRES_IMAGE KAFKA_IMAGE=$KAFKA_IMAGE JAEGER_IMAGE=$JAEGER_IMAGE
export GO_IMAGE=$GO_IMAGE RUNTIME_IMAGE=$RUNTIME_IMAGE
export SAGASHOP_IMAGE_PREFIX=$SAGASHOP_IMAGE_PREFIX SAGASHOP_IMAGE_TAG=$SAGASHOP_IMAGE_TAG
EOF
}

clean() {
	engine_down
	if command -v podman >/dev/null; then
		local imgs
		imgs=$(podman images --format '{{.Repository}}:{{.Tag}}' | grep -E '^localhost/sagashop' || true)
		[ -z "$imgs" ] || { log "removing images: $(echo $imgs)"; podman rmi -f $imgs >/dev/null; }
	fi
	rm -rf "$STATE"
}

ENGINE_STARTED=0 # this run started the engine, so it stops it at the end
KEEP_ENGINE=0    # ... unless asked to keep it (setup)
COMPOSE_ACTIVE=0 # a compose project is up: take it down on the way out
on_exit() {
	local status=$?
	trap - EXIT
	[ "$COMPOSE_ACTIVE" = 0 ] || compose_failed
	[ "$ENGINE_STARTED" = 0 ] || [ "$KEEP_ENGINE" = 1 ] || engine_down
	print_timings
	exit $status
}

cmd=${1:-}
case $cmd in
all | setup | images | compose | e2e) trap on_exit EXIT ;;
esac
case $cmd in
all)
	start=$SECONDS
	timed setup setup
	timed images images
	timed "(a) compose" compose_run
	if [ -n "${CONTAINERS_E2E_CMD-x}" ]; then
		timed "(b) e2e on testcontainers" e2e_run
	else
		log "(b) skipped: CONTAINERS_E2E_CMD is empty"
	fi
	log "all done in $((SECONDS - start))s"
	;;
setup)
	KEEP_ENGINE=1
	setup
	log "engine up: eval \"\$(tools/containers/containers.sh env)\" to use it; tools/containers/containers.sh stop stops it"
	;;
images)
	timed setup setup
	timed images images
	;;
compose)
	timed setup setup
	timed images images
	timed "(a) compose" compose_run
	;;
e2e)
	timed setup setup
	timed images images
	timed "(b) e2e on testcontainers" e2e_run
	;;
env) print_env ;;
stop) engine_down ;;
clean) clean ;;
_healthloop) healthloop ;;
*)
	sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
