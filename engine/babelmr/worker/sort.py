"""Sort a stream of record batches in bounded memory: sorted runs spilled to disk, then a k-way merge.

The order is DuckDB's ``ORDER BY`` with its defaults: NULLs last in both directions (unless a column asks
for ``"nulls": "first"``), NaN above every other float (so first in a descending column, last in an
ascending one, before the NULLs), ``-0.0`` equal to ``0.0``, strings and binaries by their bytes (UTF-8
code point order), decimals, dates and timestamps by value.

Each batch gets a normalised sort key: one binary value per row whose bytewise order is that order (per
column a NULL marker byte, then a big-endian, sign-flipped encoding of the value, bytes inverted for a
descending column; strings escaped so that no key is a prefix of another). Runs of at most ``sort_run_bytes``
(`babelmr.settings`) are sorted with Arrow's ``sort_indices`` on that key and written to the task's disk as
Arrow IPC files in small batches; the merge keeps one batch per run. Each round it takes the smallest last key of the
runs' current batches as the bound (a heap over the runs): every row up to the bound, from every run,
precedes every row not read yet, so those rows are sorted together (Arrow again) and emitted. More runs
than ``sort_max_fanin`` are first merged into fewer, larger runs, so memory stays bounded for any input size.
"""

from __future__ import annotations

import heapq
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from babelmr.errors import InputError
from babelmr.settings import settings

OUTPUT_ROWS = 64 * 1024  # rows of the batches emitted
KEY = "__babelmr_sort_key"
_NOT_NULL = 1  # NULL marker bytes: NULLS FIRST < value < NULLS LAST
_NULL_LAST, _NULL_FIRST = 2, 0
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")  # runs are read once: lz4 halves the disk at little CPU


def check_columns(sort: list[dict[str, str]], schema: pa.Schema, what: str) -> None:
    """Raise InputError naming ``what`` when a sort column is missing or of a type without an order."""
    missing = [s["column"] for s in sort if s["column"] not in schema.names]
    if missing:
        raise InputError(f"{what} has no column(s) {missing} to sort by; it has {schema.names}: fix the stage's "
                         "'sort' (the key columns of the stage it reads always come first)")
    for s in sort:
        t = schema.field(s["column"]).type
        if not _orderable(t):
            raise InputError(f"{what}: column {s['column']!r} of type {t} has no order: remove it from 'sort'")


def _orderable(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _orderable(t.value_type)
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)
            or (pa.types.is_temporal(t) and not pa.types.is_interval(t)) or pa.types.is_string(t)
            or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_string_view(t) or pa.types.is_binary_view(t) or pa.types.is_null(t))


# ------------------------------------------------------------------------------------------ sort keys

def _markers(column: pa.Array, nulls_first: bool) -> np.ndarray:
    marker = np.full(len(column), _NOT_NULL, dtype=np.uint8)
    if column.null_count:
        marker[column.is_null().to_numpy(zero_copy_only=False)] = _NULL_FIRST if nulls_first else _NULL_LAST
    return marker[:, None]


def _big_endian(unsigned: np.ndarray) -> np.ndarray:
    """(n, width) bytes of unsigned integers, most significant first."""
    return unsigned.astype(unsigned.dtype.newbyteorder(">")).view(np.uint8).reshape(len(unsigned), -1)


def _fixed_payload(column: pa.Array) -> np.ndarray | None:
    """(n, width) bytes whose order is the values' order, or None for a variable-width column."""
    t = column.type
    if pa.types.is_null(t):
        return np.zeros((len(column), 0), dtype=np.uint8)
    if pa.types.is_boolean(t):
        return pc.fill_null(column, False).cast(pa.uint8()).to_numpy(zero_copy_only=False)[:, None]
    if pa.types.is_floating(t):
        values = pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False).copy()
        values[values == 0] = 0.0  # -0.0 equals 0.0
        values[np.isnan(values)] = np.nan  # one NaN, positive: above +inf once encoded
        bits = values.view(np.uint64)
        bits = np.where(bits >> np.uint64(63), ~bits, bits | np.uint64(1 << 63))
        return _big_endian(bits)
    if pa.types.is_decimal(t):
        width = t.byte_width
        raw = np.frombuffer(column.buffers()[1], dtype=np.uint8)[column.offset * width:(column.offset + len(column))
                                                                   * width].reshape(len(column), width)
        payload = raw[:, ::-1].copy()  # little-endian two's complement -> big-endian
        payload[:, 0] ^= 0x80
        if column.null_count:  # a NULL's bytes are undefined: make them equal
            payload[column.is_null().to_numpy(zero_copy_only=False)] = 0
        return payload
    if pa.types.is_temporal(t):
        storage = pa.int32() if t.bit_width == 32 else pa.int64()
        column = column.view(storage)
        t = storage
    if pa.types.is_integer(t):
        values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False)
        unsigned = values.view(np.dtype(f"u{t.bit_width // 8}"))
        if pa.types.is_signed_integer(t):
            unsigned = unsigned ^ np.array(1 << (t.bit_width - 1), dtype=unsigned.dtype)
        return _big_endian(unsigned)
    return None


