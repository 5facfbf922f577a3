"""Write a final stage's output as one plain file of a job's output format (no partition index).

A job with an ``output`` publishes its final stage's committed files as they are (a hard link or an S3
server-side copy), so the final tasks write the published format directly: Parquet (snappy, row groups of
at most `ROW_GROUP_ROWS` rows or about `ROW_GROUP_BYTES`, no babelmr metadata), CSV (header row; NULL is an
empty unquoted field, the empty string is ``""``) or JSON Lines (``null``), streamed into the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from babelmr.worker.formats import open_writer

ROW_GROUP_ROWS = 1 << 20
ROW_GROUP_BYTES = 64 << 20  # a row group is written once this many bytes are buffered, whatever its rows


class _ParquetPlain:
    def __init__(self, stream: pa.NativeFile, schema: pa.Schema):
        self._stream = stream
        self._writer = pq.ParquetWriter(stream, schema, compression="snappy")
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        # Gather batches into row groups of ROW_GROUP_ROWS: a program's 64 K-row batches would make tiny ones.
        self._pending.append(batch)
        self._rows += batch.num_rows
        self._bytes += batch.nbytes
        if self._rows >= ROW_GROUP_ROWS or self._bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending), row_group_size=ROW_GROUP_ROWS)
        self._pending, self._rows, self._bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._stream.close()


class _CsvPlain:
    def __init__(self, stream: pa.NativeFile, schema: pa.Schema):
        self._stream = stream
        self._writer = pacsv.CSVWriter(stream, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()
        self._stream.close()


def export_plain(batches: Iterable[pa.RecordBatch], schema: pa.Schema, stream: pa.NativeFile, fmt: str,
                 local_path: str) -> int:
    """Write ``batches`` as one ``fmt`` file to ``stream``; returns the rows written.

    JSON Lines goes through ``local_path`` (babelmr's JSON Lines writer writes a local file), then the stream.
    """
    rows = 0
    if fmt == "jsonl":
        writer = open_writer(local_path, "jsonl", schema)
        try:
            for batch in batches:
                writer.write(batch)
                rows += batch.num_rows
        finally:
            writer.close()
        with open(local_path, "rb") as src, stream:
            while chunk := src.read(8 << 20):
                stream.write(chunk)
        return rows
    plain = _ParquetPlain(stream, schema) if fmt == "parquet" else _CsvPlain(stream, schema)
    try:
        for batch in batches:
            plain.write(batch if batch.schema.equals(schema) else batch.cast(schema))
            rows += batch.num_rows
    except BaseException:
        with contextlib.suppress(Exception):
            stream.close()
        raise
    plain.close()
    return rows
