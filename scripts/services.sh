#!/usr/bin/env bash
# Start / stop the local services the tests run against. Sourced by test.sh and the benchmarks.
# Each scripts/services.d/<name>.sh defines start_<name> and stop_<name>; they export the
# environment variables their tests read (e.g. STATSIG_TEST_PG_DSN).
SERVICES_DIR="${SERVICES_DIR:-$ROOT/.test-services}"
mkdir -p "$SERVICES_DIR"
SERVICE_NAMES=()
for _service in "$ROOT"/scripts/services.d/*.sh; do
  # shellcheck source=/dev/null
  source "$_service"
  SERVICE_NAMES+=("$(basename "$_service" .sh)")
done

start_services() {
  local name
  for name in "${SERVICE_NAMES[@]}"; do "start_$name"; done
}

stop_services() {
  local name
  for name in "${SERVICE_NAMES[@]}"; do "stop_$name" || true; done
}
