"""Airflow hooks: Statsig, and a read interface over each warehouse."""
