"""One task attempt, end to end: import -> run the program -> export -> commit.

Commit protocol (docs/commit-protocol.md): the attempt writes its output under an attempt-specific
key, then creates the task's commit record only if none exists. The first attempt to do so wins;
a later duplicate deletes its own output. Downstream stages read only committed files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import secrets
import shlex
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import botocore.exceptions
import pyarrow as pa

from babelmr.bounded import log_for_store
from babelmr.errors import BabelMRError, TaskError
from babelmr.schemas import serialize_schema
from babelmr.spec import JOB_DIR_ENV, CommitRecord, TaskResult, TaskSpec, TaskStats
from babelmr.store import layout, open_store, requests
from babelmr.store.base import Store
from babelmr.worker.combine import run_combiner
from babelmr.worker.exporter import export_partitions
from babelmr.worker.formats import EXTENSIONS, arrow_schema, csv_conversion_error, open_output
from babelmr.worker.importer import import_inputs
from babelmr.worker.partition import UnsupportedKeyError
from babelmr.worker.partitioners import make_splitter
from babelmr.worker.plain import export_plain
from babelmr.worker.program import run_program, stderr_tail
from babelmr.worker.warm import prestart, run_warm

log = logging.getLogger(__name__)
PASS_CREDENTIALS = "BABELMR_PROGRAM_AWS_CREDENTIALS"
PROGRAM_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                   "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN")


def program_env(spec: TaskSpec, workdir: str, paths: dict[str, str], output: str) -> dict[str, str]:
    """The program's environment: ours without AWS secrets, the job's ``env``, then the ``MR_*`` variables.

    The engine's AWS credentials (keys, session token, the credentials file's path) reach the program only
    when the job's ``env`` sets ``BABELMR_PROGRAM_AWS_CREDENTIALS`` to ``1``, or names a variable itself.
    """
    env = dict(os.environ)
    if spec.env.get(PASS_CREDENTIALS) != "1":
        for name in PROGRAM_SECRETS:
            env.pop(name, None)
    env.update(spec.env)
    env.update({
        "MR_MODE": spec.mode or "",
        "MR_JOB": spec.job,
        "MR_RUN_ID": spec.run_id,
        "MR_STAGE": spec.stage,
        "MR_TASK": str(spec.task),
        "MR_ATTEMPT": str(spec.attempt),
        "MR_FORMAT": spec.program_format,
        "MR_INPUTS": json.dumps(paths),
        "MR_OUTPUT": output,
        "MR_WORKDIR": workdir,
        "MR_KEY": ",".join(spec.key or []),
        "MR_PARTITIONS": str(spec.partitions),
    })
    if len(paths) == 1:
        env["MR_INPUT"] = next(iter(paths.values()))
    else:
        env.pop("MR_INPUT", None)
    partition = next((i.partition for i in spec.inputs if i.kind == "stage"), None)
    if partition is not None:
        env["MR_PARTITION"] = str(partition)
    return env


def program_command(spec: TaskSpec) -> list[str]:
    """The stage's command, else the image's ``MR_CMD``; ``{job_dir}`` resolved where the task runs."""
    if spec.command:
        command = list(spec.command)
    elif os.environ.get("MR_CMD"):
        command = shlex.split(os.environ["MR_CMD"])
    else:
        raise TaskError(f"{spec.label}: no command to run: give the stage a 'command' (the local backend needs "
                        "one), or build its image with ENV MR_CMD", retryable=False)
    job_dir = os.environ.get(JOB_DIR_ENV) or spec.job_dir
    if spec.shell:  # one shell word: a folder named 'a b' or 'x$(touch y)' must not split or run anything
        job_dir = shlex.quote(job_dir)
    return [part.replace("{job_dir}", job_dir) for part in command]


def prestart_warm(spec: TaskSpec, workdir: str) -> bool:
    """Start the warm program of ``spec``'s stage (a spec without inputs: `planner.stage_spec`) before its first
    task reaches this worker, so its start-up overlaps the planning and the stages before it. True if started."""
    if not spec.warm:
        return False
    try:
        command = program_command(spec)
    except TaskError:
        return False  # the task reports it
    started = prestart(command, spec.mode, shell=spec.shell, env=program_env(spec, workdir, {}, ""),
                       workdir=workdir, label=spec.label)
    if started:
        log.debug("%s: warm program started ahead of the stage's first task", spec.label)
    return started


def _failure(spec: TaskSpec, what: str, stderr_path: str | None) -> str:
    tail = stderr_tail(stderr_path) if stderr_path else ""
    shown = f"\n--- last lines of the program's stderr ---\n{tail}" if tail else ""
    return f"{spec.label}: {what}{shown}"


def _unreadable(spec: TaskSpec, output: str, schema: pa.Schema | None, error: Exception) -> str:
    """What went wrong reading the program's output, and the fix."""
    name = os.path.basename(output)
    bad = csv_conversion_error(error, schema.names) if schema is not None else None
    if bad:
        column, type_, value = bad
        if column not in (spec.schema or {}):  # pyarrow infers CSV types from the first block only
            return (f"column {column!r} of {name} was inferred as {type_} from its first rows, but a later row "
                    f"holds {value!r}: declare the column's type in the stage's 'schema' "
                    f"(e.g. \"{column}\": \"{'float64' if type_ == 'int64' else 'string'}\")")
        return f"column {column!r} of {name} is declared {type_} but a row holds {value!r}: fix the program " \
               "or the stage's 'schema'"
    return f"cannot read the program's output {name} as {spec.program_format}: {error} (declare column types " \
           "with the stage's 'schema')"


