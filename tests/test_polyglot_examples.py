"""The user story of the containers issue: the same job file, in Python, Go and C#, gives DuckDB's answer
on the local backend, in Docker containers and on Lambda (AWS's Runtime Interface Emulator), with a
local store and with S3, and leaves no container behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from babelmr.images import build_image
from examples import ROOT, example_module, fetch, job_for_data, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LANGUAGES = ["examples-python", "examples-go", "examples-csharp"]
EXAMPLES = ["wordcount", "tpch-q1", "bigbench-q1"]
PY = "examples-python"


@pytest.fixture(scope="session")
def example_images(base_image) -> dict[tuple[str, str], str]:
    """Every example image, built once per session FROM the base image."""
    tags = {}
    for language in LANGUAGES:
        for example in EXAMPLES:
            job = json.loads((ROOT / language / example / "job.json").read_text())
            tag = job["stages"][0]["image"]
            build_image(ROOT / language / example, tag, quiet=True)
            tags[language, example] = tag
    return tags


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small input data for each example, made by the Python examples' prepare scripts."""
    root = tmp_path_factory.mktemp("polyglot")
    example_module(PY, "wordcount", "prepare").prepare(str(root / "wordcount"), mb=0.5, files=2, seed=5)
    example_module(PY, "tpch-q1", "prepare").prepare(str(root / "tpch-q1"), sf=0.02, parts=2)
    example_module(PY, "bigbench-q1", "prepare").prepare(str(root / "bigbench-q1"), rows=100_000, files=2,
                                                         row_groups=2, seed=3)
    return {e: root / e for e in EXAMPLES}


def _inputs(example: str, folder: Path) -> dict[str, str]:
    return {"wordcount": {"text": f"{folder}/*.csv"},
            "tpch-q1": {"lineitem": f"{folder}/lineitem/*.parquet"},
            "bigbench-q1": {"store_sales": f"{folder}/store_sales/*.parquet", "item": f"{folder}/item/*.parquet"},
            }[example]


def _check(example: str, record: dict, data_dir: Path, tmp_path: Path) -> None:
    assert record["status"] == "succeeded"
    files = fetch(record["output"]["files"], tmp_path / "result")
    check = example_module(PY, example, "check")
    if example == "bigbench-q1":
        check.compare(files, str(data_dir), 3)
    else:
        check.compare(files, str(data_dir))


def _containers_of(run_id: str) -> list:
    return docker.from_env().api.containers(all=True, filters={"label": f"babelmr.run={run_id}"})


BACKENDS = {"docker": ["--backend", "docker"], "lambda": ["--backend", "lambda", "--emulators", "2"]}


def _cases() -> list:
    """Every example x language x container backend x cold/warm (36 runs, not the 72 with both stores too):
    every other case uses the S3 store, so each store serves every language, backend and mode. The local
    backend runs every example cold and warm too (tests/test_warm.py, tests/test_examples.py)."""
    cases = []
    for i, (language, example, backend, warm) in enumerate(
            (lang, e, b, w) for lang in LANGUAGES for e in EXAMPLES for b in BACKENDS for w in (False, True)):
        store = "s3" if (i + i // 4) % 2 else "local"
        cases.append(pytest.param(language, example, BACKENDS[backend], store, warm,
                                  id=f"{language.removeprefix('examples-')}-{example}-{backend}-{store}-"
                                     f"{'warm' if warm else 'cold'}",
                                  marks=[pytest.mark.s3] if store == "s3" else []))
    return cases


@pytest.mark.parametrize(("language", "example", "backend", "store", "warm"), _cases())
def test_example_in_containers(language: str, example: str, backend: list[str], store: str, warm: bool,
                               example_images, data, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {"Q1_MIN_COUNT": "3"} if example == "bigbench-q1" else None
    job = job_for_data(language, example, tmp_path, _inputs(example, data[example]), env=env, warm=warm)
    store_uri = request.getfixturevalue("s3_prefix") if store == "s3" else str(tmp_path / "store")
    record = run_cli(str(job), "--store", store_uri, *backend)
    assert record["backend"] == backend[1]
    _check(example, record, data[example], tmp_path)
    assert _containers_of(record["run_id"]) == []


def test_same_results_on_every_backend(example_images, data, tmp_path: Path) -> None:
    """Byte-for-byte the same rows from the local backend, Docker and Lambda (Python TPC-H Q1)."""
    import pyarrow.parquet as pq

    job = job_for_data(PY, "tpch-q1", tmp_path, _inputs("tpch-q1", data["tpch-q1"]))
    tables = []
    for i, backend in enumerate([[], ["--backend", "docker"], ["--backend", "lambda", "--emulators", "1"]]):
        record = run_cli(str(job), "--store", str(tmp_path / f"store{i}"), *backend)
        rows = [r for f in record["output"]["files"] for r in pq.read_table(f).to_pylist()]
        tables.append(sorted(rows, key=lambda r: (r["l_returnflag"], r["l_linestatus"])))
    assert tables[0] == tables[1] == tables[2]
