"""Files the user program reads and writes: Parquet, CSV and JSON Lines, streamed in record batches."""

from __future__ import annotations

import json
import os
import re
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from babelmr.settings import settings

EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
BATCH_ROWS = 64 * 1024
READ_BLOCK = 16 << 20  # bytes per CSV/JSON block: large blocks make type inference see more rows
# Program output is read through a buffer of this size: a program may write one huge row group, whose column
# chunks pyarrow would otherwise read whole into memory.
OUTPUT_READ_BUFFER = 4 << 20

TYPE_NAMES = ("bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, string, "
              "large_string, binary, large_binary, date32, date64, timestamp[s|ms|us|ns], "
              "timestamp[us, tz=UTC] (an IANA zone or +hh:mm), time32[s|ms], time64[us|ns], duration[s|ms|us|ns], "
              "decimal128(p,s) (p <= 38), decimal256(p,s) (p <= 76)")
_SIMPLE_TYPES = {
    "bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float32": pa.float32(), "float64": pa.float64(), "string": pa.string(), "large_string": pa.large_string(),
    "binary": pa.binary(), "large_binary": pa.large_binary(), "date32": pa.date32(), "date64": pa.date64(),
}
_DECIMAL = re.compile(r"^decimal(128|256)\((\d+), ?(\d+)\)$")
_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, ?tz=([A-Za-z0-9_+/:-]+))?\]$")
_TIME = re.compile(r"^time(?:32\[(s|ms)\]|64\[(us|ns)\])$")
_DURATION = re.compile(r"^duration\[(s|ms|us|ns)\]$")
_OFFSET = re.compile(r"^[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]$")


