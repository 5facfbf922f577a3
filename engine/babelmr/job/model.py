"""The job as the rest of babelmr sees it: validated, defaults filled in, paths resolved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

ProgramFormat = Literal["parquet", "csv", "jsonl"]
InputFormat = Literal["parquet", "csv"]
Partitioner = Literal["hash", "range", "salted", "random"]

DEFAULT_RETRIES = 2
SPLIT_MIN_BYTES = 32 << 20
SPLIT_MAX_BYTES = 512 << 20
# A warm stage pays its program's start-up once per worker, not per task: smaller tasks then cost little and keep
# the program's memory and the last wave's stragglers small (TPC-H Q1 at SF 10: ~40 tasks of one 61 MiB file ran
# in half the time of 8 tasks of ~300 MiB, same program, warm).
SPLIT_MAX_WARM_BYTES = 64 << 20


@dataclass(frozen=True)
class CsvOptions:
    """How to parse an external CSV input."""

    delimiter: str = ","
    header: bool = True
    column_names: tuple[str, ...] | None = None
    schema: dict[str, str] | None = None
    newlines_in_values: bool = False  # quoted values may hold line breaks: the file is not split by bytes


@dataclass(frozen=True)
class ExternalInput:
    """Data outside babelmr: files, a folder or a glob, local or on S3."""

    name: str
    uri: str
    format: InputFormat = "parquet"
    columns: tuple[str, ...] | None = None
    row_groups: tuple[int, ...] | None = None
    broadcast: bool = False
    csv: CsvOptions = field(default_factory=CsvOptions)


@dataclass(frozen=True)
class StageInput:
    """The output of an earlier stage."""

    name: str
    stage: str
    columns: tuple[str, ...] | None = None


Input = ExternalInput | StageInput


@dataclass(frozen=True)
class Split:
    """How a stage's split external input is cut into tasks; neither field set: the adaptive default."""

    files_per_task: int | None = None
    bytes_per_task: int | None = None

    def target_bytes(self, total: int, concurrency: int, warm: bool = False) -> int | None:
        """Bytes per task: as the job says, or by default enough tasks to keep every worker busy, each
        32-512 MiB (fewer, larger tasks pay the program's start-up less often), 32-64 MiB for a ``warm`` stage
        (its program starts once per worker); None: by file count."""
        if self.files_per_task:
            return None
        if self.bytes_per_task:
            return self.bytes_per_task
        workers = max(1, concurrency)
        tasks = max(1, -(-total // (SPLIT_MAX_WARM_BYTES if warm else SPLIT_MAX_BYTES)))
        tasks = -(-tasks // workers) * workers  # whole waves: no worker idles in the last one
        return max(SPLIT_MIN_BYTES, -(-total // tasks))


@dataclass(frozen=True)
class Speculation:
    """When a stage backs up a straggler: enough tasks finished and one runs much longer than their median."""

    after: float = 0.75
    slowdown: float = 2.0
    min_seconds: float = 5.0


@dataclass(frozen=True)
class Stage:
    """One stage: a program over its inputs, optionally partitioned by key for later stages."""

    name: str
    inputs: tuple[Input, ...]
    command: tuple[str, ...] | None = None
    shell: bool = False
    image: str | None = None
    mode: str | None = None
    split: Split = field(default_factory=Split)
    program_format: ProgramFormat = "parquet"
    key: tuple[str, ...] | None = None
    partitions: int = 1
    schema: dict[str, str] | None = None
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    concurrency: int | None = None
    memory: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    tolerated_failures: int | str = 0  # a count, or a percentage of the stage's tasks ("10%")
    sort: tuple[str | dict[str, str], ...] | None = None  # as the job says; the planner puts the key first
    combiner: tuple[str, ...] | None = None
    warm: bool = False
    speculation: Speculation | None = field(default_factory=Speculation)  # None: no backup attempts
    partitioner: Partitioner = "hash"  # how output rows go to partitions (docs/partitioning.md)
    salts: int | None = None  # "salted": partitions each key is spread over (None: all)

    def tolerated(self, tasks: int) -> int:
        """How many of ``tasks`` may fail for good while the stage still succeeds (a percentage rounds down)."""
        if isinstance(self.tolerated_failures, str):
            return int(tasks * float(self.tolerated_failures.rstrip("%")) / 100)
        return self.tolerated_failures

    @property
    def external_inputs(self) -> list[ExternalInput]:
        return [i for i in self.inputs if isinstance(i, ExternalInput)]

    @property
    def stage_inputs(self) -> list[StageInput]:
        return [i for i in self.inputs if isinstance(i, StageInput)]


OutputFormat = Literal["parquet", "csv", "jsonl"]
OutputMode = Literal["error", "overwrite"]


@dataclass(frozen=True)
class Output:
    """Where a job publishes its final stage's result, in which format, and what to do with an earlier one."""

    uri: str
    format: OutputFormat = "parquet"
    mode: OutputMode = "error"


@dataclass(frozen=True)
class Job:
    """A whole job: its stages in order and where its data goes."""

    name: str
    path: str
    directory: str
    store: str
    stages: tuple[Stage, ...]
    env: dict[str, str] = field(default_factory=dict)
    output: Output | None = None

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def resolve_sort(entries: Sequence[str | dict[str, str]] | None,
                 key: Sequence[str] | None) -> list[dict[str, str]] | None:
    """The effective sort of an input: the key columns first (ascending unless ``entries`` says otherwise),
    then the other entries in order; each entry as ``{"column", "order", "nulls"}``."""
    if not entries:
        return None
    given: dict[str, dict[str, str]] = {}
    for entry in entries:
        e = {"column": entry} if isinstance(entry, str) else dict(entry)
        given[e["column"]] = {"column": e["column"], "order": e.get("order", "asc"), "nulls": e.get("nulls", "last")}
    leading = [given.pop(k, {"column": k, "order": "asc", "nulls": "last"}) for k in key or []]
    return leading + list(given.values())
