"""Redshift's in-band read with `in_band_driver: connectorx` (optional package): the same stand-in
and table as `redshift`, streamed as Arrow by connectorx's `redshift://` (cursor) protocol."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from statsig_airflow_provider.engine.readers import WarehouseReader
from tests.benchmarks.standins import redshift


def load(workdir: Path, rows: int) -> None:
    redshift.load(workdir, rows)


@contextlib.contextmanager
def open(workdir: Path) -> Iterator[tuple[WarehouseReader, str]]:
    from statsig_airflow_provider.hooks.redshift import StatsigRedshiftHook

    with redshift.open(workdir) as (_, sql):
        yield StatsigRedshiftHook(redshift_conn_id="bench_redshift").warehouse_reader(
            {"in_band_driver": "connectorx"}), sql
