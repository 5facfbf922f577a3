"""Run a job: plan each stage, run its tasks on a backend with retries, chain stages, record the run."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from babelmr.backends.base import Backend
from babelmr.coordinator.planner import StageOutput, StagePlan, plan_stage
from babelmr.coordinator.records import new_run_id, write_record
from babelmr.errors import JobFailed
from babelmr.job import Job, Stage
from babelmr.spec import TaskResult, TaskSpec
from babelmr.store import layout, open_store
from babelmr.store.base import Store
from babelmr.store.s3 import S3Store


@dataclass
class TaskOutcome:
    spec: TaskSpec
    attempts: list[TaskResult] = field(default_factory=list)

    @property
    def final(self) -> TaskResult:
        return self.attempts[-1]


class StageProgress:
    """Receives stage and task events; the CLI draws progress bars from them."""

    def stage_started(self, stage: Stage, tasks: int) -> None: ...
    def task_finished(self, stage: Stage, result: TaskResult) -> None: ...
    def task_retrying(self, stage: Stage, result: TaskResult) -> None: ...
    def stage_finished(self, stage: Stage, summary: dict[str, Any]) -> None: ...


def _run_attempts(backend: Backend, spec: TaskSpec, retries: int, stop: threading.Event,
                  on_retry: Callable[[TaskResult], None]) -> TaskOutcome:
    """Attempts of one task until one commits, retries run out, or the error will not go away."""
    outcome = TaskOutcome(spec)
    for attempt in range(1, retries + 2):
        result = backend.run_task(spec.with_attempt(attempt))
        outcome.attempts.append(result)
        if result.status != "error" or not result.retryable or attempt == retries + 1 or stop.is_set():
            break
        on_retry(result)
    return outcome


def run_stage(plan: StagePlan, backend: Backend, progress: StageProgress) -> list[TaskOutcome]:
    """Run every task of a stage with bounded concurrency; on a task's final failure start no new tasks."""
    stage = plan.stage
    stop = threading.Event()
    outcomes: list[TaskOutcome] = []
    pending = list(plan.tasks)
    running: set[Future] = set()
    pool = ThreadPoolExecutor(max_workers=backend.stage_concurrency(stage), thread_name_prefix=f"stage-{stage.name}")
    try:
        while pending or running:
            while pending and len(running) < backend.stage_concurrency(stage) and not stop.is_set():
                spec = pending.pop(0)
                running.add(pool.submit(_run_attempts, backend, spec, stage.retries, stop,
                                        lambda r: progress.task_retrying(stage, r)))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                outcomes.append(outcome)
                progress.task_finished(stage, outcome.final)
                if outcome.final.status == "error":
                    stop.set()
    except BaseException:
        # Ctrl-C or a bug: do not wait for running tasks here; the backend's close() stops them.
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return sorted(outcomes, key=lambda o: o.spec.task)


def committed_files(store: Store, run_id: str, stage: Stage, tasks: int) -> list[dict[str, Any]]:
    """The commit records of a stage, read from the store (the source of truth, not the replies)."""
    records = {}
    for entry in store.list(layout.commit_prefix(run_id, stage.name)):
        record = json.loads(store.read_bytes(entry.path))
        records[record["task"]] = record
    missing = [t for t in range(tasks) if t not in records]
    if missing:
        raise JobFailed(f"stage {stage.name!r}: tasks {missing} have no commit record although they reported "
                        "success: the store lost writes?")
    return [records[t] for t in range(tasks)]


def _clean_uncommitted(store: Store, run_id: str, stage: str, commits: list[dict[str, Any]]) -> None:
    keep = {c["file"] for c in commits}
    store.delete([e.path for e in store.list(layout.data_prefix(run_id, stage)) if e.path not in keep])


