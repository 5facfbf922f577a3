"""Run a job: plan each stage, run its tasks on a backend with retries, chain stages, record the run."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from babelmr.backends.base import Backend
from babelmr.bounded import bounded
from babelmr.coordinator.output import FinalFile, check_target, final_files, publish, stage_schema
from babelmr.coordinator.planner import StageOutput, StagePlan, plan_stage
from babelmr.coordinator.records import new_run_id, write_record
from babelmr.coordinator.resume import RunBook, tolerated_failures
from babelmr.coordinator.signals import install_signal_handlers
from babelmr.coordinator.speculation import (
    LOSER_WAIT,
    Attempts,
    Speculator,
    speculation_summary,
    start_thread,
    stops_losers,
)
from babelmr.errors import BabelMRError, JobFailed, StoreError
from babelmr.job import Job, Stage
from babelmr.schemas import deserialize_schema, serialize_schema
from babelmr.spec import (
    AttemptRecord,
    CommitRecord,
    CommittedFile,
    RunOutput,
    RunRecord,
    StageManifest,
    StageRecord,
    TaskResult,
    TaskSpec,
)
from babelmr.store import layout, open_store
from babelmr.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class TaskOutcome:
    spec: TaskSpec
    attempts: list[TaskResult] = field(default_factory=list)
    state: Attempts = field(default_factory=Attempts)

    @property
    def final(self) -> TaskResult:
        """The attempt that committed (a speculative backup may have beaten a later-listed one), else the last."""
        return self.state.winner or self.attempts[-1]


class StageProgress:
    """Receives stage and task events; the CLI draws progress bars from them."""

    def stage_started(self, stage: Stage, tasks: int) -> None: ...
    def task_started(self, stage: Stage, spec: TaskSpec) -> None: ...
    def task_finished(self, stage: Stage, result: TaskResult) -> None: ...
    def task_retrying(self, stage: Stage, result: TaskResult) -> None: ...
    def stage_finished(self, stage: Stage, summary: StageRecord) -> None: ...


def _run_attempts(backend: Backend, spec: TaskSpec, retries: int, stop: threading.Event,
                  on_retry: Callable[[TaskResult], None], outcome: TaskOutcome | None = None) -> TaskOutcome:
    """Attempts of one task until one commits, retries run out, or the error will not go away."""
    outcome = outcome or TaskOutcome(spec)
    first = spec.attempt  # 1, or on resume the attempt after the task's earlier ones
    for attempt in range(first, first + retries + 1):
        if outcome.state.settled:  # a speculative backup committed
            break
        result = _attempt(backend, spec.with_attempt(attempt), outcome)
        for name, why in (result.stats.import_decoded_because or {}).items():  # logged in the worker's process
            log.debug("%s: input %r decoded, not copied: %s", spec.with_attempt(attempt).label, name, why)
        if result.status == "duplicate":
            log.info("%s: another attempt of the task committed first; this one's output was deleted",
                     spec.with_attempt(attempt).label)
        if result.status != "error" or not result.retryable or attempt == first + retries or stop.is_set():
            break
        if outcome.state.settled:
            break
        # INFO: the progress display already shows each retry; the log keeps the cause with -v
        log.info("%s failed; retrying (%d of %d retries): %s", spec.with_attempt(attempt).label, attempt - first + 1,
                 retries, (result.error or "").splitlines()[0] if result.error else "no error message")
        on_retry(result)
    return outcome


def _attempt(backend: Backend, spec: TaskSpec, outcome: TaskOutcome) -> TaskResult:
    """One attempt of a task; the first attempt of a task to commit stops the others."""
    outcome.state.started(spec)
    result = TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: interrupted")
    try:
        result = backend.run_task(spec)
    finally:
        outcome.attempts.append(result)
        outcome.state.finished(backend, result)
    return result


def run_stage(plan: StagePlan, backend: Backend, progress: StageProgress, *, skip: set[int] | None = None,
              tolerated: int = 0) -> list[TaskOutcome]:
    """Run the tasks of a stage (but ``skip``) with bounded concurrency; once more than ``tolerated`` tasks
    failed for good, start no new tasks.

    Stragglers get a backup attempt (`babelmr.coordinator.speculation`); a task is done when one attempt
    committed, or when all of its attempts have ended.
    """
    stage = plan.stage
    stop = threading.Event()
    outcomes: list[TaskOutcome] = []
    pending = [t for t in plan.tasks if t.task not in (skip or set())]
    failures = 0
    running: dict[Future, TaskOutcome] = {}
    losers: list[Future] = []
    limit = backend.stage_concurrency(stage)
    speculator = Speculator(stage, backend, len(pending))

    def launch(fn: Callable[..., Any], outcome: TaskOutcome, *args: Any) -> None:
        outcome.state.futures += 1
        running[start_thread(fn, *args, name=f"stage-{stage.name}")] = outcome

    try:
        while pending or running:
            while pending and len(running) < limit and not stop.is_set():
                spec = pending.pop(0)
                progress.task_started(stage, spec)
                outcome = TaskOutcome(spec)
                launch(_run_attempts, outcome, backend, spec, stage.retries, stop,
                       lambda r: progress.task_retrying(stage, r), outcome)
            if not running:
                break
            if not stop.is_set():
                waiting = {id(o): (o.spec, o.state) for o in running.values() if not o.state.reported}
                for backup, state in speculator.stragglers(waiting.values(), limit - len(running)):
                    owner = next(o for o in running.values() if o.state is state)
                    launch(_attempt, owner, backend, backup, owner)
            done, _ = wait(running, timeout=speculator.tick, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = running.pop(future)
                future.result()
                outcome.state.futures -= 1
                if outcome.state.reported or (outcome.state.futures and not outcome.state.settled):
                    continue  # reported already, or another attempt of the task still runs and may commit
                outcome.state.reported = True
                speculator.task_done(outcome.state)
                outcomes.append(outcome)
                progress.task_finished(stage, outcome.final)
                if outcome.final.status == "error":
                    failures += 1
                    if failures > tolerated:
                        stop.set()
            # a settled task's loser may still run (Lambda cannot be stopped): it holds no slot
            for future in [f for f, o in running.items() if o.state.reported]:
                running.pop(future)
                losers.append(future)
    except BaseException:
        # Ctrl-C or a bug: do not wait for running tasks here; the backend's close() stops them.
        stop.set()
        raise
    if stops_losers(backend):  # stopped ones end at once: their attempts then show in the record
        wait(losers, timeout=LOSER_WAIT)
    return sorted(outcomes, key=lambda o: o.spec.task)


def committed_files(store: Store, run_id: str, stage: Stage, tasks: int,
                    tolerated: set[int] | None = None) -> list[CommitRecord]:
    """The commit records of a stage, read from the store (the source of truth, not the replies)."""
    records = {}
    for entry in store.list(layout.commit_prefix(run_id, stage.name)):
        record = CommitRecord.from_json(store.read_bytes(entry.path), store.uri_for(entry.path))
        records[record.task] = record
    missing = [t for t in range(tasks) if t not in records and t not in (tolerated or set())]
    if missing:
        raise JobFailed(f"stage {stage.name!r}: tasks {missing} have no commit record although they reported "
                        "success: the store lost writes?")
    return [records[t] for t in range(tasks) if t in records]


def _commit_skipped(store: Store, run_id: str, plan: StagePlan) -> None:
    """Commit records for the tasks whose inputs are all empty: no program ran, no file, no rows."""
    stage = plan.stage
    for task in plan.skipped:
        record = CommitRecord(task=task, attempt=0, file=None, uri=None, rows=0, bytes=0,
                              partition_rows=[0] * stage.partitions, committed_at=time.time(),
                              skipped="every input partition is empty")
        store.put_if_absent(layout.commit_record(run_id, stage.name, task), record.to_json().encode())
    if plan.skipped:
        log.info("stage %r: tasks %s skipped: every input partition they read is empty", stage.name, plan.skipped)


def _clean_uncommitted(store: Store, run_id: str, stage: str, commits: list[CommitRecord]) -> None:
    keep = {c.file for c in commits}
    uncommitted = [e.path for e in store.list(layout.data_prefix(run_id, stage)) if e.path not in keep]
    if uncommitted:  # failed or duplicate attempts that could not delete their own output
        log.info("stage %r: deleting %d uncommitted file(s): %s", stage, len(uncommitted), uncommitted)
    store.delete(uncommitted)


def _failure_message(stage: Stage, failed: TaskOutcome | None) -> str:
    """Why a stage failed: its stage, task, last attempt, whether it was retried, and the cause."""
    if failed is None:
        return f"stage {stage.name!r} failed: interrupted before every task ran"
    last = failed.final
    if not last.retryable:
        why = "not retried: the error is deterministic, another attempt would fail the same way"
    elif last.attempt > stage.retries:
        why = f"every attempt failed (the stage allows {stage.retries} retries)"
    else:
        why = "not retried: the run was stopped"
    # the error itself starts with the stage, task and attempt (TaskSpec.label) and says the cause
    return (f"stage {stage.name!r} failed: task {last.task} failed after {len(failed.attempts)} attempt(s) "
            f"({why}):\n{last.error}")


def attempt_entry(result: TaskResult, final: bool | None = None) -> AttemptRecord:
    """How the run record lists one attempt (a finished stage's ``task_attempts``, the live state's too)."""
    return AttemptRecord(result.task, result.attempt, result.status, bounded(result.error),
                         result.retryable if result.status == "error" else None, final, result.stats)


def committed_entry(commit: CommitRecord) -> CommittedFile:
    """How a stage's entry lists a committed file."""
    assert commit.uri is not None  # only commits with a file are listed
    return CommittedFile(commit.task, commit.attempt, commit.uri, commit.rows, commit.bytes, dict(commit.counters))


