#!/usr/bin/env bash
# Sagashop's containers on a machine with no Docker engine and no image
# registry: podman serves a Docker-compatible API, every image is built
# here. The steps are scripts of their own (common.sh lists them); this one
# runs them in order.
#
#   tools/containers/containers.sh all      images, then (a) compose and (b) e2e (make containers)
#   tools/containers/containers.sh compose  images, then (a): compose.sh
#   tools/containers/containers.sh e2e      images, then (b): e2e.sh
#   tools/containers/containers.sh images   images.sh
#   tools/containers/containers.sh setup    engine.sh up: start the engine and leave it running
#   tools/containers/containers.sh env      engine.sh env: eval "$(tools/containers/containers.sh env)"
#   tools/containers/containers.sh stop     engine.sh down
#   tools/containers/containers.sh clean    stop, remove the images built here and .local/containers
#
# CONTAINERS_E2E_CMD is the command (b) runs (see e2e.sh); set it empty to
# skip (b) in `all`. The engine runs once for the whole of `all` and is
# stopped at the end unless it was running before.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

clean() {
	"$HERE/engine.sh" down
	if command -v podman >/dev/null; then
		local imgs
		imgs=$(podman images --format '{{.Repository}}:{{.Tag}}' | grep -E '^localhost/sagashop' || true)
		# shellcheck disable=SC2086
		[ -z "$imgs" ] || { log "removing images: ${imgs//$'\n'/ }"; podman rmi -f $imgs >/dev/null; }
	fi
	rm -rf "$STATE"
}

on_exit() {
	local status=$?
	trap - EXIT
	engine_release
	print_timings
	exit $status
}

case ${1:-} in
all)
	trap on_exit EXIT
	start=$SECONDS
	timed images "$HERE/images.sh"
	timed engine engine_use
	timed "(a) compose" "$HERE/compose.sh"
	if [ -n "${CONTAINERS_E2E_CMD-x}" ]; then
		timed "(b) e2e on testcontainers" "$HERE/e2e.sh"
	else
		log "(b) skipped: CONTAINERS_E2E_CMD is empty"
	fi
	log "all done in $((SECONDS - start))s"
	;;
compose | e2e)
	trap on_exit EXIT
	timed images "$HERE/images.sh"
	timed "$1" "$HERE/$1.sh"
	;;
images) "$HERE/images.sh" ;;
setup)
	"$HERE/engine.sh" up
	log "engine up: eval \"\$(tools/containers/containers.sh env)\" to use it; tools/containers/containers.sh stop stops it"
	;;
env) "$HERE/engine.sh" env ;;
stop) "$HERE/engine.sh" down ;;
clean) clean ;;
*)
	sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
