"""Failures are classified and final: deterministic errors fail a task at once, transient ones are retried,
and an input that changes after planning is never read silently (issue 7, parts 8 and 9)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import babelmr.coordinator.run as coordinator_run
from babelmr.backends.local import LocalBackend
from babelmr.errors import BabelMRError, InputChanged, InputError, JobFailed, StoreError, TaskError
from babelmr.job import load_job
from babelmr.spec import TaskInput
from babelmr.store import layout, list_input_files, open_store
from babelmr.store.s3 import s3_client, split_s3_uri
from babelmr.worker import chunkcopy, importer
from babelmr.worker.task import retryable
from conftest import BUCKET, write_job, write_program

COPY = "import os, shutil; shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])"


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    """One local process pool for the module (its workers adopt the current AWS settings per task)."""
    with LocalBackend(concurrency=1) as b:
        yield b


def _table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"k": [f"k{i % 7}" for i in range(start, start + n)], "v": list(range(start, start + n))})


def _write(table: pa.Table, fmt: str) -> bytes:
    sink = pa.BufferOutputStream()
    if fmt == "parquet":
        pq.write_table(table, sink)
    else:
        pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


def _run(tmp_path: Path, backend: LocalBackend, stage: dict[str, Any],
         after_planning: Callable[[], None] | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[dict[str, Any], str | None]:
    """Run a one-stage job; ``after_planning`` runs between planning and the first task. Returns the run
    record (read back from the store) and the JobFailed message, if any."""
    job = load_job(str(write_job(tmp_path, {"name": "fail", "store": "store", "stages": [stage]})))
    if after_planning is not None:
        assert monkeypatch is not None
        plan = coordinator_run.plan_stage

        def plan_then_change(*args: Any, **kwargs: Any):
            planned = plan(*args, **kwargs)
            after_planning()
            return planned

        monkeypatch.setattr(coordinator_run, "plan_stage", plan_then_change)
    error = None
    try:
        coordinator_run.run_job(job, backend)
    except JobFailed as e:
        error = str(e)
    store = open_store(str(tmp_path / "store"))
    (run_id,) = {e.path.split("/")[1] for e in store.list("runs")}
    return json.loads(store.read_bytes(layout.run_record(run_id))), error


def _attempts(record: dict[str, Any]) -> list[dict[str, Any]]:
    return record["stages"][0]["task_attempts"]


# ---- part 9: inputs pinned at plan time ---------------------------------------------------------------------

class _Location:
    """Input files in a local folder or under an S3 prefix, written, replaced and deleted for real."""

    def __init__(self, root: str):
        self.root = root

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def put(self, name: str, data: bytes) -> None:
        if self.root.startswith("s3://"):
            bucket, key = split_s3_uri(self.uri(name))
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        else:
            tmp = Path(self.root) / f".new-{name}"
            tmp.write_bytes(data)
            os.replace(tmp, Path(self.root) / name)  # how tools replace files: a new file under the old name

    def delete(self, name: str) -> None:
        if self.root.startswith("s3://"):
            bucket, key = split_s3_uri(self.uri(name))
            s3_client().delete_object(Bucket=bucket, Key=key)
        else:
            os.remove(Path(self.root) / name)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> _Location:
    if request.param == "local":
        (tmp_path / "in").mkdir()
        return _Location(str(tmp_path / "in"))
    request.getfixturevalue("s3_server")
    return _Location(f"s3://{BUCKET}/pin-{uuid.uuid4().hex[:10]}")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_an_input_changed_after_planning_fails_the_task_once(tmp_path: Path, backend: LocalBackend,
                                                             location: _Location, fmt: str, change: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(2):
        location.put(f"part{i}.{fmt}", _write(_table(400, i * 400), fmt))

    def after_planning() -> None:
        if change == "replaced":  # fewer rows, like the reported 6,500 instead of 8,000
            location.put(f"part1.{fmt}", _write(_table(250, 5000), fmt))
        else:
            location.delete(f"part1.{fmt}")

    stage = {"name": "copy", "command": [sys.executable, "-c", COPY], "program_format": "parquet",
             "inputs": [{"name": "d", "uri": location.uri(f"*.{fmt}"), "format": fmt}], "retries": 2,
             "split": {"files_per_task": 1}}
    record, error = _run(tmp_path, backend, stage, after_planning, monkeypatch)
    assert record["status"] == "failed" and error is not None
    changed = location.uri(f"part1.{fmt}")
    assert f"{changed} {'changed' if change == 'replaced' else 'was deleted'} after the job was planned" in error
    assert "rerun the job" in error and "stage 'copy' task 1 attempt 1" in error
    failed = [a for a in _attempts(record) if a["task"] == 1]
    assert len(failed) == 1 and failed[0]["retryable"] is False  # attempted once: a rerun of the job is the fix
    assert all(a["status"] == "ok" for a in _attempts(record) if a["task"] == 0)


def test_the_plan_pins_each_file_to_its_listed_version(tmp_path: Path, location: _Location) -> None:
    """Every task slice carries the size and version (ETag, or mtime and inode) the listing returned."""
    for i in range(3):
        location.put(f"p{i}.parquet", _write(_table(100 + i), "parquet"))
    listed = {e.path: e for e in list_input_files(location.uri("*.parquet"))}
    assert len(listed) == 3 and all(e.version for e in listed.values())
    job = load_job(str(write_job(tmp_path, {"name": "pin", "stages": [{
        "name": "m", "command": ["true"], "split": {"bytes_per_task": 1},
        "inputs": [{"name": "d", "uri": location.uri("*.parquet")}]}]})))
    plan = coordinator_run.plan_stage(job, job.stages[0], "r", str(tmp_path / "store"), {})
    slices = [f for t in plan.tasks for i in t.inputs for f in i.files]
    assert {f.uri for f in slices} == set(listed)
    for f in slices:
        assert (f.file_size, f.version) == (listed[f.uri].size, listed[f.uri].version)
    location.put("p0.parquet", _write(_table(100), "parquet"))  # the same bytes, written again
    again = {e.path: e.version for e in list_input_files(location.uri("*.parquet"))}
    p0, p1 = location.uri("p0.parquet"), location.uri("p1.parquet")
    assert again[p1] == listed[p1].version
    # an ETag is the content's: S3 sees no change; a local file is another file (new inode and time): a change
    assert (again[p0] == listed[p0].version) is location.root.startswith("s3://")


@pytest.mark.s3
def test_listing_s3_with_versions_takes_no_request_per_file(s3_server: Any) -> None:
    """The listing's own ETags pin the files: 40 objects cost the same requests as 2."""
    root = _Location(f"s3://{BUCKET}/many-{uuid.uuid4().hex[:10]}")
    calls: list[str] = []

    def count(**kwargs: Any) -> None:
        calls.append(kwargs["event_name"].rsplit(".", 1)[-1])

    for n in (2, 40):
        for i in range(n):
            root.put(f"n{n}/f{i:03d}.csv", b"a\n1\n")
        events = s3_client().meta.events
        events.register("before-call.s3", count)
        try:
            calls.clear()
            glob = list_input_files(root.uri(f"n{n}/*.csv"))
            by_glob = list(calls)
            calls.clear()
            folder = list_input_files(root.uri(f"n{n}"))
            by_folder = list(calls)
        finally:
            events.unregister("before-call.s3", count)
        assert len(glob) == len(folder) == n and all(e.version for e in glob + folder)
        assert by_glob == ["ListObjectsV2"], by_glob
        assert by_folder == ["HeadObject", "ListObjectsV2"], by_folder


