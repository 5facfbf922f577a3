"""babelmr.worker.partition: deterministic, type-width-invariant hash partitioning."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelmr.spec import TaskSpec
from babelmr.worker.partition import (
    _NULL_HASH as NULL_HASH,
)
from babelmr.worker.partition import (
    DISTINCT_SAMPLE,
    UnsupportedKeyError,
    column_hash,
    partition_ids,
    split_by_partition,
)
from babelmr.worker.task import run_task

INTS = [0, 1, 2, 3, 42, -7, 10**12]
STRINGS = ["", "a", "apple", "banana", "Zürich", "x" * 50, "42"]


def batch(**columns: pa.Array | list) -> pa.RecordBatch:
    return pa.record_batch([c if isinstance(c, pa.Array) else pa.array(c) for c in columns.values()],
                           names=list(columns))


def ids(column: pa.Array, partitions: int = 64) -> list[int]:
    return partition_ids(batch(k=column), ["k"], partitions).tolist()


# -- determinism ---------------------------------------------------------------------------------------------


def test_golden_partition_ids_catch_a_change_of_hash_function() -> None:
    # These values are part of the on-disk contract: outputs of a run must be readable by a later one.
    b = batch(i=INTS, s=STRINGS)
    assert partition_ids(b, ["i"], 8).tolist() == [0, 5, 0, 2, 5, 4, 1]
    assert partition_ids(b, ["i"], 1000).tolist() == [0, 957, 752, 946, 437, 500, 681]
    assert partition_ids(b, ["s"], 8).tolist() == [6, 2, 7, 6, 1, 4, 7]
    assert partition_ids(b, ["s"], 1000).tolist() == [358, 410, 727, 862, 217, 836, 279]
    assert partition_ids(b, ["i", "s"], 16).tolist() == [14, 13, 5, 6, 15, 0, 0]


def test_golden_column_hashes() -> None:
    assert column_hash(pa.array([0, 1, 42, None])).tolist() == [
        0x0, 0x5692161D100B05E5, 0xA759EA27D4727622, 0x9E3779B97F4A7C15]
    assert column_hash(pa.array(["", "apple", None])).tolist() == [
        0x186DA64456263A46, 0xCF5DA7DA79CBF5D8, 0x9E3779B97F4A7C15]
    assert column_hash(pa.array([1.5, -0.25])).tolist() == [0x8F5443B213485A1D, 0x828D0CB5E3716C05]


def test_same_values_same_ids_whatever_the_batching() -> None:
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 500, 5000)
    whole = partition_ids(batch(k=keys), ["k"], 13)
    assert partition_ids(batch(k=keys), ["k"], 13).tolist() == whole.tolist()
    pieces = np.concatenate([partition_ids(batch(k=keys[i:i + 777]), ["k"], 13) for i in range(0, 5000, 777)])
    assert pieces.tolist() == whole.tolist()
    chunked = pa.chunked_array([pa.array(keys[:2000]), pa.array(keys[2000:])])
    assert column_hash(chunked).tolist() == column_hash(pa.array(keys)).tolist()


def test_one_partition_puts_everything_in_partition_zero() -> None:
    assert partition_ids(batch(k=STRINGS), ["k"], 1).tolist() == [0] * len(STRINGS)


def test_ids_are_in_range() -> None:
    for n in (2, 3, 7, 100, 100_000):
        got = partition_ids(batch(k=np.arange(20_000)), ["k"], n)
        assert got.min() >= 0 and got.max() < n
        assert got.dtype == np.int64


# -- type-width invariance -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arrow_type", [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
                                        pa.uint32(), pa.uint64()])
def test_integers_of_any_width_hash_alike(arrow_type: pa.DataType) -> None:
    values = [0, 1, 2, 5, 17, 100, 127]
    assert ids(pa.array(values, arrow_type)) == ids(pa.array(values, pa.int64()))


def test_integral_floats_and_decimals_hash_like_integers() -> None:
    values = [0, 1, -3, 42, 1_000_000, -2**40]
    expected = ids(pa.array(values, pa.int64()))
    assert ids(pa.array([float(v) for v in values], pa.float64())) == expected
    assert ids(pa.array([float(v) for v in values], pa.float32())) == expected
    decimals = pa.array([decimal.Decimal(v).quantize(decimal.Decimal("0.01")) for v in values], pa.decimal128(18, 2))
    assert ids(decimals) == expected
    assert ids(pa.array([decimal.Decimal(v) for v in values], pa.decimal128(38, 0))) == expected


def test_non_integral_floats_agree_across_widths_and_decimals_across_scales() -> None:
    assert ids(pa.array([1.5, -0.25], pa.float32())) == ids(pa.array([1.5, -0.25], pa.float64()))
    expected = ids(pa.array([decimal.Decimal("1.5"), decimal.Decimal("-0.25")], pa.decimal128(10, 2)))
    assert ids(pa.array([decimal.Decimal("1.500"), decimal.Decimal("-0.250")], pa.decimal256(40, 3))) == expected
    # 1.5 is not 1 or 2
    assert column_hash(pa.array([1.5])).tolist() != column_hash(pa.array([1])).tolist()
    assert column_hash(pa.array([1.5])).tolist() != column_hash(pa.array([2])).tolist()


def test_large_integers_stay_exact() -> None:
    big = [2**53, 2**53 + 1, 2**62 + 3]
    hashes = column_hash(pa.array(big, pa.int64())).tolist()
    assert len(set(hashes)) == 3  # not collapsed through float64
    assert column_hash(pa.array(big, pa.uint64())).tolist() == hashes


@pytest.mark.parametrize("arrow_type", [pa.large_string(), pa.string_view()])
def test_string_types_hash_alike(arrow_type: pa.DataType) -> None:
    assert ids(pa.array(STRINGS, arrow_type)) == ids(pa.array(STRINGS, pa.string()))


def test_dictionary_strings_hash_like_plain_strings() -> None:
    values = ["b", "a", "b", "c", "a", "Zürich"]
    encoded = pa.array(values).dictionary_encode()
    assert pa.types.is_dictionary(encoded.type)
    assert ids(encoded) == ids(pa.array(values))
    # a different dictionary order does not matter
    reordered = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, 2, 1, 3], pa.int8()),
                                               pa.array(["b", "a", "c", "Zürich"]))
    assert ids(reordered) == ids(pa.array(values))


def test_repeating_strings_hash_like_distinct_ones() -> None:
    # long columns whose values repeat hash each distinct value once: the hashes must not change
    words = [f"w{i % 37}" if i % 11 else None for i in range(10_000)]
    for arrow_type, values in ((pa.string(), words), (pa.binary(), [w.encode() if w else None for w in words])):
        column = pa.array(values, arrow_type)
        row_by_row = np.concatenate([column_hash(column.slice(i, 1000)) for i in range(0, len(column), 1000)])
        assert column_hash(column).tolist() == row_by_row.tolist(), arrow_type


def test_binary_types_hash_alike() -> None:
    values = [b"", b"abc", b"\x00\xff"]
    expected = ids(pa.array(values, pa.binary()))
    assert ids(pa.array(values, pa.large_binary())) == expected
    assert ids(pa.array(values, pa.binary_view())) == expected


def test_dates_and_timestamps_of_any_unit_hash_alike() -> None:
    days = [dt.date(1970, 1, 1), dt.date(2024, 2, 29), dt.date(1999, 12, 31)]
    assert ids(pa.array(days, pa.date64())) == ids(pa.array(days, pa.date32()))
    moments = [dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(1990, 6, 1)]
    expected = ids(pa.array(moments, pa.timestamp("us")))
    for unit in ("s", "ms", "ns"):
        assert ids(pa.array(moments, pa.timestamp(unit))) == expected


def test_booleans_hash_like_zero_and_one() -> None:
    assert ids(pa.array([False, True, True])) == ids(pa.array([0, 1, 1]))


def test_unsupported_key_type_is_refused_with_the_type_named() -> None:
    with pytest.raises(TypeError, match="list"):
        column_hash(pa.array([[1], [2]]))


# -- nulls -------------------------------------------------------------------------------------------------


def test_nulls_hash_alike_in_every_type_and_differ_from_zero_and_empty() -> None:
    null_hash = column_hash(pa.array([None], pa.int64())).tolist()[0]
    for t in (pa.int32(), pa.float64(), pa.string(), pa.large_string(), pa.date32(), pa.decimal128(5, 2)):
        assert column_hash(pa.array([None, None], t)).tolist() == [null_hash, null_hash], t
    assert column_hash(pa.array([0, None])).tolist()[0] != null_hash
    assert column_hash(pa.array(["", None])).tolist()[0] != null_hash


def test_null_rows_go_to_one_partition() -> None:
    b = batch(k=pa.array([None, 5, None, 7, None], pa.int64()))
    got = partition_ids(b, ["k"], 32).tolist()
    assert got[0] == got[2] == got[4]
    assert got[1] == ids(pa.array([5]), 32)[0] and got[3] == ids(pa.array([7]), 32)[0]


# -- multi-column keys ------------------------------------------------------------------------------------------


def test_multi_column_key_uses_every_column() -> None:
    a = [1] * 200
    b = list(range(200))
    got = partition_ids(batch(a=a, b=b), ["a", "b"], 16)
    assert len(set(got.tolist())) > 8  # b alone spreads the rows although a is constant
    # equal (a, b) pairs agree, whatever the widths
    again = partition_ids(batch(a=pa.array(a, pa.int16()), b=pa.array(b, pa.uint32())), ["a", "b"], 16)
    assert again.tolist() == got.tolist()


def test_multi_column_key_order_and_value_matter() -> None:
    b = batch(x=list(range(1000)), y=[v * 7 + 3 for v in range(1000)])
    xy = partition_ids(b, ["x", "y"], 64)
    yx = partition_ids(b, ["y", "x"], 64)
    assert (xy != yx).mean() > 0.5
    assert (partition_ids(b, ["x"], 64) != xy).mean() > 0.5


def test_mixed_type_multi_column_key() -> None:
    rows = batch(word=["a", "b", "a", "c", "a"], day=pa.array([dt.date(2024, 1, d) for d in (1, 1, 1, 2, 3)]),
                 n=pa.array([1, 2, 1, 3, 1], pa.int8()))
    got = partition_ids(rows, ["word", "day", "n"], 1000).tolist()
    assert got[0] == got[2]
    assert len({got[0], got[1], got[3], got[4]}) == 4


# -- rows of one key together, distribution ----------------------------------------------------------------------


def test_every_row_of_a_key_lands_in_one_partition() -> None:
    rng = np.random.default_rng(3)
    words = np.array([f"w{i}" for i in range(300)])[rng.integers(0, 300, 20_000)]
    got = partition_ids(batch(k=pa.array(words)), ["k"], 12)
    for word in np.unique(words):
        assert len(set(got[words == word].tolist())) == 1, word


@pytest.mark.parametrize("values", [
    pa.array(np.arange(10_000)),
    pa.array(np.arange(10_000) * 8),  # multiples of the partition count must not pile up
    pa.array([f"key-{i}" for i in range(10_000)]),
    pa.array(np.arange(10_000) + 0.5),
])
def test_distribution_is_not_degenerate(values: pa.Array) -> None:
    got = ids(values, 8)
    shares = np.bincount(got, minlength=8) / len(got)
    assert shares.min() >= 0.08 and shares.max() <= 0.17, shares


# -- split_by_partition ---------------------------------------------------------------------------------------


def test_split_by_partition_preserves_all_rows() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    b = batch(k=rng.integers(0, 100, n), row=np.arange(n), s=[f"v{i}" for i in range(n)])
    parts = split_by_partition(b, ["k"], 7)
    assert [p for p, _ in parts] == sorted({p for p, _ in parts})
    assert sum(part.num_rows for _, part in parts) == n
    seen = []
    for p, part in parts:
        assert part.num_rows > 0
        assert part.schema == b.schema
        assert set(partition_ids(part, ["k"], 7).tolist()) == {p}
        rows = part.column("row").to_pylist()
        assert rows == sorted(rows)  # the order within a partition is kept
        assert part.column("s").to_pylist() == [f"v{r}" for r in rows]  # columns stay aligned
        seen.extend(rows)
    assert sorted(seen) == list(range(n))


def test_split_by_partition_skips_empty_partitions_and_empty_batches() -> None:
    b = batch(k=["same"] * 10)
    parts = split_by_partition(b, ["k"], 50)
    assert len(parts) == 1 and parts[0][1].num_rows == 10
    assert parts[0][0] == ids(pa.array(["same"]), 50)[0]
    assert split_by_partition(b.slice(0, 0), ["k"], 50) == []
    assert split_by_partition(b.slice(0, 0), [], 1) == []
    whole = split_by_partition(b, [], 1)
    assert len(whole) == 1 and whole[0][0] == 0 and whole[0][1].equals(b)


@pytest.mark.parametrize("width", [1, 2])
def test_one_and_two_byte_values_hash_as_by_siphash(width: int) -> None:
    """They are looked up in a table instead of hashed one by one: the table must hold the same hashes."""
    rng = np.random.default_rng(width)
    raw = [bytes(rng.integers(0, 256, width, dtype=np.uint8)) for _ in range(5000)]
    expected = pd.util.hash_array(np.array(raw, dtype=object), categorize=False)
    binary = pa.array(raw, pa.binary())
    assert (column_hash(binary) == expected).all()
    assert (column_hash(binary.slice(7, 100)) == expected[7:107]).all()  # an array with an offset
    text = pa.array(["Y", "N", "A", "R", "é"] * 100)  # 1 byte each, but "é" is 2: the general path
    assert (column_hash(text) == pd.util.hash_array(np.array(text.to_pylist(), dtype=object),
                                                    categorize=False)).all()
    flags = pa.array(["Y", "N", "A", "R"] * 100)
    assert (column_hash(flags) == pd.util.hash_array(np.array(flags.to_pylist(), dtype=object),
                                                     categorize=False)).all()


# -- SQL GROUP BY equality (docs/partitioning.md) ----------------------------------------------------------------

PARTITION_COUNTS = st.integers(2, 64)
NAN_BITS = st.one_of(st.just(0x7FF8000000000000), st.just(0xFFF8000000000000),
                     st.integers(1, 2**52 - 1).map(lambda m: 0x7FF0000000000000 | m),
                     st.integers(1, 2**52 - 1).map(lambda m: 0xFFF0000000000000 | m))
UNITS = ("s", "ms", "us", "ns")
NANOS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
settings_ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same_partition(columns: list[pa.Array], partitions: int) -> None:
    """Every column (of equal values, row by row) puts each row in the same partition as the first column."""
    first = ids(columns[0], partitions)
    for column in columns[1:]:
        assert ids(column, partitions) == first, column.type


@settings_
@given(st.lists(NAN_BITS, min_size=1, max_size=20), PARTITION_COUNTS)
def test_every_nan_is_one_group(bits: list[int], partitions: int) -> None:
    nans = np.array(bits, np.uint64).view(np.float64)
    float32 = np.array([b >> 32 for b in bits], np.uint32).view(np.float32)  # float32 NaNs, payloads kept
    assert np.isnan(nans).all() and np.isnan(float32).all()
    canonical = pa.array([float("nan")] * len(bits))
    same_partition([canonical, pa.array(nans), pa.array(float32), pa.array(nans.astype(np.float16))], partitions)


@settings_
@given(st.lists(st.sampled_from([0.0, -0.0]), min_size=1, max_size=10), PARTITION_COUNTS)
def test_minus_zero_is_zero(zeros: list[float], partitions: int) -> None:
    same_partition([pa.array([0] * len(zeros)), pa.array(zeros), pa.array(zeros, pa.float32()),
                    pa.array([decimal.Decimal("-0.00")] * len(zeros), pa.decimal128(5, 2))], partitions)


@st.composite
def instants(draw: st.DrawFn) -> tuple[int, int]:
    """(seconds, nanoseconds) of an instant that timestamp[ns] can hold, often a round one."""
    ns = draw(st.integers(-(2**63) + 1, 2**63 - 1))
    unit = draw(st.sampled_from([1, 1000, 10**6, 10**9]))
    ns = ns // unit * unit if ns >= 0 else -(-ns // unit * unit)  # toward zero: stays in range
    return divmod(ns, 10**9)


@settings_
@given(st.lists(instants(), min_size=1, max_size=20), st.sampled_from([None, "UTC", "Europe/Paris"]),
       PARTITION_COUNTS)
def test_the_same_instant_in_every_unit_is_one_group(moments: list[tuple[int, int]], tz: str | None,
                                                     partitions: int) -> None:
    nanos = [s * 10**9 + n for s, n in moments]
    columns = [pa.array(nanos, pa.timestamp("ns", tz))]
    for unit in UNITS[:-1]:  # coarser units, where every instant of the list is a whole number of units
        if all(n % NANOS[unit] == 0 for n in nanos):
            columns.append(pa.array([n // NANOS[unit] for n in nanos], pa.timestamp(unit, tz)))
            columns.append(pa.array([n // NANOS[unit] for n in nanos], pa.timestamp(unit)))
    same_partition(columns, partitions)
    durations = [pa.array(nanos, pa.duration("ns"))] + [
        pa.array([n // NANOS[u] for n in nanos], pa.duration(u)) for u in UNITS[:-1]
        if all(n % NANOS[u] == 0 for n in nanos)]
    same_partition(durations, partitions)


@settings_
@given(st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=20))
def test_timestamps_keep_their_full_precision(nanos: list[int]) -> None:
    """Sub-microsecond timestamps hash (they failed: 'Casting from timestamp to timestamp would lose data')."""
    column = pa.array(nanos, pa.timestamp("ns"))
    hashed = column_hash(column).tolist()
    assert hashed == [reference_instant(*divmod(n, 10**9)) for n in nanos]
    assert column_hash(pa.array([n + 1 for n in nanos], pa.timestamp("ns"))).tolist() != hashed


@settings_
@given(st.lists(st.integers(0, 86_400 * 10**9 - 1), min_size=1, max_size=20), PARTITION_COUNTS)
def test_the_same_time_of_day_in_every_unit_is_one_group(nanos: list[int], partitions: int) -> None:
    columns = [pa.array(nanos, pa.time64("ns"))]
    if all(n % 1000 == 0 for n in nanos):
        columns.append(pa.array([n // 1000 for n in nanos], pa.time64("us")))
    for unit in ("ms", "s"):
        if all(n % NANOS[unit] == 0 for n in nanos):
            columns.append(pa.array([n // NANOS[unit] for n in nanos], pa.time32(unit)))
    same_partition(columns, partitions)


@settings_
@given(st.lists(st.integers(-(10**17), 10**17), min_size=1, max_size=20), st.integers(0, 8), PARTITION_COUNTS)
def test_the_same_decimal_at_every_scale_and_width_is_one_group(unscaled: list[int], scale: int,
                                                                partitions: int) -> None:
    values = [decimal.Decimal(u).scaleb(-scale) for u in unscaled]
    columns = [pa.array(values, pa.decimal128(38, scale))]
    for extra in (1, 3, 12):  # trailing zeros: 1.5 == 1.50 == 1.500000000000
        columns.append(pa.array(values, pa.decimal128(38, scale + extra)))
        columns.append(pa.array(values, pa.decimal256(76, scale + extra)))
    columns.append(pa.array(values, pa.decimal256(60, scale + 30)))  # magnitudes beyond 64 bits
    if all(abs(u) < 10**17 for u in unscaled):
        columns.append(pa.array(values, pa.decimal64(18, scale)))
    if all(abs(u) < 10**8 for u in unscaled):
        columns.append(pa.array(values, pa.decimal32(9, scale)))
    same_partition(columns, partitions)


@settings_
@given(st.lists(st.integers(-(2**63), 2**64 - 1), min_size=1, max_size=20), PARTITION_COUNTS)
def test_integers_integral_floats_and_decimals_are_one_group(values: list[int], partitions: int) -> None:
    columns = [pa.array([decimal.Decimal(v) for v in values], pa.decimal128(38, 0)),
               pa.array([decimal.Decimal(v) for v in values], pa.decimal256(40, 4)),
               pa.array([decimal.Decimal(v) for v in values], pa.decimal128(38, 0)).cast(pa.decimal128(38, 3))]
    if all(v < 2**63 for v in values):
        columns.append(pa.array(values, pa.int64()))
    if all(v >= 0 for v in values):
        columns.append(pa.array(values, pa.uint64()))
    if all(abs(v) < 2**53 for v in values):
        columns.append(pa.array([float(v) for v in values], pa.float64()))
    if all(abs(v) < 2**31 for v in values):
        columns.append(pa.array(values, pa.int32()))
    same_partition(columns, partitions)
    exact = [float(v) for v in values if float(v) == v and float(v) < 2**64]  # big floats that are integers
    if exact:
        same_partition([pa.array(exact), pa.array([decimal.Decimal(int(f)) for f in exact], pa.decimal128(38, 0))],
                       partitions)


TEXT = st.lists(st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["", "a", "Zürich", "ab"])),
                min_size=1, max_size=30)


@settings_
@given(TEXT, PARTITION_COUNTS)
def test_dictionary_view_and_large_strings_are_their_plain_value(values: list[str | None], partitions: int) -> None:
    plain = pa.array(values, pa.string())
    raw = [None if v is None else v.encode() for v in values]
    same_partition([plain, plain.dictionary_encode(), pa.array(values, pa.large_string()),
                    pa.array(values, pa.string_view()), pa.array(raw, pa.binary()), pa.array(raw, pa.large_binary()),
                    pa.array(raw, pa.binary_view()), pa.array(raw, pa.binary()).dictionary_encode(),
                    pa.array(values, pa.large_string()).dictionary_encode(), pc.run_end_encode(plain)], partitions)
    long = pa.array(values * (DISTINCT_SAMPLE // len(values) + 2), pa.string())  # the sampled dictionary path
    assert ids(long, partitions)[:len(values)] == ids(plain, partitions)


@settings_
@given(st.lists(st.one_of(st.none(), st.binary(min_size=3, max_size=3)), min_size=1, max_size=30), PARTITION_COUNTS)
def test_fixed_size_binary_is_its_bytes(values: list[bytes | None], partitions: int) -> None:
    same_partition([pa.array(values, pa.binary()), pa.array(values, pa.binary(3)),
                    pa.array(values, pa.binary(3)).dictionary_encode()], partitions)


@settings_
@given(st.lists(st.one_of(st.none(), st.integers(-100, 100)), min_size=1, max_size=30), PARTITION_COUNTS)
def test_dictionaries_of_numbers_are_their_plain_value(values: list[int | None], partitions: int) -> None:
    plain = pa.array(values, pa.int64())
    same_partition([plain, plain.dictionary_encode(), pa.array(values, pa.int16()).dictionary_encode(),
                    pa.array(values, pa.float64()).dictionary_encode()], partitions)


@settings_
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-5, 5)), st.one_of(st.none(), st.sampled_from(["", "x"])),
                          st.one_of(st.none(), st.sampled_from([0.0, -0.0, float("nan"), 1.5]))),
                min_size=1, max_size=40), PARTITION_COUNTS)
def test_multi_column_keys_with_nulls_group_like_sql(rows: list[tuple], partitions: int) -> None:
    a, b, c = (list(column) for column in zip(*rows, strict=True))
    plain = partition_ids(batch(a=pa.array(a, pa.int64()), b=pa.array(b, pa.string()), c=pa.array(c, pa.float64())),
                          ["a", "b", "c"], partitions)
    other = partition_ids(batch(a=pa.array(a, pa.int8()), b=pa.array(b, pa.large_string()).dictionary_encode(),
                                c=pa.array(c, pa.float32())), ["a", "b", "c"], partitions)
    assert other.tolist() == plain.tolist()
    groups: dict[tuple, set[int]] = {}
    for row, p in zip(rows, plain.tolist(), strict=True):
        a_, b_, c_ = row
        canonical = (a_, b_, "nan" if c_ is not None and c_ != c_ else (0.0 if c_ == 0 else c_))
        groups.setdefault(canonical, set()).add(p)
    assert all(len(ps) == 1 for ps in groups.values()), groups


@pytest.mark.parametrize("column", [
    pa.array([None, None], pa.int64()), pa.array([None, None], pa.string()), pa.array([None, None], pa.null()),
    pa.array([None, None], pa.bool_()), pa.array([None, None], pa.float32()), pa.array([None], pa.decimal256(50, 3)),
    pa.array([None], pa.time64("ns")), pa.array([None], pa.timestamp("ns", "UTC")), pa.array([None], pa.binary(4)),
    pa.array([None], pa.date64()), pa.array([None], pa.duration("s")),
    pa.array([None, None], pa.dictionary(pa.int8(), pa.string())),  # an empty dictionary: every index null
    pa.DictionaryArray.from_arrays(pa.array([0, 1]), pa.array([None, None], pa.string())),  # null dictionary values
], ids=str)
def test_null_is_one_constant_in_every_type(column: pa.Array) -> None:
    assert column_hash(column).tolist() == [int(NULL_HASH)] * len(column)


def test_null_is_not_empty_zero_or_false() -> None:
    """Deterministic: these values' hashes are not the NULL constant, so NULL is a group of its own."""
    for value in (pa.array([""]), pa.array([b""]), pa.array([0]), pa.array([False]), pa.array([0.0]),
                  pa.array([decimal.Decimal(0)], pa.decimal128(3, 1)), pa.array([0], pa.timestamp("ns")),
                  pa.array([0], pa.time32("s")), pa.array([dt.date(1970, 1, 1)])):
        assert column_hash(value).tolist() != [int(NULL_HASH)], value.type


