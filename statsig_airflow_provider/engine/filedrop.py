"""The Statsig-layout file drop: `<prefix>/<dataset>/<YYYY-MM-DD>/*.parquet`, a day replaced whole.

Precomputed metrics have no HTTP API; Statsig's S3 ingestion reads this layout. Writing a day
again replaces it, so a retry, reload or backfill of a metrics day is safe by construction. On
a local filesystem the swap is a rename; on object stores the new files land first, then the old
ones are deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class DayFileDrop:
    """Writes one day's rows as Parquet parts, then puts them in place with `commit`."""

    def __init__(self, filesystem: pafs.FileSystem, base_path: str, dataset: str, day: dt.date,
                 schema: pa.Schema, *, rows_per_file: int = 1_000_000) -> None:
        self.fs = filesystem
        self.base = base_path.rstrip("/")
        self.dataset = dataset
        self.day = day
        self.schema = schema
        self.rows_per_file = rows_per_file
        self.token = uuid.uuid4().hex[:12]
        self.local = isinstance(filesystem, pafs.LocalFileSystem)
        self.day_dir = f"{self.base}/{dataset}/{day.isoformat()}"
        staging = f"{self.base}/{dataset}/.staging-{day.isoformat()}-{self.token}"
        self.write_dir = staging if self.local else self.day_dir
        self.rows = 0
        self.files: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._writer is None or self._in_file >= self.rows_per_file:
            self._next_file()
        assert self._writer is not None
        self._writer.write_table(table.cast(self.schema))
        self._in_file += table.num_rows
        self.rows += table.num_rows

    def _next_file(self) -> None:
        self._close_file()
        self.fs.create_dir(self.write_dir, recursive=True)
        path = f"{self.write_dir}/part-{self.token}-{len(self.files):05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.schema, filesystem=self.fs)
        self.files.append(path)
        self._in_file = 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self) -> list[str]:
        """Make the written files the day's only files; returns their final paths."""
        self._close_file()
        if self.local:
            return self._swap_local()
        keep = set(self.files)
        for info in self._list(self.day_dir):
            if info.path not in keep:
                self.fs.delete_file(info.path)
        return list(self.files)

    def abort(self) -> None:
        """Remove what this attempt wrote; the day's previous files stay untouched."""
        self._close_file()
        for path in self.files:
            with contextlib.suppress(OSError):
                self.fs.delete_file(path)
        if self.local and self._list(self.write_dir) == []:
            with contextlib.suppress(OSError):
                self.fs.delete_dir(self.write_dir)

    def _swap_local(self) -> list[str]:
        if not self.files:
            self.fs.create_dir(self.write_dir, recursive=True)
        trash = f"{self.base}/{self.dataset}/.replaced-{self.day.isoformat()}-{self.token}"
        had_day = self.fs.get_file_info(self.day_dir).type == pafs.FileType.Directory
        if had_day:
            self.fs.move(self.day_dir, trash)
        self.fs.move(self.write_dir, self.day_dir)
        if had_day:
            self.fs.delete_dir(trash)
        return [p.replace(self.write_dir, self.day_dir) for p in self.files]

    def _list(self, path: str) -> list[pafs.FileInfo]:
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return [i for i in infos if i.type == pafs.FileType.File]


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and base path for a file-drop URI (file://, s3://, gs://, or a local path)."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    return pafs.FileSystem.from_uri(uri)
