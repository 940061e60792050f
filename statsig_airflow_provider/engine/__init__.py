"""The ingestion engine: plan → read → map → deliver → record, in plain Python.

Nothing in this package imports Airflow, so it can be tested and benchmarked alone; the
operators, sensors and hooks of the provider are thin layers over it.
"""
