"""Deterministic hash partitioning of record batches by key columns.

Equal keys land in the same partition under SQL GROUP BY semantics (docs/partitioning.md is the
contract): every NaN is one value, -0.0 is 0.0, NULL is one value distinct from every other, temporal
values are compared at full precision whatever their unit, decimals by exact value whatever their scale.
The hash depends only on key *values*, never on the process, machine or Arrow type width: integers of
any width, integral floats and integral decimals with the same value hash alike, as do strings whatever
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
_FLOAT_TAG = np.uint64(0x5555)  # xor-ed into a non-integral float's bits
_NAN_BITS = np.uint64(0x7FF8000000000000)  # every NaN hashes as this one (Python's float("nan"))
_INSTANT_TAG = np.uint64(0x7E3A0C3D5E2B1F49)  # instants that are not a whole number of microseconds
_DECIMAL_TAG = np.uint64(0xD3C1A7E5B9F20461)  # decimals that are not an integer of 64 bits
_U32 = np.uint64(0xFFFFFFFF)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_31 = np.uint64(31)
DISTINCT_SAMPLE = 4096  # rows looked at to decide whether string keys repeat enough to hash each value once
_NANOS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}  # nanoseconds per unit
_DAY_MS = 86_400_000


class UnsupportedKeyError(TypeError):
    """A key column's type cannot be partitioned (lists, structs, maps, unions, intervals)."""


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-spread bijection on uint64 (``x`` itself is left as it is)."""
    with np.errstate(over="ignore"):
        if not isinstance(x, np.ndarray) or not x.ndim:  # a scalar
            x = x ^ (x >> np.uint64(30))
            x = x * _M1
            x = x ^ (x >> np.uint64(27))
            x = x * _M2
            return x ^ (x >> np.uint64(31))
        # the same steps in two buffers: a temporary per step costs more than the arithmetic (page faults)
        y = np.right_shift(x, _S30)
        np.bitwise_xor(y, x, out=y)
        np.multiply(y, _M1, out=y)
        t = np.right_shift(y, _S27)
        np.bitwise_xor(y, t, out=y)
        np.multiply(y, _M2, out=y)
        np.right_shift(y, _S31, out=t)
        np.bitwise_xor(y, t, out=y)
        return y


def _numeric_hash(values: np.ndarray) -> np.ndarray:
    """Integral values in [-2**63, 2**64) hash as their 64-bit two's complement; other floats as their bits.

    All NaNs share one bit pattern and -0.0 is the integer 0, as SQL groups them.
    """
    if values.dtype.kind in "iub":  # exact for integers beyond 2**53
        return _mix(values.astype(np.int64, copy=False).view(np.uint64))
    as_float = values.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(as_float) & (np.floor(as_float) == as_float)
    signed = integral & (as_float >= -(2.0**63)) & (as_float < 2.0**63)
    unsigned = integral & (as_float >= 2.0**63) & (as_float < 2.0**64)  # as uint64 writes them
    with np.errstate(invalid="ignore"):
        bits = np.where(signed, np.where(signed, as_float, 0).astype(np.int64).view(np.uint64),
                        np.where(unsigned, as_float, 0).astype(np.uint64))
    float_bits = np.where(np.isnan(as_float), _NAN_BITS, as_float.view(np.uint64)) ^ _FLOAT_TAG
    return _mix(np.where(signed | unsigned, bits, float_bits))


def _instant_hash(values: np.ndarray, nanos_per_unit: int) -> np.ndarray:
    """Hash of timestamps, durations or times counted in a unit: the same instant hashes alike in every unit.

    A whole number of microseconds that fits an int64 hashes as that integer; any other instant as its
    (seconds, nanoseconds) pair, which no unit overflows.
    """
    values = values.astype(np.int64, copy=False)
    if nanos_per_unit == 1000:  # microseconds already
        return _mix(values.view(np.uint64))
    if nanos_per_unit == 1:
        micros, rest = np.divmod(values, 1000)
        if not rest.any():  # every value a whole microsecond, and any ns value fits as microseconds
            return _mix(micros.view(np.uint64))
    elif len(values) and -(limit := 2**63 // (nanos_per_unit // 1000) - 1) < values.min() and values.max() < limit:
        # (not np.abs: the absolute value of the smallest int64 overflows to itself)
        return _mix((values * (nanos_per_unit // 1000)).view(np.uint64))  # s or ms: no overflow
    seconds, rest = np.divmod(values, 1_000_000_000 // nanos_per_unit)  # floor: rest >= 0
    nanos = rest * nanos_per_unit
    micros = nanos // 1000
    top, bottom = 2**63 // 1_000_000, -(2**63) // 1_000_000  # 9223372036854 and -9223372036855
    fits = (nanos % 1000 == 0) & (
        ((seconds > bottom) & (seconds < top)) | ((seconds == top) & (micros <= 2**63 - 1 - top * 1_000_000))
        | ((seconds == bottom) & (micros >= -(2**63) - bottom * 1_000_000)))
    with np.errstate(over="ignore"):
        as_micros = np.where(fits, seconds, 0) * 1_000_000 + np.where(fits, micros, 0)
        other = _mix(_mix(seconds.view(np.uint64) ^ _INSTANT_TAG) + nanos.astype(np.uint64))
    return np.where(fits, _mix(as_micros.view(np.uint64)), other)


def _int_hash(negative: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """The hash of the integers -magnitude / +magnitude: their 64-bit two's complement, as an int64 holds it."""
    with np.errstate(over="ignore"):
        return _mix(np.where(negative, np.uint64(0) - magnitude, magnitude))


