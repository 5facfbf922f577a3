"""Logging at the engine's decision points, ``babelmr -v``, and the engine log of a failed attempt."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import babelmr
from babelmr.cli import main
from babelmr.spec import FileSlice, TaskInput, TaskSpec
from babelmr.store import layout, open_store
from babelmr.worker.importer import import_input
from babelmr.worker.task import run_task
from scripted import ScriptedBackend, make_job


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_the_planner_logs_how_it_split_the_input(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    job = make_job(tmp_path, files=3)
    with caplog.at_level(logging.INFO, logger="babelmr"):
        babelmr.run(job, backend="inline")
    planner = messages(caplog, "babelmr.coordinator.planner")
    assert any("stage 'map': input 'data': 3 file(s)" in m and "split into 3 task(s): 1 file(s) per task" in m
               for m in planner), planner
    assert any("stage 'reduce': one task per partition of stage 'map': 3 task(s)" in m for m in planner), planner


def _parquet_input(tmp_path: Path, table: pa.Table) -> TaskInput:
    pq.write_table(table, tmp_path / "src.parquet")
    return TaskInput("data", "files", "parquet", [FileSlice(str(tmp_path / "src.parquet"))], source="test")


@pytest.mark.parametrize(("table", "fmt", "changes", "expected"), [
    (pa.table({"k": [1, 2]}), "parquet", {}, "input 'data': copied 1 row group(s) of 1 file(s)"),
    (pa.table({"k": [1, 2]}), "parquet", {"copy_column_chunks": False},
     "input 'data': decoded, not copied: disabled by BABELMR_COPY_COLUMN_CHUNKS=0"),
    (pa.table({"k": [[1], [2]]}), "parquet", {}, "input 'data': decoded, not copied: a selected column is nested"),
    (pa.table({"k": [1, 2]}), "csv", {}, "input 'data': decoded, not copied: the program reads csv"),
])
def test_the_importer_logs_copy_or_decode_and_why(tmp_path: Path, caplog: pytest.LogCaptureFixture, tune,
                                                   table: pa.Table, fmt: str, changes: dict, expected: str) -> None:
    tune(**changes)
    with caplog.at_level(logging.INFO, logger="babelmr"):
        done = import_input(_parquet_input(tmp_path, table), str(tmp_path / f"in.{fmt}"), fmt)
    assert done.method == ("copy" if expected.startswith("input 'data': copied") else "decode")
    assert done.why == ("" if done.method == "copy" else expected.partition("not copied: ")[2])
    assert any(m.startswith(expected) for m in messages(caplog, "babelmr.worker.importer")), caplog.text


def test_retries_duplicates_and_cleanup_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Injected (ScriptedBackend): map task 0 fails once; map task 1 commits but its reply is lost, so its retry
    loses the commit race; map task 2's first attempt leaves half a file and dies."""
    job = make_job(tmp_path)
    script = {("map", 0, 1): "error", ("map", 1, 1): "lost-reply", ("map", 2, 1): "orphan"}
    with caplog.at_level(logging.INFO, logger="babelmr"), ScriptedBackend(script) as backend:
        babelmr.run(job, backend=backend)
    coordinator = messages(caplog, "babelmr.coordinator.run")
    retries = [r for r in caplog.records if r.name == "babelmr.coordinator.run" and "retrying" in r.getMessage()]
    assert len(retries) == 3 and {r.levelno for r in retries} == {logging.INFO}
    assert any(m.startswith("stage 'map' task 0 attempt 1 failed; retrying (1 of 2 retries): stage 'map' task 0 "
                            "attempt 1: injected failure") for m in coordinator), coordinator
    assert any("stage 'map' task 1 attempt 1 failed; retrying" in m and "the reply was lost" in m for m in coordinator)
    assert any(m.startswith("stage 'map' task 1 attempt 2: another attempt of the task committed first")
               for m in coordinator), coordinator
    assert any(m.startswith("stage 'map' task 1 attempt 2: another attempt committed the task first")
               for m in messages(caplog, "babelmr.worker.task"))
    cleaned = [m for m in coordinator if m.startswith("stage 'map': deleting 1 uncommitted file(s)")]
    assert len(cleaned) == 1 and "t00002-a1-dead0000.parquet" in cleaned[0], coordinator


def test_an_unexpected_error_keeps_its_full_traceback_in_the_task_log(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected: a bug in the engine (a ZeroDivisionError deep in the import), which real input cannot cause.
    The result carries the short message; the whole traceback is in the attempt's engine log in the store."""

    def buggy_helper(*args: object) -> None:
        return 1 // 0

    def import_inputs(*args: object) -> None:
        buggy_helper()

    monkeypatch.setattr("babelmr.worker.task.import_inputs", import_inputs)
    spec = TaskSpec(run_id=secrets.token_hex(4), job="j", stage="s", task=3, attempt=2, store=str(tmp_path / "store"),
                    inputs=[_parquet_input(tmp_path, pa.table({"k": [1]}))], command=["true"])
    result = run_task(spec, str(tmp_path / "work"))
    store = open_store(spec.store)
    key = layout.task_log(spec.run_id, "s", 3, 2, "engine")
    assert result.status == "error" and result.retryable
    short, _, where = result.error.partition(" (full traceback: ")
    assert short == "stage 's' task 3 attempt 2: ZeroDivisionError: integer division or modulo by zero"
    assert where == f"{store.uri_for(key)})"
    assert "Traceback" not in result.error
    log = store.read_bytes(key).decode()
    assert "stage 's' task 3 attempt 2: unexpected error:\nTraceback (most recent call last):" in log
    assert "in buggy_helper\n    return 1 // 0" in log and log.rstrip().endswith("integer division or modulo by zero")


def test_a_user_error_is_not_given_a_traceback(tmp_path: Path) -> None:
    spec = TaskSpec(run_id=secrets.token_hex(4), job="j", stage="s", task=0, attempt=1, store=str(tmp_path / "store"),
                    inputs=[_parquet_input(tmp_path, pa.table({"k": [1]}))], command=["false"])
    result = run_task(spec, str(tmp_path / "work"))
    assert result.status == "error" and "exited with code 1" in result.error
    assert "full traceback" not in result.error
    assert not open_store(spec.store).exists(layout.task_log(spec.run_id, "s", 0, 1, "engine"))


@pytest.mark.parametrize(("flags", "shown"), [([], False), (["-v"], True), (["-vv"], True)])
def test_verbose_shows_the_decisions_on_stderr(tmp_path: Path, flags: list[str], shown: bool) -> None:
    job = make_job(tmp_path, files=2)
    result = CliRunner().invoke(main, [*flags, "run", str(job), "--backend", "inline"])
    assert result.exit_code == 0, result.output
    assert ("split into 2 task(s)" in result.output) is shown
    logging.getLogger("babelmr").handlers.clear()  # the CLI's handler writes to this test's captured stream
    logging.getLogger("babelmr").setLevel(logging.NOTSET)
