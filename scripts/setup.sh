#!/usr/bin/env bash
# setup.sh - everything a fresh machine needs for the demo and the test suite. Idempotent: a second
# run only checks. Installs system packages (Java for Kafka, PostgreSQL + PostGIS, Chromium for the
# browser tests, npm for the Kafka package), the project's virtual environment (.venv), and the
# services' own files under .services/ (Kafka jars, the pgstac server's venv).
#
# torch: the CPU build is the default, asked for explicitly. With SITSMON_TORCH=cpu (default) torch
# comes from PyTorch's CPU-only wheel index when it answers within a few seconds, else from the
# index pip is configured with (a machine whose pip config holds the CPU wheel, like CI's). CUDA is a
# choice: SITSMON_TORCH=cuda (or `setup.sh --torch cuda`) installs the CUDA build from PyTorch's
# index for SITSMON_TORCH_CUDA (default cu128). SITSMON_TORCH_INDEX names another index for either.
# SITSMON_VENV names the virtual environment (default .venv); SITSMON_TORCH_STRICT=1 turns a
# build other than the one asked for into an error (the Dockerfile sets it).
#
# `source scripts/setup.sh` only defines the functions (the tests call them); running it sets up.

log() { echo "[setup] $*" >&2; }

TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# url_reachable URL [SECONDS]: 0 when URL answers HTTP 2xx/3xx within SECONDS (default 5); never hangs.
url_reachable() {
  local url=$1 limit=${2:-5}
  if command -v curl >/dev/null; then
    curl -fsS -o /dev/null --connect-timeout "$limit" --max-time "$limit" "$url" 2>/dev/null
  else
    timeout "$((limit + 1))" "${PYTHON:-python3}" -c \
      "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))" \
      "$url" "$limit" 2>/dev/null
  fi
}

# torch_cuda_index: the wheel index of the CUDA build (SITSMON_TORCH_INDEX, else PyTorch's for SITSMON_TORCH_CUDA).
torch_cuda_index() {
  echo "${SITSMON_TORCH_INDEX:-https://download.pytorch.org/whl/${SITSMON_TORCH_CUDA:-cu128}}"
}

# torch_pip_args VARIANT: the pip arguments that install torch VARIANT (cpu|cuda), one per line.
torch_pip_args() {
  local variant=$1
  case $variant in
    cpu)
      if [[ -n ${SITSMON_TORCH_INDEX:-} ]]; then
        printf '%s\n' --index-url "$SITSMON_TORCH_INDEX" "torch==$TORCH_VERSION"
      elif url_reachable "${SITSMON_TORCH_CPU_INDEX:-$TORCH_CPU_INDEX}/torch/" "${SITSMON_TORCH_PROBE_S:-5}"; then
        printf '%s\n' --index-url "${SITSMON_TORCH_CPU_INDEX:-$TORCH_CPU_INDEX}" "torch==$TORCH_VERSION+cpu"
      else
        log "PyTorch's CPU index is not reachable: torch $TORCH_VERSION from pip's configured index"
        printf '%s\n' "torch==$TORCH_VERSION"
      fi ;;
    cuda)
      local tag=${SITSMON_TORCH_CUDA:-cu128} index
      index=$(torch_cuda_index)
      if ! url_reachable "$index/torch/" "${SITSMON_TORCH_PROBE_S:-5}"; then
        echo "[setup] error: the CUDA wheel index $index is not reachable (SITSMON_TORCH_INDEX names another)" >&2
        return 3
      fi
      printf '%s\n' --index-url "$index" "torch==$TORCH_VERSION+$tag" ;;
    *)
      echo "[setup] error: SITSMON_TORCH must be cpu or cuda, got '$variant'" >&2
      return 2 ;;
  esac
}

# torch_variant PYTHON: prints cpu or cuda for the torch PYTHON imports (nothing when there is none).
torch_variant() {
  "$1" -c "import torch; print('cuda' if torch.version.cuda else 'cpu')" 2>/dev/null || true
}

# install_torch VENV VARIANT: installs torch VARIANT into VENV unless that build is already there.
install_torch() {
  local venv=$1 variant=$2 have
  have=$(torch_variant "$venv/bin/python")
  [[ $have == "$variant" ]] && return 0
  local args
  mapfile -t args < <(torch_pip_args "$variant")
  ((${#args[@]})) || return 2
  log "installing torch $TORCH_VERSION ($variant${have:+, replacing the $have build}): pip install ${args[*]}"
  "$venv/bin/pip" install -q "${args[@]}" || return 1
  have=$(torch_variant "$venv/bin/python")
  if [[ $have != "$variant" ]]; then
    log "warning: the torch installed is the ${have:-no} build, not $variant (set SITSMON_TORCH_INDEX to a $variant wheel index)"
    [[ ${SITSMON_TORCH_STRICT:-0} == 1 ]] && return 1   # the Dockerfile: a wrong build fails the image
  fi
  return 0
}

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0   # sourced: functions only
set -euo pipefail

while (($#)); do
  case $1 in
    --torch) SITSMON_TORCH=${2:?--torch needs cpu or cuda}; shift 2 ;;
    --torch=*) SITSMON_TORCH=${1#--torch=}; shift ;;
    *) echo "[setup] error: unknown option $1 (known: --torch cpu|cuda)" >&2; exit 2 ;;
  esac
done
TORCH=${SITSMON_TORCH:-cpu}
[[ $TORCH == cpu || $TORCH == cuda ]] || { echo "[setup] error: SITSMON_TORCH must be cpu or cuda, got '$TORCH'" >&2; exit 2; }

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SITSMON_VENV:-.venv}

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
# torch first, pinned, and of the chosen build (CPU unless SITSMON_TORCH=cuda): installed after
# it, sitsmon's own `torch>=2.13,<2.14` is already satisfied, so no unpinned torch (several GB of
# CUDA packages) is ever pulled in by a dependency.
install_torch "$VENV" "$TORCH"
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
