"""Tolerated failures (opt-in) and bounded bookkeeping: a 30 MB stderr line is cut in the record, the error
and the stored log, and the run record's cost per stage does not grow with the stages before it.
Jobs run for real on the inline backend."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import babelmr
from babelmr.cli import main
from babelmr.coordinator.records import read_record
from babelmr.errors import JobFailed, JobFileError
from babelmr.store import layout, open_store
from babelmr.store.local import LocalStore
from scripted import make_job, result_rows

FAIL_TASKS = 'for t in {tasks}; do [ "$MR_TASK" = $t ] && exit 3; done; cp in.parquet out.parquet'


def failing_job(tmp_path: Path, tasks: str, tolerated: int | str | None, files: int = 3) -> Path:
    options = {"tolerated_failures": tolerated} if tolerated is not None else {}
    return make_job(tmp_path, files=files, retries=1, map_command=["sh", "-c", FAIL_TASKS.format(tasks=tasks)],
                    map_options=options)


def rows_of(files: list[Path]) -> list[tuple]:
    names = [str(f) for f in files]
    return sorted(duckdb.sql(f"select k, v from read_parquet({names})").fetchall(), key=repr)


@pytest.mark.parametrize("tolerated", [1, 2, "34%", "100%"])
def test_tolerated_failures_succeed_without_publishing_the_failed_tasks(tmp_path: Path, tolerated) -> None:
    """Map task 1 fails on every attempt; the stage tolerates it: the run succeeds with the other files' rows."""
    job = failing_job(tmp_path, "1", tolerated)
    run = babelmr.run(job, backend="inline")
    assert run.succeeded
    data = sorted((tmp_path / "data").glob("*.parquet"))
    assert result_rows(run.read_table()) == rows_of([data[0], data[2]])  # nothing of task 1's input
    (failure,) = run.record.stages[0].tolerated_failures
    assert failure.task == 1 and failure.attempts == 2 and failure.inputs == [str(data[1])]
    assert "exited with code 3" in failure.error
    assert [c.task for c in run.stage("map").committed] == [0, 2]
    manifest = json.loads(open_store(run.store).read_bytes(layout.stage_manifest(run.run_id, "map")))
    assert manifest["failed_tasks"] == [1] and len(manifest["files"]) == 2
    shown = CliRunner().invoke(main, ["show", run.run_id, "--store", run.store])
    assert "task 1 failed after 2 attempt(s) (tolerated, nothing published)" in shown.stdout
    assert str(data[1]) in shown.stdout


@pytest.mark.parametrize(("tasks", "tolerated"), [("1", None), ("1", 0), ("1", "33%"), ("0 2", 1), ("0 1 2", "50%")])
def test_more_failures_than_tolerated_fail_the_run(tmp_path: Path, tasks: str, tolerated) -> None:
    """Off by default; a percentage rounds down (33% of 3 tasks: 0); more failures than allowed fail the run."""
    job = failing_job(tmp_path, tasks, tolerated)
    with pytest.raises(JobFailed, match="stage 'map' failed"):
        babelmr.run(job, backend="inline")


def test_a_reduce_task_tolerated_lists_its_partition(tmp_path: Path) -> None:
    """A stage reading an earlier stage: the failed task's input is named as that stage's partition."""
    job = make_job(tmp_path, partitions=3)
    data = json.loads(job.read_text())
    data["stages"][1].update(command=["sh", "-c", FAIL_TASKS.format(tasks="2")], tolerated_failures=1, retries=0)
    job.write_text(json.dumps(data))
    run = babelmr.run(job, backend="inline")
    (failure,) = run.record.stages[1].tolerated_failures
    assert failure.inputs == ["partition 2 of stage 'map'"]
    assert len(run.output_files) == 2


@pytest.mark.parametrize("bad", ["10", "-1%", "150%", -1, 1.5, True])
def test_tolerated_failures_is_validated(tmp_path: Path, bad) -> None:
    job = failing_job(tmp_path, "1", bad)
    with pytest.raises(JobFileError, match=r"\$\.stages\[0\]\.tolerated_failures"):
        babelmr.load_job(job)


def test_a_30mb_stderr_line_is_cut_in_the_record_the_error_and_the_stored_log(tmp_path: Path) -> None:
    """The program prints one 30 MB line to stderr and fails: run.json stays small and says what it cut."""
    command = ["python3", "-c", "import sys; sys.stderr.write('x' * 30_000_000 + 'END'); sys.exit(1)"]
    job = make_job(tmp_path, files=1, retries=0, map_command=command)
    with pytest.raises(JobFailed) as e:
        babelmr.run(job, backend="inline")
    assert len(str(e.value)) < 20_000 and "babelmr cut" in str(e.value) and str(e.value).rstrip().endswith("END")
    run = e.value.run
    path = Path(run.store) / layout.run_record(run.run_id)
    assert path.stat().st_size < 100_000
    assert "babelmr cut" in run.record.error
    log = open_store(run.store).read_bytes(layout.task_log(run.run_id, "map", 0, 1, "stderr"))
    assert len(log) < (1 << 20) + 200 and log.startswith(b"[babelmr: the first") and log.endswith(b"END")


