# shellcheck shell=bash
# _lib.sh - helpers shared by scripts/services/*.sh (sourced, not run).
# Every service keeps its data, logs and pid files under $SERVICES_DIR (default: <repo>/.services,
# git-ignored) and binds to 127.0.0.1 only.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVICES_DIR=${SITSMON_SERVICES_DIR:-$REPO_ROOT/.services}
export SITSMON_SERVICES_DIR=$SERVICES_DIR  # scripts that call each other agree on it
START_TIMEOUT=${START_TIMEOUT:-60}

log() { echo "[${SERVICE_NAME:-services}] $*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@"; do
    if (( SECONDS >= deadline )); then log "timeout after ${START_TIMEOUT}s waiting for $what"; return 1; fi
    sleep 0.1
  done
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop_pidfile FILE NAME: SIGTERM, wait up to 20 s, then SIGKILL
  local f=$1 name=$2 pid
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f"); kill "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop, SIGKILL $pid"; kill -9 "$pid"; fi
  rm -f "$f"; log "stopped $name (pid $pid)"
}

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
