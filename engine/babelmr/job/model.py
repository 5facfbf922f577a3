"""The job as the rest of babelmr sees it: validated, defaults filled in, paths resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ProgramFormat = Literal["parquet", "csv", "jsonl"]
InputFormat = Literal["parquet", "csv"]

DEFAULT_RETRIES = 2
DEFAULT_BYTES_PER_TASK = 128 << 20  # like Spark's and Hadoop's default split: one task per ~128 MiB


@dataclass(frozen=True)
class CsvOptions:
    """How to parse an external CSV input."""

    delimiter: str = ","
    header: bool = True
    column_names: tuple[str, ...] | None = None
    schema: dict[str, str] | None = None


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
    """How a stage's split external input is cut into tasks."""

    files_per_task: int | None = None
    bytes_per_task: int | None = None


@dataclass(frozen=True)
class Stage:
    """One stage: a program over its inputs, optionally partitioned by key for later stages."""

    name: str
    inputs: tuple[Input, ...]
    command: tuple[str, ...] | None = None
    shell: bool = False
    image: str | None = None
    mode: str | None = None
    split: Split = field(default_factory=lambda: Split(bytes_per_task=DEFAULT_BYTES_PER_TASK))
    program_format: ProgramFormat = "parquet"
    key: tuple[str, ...] | None = None
    partitions: int = 1
    schema: dict[str, str] | None = None
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    concurrency: int | None = None
    memory: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def external_inputs(self) -> list[ExternalInput]:
        return [i for i in self.inputs if isinstance(i, ExternalInput)]

    @property
    def stage_inputs(self) -> list[StageInput]:
        return [i for i in self.inputs if isinstance(i, StageInput)]


@dataclass(frozen=True)
class Job:
    """A whole job: its stages in order and where its data goes."""

    name: str
    path: str
    directory: str
    store: str
    stages: tuple[Stage, ...]
    env: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)
