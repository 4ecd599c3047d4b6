#!/usr/bin/env bash
# The container engine on a machine with no Docker engine: Debian's podman
# serves a Docker-compatible API on a socket of our own, the docker CLI
# drives it with a compose plugin built from the Go module proxy.
#
#   tools/containers/engine.sh install  apt-get install podman, runc, catatonit, debootstrap when missing
#   tools/containers/engine.sh up       install, build the compose plugin, start podman's API service
#                                       and the healthcheck loop; leave them running (idempotent)
#   tools/containers/engine.sh down     stop both
#   tools/containers/engine.sh env      the variables that point docker, compose and testcontainers at the
#                                       engine and the local images: eval "$(tools/containers/engine.sh env)"
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PODMAN_PID=$STATE/podman.pid
HEALTHLOOP_PID=$STATE/healthloop.pid
HEALTHLOOP_CMD="$HERE/engine.sh _healthloop"

install_packages() {
	local missing=()
	command -v podman >/dev/null || missing+=(podman)
	command -v runc >/dev/null || missing+=(runc)
	[ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit) # podman run --init
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]} (apt-get)"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) ||
			fail "apt-get install ${missing[*]}"
	fi
	command -v docker >/dev/null || fail "the docker CLI is missing (it is only a client; install Debian's docker.io or Docker's docker-ce-cli)"
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
		fail_log "$STATE/compose-build.log" "go build of the compose plugin"
	echo "$want" >"$stamp"
}

# podman's API on our socket, and the loop that runs healthchecks: podman
# schedules them with systemd timers, and there is no systemd here, so
# without the loop no container would ever become healthy and compose's
# depends_on: service_healthy would wait forever.
up() {
	install_packages
	compose_plugin
	if ! engine_answers; then
		stop_pid "podman's API service" "$PODMAN_PID" "unix://$SOCK" 5
		rm -f "$SOCK"
		log "starting podman's API service on $SOCK"
		start_bg "$PODMAN_PID" "$STATE/podman.log" podman system service --time=0 "unix://$SOCK"
		wait_for 60 engine_started || fail_log "$STATE/podman.log" "podman's API did not answer in 60s"
	fi
	if ! pid_alive "$HEALTHLOOP_PID" "$HEALTHLOOP_CMD"; then
		start_bg "$HEALTHLOOP_PID" "$STATE/healthloop.log" "$HERE/engine.sh" _healthloop
	fi
	docker compose version >/dev/null || fail "docker compose does not run"
}

# engine_started: the API answers; gives up when the service has exited (by
# pid alone: right after start_bg the child may not have exec'd podman yet).
engine_started() {
	engine_answers && return 0
	kill -0 "$(cat "$PODMAN_PID")" 2>/dev/null || fail_log "$STATE/podman.log" "podman system service exited"
	return 1
}

down() {
	stop_pid "the healthcheck loop" "$HEALTHLOOP_PID" "$HEALTHLOOP_CMD" 5
	stop_pid "podman's API service" "$PODMAN_PID" "unix://$SOCK" 10
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

case ${1:-} in
install) install_packages ;;
up) up ;;
down) down ;;
env) print_env ;;
_healthloop) healthloop ;;
*)
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
