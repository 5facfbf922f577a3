"""babelmr.worker.partition: deterministic, type-width-invariant hash partitioning."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from babelmr.worker.partition import column_hash, partition_ids, split_by_partition

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