def _stage_summary(plan: StagePlan, outcomes: list[TaskOutcome], seconds: float) -> StageRecord:
    tasks = [attempt_entry(r) for o in outcomes for r in o.attempts]
    ok = [o.final.stats for o in outcomes if o.final.status != "error"]
    summary = StageRecord(
        name=plan.stage.name,
        tasks=len(plan.tasks),
        skipped_tasks=plan.skipped,
        attempts=sum(len(o.attempts) for o in outcomes),
        retries=sum(len(o.attempts) - 1 - (o.state.backup is not None) for o in outcomes),
        speculation=speculation_summary(o.state for o in outcomes),
        seconds=seconds,
        rows_in=sum(s.rows_in or 0 for s in ok),
        bytes_in=sum(s.bytes_in or 0 for s in ok),
        rows_out=sum(s.rows_out or 0 for s in ok),
        bytes_out=sum(s.bytes_out or 0 for s in ok),
        import_seconds=sum(s.import_seconds or 0.0 for s in ok),
        program_seconds=sum(s.program_seconds or 0.0 for s in ok),
        export_seconds=sum(s.export_seconds or 0.0 for s in ok),
        engine_peak_rss_bytes=max((s.engine_peak_rss_bytes or 0 for s in ok), default=0),
        program_peak_rss_bytes=max((s.program_peak_rss_bytes or 0 for s in ok), default=0),
        inputs=plan.resolved_inputs,
        task_attempts=tasks,
    )
    if any(s.combine_rows_in is not None for s in ok):  # rows the combiners got and gave (worker/combine.py)
        summary.combine_rows_in = sum(s.combine_rows_in or 0 for s in ok)
        summary.combine_rows_out = sum(s.combine_rows_out or 0 for s in ok)
        summary.combine_seconds = sum(s.combine_seconds or 0.0 for s in ok)
    return summary