def _zone(name: str) -> str:
    """``name`` when it is a fixed offset (+01:00) or a time zone the tz database knows."""
    if not _OFFSET.match(name):
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            if not zoneinfo.available_timezones():  # no tz database here (a slim image): the job was checked
                return name
            raise ValueError(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin, "
                             "or an offset such as +01:00") from None
    return name


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a job-file type name such as ``int64``, ``timestamp[us, tz=UTC]`` or ``decimal128(12,2)``.

    Raises ValueError naming the problem and the names babelmr knows.
    """
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    if m := _DECIMAL.match(name):
        bits, precision, scale = int(m[1]), int(m[2]), int(m[3])
        limit = 38 if bits == 128 else 76
        if not 1 <= precision <= limit or scale > precision:
            raise ValueError(f"{name!r}: decimal{bits} needs a precision from 1 to {limit} and a scale no larger "
                             f"than it (1 <= precision <= {limit}, scale <= precision)")
        return (pa.decimal128 if bits == 128 else pa.decimal256)(precision, scale)
    if m := _TIMESTAMP.match(name):
        return pa.timestamp(m[1], tz=_zone(m[2]) if m[2] else None)
    if m := _TIME.match(name):
        return pa.time32(m[1]) if m[1] else pa.time64(m[2])
    if m := _DURATION.match(name):
        return pa.duration(m[1])
    raise ValueError(f"{name!r} is not a type babelmr knows: use one of {TYPE_NAMES}")


def arrow_schema(types: dict[str, str] | None) -> dict[str, pa.DataType] | None:
    return {col: arrow_type(t) for col, t in types.items()} if types else None


def plain_type(t: pa.DataType) -> pa.DataType:
    """The type every format can carry: view and dictionary types become their plain equivalents."""
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return plain_type(t.value_type)
    return t


def plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, plain_type(f.type), f.nullable) for f in schema])


_UNIT_RANK = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 20}  # decimal digits of the widest integer of a bit width


def _finer(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    return a if _UNIT_RANK[a.unit] >= _UNIT_RANK[b.unit] else b


def _pair(a: pa.DataType, b: pa.DataType, is_one: Callable[[pa.DataType], bool],
          is_other: Callable[[pa.DataType], bool]) -> bool:
    """Whether one of ``a``, ``b`` is ``is_one`` and the other ``is_other``."""
    return (is_one(a) and is_other(b)) or (is_other(a) and is_one(b))


def _promote_integers(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    signed_a, signed_b = pa.types.is_signed_integer(a), pa.types.is_signed_integer(b)
    if signed_a == signed_b:
        return a if a.bit_width >= b.bit_width else b
    signed, unsigned = (a, b) if signed_a else (b, a)
    bits = max(signed.bit_width, 2 * unsigned.bit_width)  # a signed type holding every value of both
    return {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}.get(bits)


def _as_decimal(t: pa.DataType) -> tuple[int, int]:
    return (t.precision, t.scale) if pa.types.is_decimal(t) else (_INT_DIGITS[t.bit_width], 0)


def promote(a: pa.DataType, b: pa.DataType, *, text: bool = False) -> pa.DataType | None:
    """The type holding every value of ``a`` and of ``b`` exactly, or None when there is none (a conflict).

    Lossless promotions only: null to anything, wider integers, integers of at most 32 bits to float64,
    float32 to float64, wider decimals, finer time units (same time zone); types are made plain first
    (``plain_type``). With
    ``text`` (types inferred from CSV text, which is parsed again in the result type) also int64 to
    float64 and date32 to timestamp, as pyarrow infers them for one file holding both.
    """
    a, b = plain_type(a), plain_type(b)
    if a == b:
        return a
    if pa.types.is_null(a) or pa.types.is_null(b):
        return b if pa.types.is_null(a) else a
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return _promote_integers(a, b)
    if pa.types.is_floating(a) and pa.types.is_floating(b):
        return a if a.bit_width >= b.bit_width else b
    if (pa.types.is_integer(a) and pa.types.is_floating(b)) or (pa.types.is_floating(a) and pa.types.is_integer(b)):
        whole, real = (a, b) if pa.types.is_integer(a) else (b, a)
        if whole.bit_width <= 32 or text:  # float64 holds every 32-bit integer; CSV text "1" reads as 1.0
            return pa.float64() if whole.bit_width > 16 or real.bit_width == 64 else pa.float32()
        return None
    if (pa.types.is_decimal(a) or pa.types.is_integer(a)) and (pa.types.is_decimal(b) or pa.types.is_integer(b)):
        (pa_, sa), (pb, sb) = _as_decimal(a), _as_decimal(b)
        scale = max(sa, sb)
        precision = max(pa_ - sa, pb - sb) + scale
        wide = pa.types.is_decimal256(a) or pa.types.is_decimal256(b) or precision > 38
        return None if precision > 76 else (pa.decimal256 if wide else pa.decimal128)(precision, scale)
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return _finer(a, b) if a.tz == b.tz else None
    if pa.types.is_duration(a) and pa.types.is_duration(b):
        return _finer(a, b)
    if pa.types.is_time(a) and pa.types.is_time(b):
        return _finer(a, b)
    if pa.types.is_date(a) and pa.types.is_date(b):
        return pa.date64()
    if text and _pair(a, b, pa.types.is_date, pa.types.is_timestamp):
        return b if pa.types.is_timestamp(b) else a
    return None


# CSV files, both directions (the program's input and output, external CSV inputs): an empty UNQUOTED field
# is NULL in a column of any type, a quoted "" is the empty string. pyarrow's CSV writer writes exactly that;
# its reader by default also reads "NA", "null", "NaN", ... as NULL and "" as an empty string that is never
# NULL, which merged NULL with "" and "NaN" with NULL.
def csv_convert_options(types: dict[str, pa.DataType] | None = None,
                        include_columns: list[str] | None = None) -> pacsv.ConvertOptions:
    """How babelmr converts CSV fields: only an empty unquoted field is NULL; ``types`` fix column types."""
    return pacsv.ConvertOptions(
        column_types={c: csv_read_type(t) for c, t in (types or {}).items()},
        include_columns=include_columns or [], include_missing_columns=bool(include_columns),
        null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False)


def csv_read_type(t: pa.DataType) -> pa.DataType:
    """The type pyarrow's CSV reader parses a column declared ``t`` as (then cast to ``t``)."""
    return pa.string() if pa.types.is_decimal256(t) else t  # no CSV conversion to decimal256


def csv_parse_options(columns: int, delimiter: str = ",") -> pacsv.ParseOptions:
    """Parse options for a CSV file of ``columns`` columns.

    A blank line in a one-column file is a NULL value (that is how a CSV writer writes it), so it is kept;
    in a file of several columns it is no row at all and is skipped.
    """
    return pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=columns != 1)


