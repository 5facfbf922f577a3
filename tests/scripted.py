"""Shared by the coordinator and commit-protocol tests: a two-stage job on generated data, its DuckDB
oracle, and `ScriptedBackend`, which runs attempts for real in this process except where a script
injects a fault the real components cannot be made to produce on demand."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from babelmr.backends.base import Backend
from babelmr.backends.inline import InlineBackend
from babelmr.coordinator.run import StageProgress
from babelmr.job import Stage
from babelmr.spec import CommitRecord, TaskResult, TaskSpec, TaskStats
from babelmr.store import filesystem_for, layout, open_store

# Both stages copy their input (no interpreter start-up: the tests stay fast); the map counts its tasks.
MAP = ["sh", "-c", "cp in.parquet out.parquet && echo reporter:counter:test,map_tasks,1 >&2"]
REDUCE = ["cp", "in.parquet", "out.parquet"]


def make_job(folder: Path, *, files: int = 3, rows: int = 400, partitions: int = 3, retries: int = 2,
             store: str | None = None, seed: int = 0, map_command: list[str] | None = None,
             map_options: dict[str, Any] | None = None) -> Path:
    """Write generated input (string keys with NULLs, skewed; integer values) and a map/reduce job file.

    Both stages copy; one map task per file, one reduce task per partition.
    """
    rng = np.random.default_rng(seed)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        keys = rng.zipf(1.5, rows) % 50  # skewed: a few keys hold most rows
        k = pa.array([None if x == 0 else f"key-{x}" for x in keys], pa.string())
        v = pa.array(rng.integers(-1000, 1000, rows), pa.int64())
        pq.write_table(pa.table({"k": k, "v": v}), data / f"part-{f}.parquet", row_group_size=100)
    job: dict[str, Any] = {
        "name": "scripted",
        "stages": [
            {"name": "map", "command": map_command or MAP,
             "inputs": [{"name": "data", "uri": "data/*.parquet"}], "split": {"files_per_task": 1},
             "key": ["k"], "partitions": partitions, "retries": retries, **(map_options or {})},
            {"name": "reduce", "command": REDUCE,
             "inputs": [{"name": "partials", "stage": "map"}], "retries": retries},
        ],
    }
    if store:
        job["store"] = store
    path = folder / "job.json"
    path.write_text(json.dumps(job, indent=2))
    return path


def oracle(folder: Path) -> list[tuple]:
    """What the job must output, by DuckDB: every input row exactly once."""
    files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    return sorted(duckdb.sql(f"select k, v from read_parquet({files})").fetchall(), key=repr)


def result_rows(table: pa.Table) -> list[tuple]:
    """A result table as sorted tuples, comparable with `oracle`."""
    return sorted(((r["k"], r["v"]) for r in table.to_pylist()), key=repr)


def assert_keys_meet(run: Any) -> None:
    """Equal keys (NULL included) end in one reduce task: no key is in two tasks' output."""
    seen: dict[Any, int] = {}
    for c in run.stage("reduce").committed:
        fs, path = filesystem_for(c.uri)
        keys = set(pq.read_table(path, filesystem=fs, columns=["k"]).column("k").to_pylist())
        for k in keys:
            assert seen.setdefault(k, c.task) == c.task, f"key {k!r} in reduce tasks {seen[k]} and {c.task}"


def injected_error(spec: TaskSpec, retryable: bool = True) -> TaskResult:
    """An attempt failing without running, as a backend reports a crashed or unreachable worker."""
    return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: injected failure",
                      retryable=retryable)


Action = str | Callable[["ScriptedBackend", TaskSpec], TaskResult]


class ScriptedBackend(Backend):
    """Runs each attempt for real (inline) unless ``script[(stage, task, attempt)]`` says otherwise.

    Actions: ``run`` (the default), ``error`` (retryable failure), ``fatal`` (not retryable),
    ``ok-without-commit`` (report success without running: a backend whose reply lies),
    ``lost-reply`` (run and commit, then report a retryable error: the reply was lost),
    ``orphan`` (leave half a data file, as a worker killed while exporting, then fail), or a callable.
    """

    name = "scripted"

    def __init__(self, script: dict[tuple[str, int, int], Action] | None = None, concurrency: int = 1):
        super().__init__(concurrency)
        self.script = script or {}
        self.inline = InlineBackend(concurrency)
        self.calls: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    def run_task(self, spec: TaskSpec) -> TaskResult:
        with self._lock:
            self.calls.append((spec.stage, spec.task, spec.attempt))
        action = self.script.get((spec.stage, spec.task, spec.attempt), "run")
        if callable(action):
            return action(self, spec)
        if action == "run":
            return self.inline.run_task(spec)
        if action in ("error", "fatal"):
            return injected_error(spec, retryable=action == "error")
        if action == "ok-without-commit":
            return TaskResult("ok", spec.stage, spec.task, spec.attempt, stats=TaskStats(rows_out=1))
        if action == "lost-reply":
            real = self.inline.run_task(spec)
            assert real.status == "ok", real.error
            return TaskResult("error", spec.stage, spec.task, spec.attempt, retryable=True,
                              error=f"{spec.label}: the reply was lost")
        if action == "orphan":
            store = open_store(spec.store)
            key = layout.attempt_data(spec.run_id, spec.stage, spec.task, spec.attempt, "dead0000")
            with store.open_output(key) as out:
                out.write(b"PAR1 half a file, never committed")
            return injected_error(spec)
        raise AssertionError(f"unknown action {action!r}")

    def close(self) -> None:
        self.inline.close()


class FailureSignal(StageProgress):
    """Sets ``failed`` when the coordinator learns of a task's final failure."""

    def __init__(self) -> None:
        self.failed = threading.Event()

    def task_finished(self, stage: Stage, result: TaskResult) -> None:
        if result.status == "error":
            self.failed.set()


def data_files(store_uri: str, run_id: str, stage: str) -> list[str]:
    """Every file under the stage's data/ prefix, committed or not."""
    store = open_store(store_uri)
    return [e.path for e in store.list(layout.data_prefix(run_id, stage))]


def commit_records(store_uri: str, run_id: str, stage: str) -> list[CommitRecord]:
    """The stage's commit records, in task order."""
    store = open_store(store_uri)
    return [CommitRecord.from_json(store.read_bytes(e.path)) for e in store.list(layout.commit_prefix(run_id, stage))]


def parquet_rows(uri: str) -> int:
    """Rows of a Parquet file in a local path or on S3."""
    fs, path = filesystem_for(uri)
    with fs.open_input_file(path) as f:
        return pq.ParquetFile(f).metadata.num_rows