def _output_batches(spec: TaskSpec, output: str, stderr_path: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The program's output as (schema, batches), checked for the key columns.

    An output that names no column (a 0-byte CSV/JSONL file, a Parquet file without columns) is an empty
    output of the declared ``schema``, with key columns not declared typed ``null`` (unknown: other tasks'
    types win). An output that names its columns keeps them, also with 0 rows, and must hold the key.
    """
    if not os.path.exists(output):
        raise TaskError(_failure(spec, f"the program exited 0 but wrote no output file {os.path.basename(output)} "
                                       "(write it to the path in $MR_OUTPUT)", stderr_path), retryable=False)
    types = arrow_schema(spec.schema) or {}
    schema: pa.Schema | None = None
    try:
        schema, batches = open_output(output, spec.program_format, types)
        first = next(batches, None)
    except (pa.ArrowInvalid, OSError) as e:
        raise TaskError(_failure(spec, _unreadable(spec, output, schema, e), stderr_path), retryable=False) from None
    if schema is None:
        if first is None:
            schema = pa.schema([*types.items(), *((k, pa.null()) for k in spec.key or [] if k not in types)])
            return schema, iter(())
        schema = first.schema
    if types:  # Parquet output too: declared types are what the stage exports (the exporter casts)
        schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in schema])
    missing = [k for k in spec.key or [] if k not in schema.names]
    if missing:
        raise TaskError(_failure(spec, f"the program's output has no key column(s) {missing}; it has "
                                       f"{schema.names}: write them, or fix the stage's 'key'", stderr_path),
                        retryable=False)

    def all_batches() -> Iterator[pa.RecordBatch]:
        if first is None:
            return
        yield first
        try:
            yield from batches
        except pa.ArrowInvalid as e:
            raise TaskError(_failure(spec, _unreadable(spec, output, schema, e), stderr_path),
                            retryable=False) from None

    return schema, all_batches()


def _upload_logs(store: Store, spec: TaskSpec, stdout_path: str, stderr_path: str) -> None:
    for stream, path in (("stdout", stdout_path), ("stderr", stderr_path)):
        if os.path.exists(path) and os.path.getsize(path):
            # a bounded tail: a program that printed gigabytes must not cost the store (or `logs`) as much
            store.write_bytes(layout.task_log(spec.run_id, spec.stage, spec.task, spec.attempt, stream),
                              log_for_store(path))


def use_jemalloc() -> None:
    """Allocate Arrow memory with jemalloc unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses.

    pyarrow's default, mimalloc, keeps freed memory for reuse: on a 4 GB partition the worker peaked
    100-200 MB higher with it than with jemalloc, at the same speed (benchmarks/micro.py, peak RSS).
    """
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ and pa.default_memory_pool().backend_name != "jemalloc":
        with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc
            pa.set_memory_pool(pa.jemalloc_memory_pool())


def execute(spec: TaskSpec, workdir: str, stats: TaskStats | None = None) -> TaskResult:
    """Run the attempt in ``workdir`` (which it may fill) and commit its output to the store.

    ``stats`` (filled as the attempt goes) lets a caller report the times of an attempt that failed.
    """
    use_jemalloc()
    requests.reset()  # one attempt at a time per worker process: its counts are this attempt's
    stats = TaskStats() if stats is None else stats
    stats.started_at, stats.memory_bytes, stats.s3_requests = time.time(), spec.memory, {}
    store = open_store(spec.store)
    log_dir = os.path.join(workdir, ".babelmr")
    os.makedirs(log_dir, exist_ok=True)

    imported, stats.import_seconds = import_inputs(spec.inputs, workdir, spec.program_format)
    pa.default_memory_pool().release_unused()  # give the import's memory back before the program runs
    stats.rows_in = sum(i.rows for i in imported)
    stats.bytes_in = sum(i.bytes for i in imported)
    stats.import_methods = {i.name: i.method for i in imported}
    stats.import_decoded_because = {i.name: i.why for i in imported if i.method == "decode"}
    paths = {i.name: i.path for i in imported}
    output = os.path.join(workdir, f"out.{EXTENSIONS[spec.program_format]}")

    env = program_env(spec, workdir, paths, output)
    if spec.warm:  # one program per worker serves many tasks (worker/warm.py); no live status lines
        run = run_warm(program_command(spec), spec.mode, shell=spec.shell, env=env, workdir=workdir, log_dir=log_dir,
                       timeout=spec.timeout, label=spec.label)
    else:
        run = run_program(program_command(spec), spec.mode, shell=spec.shell, env=env, workdir=workdir,
                          log_dir=log_dir, timeout=spec.timeout, label=spec.label,
                          on_status=_status_writer(store, spec))
    stats.program_seconds, stats.program_peak_rss_bytes = run.seconds, run.peak_rss_bytes
    stats.counters, stats.status_line = run.counters, run.status
    try:
        if run.timed_out:
            raise TaskError(_failure(spec, f"the program ran longer than the stage's timeout of {spec.timeout:g} s "
                                           "and was killed", run.stderr_path))
        if run.failure:
            raise TaskError(_failure(spec, run.failure, run.stderr_path), retryable=run.retryable)
        if run.exit_code != 0:
            for i in imported:  # copied Parquet was never decoded: was a corrupt input the cause?
                i.check_copied()
            killed = " (killed: out of memory? give the stage more 'memory')" if run.exit_code == -9 else ""
            # /bin/sh's codes for a command it cannot find or execute: another attempt would fail the same way
            not_found = spec.shell and run.exit_code in (126, 127)
            if not_found:
                killed = " (the shell could not find or execute a command: fix the stage's 'command')"
            raise TaskError(_failure(spec, f"the program {' '.join(run.argv)!r} exited with code {run.exit_code}"
                                           f"{killed}", run.stderr_path), retryable=not not_found)

        start = time.perf_counter()
        schema, batches = _output_batches(spec, output, run.stderr_path)
        if spec.combiner:  # the whole output, sorted by key, through the combiner (worker/combine.py)
            schema, batches = run_combiner(spec, workdir, schema, batches, store, stats)
        fmt = spec.output_format or "parquet"
        key = layout.attempt_data(spec.run_id, spec.stage, spec.task, spec.attempt, secrets.token_hex(4),
                                  EXTENSIONS[fmt])
        try:
            if spec.output_format:  # the final stage of a job with an output: the published file, as it will be
                rows = export_plain(batches, schema, store.open_output(key), fmt,
                                    os.path.join(workdir, f"final.{EXTENSIONS[fmt]}"))
                partition_rows = [rows]
            else:
                split = make_splitter(spec.key, spec.partitions, spec.partitioner, spec.partition_options,
                                      spec.stage, spec.task)
                partition_rows = export_partitions(batches, schema, store.open_output(key), spec.key,
                                                   spec.partitions, split).rows
            size = store.size(key)
            requests.count_upload(size)
        except UnsupportedKeyError as e:  # the same output fails every attempt the same way
            store.delete([key])
            raise TaskError(_failure(spec, f"{e}", run.stderr_path), retryable=False) from None
        except BaseException:
            # the stage's clean-up removes it too: a failing delete (the store is down) must not hide the cause
            with contextlib.suppress(Exception):
                store.delete([key])
            raise
        stats.export_seconds, stats.rows_out, stats.bytes_out = time.perf_counter() - start, sum(partition_rows), size

        commit = CommitRecord(task=spec.task, attempt=spec.attempt, file=key, uri=store.uri_for(key),
                              rows=sum(partition_rows), bytes=size, partition_rows=partition_rows, format=fmt,
                              schema=schema.to_string(show_schema_metadata=False),
                              arrow_schema=serialize_schema(schema), committed_at=time.time(),
                              # the winner's counters must survive its reply being lost (a duplicate reports then)
                              counters=dict(stats.counters or {}))
        if not store.put_if_absent(layout.commit_record(spec.run_id, spec.stage, spec.task),
                                   commit.to_json().encode()):
            log.info("%s: another attempt committed the task first: its output %s is deleted", spec.label, key)
            store.delete([key])  # another attempt of this task committed first
            return TaskResult("duplicate", spec.stage, spec.task, spec.attempt, stats=_finish(stats))
        return TaskResult("ok", spec.stage, spec.task, spec.attempt, commit=commit, stats=_finish(stats))
    finally:
        # logs are a courtesy: a store outage must not turn a committed attempt into an error, or hide the cause
        with contextlib.suppress(BabelMRError, OSError, botocore.exceptions.BotoCoreError,
                                 botocore.exceptions.ClientError):
            _upload_logs(store, spec, run.stdout_path, run.stderr_path)
        stats.s3_requests = requests.snapshot()


def _status_writer(store: Store, spec: TaskSpec) -> Callable[[str], None]:
    """Publishes the program's latest status line in the store, for progress displays and the dashboard."""
    key = layout.task_status(spec.run_id, spec.stage, spec.task, spec.attempt)
    last_at, last_text = 0.0, None

    def write(text: str) -> None:
        nonlocal last_at, last_text
        # at most one write a second: a chatty program must not turn into a flood of PUTs
        if text != last_text and time.monotonic() - last_at >= 1.0:
            store.write_bytes(key, text.encode())
            last_at, last_text = time.monotonic(), text

    return write


def _finish(stats: TaskStats) -> TaskStats:
    stats.finished_at = time.time()
    stats.s3_requests = requests.snapshot()
    stats.engine_peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stats.memory_pool = pa.default_memory_pool().backend_name
    return stats


# Exceptions from a deterministic cause (a type, a value, a missing column or field): the same input makes
# another attempt fail the same way. Checked after babelmr's own errors, OSError and MemoryError.
DETERMINISTIC: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, NotImplementedError, AttributeError)


