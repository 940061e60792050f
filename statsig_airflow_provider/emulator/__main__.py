"""`statsig-emulator`: run the local Statsig API emulator."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from statsig_airflow_provider.emulator.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="statsig-emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--key", action="append", default=None,
                        help="accepted server secret (repeatable); default: any key starting with 'secret-', "
                             "or the comma-separated STATSIG_EMULATOR_KEYS")
    parser.add_argument("--data-dir", type=Path, default=None, help="persist accepted requests here")
    parser.add_argument("--ready-file", type=Path, default=None, help="write the URL here once listening")
    args = parser.parse_args(argv)
    keys = args.key or [k for k in os.environ.get("STATSIG_EMULATOR_KEYS", "").split(",") if k]
    serve(args.host, args.port, keys, data_dir=args.data_dir, ready_file=args.ready_file)


if __name__ == "__main__":
    main()
