"""Container backends with any store folder: a private store works, an unreadable input fails before any task
(issue 7, part 7). The task containers run as the image's non-root user (uid 1000); these tests run as root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import write_job

COPY = "import os, shutil; shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])"
BACKENDS = {"docker": ["--backend", "docker"], "lambda": ["--backend", "lambda", "--emulators", "1"]}


def _data(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(2):
        pq.write_table(pa.table({"k": [f"k{j % 5}" for j in range(i * 50, i * 50 + 50)],
                                 "v": list(range(i * 50, i * 50 + 50))}), folder / f"p{i}.parquet")
    return folder


def _job(tmp_path: Path) -> Path:
    return write_job(tmp_path / "job", {"name": "private", "stages": [
        {"name": "map", "command": ["python3", "-c", COPY], "key": ["k"], "partitions": 2, "retries": 2,
         "inputs": [{"name": "d", "uri": str(tmp_path / "data")}], "split": {"files_per_task": 1}},
        {"name": "reduce", "command": ["python3", "-c", COPY], "inputs": [{"name": "m", "stage": "map"}],
         "retries": 2}]})


def _run(job: Path, store: Path, backend: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    proc = subprocess.run([sys.executable, "-m", "babelmr", "run", str(job), "--store", str(store), "--json",
                           *BACKENDS[backend]], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    runs = list((store / "runs").iterdir())
    record = json.loads((runs[0] / "run.json").read_text()) if runs else None
    return proc, record


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["docker", "lambda"])
def test_a_private_store_folder_works(base_image, tmp_path: Path, backend: str) -> None:
    """Like `--store "$(mktemp -d)"`: a folder of mode 0700 owned by root, which uid 1000 cannot enter."""
    data = _data(tmp_path / "data")
    store = tmp_path / "private-store"
    store.mkdir(mode=0o700)
    os.chmod(store, 0o700)
    proc, record = _run(_job(tmp_path), store, backend)
    assert proc.returncode == 0, proc.stderr
    assert record is not None and record["status"] == "succeeded"
    assert all(s["retries"] == 0 for s in record["stages"]), record["stages"]
    assert (store.stat().st_mode & 0o777) == 0o700  # the store folder itself was left private
    got = duckdb.sql(f"select k, v from read_parquet({record['output']['files']!r}) order by v").fetchall()
    assert got == duckdb.sql(f"select k, v from read_parquet('{data}/*.parquet') order by v").fetchall()


@pytest.mark.docker
@pytest.mark.skipif(os.geteuid() == 1000, reason="the containers' uid would own the folder")
def test_an_input_folder_the_container_cannot_read_fails_before_any_task(base_image, tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    os.chmod(data, 0o700)  # root's: uid 1000 cannot list or enter it
    store = tmp_path / "store"
    proc, record = _run(_job(tmp_path), store, "docker")
    assert proc.returncode == 1
    assert record is not None and record["status"] == "failed" and record["stages"] == []  # no task ran
    message = proc.stderr
    assert f"cannot read {data}/p0.parquet" in message and "uid 1000" in message
    assert f"{data} is not readable for uid 1000" in message and "chmod o+rX" in message
    assert "input 'd'" in message and "stage 'map'" in message


@pytest.mark.docker
@pytest.mark.skipif(os.geteuid() != 0, reason="writes a folder under /root")
def test_a_store_under_a_private_folder_of_the_image_fails_before_any_task(base_image, tmp_path: Path) -> None:
    """/root is private (0700) inside the image too: the run folder mounted there is out of uid 1000's reach."""
    _data(tmp_path / "data")
    os.chmod(tmp_path / "data", 0o755)
    store = Path(tempfile.mkdtemp(dir="/root", prefix="babelmr-test-store-"))
    try:
        proc, record = _run(_job(tmp_path), store, "docker")
        assert proc.returncode == 1
        assert record is not None and record["stages"] == []  # no task ran
        assert f"cannot write the run folder {store}/runs/" in proc.stderr and "uid 1000" in proc.stderr
        assert "/root is a private folder of the image" in proc.stderr
    finally:
        shutil.rmtree(store, ignore_errors=True)


@pytest.mark.docker
def test_lambda_emulators_see_the_input_folders_of_every_task(base_image, tmp_path: Path) -> None:
    """An emulator container serves many tasks: it mounts the folders of all the stage's tasks, not the first's."""
    for name in ("a", "b", "c"):
        _data(tmp_path / "data" / name)
    job = write_job(tmp_path / "job", {"name": "folders", "stages": [
        {"name": "map", "command": ["python3", "-c", COPY], "key": ["k"], "partitions": 2, "retries": 0,
         "inputs": [{"name": "d", "uri": str(tmp_path / "data" / "*" / "p0.parquet")}],
         "split": {"files_per_task": 1}}]})
    proc, record = _run(job, tmp_path / "store", "lambda")
    assert proc.returncode == 0, proc.stderr
    assert record is not None and record["stages"][0]["rows_out"] == 150
