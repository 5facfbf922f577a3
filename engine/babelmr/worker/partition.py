"""Deterministic hash partitioning of record batches by key columns.

The hash depends only on key *values*, never on the process, machine or Arrow type width: integers
of any width, integral floats and decimals with the same value hash alike, as do strings whatever
their Arrow string type. So equal keys land in the same partition across tasks and stages even when
programs write them with different types (e.g. CSV inferring int64 in one task and float64 in another).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
DISTINCT_SAMPLE = 4096  # rows looked at to decide whether string keys repeat enough to hash each value once


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-spread bijection on uint64."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def _numeric_hash(values: np.ndarray) -> np.ndarray:
    """Integral values hash as their int64; other floats as their float64 bits."""
    if values.dtype.kind in "iu":  # exact for integers beyond 2**53
        return _mix(values.astype(np.int64, copy=False).view(np.uint64))
    as_float = values.astype(np.float64, copy=False)
    integral = np.isfinite(as_float) & (np.floor(as_float) == as_float) & (np.abs(as_float) < 2.0**63)
    with np.errstate(invalid="ignore"):
        ints = np.where(integral, as_float, 0).astype(np.int64)
    bits = np.where(integral, ints.view(np.uint64), as_float.view(np.uint64) ^ np.uint64(0x5555))
    return _mix(bits)


@functools.cache
def _short_hashes(width: int) -> np.ndarray:
    """The hash of every string of ``width`` bytes, at the index its bytes make as a little-endian integer."""
    values = [v.to_bytes(width, "little") for v in range(256 ** width)]
    return pd.util.hash_array(np.array(values, dtype=object), categorize=False)


def _short_codes(column: pa.Array) -> tuple[int, np.ndarray] | None:
    """When every value has the same length of 1 or 2 bytes: that length and the values as integers."""
    if not len(column) or column.null_count:
        return None
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset:column.offset + len(column) + 1]
    width = int(offsets[1] - offsets[0])
    if width not in (1, 2) or int(offsets[-1] - offsets[0]) != width * len(column):
        return None
    if len(column) > 1 and np.any(np.diff(offsets) != width):
        return None
    data = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    return width, data if width == 1 else data.view("<u2")


def _bytes_hash(column: pa.Array) -> np.ndarray:
    """SipHash (pandas' ``hash_array``, fixed key: stable everywhere) of each string or binary value.

    Turning values into Python objects costs most of it. Values of one or two bytes each (flags, codes)
    are looked up in a table of every such value's hash. Otherwise, when the first rows repeat (typical of
    keys), each distinct value is hashed once and the hashes gathered. Both give the same hashes, faster.
    """
    if (short := _short_codes(column)) is not None:
        width, codes = short
        return _short_hashes(width)[codes]
    sample = column.slice(0, DISTINCT_SAMPLE)
    if len(column) > DISTINCT_SAMPLE and pc.count_distinct(sample).as_py() <= DISTINCT_SAMPLE // 2:
        encoded = column.dictionary_encode()
        return _bytes_hash(encoded.dictionary)[encoded.indices.to_numpy()]
    return pd.util.hash_array(column.to_numpy(zero_copy_only=False), categorize=False)


def column_hash(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash per row of one key column, stable across runs, machines and type widths."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.dictionary_decode(), t.value_type
    if pa.types.is_decimal(t):
        column, t = column.cast(pa.float64()), pa.float64()
    if pa.types.is_boolean(t):
        column, t = column.cast(pa.int64()), pa.int64()
    if pa.types.is_date(t):
        column, t = column.cast(pa.date32()).cast(pa.int32()), pa.int32()
    elif pa.types.is_timestamp(t):
        column, t = column.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64()), pa.int64()
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        hashed = _numeric_hash(column.fill_null(0).to_numpy(zero_copy_only=False))
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or \
            pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            column = column.cast(pa.string())
        elif pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
            column = column.cast(pa.binary())
        hashed = _bytes_hash(column.fill_null("" if pa.types.is_string(column.type) else b""))
    else:
        raise TypeError(f"cannot partition by a column of type {t}: use numbers, strings, dates or timestamps")
    if column.null_count:
        hashed = np.where(pc.is_null(column).to_numpy(zero_copy_only=False), _NULL_HASH, hashed)
    return hashed


def partition_ids(batch: pa.RecordBatch, key: list[str], partitions: int) -> np.ndarray:
    """The partition (0..partitions-1) of each row of ``batch``."""
    if partitions == 1:
        return np.zeros(batch.num_rows, dtype=np.int64)
    combined = np.zeros(batch.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in key:
            combined = _mix(combined * np.uint64(31) + column_hash(batch.column(name)))
    return (combined % np.uint64(partitions)).astype(np.int64)


def split_by_partition(batch: pa.RecordBatch, key: list[str], partitions: int) -> list[tuple[int, pa.RecordBatch]]:
    """The non-empty slices of ``batch`` per partition, in one reordering of the batch."""
    if partitions == 1:
        return [(0, batch)] if batch.num_rows else []
    ids = partition_ids(batch, key, partitions)
    # a stable sort of 16-bit ids is a radix sort: ~10x faster than sorting int64 ids, the same order
    order = np.argsort(ids.astype(np.uint16) if partitions <= 1 << 16 else ids, kind="stable")
    counts = np.bincount(ids, minlength=partitions)
    ordered = batch.take(pa.array(order))
    out, offset = [], 0
    for p in np.flatnonzero(counts):
        n = int(counts[p])
        out.append((int(p), ordered.slice(offset, n)))
        offset += n
    return out