def _variable_payload(column: pa.Array, descending: bool) -> pa.Array:
    """Bytes escaped (0x00 -> 0x00 0xFF) and terminated by 0x00 0x00, so that no key is a prefix of
    another and bytewise order is the strings' order; inverted when descending."""
    values = pc.fill_null(column.cast(pa.binary()), b"")
    escaped = pc.binary_join_element_wise(pc.replace_substring(values, b"\x00", b"\x00\xff"),
                                          pa.scalar(b"\x00\x00"), b"")
    return _invert(escaped) if descending else escaped


def _invert(array: pa.Array) -> pa.Array:
    _, offsets, data = array.buffers()
    inverted = np.bitwise_not(np.frombuffer(data, dtype=np.uint8)) if data is not None else np.zeros(0, np.uint8)
    return pa.Array.from_buffers(pa.binary(), len(array), [None, offsets, pa.py_buffer(inverted)], 0, array.offset)


def _fixed_array(parts: list[np.ndarray], rows: int) -> pa.Array:
    matrix = np.ascontiguousarray(np.hstack(parts)) if len(parts) > 1 else np.ascontiguousarray(parts[0])
    width = matrix.shape[1]
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), rows, [None, pa.py_buffer(matrix)])
    return fixed.cast(pa.binary())


def sort_key(batch: pa.RecordBatch | pa.Table, sort: list[dict[str, str]]) -> pa.Array:
    """The normalised sort key of every row: its bytewise order is the sort order."""
    rows = batch.num_rows
    pieces: list[pa.Array] = []
    fixed: list[np.ndarray] = []
    for s in sort:
        column = batch.column(s["column"])
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        descending = s.get("order") == "desc"
        fixed.append(_markers(column, s.get("nulls") == "first"))
        payload = _fixed_payload(column)
        if payload is not None:
            fixed.append(~payload if descending else payload)
        else:
            pieces.append(_fixed_array(fixed, rows))
            fixed = []
            pieces.append(_variable_payload(column, descending))
    if fixed:
        pieces.append(_fixed_array(fixed, rows))
    return pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, b"")


# ------------------------------------------------------------------------------------------- sorting

def _sorted_run(batches: list[pa.RecordBatch], schema: pa.Schema,
                sort: list[dict[str, str]]) -> tuple[pa.Table, pa.Array, int]:
    """The batches as one contiguous table with the key column appended, the order that sorts it, and rows
    per batch of about ``sort_merge_batch_bytes`` (each run is read back one such batch at a time).

    ``batches`` is emptied. Taking from a table of many chunks would concatenate them at every take, so the
    columns are made contiguous first, one at a time, each freeing its chunks: memory grows by one column.
    """
    keys = pa.chunked_array([sort_key(b, sort) for b in batches], pa.binary())
    chunked = pa.Table.from_batches(batches, schema=schema).append_column(KEY, keys)
    nbytes, full = chunked.nbytes, chunked.schema
    batches.clear()
    del keys
    columns = chunked.columns
    del chunked
    table = pa.Table.from_arrays([columns.pop(0).combine_chunks() for _ in range(len(columns))], schema=full)
    rows = max(1024, int(table.num_rows * settings().sort_merge_batch_bytes / max(1, nbytes)))
    return table, pc.sort_indices(table[KEY]), rows


def _sorted_batches(batches: list[pa.RecordBatch], schema: pa.Schema,
                    sort: list[dict[str, str]]) -> Iterator[pa.RecordBatch]:
    """The batches sorted, taken a slice of the order at a time: the sorted copy is never whole in memory."""
    table, order, rows = _sorted_run(batches, schema, sort)
    for start in range(0, len(order), rows):
        yield from table.take(order.slice(start, rows)).to_batches()


def _write_run(batches: Iterator[pa.RecordBatch], schema: pa.Schema, path: str) -> None:
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema.append(pa.field(KEY, pa.binary())),
                                                        options=IPC_OPTIONS) as writer:
        for batch in batches:
            writer.write_batch(batch)


class _Run:
    """A cursor over one sorted run file: its current batch, position, and first and last key."""

    def __init__(self, path: str):
        self.path = path
        self._file = pa.OSFile(path)
        self._reader = pa.ipc.open_file(self._file)
        self._next = 0
        self.batch: pa.RecordBatch | None = None
        self.pos = 0
        self.load()

    def load(self) -> bool:
        """Read the next non-empty batch; False (and closed) at the end of the run."""
        while self._next < self._reader.num_record_batches:
            batch = self._reader.get_batch(self._next)
            self._next += 1
            if batch.num_rows:
                self.batch, self.pos = batch, 0
                self.keys = batch.column(KEY)
                self.last = self.keys[-1].as_py()
                return True
        self.batch = None
        self._file.close()
        return False

    def first(self) -> bytes:
        return self.keys[self.pos].as_py()

    def take_upto(self, bound: bytes, everything: bool) -> pa.RecordBatch:
        """The rows from the position on whose key is at most ``bound`` (they are a prefix)."""
        assert self.batch is not None
        rest = self.batch.num_rows - self.pos
        n = rest if everything else pc.sum(pc.less_equal(self.keys.slice(self.pos), pa.scalar(bound, pa.binary())))
        n = n if isinstance(n, int) else n.as_py() or 0
        piece = self.batch.slice(self.pos, n)
        self.pos += n
        return piece


