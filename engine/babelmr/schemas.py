"""Arrow schemas of a stage's files: exact serialisation, stage-wide unification, and conformance of batches.

Tasks of one stage may disagree on their output's columns (a map task that emits an extra column, int32 in
one task and int64 in another, another column order, an all-NULL column in an empty task). The coordinator
unifies the schemas its commit records name with pyarrow's permissive promotion, which decides what is
lossless; a conflict it cannot resolve (string vs int64) fails the stage. Readers then cast each file to the
unified schema by column name (`conform_batch`): missing columns become NULL, casts are safe (an overflow
raises instead of losing data).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from babelmr.errors import BabelMRError


class SchemaConflict(BabelMRError):
    """Tasks of one stage wrote a column with types that cannot be unified without loss."""


def serialize_schema(schema: pa.Schema) -> str:
    """The schema as base64 Arrow IPC: exact (types, nullability, metadata), unlike ``to_string``."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def deserialize_schema(text: str) -> pa.Schema:
    """The schema `serialize_schema` wrote."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


@dataclass(frozen=True)
class TaskSchema:
    """The schema of one committed file and what messages call it."""

    task: int
    schema: pa.Schema
    rows: int


def _merge(a: pa.Field, b: pa.Field) -> pa.Field:
    """``a`` and ``b`` (same name) promoted losslessly, or raise ArrowTypeError/ArrowInvalid."""
    merged = pa.unify_schemas([pa.schema([a]), pa.schema([b])], promote_options="permissive")
    return merged.field(0)


def unify_stage_schemas(stage: str, schemas: Sequence[TaskSchema]) -> pa.Schema:
    """One schema every file of ``stage`` converts to without loss; raises `SchemaConflict` naming the column.

    Files with rows decide the types: a column's type in a 0-row file holds no value, so a 0-row file
    whose type conflicts gives way (its columns still join the schema when they are new). Column order is
    that of the first file that has the column (task order).
    """
    fields: dict[str, pa.Field] = {}
    origin: dict[str, int] = {}
    with_rows = [s for s in schemas if s.rows > 0]
    empty = [s for s in schemas if s.rows == 0]
    for ts in with_rows:
        for f in ts.schema.remove_metadata():
            if f.name not in fields:
                fields[f.name], origin[f.name] = f, ts.task
                continue
            try:
                fields[f.name] = _merge(fields[f.name], f)
            except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise SchemaConflict(
                    f"stage {stage!r}: tasks disagree on column {f.name!r}: {fields[f.name].type} in task "
                    f"{origin[f.name]}, {f.type} in task {ts.task}, and one cannot hold the other without loss: "
                    "make the program write one type, or declare the column's type in the stage's 'schema' "
                    "(for CSV inputs, the input's 'csv.schema')") from None
    for ts in empty:
        for f in ts.schema.remove_metadata():
            if f.name not in fields:
                fields[f.name], origin[f.name] = f, ts.task
                continue
            # No value in this file: on a conflict it gives way, its column is cast to the files' with rows.
            with contextlib.suppress(pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
                fields[f.name] = _merge(fields[f.name], f)
    # A column some file lacks reads as NULL there.
    everywhere = set.intersection(*(set(s.schema.names) for s in schemas)) if schemas else set()
    ordered = sorted(fields.values(), key=lambda f: _first_position(f.name, schemas))
    return pa.schema([f if f.name in everywhere else f.with_nullable(True) for f in ordered])


def _first_position(name: str, schemas: Sequence[TaskSchema]) -> tuple[int, int]:
    """Where a column first appears: (order of its first file, position there); files with rows first."""
    ranked = sorted(schemas, key=lambda s: (s.rows == 0, s.task))
    for rank, ts in enumerate(ranked):
        index = ts.schema.get_field_index(name)
        if index >= 0:
            return rank, index
    return len(ranked), 0


def same_schema(a: pa.Schema, b: pa.Schema) -> bool:
    """Equal names, order and types (nullability and metadata aside: no reader needs those to agree)."""
    return a.names == b.names and all(x.type.equals(y.type) for x, y in zip(a, b, strict=True))


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` as ``schema``: columns by name, in its order, safely cast; absent columns all NULL."""
    if batch.schema.equals(schema):
        return batch
    names = batch.schema.names
    columns = []
    for f in schema:
        if f.name in names:
            column = batch.column(names.index(f.name))
            columns.append(column if column.type.equals(f.type) else column.cast(f.type, safe=True))
        else:
            columns.append(pa.nulls(batch.num_rows, f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
