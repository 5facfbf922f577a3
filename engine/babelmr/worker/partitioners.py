"""The partitioners a stage may choose (its ``partitioner``): hash, range, salted and random.

``hash`` (worker/partition.py) sends equal keys to one partition. ``range`` sends each row to the partition
whose key interval holds it: the coordinator samples the key and ships ``partitions - 1`` boundary keys
(coordinator/sampling.py); a row goes to the number of boundaries that order strictly before its key, in
the order of worker/sort.py (NULLs last unless the reading stage says first, NaN above +inf), so partition
i orders before partition i+1 and equal keys (equal normalised sort keys) never part. ``salted`` spreads
each key over ``salts`` consecutive partitions and ``random`` spreads every row over all of them, for
skewed aggregations that a later stage combines per key; the salt of a row depends only on the stage, the
task and the row's position in the task's output, so every attempt of a task splits alike.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from babelmr.worker.partition import UnsupportedKeyError, _mix, key_hash, split_by_ids, split_by_partition
from babelmr.worker.sort import _orderable, sort_key

PARTITIONERS = ("hash", "range", "salted", "random")
Splitter = Callable[[pa.RecordBatch], list[tuple[int, pa.RecordBatch]]]


def encode_boundaries(table: pa.Table) -> str:
    """Boundary rows (the key columns, typed) as base64 Arrow IPC: plain JSON for the task spec."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


def decode_boundaries(text: str) -> pa.Table:
    """The boundary rows of `encode_boundaries`."""
    return pa.ipc.open_stream(pa.py_buffer(base64.b64decode(text))).read_all()


def _family(t: pa.DataType) -> str:
    """Types whose values order alike once cast exactly into one another."""
    if pa.types.is_dictionary(t):
        return _family(t.value_type)
    for name, test in (("number", lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)
                        or pa.types.is_decimal(t)),
                       ("text", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
                        or pa.types.is_string_view(t)),
                       ("bytes", lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)
                        or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t)),
                       ("date", pa.types.is_date), ("timestamp", pa.types.is_timestamp), ("time", pa.types.is_time),
                       ("duration", pa.types.is_duration), ("bool", pa.types.is_boolean)):
        if test(t):
            return name
    return str(t)


def check_orderable(name: str, t: pa.DataType) -> None:
    """Raise UnsupportedKeyError when a range key column's type has no order."""
    if not _orderable(t):
        raise UnsupportedKeyError(f"key column {name!r} of type {t} has no order, so the 'range' partitioner "
                                  "cannot place it: use ordered key types (numbers, strings, binaries, booleans, "
                                  "decimals, dates, times, timestamps, durations) or the 'hash' partitioner")


