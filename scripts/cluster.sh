#!/usr/bin/env bash
# A local throwaway PostgreSQL cluster with pg_evolve and pg_cron preloaded, run as the
# unprivileged `postgres` user (PostgreSQL refuses to run as root).
#   scripts/cluster.sh start            # idempotent; prints nothing else
#   scripts/cluster.sh stop
#   scripts/cluster.sh status           # exits 0 when the cluster is running
#   scripts/cluster.sh psql [args...]   # psql into $PG_EVOLVE_DB (default evolve_demo)
#   scripts/cluster.sh env              # prints PGHOST/PGPORT exports
set -euo pipefail

# The server: PostgreSQL 15's package, or the one whose pg_config PG_EVOLVE_PG_CONFIG names
# (scripts/versions.sh builds the others).
BIN=${PG_EVOLVE_BIN:-$("${PG_EVOLVE_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)}
DIR=${PG_EVOLVE_CLUSTER:-/tmp/pg_evolve_cluster}
PORT=${PG_EVOLVE_PORT:-28815}
DB=${PG_EVOLVE_DB:-evolve_demo}
# The database the re-embedding worker serves; empty: no worker.
WORKER_DB=${PG_EVOLVE_WORKER_DB-$DB}
# Extra postgresql.conf lines for a new cluster (scripts/cassert.sh sets debug_discard_caches).
EXTRA_CONF=${PG_EVOLVE_EXTRA_CONF:-}
# pg_cron is optional: preloaded where it is installed.
if [ -f "$("$BIN/pg_config" --pkglibdir)/pg_cron.so" ]; then
    PRELOAD=${PG_EVOLVE_PRELOAD:-pg_evolve,pg_cron}
else
    PRELOAD=${PG_EVOLVE_PRELOAD:-pg_evolve}
fi

as_pg() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# PostgreSQL's programs change directory and back on start-up: run from a folder the postgres
# user cannot enter (say, a clone under /root), each would print `could not change directory`.
# Relative paths in arguments would not be readable for it from there either.
if [ "$(id -un)" != postgres ] && ! runuser -u postgres -- test -x "$PWD" 2>/dev/null; then
    cd /
fi

start() {
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        mkdir -p "$DIR"
        chown postgres:postgres "$DIR"
        as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        cat >>"$DIR/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
shared_preload_libraries = '$PRELOAD'
cron.database_name = '$DB'
evolve.worker_database = '$WORKER_DB'
max_worker_processes = 16
fsync = off
log_min_messages = warning
$EXTRA_CONF
CONF
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
    fi
    as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
        as_pg "$BIN/createdb" -h "$DIR" -p "$PORT" "$DB"
}

case "${1:-}" in
start) start ;;
stop) as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true ;;
status) [ -f "$DIR/data/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1 ;;
psql) shift; as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -d "$DB" "$@" ;;
env) echo "export PGHOST=$DIR PGPORT=$PORT PGDATABASE=$DB PGUSER=postgres" ;;
*) echo "usage: $0 start|stop|status|psql|env" >&2; exit 2 ;;
esac
