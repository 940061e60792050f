"""Where a source's rows go: Statsig's event API, or a Statsig-layout file drop."""

from __future__ import annotations

import datetime as dt

import pyarrow.fs as pafs

from statsig_airflow_provider.engine.filedrop import filesystem_for
from statsig_airflow_provider.engine.pipeline import EventsTarget, FileDropTarget
from statsig_airflow_provider.engine.spec import SourceSpec
from statsig_airflow_provider.hooks.statsig import StatsigHook


def delivery_target(spec: SourceSpec, statsig_conn_id: str | None = None) -> EventsTarget | FileDropTarget:
    hook = StatsigHook(statsig_conn_id or spec.delivery.statsig_conn_id)
    if spec.dataset == "events" and not spec.delivery.file_drop_uri:
        timeout = spec.delivery.timeout_seconds
        return EventsTarget(client_factory=lambda: hook.get_events_client(timeout))
    assert spec.delivery.file_drop_uri
    filesystem, base = _filesystem(spec.delivery.file_drop_uri, spec.delivery.file_drop_conn_id)
    after = None
    if spec.delivery.mark_data_ready:
        def after(day: dt.date) -> None:
            hook.get_api_client().mark_data_ready([day.isoformat()], spec.dataset, [spec.name])
    return FileDropTarget(filesystem=filesystem, base_path=base, after_commit=after)


def _filesystem(uri: str, conn_id: str | None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for the drop; s3:// takes its credentials from an Airflow AWS connection."""
    if uri.startswith("s3://") and conn_id:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=conn_id)
        creds = hook.get_credentials()
        endpoint = hook.conn_config.endpoint_url if hasattr(hook, "conn_config") else None
        fs = pafs.S3FileSystem(access_key=creds.access_key, secret_key=creds.secret_key,
                               session_token=creds.token, region=hook.conn_region_name or "us-east-1",
                               endpoint_override=endpoint)
        return fs, uri.removeprefix("s3://")
    return filesystem_for(uri)
