"""Hadoop Streaming status lines (`reporter:status:MESSAGE`) on a program's stderr, seen while it runs."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from babelmr.worker.program import read_status, run_program, stderr_tail

PROGRAM = """
import sys, time
for i in range(4):
    print(f"reporter:status:step {i} of 4", file=sys.stderr, flush=True)
    time.sleep(0.7)
print("reporter:counter:g,n,1", file=sys.stderr)
print("an ordinary line", file=sys.stderr)
"""


def test_status_lines_are_reported_while_the_program_runs(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []
    running = threading.Event()
    running.set()

    def on_status(text: str) -> None:
        seen.append((text, running.is_set()))

    run = run_program([sys.executable, "-c", PROGRAM], None, shell=False, env={"PATH": os.environ["PATH"]},
                      workdir=str(tmp_path), log_dir=str(tmp_path), timeout=60, label="t", on_status=on_status)
    running.clear()
    texts = [t for t, _ in seen]
    assert run.exit_code == 0 and run.status == "step 3 of 4" and run.counters == {"g.n": 1}
    assert len(texts) >= 2 and texts[-1] == "step 3 of 4"  # several updates, the last one last
    assert texts == sorted(texts) and len(set(texts)) == len(texts)  # in order, each once
    assert stderr_tail(run.stderr_path) == "an ordinary line"  # error messages leave status lines out


def test_read_status_takes_the_last_line_and_ignores_partial_prefixes(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    log.write_text("reporter:status:one\nnot reporter:status:two\nreporter:status:  three  \nreporter:statu\n")
    assert read_status(str(log)) == "three"
    assert read_status(str(tmp_path / "missing.log")) is None


def test_a_running_stage_forwards_status_lines_to_the_progress_display(tmp_path: Path) -> None:
    """The coordinator reads the status lines workers publish in the store and keeps them in its live state."""
    from babelmr.coordinator.live import LiveWriter
    from babelmr.coordinator.records import read_live
    from babelmr.coordinator.run import StageProgress
    from babelmr.job.model import Stage
    from babelmr.spec import TaskResult, TaskSpec, TaskStats
    from babelmr.store import layout, open_store

    class Recorder(StageProgress):
        def __init__(self) -> None:
            self.seen: list[tuple[str, int, str]] = []

        def task_status(self, stage: Stage, task: int, text: str) -> None:
            self.seen.append((stage.name, task, text))

    store = open_store(str(tmp_path / "store"))
    run_id = "r-20260101-000000-abcdef"
    inner = Recorder()
    live = LiveWriter(inner, store, run_id).start()
    stage = Stage(name="map", inputs=(), command=("true",))
    live.stage_started(stage, 2)
    for task in (0, 1):
        live.task_started(stage, TaskSpec(run_id, "j", "map", task, 1, store.uri, [], ["true"]))
    store.write_bytes(layout.task_status(run_id, "map", 0, 1), b"half way")
    store.write_bytes(layout.task_status(run_id, "map", 1, 1), b"starting")
    live.task_finished(stage, TaskResult("ok", "map", 1, 1, stats=TaskStats(status_line="done")))
    live._poll_status()
    live._write()
    assert inner.seen == [("map", 0, "half way")]  # task 1 has finished: its status is in its attempt
    stored = read_live(store, run_id)
    assert stored is not None and stored.stage is not None and not stored.ended
    assert stored.stage.status_lines == {"0": "half way"} and stored.stage.running == [0]
    assert stored.stage.tasks == 2 and stored.stage.done == 1 and stored.stage.task_attempts[0].final is True
    live.close()
    ended = read_live(store, run_id)
    assert ended is not None and ended.ended and ended.stage is None
