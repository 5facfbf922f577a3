"""Every record that crosses a process or lands in the store, typed and versioned, and the worker's wire constants.

The task spec is everything one task attempt needs: the coordinator writes it, a backend carries it (process
pool, container, Lambda payload) and the worker runs it; the task result (with the attempt's stats and commit
record) comes back. The store holds commit records, stage manifests, the partition index in each exported
file's footer, the run record with its stage entries, the live state of a running run, stage plans and
fingerprints. Neither the coordinator nor the worker imports the other; this module is their whole contract.

Each record is a dataclass with ``to_json``/``from_json`` (``to_dict``/``from_dict``). Stored records and the
task spec and result carry ``version`` (`RECORD_VERSION`): a record of a newer version is refused with a
`RecordVersionError` that says to upgrade; a record without one (written before versions existed) is version 1,
the same layout. docs/records.md lists every record and its fields.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, TypeVar, Union

from babelmr.errors import BabelMRError

PARTITION_INDEX_KEY = b"babelmr.partitions"  # the exported file's footer metadata key of its PartitionIndex
RECORD_VERSION = 1  # the newest record layout this babelmr writes and reads; older ones stay readable


class RecordError(BabelMRError):
    """A stored or received record is not what this babelmr can read: damaged, or of an unknown layout."""

    retryable = False


class RecordVersionError(RecordError):
    """A record written by a newer babelmr than this one."""


R = TypeVar("R", bound="Record")


class Record:
    """The JSON side of every record: ``to_dict``/``from_dict``, ``to_json``/``from_json``, the version check.

    Subclasses are dataclasses whose fields are JSON values, other records, or lists and string-keyed dicts
    of them. ``WHAT`` names the record in messages; a record ``STRICT`` about its keys refuses unknown ones
    (a worker must not silently ignore a field of the task spec it does not know); the others skip them.
    """

    WHAT: ClassVar[str] = "record"
    STRICT: ClassVar[bool] = False
    OMIT_NONE: ClassVar[bool] = False  # leave None fields out of the JSON (a key's absence is what readers knew)
    VERSIONED: ClassVar[bool] = False  # its ``version`` field is the record layout's version (`check_version`)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON values."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # every Record is a dataclass
            value = getattr(self, f.name)
            if value is None and self.OMIT_NONE:
                continue
            out[f.name] = _encode(value)
        return out

    def to_json(self, indent: int | None = None) -> str:
        """The record as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """The record ``data`` (parsed JSON) holds; `RecordError` names ``where`` it came from when it cannot."""
        return _build(cls, data, where)

    @classmethod
    def from_json(cls: type[R], text: str | bytes, where: str = "") -> R:
        """The record JSON text holds (`from_dict`); damaged JSON is a `RecordError` too."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise RecordError(f"{where or 'a ' + cls.WHAT}: not valid JSON ({e}): the file is damaged") from None
        return cls.from_dict(data, where)


def _build(cls: type[R], data: Any, where: str) -> R:
    """``data`` as a ``cls``: the version checked, nested records built, unknown keys skipped (or refused)."""
    where = where or f"a {cls.WHAT}"
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected a {cls.WHAT} (a JSON object), got {type(data).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if cls.VERSIONED:
        check_version(data, cls.WHAT, where)
    unknown = sorted(set(data) - names)
    if unknown and cls.STRICT:
        raise RecordError(f"{where}: the {cls.WHAT} has field(s) {unknown} this babelmr does not know: it was "
                          "written by a newer babelmr; use the same babelmr on both sides (rebuild the image)")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _decode(hints[f.name], data[f.name], f"{where}: field {f.name!r}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where}: the {cls.WHAT} lacks its field {f.name!r}: it was written by an older "
                              "babelmr that this one cannot read, or it is damaged")
    return cls(**values)


def check_version(data: dict[str, Any], what: str, where: str) -> int:
    """The version of a record's ``data`` (1 when it has none); `RecordVersionError` when newer than ours."""
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"{where}: the {what} has version {version!r}, which no babelmr writes: it is damaged")
    if version > RECORD_VERSION:
        raise RecordVersionError(f"{where}: the {what} was written by babelmr record version {version}; this "
                                 f"babelmr reads up to version {RECORD_VERSION}: upgrade babelmr to read it")
    return version


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``: records and their lists and dicts are built, the rest kept."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(options[0], value, where) if len(options) == 1 else value
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}: the record is damaged")
        (item,) = typing.get_args(tp) or (Any,)
        return [_decode(item, v, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}: the record is damaged")
        _, item = typing.get_args(tp) or (str, Any)
        return {k: _decode(item, v, where) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # JSON writes 2.0 as 2 in some writers
    return value


# The worker protocol's wire constants (docs/settings.md lists them; they are not settings).
SPEC_ENV = "BABELMR_TASK_SPEC"  # a container task's spec, when not given as a file or URI
RESULT_MARKER = "BABELMR_RESULT "  # starts the line a container task prints its TaskResult on
JOB_DIR_ENV = "BABELMR_JOB_DIR"  # set in images: where the image keeps the job's folder (COPY . /opt/job)


@dataclass(frozen=True)
class FileSlice(Record):
    """A file (local path or s3:// URI) and, for Parquet, the row groups to read (None: all).

    ``size`` is the bytes this slice reads (for splitting). An external input's file is pinned at plan time:
    ``file_size`` and ``version`` (S3 ETag, or a local file's ``mtime_ns:inode``) are what the planner saw, and
    the worker refuses another version. None: not pinned (stage outputs, which babelmr never rewrites).
    For CSV, ``start``/``end`` cut a byte range of the file (``end`` None: the whole file); the lines read
    are those that start after ``start``'s first line break (at 0: from the first line) up to the line
    that crosses ``end`` (see worker/csvsplit.py)."""

    WHAT: ClassVar[str] = "file slice"
    STRICT: ClassVar[bool] = True

    uri: str
    row_groups: list[int] | None = None
    size: int = 0
    file_size: int | None = None
    version: str | None = None
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class TaskInput(Record):
    """One named input of a task: external files, or one partition of an earlier stage's output."""

    WHAT: ClassVar[str] = "task input"
    STRICT: ClassVar[bool] = True

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
class TaskSpec(Record):
    """One attempt of one task of one stage."""

    WHAT: ClassVar[str] = "task spec"
    VERSIONED: ClassVar[bool] = True
    STRICT: ClassVar[bool] = True  # a field the worker does not know would be silently ignored: refuse it

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
    version: int = RECORD_VERSION

    @property
    def label(self) -> str:
        """How messages name this attempt."""
        return f"stage {self.stage!r} task {self.task} attempt {self.attempt}"

    def with_attempt(self, attempt: int) -> TaskSpec:
        """This spec for attempt ``attempt``."""
        return replace(self, attempt=attempt)


@dataclass
class TaskStats(Record):
    """What one attempt measured, filled in as it goes (a failed attempt reports how far it got).

    Times are seconds (``*_at``: Unix time); ``None`` fields are left out of the JSON.
    """

    WHAT: ClassVar[str] = "task stats"
    OMIT_NONE: ClassVar[bool] = True

    started_at: float | None = None
    finished_at: float | None = None
    memory_bytes: int | None = None  # the task's memory limit (container backends)
    s3_requests: dict[str, int] = field(default_factory=dict)  # this attempt's S3 requests by kind
    import_seconds: float | None = None
    rows_in: int | None = None
    bytes_in: int | None = None
    import_methods: dict[str, str] | None = None  # input name -> "copy" or "decode"
    import_decoded_because: dict[str, str] | None = None  # input name -> why it was decoded, not copied
    program_seconds: float | None = None
    program_peak_rss_bytes: int | None = None
    counters: dict[str, int] | None = None  # the program's reporter:counter: totals
    status_line: str | None = None  # the program's last reporter:status: line
    combine_rows_in: int | None = None  # rows the combiner got and gave (worker/combine.py)
    combine_rows_out: int | None = None
    combine_seconds: float | None = None
    combine_peak_rss_bytes: int | None = None
    export_seconds: float | None = None
    rows_out: int | None = None
    bytes_out: int | None = None
    engine_peak_rss_bytes: int | None = None
    memory_pool: str | None = None
    lambda_billed_ms: float | None = None  # AWS Lambda's REPORT line (backends/aws_lambda.py)
    lambda_memory_mb: int | None = None
    lambda_max_memory_used_mb: int | None = None


@dataclass(frozen=True)
class CommitRecord(Record):
    """A task's commit record (``layout.commit_record``), created only if absent: the attempt whose file counts.

    A task skipped because every input partition it reads is empty has no ``file``/``uri`` and says why
    in ``skipped``. docs/commit-protocol.md describes the protocol.
    """

    WHAT: ClassVar[str] = "commit record"
    VERSIONED: ClassVar[bool] = True

    task: int
    attempt: int
    file: str | None  # the store key of the committed file
    uri: str | None
    rows: int
    bytes: int
    partition_rows: list[int]
    committed_at: float
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    schema: str | None = None  # for people: the Arrow schema as text
    arrow_schema: str | None = None  # exact: base64 Arrow IPC (babelmr.schemas)
    counters: dict[str, int] = field(default_factory=dict)  # the winner's counters, should its reply be lost
    skipped: str | None = None
    version: int = RECORD_VERSION


@dataclass
class TaskResult(Record):
    """What an attempt reports back: ``ok`` (committed), ``duplicate`` (another attempt won) or ``error``."""

    WHAT: ClassVar[str] = "task result"
    VERSIONED: ClassVar[bool] = True

    status: Literal["ok", "duplicate", "error"]
    stage: str
    task: int
    attempt: int
    error: str | None = None
    retryable: bool = True
    commit: CommitRecord | None = None
    stats: TaskStats = field(default_factory=TaskStats)
    version: int = RECORD_VERSION


@dataclass(frozen=True)
class PartitionIndex(Record):
    """The partition -> row groups index of an exported file, in its footer's key-value metadata
    (`PARTITION_INDEX_KEY`); worker/shuffleindex.py adds per-partition footers after the data."""

    WHAT: ClassVar[str] = "partition index"
    VERSIONED: ClassVar[bool] = True

    key: list[str] | None
    partitions: int
    row_groups: list[list[int]]  # partition p's row groups
    rows: list[int]  # partition p's rows
    version: int = RECORD_VERSION


@dataclass(frozen=True)
class StageManifest(Record):
    """A finished stage (``layout.stage_manifest``): its committed files and schema. Written once, when every
    task committed; a resume skips a stage that has one."""

    WHAT: ClassVar[str] = "stage manifest"
    VERSIONED: ClassVar[bool] = True

    stage: str
    partitions: int
    key: list[str] | None
    files: list[str]  # what the next stage reads (the final stage: the conformed files)
    commits: list[CommitRecord]
    schema: str | None = None
    arrow_schema: str | None = None
    failed_tasks: list[int] = field(default_factory=list)  # tolerated failures: no file
    version: int = RECORD_VERSION


@dataclass
class AttemptRecord(Record):
    """One attempt of a task as the run record lists it; in JSON its stats are fields of the entry itself."""

    WHAT: ClassVar[str] = "task attempt entry"

    task: int
    attempt: int
    status: Literal["ok", "duplicate", "error"]
    error: str | None = None  # bounded (babelmr.bounded)
    retryable: bool | None = None  # errors only
    final: bool | None = None  # the live state only: False when another attempt of the task follows
    stats: TaskStats = field(default_factory=TaskStats)

    @property
    def counters(self) -> dict[str, int]:
        """The program's ``reporter:counter:`` totals in this attempt."""
        return dict(self.stats.counters or {})

    def to_dict(self) -> dict[str, Any]:
        """The entry: its fields and the stats' fields side by side (the layout records have always had)."""
        out: dict[str, Any] = {"task": self.task, "attempt": self.attempt, "status": self.status, "error": self.error}
        if self.retryable is not None:
            out["retryable"] = self.retryable
        if self.final is not None:
            out["final"] = self.final
        return {**out, **self.stats.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> AttemptRecord:
        """An entry of ``task_attempts``."""
        if not isinstance(data, dict):
            raise RecordError(f"{where or 'a task attempt entry'}: expected a JSON object")
        own = {"task", "attempt", "status", "error", "retryable", "final"}
        stats = TaskStats.from_dict({k: v for k, v in data.items() if k not in own}, where)
        return _build(cls, {**{k: v for k, v in data.items() if k in own}, "stats": stats.to_dict()}, where)


@dataclass(frozen=True)
class CommittedFile(Record):
    """The output file a task's commit record publishes: the one attempt of the task downstream reads."""

    WHAT: ClassVar[str] = "committed file entry"

    task: int
    attempt: int
    uri: str
    rows: int
    bytes: int
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ToleratedFailure(Record):
    """A task whose final failure the stage tolerated (the job's ``tolerate_failures``): no output published."""

    WHAT: ClassVar[str] = "tolerated failure entry"

    task: int
    attempts: int
    inputs: list[str]
    error: str | None = None


@dataclass
class StageRecord(Record):
    """One stage's entry of the run record (``layout.stage_record`` while the run runs, then in run.json)."""

    WHAT: ClassVar[str] = "stage entry"
    OMIT_NONE: ClassVar[bool] = True  # e.g. no combine_* fields without a combiner
    VERSIONED: ClassVar[bool] = True

    name: str
    tasks: int
    attempts: int = 0
    retries: int = 0
    seconds: float = 0.0
    status: Literal["running", "succeeded", "failed"] = "running"
    skipped_tasks: list[int] = field(default_factory=list)  # every input partition empty: no program ran
    speculation: dict[str, int] = field(default_factory=dict)  # backup attempts launched ("backups") and "won"
    rows_in: int = 0
    bytes_in: int = 0
    rows_out: int = 0
    bytes_out: int = 0
    import_seconds: float = 0.0
    program_seconds: float = 0.0
    export_seconds: float = 0.0
    engine_peak_rss_bytes: int = 0
    program_peak_rss_bytes: int = 0
    inputs: dict[str, list[str]] = field(default_factory=dict)  # input name -> the files it resolved to
    combine_rows_in: int | None = None
    combine_rows_out: int | None = None
    combine_seconds: float | None = None
    task_attempts: list[AttemptRecord] = field(default_factory=list)
    memory_bytes: int | None = None
    cost: dict[str, Any] | None = None  # babelmr.cost's report of the stage (derived from the fields above)
    committed: list[CommittedFile] = field(default_factory=list)
    tolerated_failures: list[ToleratedFailure] = field(default_factory=list)
    skipped_on_resume: bool = False  # finished before a resume: not run again
    resumed_tasks: list[int] = field(default_factory=list)  # committed before a resume: not run again
    version: int = RECORD_VERSION

    @property
    def output_files(self) -> list[str]:
        """URIs of the stage's committed output, one Parquet file per task, in task order."""
        return [c.uri for c in self.committed]

    @property
    def counters(self) -> dict[str, int]:
        """Program counters summed over the attempts that committed (as Hadoop counts successful tasks).

        They come from the commit records, so a winner whose reply was lost still counts, once.
        """
        total: dict[str, int] = {}
        for c in self.committed:
            for name, amount in c.counters.items():
                total[name] = total.get(name, 0) + amount
        return dict(sorted(total.items()))


@dataclass(frozen=True)
class ResumeEntry(Record):
    """One resume of a run: when, what it found, and what changed since the run started."""

    WHAT: ClassVar[str] = "resume entry"

    at: float
    previous_status: str
    host: str
    pid: int
    backend: str
    previous_error: str | None = None
    forced: bool = False
    changes: list[str] = field(default_factory=list)
    command_changed: bool = False


@dataclass(frozen=True)
class RunOutput(Record):
    """Where a finished run's result is: the final stage's files, and the published output if the job has one."""

    WHAT: ClassVar[str] = "run output"

    stage: str
    files: list[str]
    uri: str | None = None  # the published output (the job's ``output``)
    format: str | None = None
    mode: str | None = None
    rows: int | None = None
    parts: list[str] | None = None
    success: str | None = None


@dataclass(frozen=True)
class OutputPart(Record):
    """One part file of a published output, as its ``_SUCCESS`` marker lists it."""

    WHAT: ClassVar[str] = "output part entry"

    name: str
    rows: int
    bytes: int
    task: int | None = None  # the task (partition) that wrote it: parts are numbered in task order


@dataclass(frozen=True)
class OutputSuccess(Record):
    """A published output's ``_SUCCESS`` marker, written last: the parts that make the result."""

    WHAT: ClassVar[str] = "_SUCCESS marker"
    VERSIONED: ClassVar[bool] = True

    run_id: str
    job: str
    format: str
    rows: int
    files: list[OutputPart]
    written_at: float
    schema: str | None = None
    version: int = RECORD_VERSION


@dataclass(frozen=True)
class OutputPublishing(Record):
    """``_PUBLISHING``: what a publication in progress writes and replaces, until its ``_SUCCESS`` is written."""

    WHAT: ClassVar[str] = "_PUBLISHING marker"
    VERSIONED: ClassVar[bool] = True

    run_id: str
    files: list[str]
    version: int = RECORD_VERSION


@dataclass
class RunRecord(Record):
    """What a run did (``layout.run_record``). While the run runs, ``stages`` stays empty in the stored file:
    each finished stage writes its own `StageRecord` and the `LiveState` carries progress."""

    WHAT: ClassVar[str] = "run record"
    VERSIONED: ClassVar[bool] = True

    run_id: str
    job: str
    job_file: str
    store: str
    backend: str
    status: Literal["running", "succeeded", "failed", "interrupted"]
    started_at: float
    host: str
    pid: int
    stage_names: list[str] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    output: RunOutput | None = None
    error: str | None = None
    resumes: list[ResumeEntry] = field(default_factory=list)
    emulated: bool = False  # a Lambda emulator, not AWS: no Lambda charges
    updated_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None
    coordinator_s3_requests: dict[str, int] = field(default_factory=dict)
    cost: dict[str, Any] | None = None  # babelmr.cost's report of the run (derived from the stages)
    version: int = RECORD_VERSION

    def stage(self, name: str) -> StageRecord | None:
        """The entry of stage ``name``, if it has one."""
        return next((s for s in self.stages if s.name == name), None)


@dataclass
class RunningStage(Record):
    """The stage a run is running, as its live state shows it."""

    WHAT: ClassVar[str] = "running stage"

    name: str
    tasks: int  # to run (without skipped and resumed ones)
    started_at: float
    done: int = 0
    failed: int = 0
    retries: int = 0
    running: list[int] = field(default_factory=list)  # tasks with an attempt running
    task_attempts: list[AttemptRecord] = field(default_factory=list)  # finished attempts, ``final`` set
    status_lines: dict[str, str] = field(default_factory=dict)  # task -> its running attempt's status line


@dataclass
class LiveState(Record):
    """A running run's live state (``layout.heartbeat``), rewritten every few seconds by its coordinator.

    Its age says whether the coordinator lives (`babelmr status`, `resume`); ``stage`` is the stage running.
    """

    WHAT: ClassVar[str] = "live state"
    VERSIONED: ClassVar[bool] = True

    run_id: str
    pid: int
    host: str
    updated_at: float
    interval: float  # seconds between writes
    ended: bool = False
    stage: RunningStage | None = None
    version: int = RECORD_VERSION

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> LiveState:
        """The live state; an older babelmr's heartbeat (its ``stage`` a name) still tells age and process."""
        if isinstance(data, dict) and not isinstance(data.get("stage"), (dict, type(None))):
            data = {k: v for k, v in data.items() if k != "stage"}
        return _build(cls, data, where)


@dataclass(frozen=True)
class StagePlanRecord(Record):
    """How a stage was planned (``layout.stage_plan``): a resume plans it alike and skips tasks whose digest held."""

    WHAT: ClassVar[str] = "stage plan"
    VERSIONED: ClassVar[bool] = True

    concurrency: int
    digests: list[str]
    version: int = RECORD_VERSION


@dataclass(frozen=True)
class Fingerprint(Record):
    """What a resume must find unchanged (``layout.fingerprint``): the job file's digest, its structure, its
    external inputs' files as [uri, size, mtime in ns, ETag or None]."""

    WHAT: ClassVar[str] = "fingerprint"
    VERSIONED: ClassVar[bool] = True

    job_file: str
    job_sha256: str
    structure: list[dict[str, Any]]  # per stage: name, inputs, split, key, partitions (job definitions)
    inputs: dict[str, list[list[Any]]]
    version: int = RECORD_VERSION

