#!/usr/bin/env bash
# Local infrastructure for Sagashop, as ordinary processes on loopback:
# PostgreSQL (Debian's package), Apache Kafka 4.x in KRaft mode (jars from
# Maven Central, the machine's Java 17) and Jaeger v2 all-in-one (built from
# tools/jaeger). Everything it installs, builds or stores lives under .local/
# (git-ignored), except Debian packages installed with apt-get when missing.
#
#   tools/infra.sh up [postgres|kafka|jaeger ...]    install if needed, start, wait until ready
#   tools/infra.sh down [postgres|kafka|jaeger ...]  stop what up started
#   tools/infra.sh status                            what runs, where
#   tools/infra.sh reset                             down, then delete all data (keeps downloads)
#
# Variables: SAGASHOP_LOCAL (state folder, default .local), PG_PORT (5432),
# KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HEAP (-Xmx512m
# -Xms512m). Jaeger's ports are its defaults (4317, 4318, 16686, 13133).
# Everything listens on 127.0.0.1 only.
#
# Idempotent: up on a running stack only checks it; a second up on a new stack
# reuses the jars and the Jaeger binary fetched and built the first time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=infra
# shellcheck source=tools/lib.sh
. "$ROOT/tools/lib.sh"

LOCAL=${SAGASHOP_LOCAL:-$ROOT/.local}
PG_PORT=${PG_PORT:-5432}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HEAP=${KAFKA_HEAP:--Xmx512m -Xms512m}

# ---------------------------------------------------------------- PostgreSQL

PG_DIR=$LOCAL/postgres
PG_DATA=$PG_DIR/data
PG_LOG=$PG_DIR/postgres.log
# Where Debian's postgresql-NN packages put their programs, and where
# postgresql-common reads cluster-creation settings (variables for tests).
PG_HOME=${PG_HOME:-/usr/lib/postgresql}
PG_CREATECLUSTER_D=${PG_CREATECLUSTER_D:-/etc/postgresql-common/createcluster.d}

