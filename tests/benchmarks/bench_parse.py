"""DAG-file parse time for 100 generated sources (plus one broken spec), with Airflow's DagBag.

    source scripts/bootstrap.sh && python -m tests.benchmarks.bench_parse [--sources 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.test_dag_factory import write_specs

ROOT = Path(__file__).resolve().parents[2]
CODE = """
import json, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder={path!r})
t2 = time.perf_counter()
print(json.dumps({{"import_airflow_s": t1 - t0, "parse_s": t2 - t1, "dags": len(bag.dags),
                  "import_errors": len(bag.import_errors)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "specs"
        write_specs(specs, args.sources)
        (specs / "zz_broken.yaml").write_text("name: broken\nwarehouse: {conn_id: x}\nsql: SELECT 1\n")
        env = {**os.environ, "STATSIG_SOURCES_PATH": str(specs), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        code = CODE.format(path=str(ROOT / "dags_examples" / "statsig_sources.py"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.sources} sources + 1 broken spec → {result['dags']} DAGs, {result['import_errors']} import error "
          f"(the broken spec) in {result['parse_s']:.2f} s (after {result['import_airflow_s']:.2f} s importing "
          f"Airflow)")


if __name__ == "__main__":
    main()
