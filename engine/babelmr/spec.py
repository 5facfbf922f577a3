"""The task spec: everything one task attempt needs, as plain JSON.

The coordinator writes it, a backend carries it (process pool, container, Lambda payload) and the
worker runs it. Neither side imports the other; this module is their whole contract.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

PARTITION_INDEX_KEY = b"babelmr.partitions"
# The worker protocol's wire constants (docs/settings.md lists them; they are not settings).
SPEC_ENV = "BABELMR_TASK_SPEC"  # a container task's spec, when not given as a file or URI
RESULT_MARKER = "BABELMR_RESULT "  # starts the line a container task prints its TaskResult on
JOB_DIR_ENV = "BABELMR_JOB_DIR"  # set in images: where the image keeps the job's folder (COPY . /opt/job)


@dataclass(frozen=True)
class FileSlice:
    """A file (local path or s3:// URI) and, for Parquet, the row groups to read (None: all).

    ``size`` is the bytes this slice reads (for splitting). An external input's file is pinned at plan time:
    ``file_size`` and ``version`` (S3 ETag, or a local file's ``mtime_ns:inode``) are what the planner saw, and
    the worker refuses another version. None: not pinned (stage outputs, which babelmr never rewrites).
    For CSV, ``start``/``end`` cut a byte range of the file (``end`` None: the whole file); the lines read
    are those that start after ``start``'s first line break (at 0: from the first line) up to the line
    that crosses ``end`` (see worker/csvsplit.py)."""

    uri: str
    row_groups: list[int] | None = None
    size: int = 0
    file_size: int | None = None
    version: str | None = None
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class TaskInput:
    """One named input of a task: external files, or one partition of an earlier stage's output."""

    name: str
    kind: Literal["files", "stage"]
    format: Literal["parquet", "csv"]
    files: list[FileSlice]
    columns: list[str] | None = None
    partition: int | None = None
    csv: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the job's uri or stage name, for messages
    schema: str | None = None  # kind "stage": the upstream stage's unified Arrow schema (babelmr.schemas)
    sort: list[dict[str, str]] | None = None  # {"column", "order", "nulls"} each: sort before the program


@dataclass(frozen=True)
class TaskSpec:
    """One attempt of one task of one stage."""

    run_id: str
    job: str
    stage: str
    task: int
    attempt: int
    store: str
    inputs: list[TaskInput]
    command: list[str] | None
    mode: str | None = None
    shell: bool = False
    program_format: Literal["parquet", "csv", "jsonl"] = "parquet"
    schema: dict[str, str] | None = None
    key: list[str] | None = None
    partitions: int = 1
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    job_dir: str = ""  # the job file's folder: what '{job_dir}' in the command means outside an image
    image: str | None = None  # container backends: the image to run
    memory: int | None = None  # container backends: bytes of memory for the task
    # The final stage of a job with an 'output': write the program's output as one plain file in this format
    # (no partition index), ready to be published as a part; None: the partitioned Parquet file.
    output_format: Literal["parquet", "csv", "jsonl"] | None = None
    combiner: list[str] | None = None  # run on the program's output before it is partitioned (MR_MODE=combine)
    warm: bool = False  # run through the worker's warm program (worker/warm.py) instead of starting one
    # How rows go to partitions (worker/partitioners.py): "hash", "range", "salted" or "random". Options:
    # range: {"order": [{"column", "order", "nulls"}], "boundaries": base64 Arrow IPC of partitions-1 key rows};
    # salted: {"salts": n}.
    partitioner: str = "hash"
    partition_options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name this attempt."""
        return f"stage {self.stage!r} task {self.task} attempt {self.attempt}"

    def with_attempt(self, attempt: int) -> TaskSpec:
        return replace(self, attempt=attempt)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        inputs = [
            TaskInput(**{**i, "files": [FileSlice(**f) for f in i["files"]]}) for i in data["inputs"]
        ]
        return cls(**{**data, "inputs": inputs})

    @classmethod
    def from_json(cls, text: str) -> TaskSpec:
        return cls.from_dict(json.loads(text))


@dataclass
class TaskResult:
    """What an attempt reports back: ``ok`` (committed), ``duplicate`` (another attempt won) or ``error``."""

    status: Literal["ok", "duplicate", "error"]
    stage: str
    task: int
    attempt: int
    error: str | None = None
    retryable: bool = True
    commit: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        return cls(**data)
