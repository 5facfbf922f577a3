"""The range partitioner's boundaries: a bounded sample of the key read from the stage's planned input.

Before a stage with ``"partitioner": "range"`` runs, the coordinator reads the key columns of at most
``SAMPLE_PIECES`` pieces of the stage's input (Parquet row groups, CSV byte ranges, or one upstream file's
partition), spread evenly over the input, and at most ``SAMPLE_ROWS`` rows of each; sorts the sample by the
order the reading stage sorts the key in; and takes the ``partitions - 1`` quantiles as boundaries. The
pieces and rows are chosen without randomness, so re-planning (a resumed run) gives the same boundaries.
The sample only balances the partitions: the program may change the key, and rows are placed by the key
it writes, so the result is correctly ordered whatever the sample saw (docs/partitioning.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from babelmr.errors import InputError
from babelmr.job import Job, Stage
from babelmr.job.model import resolve_sort
from babelmr.spec import FileSlice, TaskInput
from babelmr.store import filesystem_for
from babelmr.worker.formats import arrow_type
from babelmr.worker.importer import input_batches
from babelmr.worker.partition import UnsupportedKeyError
from babelmr.worker.partitioners import check_orderable, encode_boundaries
from babelmr.worker.sort import sort_key

log = logging.getLogger(__name__)
SAMPLE_PIECES = 64  # row groups / byte ranges / upstream partitions read at most
SAMPLE_ROWS = 2048  # rows read at most from each


def range_order(job: Job, stage: Stage) -> list[dict[str, str]]:
    """The order of the key columns: as the first stage reading this one sorts them; else ascending, NULLs last.

    (The loader refuses readers that disagree.)"""
    key = list(stage.key or [])
    for later in job.stages:
        if later.sort and any(i.stage == stage.name for i in later.stage_inputs):
            return (resolve_sort(later.sort, key) or [])[:len(key)]
    return [{"column": k, "order": "asc", "nulls": "last"} for k in key]


def _evenly(items: list[Any], n: int) -> list[Any]:
    """At most ``n`` of ``items``, evenly spaced, first and last included."""
    if len(items) <= n:
        return items
    return [items[i * (len(items) - 1) // (n - 1)] for i in range(n)] if n > 1 else items[:1]


def _row_groups(piece: FileSlice) -> list[int]:
    fs, path = filesystem_for(piece.uri)
    with fs.open_input_file(path) as f:
        return list(range(pq.ParquetFile(f).metadata.num_row_groups))


def _pieces(inputs: list[TaskInput]) -> list[TaskInput]:
    """The input of every task cut into pieces of one source each, at most ``SAMPLE_PIECES`` of them."""
    pieces: list[TaskInput] = []
    for inp in inputs:
        for f in inp.files:
            if inp.kind == "stage":  # one upstream file's partition
                pieces.append(replace(inp, files=[f]))
            elif inp.format == "parquet" and f.row_groups is not None:
                pieces += [replace(inp, files=[replace(f, row_groups=[g])]) for g in f.row_groups]
            else:
                pieces.append(replace(inp, files=[f]))
    if len(pieces) < SAMPLE_PIECES:  # few whole Parquet files: sample inside them, row group by row group
        split: list[TaskInput] = []
        for p in pieces:
            f = p.files[0]
            if p.kind == "files" and p.format == "parquet" and f.row_groups is None:
                split += [replace(p, files=[replace(f, row_groups=[g])]) for g in _row_groups(f)]
            else:
                split.append(p)
        pieces = split
    return _evenly(pieces, SAMPLE_PIECES)


def _read(piece: TaskInput) -> pa.Table:
    schema, batches = input_batches(piece)
    taken, rows = [], 0
    for batch in batches:
        taken.append(batch.slice(0, SAMPLE_ROWS - rows))
        rows += taken[-1].num_rows
        if rows >= SAMPLE_ROWS:
            break
    close = getattr(batches, "close", None)  # a generator over open files: release them now
    if close is not None:
        close()
    return pa.Table.from_batches(taken, schema=schema)


def sample_key(stage: Stage, inputs: list[TaskInput]) -> pa.Table:
    """The sampled key columns (typed as the stage's ``schema`` declares them) of the tasks' ``inputs``."""
    key = list(stage.key or [])
    pieces = _pieces([replace(i, columns=key, sort=None) for i in inputs])
    tables = [_read(p) for p in pieces]
    if not tables:
        return pa.table({k: pa.array([], pa.null()) for k in key})
    try:
        sample = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"stage {stage.name!r}: the range partitioner's sample of key {key} has different types in "
                         f"different files ({e}): declare the key's types in the stage's 'schema'") from None
    for k in key:  # plain types: a task's key is compared in the sample's type
        if pa.types.is_dictionary(t := sample.schema.field(k).type):
            sample = sample.set_column(sample.schema.get_field_index(k), k, pc.cast(sample[k], t.value_type))
    declared = {k: arrow_type(t) for k, t in (stage.schema or {}).items() if k in key}
    for k, t in declared.items():
        try:
            sample = sample.set_column(sample.schema.get_field_index(k), k, pc.cast(sample[k], t))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InputError(f"stage {stage.name!r}: the range partitioner samples key column {k!r} from input "
                             f"{inputs[0].name!r}, where it is {sample.schema.field(k).type}, but the stage's "
                             f"'schema' declares {t} and a value does not convert ({e}): fix the 'schema'") from None
    return sample


def boundaries(sample: pa.Table, order: list[dict[str, str]], partitions: int) -> pa.Table | None:
    """The ``partitions - 1`` quantiles of ``sample`` in ``order`` (equal ones repeat); None: an empty sample."""
    if not sample.num_rows or partitions == 1:
        return None
    ranked = pc.sort_indices(sort_key(sample, order))
    n = sample.num_rows
    # the last key of each quantile: partition i holds keys up to its boundary
    chosen = pa.array([ranked[max(0, (i * n) // partitions - 1)].as_py() for i in range(1, partitions)], pa.int64())
    return sample.take(chosen).combine_chunks()


def range_options(job: Job, stage: Stage, inputs: list[TaskInput]) -> dict[str, Any]:
    """The range partitioner's task options: the key's order and the ``partitions - 1`` boundary rows."""
    start = time.perf_counter()
    order = range_order(job, stage)
    options: dict[str, Any] = {"order": order}
    if stage.partitions == 1 or not inputs:
        return options
    try:
        sample = sample_key(stage, inputs)
    except InputError as e:
        raise InputError(f"stage {stage.name!r}: the range partitioner samples the key {list(stage.key or [])} "
                         f"from input {inputs[0].name!r} to place its boundaries: {e} (give the stage an input "
                         "with the key columns, or use \"partitioner\": \"hash\")") from None
    try:
        for name in stage.key or []:
            check_orderable(name, sample.schema.field(name).type)
    except UnsupportedKeyError as e:
        raise InputError(f"stage {stage.name!r} (input {inputs[0].name!r}): {e}") from None
    chosen = boundaries(sample, order, stage.partitions)
    if chosen is not None:
        options["boundaries"] = encode_boundaries(chosen)
    log.info("stage %r: range boundaries for %d partitions from %d sampled key(s) of input %r in %.2f s",
             stage.name, stage.partitions, sample.num_rows, inputs[0].name, time.perf_counter() - start)
    return options
