"""babelmr.worker.formats: the files a program reads and writes (Parquet, CSV, JSON Lines)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.worker.formats import arrow_schema, arrow_type, open_writer, plain_schema, plain_type, read_batches

TRICKY_STRINGS = ["plain", "a,b,c", 'he said "hi"', "two\nlines", "Zürich ✓ 東京", "", None, "  padded  ", "'single'"]

SCHEMA = pa.schema([
    ("i", pa.int64()),
    ("f", pa.float64()),
    ("s", pa.string()),
    ("m", pa.decimal128(12, 2)),
    ("d", pa.date32()),
    ("b", pa.bool_()),
])


def sample() -> pa.RecordBatch:
    n = len(TRICKY_STRINGS)
    return pa.record_batch([
        pa.array([1, -2, None, 9_007_199_254_740_993, 0, 5, 6, 7, 8], pa.int64()),
        pa.array([1.5, None, -0.25, 1e-9, 2.0, 3.0, 1e300, 0.1, -7.0]),
        pa.array(TRICKY_STRINGS),
        pa.array([Decimal("1.23"), Decimal("-4.50"), None, Decimal("9999999999.99"), Decimal("0.00")] +
                 [Decimal("1.00")] * (n - 5), pa.decimal128(12, 2)),
        pa.array([dt.date(2024, 2, 29), None, dt.date(1970, 1, 1), dt.date(1899, 12, 31)] +
                 [dt.date(2000, 1, 1)] * (n - 4)),
        pa.array([True, False, None] + [True] * (n - 3)),
    ], schema=SCHEMA)


def types_of(schema: pa.Schema) -> dict[str, pa.DataType]:
    return dict(zip(schema.names, schema.types, strict=True))


def write(path: Path, fmt: str, schema: pa.Schema, *batches: pa.RecordBatch) -> Path:
    writer = open_writer(str(path), fmt, schema)
    for b in batches:
        writer.write(b)
    writer.close()
    return path


def read(path: Path, fmt: str, types: dict[str, pa.DataType] | None = None) -> pa.Table:
    batches = list(read_batches(str(path), fmt, types))
    return pa.Table.from_batches(batches) if batches else pa.table({})


# -- round trips ---------------------------------------------------------------------------------------------


def test_parquet_round_trip_is_exact(tmp_path: Path) -> None:
    b = sample()
    path = write(tmp_path / "x.parquet", "parquet", SCHEMA, b, b)
    back = read(path, "parquet")
    assert back.schema == SCHEMA
    assert back.to_pylist() == b.to_pylist() * 2


def test_csv_round_trip_with_declared_types(tmp_path: Path) -> None:
    b = sample()
    path = write(tmp_path / "x.csv", "csv", SCHEMA, b)
    back = read(path, "csv", types_of(SCHEMA))
    assert back.schema == SCHEMA
    got, want = back.to_pylist(), b.to_pylist()
    for row in got + want:  # CSV cannot tell an empty string from a missing one
        row["s"] = row["s"] or None
    assert got == want


def test_csv_quotes_only_what_needs_it(tmp_path: Path) -> None:
    schema = pa.schema([("s", pa.string()), ("n", pa.int64())])
    path = write(tmp_path / "x.csv", "csv", schema, pa.record_batch(
        [pa.array(["a,b", 'q"q', "line\nbreak", "plain"]), pa.array([1, 2, 3, 4])], schema=schema))
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == '"s","n"'
    assert '"a,b",1' in text and '"q""q",2' in text and '"line\nbreak",3' in text
    assert "\nplain,4" in text or '"plain",4' in text


def test_csv_inference_without_types(tmp_path: Path) -> None:
    b = sample()
    back = read(write(tmp_path / "x.csv", "csv", SCHEMA, b), "csv")
    assert back.column("i").type == pa.int64()
    assert back.column("i").to_pylist() == b.column("i").to_pylist()
    assert back.column("d").type == pa.date32()
    assert back.column("s").to_pylist()[:5] == TRICKY_STRINGS[:5]


def test_jsonl_round_trip_with_declared_types(tmp_path: Path) -> None:
    b = sample()
    path = write(tmp_path / "x.jsonl", "jsonl", SCHEMA, b)
    back = read(path, "jsonl", types_of(SCHEMA))
    assert back.schema == SCHEMA
    assert back.to_pylist() == b.to_pylist()


def test_jsonl_is_one_plain_json_object_per_line(tmp_path: Path) -> None:
    b = sample()
    lines = write(tmp_path / "x.jsonl", "jsonl", SCHEMA, b).read_text(encoding="utf-8").splitlines()
    assert len(lines) == b.num_rows
    rows = [json.loads(line) for line in lines]
    assert [r["s"] for r in rows] == TRICKY_STRINGS
    # integers stay integers, exactly, also in a column with nulls (no 1.0, no float rounding)
    assert [r["i"] for r in rows] == b.column("i").to_pylist()
    assert all(isinstance(r["i"], int) for r in rows if r["i"] is not None)
    assert rows[0]["d"] == "2024-02-29" and rows[1]["d"] is None
    assert rows[0]["m"] == pytest.approx(1.23) and rows[2]["m"] is None
    assert [r["b"] for r in rows[:3]] == [True, False, None]
    assert "Zürich ✓ 東京" in lines[4]  # written as UTF-8, not \\u escapes


def test_jsonl_timestamps_round_trip(tmp_path: Path) -> None:
    schema = pa.schema([("t", pa.timestamp("us")), ("n", pa.int32())])
    b = pa.record_batch([pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None]), pa.array([1, 2], pa.int32())],
                        schema=schema)
    back = read(write(tmp_path / "x.jsonl", "jsonl", schema, b), "jsonl", types_of(schema))
    assert back.to_pylist() == b.to_pylist()


def test_jsonl_inference_without_types(tmp_path: Path) -> None:
    schema = pa.schema([("word", pa.string()), ("n", pa.int64())])
    path = tmp_path / "out.jsonl"
    path.write_text('{"word": "a", "n": 1}\n{"word": "b,c", "n": 22}\n', encoding="utf-8")
    back = read(path, "jsonl")
    assert back.schema == schema
    assert back.to_pylist() == [{"word": "a", "n": 1}, {"word": "b,c", "n": 22}]


def test_declared_types_override_inference(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("k,v\n007,1\n010,2\n")
    (tmp_path / "x.jsonl").write_text('{"k": "007", "v": 1}\n{"k": "010", "v": 2}\n')
    types = {"k": pa.string(), "v": pa.float64()}
    for fmt in ("csv", "jsonl"):
        back = read(tmp_path / f"x.{fmt}", fmt, types)
        assert back.column("k").to_pylist() == ["007", "010"], fmt
        assert back.column("v").type == pa.float64(), fmt


def test_several_batches_and_many_rows(tmp_path: Path) -> None:
    schema = pa.schema([("n", pa.int64())])
    batches = [pa.record_batch([pa.array(range(i * 50_000, (i + 1) * 50_000))], schema=schema) for i in range(3)]
    for fmt in ("parquet", "csv", "jsonl"):
        back = read(write(tmp_path / f"x.{fmt}", fmt, schema, *batches), fmt, {"n": pa.int64()})
        assert back.column("n").to_pylist() == list(range(150_000)), fmt


# -- empty files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_empty_file_gives_no_batches(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"empty.{fmt}"
    path.write_bytes(b"")
    assert list(read_batches(str(path), fmt, None)) == []
    assert list(read_batches(str(path), fmt, {"a": pa.int64()})) == []


def test_writers_of_no_rows(tmp_path: Path) -> None:
    schema = pa.schema([("a", pa.int64()), ("s", pa.string())])
    back = read(write(tmp_path / "x.parquet", "parquet", schema), "parquet")
    assert back.num_rows == 0
    assert write(tmp_path / "x.jsonl", "jsonl", schema).read_bytes() == b""
    csv_text = write(tmp_path / "x.csv", "csv", schema).read_text()
    assert csv_text.strip() == '"a","s"'
    assert read(tmp_path / "x.csv", "csv").num_rows == 0


# -- type names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("bool", pa.bool_()),
    ("int8", pa.int8()),
    ("int16", pa.int16()),
    ("int32", pa.int32()),
    ("int64", pa.int64()),
    ("uint8", pa.uint8()),
    ("uint64", pa.uint64()),
    ("float32", pa.float32()),
    ("float64", pa.float64()),
    ("string", pa.string()),
    ("binary", pa.binary()),
    ("date32", pa.date32()),
    ("timestamp[s]", pa.timestamp("s")),
    ("timestamp[ms]", pa.timestamp("ms")),
    ("timestamp[us]", pa.timestamp("us")),
    ("timestamp[ns]", pa.timestamp("ns")),
    ("decimal128(12,2)", pa.decimal128(12, 2)),
    ("decimal128(38, 10)", pa.decimal128(38, 10)),
])
def test_arrow_type_names(name: str, expected: pa.DataType) -> None:
    assert arrow_type(name) == expected


def test_arrow_type_rejects_unknown_names() -> None:
    with pytest.raises((ValueError, KeyError)):
        arrow_type("varchar")


def test_arrow_schema() -> None:
    assert arrow_schema(None) is None
    assert arrow_schema({}) is None
    assert arrow_schema({"k": "string", "n": "int64"}) == {"k": pa.string(), "n": pa.int64()}


def test_plain_types() -> None:
    assert plain_type(pa.string_view()) == pa.string()
    assert plain_type(pa.large_string()) == pa.string()
    assert plain_type(pa.binary_view()) == pa.binary()
    assert plain_type(pa.dictionary(pa.int32(), pa.large_string())) == pa.string()
    assert plain_type(pa.int32()) == pa.int32()
    schema = plain_schema(pa.schema([pa.field("a", pa.string_view(), nullable=False), ("b", pa.float32())]))
    assert schema == pa.schema([pa.field("a", pa.string(), nullable=False), ("b", pa.float32())])


def test_parquet_output_with_views_and_dictionaries_reads_plain(tmp_path: Path) -> None:
    """A program may write string views or dictionaries (pyarrow, polars); the partitioner needs plain types."""
    path = tmp_path / "out.parquet"
    words = pa.array(["a", None, "c"])
    pq.write_table(pa.table({"v": words.cast(pa.string_view()), "d": words.dictionary_encode(),
                             "l": words.cast(pa.large_string())}), path)
    (batch,) = read_batches(str(path), "parquet")
    assert batch.schema == pa.schema({"v": pa.string(), "d": pa.string(), "l": pa.string()})
    assert batch.column(0).to_pylist() == ["a", None, "c"]
