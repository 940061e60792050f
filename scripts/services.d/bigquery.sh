#!/usr/bin/env bash
# bqemulator (PyPI): BigQuery's REST API and the Storage Read gRPC API on loopback, DuckDB-backed.
# It lives in its own venv (requirements/bqemulator.txt, cached in $SERVICES_CACHE/venv-bq):
# offline start-up needs DuckDB's spatial extension, which PyPI ships only for duckdb 1.5.5, while
# the Airflow venv pins duckdb 2.0.1. The extension is copied from its wheel into a private HOME
# so the emulator's `INSTALL spatial` is a no-op.
# Exports STATSIG_TEST_BQ_REST, STATSIG_TEST_BQ_GRPC (http://127.0.0.1:<port>) and STATSIG_TEST_BQ_PROJECT.

_bq_venv() {
  local cache="${SERVICES_CACHE:-$SERVICES_DIR}" venv stamp ext version platform
  venv="$cache/venv-bq"
  stamp="$venv/.requirements"
  mkdir -p "$cache"
  (  # one builder at a time: concurrent test runs share the cache
    flock 9
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$ROOT/requirements/bqemulator.txt" "$stamp"; then
      echo "[services] building the bqemulator venv (requirements/bqemulator.txt)"
      "${UV:-uv}" venv --quiet --allow-existing --python "${PYTHON:-python3}" "$venv"
      "${UV:-uv}" pip sync --quiet --python "$venv/bin/python" "$ROOT/requirements/bqemulator.txt"
      cp "$ROOT/requirements/bqemulator.txt" "$stamp"
    fi
  ) 9>"$cache/venv-bq.lock"
  ext="$(ls "$venv"/lib/python3*/site-packages/duckdb_extension_spatial/extensions/v*/spatial.duckdb_extension | head -1)"
  version="$(basename "$(dirname "$ext")")"
  platform="$("$venv/bin/python" -c 'import duckdb; print(duckdb.connect().execute("PRAGMA platform").fetchone()[0])')"
  BQ_HOME="$cache/bq-home"
  mkdir -p "$BQ_HOME/.duckdb/extensions/$version/$platform"
  cp -u "$ext" "$BQ_HOME/.duckdb/extensions/$version/$platform/"
  BQ_PYTHON="$venv/bin/python"
}

_bq_up() {  # both ports answer (REST with any HTTP status, gRPC accepts a TCP connection)
  curl -s -o /dev/null "http://127.0.0.1:$1/bigquery/v2/projects/$3/datasets" \
    && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null
}

start_bigquery() {
  local dir="$SERVICES_DIR/bigquery" project="${STATSIG_TEST_BQ_PROJECT:-statsig-local}" rest grpc pid i
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ -n "${STATSIG_TEST_BQ_REST:-}" ]; then
    echo "[services] bqemulator already on $STATSIG_TEST_BQ_REST (REST) / $STATSIG_TEST_BQ_GRPC (gRPC)"
    return 0
  fi
  if declare -F free_port >/dev/null; then
    rest="${STATSIG_TEST_BQ_REST_PORT:-$(free_port)}"
    grpc="${STATSIG_TEST_BQ_GRPC_PORT:-$(free_port)}"
    [ "$grpc" != "$rest" ] || grpc="$(free_port)"
  else
    rest="${STATSIG_TEST_BQ_REST_PORT:-59050}"
    grpc="${STATSIG_TEST_BQ_GRPC_PORT:-59060}"
  fi
  _bq_venv
  mkdir -p "$dir"
  HOME="$BQ_HOME" BQEMU_GCS_LOCAL_ROOT="$dir/gcs" nohup "$BQ_PYTHON" -m bqemulator start \
    --rest-host 127.0.0.1 --rest-port "$rest" --grpc-host 127.0.0.1 --grpc-port "$grpc" \
    --project "$project" --ephemeral --log-level warning >"$dir/emulator.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break  # died (e.g. a port was taken): do not trust another server
    if _bq_up "$rest" "$grpc" "$project"; then
      export STATSIG_TEST_BQ_REST="http://127.0.0.1:$rest" STATSIG_TEST_BQ_GRPC="http://127.0.0.1:$grpc"
      export STATSIG_TEST_BQ_PROJECT="$project"
      echo "[services] bqemulator on 127.0.0.1:$rest (REST) / :$grpc (gRPC), project $project"
      return 0
    fi
    sleep 0.2
  done
  echo "[services] bqemulator did not start on 127.0.0.1:$rest / :$grpc; its log:" >&2
  tail -20 "$dir/emulator.log" >&2
  return 1
}

stop_bigquery() { stop_pidfile "$SERVICES_DIR/bigquery/pid"; }
