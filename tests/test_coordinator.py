"""The coordinator (coordinator/run.py): retries, stopping on a final failure, checking commit records,
cleaning up uncommitted files and writing manifests. Jobs run for real in this process (the inline
backend); `ScriptedBackend` injects only the faults named in each test's docstring."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import babelmr
from babelmr.errors import JobFailed
from babelmr.spec import PARTITION_INDEX_KEY, PartitionIndex, RunOutput, StageManifest
from babelmr.store import filesystem_for, layout, open_store
from scripted import (
    FailureSignal,
    ScriptedBackend,
    assert_keys_meet,
    commit_records,
    data_files,
    make_job,
    oracle,
    result_rows,
)


@pytest.mark.parametrize("failures", [0, 1, 2, 3])
def test_retryable_failures_are_retried_up_to_retries_then_the_run_fails(tmp_path: Path, failures: int) -> None:
    """Injected: the first ``failures`` attempts of map task 1 fail retryably (retries=2: three attempts)."""
    job = make_job(tmp_path, retries=2)
    script = {("map", 1, a): "error" for a in range(1, failures + 1)}
    backend = ScriptedBackend(script)
    if failures <= 2:
        run = babelmr.run(job, backend=backend)
        attempts_of_1 = [c for c in backend.calls if c[:2] == ("map", 1)]
        assert attempts_of_1 == [("map", 1, a) for a in range(1, failures + 2)]
        assert run.stage("map").retries == failures
        assert run.stage("map").attempts == 3 + failures
        assert {c.task: c.attempt for c in run.stage("map").committed}[1] == failures + 1
        assert result_rows(run.read_table()) == oracle(tmp_path)
        assert_keys_meet(run)
        assert run.counters == {"test.map_tasks": 3}  # the committed attempts' counters only
    else:
        with pytest.raises(JobFailed, match=r"stage 'map' failed: task 1 failed after 3 attempt\(s\)") as e:
            babelmr.run(job, backend=backend)
        attempts_of_1 = [c for c in backend.calls if c[:2] == ("map", 1)]
        assert attempts_of_1 == [("map", 1, 1), ("map", 1, 2), ("map", 1, 3)]  # no fourth attempt
        assert e.value.run is not None and e.value.run.status == "failed"
    backend.close()


def test_a_non_retryable_failure_is_not_retried(tmp_path: Path) -> None:
    """Injected: map task 0's first attempt fails with a deterministic (non-retryable) error."""
    job = make_job(tmp_path, retries=5)
    with ScriptedBackend({("map", 0, 1): "fatal"}) as backend:
        with pytest.raises(JobFailed, match="task 0 failed after 1 attempt"):
            babelmr.run(job, backend=backend)
        assert [c for c in backend.calls if c[:2] == ("map", 0)] == [("map", 0, 1)]


def test_a_real_program_failure_is_retried_and_reported_with_its_stderr(tmp_path: Path) -> None:
    """No injection: the map program itself exits 3 every time; the run record names stage, task and attempt."""
    job = make_job(tmp_path, retries=1, map_command=["sh", "-c", "echo boom >&2; exit 3"])
    with pytest.raises(JobFailed) as e:
        babelmr.run(job, backend="inline")
    run = e.value.run
    assert run.status == "failed"
    assert "stage 'map' task 0 attempt 2" in run.error and "exited with code 3" in run.error and "boom" in run.error
    stage = run.stage("map")
    assert stage.status == "failed"
    assert [(a.task, a.attempt, a.status) for a in stage.task_attempts] == [(0, 1, "error"), (0, 2, "error")]
    assert babelmr.open_run(run.run_id, run.store) == run  # the same, read back from run.json


def test_on_a_final_failure_no_new_task_starts(tmp_path: Path) -> None:
    """Injected: map task 0 fails on every attempt while task 1 is still running (it waits, as a slow
    task would, until the coordinator has learnt of the failure); tasks 2-5 must never start."""
    job = make_job(tmp_path, files=6, retries=2)
    signal = FailureSignal()

    def slow(backend: ScriptedBackend, spec):
        assert signal.failed.wait(timeout=60), "the coordinator never saw task 0 fail"
        return backend.inline.run_task(spec)

    script = {("map", 0, a): "error" for a in (1, 2, 3)} | {("map", 1, 1): slow}
    with ScriptedBackend(script, concurrency=2) as backend:
        with pytest.raises(JobFailed, match="stage 'map' failed: task 0 failed after 3 attempt") as e:
            babelmr.run(job, backend=backend, progress=signal)
        assert sorted(backend.calls) == [("map", 0, 1), ("map", 0, 2), ("map", 0, 3), ("map", 1, 1)]
    run = e.value.run
    assert run.status == "failed" and "stage 'map' task 0 attempt 3" in run.error
    assert [s.name for s in run.stages] == ["map"] and run.stages[0].status == "failed"
    store = open_store(run.store)
    assert not store.exists(layout.stage_manifest(run.run_id, "map"))  # nothing published
    assert [c.task for c in commit_records(run.store, run.run_id, "map")] == [1]


