"""Plan a stage: which task reads which files, row groups and partitions."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.parquet as pq

from babelmr.coordinator.sampling import range_options
from babelmr.job import ExternalInput, Job, Stage, StageInput
from babelmr.job.model import resolve_sort
from babelmr.spec import CommitRecord, FileSlice, TaskInput, TaskSpec
from babelmr.store import FileEntry, filesystem_for, list_input_files
from babelmr.units import human_bytes
from babelmr.worker.parquet_checks import check_columns, check_row_groups, unreadable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageOutput:
    """The committed output of a finished stage, as later stages read it."""

    stage: str
    partitions: int
    files: list[str]
    commits: list[CommitRecord] = field(default_factory=list)  # the commit records (rows per partition, schema)
    schema: str | None = None  # the stage's unified Arrow schema (babelmr.schemas.serialize_schema)

    def partition_rows(self, partition: int) -> int:
        """Rows of ``partition`` over every committed file (from the commit records)."""
        return sum(c.partition_rows[partition] for c in self.commits
                   if c.file and partition < len(c.partition_rows))


@dataclass
class StagePlan:
    stage: Stage
    tasks: list[TaskSpec]
    resolved_inputs: dict[str, list[str]]
    skipped: list[int] = field(default_factory=list)  # tasks whose inputs are all empty: the program is not run


def _footer(name: str, uri: str) -> pq.FileMetaData:
    fs, path = filesystem_for(uri)
    try:
        with fs.open_input_file(path) as f:
            return pq.ParquetFile(f).metadata
    except (pa.ArrowInvalid, OSError) as e:
        raise unreadable(name, uri, e) from None


def _footers(name: str, uris: list[str]) -> list[pq.FileMetaData]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda uri: _footer(name, uri), uris))


def _check_parquet(inp: ExternalInput, uris: list[str], metas: list[pq.FileMetaData]) -> None:
    """Fail at plan time, naming the file, for row groups a file lacks or columns no file has (the importer's
    rule: a file lacking a column reads it as NULL). ``metas`` are the footers of the first files of ``uris``;
    the others are read only when those lack a column."""
    for uri, meta in zip(uris, metas, strict=False):
        check_row_groups(inp.name, uri, meta.num_row_groups, inp.row_groups)
    found = {c for m in metas for c in m.schema.to_arrow_schema().names}
    if len(metas) < len(uris) and any(c not in found for c in inp.columns or []):
        metas = list(metas) + _footers(inp.name, uris[len(metas):])
    check_columns(inp.name, inp.columns, [(u, m.schema.to_arrow_schema().names)
                                          for u, m in zip(uris, metas, strict=False)])


def _pinned(f: FileEntry, row_groups: list[int] | None, size: int) -> FileSlice:
    """A slice of ``f`` pinned to the version listed: the worker reads that version or fails."""
    return FileSlice(f.path, row_groups, size, file_size=f.size, version=f.version)


def _slices(inp: ExternalInput, files: list[FileEntry], bytes_per_task: int | None) -> list[list[FileSlice]]:
    """Cut an input into task shares: whole files, or row-group ranges of ~``bytes_per_task``."""
    uris = [f.path for f in files]
    row_groups = list(inp.row_groups) if inp.row_groups is not None else None
    if inp.format != "parquet":
        pieces = [[r] for f in files for r in _byte_ranges(inp, f, bytes_per_task)]
    else:
        metas = _footers(inp.name, uris) if (bytes_per_task or row_groups) else [_footer(inp.name, uris[0])]
        _check_parquet(inp, uris, metas)
        if not bytes_per_task:
            pieces = [[_pinned(f, row_groups, f.size)] for f in files]
        else:
            pieces = []
            for f, meta in zip(files, metas, strict=True):
                groups = row_groups if row_groups is not None else list(range(meta.num_row_groups))
                for g in groups:
                    rg = meta.row_group(g)
                    size = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
                    pieces.append([_pinned(f, [g], size)])
    return pieces


def _compressed(uri: str) -> bool:
    """Whether Arrow would decompress the file (by its extension)."""
    try:
        return pa.Codec.detect(uri) is not None
    except (TypeError, ValueError):  # pyarrow raises instead of returning None for a plain file
        return False


def _byte_ranges(inp: ExternalInput, f: FileEntry, bytes_per_task: int | None) -> list[FileSlice]:
    """A CSV/text file as byte ranges of ``bytes_per_task`` (read by worker/csvsplit.py, Hadoop's rule), or
    whole: when it is no larger, compressed, or its quoted values may hold line breaks. Every range is pinned
    to the version listed."""
    whole = _pinned(f, None, f.size)
    if not bytes_per_task or f.size <= bytes_per_task or inp.csv.newlines_in_values or _compressed(f.path):
        return [whole]
    return [replace(whole, size=min(f.size, s + bytes_per_task) - s, start=s, end=min(f.size, s + bytes_per_task))
            for s in range(0, f.size, bytes_per_task)]


def _pack(pieces: list[list[FileSlice]], files_per_task: int | None,
          bytes_per_task: int | None) -> list[list[FileSlice]]:
    """Group pieces into tasks; adjacent row groups of one file merge into one slice."""
    if not bytes_per_task:
        n = files_per_task or 1
        return [[s for p in pieces[i:i + n] for s in p] for i in range(0, len(pieces), n)]
    tasks: list[list[FileSlice]] = [[]]
    size = 0
    for (piece,) in pieces:
        if size >= bytes_per_task:
            tasks.append([])
            size = 0
        current = tasks[-1]
        if current and current[-1].uri == piece.uri and piece.end is not None and current[-1].end == piece.start:
            last = current[-1]  # adjacent byte ranges of one file: one range
            current[-1] = replace(last, size=last.size + piece.size, end=piece.end)
        elif current and current[-1].uri == piece.uri and piece.end is None:
            last = current[-1]
            groups = (last.row_groups or []) + (piece.row_groups or [])
            current[-1] = replace(last, row_groups=groups, size=last.size + piece.size)
        else:
            current.append(piece)
        size += piece.size
    return [t for t in tasks if t]


def _external(inp: ExternalInput, slices: list[FileSlice]) -> TaskInput:
    return TaskInput(name=inp.name, kind="files", format=inp.format, files=slices,
                     columns=list(inp.columns) if inp.columns else None, source=inp.uri,
                     csv={"delimiter": inp.csv.delimiter, "header": inp.csv.header,
                          "column_names": list(inp.csv.column_names) if inp.csv.column_names else None,
                          "schema": inp.csv.schema, "newlines_in_values": inp.csv.newlines_in_values})


def _whole(inp: ExternalInput, files: list[FileEntry]) -> list[FileSlice]:
    return [_pinned(f, list(inp.row_groups) if inp.row_groups is not None else None, f.size) for f in files]


def plan_stage(job: Job, stage: Stage, run_id: str, store_uri: str, upstream: dict[str, StageOutput],
               concurrency: int = 1) -> StagePlan:
    """The task specs (attempt 1) of ``stage``, given the outputs of the stages before it.

    ``concurrency`` (tasks the backend runs at once) sizes the default split.
    """
    resolved: dict[str, list[str]] = {}
    listed: dict[str, list[FileEntry]] = {}
    for inp in stage.external_inputs:
        listed[inp.name] = list_input_files(inp.uri)
        resolved[inp.name] = [f.path for f in listed[inp.name]]
    for ref in stage.stage_inputs:
        resolved[ref.name] = list(upstream[ref.stage].files)

    broadcast = {i.name: _external(i, _whole(i, listed[i.name])) for i in stage.external_inputs if i.broadcast}
    for inp in stage.external_inputs:
        if inp.broadcast and inp.format == "parquet":
            uris = [f.path for f in listed[inp.name]]
            _check_parquet(inp, uris, [_footer(inp.name, uris[0])])
    split = next((i for i in stage.external_inputs if not i.broadcast), None)

    task_inputs: list[dict[str, TaskInput]] = []
    skipped: list[int] = []
    if stage.stage_inputs:
        partitions = upstream[stage.stage_inputs[0].stage].partitions
        for p in range(partitions):
            task_inputs.append({i.name: _stage_input(i, upstream[i.stage], p) for i in stage.stage_inputs})
            # Empty tasks cost nothing: every upstream partition it reads is empty (known from the commit
            # records) and it reads nothing else, so the program is not started (docs/program-contract.md).
            if not broadcast and all(upstream[i.stage].commits and upstream[i.stage].partition_rows(p) == 0
                                     for i in stage.stage_inputs):
                skipped.append(p)
        if len(skipped) == partitions:
            skipped.pop(0)  # all empty: task 0 still runs, on a typed empty input, so the stage has a typed result
        log.info("stage %r: one task per partition of stage %r: %d task(s), %d of them skipped (empty)",
                 stage.name, stage.stage_inputs[0].stage, partitions, len(skipped))
    elif split is not None:
        total = sum(f.size for f in listed[split.name])
        target = stage.split.target_bytes(total, concurrency, stage.warm)
        pieces = _slices(split, listed[split.name], target)
        for share in _pack(pieces, stage.split.files_per_task, target):
            task_inputs.append({split.name: _external(split, share)})
        how = (f"~{human_bytes(target)} per task ({'the job' if stage.split.bytes_per_task else 'default'}; "
               f"{len(pieces)} row group(s) or file(s) packed)" if target
               else f"{stage.split.files_per_task or 1} file(s) per task")
        log.info("stage %r: input %r: %d file(s), %s, split into %d task(s): %s", stage.name, split.name,
                 len(listed[split.name]), human_bytes(total), len(task_inputs), how)
    else:
        task_inputs.append({})

    options = _partition_options(job, stage, task_inputs)
    tasks = [stage_spec(job, stage, run_id, store_uri, task=t, options=options,
                        inputs=_with_sort(job, stage, [own.get(i.name) or broadcast[i.name] for i in stage.inputs]))
             for t, own in enumerate(task_inputs)]
    return StagePlan(stage, tasks, resolved, skipped)


def stage_spec(job: Job, stage: Stage, run_id: str, store_uri: str, task: int = 0,
               inputs: list[TaskInput] | None = None, options: dict | None = None) -> TaskSpec:
    """Attempt 1 of task ``task`` of ``stage`` reading ``inputs``; without inputs, what every task of the stage
    shares (its command and environment: what a backend needs to start the stage's warm program early)."""
    return TaskSpec(
        run_id=run_id, job=job.name, stage=stage.name, task=task, attempt=1, store=store_uri, inputs=inputs or [],
        command=list(stage.command) if stage.command else None, mode=stage.mode, shell=stage.shell,
        program_format=stage.program_format, schema=stage.schema,
        key=list(stage.key) if stage.key else None, partitions=stage.partitions,
        timeout=stage.timeout, env={**job.env, **stage.env}, job_dir=job.directory,
        image=stage.image, memory=stage.memory,
        output_format=job.output.format if job.output and stage is job.stages[-1] else None,
        combiner=list(stage.combiner) if stage.combiner else None,
        warm=stage.warm, partitioner=stage.partitioner, partition_options=options or {},
    )


def _partition_options(job: Job, stage: Stage, task_inputs: list[dict[str, TaskInput]]) -> dict:
    """The stage's partitioner options: the range boundaries, sampled from the first input that is not broadcast
    (each task's share of it), or the salted partitioner's salts."""
    if stage.partitioner == "salted":
        return {"salts": stage.salts or stage.partitions}
    if stage.partitioner != "range" or (job.output and stage is job.stages[-1]):  # the final stage: not partitioned
        return {}
    name = next((i.name for i in stage.inputs if not getattr(i, "broadcast", False)), None)
    return range_options(job, stage, [own[name] for own in task_inputs if name in own])


def _with_sort(job: Job, stage: Stage, inputs: list[TaskInput]) -> list[TaskInput]:
    """The stage's ``sort`` on each input that is not broadcast, after the key of the stage it reads."""
    if not stage.sort:
        return inputs
    keys = {i.name: job.stage(i.stage).key for i in stage.stage_inputs}
    broadcast = {i.name for i in stage.external_inputs if i.broadcast}
    return [t if t.name in broadcast else replace(t, sort=resolve_sort(stage.sort, keys.get(t.name)))
            for t in inputs]


def _stage_input(inp: StageInput, out: StageOutput, partition: int) -> TaskInput:
    return TaskInput(name=inp.name, kind="stage", format="parquet", files=[FileSlice(f) for f in out.files],
                     columns=list(inp.columns) if inp.columns else None, partition=partition, source=inp.stage,
                     schema=out.schema)

