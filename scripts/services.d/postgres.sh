#!/usr/bin/env bash
# A private PostgreSQL server from Debian's packages on a loopback port (warehouse + ledger tests).

_as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

apt_install() {  # apt_install <command-or-file-to-check> <packages...>
  local check="$1"; shift
  if ! command -v "$check" >/dev/null 2>&1 && [ ! -e "$check" ]; then
    echo "[services] installing $* from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "$@" >/dev/null
  fi
}

start_postgres() {
  [ -n "$(_pg_bin)" ] || apt_install /usr/lib/postgresql postgresql
  PG_PORT="${STATSIG_TEST_PG_PORT:-$(free_port)}"
  local bin data
  bin="$(_pg_bin)"
  data="$SERVICES_DIR/pg/data"
  mkdir -p "$SERVICES_DIR/pg"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$SERVICES_DIR/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    _as_postgres "'$bin/initdb' -D '$data' -U postgres --auth=trust >/dev/null"
  fi
  _as_postgres "'$bin/pg_ctl' -D '$data' -o \"-c listen_addresses=127.0.0.1 -p $PG_PORT -k '$SERVICES_DIR/pg'\" -l '$SERVICES_DIR/pg/pg.log' -w start >/dev/null"
  "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'statsig_test'" | grep -q 1 \
    || "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE statsig_test" >/dev/null
  export STATSIG_TEST_PG_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/statsig_test"
  echo "[services] PostgreSQL on 127.0.0.1:$PG_PORT"
}

stop_postgres() {
  local bin
  bin="$(_pg_bin)"
  if [ -n "$bin" ] && [ -f "$SERVICES_DIR/pg/data/postmaster.pid" ]; then
    _as_postgres "'$bin/pg_ctl' -D '$SERVICES_DIR/pg/data' -m fast stop >/dev/null" || true
  fi
}
