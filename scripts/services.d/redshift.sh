#!/usr/bin/env bash
# The Redshift stand-in: the PostgreSQL server of postgres.sh, reached by redshift_connector
# through a loopback start-up proxy (redshift_proxy.py) as an md5-authenticated user in its own
# database. redshift_connector cannot do SCRAM with this scramp, sends Redshift-only start-up keys
# and cannot parse Debian's server_version; the proxy and md5 fix all three.
# Exports STATSIG_TEST_REDSHIFT_DSN=redshift://USER:PASSWORD@127.0.0.1:PROXY_PORT/DATABASE
# (a throwaway loopback test password, not a secret).
RS_USER=statsig_rs
RS_PASSWORD=statsig_rs_test_pw
RS_DATABASE=statsig_rs

start_redshift() {
  local pidfile="$SERVICES_DIR/redshift_proxy.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && [ -n "${STATSIG_TEST_REDSHIFT_DSN:-}" ]; then
    echo "[services] Redshift stand-in already on ${STATSIG_TEST_REDSHIFT_DSN##*@}"
    return 0
  fi
  if [ -z "${STATSIG_TEST_PG_DSN:-}" ]; then
    echo "[services] the Redshift stand-in needs PostgreSQL: run start_postgres first" >&2
    return 1
  fi
  local bin data hba pg_port proxy_port
  bin="$(_pg_bin)"
  data="$SERVICES_DIR/pg/data"
  hba="$data/pg_hba.conf"
  pg_port="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port)' "$STATSIG_TEST_PG_DSN")"
  # md5 for this user only (first matching line wins); everyone else keeps trust. Rewrite the file
  # in place so it keeps its owner (the server runs as postgres).
  if ! grep -q "^host all $RS_USER 127.0.0.1/32 md5" "$hba"; then
    { echo "host all $RS_USER 127.0.0.1/32 md5"; cat "$hba"; } >"$SERVICES_DIR/pg_hba.new"
    cat "$SERVICES_DIR/pg_hba.new" >"$hba"
    rm -f "$SERVICES_DIR/pg_hba.new"
  fi
  "$bin/psql" "$STATSIG_TEST_PG_DSN" -qtA -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT pg_reload_conf();
SET password_encryption = 'md5';
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$RS_USER') THEN
    CREATE ROLE $RS_USER LOGIN PASSWORD '$RS_PASSWORD';
  ELSE
    ALTER ROLE $RS_USER LOGIN PASSWORD '$RS_PASSWORD';
  END IF;
END \$\$;
SQL
  "$bin/psql" "$STATSIG_TEST_PG_DSN" -tAc "SELECT 1 FROM pg_database WHERE datname = '$RS_DATABASE'" | grep -q 1 \
    || "$bin/psql" "$STATSIG_TEST_PG_DSN" -qc "CREATE DATABASE $RS_DATABASE OWNER $RS_USER" >/dev/null
  proxy_port="${STATSIG_TEST_REDSHIFT_PORT:-$(free_port)}"
  nohup python3 "$ROOT/scripts/services.d/redshift_proxy.py" "$proxy_port" 127.0.0.1 "$pg_port" \
    >"$SERVICES_DIR/redshift_proxy.log" 2>&1 &
  echo $! >"$pidfile"
  wait_until_up "the Redshift start-up proxy (127.0.0.1:$proxy_port)" "$(cat "$pidfile")" \
    "$SERVICES_DIR/redshift_proxy.log" 15 port_open "$proxy_port"
  export STATSIG_TEST_REDSHIFT_DSN="redshift://$RS_USER:$RS_PASSWORD@127.0.0.1:$proxy_port/$RS_DATABASE"
  echo "[services] Redshift stand-in (PostgreSQL via the start-up proxy) on 127.0.0.1:$proxy_port"
}

stop_redshift() { stop_pidfile "$SERVICES_DIR/redshift_proxy.pid"; }
