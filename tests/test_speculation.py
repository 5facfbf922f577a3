"""Fault matrix, stragglers: a backup attempt of a slow task wins, the slow attempt is stopped without a trace."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from babelmr.backends.local import LocalBackend
from babelmr.coordinator.run import run_job
from babelmr.coordinator.speculation import Attempts, Speculator
from babelmr.job import Stage, load_job
from babelmr.spec import TaskResult, TaskSpec
from faults import checksum, data_checksum, leftover_processes
from scripted import make_job

# Task 0's first attempt is a straggler (30 s); every other attempt copies at once.
STRAGGLER = ["sh", "-c", 'if [ "$MR_TASK" = 0 ] && [ "$MR_ATTEMPT" = 1 ]; then sleep 30; fi; cp in.parquet out.parquet']


def _run(tmp_path: Path, speculation: object, run_id: str) -> tuple[dict, float]:
    """Run the straggler job on 4 local workers; returns the record and the seconds it took."""
    job = load_job(str(make_job(tmp_path, files=4, map_command=STRAGGLER, map_options={"speculation": speculation})))
    start = time.monotonic()
    with LocalBackend(concurrency=4) as backend:
        record = run_job(job, backend, run_id=run_id)
    return record, time.monotonic() - start


def test_a_backup_attempt_beats_a_straggler(tmp_path: Path) -> None:
    record, _ = _run(tmp_path, {"min_seconds": 1}, "spec-wins")
    stage = record.stages[0]
    assert stage.seconds < 20, f"the 30 s straggler held the stage: {stage.seconds:.1f} s"
    assert stage.speculation == {"backups": 1, "won": 1}
    backup = stage.task_attempts
    won = next(c for c in stage.committed if c.task == 0)
    assert won.attempt == 2 + 2, "the backup's attempt number follows every regular one (retries 2)"
    slow = next(a for a in backup if a.task == 0 and a.attempt == 1)
    assert slow.status == "error" and "stopped" in (slow.error or "")
    assert record.output is not None and checksum(record.output.files) == data_checksum(tmp_path)
    assert leftover_processes("spec-wins") == []
    data = list((tmp_path / ".babelmr" / "runs" / "spec-wins" / "stages" / "map" / "data").iterdir())
    assert len(data) == 4, f"the loser's data file must be gone: {data}"


def test_speculation_false_waits_for_the_straggler(tmp_path: Path) -> None:
    """The same straggler, shortened to 3 s by a timeout-free sleep: no backup when the stage says false."""
    short = [STRAGGLER[0], STRAGGLER[1], STRAGGLER[2].replace("sleep 30", "sleep 3")]
    job = load_job(str(make_job(tmp_path, files=4, map_command=short, map_options={"speculation": False})))
    with LocalBackend(concurrency=4) as backend:
        record = run_job(job, backend, run_id="spec-off")
    assert record.stages[0].speculation == {"backups": 0, "won": 0}
    assert record.stages[0].seconds >= 3
    assert record.output is not None and checksum(record.output.files) == data_checksum(tmp_path)


def _state(seconds_running: float) -> Attempts:
    state = Attempts()
    state.running[1] = (None, time.monotonic() - seconds_running)  # type: ignore[assignment]
    return state


@pytest.mark.parametrize(("finished", "durations", "running", "free", "expected"), [
    (2, [1.0, 1.0], 30.0, 1, 0),     # 2 of 4 finished: below 75 %
    (3, [1.0, 1.0, 1.0], 30.0, 0, 0),  # no free slot
    (3, [1.0, 1.0, 1.0], 4.0, 1, 0),   # below min_seconds (5)
    (3, [4.0, 4.0, 4.0], 7.0, 1, 0),   # below 2 x median
    (3, [1.0, 1.0, 1.0], 6.0, 1, 1),   # a straggler
])
def test_when_a_backup_starts(finished: int, durations: list[float], running: float, free: int,
                              expected: int) -> None:
    stage = Stage(name="s", inputs=())
    speculator = Speculator(stage, LocalBackend.__new__(LocalBackend), tasks=4)
    speculator.durations = durations[:finished]
    spec = TaskSpec(run_id="r", job="j", stage="s", task=3, attempt=1, store="/tmp/x", inputs=[], command=["true"])
    chosen = speculator.stragglers([(spec, _state(running))], free)
    assert len(chosen) == expected
    if chosen:
        assert chosen[0][0].attempt == stage.retries + 2 and chosen[0][1].backup == chosen[0][0].attempt


def test_the_first_commit_wins_and_stops_the_other() -> None:
    """`Attempts.finished` cancels the still-running attempts of a task once one commits (a recording backend)."""
    cancelled = []

    class Recorder(LocalBackend):
        def __init__(self) -> None:
            pass

        def cancel(self, spec: TaskSpec, reason: str) -> None:
            cancelled.append((spec.attempt, reason))

    state = Attempts()
    first, backup = (TaskSpec(run_id="r", job="j", stage="s", task=0, attempt=a, store="/tmp/x", inputs=[],
                              command=["true"]) for a in (1, 4))
    state.started(first)
    state.started(backup)
    state.finished(Recorder(), TaskResult("ok", "s", 0, 4))
    assert state.winner is not None and state.winner.attempt == 4
    assert [a for a, _ in cancelled] == [1]
    state.finished(Recorder(), TaskResult("duplicate", "s", 0, 1))
    assert state.winner.attempt == 4 and len(cancelled) == 1
