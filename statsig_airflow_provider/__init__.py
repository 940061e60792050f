"""Statsig provider for Apache Airflow: warehouse data into Statsig, one day at a time, never twice."""

from __future__ import annotations

__version__ = "0.1.0"
