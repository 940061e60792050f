#!/usr/bin/env bash
# fakesnow in server mode on a loopback port: the Snowflake stand-in. The real snowflake-connector
# speaks Snowflake's REST + Arrow protocol to it (over plain HTTP: the connection extra sets
# protocol=http); a DuckDB engine behind it runs the SQL, translated by sqlglot. fakesnow comes
# from requirements/lock.txt, so it runs from the project's venv. Databases are in memory and
# shared by every session; tests create their own database. Exports STATSIG_TEST_FAKESNOW_PORT.


start_snowflake() {
  local dir="$SERVICES_DIR/snowflake" pid port bin
  mkdir -p "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ -f "$dir/port" ] \
      && port_open "$(cat "$dir/port")"; then
    export STATSIG_TEST_FAKESNOW_PORT="$(cat "$dir/port")"
    echo "[services] fakesnow already on 127.0.0.1:$STATSIG_TEST_FAKESNOW_PORT"
    return 0
  fi
  bin="$ROOT/.venv/bin/fakesnow"
  if [ ! -x "$bin" ]; then
    echo "[services] $bin not found: fakesnow is in requirements/lock.txt (source scripts/bootstrap.sh)" >&2
    return 1
  fi
  if declare -F free_port >/dev/null; then port="${STATSIG_TEST_FAKESNOW_PORT_WANTED:-$(free_port)}"
  else port="${STATSIG_TEST_FAKESNOW_PORT_WANTED:-58085}"; fi
  nohup "$bin" -s --host 127.0.0.1 -p "$port" >"$dir/fakesnow.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"
  echo "$port" >"$dir/port"
  wait_until_up "fakesnow (127.0.0.1:$port)" "$pid" "$dir/fakesnow.log" 60 port_open "$port" \
    || { rm -f "$dir/pid"; return 1; }
  export STATSIG_TEST_FAKESNOW_PORT="$port"
  echo "[services] fakesnow (Snowflake stand-in) on 127.0.0.1:$port"
}

stop_snowflake() { stop_pidfile "$SERVICES_DIR/snowflake/pid"; }
