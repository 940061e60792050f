"""Airflow sensors of the Statsig provider."""