def test_an_all_null_key_column_is_partitioned() -> None:
    """A program writing only NULLs gives a column of type null ('cannot partition by a column of type null')."""
    rows = batch(k=pa.array([None] * 5, pa.null()), v=[1, 2, 3, 4, 5])
    parts = split_by_partition(rows, ["k"], 16)
    assert len(parts) == 1 and parts[0][1].num_rows == 5
    assert parts[0][0] == ids(pa.array([None], pa.string()), 16)[0]  # the partition of NULL of any type


EVERY_TYPE = [
    pa.array([1, None], pa.int8()), pa.array([1], pa.uint64()), pa.array([1.5], pa.float16()),
    pa.array([1.5], pa.float32()), pa.array([True, None]), pa.array([None], pa.null()),
    pa.array([decimal.Decimal("1.5")], pa.decimal32(5, 2)), pa.array([decimal.Decimal("1.5")], pa.decimal64(5, 2)),
    pa.array([decimal.Decimal("1.5")], pa.decimal128(5, 2)), pa.array([decimal.Decimal("1.5")], pa.decimal256(50, 2)),
    pa.array([decimal.Decimal("1500")], pa.decimal128(5, -2)),
    pa.array([dt.date(2024, 1, 1)], pa.date32()), pa.array([dt.date(2024, 1, 1)], pa.date64()),
    *(pa.array([1], pa.timestamp(u)) for u in UNITS), pa.array([1], pa.timestamp("ns", "Asia/Tokyo")),
    pa.array([1], pa.time32("s")), pa.array([1], pa.time32("ms")), pa.array([1], pa.time64("us")),
    pa.array([1], pa.time64("ns")), *(pa.array([1], pa.duration(u)) for u in UNITS),
    pa.array(["a"]), pa.array(["a"], pa.large_string()), pa.array(["a"], pa.string_view()),
    pa.array([b"a"]), pa.array([b"a"], pa.large_binary()), pa.array([b"a"], pa.binary_view()),
    pa.array([b"ab"], pa.binary(2)), pa.array(["a"]).dictionary_encode(), pa.array([1.5]).dictionary_encode(),
    pa.array([b"0123456789abcdef"], pa.uuid()) if hasattr(pa, "uuid") else pa.array([b"x"]),
]


