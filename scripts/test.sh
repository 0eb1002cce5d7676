#!/usr/bin/env bash
# test.sh - the whole test suite. The tests start the real services they need (Kafka broker,
# PostgreSQL + PostGIS, pgstac, rustac) through tests/conftest.py, and a skipped test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export SITSMON_NO_SKIPS=1
.venv/bin/ruff check .
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