# pg_find_bin: the bin folder of the newest installed PostgreSQL, if any.
pg_find_bin() {
	local d
	d=$(find "$PG_HOME" -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1) || true
	[ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# pg_bin: prints the bin folder, installing Debian's postgresql package
# first when there is none. Its stdout is captured: everything else it or
# apt-get prints goes to stderr or to a log file.
pg_bin() {
	local d
	if ! d=$(pg_find_bin); then
		pg_install
		d=$(pg_find_bin) || fail "postgres: apt-get installed postgresql, but there is no initdb under $PG_HOME"
	fi
	echo "$d"
}

# Debian's postgresql package, when installed, creates a cluster of its own
# ("15/main" on port 5432) and starts it wherever it can: with systemd, or
# with its init script in a container that has no policy-rc.d. Ours would
# then find port 5432 taken. Sagashop uses only the package's programs, so
# before installing it, a createcluster.d file tells postgresql-common not to
# create that cluster. Should one come up anyway (a postgresql-common that
# ignores the file), it was created by this install, holds nothing, and is
# stopped.
pg_install() {
	[ "$(id -u)" = 0 ] || fail "postgres: PostgreSQL is not installed; run as root (it is installed with apt-get) or apt-get install postgresql first"
	command -v apt-get >/dev/null || fail "postgres: PostgreSQL is not installed and there is no apt-get (Debian's postgresql package is expected)"
	mkdir -p "$PG_DIR" "$PG_CREATECLUSTER_D"
	cat >"$PG_CREATECLUSTER_D/50-sagashop.conf" <<-'EOF'
		# Written by Sagashop's tools/infra.sh before it installed the postgresql
		# package: do not create (and start) a "main" cluster on port 5432. Sagashop
		# runs its own cluster in its .local/ folder. Delete this file to get the
		# default back (then: pg_createcluster <version> main --start).
		create_main_cluster = false
	EOF
	log "postgres: installing Debian's postgresql package (apt-get; log: $PG_DIR/apt.log)"
	{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } >"$PG_DIR/apt.log" 2>&1 ||
		fail_log "$PG_DIR/apt.log" "postgres: apt-get install postgresql failed"
	local owner
	if owner=$(pg_cluster_on_port); then
		log "postgres: the package started its own cluster $owner on port $PG_PORT; stopping it"
		pg_ctlcluster "${owner%%/*}" "${owner#*/}" stop >>"$PG_DIR/apt.log" 2>&1 ||
			fail_log "$PG_DIR/apt.log" "postgres: pg_ctlcluster ${owner/\// } stop failed"
	fi
}

# pg_cluster_on_port: prints version/name of a Debian cluster (pg_lsclusters)
# that is online on PG_PORT.
pg_cluster_on_port() {
	command -v pg_lsclusters >/dev/null || return 1
	pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port && $4 ~ /online/ { print $1 "/" $2; found = 1; exit } END { exit !found }'
}

# The server runs as the postgres user, which must be able to reach the data
# folder: give every folder above it the traverse bit it lacks (mktemp -d
# folders are 0700).
pg_make_reachable() {
	local d=$PG_DIR
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
			log "postgres cannot enter $d; adding o+x"
			chmod o+x "$d"
		fi
	done
}

pg_ready() { runuser -u postgres -- "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

# pg_running: the postmaster of PG_DATA runs. Unlike pg_ctl status, it does
# not take a pid reused after a reboot (postmaster.pid left behind) for it.
pg_running() { pid_alive "$PG_DATA/postmaster.pid" "$PG_DATA"; }

postgres_up() {
	PGBIN=$(pg_bin)
	mkdir -p "$PG_DIR"
	chown postgres: "$PG_DIR"
	pg_make_reachable
	if [ ! -f "$PG_DATA/PG_VERSION" ]; then
		log "postgres: initdb in $PG_DATA"
		runuser -u postgres -- "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
			>"$PG_DIR/initdb.log" 2>&1 || fail_log "$PG_DIR/initdb.log" "postgres: initdb failed"
	fi
	if pg_running; then
		log "postgres: already running"
	else
		if [ -f "$PG_DATA/postmaster.pid" ]; then
			log "postgres: removing the stale $PG_DATA/postmaster.pid (its pid is gone or another program now)"
			rm -f "$PG_DATA/postmaster.pid"
		fi
		if port_open "$PG_PORT"; then
			local owner
			if owner=$(pg_cluster_on_port); then
				fail "postgres: port $PG_PORT is taken by Debian's own PostgreSQL cluster $owner (the postgresql package's, not Sagashop's):" \
					"stop it with 'pg_ctlcluster ${owner/\// } stop' (to keep it stopped, write 'manual' into /etc/postgresql/$owner/start.conf)," \
					"or use another port with PG_PORT"
			fi
			fail "postgres: port $PG_PORT is taken by another program (set PG_PORT)"
		fi
		log "postgres: starting"
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
			-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c max_connections=300 -c shared_buffers=256MB" \
			start >/dev/null || fail_log "$PG_LOG" "postgres: pg_ctl start failed"
	fi
	wait_for 30 pg_ready || fail_log "$PG_LOG" "postgres: not ready after 30s"
	local psql=("$PGBIN/psql" -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$PG_PORT" -U postgres)
	if [ "$(runuser -u postgres -- "${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'sagashop'")" != 1 ]; then
		runuser -u postgres -- "${psql[@]}" -d postgres -c "CREATE DATABASE sagashop" ||
			fail_log "$PG_LOG" "postgres: create database failed"
	fi
	runuser -u postgres -- "${psql[@]}" -d sagashop -f - <"$ROOT/tools/postgres/init.sql" >/dev/null ||
		fail_log "$PG_LOG" "postgres: tools/postgres/init.sql failed"
	log "postgres: ready on 127.0.0.1:$PG_PORT, database sagashop (log: $PG_LOG)"
}

postgres_down() {
	[ -f "$PG_DATA/PG_VERSION" ] || return 0
	pg_running || return 0
	local bin
	bin=$(pg_find_bin) || fail "postgres: running, but no pg_ctl under $PG_HOME"
	log "stopping postgres"
	runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
}

# --------------------------------------------------------------------- Kafka

KAFKA_DIR=$LOCAL/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_LOG=$KAFKA_DIR/kafka.log
KAFKA_PID=$KAFKA_DIR/kafka.pid
KAFKA_PROPS=$KAFKA_DIR/server.properties

kafka_libs() {
	local pom=$ROOT/tools/kafka/pom.xml stamp=$KAFKA_LIBS/.pom.sha256
	local want
	want=$(sha256sum "$pom" | cut -d' ' -f1)
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
		return 0
	fi
	command -v mvn >/dev/null || fail "kafka: mvn not found (apt-get install maven)"
	log "kafka: fetching the broker jars from Maven Central (tools/kafka/pom.xml)"
	rm -rf "$KAFKA_LIBS"
	mkdir -p "$KAFKA_DIR"
	mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
		>"$KAFKA_DIR/mvn.log" 2>&1 || fail_log "$KAFKA_DIR/mvn.log" "kafka: mvn dependency:copy-dependencies failed"
	echo "$want" >"$stamp"
}

# kafka_cmd CLASS ARGS...: the java command line for one of Kafka's classes.
kafka_cmd() {
	# shellcheck disable=SC2206 # KAFKA_HEAP holds several flags
	KAFKA_CMD=(java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true
		-Dlog4j2.configurationFile="$ROOT/tools/kafka/log4j2.properties"
		-cp "$KAFKA_LIBS/*" "$@")
}

# The broker's settings are those of every Sagashop broker
# (tools/kafka/broker.properties), placed on loopback (local.properties).
kafka_props() {
	{
		echo "# Generated by tools/infra.sh from tools/kafka/broker.properties and tools/kafka/local.properties."
		grep -v '^#' "$ROOT/tools/kafka/broker.properties"
		grep -v '^#' "$ROOT/tools/kafka/local.properties" |
			sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$KAFKA_DATA|g"
	} >"$KAFKA_PROPS"
}

# kafka_cluster_id: a new KRaft cluster id, as Kafka makes them (16 random
# bytes, URL-safe base64 without padding, not starting with "-"), without a
# JVM whose log4j output would mix with it.
kafka_cluster_id() {
	local id=-
	while [[ $id == -* ]]; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
	done
	echo "$id"
}

kafka_started() {
	! pid_exited "$KAFKA_PID" "$KAFKA_PROPS" || fail_log "$KAFKA_LOG" "kafka: the broker exited"
	port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$KAFKA_LOG"
}

kafka_up() {
	command -v java >/dev/null || fail "kafka: java not found (Java 17 is expected on this machine)"
	if pid_alive "$KAFKA_PID" "$KAFKA_PROPS"; then
		wait_for 60 port_open "$KAFKA_PORT" || fail_log "$KAFKA_LOG" "kafka: running, but not listening on $KAFKA_PORT after 60s"
		log "kafka: already running on 127.0.0.1:$KAFKA_PORT"
		return 0
	fi
	stop_pid kafka "$KAFKA_PID" "$KAFKA_PROPS" # only removes a stale pidfile
	if port_open "$KAFKA_PORT"; then
		fail "kafka: port $KAFKA_PORT is taken by another program (set KAFKA_PORT)"
	fi
	kafka_libs
	mkdir -p "$KAFKA_DATA"
	kafka_props
	if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
		local cluster
		cluster=$(kafka_cluster_id)
		log "kafka: formatting KRaft storage (cluster $cluster)"
		kafka_cmd kafka.tools.StorageTool format --standalone -t "$cluster" -c "$KAFKA_PROPS"
		"${KAFKA_CMD[@]}" >>"$KAFKA_DIR/format.log" 2>&1 || fail_log "$KAFKA_DIR/format.log" "kafka: StorageTool format failed"
	fi
	log "kafka: starting"
	kafka_cmd kafka.Kafka "$KAFKA_PROPS"
	start_bg "$KAFKA_PID" "$KAFKA_LOG" "${KAFKA_CMD[@]}"
	wait_for 90 kafka_started || fail_log "$KAFKA_LOG" "kafka: not ready after 90s"
	log "kafka: ready on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_LOG)"
}

kafka_down() { stop_pid kafka "$KAFKA_PID" "$KAFKA_PROPS"; }

# -------------------------------------------------------------------- Jaeger

JAEGER_DIR=$LOCAL/jaeger
JAEGER_BIN=$LOCAL/bin/jaeger
JAEGER_LOG=$JAEGER_DIR/jaeger.log
JAEGER_PID=$JAEGER_DIR/jaeger.pid

jaeger_build() {
	local mod=$ROOT/tools/jaeger stamp=$LOCAL/bin/.jaeger.sha256
	local want
	want=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -d' ' -f1)
	if [ -x "$JAEGER_BIN" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
		return 0
	fi
	mkdir -p "$LOCAL/bin" "$JAEGER_DIR"
	log "jaeger: building from tools/jaeger (a few minutes, once)"
	(cd "$mod" && go build -o "$JAEGER_BIN" github.com/jaegertracing/jaeger/cmd/jaeger) \
		>"$JAEGER_DIR/build.log" 2>&1 || fail_log "$JAEGER_DIR/build.log" "jaeger: go build failed"
	echo "$want" >"$stamp"
}

jaeger_ready() { curl -fsS -o /dev/null http://127.0.0.1:13133/status 2>/dev/null; }

jaeger_started() {
	! pid_exited "$JAEGER_PID" "$JAEGER_BIN" || fail_log "$JAEGER_LOG" "jaeger: exited"
	jaeger_ready
}

jaeger_up() {
	if pid_alive "$JAEGER_PID" "$JAEGER_BIN"; then
		wait_for 30 jaeger_ready || fail_log "$JAEGER_LOG" "jaeger: running, but not ready after 30s"
		log "jaeger: already running"
		return 0
	fi
	stop_pid jaeger "$JAEGER_PID" "$JAEGER_BIN" # only removes a stale pidfile
	if port_open 4317 || port_open 16686; then
		fail "jaeger: port 4317 or 16686 is taken by another program"
	fi
	jaeger_build
	mkdir -p "$JAEGER_DIR"
	log "jaeger: starting (memory storage)"
	# Its all-in-one defaults put everything on localhost but the query API
	# (16686, 16685), which would listen on every interface.
	start_bg "$JAEGER_PID" "$JAEGER_LOG" env JAEGER_LISTEN_HOST=127.0.0.1 "$JAEGER_BIN" \
		--set=extensions.jaeger_query.http.endpoint=127.0.0.1:16686 \
		--set=extensions.jaeger_query.grpc.endpoint=127.0.0.1:16685
	wait_for 30 jaeger_started || fail_log "$JAEGER_LOG" "jaeger: not ready after 30s"
	log "jaeger: ready on 127.0.0.1: OTLP 4317 (gRPC) and 4318 (HTTP), query API http://127.0.0.1:16686 (log: $JAEGER_LOG)"
}

jaeger_down() { stop_pid jaeger "$JAEGER_PID" "$JAEGER_BIN"; }

# ---------------------------------------------------------------------- main

status() {
	local name port
	for pair in "postgres:$PG_PORT" "kafka:$KAFKA_PORT" "jaeger:4317"; do
		name=${pair%%:*}
		port=${pair##*:}
		if port_open "$port"; then
			printf '%-9s up    127.0.0.1:%s\n' "$name" "$port"
		else
			printf '%-9s down\n' "$name"
		fi
	done
}

cmd=${1:-}
shift || true
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(postgres kafka jaeger)
for c in "${components[@]}"; do
	case $c in
	postgres | kafka | jaeger) ;;
	*) fail "unknown component $c (postgres, kafka or jaeger)" ;;
	esac
done
case $cmd in
up)
	for c in "${components[@]}"; do "${c}_up"; done
	;;
down)
	for ((i = ${#components[@]} - 1; i >= 0; i--)); do "${components[$i]}_down"; done
	;;
status) status ;;
reset)
	jaeger_down
	kafka_down
	postgres_down
	log "deleting data in $PG_DATA and $KAFKA_DATA"
	rm -rf "$PG_DATA" "$KAFKA_DATA"
	;;
*)
	sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