@pytest.mark.parametrize("column", EVERY_TYPE, ids=lambda c: str(c.type))
def test_every_key_type_is_accepted(column: pa.Array) -> None:
    got = partition_ids(batch(k=column), ["k"], 7)
    assert len(got) == len(column) and ((got >= 0) & (got < 7)).all()
    assert column_hash(column.slice(0, 0)).tolist() == []


@pytest.mark.parametrize("arrow_type", [pa.decimal32(5, 2), pa.decimal128(5, 2), pa.decimal256(50, 2)], ids=str)
def test_an_empty_decimal_array_without_buffers_hashes(arrow_type: pa.DataType) -> None:
    assert column_hash(pa.Array.from_buffers(arrow_type, 0, [None, None])).tolist() == []


@pytest.mark.parametrize("column", [
    pa.array([[1]]), pa.array([{"a": 1}]), pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
    pa.array([pa.MonthDayNano([1, 2, 3])], pa.month_day_nano_interval()),
], ids=lambda c: str(c.type))
@pytest.mark.parametrize("partitions", [1, 4])
def test_unsupported_key_types_name_the_column_and_type(column: pa.Array, partitions: int) -> None:
    with pytest.raises(UnsupportedKeyError, match=r"key column 'k'.*" + re.escape(str(column.type))):
        split_by_partition(batch(k=column, v=[1]), ["k"], partitions)


