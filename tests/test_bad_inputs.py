"""Every way a user can get a job wrong gives a clear message, exit code and no published output."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from babelmr.cli import main
from babelmr.store import layout, open_store
from conftest import write_job, write_program

# A map program whose misbehaviour is chosen by the environment.
PROGRAM = """
import os, sys
import pyarrow.parquet as pq
how = os.environ.get("HOW", "ok")
print("starting", sys.argv[1:], file=sys.stderr)
if how == "exit1":
    print("something broke in the user program", file=sys.stderr)
    sys.exit(1)
if how == "sleep":
    import time; time.sleep(30)
if how == "no-output":
    sys.exit(0)
t = pq.read_table(os.environ["MR_INPUT"])
if how == "drop-key":
    t = t.drop_columns(["k"])
if how == "garbage":
    open(os.environ["MR_OUTPUT"], "w").write("this is not parquet")
else:
    pq.write_table(t, os.environ["MR_OUTPUT"])
"""


def _data(folder: Path, files: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        pq.write_table(pa.table({"k": list(range(i * 10, i * 10 + 10)), "v": [1.0] * 10}), folder / f"part{i}.parquet")
    return folder


def _job(tmp_path: Path, how: str, *, uri: str = "data/*.parquet", retries: int = 1, **stage) -> Path:
    write_program(tmp_path, "prog.py", PROGRAM)
    return write_job(tmp_path, {
        "name": "bad", "store": "store",
        "stages": [{"name": "map", "command": [sys.executable, "{job_dir}/prog.py"], "mode": "map",
                    "inputs": [{"name": "data", "uri": uri}], "key": ["k"], "partitions": 2,
                    "retries": retries, "env": {"HOW": how}, "split": {"files_per_task": 1}, **stage}],
    })


def _run(job: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", str(job)])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def _published(tmp_path: Path) -> tuple[list[str], list[str], dict]:
    """Commit records, data files and the run record of the only run in the job's store."""
    store = open_store(str(tmp_path / "store"))
    (run_id,) = {e.path.split("/")[1] for e in store.list("runs")}
    commits = [e.path for e in store.list(layout.commit_prefix(run_id, "map"))]
    data = [e.path for e in store.list(layout.data_prefix(run_id, "map"))]
    return commits, data, json.loads(store.read_bytes(layout.run_record(run_id)))


