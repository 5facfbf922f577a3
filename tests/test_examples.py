"""The examples, end to end on the local backend, with a local and an S3 store, checked against DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from examples import example_module, fetch, job_for_data, run_cli, upload_folder

PY = "examples-python"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wordcount_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("wordcount") / "data"
    example_module(PY, "wordcount", "prepare").prepare(str(data), mb=1, files=3, seed=5)
    return data


@pytest.fixture(scope="module")
def tpch_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("tpch") / "data"
    example_module(PY, "tpch-q1", "prepare").prepare(str(data), sf=0.05, parts=3)
    return data


@pytest.fixture(scope="module")
def bigbench_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("bigbench") / "data"
    example_module(PY, "bigbench-q1", "prepare").prepare(str(data), rows=200_000, files=3, row_groups=3, seed=3)
    return data


def _outputs(record: dict, tmp_path: Path) -> list[str]:
    assert record["status"] == "succeeded"
    return fetch(record["output"]["files"], tmp_path / "result")


def test_wordcount(wordcount_data: Path, store_uri: str, tmp_path: Path) -> None:
    job = job_for_data(PY, "wordcount", tmp_path, {"text": f"{wordcount_data}/*.csv"})
    record = run_cli(str(job), "--store", store_uri)
    map_stage = record["stages"][0]
    assert map_stage["inputs"]["text"] == sorted(str(p) for p in wordcount_data.glob("*.csv"))
    assert map_stage["tasks"] == 3 and len(record["output"]["files"]) == 4
    example_module(PY, "wordcount", "check").compare(_outputs(record, tmp_path), str(wordcount_data))


def test_tpch_q1(tpch_data: Path, store_uri: str, tmp_path: Path) -> None:
    job = job_for_data(PY, "tpch-q1", tmp_path, {"lineitem": f"{tpch_data}/lineitem/*.parquet"})
    record = run_cli(str(job), "--store", store_uri)
    files = record["stages"][0]["inputs"]["lineitem"]
    assert files == sorted(str(p) for p in (tpch_data / "lineitem").glob("*.parquet"))
    example_module(PY, "tpch-q1", "check").compare(_outputs(record, tmp_path), str(tpch_data))


@pytest.mark.s3
def test_tpch_q1_reading_its_input_from_s3(tpch_data: Path, s3_prefix: str, tmp_path: Path) -> None:
    upload_folder(tpch_data / "lineitem", f"{s3_prefix}/input/lineitem")
    job = job_for_data(PY, "tpch-q1", tmp_path, {"lineitem": f"{s3_prefix}/input/lineitem/"})
    record = run_cli(str(job), "--store", f"{s3_prefix}/store")
    assert all(f.startswith(f"{s3_prefix}/input/lineitem/") for f in record["stages"][0]["inputs"]["lineitem"])
    example_module(PY, "tpch-q1", "check").compare(_outputs(record, tmp_path), str(tpch_data))


def test_tpch_q1_split_by_row_groups(tpch_data: Path, tmp_path: Path) -> None:
    regrouped = tmp_path / "lineitem"
    regrouped.mkdir()
    for source in (tpch_data / "lineitem").glob("*.parquet"):
        pq.write_table(pq.read_table(source), regrouped / source.name, row_group_size=25_000)
    job = job_for_data(PY, "tpch-q1", tmp_path, {"lineitem": f"{regrouped}/*.parquet"})
    spec = json.loads(job.read_text())
    spec["stages"][0]["split"] = {"bytes_per_task": "1MB"}
    job.write_text(json.dumps(spec))
    record = run_cli(str(job), "--store", str(tmp_path / "store"))
    assert record["stages"][0]["tasks"] > 3  # files were cut into row-group ranges
    example_module(PY, "tpch-q1", "check").compare(_outputs(record, tmp_path), str(tpch_data))


def test_bigbench_q1(bigbench_data: Path, store_uri: str, tmp_path: Path) -> None:
    job = job_for_data(PY, "bigbench-q1", tmp_path, {"store_sales": f"{bigbench_data}/store_sales/*.parquet",
                                                     "item": f"{bigbench_data}/item/*.parquet"},
                       env={"Q1_MIN_COUNT": "3"})
    record = run_cli(str(job), "--store", store_uri)
    assert [s["name"] for s in record["stages"]] == ["join", "pairs", "count"]
    result = _outputs(record, tmp_path)
    check = example_module(PY, "bigbench-q1", "check")
    assert len(check.expected(str(bigbench_data), 3)) > 10  # the data has frequent pairs to find
    check.compare(result, str(bigbench_data), 3)