def run_job(job: Job, backend: Backend, *, progress: StageProgress | None = None,
            store_uri: str | None = None, run_id: str | None = None, resume: str | None = None,
            force: bool = False) -> RunRecord:
    """Run every stage of ``job`` in order; returns the run record (also written to the store).

    Raises `JobFailed` when a task fails on every attempt; the record then says which and why.
    ``run_id`` (default: a new one) lets a caller find the record of a run that raised. ``resume``
    continues that run instead (coordinator/resume.py); ``force`` accepts changed inputs then.
    """
    from babelmr.coordinator.live import LiveWriter
    from babelmr.cost import load_prices, run_cost, stage_usage
    from babelmr.store import requests

    prices = load_prices()
    coordinator_requests = requests.snapshot()
    store = open_store(store_uri or job.store)
    store.check()
    if job.output:
        check_target(job.output)  # before the run starts: a refused output costs nothing and leaves no trace
    book = (RunBook.resume(store, job, backend, resume, force=force) if resume
            else RunBook.start(store, job, backend, run_id or new_run_id(job.name)))
    run_id, record = book.run_id, book.record
    record.emulated = backend.emulated
    write_record(store, record)
    progress = live = LiveWriter(progress or StageProgress(), store, run_id).start()  # forwards every event
    final: list[FinalFile] = []
    schema = None
    upstream: dict[str, StageOutput] = {}
    restore_signals = install_signal_handlers(backend.close)  # SIGTERM stops the run like Ctrl-C
    try:
        book.write_fingerprint()
        backend.prepare(job, store, run_id)
        for stage in job.stages:
            finished = book.finished_stage(stage)
            if finished is not None:
                upstream[stage.name] = finished
                if stage is job.stages[-1] and finished.schema is not None:  # resumed after the last stage
                    schema = deserialize_schema(finished.schema)
                    final = final_files(store, run_id, stage.name, finished.commits, schema)
                continue
            started = time.perf_counter()
            concurrency = book.plan_concurrency(stage, backend.stage_concurrency(stage))
            plan = plan_stage(job, stage, run_id, store.uri, upstream, concurrency)
            backend.check_tasks(stage, plan.tasks)
            skip = book.prepare_stage(plan, concurrency)
            _commit_skipped(store, run_id, plan)
            skip |= set(plan.skipped)
            progress.stage_started(stage, len(plan.tasks) - len(skip))
            outcomes = run_stage(plan, backend, progress, skip=skip, tolerated=stage.tolerated(len(plan.tasks)))
            summary = _stage_summary(plan, outcomes, time.perf_counter() - started)
            summary.memory_bytes = stage.memory or backend.memory_per_task  # a local run has no memory size
            summary.cost = stage_usage(summary, prices).to_dict(prices)
            failed = [o for o in outcomes if o.final.status == "error"]
            forgiven = tolerated_failures(store, plan, failed) if failed else []
            if forgiven is None or len(outcomes) + len(skip) < len(plan.tasks):
                summary.status = "failed"
                record.stages.append(summary)
                with contextlib.suppress(StoreError):  # a store that is down: the tasks' error says more
                    book.stage_finished(summary, skip)
                # the cause, not a task stopped because of it
                causes = [o for o in failed if not o.final.retryable or o.final.attempt > stage.retries]
                raise JobFailed(_failure_message(stage, (causes or failed)[0] if causes or failed else None))
            commits = committed_files(store, run_id, stage, len(plan.tasks), {f.task for f in forgiven})
            _clean_uncommitted(store, run_id, stage.name, commits)
            files = [c.uri for c in commits if c.file and c.uri]
            try:
                schema = stage_schema(stage.name, commits)  # a lossy disagreement between tasks fails here
                if stage is job.stages[-1]:  # readers see the result as one dataset: one schema in every file
                    final = final_files(store, run_id, stage.name, commits, schema)
                    files = [f.uri for f in final]
            except BabelMRError:
                summary.status = "failed"
                record.stages.append(summary)
                raise
            manifest = StageManifest(
                stage=stage.name, partitions=stage.partitions, key=list(stage.key) if stage.key else None, files=files,
                commits=commits,
                schema=schema.to_string(show_schema_metadata=False) if schema is not None else None,
                arrow_schema=serialize_schema(schema) if schema is not None else None,
                failed_tasks=[f.task for f in forgiven])
            store.write_bytes(layout.stage_manifest(run_id, stage.name), manifest.to_json(indent=2).encode())
            upstream[stage.name] = StageOutput(stage.name, stage.partitions, files, commits,
                                               serialize_schema(schema) if schema is not None else None)
            summary.status = "succeeded"
            summary.committed = [committed_entry(c) for c in commits if c.file]
            if skip:  # tasks committed before the resume count too: the commit records are the truth
                summary.rows_out, summary.bytes_out = sum(c.rows for c in commits), sum(c.bytes for c in commits)
            summary.tolerated_failures = forgiven
            record.stages.append(summary)
            progress.stage_finished(stage, summary)
            book.stage_finished(summary, skip)
        last = job.stages[-1].name
        record.output = (publish(job, run_id, final, schema, last) if job.output
                         else RunOutput(stage=last, files=upstream[last].files))
        record.status = "succeeded"
        return record
    except BaseException as e:
        record.status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        record.error = bounded(str(e) or type(e).__name__)
        raise
    finally:
        live.close()
        record.finished_at = time.time()
        record.seconds = record.finished_at - record.started_at
        now = requests.snapshot()
        record.coordinator_s3_requests = {k: now[k] - coordinator_requests.get(k, 0) for k in now}
        record.cost = run_cost(record, prices).to_dict()
        try:
            write_record(store, record)
        except StoreError:
            if record.status == "succeeded":
                raise
            # the store is down: the run's own error says more; the record stays `running` (resumable)
        finally:
            restore_signals()
