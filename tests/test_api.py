"""The public Python API (babelmr.run / open_run / load_job, `Run`) and the inline backend."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import babelmr
from babelmr.api import CommittedFile, Run, StageSummary
from babelmr.cli import main
from babelmr.errors import BabelMRError, JobFailed, JobFileError
from babelmr.spec import RunRecord
from scripted import assert_keys_meet, make_job, oracle, result_rows


def test_importing_babelmr_is_cheap() -> None:
    """``import babelmr`` loads no coordinator, backend or pyarrow: the names are imported on first use."""
    code = ("import sys, babelmr; print(sorted(m for m in sys.modules if m.startswith(('babelmr.', 'pyarrow', "
            "'pandas', 'docker', 'boto3'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert callable(babelmr.run) and babelmr.Run is Run and babelmr.JobFailed is JobFailed
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        babelmr.nope  # noqa: B018 - the lookup is the test


def test_run_returns_a_typed_run_whose_table_is_the_result(tmp_path: Path) -> None:
    job = make_job(tmp_path, files=3, partitions=2)
    run = babelmr.run(str(job), backend="inline", store=str(tmp_path / "store"))
    assert isinstance(run, Run) and run.succeeded and run.status == "succeeded" and run.error is None
    assert run.backend == "inline" and run.job == "scripted" and run.store == str(tmp_path / "store")
    assert run.seconds is not None and run.seconds > 0
    assert [s.name for s in run.stages] == ["map", "reduce"]
    assert all(isinstance(s, StageSummary) and s.status == "succeeded" for s in run.stages)
    assert [s.tasks for s in run.stages] == [3, 2]
    assert run.stages[0].rows_in == run.stages[0].rows_out == len(oracle(tmp_path))
    assert all(isinstance(c, CommittedFile) for c in run.stages[0].committed)
    assert run.counters == {"test.map_tasks": 3} == run.stage("map").counters
    assert run.output_stage == "reduce" and run.output_files == run.stage("reduce").output_files
    assert len(run.output_files) == 2 and all(Path(f).exists() for f in run.output_files)

    table = run.read_table()
    assert isinstance(table, pa.Table) and b"babelmr.partitions" not in (table.schema.metadata or {})
    assert result_rows(table) == oracle(tmp_path)
    assert_keys_meet(run)
    assert result_rows(run.read_table(stage="map")) == oracle(tmp_path)
    assert run.read_table(columns=["v"]).column_names == ["v"]
    assert sum(b.num_rows for b in run.iter_batches()) == table.num_rows
    frame = run.to_pandas()
    assert list(frame.columns) == ["k", "v"] and len(frame) == table.num_rows

    again = babelmr.open_run(run.run_id, str(tmp_path / "store"))
    assert again == run
    assert babelmr.open_run(run.run_id[:-2], str(tmp_path / "store")).run_id == run.run_id  # a unique prefix


def test_load_job_and_run_a_loaded_job(tmp_path: Path) -> None:
    job = babelmr.load_job(str(make_job(tmp_path)), store=str(tmp_path / "elsewhere"))
    run = babelmr.run(job, backend="inline")
    assert run.store == str(tmp_path / "elsewhere")
    assert result_rows(run.read_table()) == oracle(tmp_path)


def test_a_failed_run_raises_its_typed_error_carrying_the_run(tmp_path: Path) -> None:
    job = make_job(tmp_path, retries=0, map_command=["sh", "-c", "echo no luck >&2; exit 2"])
    with pytest.raises(JobFailed, match="stage 'map' failed: task 0 failed after 1 attempt") as e:
        babelmr.run(job, backend="inline")
    run = e.value.run
    assert isinstance(run, Run) and run.status == "failed" and not run.succeeded
    assert "no luck" in run.error and run.output_files == []
    assert run == babelmr.open_run(run.run_id, run.store)
    with pytest.raises(BabelMRError, match=f"run {run.run_id} failed: it has no output"):
        run.read_table()
    with pytest.raises(BabelMRError, match=r"stage 'map' of run .* failed: it has no output"):
        run.read_table(stage="map")


def test_errors_before_the_run_starts_carry_no_run(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps({"name": "x", "stages": []}))
    with pytest.raises(JobFileError) as e:
        babelmr.run(tmp_path / "job.json", backend="inline")
    assert e.value.run is None
    with pytest.raises(BabelMRError, match="no run named 'nope'"):
        babelmr.open_run("nope", str(tmp_path / "store"))


def test_inline_and_local_backends_give_the_same_result(tmp_path: Path) -> None:
    """The same job on both: identical committed rows per task and partition, and the oracle's rows."""
    job = make_job(tmp_path, files=3, partitions=3)
    runs = [babelmr.run(job, backend=b, store=str(tmp_path / b), concurrency=2) for b in ("inline", "local")]
    for run in runs:
        assert result_rows(run.read_table()) == oracle(tmp_path)

    def shape(run: Run) -> list:
        return [(s.name, [(c.task, c.rows) for c in s.committed], s.rows_in, s.rows_out) for s in run.stages]

    assert shape(runs[0]) == shape(runs[1])
    assert [r.backend for r in runs] == ["inline", "local"]


def test_the_cli_runs_the_inline_backend(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    result = CliRunner().invoke(main, ["run", str(job), "--backend", "inline", "--json"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["backend"] == "inline" and record["status"] == "succeeded"
    assert result_rows(Run.from_record(RunRecord.from_dict(record)).read_table()) == oracle(tmp_path)


def test_the_example_in_docs_api_md_runs(tmp_path: Path) -> None:
    """docs/api.md's runnable example, as a user would paste it."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "tempfile" in b)
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "succeeded" in out.stdout and "{'words.seen': 9}" in out.stdout


def test_inline_gives_each_attempt_a_fresh_working_directory(tmp_path: Path) -> None:
    """Two tasks at once: each fails if it finds another's file in its working directory (the worker
    cleans up after an attempt, so only concurrent attempts can tell a shared directory)."""
    from babelmr.backends.inline import InlineBackend

    check = ["sh", "-c", "test ! -e leftover && touch leftover && sleep 0.5 && cp in.parquet out.parquet"]
    job = make_job(tmp_path, files=4, retries=0, map_command=check)
    backend = InlineBackend(concurrency=2)
    run = babelmr.run(job, backend=backend)
    assert run.succeeded and result_rows(run.read_table()) == oracle(tmp_path)
    root = Path(backend._root)
    assert root.is_dir() and not any(root.iterdir())  # every attempt's directory is removed after it
    backend.close()
    assert not root.exists()
