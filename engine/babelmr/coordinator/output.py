"""The job's result: final files conformed to one schema, and published to the job's output location.

Publishing (``output`` in the job file, ``--output`` on the command line) makes the final stage's committed
files ``part-00000.<ext>``, ... in the output folder or S3 prefix, by hard link or S3 server-side copy (the
final tasks already wrote the output format: `babelmr.worker.plain`), then writes ``_SUCCESS`` last: a
reader that waits for it never sees a partial result. babelmr only ever deletes what an earlier babelmr
result lists (its ``_SUCCESS``, or the ``_PUBLISHING`` marker of a publication that was interrupted).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import botocore.exceptions
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from babelmr.errors import BabelMRError, OutputError
from babelmr.job import Job, Output
from babelmr.schemas import TaskSchema, conform_batch, deserialize_schema, same_schema, unify_stage_schemas
from babelmr.spec import (
    CommitRecord,
    OutputPart,
    OutputPublishing,
    OutputSuccess,
    Record,
    RecordError,
    RecordVersionError,
    RunOutput,
)
from babelmr.store import filesystem_for, layout, open_store
from babelmr.store.base import Store
from babelmr.worker.plain import export_plain

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Record)
SUCCESS = layout.OUTPUT_SUCCESS
PUBLISHING = layout.OUTPUT_PUBLISHING  # lists what a publication in progress writes and replaces, until _SUCCESS
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
COPY_THREADS = 16


def stage_schema(stage: str, commits: list[CommitRecord]) -> pa.Schema | None:
    """The unified schema of a stage's committed files (None when no commit record carries one)."""
    schemas = [TaskSchema(c.task, deserialize_schema(c.arrow_schema), c.rows)
               for c in commits if c.file and c.arrow_schema]
    if not schemas:
        return None
    unified = unify_stage_schemas(stage, schemas)
    differing = [s.task for s in schemas if not same_schema(s.schema, unified)]
    if differing:  # tasks' files are rewritten to (or read as) the unified schema
        log.info("stage %r: tasks %s wrote other schemas than the stage's unified one: %s", stage, differing,
                 unified.to_string(show_schema_metadata=False).replace("\n", ", "))
    return unified


# ---- the output location -------------------------------------------------------------------------------------

def _open_target(output: Output) -> Store:
    if not output.uri.startswith("s3://") and os.path.exists(output.uri) and not os.path.isdir(output.uri):
        raise OutputError(f"output {output.uri!r} is a file: give a folder (or s3://bucket/prefix/)")
    try:
        store = open_store(output.uri)
        store.check()
    except BabelMRError as e:
        raise OutputError(f"output {output.uri!r}: {e}") from None
    return store


def _marker(store: Store, name: str, cls: type[M]) -> M | None:
    try:
        data = store.read_bytes(name)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputError(f"output {store.uri!r}: {name} is not a babelmr marker ({e}): remove the folder's "
                          "content yourself, or choose another output") from None
    try:
        return cls.from_json(data, f"output {store.uri!r}: {name}")
    except RecordVersionError as e:
        raise OutputError(str(e)) from None
    except RecordError as e:
        raise OutputError(f"output {store.uri!r}: {name} was not written by babelmr ({e}): remove the folder's "
                          "content yourself, or choose another output") from None


def _names(success: OutputSuccess | None, publishing: OutputPublishing | None) -> set[str]:
    return {p.name for p in (success.files if success else [])} | set(publishing.files if publishing else [])


def check_target(output: Output) -> list[str]:
    """Refuse an output location this run may not write, before any task runs; returns what it will replace.

    Mode ``error``: the location must be empty (or absent). Mode ``overwrite``: it may hold only an earlier
    babelmr result: files its ``_SUCCESS`` (or an interrupted publication's ``_PUBLISHING``) lists.
    """
    store = _open_target(output)
    try:
        existing = [e.path for e in store.list("")]
    except OSError as e:
        raise OutputError(f"output {output.uri!r}: cannot list it: {e}") from None
    if not existing:
        return []
    shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
    if output.mode == "error":
        raise OutputError(f"output {output.uri!r} is not empty ({len(existing)} file(s): {shown}): choose an empty "
                          "location, or replace an earlier babelmr result with --overwrite (\"mode\": \"overwrite\" "
                          "in the job's output)")
    ours = _names(_marker(store, SUCCESS, OutputSuccess), _marker(store, PUBLISHING, OutputPublishing))
    if not ours and SUCCESS not in existing and PUBLISHING not in existing:
        raise OutputError(f"output {output.uri!r} holds files babelmr did not write (no {SUCCESS} marker): {shown}; "
                          "overwrite replaces only an earlier babelmr result: choose another location or remove "
                          "them yourself")
    foreign = [k for k in existing if k not in ours and k not in (SUCCESS, PUBLISHING)]
    if foreign:
        listed = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise OutputError(f"output {output.uri!r} holds {len(foreign)} file(s) the earlier babelmr result there "
                          f"does not list: {listed}; babelmr never deletes files it did not write: move them away "
                          "or choose another location")
    return [k for k in existing if k in ours]


# ---- conformance of the final files --------------------------------------------------------------------------

@dataclass(frozen=True)
class FinalFile:
    """One file of the job's result: a committed file, or its rewrite to the stage's unified schema."""

    task: int
    uri: str
    rows: int
    bytes: int