def test_run_json_is_written_twice_whatever_the_number_of_stages(tmp_path: Path, monkeypatch) -> None:
    """A spy on LocalStore.write_bytes (it still writes) counts writes per key over a 12-stage chain:
    run.json at the start and the end only; each stage's entry once, on its own."""
    job = make_job(tmp_path, files=1, partitions=1)
    data = json.loads(job.read_text())
    for i in range(10):
        data["stages"].append({"name": f"s{i}", "command": ["cp", "in.parquet", "out.parquet"],
                               "inputs": [{"name": "p", "stage": data["stages"][-1]["name"]}]})
    job.write_text(json.dumps(data))
    writes: list[str] = []
    real = LocalStore.write_bytes

    def spy(self, key: str, payload: bytes) -> None:
        writes.append(key)
        real(self, key, payload)

    monkeypatch.setattr(LocalStore, "write_bytes", spy)
    run = babelmr.run(job, backend="inline")
    assert writes.count(layout.run_record(run.run_id)) == 2
    for s in data["stages"]:
        assert writes.count(layout.stage_record(run.run_id, s["name"])) == 1
    # a reader of a run whose run.json has no stage entries yet (running, or its coordinator died) assembles them
    store = open_store(run.store)
    record = json.loads(store.read_bytes(layout.run_record(run.run_id)))
    full = record.pop("stages")
    record["status"] = "running"
    real(store, layout.run_record(run.run_id), json.dumps(record).encode())
    assert [s.to_dict() for s in read_record(store, run.run_id).stages] == full


def test_the_python_api_resumes_a_failed_run(tmp_path: Path) -> None:
    """babelmr.resume: a run failed at map task 1 (its program exits 3), the command fixed, resumed exactly;
    a second resume of the succeeded run raises the typed ResumeRefused with the run attached."""
    from babelmr.coordinator.resume import ResumeRefused
    from scripted import oracle

    job = failing_job(tmp_path, "1", None)
    with pytest.raises(JobFailed) as e:
        babelmr.run(job, backend="inline")
    failed = e.value.run
    data = json.loads(job.read_text())
    data["stages"][0]["command"] = ["cp", "in.parquet", "out.parquet"]
    job.write_text(json.dumps(data))
    run = babelmr.resume(failed.run_id, failed.store, backend="inline")
    assert run.succeeded and run.run_id == failed.run_id and len(run.record.resumes) == 1
    assert result_rows(run.read_table()) == oracle(tmp_path)
    assert [c.attempt for c in run.stage("map").committed] == [1, 3, 1]  # task 1: attempts 1, 2 failed before
    with pytest.raises(ResumeRefused, match="succeeded: nothing to resume") as again:
        babelmr.resume(failed.run_id, failed.store, backend="inline")
    assert again.value.run is not None and again.value.run.status == "succeeded"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.integers(1, 4), partitions=st.integers(1, 3), seed=st.integers(0, 10**6), data=st.data())
def test_resume_after_a_fault_anywhere_runs_only_the_rest_and_is_exact(tmp_path_factory, files: int, partitions: int,
                                                                       seed: int, data) -> None:
    """Generated data and a fatal fault injected (ScriptedBackend: the attempt fails without running) in one
    map or reduce task; the resume runs exactly the tasks without commit records and matches the oracle."""
    from babelmr.coordinator.run import run_job
    from babelmr.job import load_job
    from scripted import ScriptedBackend, commit_records, oracle

    tmp = tmp_path_factory.mktemp("resume")
    job = load_job(str(make_job(tmp, files=files, partitions=partitions, seed=seed, rows=50)))
    stage = data.draw(st.sampled_from(["map", "reduce"]))
    task = data.draw(st.integers(0, (files if stage == "map" else partitions) - 1))
    with ScriptedBackend({(stage, task, 1): "fatal"}) as first, pytest.raises(JobFailed):
        run_job(job, first, run_id="r1")
    done = {s: {c.task for c in commit_records(job.store, "r1", s)} for s in ("map", "reduce")}
    with ScriptedBackend() as second:
        record = run_job(job, second, resume="r1")
    ran = {s: sorted(t for s2, t, _ in second.calls if s2 == s) for s in ("map", "reduce")}
    assert ran["map"] == sorted(set(range(files)) - done["map"])
    assert ran["reduce"] == sorted(set(range(partitions)) - done["reduce"])
    assert record.status == "succeeded" and record.output is not None
    assert rows_of([Path(f) for f in record.output.files]) == oracle(tmp)
