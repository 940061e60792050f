"""Airflow operators of the Statsig provider."""
