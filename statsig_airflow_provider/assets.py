"""Assets: "source X landed in Statsig", one event per ingested day, for downstream DAGs.

Ingestion tasks declare an AssetAlias as their outlet and add an event for the source's Asset
only when a day actually landed — a day with no data, or a failed one, emits nothing.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias


def source_asset(source: str) -> Asset:
    """Schedule a downstream DAG on this to run after each day of `source` lands in Statsig."""
    return Asset(name=f"statsig/{source}", uri=f"statsig://sources/{source}", group="statsig")


def landed_alias(scope: str) -> AssetAlias:
    """The outlet of the ingestion tasks of `scope` (a source, or the API-trigger DAG)."""
    return AssetAlias(name=f"statsig/{scope}/landed", group="statsig")
