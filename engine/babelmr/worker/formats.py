"""Files the user program reads and writes: Parquet, CSV and JSON Lines, streamed in record batches."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
BATCH_ROWS = 64 * 1024
READ_BLOCK = 16 << 20  # bytes per CSV/JSON block: large blocks make type inference see more rows
# Program output is read through a buffer of this size: a program may write one huge row group, whose column
# chunks pyarrow would otherwise read whole into memory.
OUTPUT_READ_BUFFER = 4 << 20

_DECIMAL = re.compile(r"^decimal128\((\d+), ?(\d+)\)$")
_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)\]$")


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a job-file type name such as ``int64`` or ``decimal128(12,2)``."""
    if m := _DECIMAL.match(name):
        return pa.decimal128(int(m[1]), int(m[2]))
    if m := _TIMESTAMP.match(name):
        return pa.timestamp(m[1])
    return {"string": pa.string(), "binary": pa.binary(), "date32": pa.date32(), "bool": pa.bool_()}.get(
        name) or pa.type_for_alias(name)


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


class BatchWriter(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> None: ...


# The program's input file lives on the task's local disk for one read: write it plain (no compression,
# dictionaries or statistics), about 5x faster to write and 2-3x faster to read than snappy, at about
# 3x the size. BABELMR_PROGRAM_PARQUET_COMPRESSION=lz4 (or zstd, snappy) trades speed for a small /tmp.
PROGRAM_PARQUET_COMPRESSION = os.environ.get("BABELMR_PROGRAM_PARQUET_COMPRESSION", "none")


class _ParquetWriter:
    def __init__(self, path: str, schema: pa.Schema):
        plain = PROGRAM_PARQUET_COMPRESSION == "none"
        self._writer = pq.ParquetWriter(path, schema, compression=PROGRAM_PARQUET_COMPRESSION,
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
    elif pa.types.is_boolean(t) or pa.types.is_integer(t):
        text = column.cast(pa.string())
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        floats = column.cast(pa.float64())
        finite = pc.is_finite(floats)  # JSON has no NaN or infinity: they become null
        text = pc.if_else(finite, column.cast(pa.string()) if pa.types.is_decimal(t) else floats.cast(pa.string()),
                          pa.scalar(None, pa.string()))
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text = _json_string(column.cast(pa.string()))
    elif pa.types.is_temporal(t):
        text = pc.binary_join_element_wise('"', column.cast(pa.string()), '"', "")
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
    return {"parquet": _ParquetWriter, "csv": _CsvWriter, "jsonl": _JsonLinesWriter}[fmt](path, schema)


def read_batches(path: str, fmt: str, types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream the record batches of a program output file; ``types`` fixes CSV/JSON column types."""
    if fmt == "parquet":
        with pq.ParquetFile(path, buffer_size=OUTPUT_READ_BUFFER) as f:
            plain = plain_schema(f.schema_arrow)  # views and dictionaries: the partitioner's kernels lack them
            for group in range(f.num_row_groups):  # one reader over many row groups keeps memory of each it read
                for batch in f.iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
                    yield batch if batch.schema == plain else batch.cast(plain)
        return
    if os.path.getsize(path) == 0:
        return
    if fmt == "csv":
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=READ_BLOCK),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=types or {}),
        )
    else:
        # JSON has no dates: declared date columns are parsed as their ISO strings, then cast
        dates = {c: t for c, t in (types or {}).items() if pa.types.is_date(t)}
        schema = pa.schema([(c, pa.string() if c in dates else t) for c, t in types.items()]) if types else None
        reader = pajson.open_json(
            path,
            read_options=pajson.ReadOptions(block_size=READ_BLOCK),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
        if dates:
            for batch in reader:
                yield pa.RecordBatch.from_arrays(
                    [c.cast(dates[n]) if n in dates else c for n, c in zip(batch.schema.names, batch.columns,
                                                                             strict=True)],
                    names=batch.schema.names)
            return
    yield from reader