def retryable(e: BaseException) -> bool:
    """Whether another attempt can succeed after ``e``: the one place a task's errors are classified.

    babelmr's errors say so themselves (`BabelMRError.retryable`); I/O, network and memory errors are transient;
    type and value errors (pyarrow's ArrowInvalid, ArrowTypeError, ArrowNotImplementedError among them) and
    permission errors are deterministic; anything else is retried.
    """
    if isinstance(e, BabelMRError):
        return e.retryable
    if isinstance(e, PermissionError):  # a file's or folder's mode does not change between attempts
        return False
    if isinstance(e, (OSError, MemoryError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
        return True
    return not isinstance(e, DETERMINISTIC)


def run_task(spec: TaskSpec, workdir: str, *, keep_workdir: bool = False) -> TaskResult:
    """Run one attempt and never raise: errors come back as a ``TaskResult`` with status ``error``.

    The error names the stage, task and attempt (`TaskSpec.label`) and the cause; ``retryable`` is `retryable`.
    """
    os.makedirs(workdir, exist_ok=True)
    before = set(os.listdir(workdir))
    stats = TaskStats()  # a failed attempt reports how far it got (the timeline shows it)
    engine_log = _AttemptLog()
    try:
        return execute(spec, workdir, stats)
    except Exception as e:
        cause = str(e) if isinstance(e, BabelMRError) else f"{type(e).__name__}: {e}"
        error = cause if cause.startswith(spec.label) else f"{spec.label}: {cause}"
        if not isinstance(e, BabelMRError):  # a bug or an unforeseen failure: keep the whole traceback
            log.debug("%s: unexpected error", spec.label, exc_info=True)
            engine_log.lines.append(f"{spec.label}: unexpected error:\n{traceback.format_exc()}")
            # babelmr's own errors say what to fix: only an unexpected one costs the extra write
            if where := _upload_engine_log(spec, engine_log.finish()):
                error += f" (full traceback: {where})"
        return TaskResult("error", spec.stage, spec.task, spec.attempt, error=error, retryable=retryable(e),
                          stats=_finish(stats))
    finally:
        engine_log.finish()
        if not keep_workdir:
            _clean(workdir, before)


class _AttemptLog(logging.Handler):
    """The babelmr log records of one attempt (those of its thread), for the task's engine log in the store.

    When nothing in this process configured logging (a worker process, a container), records down to INFO are
    kept (the engine's decisions: copy or decode and why, ...); else the level the process chose applies.
    """

    _lock = threading.Lock()
    _active = 0
    _saved_level = logging.NOTSET

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._thread = threading.get_ident()
        self._closed = False
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("babelmr")
        with _AttemptLog._lock:
            if _AttemptLog._active == 0:
                _AttemptLog._saved_level = logger.level
                unconfigured = not logging.getLogger().handlers and not logger.handlers
                if unconfigured and logger.getEffectiveLevel() > logging.INFO:
                    logger.setLevel(logging.INFO)
            _AttemptLog._active += 1
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self.lines.append(self.format(record))

    def finish(self) -> str:
        """Stop collecting; returns the log's text."""
        if not self._closed:
            self._closed = True
            logger = logging.getLogger("babelmr")
            logger.removeHandler(self)
            with _AttemptLog._lock:
                _AttemptLog._active -= 1
                if _AttemptLog._active == 0:
                    logger.setLevel(_AttemptLog._saved_level)
            self.close()
        return "\n".join(self.lines) + "\n" if self.lines else ""


def _upload_engine_log(spec: TaskSpec, text: str) -> str | None:
    """Write the engine log of an attempt that failed unexpectedly; returns its URI (None: not written)."""
    if not text:
        return None
    try:
        store = open_store(spec.store)
        key = layout.task_log(spec.run_id, spec.stage, spec.task, spec.attempt, "engine")
        store.write_bytes(key, text.encode())
        return store.uri_for(key)
    except Exception:  # the store itself may be what failed: the error message still reaches the user
        log.debug("%s: cannot write the engine log", spec.label, exc_info=True)
        return None


def _clean(workdir: str, keep: set[str]) -> None:
    """Remove what the attempt created (in a container the working directory is /tmp itself)."""
    for name in set(os.listdir(workdir)) - keep:
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
