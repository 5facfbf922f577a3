"""babelmr.worker.formats: the files a program reads and writes (Parquet, CSV, JSON Lines)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelmr.job import job_schema
from babelmr.worker.formats import (
    arrow_schema,
    arrow_type,
    open_output,
    open_writer,
    plain_schema,
    plain_type,
    promote,
    read_batches,
)

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
    assert back.to_pylist() == b.to_pylist()  # "" and NULL apart (an empty unquoted field is NULL)


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


# -- NULL in every program format: writer -> program -> reader ---------------------------------------------------

NASTY = st.one_of(st.none(), st.just(""), st.sampled_from(["NA", "null", "NULL", "nan", "N/A", '""', " ", "\"", ",",
                                                           "a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "\\N"]),
                  st.text(max_size=8))


def through_cp(tmp_path: Path, fmt: str, schema: pa.Schema, batch: pa.RecordBatch) -> pa.Table:
    """The batch written as a program's input, copied by a real program (cp), read back as its output."""
    src, out = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    write(src, fmt, schema, batch)
    subprocess.run(["cp", str(src), str(out)], check=True)
    return read(out, fmt, types_of(schema))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fmt=st.sampled_from(["csv", "jsonl"]), one_column=st.booleans())
def test_null_and_empty_string_survive_the_text_formats(tmp_path: Path, data: st.DataObject, fmt: str,
                                                         one_column: bool) -> None:
    """NULL stays NULL and "" stays "" (keys and values), also in a one-column CSV whose NULL is a blank line."""
    n = data.draw(st.integers(1, 12))
    strings = data.draw(st.lists(NASTY, min_size=n, max_size=n))
    if one_column:
        schema = pa.schema([("k", pa.string())])
        batch = pa.record_batch([pa.array(strings, pa.string())], schema=schema)
    else:
        ints = data.draw(st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), min_size=n, max_size=n))
        floats = data.draw(st.lists(st.one_of(st.none(), st.floats(allow_nan=fmt == "csv", width=64)),
                                    min_size=n, max_size=n))
        values = data.draw(st.lists(NASTY, min_size=n, max_size=n))
        schema = pa.schema([("k", pa.string()), ("i", pa.int64()), ("f", pa.float64()), ("v", pa.string())])
        batch = pa.record_batch([pa.array(strings, pa.string()), pa.array(ints, pa.int64()),
                                 pa.array(floats, pa.float64()), pa.array(values, pa.string())], schema=schema)
    back = through_cp(tmp_path, fmt, schema, batch)
    assert back.schema == schema
    # JSON has no NaN or infinity: the JSON Lines writer writes null (documented); CSV keeps them
    want = batch.to_pylist()
    got = back.to_pylist()
    for w in want:
        if fmt == "jsonl" and isinstance(w.get("f"), float) and not math.isfinite(w["f"]):
            w["f"] = None
    assert [json.dumps(r, sort_keys=True) for r in got] == [json.dumps(r, sort_keys=True) for r in want]


def test_csv_null_convention_on_the_wire(tmp_path: Path) -> None:
    """babelmr writes NULL as an empty unquoted field and "" quoted; it reads them back so, inferring types."""
    schema = pa.schema([("s", pa.string()), ("n", pa.int64())])
    path = write(tmp_path / "x.csv", "csv", schema, pa.record_batch(
        [pa.array(["", None, "NA"]), pa.array([1, None, 3])], schema=schema))
    assert path.read_text().splitlines() == ['"s","n"', '"",1', ",", '"NA",3']
    back = read(path, "csv")  # no declared types
    assert back.schema == schema
    assert back.to_pylist() == [{"s": "", "n": 1}, {"s": None, "n": None}, {"s": "NA", "n": 3}]
    (tmp_path / "nan.csv").write_text("f,s\nnan,null\n,\ninf,NaN\n")
    back = read(tmp_path / "nan.csv", "csv")
    assert back.column("s").to_pylist() == ["null", None, "NaN"]
    f = back.column("f").to_pylist()
    assert math.isnan(f[0]) and f[1] is None and f[2] == math.inf


