#!/usr/bin/env bash
# make fresh-machine: do the README's two commands hold on a fresh machine?
# In a clean Debian 12 container (podman; the Debian base image of
# tools/containers/images.sh plus, in image/Containerfile, only the README's
# prerequisites: Go from the Go module proxy's toolchain, Java 17 and Maven
# from Debian, and make, git, curl), on a clean clone of the committed HEAD
# (nothing of the host's .local/), as root, inside.sh runs `make run` with
# the README's curl session, stops it as Ctrl-C does, then runs `make test`.
#
#   tools/freshmachine/check.sh
#
# The container reaches the package registries (the Debian archive, Maven
# Central, the Go module proxy) through podman's network. It takes 10 to 20
# minutes on 2 cores: everything is downloaded and compiled from nothing.
# FRESH_MACHINE_TIMEOUT (seconds, default 3600) bounds the container's run.
# The log is .local/freshmachine/check.log, the logs of make run, make
# test and the services in .local/freshmachine/logs/.
set -euo pipefail
LOG_TAG=fresh-machine
. "$(dirname "${BASH_SOURCE[0]}")/../containers/images.sh"

# podman alone runs this container: no docker CLI, no API service (podman
# would look for registry credentials in DOCKER_CONFIG).
unset DOCKER_CONFIG DOCKER_HOST

FRESH=$ROOT/tools/freshmachine
OUT=$ROOT/.local/freshmachine
IMAGE=localhost/sagashop-freshmachine:bookworm
TIMEOUT=${FRESH_MACHINE_TIMEOUT:-3600}
NAME=sagashop-fresh-$$
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"

WORK=
on_exit() {
	local status=$?
	trap - EXIT
	podman rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
	[ -z "$WORK" ] || rm -rf "$WORK"
	print_timings
	exit $status
}
trap on_exit EXIT
start=$SECONDS

# The Go toolchain the README means: the Go module proxy's, the host's version.
go_toolchain() {
	local mod dir
	mod=golang.org/toolchain@v0.0.1-$(go env GOVERSION).linux-$(go env GOARCH)
	dir=$(cd "$WORK" && GOFLAGS= go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[ -f "$dir/bin/go" ] || fail "go mod download $mod gave no toolchain"
	GOROOT_DIR=$dir
}

image() {
	"$HERE/engine.sh" install
	base_image
	go_toolchain
	build_image "$IMAGE" "$FRESH/image" -v "$GOROOT_DIR:/goroot:ro" --build-arg GOVERSION="$(go env GOVERSION)"
}

WORK=$(mktemp -d)
timed "image" image

# A clean clone of what is committed: no working-tree changes, no .local/.
git clone -q --no-hardlinks "$ROOT" "$WORK/sagashop"
commit=$(git -C "$WORK/sagashop" log -1 --format='%h %s')
cp "$FRESH/inside.sh" "$WORK/inside.sh"
log "clone of $commit"

log "running the README's commands in $IMAGE (log: $OUT/check.log; at most ${TIMEOUT}s)"
status=0
run_container() {
	timeout --kill-after=30 "$TIMEOUT" podman run --rm --init --name "$NAME" --shm-size 1g \
		-v "$WORK:/fresh:ro" -v "$OUT/logs:/out" "$IMAGE" bash /fresh/inside.sh 2>&1 | tee "$OUT/check.log" || status=$?
}
timed "make run, curl session, make test" run_container
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
	log "FAILED: the container did not finish in ${TIMEOUT}s"
fi
log "fresh machine: $([ "$status" = 0 ] && echo passed || echo "FAILED (status $status)") in $((SECONDS - start))s, clone of $commit"
exit "$status"