def _read_batches(uri: str, fmt: str, schema: pa.Schema) -> Iterator[pa.Table]:
    """Batches of a committed final file in format ``fmt``, read with its recorded ``schema``."""
    fs, path = filesystem_for(uri)
    if fmt == "parquet":
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):  # one row group at a time: the rewrite keeps the partition index
                yield pf.read_row_group(g)
        return
    stream = fs.open_input_stream(path)
    if fmt == "csv":
        # babelmr's CSV convention: an empty unquoted field is NULL, "" the empty string
        reader = pacsv.open_csv(stream, convert_options=pacsv.ConvertOptions(
            column_types=dict(zip(schema.names, schema.types, strict=True)), strings_can_be_null=True,
            quoted_strings_can_be_null=False))
    else:
        reader = pajson.open_json(stream, parse_options=pajson.ParseOptions(explicit_schema=schema))
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _rewrite(store: Store, commit: CommitRecord, schema: pa.Schema, key: str) -> None:
    """Write the committed file again with exactly ``schema``, streaming (a 0-row file is written, not read)."""
    fmt = commit.format
    assert commit.arrow_schema is not None and commit.uri is not None  # final_files rewrites only such files
    recorded = deserialize_schema(commit.arrow_schema)
    tables = iter(()) if commit.rows == 0 else _read_batches(commit.uri, fmt, recorded)
    if fmt == "parquet":
        metadata: dict[bytes, bytes] = {}
        if commit.rows:
            fs, path = filesystem_for(commit.uri)
            with fs.open_input_file(path) as f:
                metadata = pq.ParquetFile(f).metadata.metadata or {}
        with store.open_output(key) as stream, pq.ParquetWriter(stream, schema, compression="snappy") as writer:
            for table in tables:
                writer.write_table(pa.Table.from_batches([conform_batch(b, schema) for b in table.to_batches()],
                                                         schema=schema), row_group_size=max(1, table.num_rows))
            if metadata:  # the partition index of a partitioned final stage: the row groups are the same
                writer.add_key_value_metadata({k.decode(): v.decode() for k, v in metadata.items()
                                               if k != b"ARROW:schema"})
        return
    batches = (conform_batch(b, schema) for t in tables for b in t.to_batches())
    with tempfile.TemporaryDirectory(prefix="babelmr-conform-") as tmp:
        export_plain(batches, schema, store.open_output(key), fmt, os.path.join(tmp, f"part.{fmt}"))


def final_files(store: Store, run_id: str, stage: str, commits: list[CommitRecord],
                schema: pa.Schema | None) -> list[FinalFile]:
    """The files of the job's result, all with exactly ``schema``: the rare file that differs is rewritten."""
    files = []
    for c in commits:
        if not c.file or c.uri is None:
            continue  # a skipped (empty) task
        if schema is None or not c.arrow_schema or same_schema(deserialize_schema(c.arrow_schema), schema):
            files.append(FinalFile(c.task, c.uri, c.rows, c.bytes))
            continue
        key = layout.conformed_data(run_id, stage, c.task, EXTENSIONS[c.format])
        try:
            _rewrite(store, c, schema, key)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            store.delete([key])
            raise BabelMRError(f"stage {stage!r}: task {c.task}'s output does not convert to the stage's unified "
                               f"schema ({schema.to_string(show_schema_metadata=False)}): {e}; declare the stage's "
                               "'schema'") from None
        size = store.size(key)
        files.append(FinalFile(c.task, store.uri_for(key), c.rows, size))
    return files


# ---- publishing ----------------------------------------------------------------------------------------------

def publish(job: Job, run_id: str, files: list[FinalFile], schema: pa.Schema | None, stage: str) -> RunOutput:
    """Publish ``files`` as the parts of ``job.output``, ``_SUCCESS`` last; returns what the run record says."""
    output = job.output
    assert output is not None
    replaced = check_target(output)  # again: something may have been written there while the job ran
    target = _open_target(output)
    ext = EXTENSIONS[output.format]
    parts = [OutputPart(layout.output_part(i, ext), f.rows, f.bytes, f.task) for i, f in enumerate(files)]
    names = {p.name for p in parts}
    target.write_bytes(PUBLISHING, OutputPublishing(run_id, sorted(names | set(replaced))).to_json().encode())
    target.delete([SUCCESS])  # first: no reader may see a _SUCCESS beside a changing set of parts
    target.delete([k for k in replaced if k not in names and k not in (SUCCESS, PUBLISHING)])
    try:
        with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
            list(pool.map(lambda pf: target.copy(pf[1].uri, pf[0].name), zip(parts, files, strict=True)))
    except (OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        raise OutputError(f"output {output.uri!r}: publishing the result failed: {e}; it is incomplete and has no "
                          f"{SUCCESS}: run the job again with --overwrite") from None
    success = OutputSuccess(run_id=run_id, job=job.name, format=output.format, rows=sum(p.rows for p in parts),
                            files=parts, written_at=time.time(),
                            schema=schema.to_string(show_schema_metadata=False) if schema is not None else None)
    target.write_bytes(SUCCESS, success.to_json(indent=2).encode())
    target.delete([PUBLISHING])
    return RunOutput(stage=stage, files=[f.uri for f in files], uri=output.uri, format=output.format,
                     mode=output.mode, rows=success.rows, parts=[target.uri_for(p.name) for p in parts],
                     success=target.uri_for(SUCCESS))
