"""Sorted, grouped reduce input on every backend: the streaming reducer of test_toolkit (one group in memory,
failing on the first row out of order) gives the same result on local, Docker and the Lambda emulator."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.backends import get_backend
from babelmr.coordinator.run import run_job
from babelmr.job import load_job
from conftest import write_job
from test_toolkit import STREAMING_REDUCER, _data

pytestmark = pytest.mark.docker


def _job(folder: Path, image: str | None, fmt: str) -> Path:
    where = {"image": image} if image else {}
    return write_job(folder, {"name": "sorted", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1}, "key": ["k"], "partitions": 3, **where},
        {"name": "reduce", "command": ["python3", "-c", STREAMING_REDUCER], "inputs": [{"name": "p", "stage": "map"}],
         "program_format": fmt, "schema": {"k": "int64", "n": "int64"}, "retries": 0, **where,
         "sort": [{"column": "ts", "order": "desc"}]}]})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_sorted_streaming_reducer_agrees_on_every_backend(tmp_path: Path, checkout_image: str, fmt: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BABELMR_SORT_RUN_BYTES", "4096")  # every reduce task spills and merges runs
    table = _data(tmp_path / "data")
    rows = table  # noqa: F841 - DuckDB reads the local variable
    want = sorted(duckdb.sql("SELECT k, count(*) AS n FROM rows GROUP BY k").to_arrow_table().to_pylist(), key=repr)
    for name, options in (("local", {}), ("docker", {}), ("lambda", {"emulators": 2})):
        image = None if name == "local" else checkout_image
        with get_backend(name, concurrency=2, **options) as backend:
            record = run_job(load_job(str(_job(tmp_path, image, fmt))), backend)
        got = pa.concat_tables(pq.read_table(f) for f in record.output.files)
        assert sorted(got.to_pylist(), key=repr) == want, name