def _pinned_input(location: _Location, fmt: str) -> TaskInput:
    files = list_input_files(location.uri(f"*.{fmt}"))
    from babelmr.coordinator.planner import _pinned

    return TaskInput(name="d", kind="files", format=fmt, files=[_pinned(f, None, f.size) for f in files],
                     source=location.uri(f"*.{fmt}"), csv={"header": True})


@pytest.mark.parametrize(("fmt", "program_format"), [("parquet", "csv"), ("csv", "csv"), ("parquet", "parquet")],
                         ids=["parquet-decoded", "csv", "parquet-copied"])
def test_an_input_changed_while_it_is_read_is_refused(tmp_path: Path, location: _Location, fmt: str,
                                                      program_format: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is replaced after its first bytes were read: the check after the last read catches it.
    (The moment is chosen by wrapping the importer's writer or the chunk copier: timing is the only fault.)"""
    location.put(f"a.{fmt}", _write(_table(3000), fmt))
    inp = _pinned_input(location, fmt)

    def replace() -> None:
        location.put(f"a.{fmt}", _write(_table(10, 99), fmt))

    if program_format == "parquet":
        copy = chunkcopy.write

        def copy_then_replace(*args: Any, **kwargs: Any) -> int:
            rows = copy(*args, **kwargs)
            replace()
            return rows

        monkeypatch.setattr(chunkcopy, "write", copy_then_replace)
    else:
        open_writer = importer.open_writer

        def writer_that_replaces(*args: Any, **kwargs: Any):
            writer = open_writer(*args, **kwargs)
            write = writer.write

            def first_write_replaces(batch: pa.RecordBatch) -> None:
                write(batch)
                replace()

            writer.write = first_write_replaces
            return writer

        monkeypatch.setattr(importer, "open_writer", writer_that_replaces)
    with pytest.raises(InputChanged, match="changed after the job was planned"):
        importer.import_input(inp, str(tmp_path / f"in.{program_format}"), program_format)


def test_an_unchanged_input_still_imports_every_row(tmp_path: Path, location: _Location) -> None:
    for fmt in ("parquet", "csv"):
        location.put(f"a.{fmt}", _write(_table(500), fmt))
        for program_format in ("parquet", "csv"):
            out = importer.import_input(_pinned_input(location, fmt), str(tmp_path / f"in-{fmt}.{program_format}"),
                                        program_format)
            assert out.rows == 500


def test_corrupt_pages_are_an_input_error_not_a_passing_fault(tmp_path: Path, location: _Location) -> None:
    """Decoding corrupt pages fails the same way every time, on S3 as on a local disk: not retried."""
    location.put("bad.parquet", _corrupt_pages())
    with pytest.raises(InputError, match="cannot read Parquet file") as err:
        importer.import_input(_pinned_input(location, "parquet"), str(tmp_path / "in.csv"), "csv")
    assert retryable(err.value) is False and location.uri("bad.parquet") in str(err.value)


# ---- part 8: errors classified -----------------------------------------------------------------------------

MAP_KEY = """
import os, pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(os.environ["MR_INPUT"])
pq.write_table(pa.table({"k": pa.array([{"a": 1}] * t.num_rows, pa.map_(pa.string(), pa.int64())),
                         "v": t["v"]}), os.environ["MR_OUTPUT"])
"""
STRING_V = """
import os, pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(os.environ["MR_INPUT"])
pq.write_table(t.set_column(1, "v", pa.array(["not a number"] * t.num_rows)), os.environ["MR_OUTPUT"])
"""
DROP_KEY = """
import os, pyarrow.parquet as pq
pq.write_table(pq.read_table(os.environ["MR_INPUT"]).drop_columns(["k"]), os.environ["MR_OUTPUT"])
"""
GARBAGE = "import os; open(os.environ['MR_OUTPUT'], 'w').write('this is not parquet')"


def _corrupt_pages() -> bytes:
    """A Parquet file whose footer is intact and whose data pages are not (decoding fails, not opening)."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"k": [f"k{i % 7}" for i in range(50_000)], "v": list(range(50_000))}), sink,
                   row_group_size=10_000, use_dictionary=False)
    data = bytearray(sink.getvalue().to_pybytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes(b ^ 0x5A for b in data[middle:middle + 2000])
    return bytes(data)


def _deterministic_cases(tmp_path: Path) -> dict[str, tuple[dict[str, Any], str]]:
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(_table(50), data / "a.parquet")
    pq.write_table(_table(50, 50), data / "b.parquet")
    for name, source in (("map_key.py", MAP_KEY), ("string_v.py", STRING_V), ("drop_key.py", DROP_KEY),
                         ("garbage.py", GARBAGE)):
        write_program(tmp_path, name, source)

    def stage(program: str | None = None, **extra: Any) -> dict[str, Any]:
        command = [sys.executable, f"{{job_dir}}/{program}"] if program else [sys.executable, "-c", COPY]
        return {"name": "m", "command": command, "key": ["k"], "partitions": 2, "retries": 2,
                "inputs": [{"name": "d", "uri": "data/*.parquet"}], **extra}

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.parquet").write_bytes(_corrupt_pages())

    return {
        "corrupt input": (stage(program_format="csv", inputs=[{"name": "d", "uri": "corrupt"}]),
                          f"cannot read Parquet file {corrupt}/a.parquet"),
        "bad key type": (stage("map_key.py"), "cannot partition by a column of type map"),
        "schema conflict": (stage("string_v.py", schema={"v": "int64"}), "not a number"),
        "missing key column": (stage("drop_key.py"), "has no key column(s) ['k']"),
        "output unreadable": (stage("garbage.py"), "cannot read the program's output"),
        "command not found": (stage(command="no-such-command-xyz --flag", shell=True), "could not find or execute"),
    }


@pytest.mark.parametrize("case", ["corrupt input", "bad key type", "schema conflict", "missing key column",
                                  "output unreadable", "command not found"])
def test_a_deterministic_failure_is_attempted_exactly_once(tmp_path: Path, backend: LocalBackend,
                                                           case: str) -> None:
    stage, cause = _deterministic_cases(tmp_path)[case]
    record, error = _run(tmp_path, backend, stage)
    assert record["status"] == "failed" and error is not None
    attempts = _attempts(record)
    assert len(attempts) == record["stages"][0]["attempts"] == 1, attempts  # the first failure stops the stage
    assert attempts[0]["retryable"] is False
    assert cause in error
    # the final message names the stage, the task, the attempt and the cause, and why it was not retried
    assert f"stage 'm' failed: task {attempts[0]['task']} failed after 1 attempt(s) (not retried" in error
    assert f"stage 'm' task {attempts[0]['task']} attempt 1: " in error
    assert "Traceback" not in error


FLAKY = """
import os, shutil, sys
marker = os.path.join(os.environ["FLAKY_DIR"], f"t{os.environ['MR_TASK']}")
if not os.path.exists(marker):
    open(marker, "w").close()
    print("a transient failure", file=sys.stderr)
    sys.exit(3)
shutil.copy(os.environ["MR_INPUT"], os.environ["MR_OUTPUT"])
"""


def test_a_program_failing_once_is_retried_to_the_right_output(tmp_path: Path, backend: LocalBackend) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        pq.write_table(_table(200, i * 200), data / f"p{i}.parquet")
    write_program(tmp_path, "flaky.py", FLAKY)
    (tmp_path / "markers").mkdir()
    stage = {"name": "m", "command": [sys.executable, "{job_dir}/flaky.py"], "key": ["k"], "partitions": 3,
             "retries": 1, "env": {"FLAKY_DIR": str(tmp_path / "markers")}, "split": {"files_per_task": 1},
             "inputs": [{"name": "d", "uri": "data/*.parquet"}]}
    record, error = _run(tmp_path, backend, stage)
    assert error is None and record["status"] == "succeeded"
    attempts = _attempts(record)
    assert sorted((a["task"], a["attempt"], a["status"]) for a in attempts) == [
        (t, a, "error" if a == 1 else "ok") for t in range(3) for a in (1, 2)]
    assert all(a["retryable"] for a in attempts if a["status"] == "error")
    assert all("exited with code 3" in a["error"] and "a transient failure" in a["error"]
               for a in attempts if a["status"] == "error")
    files = record["output"]["files"]
    got = duckdb.sql(f"select k, v from read_parquet({files!r}) order by v").fetchall()
    want = duckdb.sql(f"select k, v from read_parquet('{data}/*.parquet') order by v").fetchall()
    assert got == want and len(got) == 600


@pytest.mark.parametrize(("error", "expected"), [
    (TypeError("cannot partition by a column of type map"), False),
    (pa.ArrowInvalid("Failed to parse string"), False),
    (pa.ArrowTypeError("cannot cast"), False),
    (pa.ArrowNotImplementedError("unsupported cast"), False),
    (KeyError("v"), False),
    (PermissionError(13, "Permission denied"), False),
    (InputError("corrupt"), False),
    (InputChanged("changed"), False),
    (TaskError("no such command", retryable=False), False),
    (BabelMRError("any other mistake of the user's"), False),
    (TaskError("the program exited with code 1"), True),
    (StoreError("the store could not be written"), True),
    (OSError("connection reset"), True),
    (pa.ArrowIOError("S3 read timed out"), True),
    (MemoryError(), True),
    (ConnectionResetError(), True),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), True),
    (RuntimeError("unknown"), True),
])
def test_every_error_is_classified_in_one_place(error: BaseException, expected: bool) -> None:
    assert retryable(error) is expected
