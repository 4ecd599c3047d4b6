# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source it
# What the container scripts share; source it, do not run it. The scripts:
#
#   engine.sh   install podman, runc, debootstrap; the compose plugin; podman's
#               Docker-compatible API service and the healthcheck loop
#   images.sh   the local images (a Debian 12 debootstrap base, PostgreSQL,
#               Kafka, Jaeger, Go)
#   compose.sh  (a) docker compose up --build on free host ports, the README's
#               curl session (e2e TestSmoke), docker compose down -v
#   e2e.sh      (b) the e2e suite on testcontainers-go
#   containers.sh  all of them in order (make containers), env, stop, clean
#
# Nothing here touches the local stack of tools/infra.sh. State lives in
# .local/containers (git-ignored), images in podman's storage.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tools/containers
STATE=$ROOT/.local/containers
SOCK=$STATE/podman.sock

LOG_TAG=${LOG_TAG:-containers}
# shellcheck source=../lib.sh
. "$ROOT/tools/lib.sh"

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

mkdir -p "$STATE"

hash_of() { sha256sum | cut -c1-16; }

# Timings of the steps of this run, printed by print_timings.
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
	printf '  %s\n' "${TIMINGS[@]}" >&2
}

# The variables that make docker-compose.yml and the e2e suite use the local images.
image_env() {
	export POSTGRES_IMAGE=$POSTGRES_LOCAL KAFKA_IMAGE=$KAFKA_LOCAL JAEGER_IMAGE=$JAEGER_LOCAL
	export GO_IMAGE=$GO_LOCAL RUNTIME_IMAGE=scratch
	export SAGASHOP_IMAGE_PREFIX=$SERVICES_PREFIX SAGASHOP_IMAGE_TAG=latest
}

# require_images IMAGE...: fail unless every IMAGE is in podman's storage.
require_images() {
	local img
	for img in "$@"; do
		podman image exists "$img" || fail "image $img is missing: run tools/containers/images.sh first"
	done
}

engine_answers() { curl -fsS -o /dev/null --max-time 5 --unix-socket "$SOCK" http://d/_ping 2>/dev/null; }

# engine_use: make sure the engine (and its healthcheck loop) runs; when this
# call started it, engine_release stops it again.
ENGINE_STARTED=0
engine_use() {
	if engine_answers && pid_alive "$STATE/healthloop.pid" "$HERE/engine.sh _healthloop"; then
		return 0
	fi
	"$HERE/engine.sh" up
	ENGINE_STARTED=1
}
engine_release() {
	[ "$ENGINE_STARTED" = 0 ] || "$HERE/engine.sh" down
	ENGINE_STARTED=0
}
