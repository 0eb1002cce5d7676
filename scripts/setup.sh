#!/usr/bin/env bash
# setup.sh - everything a fresh machine needs for the demo and the test suite. Idempotent: a second
# run only checks. Installs system packages (Java for Kafka, PostgreSQL + PostGIS, Chromium for the
# browser tests, npm for the Kafka package), the project's virtual environment (.venv), and the
# services' own files under .services/ (Kafka jars, the pgstac server's venv).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }
PY=${PYTHON:-python3}
VENV=.venv

# --- system packages (Debian) -------------------------------------------------------------------
need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v npm >/dev/null || need_apt+=(npm)
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || need_apt+=(postgresql-15)
[[ -f /usr/share/postgresql/15/extension/postgis.control ]] || need_apt+=(postgresql-15-postgis-3)
command -v chromium >/dev/null || need_apt+=(chromium chromium-driver)
if ((${#need_apt[@]})); then
  if [[ $(id -u) != 0 ]]; then SUDO=sudo; else SUDO=; fi
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# --- Python environment ---------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
# torch first and pinned: the CPU build on the machine satisfies it; an unpinned torch would pull
# several GB of CUDA packages.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  log "installing torch 2.13 (CPU)"
  "$VENV/bin/pip" install -q "torch==2.13.0"
fi
stamp=$VENV/.sitsmon-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  log "installing sitsmon and its test tools into $VENV"
  "$VENV/bin/pip" install -q -e ".[test]"
  touch "$stamp"
fi

# --- dashboard front-end libraries (npm registry, pinned, checked; served locally, no CDN) -------
# The built files are vendored in dashboards/static/vendor; this re-fetches and checks any missing
# one from the pinned npm tarball (SHA-256). Playwright drives Debian's chromium: never
# `playwright install`.
vendor=dashboards/static/vendor
fetch_npm() {  # name version sha256 file-in-dist...
  local name=$1 version=$2 sha=$3; shift 3
  local missing=0 f
  for f in "$@"; do [[ -f $vendor/$f ]] || missing=1; done
  ((missing)) || return 0
  local tmp; tmp=$(mktemp -d)
  log "fetching $name@$version from the npm registry"
  (cd "$tmp" && npm pack -q "$name@$version" >/dev/null)
  echo "$sha  $tmp/$name-$version.tgz" | sha256sum -c --quiet -
  tar xzf "$tmp/$name-$version.tgz" -C "$tmp"
  mkdir -p "$vendor"
  for f in "$@"; do cp "$tmp/package/dist/$f" "$vendor/$f"; done
  rm -rf "$tmp"
}
fetch_npm leaflet 1.9.4 84c65a256e50657896f54c33bd857b6849ebe94c817803be818bf32a3dde0b77 leaflet.js leaflet.css
fetch_npm uplot 1.6.32 4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d uPlot.iife.min.js uPlot.min.css

# --- services' own files ----------------------------------------------------------------------------
bash scripts/services/all.sh install
log "ready"