class RangeSplitter:
    """Rows to partitions by sorted boundary keys: partition = boundaries ordering strictly before the key.

    ``boundaries`` None (an empty sample): every row is in partition 0; only the key's types are checked.
    """

    def __init__(self, key: list[str], partitions: int, order: list[dict[str, str]], boundaries: pa.Table | None):
        self.key, self.order, self.partitions = key, order, partitions
        self.types = {name: boundaries.schema.field(name).type for name in key} if boundaries is not None else {}
        for name, t in self.types.items():
            check_orderable(name, t)
        if boundaries is not None and boundaries.num_rows >= partitions:
            raise ValueError(f"{boundaries.num_rows} range boundaries for {partitions} partitions")
        self.bounds = sort_key(boundaries, order) if boundaries is not None and boundaries.num_rows \
            else pa.array([], pa.binary())

    def _keys(self, batch: pa.RecordBatch) -> pa.Array:
        columns = []
        for name in self.key:
            column, t = batch.column(name), self.types.get(name)
            check_orderable(name, column.type)
            if t is not None and column.type != t:  # compare in the boundaries' type, as every task does
                if _family(column.type) != _family(t) and not pa.types.is_null(column.type):
                    raise UnsupportedKeyError(
                        f"key column {name!r}: the program wrote {column.type}, but the range boundaries are {t} "
                        "(the sampled key's type), which orders otherwise (e.g. '10' < '9' as text): write the key "
                        f"as {t}, or declare its type in the stage's 'schema' (e.g. \"{name}\": "
                        f"\"{column.type}\") so that the boundaries are sampled as that")
                try:
                    column = pc.cast(column, t, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise UnsupportedKeyError(
                        f"key column {name!r}: the program wrote {column.type}, but the range boundaries are "
                        f"{t} (the sampled key's type) and the values do not convert exactly ({e}): declare the "
                        f"key's type in the stage's 'schema' (e.g. \"{name}\": \"{t}\")") from None
            columns.append(column)
        if not batch.num_rows:  # checked and cast; no key to compute (sort_key needs rows)
            return pa.array([], pa.binary())
        return sort_key(pa.RecordBatch.from_arrays(columns, names=self.key), self.order)

    def ids(self, batch: pa.RecordBatch) -> np.ndarray:
        """Each row's partition: a vectorised binary search of its sort key among the boundaries."""
        keys = self._keys(batch)
        n, m = len(keys), len(self.bounds)
        lo = np.zeros(n, np.int64)
        hi = np.full(n, m, np.int64)
        while m and (active := lo < hi).any():
            mid = (lo + hi) // 2
            bound = self.bounds.take(pa.array(np.minimum(mid, m - 1)))
            below = pc.less(bound, keys).to_numpy(zero_copy_only=False)  # boundary < key: the key is after it
            lo = np.where(active & below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        return lo

    def __call__(self, batch: pa.RecordBatch) -> list[tuple[int, pa.RecordBatch]]:
        if not len(self.bounds):
            self._keys(batch.slice(0, 0))  # the types are checked at any partition count
            return [(0, batch)] if batch.num_rows else []
        return split_by_ids(batch, self.ids(batch), self.partitions)


def task_seed(stage: str, task: int) -> np.uint64:
    """The salt seed of a task: the same for every attempt (and run), different for every task."""
    return np.uint64(int.from_bytes(hashlib.blake2b(f"{stage}\0{task}".encode(), digest_size=8).digest(), "little"))


class SaltedSplitter:
    """Rows spread over ``salts`` partitions from their key's hash partition on (``salts`` = N: every row
    anywhere, the random partitioner); the salt is a hash of the task's seed and the row's position."""

    def __init__(self, key: list[str], partitions: int, salts: int, seed: np.uint64):
        self.key, self.partitions, self.salts, self.seed = key, partitions, salts, seed
        self.random = salts >= partitions
        self.rows = 0  # rows split so far: the position of the next row in the task's output

    def ids(self, batch: pa.RecordBatch) -> np.ndarray:
        """Each row's partition; advances the position."""
        n = batch.num_rows
        position = np.arange(self.rows, self.rows + n, dtype=np.uint64)
        self.rows += n
        with np.errstate(over="ignore"):
            salt = _mix(_mix(position) ^ self.seed)
        if self.random:
            key_hash(batch.slice(0, 0), self.key)  # the key's types are still checked
            return (salt % np.uint64(self.partitions)).astype(np.int64)
        home = key_hash(batch, self.key) % np.uint64(self.partitions)
        return ((home + salt % np.uint64(self.salts)) % np.uint64(self.partitions)).astype(np.int64)

    def __call__(self, batch: pa.RecordBatch) -> list[tuple[int, pa.RecordBatch]]:
        if self.partitions == 1:
            key_hash(batch.slice(0, 0), self.key)
            return [(0, batch)] if batch.num_rows else []
        return split_by_ids(batch, self.ids(batch), self.partitions)


def make_splitter(key: list[str] | None, partitions: int, partitioner: str = "hash",
                  options: dict[str, Any] | None = None, stage: str = "", task: int = 0) -> Splitter:
    """The function that splits a batch of a task's output into its partitions' slices."""
    key, options = key or [], options or {}
    if partitioner == "range":
        order = options.get("order") or [{"column": k, "order": "asc", "nulls": "last"} for k in key]
        boundaries = decode_boundaries(options["boundaries"]) if options.get("boundaries") else None
        return RangeSplitter(key, partitions, order, boundaries)
    if partitioner in ("salted", "random"):
        salts = partitions if partitioner == "random" else min(partitions, options.get("salts") or partitions)
        return SaltedSplitter(key, partitions, salts, task_seed(stage, task))
    return lambda batch: split_by_partition(batch, key, partitions)
