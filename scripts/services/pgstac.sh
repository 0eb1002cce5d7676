#!/usr/bin/env bash
# pgstac.sh - a local pgstac STAC API (stac-fastapi-pgstac 7.2 + pypgstac 0.10 on PostgreSQL/PostGIS):
# the same server software as the large public catalogues, for integration tests and the demo.
#
# The server runs from its OWN virtual environment ($SITSMON_SERVICES_DIR/pgstac-venv, built once
# from PyPI): it is a server we run, not a library we import, and its pins may clash with ours.
# PostgreSQL comes from postgres.sh (same SITSMON_SERVICES_DIR, PG_PORT).
#
# usage: pgstac.sh install               build the venv (about 20-60 s once; cached)
#        pgstac.sh migrate               create database $PGSTAC_DB (if missing) and run pypgstac migrate
#        pgstac.sh load collections|items FILE    pypgstac load ... --method upsert (JSON or NDJSON)
#        pgstac.sh serve                 start the API on 127.0.0.1:$PGSTAC_PORT in the background
#        pgstac.sh stop                  stop the API on $PGSTAC_PORT      pgstac.sh stop-all
#        pgstac.sh status                pgstac.sh start   (= postgres start + install + migrate + serve)
# env:   PGSTAC_DB (pgstac)  PGSTAC_PORT (28100)  PG_PORT (25432)  SITSMON_SERVICES_DIR (<repo>/.services)
#        PYTHON (python3, for the venv)  START_TIMEOUT (60 s)
# `serve`/`start` print the API URL on stdout.
set -euo pipefail
# shellcheck disable=SC2034  # read by log() in _lib.sh
SERVICE_NAME=pgstac
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

WORK=$SERVICES_DIR/pgstac
VENV=$SERVICES_DIR/pgstac-venv
PGSTAC_DB=${PGSTAC_DB:-pgstac}
PGSTAC_PORT=${PGSTAC_PORT:-28100}
PG_PORT=${PG_PORT:-25432}
PYTHON=${PYTHON:-python3}
REQUIREMENTS=("stac-fastapi-pgstac>=7.2,<7.3" "pypgstac[psycopg]>=0.10,<0.11" "uvicorn>=0.30")
POSTGRES_SH=$(dirname "${BASH_SOURCE[0]}")/postgres.sh

export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGPASSWORD=unused-trust-auth PGDATABASE=$PGSTAC_DB
DSN="postgresql://postgres@127.0.0.1:$PG_PORT/$PGSTAC_DB"

install() {
  local stamp=$VENV/.sitsmon-requirements want
  want=$(printf '%s\n' "${REQUIREMENTS[@]}")
  [[ -f $stamp && $(cat "$stamp") == "$want" && -x $VENV/bin/uvicorn ]] && return 0
  mkdir -p "$SERVICES_DIR"
  exec 9>"$SERVICES_DIR/.pgstac-venv.lock"
  flock 9  # another process may be building it right now
  [[ -f $stamp && $(cat "$stamp") == "$want" && -x $VENV/bin/uvicorn ]] && { exec 9>&-; return 0; }
  log "building $VENV (${REQUIREMENTS[*]})"
  local t0; t0=$(date +%s%N)
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "python venv failed (apt-get install -y python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${REQUIREMENTS[@]}" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  [[ -x $VENV/bin/uvicorn && -x $VENV/bin/pypgstac ]] || die "pip install into $VENV failed"
  echo "$want" > "$stamp"
  exec 9>&-
  log "venv ready in $(ms_since "$t0") ms"
}

migrate() {
  install
  "$POSTGRES_SH" createdb "$PGSTAC_DB" >/dev/null
  "$VENV/bin/pypgstac" migrate --dsn "$DSN" >/dev/null || die "pypgstac migrate failed on $DSN"
}

load() {  # load collections|items FILE
  [[ $# -eq 2 && ( $1 == collections || $1 == items ) ]] || die "usage: $0 load collections|items FILE"
  [[ -f $2 ]] || die "no such file: $2"
  install
  "$VENV/bin/pypgstac" load "$1" "$2" --method upsert --dsn "$DSN" >/dev/null \
    || die "pypgstac load $1 $2 failed on $DSN"
}

pidfile() { echo "$WORK/api-$PGSTAC_PORT.pid"; }
url() { echo "http://127.0.0.1:$PGSTAC_PORT"; }
api_ready() { "$VENV/bin/python" - "$(url)/_mgmt/ping" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

serve() {
  install
  mkdir -p "$WORK"
  local pf; pf=$(pidfile)
  if pid_alive "$pf"; then log "already serving $(url) (pid $(cat "$pf"))"; url; return 0; fi
  port_open "$PGSTAC_PORT" && die "port $PGSTAC_PORT is taken by another process (set PGSTAC_PORT)"
  local t0 logf=$WORK/api-$PGSTAC_PORT.log; t0=$(date +%s%N)
  # cwd = $WORK so that the server's pydantic settings never read a stray .env
  (cd "$WORK" && exec nohup "$VENV/bin/uvicorn" --factory stac_fastapi.pgstac.app:create_app \
      --host 127.0.0.1 --port "$PGSTAC_PORT" --log-level warning --timeout-graceful-shutdown 1 > "$logf" 2>&1 < /dev/null) &
  echo $! > "$pf"
  alive_and_ready() { api_ready || ! pid_alive "$pf"; }
  if ! wait_for "pgstac API on $(url)" alive_and_ready || ! pid_alive "$pf"; then
    tail -30 "$logf" >&2; stop_pidfile "$pf" api; die "API did not start (log: $logf)"
  fi
  log "pgstac API (database $PGSTAC_DB) on $(url) in $(ms_since "$t0") ms"
  url
}

cmd=${1:-}
case $cmd in
  install)  install ;;
  migrate)  migrate ;;
  load)     shift; load "$@" ;;
  serve)    serve ;;
  start)    "$POSTGRES_SH" start >/dev/null; migrate; serve ;;
  stop)     stop_pidfile "$(pidfile)" "api :$PGSTAC_PORT" ;;
  stop-all) for f in "$WORK"/api-*.pid; do [[ -e $f ]] && stop_pidfile "$f" "api $(basename "$f" .pid)"; done; true ;;
  status)
    found=0
    for f in "$WORK"/api-*.pid; do
      [[ -e $f ]] || continue
      if pid_alive "$f"; then echo "pgstac $(basename "$f" .pid): running pid $(cat "$f")"; found=1; fi
    done
    [[ $found == 1 ]] || { echo "pgstac: no API running"; exit 3; } ;;
  *) echo "usage: $0 install|migrate|load collections|items FILE|serve|start|stop|stop-all|status" >&2; exit 2 ;;
esac
