#!/usr/bin/env bash
# postgres.sh - a local PostgreSQL 15 + PostGIS 3 server for tests, pgstac and the demo.
#
# Debian's postgresql-15 binaries (/usr/lib/postgresql/15/bin) run a private cluster under
# $SITSMON_SERVICES_DIR/postgres, bound to 127.0.0.1 only, trust authentication on loopback,
# owned by the OS user `postgres` when this script runs as root (initdb refuses root).
# Tuned for throw-away test data: fsync and synchronous_commit are OFF (not for production).
#
# usage: postgres.sh install|start|stop|status|restart|createdb NAME|dsn [DBNAME]
# env:   SITSMON_SERVICES_DIR (<repo>/.services)  PG_PORT (25432)  PG_DB (sitsmon)
#        PG_BIN (/usr/lib/postgresql/15/bin)  FRESH=1 wipes the cluster on start  START_TIMEOUT (60 s)
# `start` prints the DSN postgresql://postgres@127.0.0.1:PORT/DB on stdout.
set -euo pipefail
# shellcheck disable=SC2034  # read by log() in _lib.sh
SERVICE_NAME=postgres
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

WORK=$SERVICES_DIR/postgres
PGDATA_DIR=$WORK/data
RUN_DIR=$WORK/run
PG_PORT=${PG_PORT:-25432}
PG_DB=${PG_DB:-sitsmon}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=postgres

dsn() { echo "postgresql://$PG_USER@127.0.0.1:$PG_PORT/${1:-$PG_DB}"; }

as_owner() {  # run a command as the cluster owner (postgres when we are root)
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  if [[ ! -x $PG_BIN/initdb || ! -f /usr/share/postgresql/15/extension/postgis.control ]]; then
    [[ $(id -u) == 0 ]] || die "PostgreSQL 15 + PostGIS 3 missing: run as root: apt-get install -y postgresql-15-postgis-3"
    log "installing postgresql-15-postgis-3 with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-15-postgis-3 >/dev/null
    # Debian's package starts its own cluster on 5432; we do not use it.
    if command -v pg_ctlcluster >/dev/null; then pg_ctlcluster 15 main stop 2>/dev/null || true; fi
  fi
  [[ -x $PG_BIN/initdb ]] || die "no initdb in $PG_BIN"
  if [[ $(id -u) == 0 ]]; then id postgres >/dev/null 2>&1 || die "no OS user postgres"; fi
}

running() { [[ -f $PGDATA_DIR/postmaster.pid ]] && as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; }

psql_() { PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$@"; }

createdb_() {  # createdb_ NAME: create the database (if missing) with postgis
  local name=$1
  [[ $name =~ ^[a-zA-Z_][a-zA-Z0-9_]*$ ]] || die "bad database name: $name"
  if [[ -z $(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'") ]]; then
    psql_ -d postgres -c "CREATE DATABASE $name"
  fi
  psql_ -d "$name" -c "CREATE EXTENSION IF NOT EXISTS postgis"
}

start() {
  install
  if running; then log "already running on 127.0.0.1:$PG_PORT"; createdb_ "$PG_DB"; dsn; return 0; fi
  port_open "$PG_PORT" && die "port $PG_PORT is taken by another process (set PG_PORT)"
  local t0; t0=$(date +%s%N)
  [[ ${FRESH:-0} == 1 ]] && rm -rf "$PGDATA_DIR"
  mkdir -p "$WORK" "$RUN_DIR"
  [[ $(id -u) == 0 ]] && chown postgres: "$WORK" "$RUN_DIR"
  if [[ ! -f $PGDATA_DIR/PG_VERSION ]]; then
    rm -rf "$PGDATA_DIR"
    as_owner "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$PG_USER" --auth=trust -E UTF8 --locale=C.UTF-8 \
        --no-sync > "$WORK/initdb.log" 2>&1 || { tail -20 "$WORK/initdb.log" >&2; die "initdb failed"; }
  fi
  as_owner tee "$PGDATA_DIR/conf.d.sitsmon.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 64MB
logging_collector = off
CONF
  grep -q "conf.d.sitsmon.conf" "$PGDATA_DIR/postgresql.conf" \
    || echo "include_if_exists = 'conf.d.sitsmon.conf'" | as_owner tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
  # pg_ctl's own log goes to a file the owner can write
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/postgres.log" -w -t "$START_TIMEOUT" start >/dev/null \
    || { tail -30 "$WORK/postgres.log" >&2; die "server did not start (log: $WORK/postgres.log)"; }
  createdb_ "$PG_DB"
  log "postgresql $("$PG_BIN/postgres" --version | awk '{print $3}') up on 127.0.0.1:$PG_PORT in $(ms_since "$t0") ms"
  dsn
}

stop() {
  if running; then
    as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null && log "stopped"
  fi
}

cmd=${1:-}
case $cmd in
  install) install ;;
  start)   start ;;
  stop)    stop ;;
  restart) stop; start ;;
  status)  if running; then echo "postgres: running on 127.0.0.1:$PG_PORT pid $(head -1 "$PGDATA_DIR/postmaster.pid")"; else echo "postgres: stopped"; exit 3; fi ;;
  createdb) [[ $# -ge 2 ]] || die "usage: $0 createdb NAME"; createdb_ "$2"; dsn "$2" ;;
  dsn)     dsn "${2:-}" ;;
  *) echo "usage: $0 install|start|stop|status|restart|createdb NAME|dsn [DBNAME]" >&2; exit 2 ;;
esac