def test_an_unsupported_key_fails_the_task_without_retries(tmp_path: Path) -> None:
    program = ("import os, pyarrow as pa, pyarrow.parquet as pq; "
               "pq.write_table(pa.table({'k': [[1], [2]], 'v': [1, 2]}), os.environ['MR_OUTPUT'])")
    spec = TaskSpec(run_id="r", job="j", stage="s", task=0, attempt=1, store=str(tmp_path / "store"), inputs=[],
                    command=[sys.executable, "-c", program], key=["k"], partitions=4)
    result = run_task(spec, str(tmp_path / "work"))
    assert result.status == "error" and not result.retryable
    assert "key column 'k'" in result.error and "type list<" in result.error


# -- the contract in pure Python (docs/partitioning.md) --------------------------------------------------------


MASK = 2**64 - 1


def reference_mix(x: int) -> int:
    x &= MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def reference_int(v: int) -> int:
    return reference_mix(v & MASK)


def reference_float(f: float) -> int:
    if math.isfinite(f) and f == int(f) and -(2**63) <= int(f) < 2**64:
        return reference_int(int(f))
    bits = 0x7FF8000000000000 if math.isnan(f) else struct.unpack("<Q", struct.pack("<d", f))[0]
    return reference_mix(bits ^ 0x5555)


