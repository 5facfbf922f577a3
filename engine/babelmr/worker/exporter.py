"""Export a program's output as ONE Parquet object whose row groups each hold a single partition.

The partition -> row groups index goes into the file's key-value metadata (`PARTITION_INDEX_KEY`),
and each partition gets its own footer before the file's (`shuffleindex`): reducer i reads only its
footer and its row groups of every upstream object, whatever the partition count. Rows stream through per-partition
buffers bounded in bytes; a buffer becomes a row group when it is full, and all buffers are flushed
when the batches they hold slices of exceed the budget (a slice keeps its whole batch in memory).

A writer thread encodes row groups while the caller partitions the next batches (both release the
GIL), one row group queued at a time. Columns whose first batch is mostly distinct values are written
without a dictionary: pyarrow would build one for every row group only to abandon it; so are columns
that the first batch shows to be smaller plain (keys repeating in short runs: plain + snappy wins).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from babelmr.settings import settings
from babelmr.spec import PARTITION_INDEX_KEY, PartitionIndex
from babelmr.worker.partition import split_by_partition
from babelmr.worker.partitioners import Splitter
from babelmr.worker.shuffleindex import write_index

# A partition's row group ends once settings().row_group_bytes (BABELMR_ROW_GROUP_BYTES) are buffered, and
# settings().export_buffer (BABELMR_EXPORT_BUFFER) bounds the batches held over all partitions. The writer thread
# encodes one flush while the next fills: a 64 MB buffer keeps a 4 GB partition's task under 512 MB of RSS; 128 MB
# exported 3% faster (benchmarks/micro.py).
MAX_ROW_GROUP_ROWS = 64 << 20  # pyarrow's writer cuts longer row groups (its max_row_group_length)
# A column whose dictionary outgrows this falls back to plain encoding. Every row group starts a new dictionary,
# so with pyarrow's 1 MB, columns of (nearly) unique values build a useless dictionary per row group.
DICTIONARY_PAGE_BYTES = 256 << 10
DICTIONARY_SAMPLE_ROWS = 1024  # a first batch shorter than this says too little: every column gets a dictionary
DICTIONARY_TRIAL_ROWS = 8192  # rows of a column encoded both ways to see whether a dictionary pays
COMPRESSION = "snappy"


def dictionary_columns(batch: pa.RecordBatch) -> list[str] | bool:
    """The columns worth a dictionary: in ``batch``, at most half of their values distinct, and smaller encoded
    with a dictionary than without."""
    if batch.num_rows < DICTIONARY_SAMPLE_ROWS:
        return True
    return [f.name for f, column in zip(batch.schema, batch.columns, strict=True)
            if pa.types.is_null(f.type) or (pc.count_distinct(column).as_py() <= batch.num_rows // 2
                                            and _smaller_with_dictionary(f, column))]


def _smaller_with_dictionary(field: pa.Field, column: pa.Array) -> bool:
    """Whether the first rows of ``column`` encode smaller with a dictionary than without (a few ms a column)."""
    sample = column.slice(0, DICTIONARY_TRIAL_ROWS)
    return _encoded_bytes(field, sample, True) < _encoded_bytes(field, sample, False)


def _encoded_bytes(field: pa.Field, column: pa.Array, dictionary: bool) -> int:
    """The compressed size of ``column`` written as the exporter writes it, with or without a dictionary.

    Keys that repeat in short runs (an order's line items) compress better plain than as dictionary indices,
    and are written faster so (TPC-H l_orderkey: 40% smaller, 60% less CPU; benchmarks/micro.py).
    """
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table([column], schema=pa.schema([field])), sink, compression=COMPRESSION,
                   use_dictionary=dictionary, dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES)
    return pq.read_metadata(pa.BufferReader(sink.getvalue())).row_group(0).column(0).total_compressed_size


class PartitionedWriter:
    """Writes batches into one Parquet file, one partition per row group."""

    def __init__(self, stream: pa.NativeFile, schema: pa.Schema, key: list[str] | None, partitions: int,
                 split: Splitter | None = None):
        self.schema = schema
        self.key = key or []
        self.partitions = partitions
        # which partition each row goes to: the hash partitioner unless the stage chose another (worker/partitioners)
        self._split = split or (lambda batch: split_by_partition(batch, self.key, self.partitions))
        self._stream = stream
        self._writer: pq.ParquetWriter | None = None  # opened at the first batch, which picks the dictionaries
        self._buffers: list[list[pa.RecordBatch]] = [[] for _ in range(partitions)]
        self._buffered = [0] * partitions
        self._held = 0  # bytes of the batches split since every buffer was last flushed: buffered slices keep them
        self._row_groups: list[list[int]] = [[] for _ in range(partitions)]
        self._rows = [0] * partitions
        self._next_group = 0
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _open(self, first: pa.RecordBatch | None) -> pq.ParquetWriter:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self._stream, self.schema, compression=COMPRESSION, dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
                use_dictionary=dictionary_columns(first) if first is not None else True)
            self._thread = threading.Thread(target=self._write_row_groups, name="babelmr-export", daemon=True)
            self._thread.start()
        return self._writer

    def _write_row_groups(self) -> None:
        """The writer thread: each queued table becomes one row group; after an error it only drains."""
        writer = self._writer
        assert writer is not None
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    writer.write_table(table, row_group_size=table.num_rows)  # exactly one row group
                except BaseException as e:  # raised in the caller's thread at its next write or close
                    self._error = e

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.schema != self.schema:
            batch = batch.cast(self.schema)
        self._open(batch)
        for p, part in self._split(batch):
            self._buffers[p].append(part)
            self._buffered[p] += part.nbytes
            if self._buffered[p] >= settings().row_group_bytes:
                self._flush(p)
        self._held += batch.nbytes
        if self._held > settings().export_buffer:  # flushing only some buffers would free none of these batches
            for p in range(self.partitions):
                self._flush(p)
            self._held = 0
        self._check()

    def _flush(self, p: int) -> None:
        if not self._buffers[p]:
            return
        table = pa.Table.from_batches(self._buffers[p], schema=self.schema)
        for start in range(0, table.num_rows, MAX_ROW_GROUP_ROWS):
            piece = table.slice(start, MAX_ROW_GROUP_ROWS)
            self._queue.put(piece)  # written in this order: the index can be kept here
            self._row_groups[p].append(self._next_group)
            self._next_group += 1
        self._rows[p] += table.num_rows
        self._buffers[p], self._buffered[p] = [], 0

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def close(self) -> PartitionIndex:
        """Flush, write the partition index, close; returns the index."""
        writer = self._open(None)
        for p in range(self.partitions):
            self._flush(p)
        self._stop()
        self._check()
        index = PartitionIndex(key=self.key, partitions=self.partitions, row_groups=self._row_groups, rows=self._rows)
        writer.add_key_value_metadata({PARTITION_INDEX_KEY.decode(): index.to_json()})
        writer.close()  # the stream stays open: the partition footers and the footer again follow
        write_index(self._stream, writer.writer.metadata, self._row_groups, self._rows)
        self._stream.close()
        return index

    def abort(self) -> None:
        """Close without caring for the content (the caller deletes the file)."""
        self._stop()
        closers = [self._stream.close] if self._writer is None else [self._writer.close, self._stream.close]
        for closer in closers:
            with contextlib.suppress(Exception):
                closer()


def export_partitions(batches: Iterable[pa.RecordBatch], schema: pa.Schema, stream: pa.NativeFile,
                      key: list[str] | None, partitions: int, split: Splitter | None = None) -> PartitionIndex:
    """Partition ``batches`` by ``key`` (``split``: another partitioner's) into one Parquet file written to
    ``stream``; returns the index."""
    writer = PartitionedWriter(stream, schema, key, partitions, split)
    try:
        for batch in batches:
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