def test_broken_job_file_lists_every_problem_without_traceback(tmp_path: Path) -> None:
    job = write_job(tmp_path, {"name": "x", "stages": [{"name": "a", "inputs": [{"name": "i", "uri": 3}],
                                                        "partitions": 0, "mode": 1}]})
    proc = subprocess.run(["babelmr", "validate", str(job)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    for expected in ("$.stages[0].inputs[0].uri: expected string, got int 3",
                     "$.stages[0].partitions: 0 is less than the minimum of 1",
                     "$.stages[0].mode: expected string, got int 1",
                     "$.stages[0]: give 'command'"):
        assert expected in proc.stderr
    code, err = _run(job)  # run validates first
    assert code == 1 and "4 problem(s) in the job file" in err


def test_glob_matching_nothing_names_the_uri(tmp_path: Path) -> None:
    code, err = _run(_job(tmp_path, "ok", uri="nothing/*.parquet"))
    assert code == 1
    assert f"input '{tmp_path}/nothing/*.parquet' matches no files" in err


@pytest.mark.parametrize("split", [{"files_per_task": 1}, {"bytes_per_task": "64MB"}], ids=["in-a-task", "planning"])
def test_corrupt_parquet_names_the_file_and_publishes_nothing_for_it(tmp_path: Path, split: dict) -> None:
    _data(tmp_path / "data")
    (tmp_path / "data" / "part1.parquet").write_bytes(b"PAR1 but not really a parquet file")
    code, err = _run(_job(tmp_path, "ok", split=split))
    assert code == 1
    assert f"cannot read Parquet file {tmp_path}/data/part1.parquet" in err
    commits, data, record = _published(tmp_path)
    assert not any("t00001" in p for p in commits + data)
    assert record["status"] == "failed"
    if "files_per_task" in split:  # found by the task that reads it; corrupt data is not retried
        assert "stage 'map' task 1 attempt 1" in err and "failed after 1 attempt(s)" in err
    else:  # splitting by bytes reads every footer while planning: no task runs
        assert commits == [] and data == []


def test_corrupt_pages_copied_to_the_program_name_the_file_and_are_not_retried(tmp_path: Path) -> None:
    """The footer is intact, so the import copies the column chunks without decoding; the program fails
    on the pages and the worker, checking its copied input, names the file instead of blaming the program."""
    data = _data(tmp_path / "data")
    bad = data / "part1.parquet"
    pq.write_table(pa.table({"k": list(range(50_000)), "v": [1.5] * 50_000}), bad, compression="snappy",
                   use_dictionary=False)
    raw = bytearray(bad.read_bytes())
    raw[1000:3000] = bytes(b ^ 0x5A for b in raw[1000:3000])
    bad.write_bytes(bytes(raw))
    code, err = _run(_job(tmp_path, "ok", retries=2))
    assert code == 1
    assert f"cannot read Parquet file {bad}" in err
    assert "stage 'map' task 1 attempt 1" in err and "failed after 1 attempt(s)" in err
    commits, data_files, _ = _published(tmp_path)
    assert not any("t00001" in p for p in commits + data_files)


def test_program_exiting_1_is_retried_then_fails_with_its_stderr(tmp_path: Path) -> None:
    _data(tmp_path / "data")
    code, err = _run(_job(tmp_path, "exit1", retries=1))
    assert code == 1
    assert "failed after 2 attempt(s)" in err
    assert "attempt 2: the program" in err and "exited with code 1" in err
    assert "something broke in the user program" in err
    commits, data, record = _published(tmp_path)
    assert commits == [] and data == []
    attempts = record["stages"][0]["task_attempts"]
    assert {a["status"] for a in attempts} == {"error"}
    assert open_store(str(tmp_path / "store")).list(f"runs/{record['run_id']}/stages/map/logs")  # logs kept


def test_program_writing_no_output(tmp_path: Path) -> None:
    _data(tmp_path / "data")
    code, err = _run(_job(tmp_path, "no-output"))
    assert code == 1
    assert "the program exited 0 but wrote no output file out.parquet" in err
    assert "failed after 1 attempt(s)" in err  # a deterministic mistake: not retried
    commits, data, _ = _published(tmp_path)
    assert commits == [] and data == []


def test_output_missing_a_key_column(tmp_path: Path) -> None:
    _data(tmp_path / "data")
    code, err = _run(_job(tmp_path, "drop-key"))
    assert code == 1
    assert "the program's output has no key column(s) ['k']; it has ['v']" in err
    commits, data, _ = _published(tmp_path)
    assert commits == [] and data == []


def test_unreadable_output(tmp_path: Path) -> None:
    _data(tmp_path / "data")
    code, err = _run(_job(tmp_path, "garbage"))
    assert code == 1
    assert "cannot read the program's output out.parquet as parquet" in err


def test_timeout_kills_the_program(tmp_path: Path) -> None:
    _data(tmp_path / "data", files=1)
    code, err = _run(_job(tmp_path, "sleep", retries=0, timeout=1))
    assert code == 1
    assert "ran longer than the stage's timeout of 1 s and was killed" in err


def test_command_not_found(tmp_path: Path) -> None:
    _data(tmp_path / "data", files=1)
    job = _job(tmp_path, "ok")
    spec = json.loads(job.read_text())
    spec["stages"][0]["command"] = "no-such-program-xyz"
    job.write_text(json.dumps(spec))
    code, err = _run(job)
    assert code == 1
    assert "command 'no-such-program-xyz' not found" in err


def test_missing_column_is_found_before_any_task_runs(tmp_path: Path) -> None:
    _data(tmp_path / "data")
    job = _job(tmp_path, "ok")
    spec = json.loads(job.read_text())
    spec["stages"][0]["inputs"][0]["columns"] = ["k", "nope"]
    job.write_text(json.dumps(spec))
    code, err = _run(job)
    assert code == 1
    assert "has no column(s) ['nope']; it has ['k', 'v']: fix 'columns' in the job file" in err


@pytest.mark.parametrize("how", ["ok"])
def test_a_good_job_publishes_every_task(tmp_path: Path, how: str) -> None:
    _data(tmp_path / "data")
    code, err = _run(_job(tmp_path, how))
    assert code == 0, err
    commits, data, record = _published(tmp_path)
    assert len(commits) == 2 and len(data) == 2
    assert record["status"] == "succeeded"


def test_job_dir_is_one_shell_word_with_shell_true(tmp_path: Path) -> None:
    """A job folder whose name holds a space, quotes and ``$(...)``: the program runs, nothing is injected."""
    folder = tmp_path / 'my jobs $(touch "$MARKER")x'
    marker = tmp_path / "injected"
    _data(folder / "data", files=1)
    job = _job(folder, "ok", shell=True, command=f"{shlex.quote(sys.executable)} {{job_dir}}/prog.py",
               env={"HOW": "ok", "MARKER": str(marker)})
    code, err = _run(job)
    assert not marker.exists(), "the folder name ran as a command"
    assert code == 0, err
    commits, _, record = _published(folder)
    assert record["status"] == "succeeded" and len(commits) == 1


@pytest.mark.parametrize(("field", "raw", "expected"), [
    ("partitions", "2.0", "$.stages[0].partitions: expected integer, got float 2.0: write 2"),
    ("timeout", "Infinity", "$.stages[0].timeout: Infinity is not a number in JSON"),
    ("retries", "1e0", "$.stages[0].retries: expected integer, got float 1.0"),
])
def test_run_refuses_numbers_that_used_to_crash_it_before_any_task(tmp_path: Path, field: str, raw: str,
                                                                   expected: str) -> None:
    """These passed validation, then crashed the run (range() of a float, a timer of inf seconds)."""
    _data(tmp_path / "data")
    job = _job(tmp_path, "ok", **{field: "__raw__"})
    job.write_text(job.read_text().replace('"__raw__"', raw))
    code, err = _run(job)
    assert code == 1 and expected in err, err
    assert not (tmp_path / "store").exists()  # refused before the run started