def reference_decimal(d: decimal.Decimal) -> int:
    if d == d.to_integral_value() and -(2**63) <= d < 2**64:
        return reference_int(int(d))
    sign, digits, exponent = d.as_tuple()
    magnitude = int("".join(map(str, digits)))
    while magnitude % 10 == 0:
        magnitude, exponent = magnitude // 10, exponent + 1
    h = reference_mix(reference_mix((exponent & MASK) ^ 0xD3C1A7E5B9F20461) ^ sign)
    for j in range(4):
        h = reference_mix(h * 31 + ((magnitude >> (64 * j)) & MASK))
    return h


def reference_instant(seconds: int, nanos: int) -> int:
    micros = seconds * 10**6 + nanos // 1000
    if nanos % 1000 == 0 and -(2**63) <= micros < 2**63:
        return reference_int(micros)
    return reference_mix(reference_mix((seconds & MASK) ^ 0x7E3A0C3D5E2B1F49) + nanos)


@settings_
@given(st.lists(st.one_of(st.floats(), st.floats(width=32), st.integers(-(2**70), 2**70).map(float),
                          st.sampled_from([2.0**63, -(2.0**63), 2.0**64, 2.0**64 - 2048, -0.0])), min_size=1))
def test_floats_follow_the_documented_rule(values: list[float]) -> None:
    assert column_hash(pa.array(values, pa.float64())).tolist() == [reference_float(v) for v in values]


