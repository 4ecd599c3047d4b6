#!/bin/bash
# Entrypoint of localhost/sagashop-postgres (see Containerfile): starts as
# root, hands the data folder to postgres, re-runs itself as postgres,
# initialises a new data folder like the official image does, then runs the
# server on all interfaces of the container.
set -euo pipefail

if [ "${1:0:1}" = - ]; then
	set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
	exec "$@"
fi
shift

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	exec setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --init-groups "$0" postgres "$@"
fi

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	auth=${POSTGRES_HOST_AUTH_METHOD:-}
	pwargs=()
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pgpass
		pwargs=(--pwfile=/tmp/pgpass)
		auth=${auth:-scram-sha-256}
	fi
	if [ -z "$auth" ]; then
		echo "error: the database is uninitialised and neither POSTGRES_PASSWORD nor POSTGRES_HOST_AUTH_METHOD is set" >&2
		exit 1
	fi
	echo "initialising $PGDATA (user $user, database $db, host auth $auth)"
	initdb -D "$PGDATA" -U "$user" -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$auth" "${pwargs[@]}" >/dev/null
	rm -f /tmp/pgpass
	printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
	# The temporary server listens on the socket only, so clients (and
	# healthchecks over TCP) see the database only once it is initialised.
	pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start >/dev/null
	psql=(psql -v ON_ERROR_STOP=1 -q -X -U "$user")
	if [ "$db" != postgres ]; then
		"${psql[@]}" -d postgres -c "CREATE DATABASE \"$db\""
	fi
	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		case $f in
		*.sql) echo "running $f" && "${psql[@]}" -d "$db" -f "$f" ;;
		*.sh) echo "running $f" && . "$f" ;;
		*) echo "ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	echo "initialised; starting"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