# -- declarable types -------------------------------------------------------------------------------------------------

NEW_TYPES = {
    "tz": ("timestamp[us, tz=UTC]", [dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), None]),
    "berlin": ("timestamp[ns, tz=Europe/Berlin]", [dt.datetime(2024, 7, 2, 3, 4, 5, tzinfo=dt.UTC), None]),
    "offset": ("timestamp[s, tz=+05:30]", [dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), None]),
    "t32": ("time32[ms]", [dt.time(1, 2, 3, 4000), None]),
    "t64": ("time64[us]", [dt.time(23, 59, 59, 999999), None]),
    "d64": ("date64", [dt.date(2024, 2, 29), None]),
    "ls": ("large_string", ["", None]),
    "d256": ("decimal256(50,10)", [Decimal("1234567890123456789012345678901234567890.0123456789"), None]),
    "dur": ("duration[ns]", [dt.timedelta(days=3, microseconds=7), None]),
}


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_declarable_types_round_trip_every_format(tmp_path: Path, fmt: str) -> None:
    types = {c: arrow_type(name) for c, (name, _) in NEW_TYPES.items()}
    schema = pa.schema(list(types.items()))
    batch = pa.record_batch([pa.array(values, types[c]) for c, (_, values) in NEW_TYPES.items()], schema=schema)
    back = through_cp(tmp_path, fmt, schema, batch)
    if fmt == "parquet":  # plain types (large_string as string); Parquet has no date64 and no timestamp[s]
        schema = plain_schema(schema).set(5, pa.field("d64", pa.date32()))
        schema = schema.set(2, pa.field("offset", pa.timestamp("ms", tz="+05:30")))
        batch = batch.cast(schema)
    assert back.schema == schema
    assert back.equals(pa.Table.from_batches([batch]))


@pytest.mark.parametrize(("name", "expected"), [
    ("timestamp[us, tz=UTC]", pa.timestamp("us", tz="UTC")),
    ("timestamp[ns,tz=Europe/Berlin]", pa.timestamp("ns", tz="Europe/Berlin")),
    ("timestamp[ms, tz=-03:00]", pa.timestamp("ms", tz="-03:00")),
    ("time32[s]", pa.time32("s")),
    ("time64[ns]", pa.time64("ns")),
    ("duration[ms]", pa.duration("ms")),
    ("date64", pa.date64()),
    ("large_string", pa.large_string()),
    ("large_binary", pa.large_binary()),
    ("decimal256(76,0)", pa.decimal256(76, 0)),
])
def test_more_type_names(name: str, expected: pa.DataType) -> None:
    assert arrow_type(name) == expected


