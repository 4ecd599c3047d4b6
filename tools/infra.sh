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
# Idempotent: up on a running stack only checks it; a second up on a new stack
# reuses the jars and the Jaeger binary fetched and built the first time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL=${SAGASHOP_LOCAL:-$ROOT/.local}
PG_PORT=${PG_PORT:-5432}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HEAP=${KAFKA_HEAP:--Xmx512m -Xms512m}

log() { printf '[infra] %s\n' "$*"; }
fail() {
	local component=$1 logfile=$2
	shift 2
	printf '[infra] %s FAILED: %s\n' "$component" "$*" >&2
	if [ -n "$logfile" ] && [ -f "$logfile" ]; then
		printf '[infra] last lines of %s:\n' "$logfile" >&2
		tail -n 30 "$logfile" >&2
	fi
	exit 1
}

# port_open PORT: is something accepting TCP connections on 127.0.0.1:PORT?
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME LOG SECONDS CHECK...: poll CHECK until it succeeds.
wait_for() {
	local name=$1 logfile=$2 secs=$3
	shift 3
	local deadline=$((SECONDS + secs))
	until "$@"; do
		if [ $SECONDS -ge $deadline ]; then
			fail "$name" "$logfile" "not ready after ${secs}s"
		fi
		sleep 0.2
	done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid NAME PIDFILE: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
	local name=$1 pidfile=$2
	if ! pid_alive "$pidfile"; then
		rm -f "$pidfile"
		return 0
	fi
	local pid
	pid=$(cat "$pidfile")
	log "stopping $name (pid $pid)"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name did not stop in 30s, killing it"
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

# ---------------------------------------------------------------- PostgreSQL

PG_DIR=$LOCAL/postgres
PG_DATA=$PG_DIR/data
PG_LOG=$PG_DIR/postgres.log

pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
		log "installing Debian's postgresql package (apt-get)"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) ||
			fail postgres "" "apt-get install postgresql failed"
		d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	fi
	echo "$d"
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

