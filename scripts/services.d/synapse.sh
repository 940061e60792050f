#!/usr/bin/env bash
# ODBC drivers for the Synapse tests. There is no SQL Server engine to run here (none on apt, PyPI
# or npm): the tests drive the real drivers against loopback listeners and a mocked cursor.
# unixODBC + FreeTDS come from Debian; Microsoft's ODBC Driver 18 from PyPI (requirements/msodbc.txt).
# Both are registered in a private odbcinst.ini, found through ODBCSYSINI.
# Exports ODBCSYSINI and STATSIG_TEST_ODBC_DRIVERS (the driver names the tests expect).

_synapse_apt() {  # waits for the dpkg lock: other service scripts may be installing at the same time
  echo "[services] installing $* from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
}

start_synapse() {
  local multiarch tds msdriver cache="${SERVICES_CACHE:-$SERVICES_DIR}" odbc_dir="$SERVICES_DIR/odbc"
  multiarch="$(gcc -dumpmachine 2>/dev/null || echo "$(uname -m)-linux-gnu")"
  tds="/usr/lib/$multiarch/odbc/libtdsodbc.so"
  if [ ! -e "/usr/lib/$multiarch/libodbc.so.2" ] || [ ! -e "$tds" ]; then
    _synapse_apt unixodbc tdsodbc
  fi
  mkdir -p "$cache"
  (  # one installer at a time: concurrent test runs share the cache
    flock 9
    if ! cmp -s "$ROOT/requirements/msodbc.txt" "$cache/msodbc/.requirements"; then
      echo "[services] installing Microsoft ODBC Driver 18 (requirements/msodbc.txt)"
      rm -rf "$cache/msodbc"
      "${UV:-uv}" pip install --quiet --python "$ROOT/.venv/bin/python" --target "$cache/msodbc" \
        -r "$ROOT/requirements/msodbc.txt"
      cp "$ROOT/requirements/msodbc.txt" "$cache/msodbc/.requirements"
    fi
  ) 9>"$cache/msodbc.lock"
  msdriver="$(ls "$cache"/msodbc/mssql_python_odbc/libs/linux/debian_ubuntu/"$(uname -m)"/lib/libmsodbcsql-18*.so* 2>/dev/null | head -1)"
  if [ -z "$msdriver" ] || [ ! -e "$tds" ]; then
    echo "[services] ODBC drivers missing (ms: '${msdriver}', FreeTDS: $tds)" >&2
    return 1
  fi
  mkdir -p "$odbc_dir"
  cat >"$odbc_dir/odbcinst.ini" <<EOF
[ODBC Driver 18 for SQL Server]
Description=Microsoft ODBC Driver 18 for SQL Server (PyPI mssql-python-odbc)
Driver=$msdriver

[FreeTDS]
Description=FreeTDS (Debian tdsodbc)
Driver=$tds
EOF
  : >"$odbc_dir/odbc.ini"
  export ODBCSYSINI="$odbc_dir"
  export STATSIG_TEST_ODBC_DRIVERS="ODBC Driver 18 for SQL Server,FreeTDS"
  echo "[services] ODBC drivers registered in $odbc_dir/odbcinst.ini (Driver 18, FreeTDS)"
}

stop_synapse() {
  :  # nothing runs: the drivers are libraries
}