@pytest.mark.parametrize(("name", "says"), [
    ("varchar", "not a type babelmr knows"),
    ("double", "not a type babelmr knows"),
    ("timestamp[us, tz=Mars/Olympus]", "unknown time zone 'Mars/Olympus'"),
    ("time32[us]", "not a type babelmr knows"),
    ("decimal128(39,2)", "precision <= 38"),
    ("decimal128(5,6)", "scale <= precision"),
])
def test_unknown_type_names_say_why(name: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as err:
        arrow_type(name)
    if "babelmr knows" in says:
        assert "timestamp[us, tz=UTC]" in str(err.value)  # the message lists what is known


def test_every_name_the_job_schema_allows_is_known() -> None:
    """The job schema's type_name pattern and arrow_type accept the same names."""
    pattern = re.compile(job_schema()["$defs"]["type_name"]["pattern"])
    names = ["bool", "int8", "uint64", "float32", "string", "large_string", "binary", "large_binary", "date32",
             "date64", "timestamp[s]", "timestamp[us, tz=UTC]", "timestamp[ns,tz=America/New_York]",
             "timestamp[ms, tz=+01:00]", "time32[s]", "time32[ms]", "time64[us]", "time64[ns]", "duration[s]",
             "duration[ns]", "decimal128(12,2)", "decimal128(38, 10)", "decimal256(40,5)"]
    for name in names:
        assert pattern.match(name), name
        arrow_type(name)
    for bad in ["varchar", "timestamp[us, tz=UTC] ", "time64[s]", "decimal64(3,1)", "timestamp[us, tz=]"]:
        assert not pattern.match(bad), bad


# -- lossless promotion --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "text", "expected"), [
    (pa.int32(), pa.int64(), False, pa.int64()),
    (pa.uint32(), pa.int32(), False, pa.int64()),
    (pa.uint8(), pa.int8(), False, pa.int16()),
    (pa.uint64(), pa.int64(), False, None),
    (pa.null(), pa.string(), False, pa.string()),
    (pa.date32(), pa.null(), False, pa.date32()),
    (pa.int32(), pa.float64(), False, pa.float64()),
    (pa.int16(), pa.float32(), False, pa.float32()),
    (pa.int64(), pa.float64(), False, None),  # above 2**53 a float64 rounds
    (pa.int64(), pa.float64(), True, pa.float64()),  # CSV text: as pyarrow infers one file holding both
    (pa.float32(), pa.float64(), False, pa.float64()),
    (pa.string(), pa.int64(), False, None),
    (pa.string(), pa.int64(), True, None),
    (pa.bool_(), pa.int64(), False, None),
    (pa.decimal128(10, 2), pa.decimal128(12, 4), False, pa.decimal128(12, 4)),
    (pa.decimal128(38, 0), pa.decimal128(38, 10), False, pa.decimal256(48, 10)),
    (pa.int32(), pa.decimal128(5, 2), False, pa.decimal128(12, 2)),
    (pa.timestamp("s"), pa.timestamp("ns"), False, pa.timestamp("ns")),
    (pa.timestamp("s", tz="UTC"), pa.timestamp("s"), False, None),
    (pa.date32(), pa.timestamp("s"), False, None),
    (pa.date32(), pa.timestamp("s"), True, pa.timestamp("s")),
    (pa.time32("ms"), pa.time64("us"), False, pa.time64("us")),
    (pa.string(), pa.large_string(), False, pa.string()),  # plain types: what every format carries
    (pa.dictionary(pa.int32(), pa.string()), pa.string(), False, pa.string()),
])
def test_promote(a: pa.DataType, b: pa.DataType, text: bool, expected: pa.DataType | None) -> None:
    assert promote(a, b, text=text) == expected
    assert promote(b, a, text=text) == expected


# -- empty outputs keep what they say ------------------------------------------------------------------------------


def test_open_output_schema_of_empty_files(tmp_path: Path) -> None:
    schema = pa.schema([("k", pa.int32()), ("t", pa.timestamp("ns", tz="UTC")), ("m", pa.decimal128(9, 3))])
    pq.write_table(schema.empty_table(), tmp_path / "out.parquet")
    got, batches = open_output(str(tmp_path / "out.parquet"), "parquet")
    assert got == schema and list(batches) == []
    (tmp_path / "out.csv").write_text("k,v\n")
    got, _ = open_output(str(tmp_path / "out.csv"), "csv", {"k": pa.int64()})
    assert got == pa.schema([("k", pa.int64()), ("v", pa.null())])
    for fmt in ("csv", "jsonl"):
        (tmp_path / f"zero.{fmt}").write_bytes(b"")
        assert open_output(str(tmp_path / f"zero.{fmt}"), fmt, {"k": pa.int64()})[0] is None
    pq.write_table(pa.table({}), tmp_path / "none.parquet")
    assert open_output(str(tmp_path / "none.parquet"), "parquet")[0] is None
