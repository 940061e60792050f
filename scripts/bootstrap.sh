#!/usr/bin/env bash
# Create (or refresh) .venv with the locked dependencies. Idempotent; sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! command -v uv >/dev/null 2>&1; then
  echo "[bootstrap] installing uv from PyPI"
  "$PY" -m pip install --quiet --disable-pip-version-check uv
fi
UV="$(command -v uv || echo "$("$PY" -m site --user-base)/bin/uv")"
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv"
  "$UV" venv --quiet --python "$("$PY" -c 'import sys; print(sys.executable)')" .venv
fi
stamp=.venv/.lock-installed
if [ ! -f "$stamp" ] || ! cmp -s requirements/lock.txt "$stamp"; then
  echo "[bootstrap] installing the locked dependencies (requirements/lock.txt)"
  "$UV" pip sync --quiet --compile-bytecode --python .venv/bin/python requirements/lock.txt
  cp requirements/lock.txt "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
