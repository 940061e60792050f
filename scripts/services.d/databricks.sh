#!/usr/bin/env bash
# minilake (PyPI) on a loopback port: the Databricks stand-in. It serves the SQL Statement
# Execution API (ARROW_STREAM + EXTERNAL_LINKS, chunks of 100,000 rows), SQL warehouses and Unity
# Catalog over plain HTTP, on DuckDB; it checks no credentials. It lives in its own venv
# (requirements/minilake.txt, kept in $SERVICES_CACHE) because it needs duckdb 1.5.x while the Airflow
# venv pins duckdb 2.0.1. State is in memory: each start creates a SQL warehouse, catalog `lake` and
# schema `lake.statsig`. Exports STATSIG_TEST_MINILAKE_URL and STATSIG_TEST_MINILAKE_WAREHOUSE_ID.

_ml_cache() { echo "${SERVICES_CACHE:-$SERVICES_DIR}"; }

_ml_venv() {  # (re)build the venv when requirements/minilake.txt changed
  local venv stamp
  venv="$(_ml_cache)/venv-minilake"
  stamp="$venv/.requirements"
  if [ ! -x "$venv/bin/minilake" ] || ! cmp -s "$ROOT/requirements/minilake.txt" "$stamp"; then
    echo "[services] building the minilake venv (requirements/minilake.txt)"
    "${UV:-uv}" venv --quiet --allow-existing --python "${PYTHON:-python3}" "$venv" || return 1
    "${UV:-uv}" pip sync --quiet --python "$venv/bin/python" "$ROOT/requirements/minilake.txt" || return 1
    cp "$ROOT/requirements/minilake.txt" "$stamp"
  fi
}

_ml_up() { curl -sf -o /dev/null --max-time 2 "$1/_minilake/health"; }

_ml_setup() {  # idempotent: the warehouse (by name), catalog `lake`, schema `lake.statsig`; prints the warehouse id
  "$(_ml_cache)/venv-minilake/bin/python" - "$1" <<'PY'
import json, sys, urllib.error, urllib.request

base, headers = sys.argv[1], {"Authorization": "Bearer minilake-no-auth", "Content-Type": "application/json"}

def call(method, path, body=None):
    request = urllib.request.Request(base + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")

status, listing = call("GET", "/api/2.0/sql/warehouses")
found = [w["id"] for w in listing.get("warehouses") or [] if w.get("name") == "statsig_test"]
if found:
    warehouse = found[0]
else:
    status, created = call("POST", "/api/2.0/sql/warehouses", {"name": "statsig_test", "cluster_size": "2X-Small"})
    if status != 200:
        sys.exit(f"creating the SQL warehouse failed: {status} {created}")
    warehouse = created["id"]
for path, body in (("/api/2.1/unity-catalog/catalogs", {"name": "lake"}),
                   ("/api/2.1/unity-catalog/schemas", {"name": "statsig", "catalog_name": "lake"})):
    status, answer = call("POST", path, body)
    if status != 200 and answer.get("error_code") != "ALREADY_EXISTS":
        sys.exit(f"POST {path} failed: {status} {answer}")
print(warehouse)
PY
}

start_databricks() {
  local dir="$SERVICES_DIR/databricks" pid port url warehouse
  mkdir -p "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ -f "$dir/url" ] && _ml_up "$(cat "$dir/url")"; then
    url="$(cat "$dir/url")"
  else
    _ml_venv || { echo "[services] could not build the minilake venv" >&2; return 1; }
    if declare -F free_port >/dev/null; then port="${STATSIG_TEST_MINILAKE_PORT:-$(free_port)}"
    else port="${STATSIG_TEST_MINILAKE_PORT:-58765}"; fi
    url="http://127.0.0.1:$port"
    mkdir -p "$dir/home" "$dir/data" "$dir/extensions"
    # Only the services the tests use; an extension dir so DuckDB never tries to download `delta`;
    # a private HOME so nothing lands in the user's ~/.duckdb; UTC sessions, like a SQL warehouse's default.
    TZ=UTC HOME="$dir/home" MINILAKE_DATA_DIR="$dir/data" MINILAKE_DUCKDB_EXTENSION_DIR="$dir/extensions" \
      MINILAKE_SERVICES=sql_statements,sql_warehouses,unity_catalog MINILAKE_DUCKDB_MEMORY_LIMIT=2GB \
      nohup "$(_ml_cache)/venv-minilake/bin/minilake" --host 127.0.0.1 --port "$port" >"$dir/minilake.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    echo "$url" >"$dir/url"
    wait_until_up "minilake ($url)" "$pid" "$dir/minilake.log" 60 _ml_up "$url" || { rm -f "$dir/pid"; return 1; }
  fi
  warehouse="$(_ml_setup "$url")" || { echo "[services] minilake set-up failed" >&2; return 1; }
  export STATSIG_TEST_MINILAKE_URL="$url"
  export STATSIG_TEST_MINILAKE_WAREHOUSE_ID="$warehouse"
  echo "[services] minilake (Databricks stand-in) on $url, SQL warehouse $warehouse"
}

stop_databricks() { stop_pidfile "$SERVICES_DIR/databricks/pid"; }
