"""The engine's external sort (babelmr.worker.sort) against DuckDB's ORDER BY on generated data."""

from __future__ import annotations

import datetime as dt
import math
import struct
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelmr.errors import InputError
from babelmr.job.model import resolve_sort
from babelmr.worker import sort as sorting

NEGATIVE_NAN = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000000))[0]  # a NaN with its sign bit set

TYPES = {
    "i": (pa.int64(), st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1)),
    "u": (pa.uint8(), st.integers(0, 255)),
    "f": (pa.float64(), st.sampled_from([0.0, -0.0, 1.5, -1.5, math.inf, -math.inf, math.nan, NEGATIVE_NAN])
          | st.floats(allow_nan=True, allow_infinity=True)),
    "s": (pa.string(), st.sampled_from(["", "a", "ab", "b", "a\x00", "\x00", "é", "zz"]) | st.text(max_size=4)),
    "t": (pa.timestamp("us"), st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1))),
    "d": (pa.date32(), st.dates(min_value=dt.date(1, 1, 1))),
    "b": (pa.bool_(), st.booleans()),
    "m": (pa.decimal128(12, 2), st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False)),
}


def _value(strategy):
    return st.none() | strategy


@st.composite
def tables(draw):
    rows = draw(st.integers(0, 120))
    names = list(TYPES)
    columns = {n: draw(st.lists(_value(TYPES[n][1]), min_size=rows, max_size=rows)) for n in names}
    table = pa.table({n: pa.array(columns[n], TYPES[n][0]) for n in names})
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    sort = [{"column": c, "order": draw(st.sampled_from(["asc", "desc"])),
             "nulls": draw(st.sampled_from(["last", "last", "first"]))} for c in chosen]
    return table, sort


def _norm(values: list) -> list:
    """Values comparable with ==: NaN equals NaN, -0.0 equals 0.0 (DuckDB's ORDER BY ties them)."""
    out = []
    for v in values:
        if isinstance(v, float):
            v = "NaN" if math.isnan(v) else v + 0.0
        if isinstance(v, Decimal):
            v = str(v)
        out.append(v)
    return out


def _run(table: pa.Table, sort: list[dict[str, str]], folder: Path, run_bytes: int) -> pa.Table:
    batches = list(sorting.sort_batches(table.to_batches(max_chunksize=7), table.schema, sort, str(folder),
                                        run_bytes=run_bytes))
    return pa.Table.from_batches(batches, schema=table.schema)


def _duckdb(table: pa.Table, sort: list[dict[str, str]]) -> pa.Table:
    order = ", ".join(f'"{s["column"]}" {s["order"].upper()} NULLS {s["nulls"].upper()}' for s in sort)
    con = duckdb.connect()
    con.register("t", table)
    return con.sql(f"SELECT * FROM t ORDER BY {order}").to_arrow_table()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables(), st.sampled_from([1, 200, 1 << 30]))
def test_sorted_like_duckdb(tmp_path: Path, case, run_bytes: int) -> None:
    """Runs of one batch (many runs, k-way merge), of a few batches, and one in-memory run all equal DuckDB."""
    table, sort = case
    got = _run(table, sort, tmp_path, run_bytes)
    want = _duckdb(table, sort)
    assert got.num_rows == table.num_rows
    for s in sort:
        assert _norm(got[s["column"]].to_pylist()) == _norm(want[s["column"]].to_pylist()), s
    # the same rows, not only the same sort columns
    key = [n for n in table.column_names]
    assert sorted(map(repr, map(_norm_row, got.select(key).to_pylist()))) == sorted(
        map(repr, map(_norm_row, table.to_pylist())))
    assert list(tmp_path.iterdir()) == []  # the runs are removed


def _norm_row(row: dict) -> list:
    return _norm(list(row.values()))


def test_many_runs_merged_in_passes(tmp_path: Path, tune, monkeypatch: pytest.MonkeyPatch) -> None:
    """More runs than the fan-in: runs are merged into fewer runs first, the order is still DuckDB's."""
    tune(sort_max_fanin=3)
    monkeypatch.setattr(sorting, "OUTPUT_ROWS", 5)
    schema = pa.schema([pa.field("k", pa.int64(), nullable=False), ("s", pa.string())])  # as tpchgen writes
    table = pa.table({"k": pa.array([(i * 7919) % 101 for i in range(400)], pa.int64()),
                      "s": pa.array([str(i % 13) if i % 17 else None for i in range(400)])}, schema=schema)
    sort = resolve_sort([{"column": "s", "order": "desc"}], ["k"])
    got = _run(table, sort, tmp_path, 1)
    want = _duckdb(table, sort)
    assert got.select(["k", "s"]).to_pylist() == want.select(["k", "s"]).to_pylist()


def test_resolve_puts_the_key_first() -> None:
    assert resolve_sort(["ts", {"column": "k", "order": "desc"}], ["k"]) == [
        {"column": "k", "order": "desc", "nulls": "last"}, {"column": "ts", "order": "asc", "nulls": "last"}]
    assert resolve_sort([{"column": "ts", "order": "desc"}], ["a", "b"])[:2] == [
        {"column": "a", "order": "asc", "nulls": "last"}, {"column": "b", "order": "asc", "nulls": "last"}]
    assert resolve_sort(None, ["k"]) is None


def test_missing_or_unordered_column_is_an_input_error(tmp_path: Path) -> None:
    table = pa.table({"k": [1], "l": pa.array([[1]], pa.list_(pa.int64()))})
    with pytest.raises(InputError, match=r"input 'x' has no column\(s\) \['nope'\]"):
        list(sorting.sort_batches(table.to_batches(), table.schema, [{"column": "nope"}], str(tmp_path),
                                  "input 'x'"))
    with pytest.raises(InputError, match="has no order"):
        list(sorting.sort_batches(table.to_batches(), table.schema, [{"column": "l"}], str(tmp_path)))