DECIMAL_TYPES = [pa.decimal32(9, 3), pa.decimal64(18, 0), pa.decimal128(38, 10), pa.decimal128(38, 38),
                 pa.decimal128(20, -4), pa.decimal256(76, 0), pa.decimal256(76, 40), pa.decimal256(60, -10)]


@settings_
@given(st.sampled_from(DECIMAL_TYPES), st.data())
def test_decimals_follow_the_documented_rule(arrow_type: pa.DataType, data: st.DataObject) -> None:
    limit = 10**arrow_type.precision - 1
    unscaled = data.draw(st.lists(st.one_of(
        st.integers(-limit, limit), st.integers(-1000, 1000),
        st.tuples(st.integers(-999, 999), st.integers(0, arrow_type.precision - 3)).map(lambda t: t[0] * 10**t[1])),
        min_size=1, max_size=30))
    with decimal.localcontext(decimal.Context(prec=100)):
        values = [decimal.Decimal(u).scaleb(-arrow_type.scale) for u in unscaled]
        expected = [reference_decimal(v) for v in values]
    assert column_hash(pa.array(values, arrow_type)).tolist() == expected


@settings_
@given(st.sampled_from(UNITS), st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=30))
def test_timestamps_follow_the_documented_rule(unit: str, values: list[int]) -> None:
    expected = [reference_instant(*divmod(v * NANOS[unit], 10**9)) for v in values]
    assert column_hash(pa.array(values, pa.timestamp(unit))).tolist() == expected
    assert column_hash(pa.array(values, pa.duration(unit))).tolist() == expected


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_the_extreme_int64_timestamps_follow_the_rule(unit: str) -> None:
    """The smallest int64 (whose absolute value overflows) and the largest, in every unit (found by Hypothesis)."""
    values = [-(2**63), 2**63 - 1, -(2**63) + 1]
    expected = [reference_instant(*divmod(v * NANOS[unit], 10**9)) for v in values]
    assert column_hash(pa.array(values, pa.timestamp(unit))).tolist() == expected