def _stage_summary(plan: StagePlan, outcomes: list[TaskOutcome], seconds: float) -> dict[str, Any]:
    tasks = []
    for o in outcomes:
        for r in o.attempts:
            tasks.append({"task": r.task, "attempt": r.attempt, "status": r.status, "error": r.error, **r.stats})
    ok = [o.final.stats for o in outcomes if o.final.status != "error"]

    def total(k: str) -> float:
        return sum(s.get(k, 0) for s in ok)

    combined = {}
    if any("combine_rows_in" in s for s in ok):  # rows the combiners got and gave (worker/combine.py)
        combined = {"combine_rows_in": int(total("combine_rows_in")),
                    "combine_rows_out": int(total("combine_rows_out")), "combine_seconds": total("combine_seconds")}
    return {
        "name": plan.stage.name,
        "tasks": len(plan.tasks),
        "attempts": sum(len(o.attempts) for o in outcomes),
        "retries": sum(len(o.attempts) - 1 for o in outcomes),
        "seconds": seconds,
        "rows_in": int(total("rows_in")),
        "bytes_in": int(total("bytes_in")),
        "rows_out": int(total("rows_out")),
        "bytes_out": int(total("bytes_out")),
        "import_seconds": total("import_seconds"),
        "program_seconds": total("program_seconds"),
        "export_seconds": total("export_seconds"),
        "engine_peak_rss_bytes": max((s.get("engine_peak_rss_bytes", 0) for s in ok), default=0),
        "program_peak_rss_bytes": max((s.get("program_peak_rss_bytes", 0) for s in ok), default=0),
        "inputs": plan.resolved_inputs,
        **combined,
        "task_attempts": tasks,
    }


def run_job(job: Job, backend: Backend, *, progress: StageProgress | None = None,
            store_uri: str | None = None) -> dict[str, Any]:
    """Run every stage of ``job`` in order; returns the run record (also written to the store).

    Raises `JobFailed` when a task fails on every attempt; the record then says which and why.
    """
    progress = progress or StageProgress()
    store = open_store(store_uri or job.store)
    if isinstance(store, S3Store):
        store.check()
    run_id = new_run_id(job.name)
    record: dict[str, Any] = {
        "run_id": run_id, "job": job.name, "job_file": job.path, "store": store.uri, "backend": backend.name,
        "status": "running", "started_at": time.time(), "stages": [], "output": None, "error": None,
        "host": os.uname().nodename,
    }
    write_record(store, record)
    upstream: dict[str, StageOutput] = {}
    try:
        backend.prepare(job, store, run_id)
        for stage in job.stages:
            started = time.perf_counter()
            plan = plan_stage(job, stage, run_id, store.uri, upstream, backend.stage_concurrency(stage))
            progress.stage_started(stage, len(plan.tasks))
            outcomes = run_stage(plan, backend, progress)
            summary = _stage_summary(plan, outcomes, time.perf_counter() - started)
            failed = [o for o in outcomes if o.final.status == "error"]
            if failed or len(outcomes) < len(plan.tasks):
                summary["status"] = "failed"
                record["stages"].append(summary)
                first = failed[0].final if failed else None
                attempts = len(failed[0].attempts) if failed else 0
                raise JobFailed(f"stage {stage.name!r} failed: task {first.task if first else '?'} failed "
                                f"after {attempts} attempt(s):\n{first.error if first else 'interrupted'}")
            commits = committed_files(store, run_id, stage, len(plan.tasks))
            _clean_uncommitted(store, run_id, stage.name, commits)
            files = [c["uri"] for c in commits]
            store.write_bytes(layout.stage_manifest(run_id, stage.name), json.dumps(
                {"stage": stage.name, "partitions": stage.partitions, "key": stage.key, "files": files,
                 "commits": commits}, indent=2).encode())
            upstream[stage.name] = StageOutput(stage.name, stage.partitions, files)
            summary.update(status="succeeded", committed=[
                {"task": c["task"], "attempt": c["attempt"], "uri": c["uri"], "rows": c["rows"],
                 "bytes": c["bytes"]} for c in commits])
            record["stages"].append(summary)
            progress.stage_finished(stage, summary)
            write_record(store, record)
        last = job.stages[-1].name
        record["output"] = {"stage": last, "files": upstream[last].files}
        record["status"] = "succeeded"
        return record
    except BaseException as e:
        record["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        record["error"] = str(e) or type(e).__name__
        raise
    finally:
        record["finished_at"] = time.time()
        record["seconds"] = record["finished_at"] - record["started_at"]
        write_record(store, record)