def _canonical_decimal_hash(negative: np.ndarray, words: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """The hash of ±words * 10**exponent, words (4 of 64 bits, least significant first) without trailing 0."""
    with np.errstate(over="ignore"):
        hashed = _mix(exponent.astype(np.int64).view(np.uint64) ^ _DECIMAL_TAG)
        hashed = _mix(hashed ^ negative.astype(np.uint64))
        for j in range(4):
            hashed = _mix(hashed * np.uint64(31) + (words[:, j] if j < words.shape[1] else np.uint64(0)))
    return hashed


def _decimal_magnitude(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Sign and magnitude (rows of 64-bit words, least significant first) of a decimal array's values."""
    n, width = len(column), column.type.byte_width
    raw = np.frombuffer(column.buffers()[1], np.uint8)[column.offset * width:(column.offset + n) * width]
    if width == 4:
        signed = raw.view("<i4").astype(np.int64)
        return signed < 0, np.abs(signed).astype(np.uint64).reshape(n, 1)
    words = raw.view("<u8").reshape(n, width // 8).copy()  # two's complement
    negative = (words[:, -1] >> np.uint64(63)).astype(bool)
    if negative.any():  # the magnitude: invert and add one
        flipped = ~words[negative]
        carry = np.ones(len(flipped), bool)
        for j in range(flipped.shape[1]):
            flipped[:, j] += carry.astype(np.uint64)
            carry &= flipped[:, j] == 0
        words[negative] = flipped
    return negative, words


def _divmod_small(limbs: np.ndarray, divisor: np.ndarray | np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """Quotient and remainder of multi-limb integers (32-bit limbs, one row each, least significant first).

    ``divisor`` (one, or one per integer) is at most 2**32, so a remainder shifted by a limb fits 64 bits.
    """
    quotient = np.empty_like(limbs)
    remainder = np.zeros(limbs.shape[1], np.uint64)
    for j in reversed(range(len(limbs))):
        current = (remainder << np.uint64(32)) | limbs[j]
        quotient[j], remainder = current // divisor, current % divisor
    return quotient, remainder


_POW10 = np.array([10**k for k in range(20)], np.uint64)


def _decimal_hash(column: pa.Array) -> np.ndarray:
    """Hash of decimals by exact value, whatever their width, precision or scale.

    An integral value in [-2**63, 2**64) hashes as that integer (like ints and integral floats); any
    other value as its sign, unscaled magnitude and exponent once trailing decimal zeros are removed.
    Magnitudes of 64 bits are done in uint64 arithmetic; wider ones in 32-bit limbs.
    """
    if not len(column):  # may have no data buffer at all
        return np.empty(0, np.uint64)
    negative, words = _decimal_magnitude(column)
    scale = column.type.scale
    hashed = np.empty(len(column), np.uint64)
    wide = np.full(len(column), scale < 0) | words[:, 1:].any(axis=1)
    narrow = np.flatnonzero(~wide)
    if len(narrow):
        magnitude, sign = words[narrow, 0], negative[narrow]
        if scale < 20:
            value = magnitude // _POW10[scale]
            integral = magnitude % _POW10[scale] == 0
        else:  # 10**scale exceeds any 64-bit magnitude
            value, integral = np.zeros_like(magnitude), magnitude == 0
        fits = integral & (~sign | (value <= np.uint64(2**63)))
        hashed[narrow[fits]] = _int_hash(sign[fits], value[fits])
        if len(other := np.flatnonzero(~integral)):
            magnitude, sign = magnitude[other], sign[other]
            trailing = np.zeros(len(other), np.int64)  # trailing decimal zeros of a non-integral value (< scale)
            for k in range(1, min(scale, 20)):
                trailing += magnitude % _POW10[k] == 0
            reduced = (magnitude // _POW10[trailing]).reshape(-1, 1)
            hashed[narrow[other]] = _canonical_decimal_hash(sign, reduced, trailing - scale)
        wide[narrow[integral & ~fits]] = True  # integers beyond 64 bits: the general path strips their zeros
    if len(rows := np.flatnonzero(wide)):
        hashed[rows] = _wide_decimal_hash(negative[rows], words[rows], scale)
    return hashed


def _wide_decimal_hash(negative: np.ndarray, words: np.ndarray, scale: int) -> np.ndarray:
    """``_decimal_hash`` of magnitudes beyond 64 bits or negative scales, in 32-bit limbs."""
    limbs = np.empty((2 * words.shape[1], len(words)), np.uint64)  # one row per limb: contiguous arithmetic
    limbs[0::2], limbs[1::2] = (words & _U32).T, (words >> np.uint64(32)).T
    exponent = np.where(limbs.any(axis=0), -scale, 0).astype(np.int64)  # zero is the integer 0 at any scale
    # strip trailing decimal zeros (1.50 at scale 2 and 1.5 at scale 1 both become 15e-1): nine at a time,
    # then the last few, counted in the first remainder that is not zero
    active = np.flatnonzero(limbs.any(axis=0))
    while len(active):
        used = int(np.flatnonzero(limbs[:, active].any(axis=1)).max()) + 1
        quotient, remainder = _divmod_small(limbs[:used, active], np.uint64(10**9))
        whole = remainder == 0
        limbs[:used, active[whole]] = quotient[:, whole]
        exponent[active[whole]] += 9
        last, remainder = active[~whole], remainder[~whole]
        trailing = np.zeros(len(last), np.int64)
        for k in range(1, 9):
            trailing += remainder % _POW10[k] == 0
        if len(last := last[trailing > 0]):
            trailing = trailing[trailing > 0]
            limbs[:used, last] = _divmod_small(limbs[:used, last], _POW10[trailing])[0]
            exponent[last] += trailing
        active = active[whole]
    words = (limbs[0::2] | (limbs[1::2] << np.uint64(32))).T
    # integral and within 64 bits: multiply out the exponent, watching for overflow
    value = words[:, 0].copy()
    integral = (exponent >= 0) & ~words[:, 1:].any(axis=1) & (exponent < 20)
    for k in range(int(exponent[integral].max(initial=0))):
        scaling = integral & (exponent > k)
        integral &= ~scaling | (value <= np.uint64((2**64 - 1) // 10))
        value = np.where(scaling & integral, value * np.uint64(10), value)
    integral &= ~negative | (value <= np.uint64(2**63))
    return np.where(integral, _int_hash(negative, value), _canonical_decimal_hash(negative, words, exponent))


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


def _dictionary_hash(column: pa.DictionaryArray) -> np.ndarray:
    """Each dictionary value hashed once, gathered by index: the hash of the plain (decoded) values."""
    if not len(column.dictionary):  # every index is null
        return np.full(len(column), _NULL_HASH, np.uint64)
    return column_hash(column.dictionary)[column.indices.fill_null(0).to_numpy(zero_copy_only=False)]


def _values_hash(column: pa.Array) -> np.ndarray:
    """The hash of each value of ``column`` (its null slots hash as anything: the caller overwrites them)."""
    t = column.type
    if isinstance(t, pa.BaseExtensionType):
        return column_hash(column.storage)
    if pa.types.is_dictionary(t):
        return _dictionary_hash(column)
    if pa.types.is_run_end_encoded(t):
        return column_hash(pc.run_end_decode(column))
    if pa.types.is_null(t):
        return np.full(len(column), _NULL_HASH, np.uint64)
    if pa.types.is_boolean(t):
        return _numeric_hash(column.fill_null(False).to_numpy(zero_copy_only=False))
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _numeric_hash(column.fill_null(0).to_numpy(zero_copy_only=False))
    if pa.types.is_decimal(t):
        return _decimal_hash(column)
    if pa.types.is_date32(t):
        return _numeric_hash(column.cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False))
    if pa.types.is_date64(t):  # days, as date32 holds them
        return _numeric_hash(np.floor_divide(column.cast(pa.int64()).fill_null(0).to_numpy(), _DAY_MS))
    if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_time(t):
        storage = pa.int32() if pa.types.is_time32(t) else pa.int64()
        return _instant_hash(column.cast(storage).fill_null(0).to_numpy(zero_copy_only=False), _NANOS[t.unit])
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _bytes_hash(column.cast(pa.string()).fill_null(""))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or \
            pa.types.is_fixed_size_binary(t):
        return _bytes_hash(column.cast(pa.binary()).fill_null(b""))
    raise UnsupportedKeyError(
        f"cannot partition by a column of type {t}: a key must be a number, bool, decimal, string, binary, "
        "date, time, timestamp or duration (or a dictionary of one); make the program write such a column")


def column_hash(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash per row of one key column, stable across runs, machines and type widths."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    hashed = _values_hash(column)
    if column.null_count:
        hashed = np.where(column.is_null().to_numpy(zero_copy_only=False), _NULL_HASH, hashed)
    return hashed


def key_hash(batch: pa.RecordBatch, key: list[str]) -> np.ndarray:
    """The 64-bit hash of each row's key (before ``mod partitions``; docs/partitioning.md)."""
    if (short := _short_key_hash(batch, key)) is not None:
        return short
    combined: np.ndarray | None = None
    with np.errstate(over="ignore"):
        for name in key:
            try:
                hashed = column_hash(batch.column(name))
            except UnsupportedKeyError as e:
                raise UnsupportedKeyError(f"key column {name!r}: {e}") from None
            if combined is None:  # mix(0 * 31 + hashed)
                combined = _mix(hashed)
            else:  # mix(combined * 31 + hashed), in place: combined is this function's own array
                np.multiply(combined, _31, out=combined)
                np.add(combined, hashed, out=combined)
                combined = _mix(combined)
    return np.zeros(batch.num_rows, dtype=np.uint64) if combined is None else combined


@functools.cache
def _short_key_table(widths: tuple[int, ...]) -> np.ndarray:
    """The key hash of every key of short strings of these byte widths, at the index their bytes make together
    (the first column's bytes most significant): `key_hash`'s steps done once per possible key."""
    combined = np.zeros(1, np.uint64)
    with np.errstate(over="ignore"):
        for width in widths:
            combined = _mix((combined * _31)[:, None] + _short_hashes(width)[None, :]).ravel()
    return combined


def _short_key_hash(batch: pa.RecordBatch, key: list[str]) -> np.ndarray | None:
    """`key_hash` of a key whose columns hold strings of 1 or 2 bytes (flags, codes), 2 bytes over all: one
    lookup per row in the table of every such key's hash. None for any other key."""
    if not key or not batch.num_rows:
        return None
    joint: np.ndarray | None = None
    widths: list[int] = []
    for name in key:
        column = batch.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_binary(column.type)):
            return None
        if (short := _short_codes(column)) is None or sum(widths) + short[0] > 2:
            return None
        widths.append(short[0])
        codes = short[1].astype(np.uint16)
        joint = codes if joint is None else (joint << np.uint16(8 * short[0])) | codes
    assert joint is not None
    return _short_key_table(tuple(widths))[joint]


def partition_ids(batch: pa.RecordBatch, key: list[str], partitions: int) -> np.ndarray:
    """The partition (0..partitions-1) of each row of ``batch``."""
    if partitions == 1:  # only the type is checked: a job fails alike at any partition count
        key_hash(batch.slice(0, 0), key)
        return np.zeros(batch.num_rows, dtype=np.int64)
    return _modulo(key_hash(batch, key), partitions).astype(np.int64)


def _modulo(hashed: np.ndarray, partitions: int) -> np.ndarray:
    """``hashed mod partitions`` in the narrowest unsigned type that holds a partition id."""
    if partitions & (partitions - 1) == 0:  # a power of two: a mask gives the same remainder as a division
        ids = np.bitwise_and(hashed, np.uint64(partitions - 1), out=hashed)
    else:
        ids = np.remainder(hashed, np.uint64(partitions), out=hashed)
    return ids.astype(_id_type(partitions))


def _id_type(count: int) -> type[np.unsignedinteger]:
    """The narrowest unsigned type that holds every number below ``count`` (partition ids, row positions)."""
    return (np.uint8 if count <= 1 << 8 else np.uint16 if count <= 1 << 16 else np.uint32 if count <= 1 << 32
            else np.uint64)


def split_by_partition(batch: pa.RecordBatch, key: list[str], partitions: int) -> list[tuple[int, pa.RecordBatch]]:
    """The non-empty slices of ``batch`` per partition, in one reordering of the batch."""
    if partitions == 1:
        partition_ids(batch.slice(0, 0), key, 1)  # checks the key's types
        return [(0, batch)] if batch.num_rows else []
    return split_by_ids(batch, _modulo(key_hash(batch, key), partitions), partitions)


def split_by_ids(batch: pa.RecordBatch, ids: np.ndarray, partitions: int) -> list[tuple[int, pa.RecordBatch]]:
    """The non-empty slices of ``batch`` per partition given each row's partition, in one reordering."""
    # a stable sort of 8- or 16-bit ids is a radix sort: ~10x faster than sorting int64 ids, the same order
    order = np.argsort(ids.astype(_id_type(partitions), copy=False), kind="stable")
    counts = np.bincount(ids, minlength=partitions)
    # positions in the narrowest type that holds them (16 bits for 64 Ki-row batches): Arrow's take gathers
    # ~15% faster from uint16 indices than from int64 ones, the same rows
    ordered = batch.take(pa.array(order.astype(_id_type(len(order)), copy=False)))
    out, offset = [], 0
    for p in np.flatnonzero(counts):
        n = int(counts[p])
        out.append((int(p), ordered.slice(offset, n)))
        offset += n
    return out