def reference_key(row: list[object]) -> int:
    """The documented hash of a multi-column key of strings/bytes (NULL = None): h = mix(h * 31 + hash(k))."""
    h = 0
    for value in row:
        if value is None:
            hashed = int(NULL_HASH)
        else:
            raw = value.encode() if isinstance(value, str) else value
            hashed = int(pd.util.hash_array(np.array([raw], dtype=object), categorize=False)[0])
        h = reference_mix(h * 31 + hashed)
    return h


SHORT_TEXT = st.text(alphabet=st.sampled_from("AFNORé\0"), min_size=0, max_size=2)


@settings_
@given(st.lists(st.tuples(SHORT_TEXT, SHORT_TEXT, st.binary(max_size=2)), min_size=1, max_size=300),
       st.integers(0, 3), st.sampled_from([["a"], ["c"], ["a", "b"], ["b", "a"], ["a", "c"], ["c", "a", "b"]]),
       st.integers(1, 70), st.booleans())
def test_keys_of_short_strings_follow_the_documented_rule(rows: list[tuple[str, str, bytes]], pattern: int,
                                                          key: list[str], partitions: int, nulls: bool) -> None:
    """Keys of 1- and 2-byte strings are hashed by a table lookup per row (and ids by a mask when the partition
    count is a power of two): both must give the documented hash, also with NULLs and offsets, and mixed widths."""
    if pattern:  # uniform widths (the table's case) more often than Hypothesis would draw them
        rows = [(a[:1] or "A", b[:1] or "N", c[:pattern % 3 + 1].ljust(pattern % 3 + 1, b"x")) for a, b, c in rows]
    columns = {"a": pa.array([r[0] for r in rows], pa.string()), "b": pa.array([r[1] for r in rows], pa.large_string()
                                                                                if pattern == 3 else pa.string()),
               "c": pa.array([None if nulls and i % 7 == 3 else r[2] for i, r in enumerate(rows)], pa.binary())}
    whole = pa.record_batch(list(columns.values()), names=list(columns))
    for b in (whole, whole.slice(1)):
        table = b.to_pydict()
        expected = [reference_key([table[k][i] for k in key]) % partitions for i in range(b.num_rows)]
        assert partition_ids(b, key, partitions).tolist() == expected
        pieces = split_by_partition(b, key, partitions)
        assert sum(p.num_rows for _, p in pieces) == b.num_rows
        for p, piece in pieces:
            assert set(partition_ids(piece, key, partitions).tolist()) == {p}
