"""Export a program's output as ONE Parquet object whose row groups each hold a single partition.

The partition -> row groups index goes into the file's key-value metadata (`PARTITION_INDEX_KEY`),
and each partition gets its own footer before the file's (`shuffleindex`): reducer i reads only its
footer and its row groups of every upstream object, whatever the partition count. Rows stream through per-partition
buffers bounded in bytes; a buffer becomes a row group when it is full, and all buffers are flushed
when the batches they hold slices of exceed the budget (a slice keeps its whole batch in memory).

Row groups are encoded by ``ENCODE_THREADS`` threads while the caller partitions the next batches (all
release the GIL), each into a Parquet file in memory; the caller appends their column chunks to the
file in order and writes one footer of their row groups, moved to where their chunks are (as
`chunkcopy` does). pyarrow's writer encodes the columns of a row group one after another on one core.
Columns whose first batch is mostly distinct values are written without a dictionary: pyarrow would
build one for every row group only to abandon it; so are columns that the first batch shows to be
smaller plain (keys repeating in short runs: plain + snappy wins).
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from babelmr.settings import settings
from babelmr.spec import PARTITION_INDEX_KEY, PartitionIndex
from babelmr.worker import thrift
from babelmr.worker.chunkcopy import (
    CC_META_DATA,
    RG_COLUMNS,
    RG_FILE_OFFSET,
    RG_ORDINAL,
    chunk_start,
    moved_column_chunk,
)
from babelmr.worker.partition import split_by_partition
from babelmr.worker.partitioners import Splitter
from babelmr.worker.shuffleindex import FMD_KV, FMD_NUM_ROWS, FMD_ROW_GROUPS, PARQUET_MAGIC, write_index
from babelmr.worker.thrift import I16, I64, LIST, STRUCT, Struct

# A partition's row group ends once settings().row_group_bytes (BABELMR_ROW_GROUP_BYTES) are buffered, and
# settings().export_buffer (BABELMR_EXPORT_BUFFER) bounds the batches held over all partitions. The encoding
# threads encode one flush while the next fills: a 64 MB buffer keeps a 4 GB partition's task under 512 MB of RSS;
# 128 MB exported 3% faster (benchmarks/micro.py).
MAX_ROW_GROUP_ROWS = 64 << 20  # pyarrow's writer cuts longer row groups (its max_row_group_length)
# A column whose dictionary outgrows this falls back to plain encoding. Every row group starts a new dictionary,
# so with pyarrow's 1 MB, columns of (nearly) unique values build a useless dictionary per row group.
DICTIONARY_PAGE_BYTES = 256 << 10
DICTIONARY_SAMPLE_ROWS = 1024  # a first batch shorter than this says too little: every column gets a dictionary
DICTIONARY_TRIAL_ROWS = 8192  # rows of a column encoded both ways to see whether a dictionary pays
COMPRESSION = "snappy"
# Row groups encoded at once, each into a Parquet file in memory whose column chunks are then appended to the
# export in order under one footer: pyarrow's writer encodes one column after another on one core.
ENCODE_THREADS = 2


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
        self._options: dict[str, Any] | None = None  # chosen at the first batch, which picks the dictionaries
        self._footer: Struct | None = None  # the file's footer but for its row groups (an empty file's)
        self._buffers: list[list[pa.RecordBatch]] = [[] for _ in range(partitions)]
        self._buffered = [0] * partitions
        self._held = 0  # bytes of the batches split since every buffer was last flushed: buffered slices keep them
        self._row_groups: list[list[int]] = [[] for _ in range(partitions)]
        self._rows = [0] * partitions
        self._next_group = 0
        self._groups: list[Struct] = []  # each row group's metadata, at its place in the file
        self._pool: ThreadPoolExecutor | None = None
        self._encoding: deque[Future[pa.Buffer]] = deque()  # row groups being encoded, in file order

    def _open(self, first: pa.RecordBatch | None) -> dict[str, Any]:
        if self._options is None:
            self._options = {"compression": COMPRESSION, "dictionary_pagesize_limit": DICTIONARY_PAGE_BYTES,
                             "use_dictionary": dictionary_columns(first) if first is not None else True}
            self._footer = _footer(self._encode(None))
            self._stream.write(PARQUET_MAGIC)
            self._pool = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="babelmr-export")
        return self._options

    def _encode(self, table: pa.Table | None) -> pa.Buffer:
        """``table`` as a Parquet file of one row group in memory (no row group for None); in a pool thread."""
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, self.schema, **(self._options or {})) as writer:
            if table is not None:
                writer.write_table(table, row_group_size=table.num_rows)  # exactly one row group
        return sink.getvalue()

    def _append(self, encoded: pa.Buffer) -> None:
        """Write an encoded row group's column chunks to the file, and keep its metadata moved to where they are."""
        footer = _footer(encoded)
        size = encoded.size - 8 - struct.unpack_from("<I", encoded, encoded.size - 8)[0]
        shift = self._stream.tell() - len(PARQUET_MAGIC)  # the chunks start after the magic in ``encoded``
        self._stream.write(encoded.slice(len(PARQUET_MAGIC), size - len(PARQUET_MAGIC)))
        for group in footer.get(FMD_ROW_GROUPS).items:
            columns = [moved_column_chunk(c, chunk_start(c.get(CC_META_DATA)) + shift)
                       for c in group.get(RG_COLUMNS).items]
            group.set(RG_COLUMNS, LIST, thrift.List(STRUCT, columns))
            if group.get(RG_FILE_OFFSET) is not None:
                group.set(RG_FILE_OFFSET, I64, group.get(RG_FILE_OFFSET) + shift)
            group.pop(RG_ORDINAL)
            if len(self._groups) < 1 << 15:  # an i16
                group.set(RG_ORDINAL, I16, len(self._groups))
            self._groups.append(group)

    def _wait(self, pending: int) -> None:
        """Append encoded row groups, in order, until at most ``pending`` are being encoded."""
        while len(self._encoding) > pending:
            self._append(self._encoding.popleft().result())

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

    def _flush(self, p: int) -> None:
        if not self._buffers[p]:
            return
        assert self._pool is not None
        table = pa.Table.from_batches(self._buffers[p], schema=self.schema)
        for start in range(0, table.num_rows, MAX_ROW_GROUP_ROWS):
            # encoded while this thread partitions the next batches; at most one row group waits per thread
            self._wait(ENCODE_THREADS - 1)
            self._encoding.append(self._pool.submit(self._encode, table.slice(start, MAX_ROW_GROUP_ROWS)))
            self._row_groups[p].append(self._next_group)  # appended in this order: the index can be kept here
            self._next_group += 1
        self._rows[p] += table.num_rows
        self._buffers[p], self._buffered[p] = [], 0

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._encoding.clear()

    def close(self) -> PartitionIndex:
        """Flush, write the footer with the partition index and the partition footers, close; returns the index."""
        self._open(None)
        for p in range(self.partitions):
            self._flush(p)
        self._wait(0)
        self._stop()
        index = PartitionIndex(key=self.key, partitions=self.partitions, row_groups=self._row_groups, rows=self._rows)
        assert self._footer is not None
        footer = self._footer.copy()
        footer.set(FMD_NUM_ROWS, I64, sum(self._rows))
        footer.set(FMD_ROW_GROUPS, LIST, thrift.List(STRUCT, self._groups))
        entry = Struct()
        entry.set(1, thrift.BINARY, PARTITION_INDEX_KEY)
        entry.set(2, thrift.BINARY, index.to_json().encode())
        kv = footer.get(FMD_KV)
        footer.set(FMD_KV, LIST, thrift.List(STRUCT, [*(kv.items if kv is not None else []), entry]))
        encoded = thrift.dumps(footer)
        metadata = pq.read_metadata(pa.BufferReader(PARQUET_MAGIC + encoded + struct.pack("<I", len(encoded))
                                                    + PARQUET_MAGIC))
        # the partition footers, then the file's footer (the stream stays open for them)
        write_index(self._stream, metadata, self._row_groups, self._rows)
        self._stream.close()
        return index

    def abort(self) -> None:
        """Close without caring for the content (the caller deletes the file)."""
        self._stop()
        with contextlib.suppress(Exception):
            self._stream.close()


def _footer(encoded: pa.Buffer) -> Struct:
    """The FileMetaData of a Parquet file in memory."""
    size = struct.unpack_from("<I", encoded, encoded.size - 8)[0]
    return thrift.loads(encoded.slice(encoded.size - 8 - size, size).to_pybytes())


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
