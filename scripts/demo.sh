#!/usr/bin/env bash
# The demo, end to end on the embedded default: generate a day of sample events in DuckDB, start the
# local Statsig emulator, run the demo source's generated backfill DAG for that day through Airflow
# (`airflow dags test`), then print what happened and check the emulator holds exactly the valid
# rows, field by field.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"

DEMO="$ROOT/.demo"
ROWS="${DEMO_ROWS:-300000}"
rm -rf "$DEMO" && mkdir -p "$DEMO"
DAY="$(python -c 'import datetime as d; from statsig_airflow_provider.engine.days import latest_complete_day as l; print(l(d.datetime.now(d.timezone.utc), "statsig"))')"

echo "== 1/4 sample data: $ROWS events for $DAY in $DEMO/warehouse.duckdb"
python -m statsig_airflow_provider.sample_data --db "$DEMO/warehouse.duckdb" --day "$DAY" --rows "$ROWS"

echo "== 2/4 Statsig emulator"
KEY="secret-demo-$(python -c 'import secrets; print(secrets.token_hex(8))')"
statsig-emulator --port 0 --key "$KEY" --ready-file "$DEMO/emulator.url" > "$DEMO/emulator.log" 2>&1 &
EMULATOR_PID=$!
trap 'kill $EMULATOR_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$DEMO/emulator.url" ] && break; sleep 0.1; done
URL="$(cat "$DEMO/emulator.url")"
echo "listening on $URL"

echo "== 3/4 Airflow: airflow dags test statsig__demo_events__backfill (day $DAY)"
export AIRFLOW_HOME="$DEMO/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags_examples"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__STATSIG__LEDGER_URL="sqlite:///$DEMO/ledger.sqlite"
export AIRFLOW__STATSIG__REJECTS_DIR="$DEMO/rejects"
export AIRFLOW_CONN_STATSIG_DEMO="{\"conn_type\": \"statsig\", \"host\": \"$URL\", \"password\": \"$KEY\"}"
export AIRFLOW_CONN_STATSIG_DEMO_DUCKDB="{\"conn_type\": \"duckdb\", \"host\": \"$DEMO/warehouse.duckdb\"}"
airflow db migrate > "$DEMO/airflow-migrate.log" 2>&1
airflow dags test statsig__demo_events__backfill -c "{\"start_date\": \"$DAY\", \"end_date\": \"$DAY\"}" \
  > "$DEMO/airflow-run.log" 2>&1 || {
  tail -50 "$DEMO/airflow-run.log"; echo "the DAG run failed (full log: $DEMO/airflow-run.log)"; exit 1; }
echo "run log: $DEMO/airflow-run.log"

echo "== 4/4 result"
python "$ROOT/scripts/demo_summary.py" --ledger "sqlite:///$DEMO/ledger.sqlite" --db "$DEMO/warehouse.duckdb" \
  --day "$DAY" --emulator "$URL"
