"""Timelines drawn from the record of a real local run: `babelmr show RUN --timeline run.png|run.svg`."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from babelmr.cli import main
from babelmr.errors import BabelMRError
from babelmr.spec import RunRecord
from babelmr.timeline import attempts_of, render
from conftest import write_job

# Fails the first attempt of task 1 of stage "first" (retried), succeeds otherwise.
PROGRAM = """
import os, shutil, sys
if os.environ["MR_STAGE"] == "first" and os.environ["MR_TASK"] == "1" and os.environ["MR_ATTEMPT"] == "1":
    sys.exit("first attempt of task 1 fails")
shutil.copy(os.environ["MR_INPUT"], os.environ["MR_OUTPUT"])
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunRecord]:
    folder = tmp_path_factory.mktemp("timeline")
    (folder / "data").mkdir()
    for i in range(2):
        keys = list("abcdefgh")  # enough keys that both partitions have rows (an empty one is not run)
        pq.write_table(pa.table({"k": keys, "v": [i] * len(keys)}), folder / "data" / f"p{i}.parquet")
    job = write_job(folder, {"name": "tl", "stages": [
        {"name": "first", "command": [sys.executable, "-c", PROGRAM], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1}, "key": ["k"], "partitions": 2, "retries": 1},
        {"name": "second", "command": [sys.executable, "-c", PROGRAM], "inputs": [{"name": "p", "stage": "first"}]}]})
    result = CliRunner().invoke(main, ["run", str(job), "--json"])
    assert result.exit_code == 0, result.stderr
    return folder, RunRecord.from_json(result.stdout)


def test_png_and_svg_from_a_real_run(run: tuple[Path, RunRecord]) -> None:
    folder, record = run
    store = str(folder / ".babelmr")
    for name in ("t.png", "t.svg"):
        shown = CliRunner().invoke(main, ["show", record.run_id, "--store", store, "--timeline",
                                          str(folder / name)])
        assert shown.exit_code == 0, shown.output
    assert (folder / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = ET.parse(folder / "t.svg").getroot()
    text = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    # one bar label per attempt: 3 of stage first (task 1 twice, its first attempt marked failed), 2 of second
    for label in ("first t0 a1", "first t1 a1 ✗", "first t1 a2", "second t0 a1", "second t1 a1"):
        assert label in text
    assert "first t1 a2 ✗" not in text and "engine overhead" in text and "failed attempt" in text


def test_attempts_come_from_the_record_alone(run: tuple[Path, RunRecord]) -> None:
    _, record = run
    attempts = attempts_of(record)
    assert [(s, a.task, a.attempt, a.status) for s, a in attempts] == [
        ("first", 0, 1, "ok"), ("first", 1, 1, "error"), ("first", 1, 2, "ok"), ("second", 0, 1, "ok"),
        ("second", 1, 1, "ok")]
    for _, a in attempts:
        st = a.stats
        phases = sum(s or 0 for s in (st.import_seconds, st.program_seconds, st.export_seconds))
        assert st.finished_at is not None and st.started_at is not None
        assert phases <= st.finished_at - st.started_at + 1e-6  # the rest is engine overhead


def test_a_record_without_times_is_a_clear_error(tmp_path: Path) -> None:
    old = {"run_id": "old-1", "job": "j", "job_file": "j.json", "store": "s", "backend": "local", "status": "succeeded",
           "started_at": 0, "host": "h", "pid": 1,
           "stages": [{"name": "s", "tasks": 1, "task_attempts": [{"task": 0, "attempt": 1, "status": "ok"}]}]}
    with pytest.raises(BabelMRError, match="no task attempt times"):
        render(RunRecord.from_dict(old))


def test_timeline_needs_png_or_svg(run: tuple[Path, RunRecord]) -> None:
    folder, record = run
    shown = CliRunner().invoke(main, ["show", record.run_id, "--store", str(folder / ".babelmr"),
                                      "--timeline", str(folder / "t.jpg")])
    assert shown.exit_code == 1 and "name a .png or .svg file" in shown.output and "Traceback" not in shown.output
