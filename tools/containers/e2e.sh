#!/usr/bin/env bash
# (b) of make containers: the e2e suite with its infrastructure (PostgreSQL,
# Kafka, Jaeger) started by testcontainers-go from the local images
# (e2e/infra_test.go reads SAGASHOP_E2E_INFRA, POSTGRES_IMAGE, KAFKA_IMAGE
# and JAEGER_IMAGE, and waits until the engine answers before testcontainers
# asks it anything).
#
#   tools/containers/e2e.sh
#
# CONTAINERS_E2E_CMD is the command it runs (default: go test -race -count=1
# -timeout 25m -v ./e2e/). The engine is started if it is not running, and
# then stopped at the end; containers the suite left behind are removed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

on_exit() {
	local status=$?
	trap - EXIT
	local left
	left=$(podman ps -aq --filter label=org.testcontainers=true 2>/dev/null || true)
	if [ -n "$left" ]; then
		log "removing containers the suite left behind: ${left//$'\n'/ }"
		# shellcheck disable=SC2086
		podman rm -f $left >/dev/null || true
	fi
	engine_release
	exit $status
}
trap on_exit EXIT

require_images "$POSTGRES_LOCAL" "$KAFKA_LOCAL" "$JAEGER_LOCAL"
engine_use
image_env
export SAGASHOP_E2E_INFRA=containers TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
cmd=${CONTAINERS_E2E_CMD:-go test -race -count=1 -timeout 25m -v ./e2e/}
log "e2e on testcontainers: $cmd"
start=$SECONDS
status=0
(cd "$ROOT" && eval "$cmd") || status=$?
log "e2e on testcontainers: exit status $status after $((SECONDS - start))s"
[ $status = 0 ] || fail "e2e suite (exit status $status)"