postgres_up() {
	PGBIN=$(pg_bin)
	mkdir -p "$PG_DIR"
	chown postgres: "$PG_DIR"
	pg_make_reachable
	if [ ! -f "$PG_DATA/PG_VERSION" ]; then
		log "postgres: initdb in $PG_DATA"
		runuser -u postgres -- "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
			>"$PG_DIR/initdb.log" 2>&1 || fail postgres "$PG_DIR/initdb.log" "initdb failed"
	fi
	if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
		log "postgres: already running"
	else
		if port_open "$PG_PORT"; then
			fail postgres "" "port $PG_PORT is taken by another program (set PG_PORT)"
		fi
		log "postgres: starting"
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
			-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c max_connections=300 -c shared_buffers=256MB" \
			start >/dev/null || fail postgres "$PG_LOG" "pg_ctl start failed"
	fi
	wait_for postgres "$PG_LOG" 30 pg_ready
	local psql=("$PGBIN/psql" -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$PG_PORT" -U postgres)
	if [ "$(runuser -u postgres -- "${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'sagashop'")" != 1 ]; then
		runuser -u postgres -- "${psql[@]}" -d postgres -c "CREATE DATABASE sagashop" ||
			fail postgres "$PG_LOG" "create database failed"
	fi
	runuser -u postgres -- "${psql[@]}" -d sagashop -f - <"$ROOT/tools/postgres/init.sql" >/dev/null ||
		fail postgres "$PG_LOG" "tools/postgres/init.sql failed"
	log "postgres: ready on 127.0.0.1:$PG_PORT, database sagashop (log: $PG_LOG)"
}

postgres_down() {
	[ -f "$PG_DATA/PG_VERSION" ] || return 0
	PGBIN=$(pg_bin)
	if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
		log "stopping postgres"
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
	fi
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
	command -v mvn >/dev/null || fail kafka "" "mvn not found (apt-get install maven)"
	log "kafka: fetching the broker jars from Maven Central (tools/kafka/pom.xml)"
	rm -rf "$KAFKA_LIBS"
	mkdir -p "$KAFKA_DIR"
	mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
		>"$KAFKA_DIR/mvn.log" 2>&1 || fail kafka "$KAFKA_DIR/mvn.log" "mvn dependency:copy-dependencies failed"
	echo "$want" >"$stamp"
}

# kafka_cmd CLASS ARGS...: the java command line for one of Kafka's classes.
kafka_cmd() {
	# shellcheck disable=SC2206 # KAFKA_HEAP holds several flags
	KAFKA_CMD=(java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true
		-Dlog4j2.configurationFile="$ROOT/tools/kafka/log4j2.properties"
		-cp "$KAFKA_LIBS/*" "$@")
}
kafka_java() {
	kafka_cmd "$@"
	"${KAFKA_CMD[@]}"
}

kafka_props() {
	cat >"$KAFKA_PROPS" <<EOF
# Generated by tools/infra.sh: a single node, broker and controller in one.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=24
EOF
}

kafka_up() {
	command -v java >/dev/null || fail kafka "" "java not found (Java 17 is expected on this machine)"
	if pid_alive "$KAFKA_PID"; then
		wait_for kafka "$KAFKA_LOG" 60 port_open "$KAFKA_PORT"
		log "kafka: already running on 127.0.0.1:$KAFKA_PORT"
		return 0
	fi
	if port_open "$KAFKA_PORT"; then
		fail kafka "" "port $KAFKA_PORT is taken by another program (set KAFKA_PORT)"
	fi
	kafka_libs
	mkdir -p "$KAFKA_DATA"
	kafka_props
	if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
		local cluster
		cluster=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/format.log") ||
			fail kafka "$KAFKA_DIR/format.log" "StorageTool random-uuid failed"
		log "kafka: formatting KRaft storage (cluster $cluster)"
		kafka_java kafka.tools.StorageTool format --standalone -t "$cluster" -c "$KAFKA_PROPS" \
			>>"$KAFKA_DIR/format.log" 2>&1 || fail kafka "$KAFKA_DIR/format.log" "StorageTool format failed"
	fi
	log "kafka: starting"
	kafka_cmd kafka.Kafka "$KAFKA_PROPS"
	nohup setsid "${KAFKA_CMD[@]}" >"$KAFKA_LOG" 2>&1 </dev/null &
	echo $! >"$KAFKA_PID"
	kafka_started() {
		pid_alive "$KAFKA_PID" || fail kafka "$KAFKA_LOG" "the broker exited"
		port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$KAFKA_LOG"
	}
	wait_for kafka "$KAFKA_LOG" 90 kafka_started
	log "kafka: ready on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_LOG)"
}

kafka_down() { stop_pid kafka "$KAFKA_PID"; }

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
		>"$JAEGER_DIR/build.log" 2>&1 || fail jaeger "$JAEGER_DIR/build.log" "go build failed"
	echo "$want" >"$stamp"
}

jaeger_ready() { curl -fsS -o /dev/null http://127.0.0.1:13133/status 2>/dev/null; }

jaeger_up() {
	if pid_alive "$JAEGER_PID"; then
		wait_for jaeger "$JAEGER_LOG" 30 jaeger_ready
		log "jaeger: already running"
		return 0
	fi
	if port_open 4317 || port_open 16686; then
		fail jaeger "" "port 4317 or 16686 is taken by another program"
	fi
	jaeger_build
	log "jaeger: starting (memory storage)"
	nohup setsid "$JAEGER_BIN" >"$JAEGER_LOG" 2>&1 </dev/null &
	echo $! >"$JAEGER_PID"
	jaeger_started() {
		pid_alive "$JAEGER_PID" || fail jaeger "$JAEGER_LOG" "jaeger exited"
		jaeger_ready
	}
	wait_for jaeger "$JAEGER_LOG" 30 jaeger_started
	log "jaeger: ready, OTLP 127.0.0.1:4317 (gRPC) and :4318 (HTTP), query API http://127.0.0.1:16686 (log: $JAEGER_LOG)"
}

jaeger_down() { stop_pid jaeger "$JAEGER_PID"; }

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
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
