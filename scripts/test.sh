#!/usr/bin/env bash
# Run the test suite with every service it needs, from a fresh machine: the locked virtualenv,
# and a private PostgreSQL server (Debian's package, installed if missing) on a loopback port.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
source "$ROOT/scripts/services.sh"
start_services
trap stop_services EXIT
python -m pytest "$@"
