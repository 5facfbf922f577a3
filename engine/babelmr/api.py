"""The public Python API: run a job, read its result, read a finished run back.

    import babelmr
    run = babelmr.run("job.json", backend="inline", store="/tmp/store")
    print(run.status, run.seconds, run.counters)
    df = run.to_pandas()                       # the final stage's committed output
    again = babelmr.open_run(run.run_id, "/tmp/store")

`run` raises babelmr's typed errors (`JobFileError`, `InputError`, `JobFailed`, ...) like the command
line does; when the run had started, the error's ``run`` attribute is the failed `Run`, read back
from its run record. docs/api.md has the details.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from babelmr.backends import get_backend
from babelmr.backends.base import Backend
from babelmr.coordinator.records import new_run_id, read_record
from babelmr.coordinator.run import StageProgress, run_job
from babelmr.errors import BabelMRError
from babelmr.job import Job, load_job
from babelmr.spec import PARTITION_INDEX_KEY, AttemptRecord, CommittedFile, RunRecord, StageRecord
from babelmr.store import filesystem_for, open_store
from babelmr.units import parse_size

__all__ = ["CommittedFile", "Run", "StageSummary", "TaskAttempt", "load_job", "open_run", "resume", "run"]

# The run record's own types are the API's: a stage's summary is its entry in the run record (babelmr.spec).
StageSummary = StageRecord
TaskAttempt = AttemptRecord


def _sum_counters(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counters in parts:
        for name, amount in counters.items():
            total[name] = total.get(name, 0) + amount
    return dict(sorted(total.items()))


@dataclass(frozen=True)
class Run:
    """A run as its run record tells it: status, per-stage summaries, counters and the output files."""

    run_id: str
    job: str
    status: str  # running, succeeded, failed or interrupted
    backend: str
    store: str
    started_at: float
    finished_at: float | None
    seconds: float | None
    stages: list[StageSummary]
    output_stage: str | None
    output_files: list[str]
    error: str | None
    record: RunRecord = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, record: RunRecord) -> Run:
        """The run a run record (``runs/<run>/run.json``) describes."""
        output = record.output
        return cls(
            run_id=record.run_id, job=record.job, status=record.status, backend=record.backend,
            store=record.store, started_at=record.started_at, finished_at=record.finished_at,
            seconds=record.seconds, stages=list(record.stages),
            output_stage=output.stage if output else None, output_files=list(output.files) if output else [],
            error=record.error, record=record,
        )

    @property
    def succeeded(self) -> bool:
        """Whether every stage committed its output."""
        return self.status == "succeeded"

    @property
    def counters(self) -> dict[str, int]:
        """Program counters (``GROUP.NAME``) summed over every stage's committed attempts."""
        return _sum_counters(s.counters for s in self.stages)

    def stage(self, name: str) -> StageSummary:
        """The summary of the stage called ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise BabelMRError(f"run {self.run_id} has no finished stage {name!r}; it has "
                           f"{[s.name for s in self.stages]}")

    def _files(self, stage: str | None) -> list[str]:
        if stage is not None:
            summary = self.stage(stage)
            if summary.status != "succeeded":
                raise BabelMRError(f"stage {stage!r} of run {self.run_id} {summary.status}: it has no output")
            return summary.output_files
        if not self.succeeded:
            raise BabelMRError(f"run {self.run_id} {self.status}: it has no output"
                               + (f" ({self.error.splitlines()[0]})" if self.error else ""))
        return self.output_files

    def iter_batches(self, stage: str | None = None, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream the committed output of the final stage (or ``stage``), file by file, batch by batch."""
        for uri in self._files(stage):
            fs, path = filesystem_for(uri)
            with fs.open_input_file(path) as f:
                yield from pq.ParquetFile(f).iter_batches(columns=columns)

    def read_table(self, stage: str | None = None, columns: list[str] | None = None) -> pa.Table:
        """The committed output of the final stage (or ``stage``) as one table, in memory."""
        tables = []
        for uri in self._files(stage):
            fs, path = filesystem_for(uri)
            table = pq.read_table(path, filesystem=fs, columns=columns)
            # The partition index in the footer says where partitions are in that file: not the result's business.
            metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != PARTITION_INDEX_KEY}
            tables.append(table.replace_schema_metadata(metadata or None))
        # A task with no output rows may have typed columns as null: promote them to the others' types.
        return pa.concat_tables(tables, promote_options="permissive")

    def to_pandas(self, stage: str | None = None, columns: list[str] | None = None) -> Any:
        """`read_table` as a pandas DataFrame."""
        return self.read_table(stage, columns).to_pandas()


def run(job: str | os.PathLike[str] | Job, *, backend: str | Backend = "local", store: str | None = None,
        concurrency: int | None = None, memory: int | str = "2GiB", ephemeral_storage: int | str = "512MiB",
        emulators: int | None = None, progress: StageProgress | None = None) -> Run:
    """Run a job (a job file or a loaded `Job`) to completion and return its `Run`.

    ``backend`` is a name (``local``, ``inline``, ``docker``, ``lambda``) or a `Backend` you own (not
    closed here); ``store`` overrides the job's store. Raises babelmr's typed errors; once the run has
    started, the error's ``run`` attribute holds the failed `Run`.
    """
    if isinstance(job, Job):
        loaded = job
    else:
        loaded = load_job(os.fspath(job), store=store)
        store = None  # load_job resolved it
    if isinstance(backend, Backend):
        return _run(loaded, backend, store, progress)
    from babelmr.backends.containers import ContainerLimits

    try:
        limits = ContainerLimits(parse_size(memory), parse_size(ephemeral_storage))
    except ValueError as e:
        raise BabelMRError(f"run(): {e}") from None
    with get_backend(backend, concurrency=concurrency, limits=limits, emulators=emulators) as b:
        return _run(loaded, b, store, progress)


def _run(job: Job, backend: Backend, store: str | None, progress: StageProgress | None) -> Run:
    run_id = new_run_id(job.name)
    try:
        record = run_job(job, backend, progress=progress, store_uri=store, run_id=run_id)
    except BaseException as e:
        if isinstance(e, BabelMRError):
            e.run = _read_back(store or job.store, run_id)
        raise
    return Run.from_record(record)


def _read_back(store: str, run_id: str) -> Run | None:
    """The record of a run that raised, if it got as far as writing one."""
    try:
        return open_run(run_id, store)
    except (BabelMRError, OSError):
        return None


def open_run(run_id: str, store: str = ".babelmr") -> Run:
    """The run ``run_id`` (or a unique prefix of it) recorded in ``store``, finished or not."""
    return Run.from_record(read_record(open_store(store), run_id))


def resume(run_id: str, store: str = ".babelmr", *, backend: str | Backend | None = None, force: bool = False,
           concurrency: int | None = None, progress: StageProgress | None = None) -> Run:
    """Continue a failed, interrupted or killed run (docs/fault-tolerance.md) and return its `Run`.

    Finished stages and committed tasks are not run again; the job file is read from where the run
    found it. Changed inputs or partitioning raise `ResumeRefused` unless ``force``.
    """
    from babelmr.coordinator.records import read_record

    record = read_record(open_store(store), run_id)
    job = load_job(record.job_file, store=store)
    chosen = backend or record.backend
    try:
        if isinstance(chosen, Backend):
            return Run.from_record(run_job(job, chosen, progress=progress, resume=record.run_id, force=force))
        with get_backend(chosen, concurrency=concurrency) as b:
            return Run.from_record(run_job(job, b, progress=progress, resume=record.run_id, force=force))
    except BabelMRError as e:
        e.run = _read_back(store, record.run_id)
        raise