def open_csv(open_stream: Callable[[], object], read_options: pacsv.ReadOptions, delimiter: str = ",",
             types: dict[str, pa.DataType] | None = None, include_columns: list[str] | None = None,
             file_columns: int | None = None) -> pacsv.CSVStreamingReader:
    """A streaming CSV reader under babelmr's NULL convention; ``open_stream`` may be called twice.

    ``file_columns`` is the number of columns of the file when known; else the reader is opened once to
    count them (a one-column file is opened again to keep its blank lines).
    """
    if file_columns is None:
        reader = pacsv.open_csv(open_stream(), read_options=read_options, parse_options=csv_parse_options(2, delimiter),
                                convert_options=csv_convert_options(types))
        if len(reader.schema) != 1 and not include_columns:
            return reader
        file_columns = len(reader.schema)
        reader.close()
    return pacsv.open_csv(open_stream(), read_options=read_options,
                          parse_options=csv_parse_options(file_columns, delimiter),
                          convert_options=csv_convert_options(types, include_columns))


_CSV_CONVERSION = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\S+): invalid value '(.*)'", re.S)


def csv_conversion_error(error: Exception, names: list[str]) -> tuple[str, str, str] | None:
    """(column, type, value) of a CSV conversion error; ``names`` are the file's columns in its order."""
    m = _CSV_CONVERSION.search(str(error))
    if m is None or int(m[1]) >= len(names):
        return None
    return names[int(m[1])], m[2], m[3][:40]


def csv_batches(reader: pacsv.CSVStreamingReader, types: dict[str, pa.DataType] | None) -> Iterator[pa.RecordBatch]:
    """The batches of a CSV reader, with columns read as a stand-in type (``csv_read_type``) cast to ``types``."""
    cast = {c: t for c, t in (types or {}).items() if csv_read_type(t) != t and c in reader.schema.names}
    if not cast:
        yield from reader
        return
    schema = pa.schema([pa.field(f.name, cast.get(f.name, f.type)) for f in reader.schema])
    for batch in reader:
        yield batch.cast(schema)


class BatchWriter(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> None: ...


# The program's input file lives on the task's local disk for one read: write it plain (no compression,
# dictionaries or statistics), about 5x faster to write and 2-3x faster to read than snappy, at about
# 3x the size. BABELMR_PROGRAM_PARQUET_COMPRESSION=lz4 (or zstd, snappy) trades speed for a small /tmp.

class _ParquetWriter:
    def __init__(self, path: str, schema: pa.Schema):
        compression = settings().program_parquet_compression
        plain = compression == "none"
        self._writer = pq.ParquetWriter(path, schema, compression=compression,
                                        use_dictionary=not plain, write_statistics=not plain)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch, row_group_size=1 << 20)

    def close(self) -> None:
        self._writer.close()


class _CsvWriter:
    def __init__(self, path: str, schema: pa.Schema):
        self._writer = pacsv.CSVWriter(path, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


_JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
                 ("\b", "\\b"), ("\f", "\\f")]


def _json_string(column: pa.Array) -> pa.Array:
    """JSON string literals (quoted, escaped) of a string column."""
    for raw, escaped in _JSON_ESCAPES:
        column = pc.replace_substring(column, raw, escaped)
    if pc.any(pc.match_substring_regex(column, "[\\x00-\\x1f]")).as_py():
        for code in [c for c in range(32) if chr(c) not in "\n\r\t\b\f"]:
            column = pc.replace_substring(column, chr(code), f"\\u{code:04x}")
    return pc.binary_join_element_wise('"', column, '"', "")


def _json_values(column: pa.Array) -> pa.Array:
    """The JSON text of each value: exact numbers (shortest round-trip floats), ISO dates, null."""
    t = column.type
    if pa.types.is_null(t):  # a column with no value at all (type null): every value is null
        text = pa.nulls(len(column), pa.string())
    elif pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_decimal(t):
        text = column.cast(pa.string())
    elif pa.types.is_duration(t):  # a count of the type's unit
        text = column.cast(pa.int64()).cast(pa.string())
    elif pa.types.is_floating(t):
        floats = column.cast(pa.float64())
        finite = pc.is_finite(floats)  # JSON has no NaN or infinity: they become null
        text = pc.if_else(finite, floats.cast(pa.string()), pa.scalar(None, pa.string()))
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text = _json_string(column.cast(pa.string()))
    elif pa.types.is_temporal(t):
        text = pc.binary_join_element_wise('"', column.cast(pa.string()), '"', "")
    elif pa.types.is_null(t):
        text = pa.nulls(len(column), pa.string())
    else:
        raise TypeError(f"column type {t} cannot be written as JSON Lines: use parquet as program_format")
    return pc.fill_null(text, "null")


