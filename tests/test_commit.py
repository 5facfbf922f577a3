"""The commit protocol (docs/commit-protocol.md) end to end: real worker attempts against a real local
store and the real SeaweedFS S3 server. Two attempts of one task committing at the same moment must
leave exactly one winner, no trace of the loser, and one copy of the task's rows downstream."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import babelmr
from babelmr.spec import CommitRecord, FileSlice, TaskInput, TaskResult, TaskSpec
from babelmr.store import layout, open_store
from babelmr.worker.task import run_task
from scripted import (
    ScriptedBackend,
    assert_keys_meet,
    commit_records,
    data_files,
    make_job,
    oracle,
    parquet_rows,
    result_rows,
)


def commit_at_once(monkeypatch: pytest.MonkeyPatch, store_uri: str, commit_key: str) -> None:
    """Hold each attempt at the store's create-if-absent of ``commit_key`` until two attempts are there.

    Only the timing is injected (two attempts rarely reach the commit in the same millisecond by
    themselves); the create-if-absent that runs after the barrier is the store's own.
    """
    store_class = type(open_store(store_uri))
    real = store_class.put_if_absent
    barrier = threading.Barrier(2)

    def together(self, key: str, data: bytes) -> bool:
        if key.endswith(commit_key):
            barrier.wait(timeout=60)
        return real(self, key, data)

    monkeypatch.setattr(store_class, "put_if_absent", together)


def _spec(tmp_path: Path, store_uri: str, attempt: int) -> TaskSpec:
    src = tmp_path / "src.parquet"
    if not src.exists():
        pq.write_table(pa.table({"k": [f"k{i % 7}" for i in range(500)], "v": list(range(500))}), src,
                       row_group_size=100)
    return TaskSpec(run_id="race", job="j", stage="s", task=0, attempt=attempt, store=store_uri,
                    inputs=[TaskInput(name="data", kind="files", format="parquet", files=[FileSlice(str(src))])],
                    command=["cp", "in.parquet", "out.parquet"], key=["k"], partitions=3)


def test_two_attempts_committing_at_once_have_exactly_one_winner(
        tmp_path: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    commit_at_once(monkeypatch, store_uri, layout.commit_record("race", "s", 0))
    specs = [_spec(tmp_path, store_uri, attempt) for attempt in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda s: run_task(s, str(tmp_path / f"work-a{s.attempt}")), specs))
    assert sorted(r.status for r in results) == ["duplicate", "ok"], [r.error for r in results]
    winner = next(r for r in results if r.status == "ok")
    store = open_store(store_uri)
    assert CommitRecord.from_json(store.read_bytes(layout.commit_record("race", "s", 0))) == winner.commit
    assert data_files(store_uri, "race", "s") == [winner.commit.file]  # the loser deleted its file
    assert parquet_rows(winner.commit.uri) == winner.commit.rows == 500


def test_a_task_raced_by_a_second_attempt_is_read_once_downstream(
        tmp_path: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected: map task 0's attempt 1 starts attempt 2 of itself (as a speculative copy would) and both
    commit at the same moment; everything else runs for real."""
    job = make_job(tmp_path / "job")
    seen: list[TaskResult] = []

    def race(backend: ScriptedBackend, spec: TaskSpec) -> TaskResult:
        commit_at_once(monkeypatch, spec.store, layout.commit_record(spec.run_id, spec.stage, spec.task))
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(backend.inline.run_task, [spec, spec.with_attempt(2)]))
        seen.extend(both)
        return both[0]

    with ScriptedBackend({("map", 0, 1): race}) as backend:
        run = babelmr.run(job, backend=backend, store=store_uri)
    assert sorted(r.status for r in seen) == ["duplicate", "ok"], [r.error for r in seen]
    winner = next(r for r in seen if r.status == "ok")
    commits = commit_records(run.store, run.run_id, "map")
    assert commits[0] == winner.commit
    assert data_files(run.store, run.run_id, "map") == [c.file for c in commits]
    assert result_rows(run.read_table()) == oracle(tmp_path / "job")  # every row once
    assert_keys_meet(run)


def test_a_retry_after_a_lost_reply_is_a_duplicate_and_leaves_nothing(tmp_path: Path, store_uri: str) -> None:
    """Injected: map task 1's attempt 1 commits but its reply is lost, so the coordinator retries."""
    job = make_job(tmp_path / "job")
    with ScriptedBackend({("map", 1, 1): "lost-reply"}) as backend:
        run = babelmr.run(job, backend=backend, store=store_uri)
    attempts = [(a.attempt, a.status) for a in run.stage("map").task_attempts if a.task == 1]
    assert attempts == [(1, "error"), (2, "duplicate")]
    commits = commit_records(run.store, run.run_id, "map")
    assert commits[1].attempt == 1  # the first commit stands
    assert data_files(run.store, run.run_id, "map") == [c.file for c in commits]
    assert result_rows(run.read_table()) == oracle(tmp_path / "job")
    assert run.counters == {"test.map_tasks": 3}  # the duplicate's counters are not counted


def test_a_failed_attempt_publishes_nothing(tmp_path: Path, store_uri: str) -> None:
    """No injection: the program writes its output and then exits 1."""
    spec = _spec(tmp_path, store_uri, 1)
    spec = TaskSpec.from_dict({**json.loads(spec.to_json()),
                               "command": ["sh", "-c", "cp in.parquet out.parquet; exit 1"]})
    result = run_task(spec, str(tmp_path / "work"))
    assert result.status == "error" and "exited with code 1" in (result.error or "")
    store = open_store(store_uri)
    assert not store.exists(layout.commit_record("race", "s", 0))
    assert data_files(store_uri, "race", "s") == []
