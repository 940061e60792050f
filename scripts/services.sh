#!/usr/bin/env bash
# Start / stop the local services the tests run against. Sourced by test.sh and the benchmarks.
# Each scripts/services.d/<name>.sh defines start_<name> and stop_<name>; they export the
# environment variables their tests read (e.g. STATSIG_TEST_PG_DSN).
# Every invocation gets its own directory and free ports, so two test runs never share (or stop)
# each other's servers. Shared caches (venvs of the emulators) live in $SERVICES_CACHE.
SERVICES_CACHE="${SERVICES_CACHE:-$ROOT/.test-services}"
mkdir -p "$SERVICES_CACHE"
SERVICES_DIR="${SERVICES_DIR:-$(mktemp -d "$SERVICES_CACHE/run-XXXXXX")}"
mkdir -p "$SERVICES_DIR"
[ "$(id -u)" = 0 ] && chmod 755 "$SERVICES_DIR"

free_port() {  # a loopback TCP port nobody listens on right now
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }  # port_open <port>

stop_pidfile() {  # stop_pidfile <file>: TERM the process it names, KILL it after 5 s, remove the file
  local pid
  [ -f "$1" ] || return 0
  pid="$(cat "$1")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

wait_until_up() {  # wait_until_up <name> <pid> <log> <seconds> <check...>: until the check passes, or fail loudly
  local name="$1" pid="$2" log="$3" deadline=$((SECONDS + $4))
  shift 4
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "[services] $name did not come up; its log:" >&2
      tail -20 "$log" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
}
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
  case "$SERVICES_DIR" in "$SERVICES_CACHE"/run-*) rm -rf "$SERVICES_DIR" ;; esac
}