class _JsonLinesWriter:
    """One JSON object per line, built column-wise in Arrow (no per-row Python work)."""

    def __init__(self, path: str, schema: pa.Schema):
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._keys = [json.dumps(name) + ":" for name in schema.names]

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        if not self._keys:
            self._file.write(b"{}\n" * batch.num_rows)
            return
        pieces: list[pa.Array | str] = []
        for i, (key, column) in enumerate(zip(self._keys, batch.columns, strict=True)):
            pieces += [("{" if i == 0 else ",") + key, _json_values(column)]
        lines = pc.binary_join_element_wise(*pieces, "}\n", "")
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
        self._file.write(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])

    def close(self) -> None:
        self._file.close()


def open_writer(path: str, fmt: str, schema: pa.Schema) -> BatchWriter:
    """A writer of record batches into ``path`` in the program format ``fmt``."""
    writers: dict[str, Callable[[str, pa.Schema], BatchWriter]] = {
        "parquet": _ParquetWriter, "csv": _CsvWriter, "jsonl": _JsonLinesWriter}
    return writers[fmt](path, schema)


def _json_read_type(t: pa.DataType) -> pa.DataType:
    """The type pyarrow's JSON reader parses a column declared ``t`` as (then converted to ``t``)."""
    if pa.types.is_date(t) or pa.types.is_time(t):
        return pa.string()  # JSON has no dates or times: ISO strings
    if pa.types.is_duration(t):
        return pa.int64()  # a count of the unit
    return t


def _from_json(column: pa.Array, t: pa.DataType) -> pa.Array:
    if pa.types.is_time(t):  # no cast from string to time: parse as a time of 1970-01-01
        return pc.binary_join_element_wise("1970-01-01 ", column, "").cast(pa.timestamp("ns")).cast(t)
    return column.cast(t)


def _json_batches(reader: pa.RecordBatchReader, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    convert = {c: t for c, t in types.items() if _json_read_type(t) != t}
    for batch in reader:
        if not convert:
            yield batch
            continue
        yield pa.RecordBatch.from_arrays(
            [_from_json(c, convert[n]) if n in convert else c for n, c in zip(batch.schema.names, batch.columns,
                                                                                strict=True)],
            names=batch.schema.names)


def _parquet_batches(f: pq.ParquetFile, plain: pa.Schema) -> Iterator[pa.RecordBatch]:
    with f:
        for group in range(f.num_row_groups):  # one reader over many row groups keeps memory of each it read
            for batch in f.iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
                yield batch if batch.schema == plain else batch.cast(plain)


def open_output(path: str, fmt: str, types: dict[str, pa.DataType] | None = None
                ) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    """A program output file's schema and its record batches, streamed; ``types`` fixes CSV/JSON column types.

    The schema is the file's own (Parquet footer, CSV header with ``types`` or inferred types, JSON's first
    block), also when it holds no rows; None when the file names no column (0 bytes, or no columns).
    """
    if fmt == "parquet":
        f = pq.ParquetFile(path, buffer_size=OUTPUT_READ_BUFFER)
        plain = plain_schema(f.schema_arrow)  # views and dictionaries: the partitioner's kernels lack them
        return (plain if len(plain) else None), _parquet_batches(f, plain)
    if os.path.getsize(path) == 0:
        return None, iter(())
    types = types or {}
    if fmt == "csv":
        try:
            reader = open_csv(lambda: path, pacsv.ReadOptions(block_size=READ_BLOCK), types=types)
        except pa.ArrowInvalid as e:
            if "Empty CSV file" in str(e):  # only blank lines
                return None, iter(())
            raise
        batches = csv_batches(reader, types)
        schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in reader.schema])
    else:
        schema = pa.schema([(c, _json_read_type(t)) for c, t in types.items()]) if types else None
        reader = pajson.open_json(
            path,
            read_options=pajson.ReadOptions(block_size=READ_BLOCK),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
        batches = _json_batches(reader, types)
        schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in reader.schema])
    return (schema if len(schema) else None), batches


def read_batches(path: str, fmt: str, types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream the record batches of a program output file; ``types`` fixes CSV/JSON column types."""
    yield from open_output(path, fmt, types)[1]
