#!/usr/bin/env bash
# moto server on a loopback port: the S3 and Athena stand-in (S3 files, Redshift UNLOAD bucket,
# Athena results). One process serves every AWS service; tests point `endpoint_url` at it.
# Exports STATSIG_TEST_MOTO_URL (e.g. http://127.0.0.1:41234).

start_moto() {
  local pidfile="$SERVICES_DIR/moto.pid" port bin
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && [ -n "${STATSIG_TEST_MOTO_URL:-}" ]; then
    echo "[services] moto already on $STATSIG_TEST_MOTO_URL"
    return 0
  fi
  bin="$(command -v moto_server || true)"
  if [ -z "$bin" ]; then
    echo "[services] moto_server not found: install moto[server] (it is in requirements/lock.txt)" >&2
    return 1
  fi
  port="${STATSIG_TEST_MOTO_PORT:-$(free_port)}"
  # Dummy credentials for anything that falls back to the environment; never real ones.
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
    nohup "$bin" -H 127.0.0.1 -p "$port" >"$SERVICES_DIR/moto.log" 2>&1 &
  echo $! >"$pidfile"
  local url="http://127.0.0.1:$port"
  wait_until_up "moto ($url)" "$(cat "$pidfile")" "$SERVICES_DIR/moto.log" 30 \
    curl -sf -o /dev/null --max-time 1 "$url/moto-api/data.json"
  export STATSIG_TEST_MOTO_URL="$url"
  echo "[services] moto on $url"
}

stop_moto() { stop_pidfile "$SERVICES_DIR/moto.pid"; }