def _merge(paths: list[str]) -> Iterator[pa.RecordBatch]:
    """The rows of sorted runs in order (key column included), in batches of about ``OUTPUT_ROWS``."""
    runs = [run for run in (_Run(p) for p in paths) if run.batch is not None]
    heap = [(run.last, i, 0) for i, run in enumerate(runs)]  # (last key of its batch, run, generation)
    loads = [0] * len(runs)  # an entry is stale once its run loaded another batch
    heapq.heapify(heap)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    while heap:
        bound, b, generation = heap[0]
        if generation != loads[b] or runs[b].batch is None:
            heapq.heappop(heap)
            continue
        # Every row not read yet is >= the last key of its run's current batch >= bound.
        pieces = []
        for i, run in enumerate(runs):
            if run.batch is not None and (i == b or run.first() <= bound):
                piece = run.take_upto(bound, i == b)
                if piece.num_rows:
                    pieces.append(piece)
                if run.pos >= run.batch.num_rows:
                    loads[i] += 1
                    if run.load():
                        heapq.heappush(heap, (run.last, i, loads[i]))
        if len(pieces) == 1:
            merged = pieces
        else:
            table = pa.Table.from_batches(pieces)
            merged = table.take(pc.sort_indices(table[KEY])).to_batches()
        for m in merged:
            pending.append(m)
            pending_rows += m.num_rows
        if pending_rows >= OUTPUT_ROWS:
            yield from _coalesce(pending)
            pending, pending_rows = [], 0
    if pending:
        yield from _coalesce(pending)


def _coalesce(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    return [pa.concat_batches(batches)] if len(batches) > 1 else batches


def sort_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema, sort: list[dict[str, str]], spill_dir: str,
                 what: str = "the input", run_bytes: int | None = None) -> Iterator[pa.RecordBatch]:
    """``batches`` sorted by ``sort``, holding at most about ``run_bytes`` of them in memory at once.

    Runs are spilled to a fresh folder under ``spill_dir``, removed when the generator ends.
    """
    check_columns(sort, schema, what)
    limit = run_bytes or settings().sort_run_bytes
    folder = None
    runs: list[str] = []
    held: list[pa.RecordBatch] = []
    size = 0
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            held.append(batch)
            size += batch.nbytes
            if size >= limit:
                folder = folder or tempfile.mkdtemp(prefix="sort-", dir=spill_dir)
                runs.append(os.path.join(folder, f"run-{len(runs):06d}.arrow"))
                _write_run(_sorted_batches(held, schema, sort), schema, runs[-1])
                held, size = [], 0
                pa.default_memory_pool().release_unused()
        if not runs:  # it all fit in one run: no disk
            if held:
                table, order, _ = _sorted_run(held, schema, sort)
                del held
                for start in range(0, len(order), OUTPUT_ROWS):
                    yield from table.take(order.slice(start, OUTPUT_ROWS)).drop_columns([KEY]).to_batches()
            return
        assert folder is not None  # runs were spilled, so their folder exists
        if held:
            runs.append(os.path.join(folder, f"run-{len(runs):06d}.arrow"))
            _write_run(_sorted_batches(held, schema, sort), schema, runs[-1])
            held = []
            pa.default_memory_pool().release_unused()
        runs = _reduce_runs(runs, folder)
        for batch in _merge(runs):
            yield batch.drop_columns([KEY])
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def _reduce_runs(runs: list[str], folder: str) -> list[str]:
    """Merge groups of ``sort_max_fanin`` runs into one until at most ``sort_max_fanin`` remain."""
    level = 0
    fanin = settings().sort_max_fanin
    while len(runs) > fanin:
        level += 1
        merged = []
        for g in range(0, len(runs), fanin):
            group = runs[g:g + fanin]
            path = os.path.join(folder, f"merged-{level}-{g // fanin:06d}.arrow")
            writer = None
            with pa.OSFile(path, "wb") as sink:
                for batch in _merge(group):
                    if writer is None:
                        writer = pa.ipc.new_file(sink, batch.schema, options=IPC_OPTIONS)
                    rows = max(1024, int(batch.num_rows * settings().sort_merge_batch_bytes / max(1, batch.nbytes)))
                    for start in range(0, batch.num_rows, rows):
                        writer.write_batch(batch.slice(start, rows))
                if writer is not None:
                    writer.close()
            for p in group:
                os.remove(p)
            if writer is not None:
                merged.append(path)
        runs = merged
    return runs
