"""`python -m babelmr.worker`: one task in a fresh process, as the containers and Lambda run it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.spec import FileSlice, TaskInput, TaskResult, TaskSpec
from babelmr.worker import formats
from babelmr.worker.__main__ import RESULT_MARKER
from babelmr.worker.task import run_task


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
    assert stats["import_decoded_because"] == {"data": "disabled by BABELMR_COPY_COLUMN_CHUNKS=0"}


# -- one attempt in this process: what the program's output becomes ------------------------------------------------


def run_in_process(tmp_path: Path, program: str, *, fmt: str = "parquet", schema: dict[str, str] | None = None,
                   key: list[str] | None = None, source: pa.Table | None = None) -> TaskResult:
    """One attempt of a stage whose program is the Python code ``program`` (it reads and writes via MR_*)."""
    src = tmp_path / "src.parquet"
    pq.write_table(source if source is not None else pa.table({"k": [1, 2]}), src)
    spec = TaskSpec(run_id=secrets.token_hex(4), job="j", stage="s", task=0, attempt=1, store=str(tmp_path / "store"),
                    inputs=[TaskInput(name="data", kind="files", format="parquet", files=[FileSlice(str(src))])],
                    command=[sys.executable, "-c", program], program_format=fmt, schema=schema,
                    key=key if key is not None else ["k"], partitions=3)
    return run_task(spec, str(tmp_path / "work"))


def exported(result: TaskResult) -> pa.Table:
    assert result.status == "ok", result.error
    return pq.read_table(result.commit.uri)


WRITE_EMPTY_PARQUET = """
import os, pyarrow as pa, pyarrow.parquet as pq
schema = pa.schema([("k", pa.int32()), ("m", pa.decimal128(9, 3)), ("t", pa.timestamp("ns", tz="UTC"))])
pq.write_table(schema.empty_table(), os.environ["MR_OUTPUT"])
"""


def test_a_zero_row_parquet_output_keeps_its_schema(tmp_path: Path) -> None:
    table = exported(run_in_process(tmp_path, WRITE_EMPTY_PARQUET))
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == pa.schema([("k", pa.int32()), ("m", pa.decimal128(9, 3)),
                                                        ("t", pa.timestamp("ns", tz="UTC"))])
    table = exported(run_in_process(tmp_path, WRITE_EMPTY_PARQUET, schema={"k": "int64"}))  # declared types win
    assert table.schema.types[0] == pa.int64()


def test_a_header_only_csv_output_keeps_its_columns(tmp_path: Path) -> None:
    program = "import os; open(os.environ['MR_OUTPUT'], 'w').write('k,v\\n')"
    table = exported(run_in_process(tmp_path, program, fmt="csv", schema={"k": "int64"}))
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == pa.schema([("k", pa.int64()), ("v", pa.null())])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_zero_byte_output_gets_the_declared_schema(tmp_path: Path, fmt: str) -> None:
    program = "import os; open(os.environ['MR_OUTPUT'], 'w').close()"
    declared = {"k": "date32", "n": "decimal128(10,2)", "t": "timestamp[us, tz=Europe/Berlin]"}
    table = exported(run_in_process(tmp_path, program, fmt=fmt, schema=declared))
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == pa.schema([("k", pa.date32()), ("n", pa.decimal128(10, 2)),
                                                        ("t", pa.timestamp("us", tz="Europe/Berlin"))])
    # without a declared schema nothing says the key's type: null, which every other task's type unifies with
    table = exported(run_in_process(tmp_path, program, fmt=fmt))
    assert table.schema.remove_metadata() == pa.schema([("k", pa.null())])


def test_an_empty_output_without_the_key_is_refused(tmp_path: Path) -> None:
    program = ("import os, pyarrow as pa, pyarrow.parquet as pq; "
               "pq.write_table(pa.schema([('other', pa.int64())]).empty_table(), os.environ['MR_OUTPUT'])")
    result = run_in_process(tmp_path, program)
    assert result.status == "error" and not result.retryable
    assert "no key column(s) ['k']" in result.error and "['other']" in result.error


def test_null_and_empty_string_keys_survive_a_csv_program(tmp_path: Path) -> None:
    """With program_format csv, NULL and "" stay apart through the program (keys and values)."""
    source = pa.table({"k": pa.array(["", None, "a", None, ""]), "v": pa.array([None, "", "x", "NA", "null"])})
    program = "import os, shutil; shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])"
    table = exported(run_in_process(tmp_path, program, fmt="csv", source=source))
    key = lambda r: (r["k"] is None, r["k"] or "", r["v"] is None, r["v"] or "")  # noqa: E731
    assert sorted(table.to_pylist(), key=key) == sorted(source.to_pylist(), key=key)


def test_a_csv_column_whose_type_changes_after_the_first_block_is_named(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow infers CSV types from the first block only: a later value of another type is reported clearly."""
    monkeypatch.setattr(formats, "READ_BLOCK", 1 << 10)
    program = ("import os\nwith open(os.environ['MR_OUTPUT'], 'w') as f:\n    f.write('k,v\\n')\n"
               "    f.writelines(f'{i},{i}\\n' for i in range(2000))\n    f.write('1,2.5\\n')")
    result = run_in_process(tmp_path, program, fmt="csv")
    assert result.status == "error" and not result.retryable
    assert "column 'v'" in result.error and "int64" in result.error and "'2.5'" in result.error
    assert "'schema'" in result.error and '"v": "float64"' in result.error
    assert exported(run_in_process(tmp_path, program, fmt="csv", schema={"v": "float64"})).num_rows == 2001
