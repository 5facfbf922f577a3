"""`python -m babelmr.worker`: one task in a fresh process, as the containers and Lambda run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.spec import FileSlice, TaskInput, TaskSpec
from babelmr.worker.__main__ import RESULT_MARKER


def run_worker(tmp_path: Path, env: dict[str, str]) -> dict:
    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"k": list(range(1000)), "v": [0.5] * 1000}), src, row_group_size=100)
    spec = TaskSpec(run_id="r", job="j", stage="s", task=0, attempt=1, store=str(tmp_path / "store"),
                    inputs=[TaskInput(name="data", kind="files", format="parquet", files=[FileSlice(str(src))])],
                    command=["cp", "in.parquet", "out.parquet"], key=["k"], partitions=3)
    (tmp_path / "spec.json").write_text(spec.to_json())
    base = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    proc = subprocess.run([sys.executable, "-m", "babelmr.worker", str(tmp_path / "spec.json"), "--workdir",
                           str(tmp_path / "work")], capture_output=True, text=True, env={**base, **env})
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith(RESULT_MARKER))
    result = json.loads(line[len(RESULT_MARKER):])
    assert result["status"] == "ok", result
    assert result["commit"]["rows"] == 1000
    return result["stats"]


@pytest.mark.skipif(not hasattr(pa, "jemalloc_memory_pool"), reason="pyarrow without jemalloc")
def test_the_worker_allocates_with_jemalloc_and_copies_parquet(tmp_path: Path) -> None:
    stats = run_worker(tmp_path, {})
    assert stats["memory_pool"] == "jemalloc"
    assert stats["import_methods"] == {"data": "copy"}


def test_the_users_memory_pool_and_decoding_choices_are_kept(tmp_path: Path) -> None:
    stats = run_worker(tmp_path, {"ARROW_DEFAULT_MEMORY_POOL": "system", "BABELMR_COPY_COLUMN_CHUNKS": "0"})
    assert stats["memory_pool"] == "system"
    assert stats["import_methods"] == {"data": "decode"}
