#!/usr/bin/env bash
# all.sh - install, start, stop or show every local service at once (Kafka, PostgreSQL, pgstac API).
#
# usage: all.sh install|start|stop|status
#   install  fetch Kafka (npm), check PostgreSQL/PostGIS (apt-get when missing, as root), build the pgstac venv
#   start    kafka.sh start, postgres.sh start, pgstac.sh start (API on $PGSTAC_PORT, default 28100)
#   stop     every pgstac API, then postgres, then kafka
# The test fixtures (tests/conftest.py) do not need this: they start what they use.
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
case ${1:-} in
  install) "$HERE/kafka.sh" install; "$HERE/postgres.sh" install; "$HERE/pgstac.sh" install ;;
  start)   "$HERE/kafka.sh" start; "$HERE/postgres.sh" start; "$HERE/pgstac.sh" start ;;
  stop)    "$HERE/pgstac.sh" stop-all; "$HERE/postgres.sh" stop; "$HERE/kafka.sh" stop ;;
  status)  rc=0
           "$HERE/kafka.sh" status || rc=3
           "$HERE/postgres.sh" status || rc=3
           "$HERE/pgstac.sh" status || rc=3
           exit $rc ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
