"""The total-order sort example (Python, range partitioner) and the streaming per-order reducer (Go), end to end
on the local backend, checked against DuckDB."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from examples import ROOT, example_module, job_for_data, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lineitem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("lineitem") / "data"
    example_module("examples-python", "sort", "prepare").prepare(str(data), sf=0.02, parts=3)
    return data


def test_total_order_sort_equals_order_by_row_for_row(lineitem: Path, tmp_path: Path) -> None:
    job = job_for_data("examples-python", "sort", tmp_path / "job", {"lineitem": f"{lineitem}/lineitem/*.parquet"})
    record = run_cli(str(job), "--store", str(tmp_path / "store"), "--output", str(tmp_path / "out"))
    parts = sorted(str(p) for p in (tmp_path / "out").glob("part-*.parquet"))
    assert len(parts) == 4 and record["stages"][1]["tasks"] == 4
    check = example_module("examples-python", "sort", "check")
    check.compare(parts, str(lineitem))
    with pytest.raises(AssertionError, match="differs"):  # the check can fail: the parts out of order
        check.compare(parts[::-1], str(lineitem))


@pytest.fixture(scope="module")
def orders_program(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain on this host")
    out = tmp_path_factory.mktemp("go") / "orders"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=ROOT / "examples-go" / "orders", check=True,
                   env={**os.environ, "CGO_ENABLED": "0"}, timeout=300)
    return str(out)


def test_go_streaming_reducer_equals_group_by(lineitem: Path, orders_program: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MR_CMD", orders_program)
    monkeypatch.setenv("BABELMR_SORT_RUN_BYTES", "65536")  # the sort spills runs and merges them
    job = job_for_data("examples-go", "orders", tmp_path / "job", {"lineitem": f"{lineitem}/lineitem/*.parquet"})
    record = run_cli(str(job), "--store", str(tmp_path / "store"))
    assert record["status"] == "succeeded"
    example_module("examples-go", "orders", "check").compare(record["output"]["files"], str(lineitem))


def test_go_streaming_reducer_refuses_unsorted_input(lineitem: Path, orders_program: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the stage's 'sort' the reducer sees orders out of order and says so: it relies on the sort."""
    monkeypatch.setenv("MR_CMD", orders_program)
    job = job_for_data("examples-go", "orders", tmp_path / "job", {"lineitem": f"{lineitem}/lineitem/*.parquet"})
    spec = json.loads(job.read_text())
    del spec["stages"][1]["sort"]
    spec["stages"][1]["retries"] = 0
    job.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "babelmr", "run", str(job), "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "not sorted" in proc.stderr, proc.stderr


@pytest.mark.docker
@pytest.mark.parametrize(("language", "example", "backend"), [
    ("examples-python", "sort", ["--backend", "docker"]),
    ("examples-go", "orders", ["--backend", "lambda", "--emulators", "2"])])
def test_the_sorted_examples_in_containers(lineitem: Path, tmp_path: Path, base_image, language: str, example: str,
                                           backend: list[str]) -> None:
    """The examples' images, on a container backend: the same answer as DuckDB (and as the local runs above)."""
    from babelmr.images import build_image
    job = job_for_data(language, example, tmp_path / "job", {"lineitem": f"{lineitem}/lineitem/*.parquet"})
    build_image(ROOT / language / example, json.loads(job.read_text())["stages"][0]["image"], quiet=True)
    record = run_cli(str(job), *backend, "--store", str(tmp_path / "store"), "--output", str(tmp_path / "out"))
    parts = sorted(str(p) for p in (tmp_path / "out").glob("part-*.parquet"))
    example_module(language, example, "check").compare(parts, str(lineitem))
    assert record["status"] == "succeeded"
