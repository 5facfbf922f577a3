"""Export a program's output as ONE Parquet object whose row groups each hold a single partition.

The partition -> row groups index goes into the file's key-value metadata (`PARTITION_INDEX_KEY`),
so reducer i reads only its row groups of every upstream object. Rows stream through per-partition
buffers bounded in bytes; a buffer becomes a row group when it is full, and all buffers are flushed
when the batches they hold slices of exceed the budget (a slice keeps its whole batch in memory).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from babelmr.spec import PARTITION_INDEX_KEY
from babelmr.worker.partition import split_by_partition

ROW_GROUP_BYTES = int(os.environ.get("BABELMR_ROW_GROUP_BYTES", 64 << 20))
BUFFER_BUDGET = int(os.environ.get("BABELMR_EXPORT_BUFFER", 128 << 20))
MAX_ROW_GROUP_ROWS = 64 << 20  # pyarrow's writer cuts longer row groups (its max_row_group_length)
# A column whose dictionary outgrows this falls back to plain encoding. Every row group starts a new dictionary,
# so with pyarrow's 1 MB, columns of (nearly) unique values build a useless dictionary per row group.
DICTIONARY_PAGE_BYTES = 256 << 10


class PartitionedWriter:
    """Writes batches into one Parquet file, one partition per row group."""

    def __init__(self, stream: pa.NativeFile, schema: pa.Schema, key: list[str] | None, partitions: int):
        self.schema = schema
        self.key = key or []
        self.partitions = partitions
        self._stream = stream
        self._writer = pq.ParquetWriter(self._stream, schema, compression="snappy",
                                        dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES)
        self._buffers: list[list[pa.RecordBatch]] = [[] for _ in range(partitions)]
        self._buffered = [0] * partitions
        self._held = 0  # bytes of the batches split since every buffer was last flushed: buffered slices keep them
        self._row_groups: list[list[int]] = [[] for _ in range(partitions)]
        self._rows = [0] * partitions
        self._next_group = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.schema != self.schema:
            batch = batch.cast(self.schema)
        for p, part in split_by_partition(batch, self.key, self.partitions):
            self._buffers[p].append(part)
            self._buffered[p] += part.nbytes
            if self._buffered[p] >= ROW_GROUP_BYTES:
                self._flush(p)
        self._held += batch.nbytes
        if self._held > BUFFER_BUDGET:  # flushing only some buffers would free none of these batches
            for p in range(self.partitions):
                self._flush(p)
            self._held = 0

    def _flush(self, p: int) -> None:
        if not self._buffers[p]:
            return
        table = pa.Table.from_batches(self._buffers[p], schema=self.schema)
        for start in range(0, table.num_rows, MAX_ROW_GROUP_ROWS):
            piece = table.slice(start, MAX_ROW_GROUP_ROWS)
            self._writer.write_table(piece, row_group_size=piece.num_rows)  # exactly one row group
            self._row_groups[p].append(self._next_group)
            self._next_group += 1
        self._rows[p] += table.num_rows
        self._buffers[p], self._buffered[p] = [], 0

    def close(self) -> dict:
        """Flush, write the partition index, close; returns the index."""
        for p in range(self.partitions):
            self._flush(p)
        index = {"version": 1, "key": self.key, "partitions": self.partitions,
                 "row_groups": self._row_groups, "rows": self._rows}
        self._writer.add_key_value_metadata({PARTITION_INDEX_KEY.decode(): json.dumps(index)})
        self._writer.close()
        self._stream.close()
        return index

    def abort(self) -> None:
        """Close without caring for the content (the caller deletes the file)."""
        for closer in (self._writer.close, self._stream.close):
            with contextlib.suppress(Exception):
                closer()


def export_partitions(batches: Iterable[pa.RecordBatch], schema: pa.Schema, stream: pa.NativeFile,
                      key: list[str] | None, partitions: int) -> dict:
    """Partition ``batches`` by ``key`` into one Parquet file written to ``stream``; returns the index."""
    writer = PartitionedWriter(stream, schema, key, partitions)
    try:
        for batch in batches:
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