def test_a_hanging_task_is_killed_at_the_timeout_retried_and_then_stops_the_run(tmp_path: Path) -> None:
    """No injection: the map program hangs (sleeps far past the stage's timeout) on every attempt."""
    job = make_job(tmp_path, files=4, retries=1, map_command=["sleep", "60"], map_options={"timeout": 0.5})
    started = time.monotonic()
    with ScriptedBackend() as backend:
        with pytest.raises(JobFailed, match="task 0 failed after 2 attempt") as e:
            babelmr.run(job, backend=backend)
        assert backend.calls == [("map", 0, 1), ("map", 0, 2)]  # tasks 1-3 never started
    assert time.monotonic() - started < 30
    assert "longer than the stage's timeout of 0.5 s" in e.value.run.error


def test_a_task_reporting_success_without_a_commit_record_fails_the_stage(tmp_path: Path) -> None:
    """Injected: map task 1 reports ``ok`` without having run (a backend whose reply cannot be trusted)."""
    job = make_job(tmp_path)
    with ScriptedBackend({("map", 1, 1): "ok-without-commit"}) as backend:
        with pytest.raises(JobFailed, match=r"stage 'map': tasks \[1\] have no commit record") as e:
            babelmr.run(job, backend=backend)
        assert not [c for c in backend.calls if c[0] == "reduce"]  # the next stage never started
    run = e.value.run
    assert run.status == "failed" and "tasks [1] have no commit record" in run.error
    assert not open_store(run.store).exists(layout.stage_manifest(run.run_id, "map"))


def test_uncommitted_files_are_removed_when_the_stage_ends(tmp_path: Path) -> None:
    """Injected: map task 0's first attempt leaves half a data file and dies (as a killed worker would);
    the retry commits. The stray file must be gone and never read."""
    job = make_job(tmp_path)
    with ScriptedBackend({("map", 0, 1): "orphan"}) as backend:
        run = babelmr.run(job, backend=backend)
    commits = commit_records(run.store, run.run_id, "map")
    assert [c.attempt for c in commits] == [2, 1, 1]
    assert data_files(run.store, run.run_id, "map") == sorted(c.file for c in commits)
    assert not any("dead0000" in f for f in data_files(run.store, run.run_id, "map"))
    assert result_rows(run.read_table()) == oracle(tmp_path)
    assert_keys_meet(run)


def test_manifests_list_exactly_the_committed_files(tmp_path: Path) -> None:
    """No injection: a clean two-stage run; every manifest matches the commit records and the files."""
    job = make_job(tmp_path, files=3, partitions=4)
    run = babelmr.run(job, backend="inline", store=str(tmp_path / "store"))
    store = open_store(run.store)
    for stage, tasks, partitions, key in (("map", 3, 4, ["k"]), ("reduce", 4, 1, None)):
        manifest = StageManifest.from_json(store.read_bytes(layout.stage_manifest(run.run_id, stage)))
        commits = commit_records(run.store, run.run_id, stage)
        assert [c.task for c in commits] == list(range(tasks))
        assert manifest.stage == stage and manifest.partitions == partitions and manifest.key == key
        assert manifest.commits == commits
        assert manifest.files == [c.uri for c in commits] == run.stage(stage).output_files
        assert data_files(run.store, run.run_id, stage) == [c.file for c in commits]  # nothing else left
        for c in commits:
            fs, path = filesystem_for(c.uri)
            meta = pq.ParquetFile(path, filesystem=fs).metadata
            assert meta.num_rows == c.rows == sum(c.partition_rows)
            assert len(c.partition_rows) == partitions
            index = PartitionIndex.from_json(meta.metadata[PARTITION_INDEX_KEY])
            assert index.rows == c.partition_rows
            for p, groups in enumerate(index.row_groups):  # a partition's rows are in its row groups only
                assert sum(meta.row_group(g).num_rows for g in groups) == index.rows[p]
        assert [(f.task, f.rows) for f in run.stage(stage).committed] == [(c.task, c.rows) for c in commits]
    assert run.output_files == run.stage("reduce").output_files
    assert run.record.output == RunOutput(stage="reduce", files=run.output_files)
    assert result_rows(run.read_table()) == oracle(tmp_path)
    assert_keys_meet(run)
