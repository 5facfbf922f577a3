"""The job's output location, empty tasks, and one schema per stage: end to end through the real coordinator.

Every job here runs on the local backend (real worker processes, real files; SeaweedFS for S3) and its result
is read back by DuckDB, pandas and pyarrow.dataset as one dataset.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babelmr.backends import get_backend
from babelmr.coordinator.run import run_job
from babelmr.errors import BabelMRError, OutputError
from babelmr.job import load_job
from babelmr.schemas import SchemaConflict, TaskSchema, conform_batch, unify_stage_schemas
from babelmr.spec import RunRecord, StageManifest
from babelmr.store import filesystem_for, layout
from babelmr.store.local import LocalStore
from conftest import write_job, write_program
from examples import ROOT, example_module

CHECK = example_module("examples-python", "tpch-q1", "check")


def run(job_path: Path, **load: Any) -> RunRecord:
    """Run a job file through the coordinator on the local backend; returns the run record."""
    with get_backend("local", concurrency=2) as backend:
        return run_job(load_job(str(job_path), **load), backend)


def q1_job(folder: Path, data: Path, partitions: int, output: dict | None = None) -> Path:
    """The TPC-H Q1 example's job over ``data``, its map stage with ``partitions`` partitions."""
    job = json.loads((ROOT / "examples-python/tpch-q1/job.json").read_text())
    job["stages"][0]["inputs"][0]["uri"] = str(data / "*.parquet")
    job["stages"][0]["partitions"] = partitions
    for stage in job["stages"]:
        stage["command"] = f"{sys.executable} {ROOT / 'examples-python/tpch-q1/q1.py'}"
        stage.pop("image")
    if output is not None:
        job["output"] = output
    job["store"] = str(folder / "store")
    return write_job(folder, job)


def read_everywhere(folder: Path, ext: str = "parquet") -> tuple[pd.DataFrame, pd.DataFrame, pa.Table]:
    """The published result as DuckDB, pandas and pyarrow.dataset each read the folder."""
    by_duckdb = duckdb.connect().sql(f"select * from '{folder}/*.{ext}'").df()
    by_pandas = pd.read_parquet(folder) if ext == "parquet" else None
    by_dataset = ds.dataset(str(folder), format=ext if ext != "jsonl" else "json").to_table()
    return by_duckdb, by_pandas, by_dataset


# ---- TPC-H Q1 with more partitions than keys --------------------------------------------------------------------

def test_q1_with_17_partitions_publishes_one_dataset_equal_to_duckdb(tmp_path: Path, tpch_small: Path) -> None:
    out = tmp_path / "results" / "q1"
    record = run(q1_job(tmp_path, tpch_small, 17, {"uri": "results/q1/"}))
    names = sorted(os.listdir(out))
    parts = [n for n in names if n.startswith("part-")]
    assert names == ["_SUCCESS", *parts] and parts == [f"part-{i:05d}.parquet" for i in range(len(parts))]
    by_duckdb, by_pandas, by_dataset = read_everywhere(out)
    expected = CHECK.expected(str(tpch_small))
    for got in (by_duckdb, by_pandas, by_dataset.to_pandas()):
        CHECK.assert_same_rows(got, expected, key=["l_returnflag", "l_linestatus"], rtol=1e-9)
    for part in parts:  # plain data: no babelmr partition index in the footer
        assert b"babelmr.partitions" not in (pq.ParquetFile(out / part).metadata.metadata or {})
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["run_id"] == record.run_id and success["rows"] == len(expected) == 4
    assert [f["name"] for f in success["files"]] == parts
    assert record.output is not None and record.output.uri == str(out) and len(record.output.parts or []) == len(parts)
    # empty tasks cost nothing: 17 reduce tasks, 4 keys, at most 4 programs started
    reduce = record.stages[1]
    assert reduce.tasks == 17 and reduce.attempts == 17 - len(reduce.skipped_tasks) <= 4


def test_q1_without_output_leaves_final_files_readable_as_one_dataset(tmp_path: Path, tpch_small: Path) -> None:
    """Without 'output' the result stays in the store, but its files still read as one dataset."""
    record = run(q1_job(tmp_path, tpch_small, 17))
    assert record.output is not None and record.output.uri is None
    files = record.output.files
    got = duckdb.connect().execute("select * from read_parquet($f)", {"f": files}).df()
    CHECK.assert_same_rows(got, CHECK.expected(str(tpch_small)), key=["l_returnflag", "l_linestatus"], rtol=1e-9)
    folder = Path(files[0]).parent
    CHECK.assert_same_rows(pd.read_parquet(folder), CHECK.expected(str(tpch_small)),
                           key=["l_returnflag", "l_linestatus"], rtol=1e-9)


def test_the_cli_publishes_csv_and_refuses_a_second_run_before_any_task(tmp_path: Path, tpch_small: Path) -> None:
    job = q1_job(tmp_path, tpch_small, 4)
    args = [sys.executable, "-m", "babelmr", "run", str(job), "--output", "out/q1", "--output-format", "csv"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out" / "q1"
    names = sorted(os.listdir(out))
    assert names[0] == "_SUCCESS" and names[1:] and all(n.startswith("part-") and n.endswith(".csv") for n in names[1:])
    got = duckdb.connect().sql(f"select * from read_csv('{out}/part-*.csv')").df()
    CHECK.assert_same_rows(got, CHECK.expected(str(tpch_small)), key=["l_returnflag", "l_linestatus"], rtol=1e-9)
    runs_before = sorted(os.listdir(tmp_path / "store" / "runs"))
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert "is not empty" in second.stderr and "--overwrite" in second.stderr
    assert sorted(os.listdir(tmp_path / "store" / "runs")) == runs_before  # no run started, no task ran
    shown = subprocess.run([sys.executable, "-m", "babelmr", "show", runs_before[0], "--store",
                            str(tmp_path / "store")], capture_output=True, text=True, timeout=60)
    assert str(out) in shown.stdout and "_SUCCESS" in shown.stdout


# ---- output modes ----------------------------------------------------------------------------------------------

MARK = ("import os, shutil\n"
        "open(os.environ['MARKS'] + '/' + os.environ['MR_STAGE'] + os.environ['MR_TASK'], 'w')\n"
        "shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])\n")


def copy_job(tmp_path: Path, files: int, output: dict | None, partitions: int = 1) -> Path:
    """A map-only job copying ``files`` small Parquet files, one task each, with tasks leaving marks."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for i in range(files):
        pq.write_table(pa.table({"k": [f"k{i}", None], "v": [i, i + 100]}), data / f"f{i}.parquet")
    (tmp_path / "marks").mkdir(exist_ok=True)
    program = write_program(tmp_path, "mark.py", MARK)
    job: dict[str, Any] = {"name": "copy", "store": str(tmp_path / "store"), "env": {"MARKS": str(tmp_path / "marks")},
                           "stages": [{"name": "map", "command": f"{sys.executable} {program}",
                                       "inputs": [{"name": "d", "uri": "data/"}], "split": {"files_per_task": 1}}]}
    if partitions > 1:
        job["stages"][0].update(key=["k"], partitions=partitions)
    if output is not None:
        job["output"] = output
    return write_job(tmp_path, job)


def test_mode_error_refuses_a_non_empty_target_before_any_task_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"not empty .*notes\.txt.*--overwrite"):
        run(copy_job(tmp_path, 2, {"uri": "out"}))
    assert os.listdir(tmp_path / "marks") == []  # no task ran
    assert not (tmp_path / "store" / "runs").exists()
    assert os.listdir(out) == ["notes.txt"]


def test_overwrite_replaces_only_a_babelmr_result(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(copy_job(tmp_path, 3, {"uri": "out", "format": "jsonl"}))
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert duckdb.connect().sql(f"select count(*) from read_json('{out}/*.jsonl')").fetchall()[0][0] == 6
    # a smaller result replaces the earlier one entirely: no stale part-00002 stays behind
    for f in (tmp_path / "data").glob("f2*"):
        f.unlink()
    second = run(copy_job(tmp_path, 2, {"uri": "out", "mode": "overwrite"}))
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000.parquet", "part-00001.parquet"]
    assert json.loads((out / "_SUCCESS").read_text())["run_id"] == second.run_id != first.run_id
    assert pd.read_parquet(out).sort_values("v")["v"].tolist() == [0, 1, 100, 101]
    # a file babelmr did not write: refused, named, nothing deleted, no task run
    (out / "keep.csv").write_text("x\n1\n")
    for m in os.listdir(tmp_path / "marks"):
        os.unlink(tmp_path / "marks" / m)
    with pytest.raises(OutputError, match=r"keep\.csv.*never deletes files it did not write"):
        run(copy_job(tmp_path, 2, {"uri": "out", "mode": "overwrite"}))
    assert sorted(os.listdir(out)) == ["_SUCCESS", "keep.csv", "part-00000.parquet", "part-00001.parquet"]
    assert os.listdir(tmp_path / "marks") == []
    # a folder of foreign files with no _SUCCESS at all: refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "part-00000.parquet").write_bytes(b"not ours")
    with pytest.raises(OutputError, match="did not write"):
        run(copy_job(tmp_path, 2, {"uri": "other", "mode": "overwrite"}))
    assert (other / "part-00000.parquet").read_bytes() == b"not ours"


def test_success_is_written_last_and_an_interrupted_publication_has_none(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that fails mid-publication cannot be produced on demand by a real disk: a patched copy injects it."""
    real_copy = LocalStore.copy
    order: list[str] = []

    def failing_copy(self: LocalStore, source: str, key: str) -> None:
        if key == "part-00002.parquet":
            raise OSError(28, "No space left on device")
        order.append(key)
        real_copy(self, source, key)

    monkeypatch.setattr(LocalStore, "copy", failing_copy)
    with pytest.raises(OutputError, match="incomplete and has no _SUCCESS"):
        run(copy_job(tmp_path, 4, {"uri": "out"}))
    assert "_SUCCESS" not in os.listdir(tmp_path / "out")
    monkeypatch.setattr(LocalStore, "copy", real_copy)

    writes: list[str] = []
    real_write = LocalStore.write_bytes

    def spy_write(self: LocalStore, key: str, data: bytes) -> None:
        writes.append(key)
        real_write(self, key, data)

    def spy_copy(self: LocalStore, source: str, key: str) -> None:
        writes.append(key)
        real_copy(self, source, key)

    monkeypatch.setattr(LocalStore, "write_bytes", spy_write)
    monkeypatch.setattr(LocalStore, "copy", spy_copy)
    # the interrupted publication's files are babelmr's: overwrite may replace them
    run(copy_job(tmp_path, 4, {"uri": "out", "mode": "overwrite"}))
    published = [w for w in writes if not w.startswith(layout.RUNS)]
    assert published[-1] == "_SUCCESS" and sorted(published[1:-1]) == [f"part-{i:05d}.parquet" for i in range(4)]
    assert sorted(os.listdir(tmp_path / "out")) == ["_SUCCESS", *(f"part-{i:05d}.parquet" for i in range(4))]


@pytest.mark.s3
def test_an_s3_output_is_published_by_server_side_copy(tmp_path: Path, s3_prefix: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from babelmr.store.base import Store
    from babelmr.store.s3 import s3_client

    def no_streaming(self: Store, source: str, key: str) -> None:
        raise AssertionError(f"{source} was streamed through the coordinator")

    monkeypatch.setattr(Store, "copy", no_streaming)
    copies: list[str] = []
    client = s3_client()
    handler = client.meta.events.register("provide-client-params.s3.CopyObject",
                                          lambda params, **_: copies.append(params["Key"]))
    try:
        output = f"{s3_prefix}/results/"
        record = run(copy_job(tmp_path, 3, {"uri": output}), store=f"{s3_prefix}/store")
    finally:
        client.meta.events.unregister("provide-client-params.s3.CopyObject", handler)
    assert sorted(k.rsplit("/", 1)[-1] for k in copies) == [f"part-{i:05d}.parquet" for i in range(3)]
    fs, path = filesystem_for(output)
    got = ds.dataset(path, filesystem=fs).to_table().to_pandas()
    assert sorted(got["v"].tolist()) == [0, 1, 2, 100, 101, 102]
    with fs.open_input_stream(f"{path}/_SUCCESS") as f:
        assert json.loads(f.read())["run_id"] == record.run_id
    with pytest.raises(OutputError, match="not empty"):
        run(copy_job(tmp_path, 3, {"uri": output}), store=f"{s3_prefix}/store")


# ---- schema drift between tasks of one stage ----------------------------------------------------------------

DRIFT = '''
import os
import pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(os.environ["MR_INPUT"])
task = int(os.environ["MR_TASK"])
k, v = t.column("k"), t.column("v")
if task == 0:    # the reference: k string, v int64
    out = pa.table({"k": k, "v": v})
elif task == 1:  # another column order, v as int32
    out = pa.table({"v": v.cast(pa.int32()), "k": k})
elif task == 2:  # an extra column
    out = pa.table({"k": k, "v": v, "extra": pa.compute.multiply(v, 2).cast(pa.float64())})
elif task == 3:  # v all NULL, of type null
    out = pa.table({"k": k, "v": pa.nulls(len(k), pa.null())})
else:            # no rows at all, v of type null
    out = pa.table({"k": pa.array([], pa.string()), "v": pa.array([], pa.null())})
pq.write_table(out, os.environ["MR_OUTPUT"])
'''

COUNT = '''
import os
import pandas as pd
d = pd.read_parquet(os.environ["MR_INPUT"])
extra = d["extra"] if "extra" in d else pd.Series([None] * len(d), dtype="float64")
d = d.assign(extra=extra)
g = d.groupby("k", dropna=False).agg(n=("k", "size"), s=("v", "sum"), x=("extra", "count"), t=("v", "count"))
g = g.reset_index()
g[["k", "n", "s", "x", "t"]].astype({"n": "int64", "s": "int64", "x": "int64", "t": "int64"}).to_parquet(
    os.environ["MR_OUTPUT"], index=False)
'''


def drift_job(tmp_path: Path, output: dict | None, map_only: bool = False) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        keys = [f"k{j % 3}" for j in range(i, i + 7)] + [None]
        pq.write_table(pa.table({"k": keys, "v": [10 * i + j for j in range(8)]}), data / f"f{i}.parquet")
    drift = write_program(tmp_path, "drift.py", DRIFT)
    count = write_program(tmp_path, "count.py", COUNT)
    stages: list[dict[str, Any]] = [{"name": "map", "command": f"{sys.executable} {drift}",
                                     "inputs": [{"name": "d", "uri": "data/"}], "split": {"files_per_task": 1}}]
    if not map_only:
        stages[0].update(key=["k"], partitions=4)
        stages.append({"name": "reduce", "command": f"{sys.executable} {count}",
                       "inputs": [{"name": "p", "stage": "map"}]})
    job: dict[str, Any] = {"name": "drift", "store": str(tmp_path / "store"), "stages": stages}
    if output is not None:
        job["output"] = output
    return write_job(tmp_path, job)


def drift_oracle(data: Path) -> pd.DataFrame:
    """What the drift job must return, by DuckDB from the input files and the map program's rules."""
    return duckdb.connect().sql(f"""
        with t as (select k, v, cast(regexp_extract(filename, 'f(\\d)\\.parquet', 1) as int) as task
                   from read_parquet('{data}/*.parquet', filename = true)),
             m as (select k, case when task in (3) then null else v end as v,
                          case when task = 2 then 2.0 * v end as extra from t where task < 4)
        select k, count(*) as n, coalesce(sum(v), 0) as s, count(extra) as x, count(v) as t from m group by k
    """).df()


def _sorted(df: pd.DataFrame) -> list[tuple]:
    return sorted(((None if pd.isna(r[0]) else r[0], *(int(x) for x in r[1:])) for r in df.itertuples(index=False)),
                  key=repr)


def test_tasks_that_disagree_on_columns_are_unified_for_the_next_stage_and_readers(tmp_path: Path) -> None:
    """Without an output: the reduce stage reads the unified schema and the store's final files read as one."""
    record = run(drift_job(tmp_path, None))
    expected = _sorted(drift_oracle(tmp_path / "data"))
    files = record.output.files
    by_duckdb = duckdb.connect().execute("select * from read_parquet($f)", {"f": files}).df()
    by_dataset = ds.dataset(files).to_table().to_pandas()
    for got in (by_duckdb, by_dataset):
        assert _sorted(got[["k", "n", "s", "x", "t"]]) == expected
    manifest_path = tmp_path / "store" / layout.stage_manifest(record.run_id, "map")
    manifest = StageManifest.from_json(manifest_path.read_text())
    assert manifest.schema.splitlines() == ["k: string", "v: int64", "extra: double"]


def test_final_files_that_disagree_are_published_with_one_schema(tmp_path: Path) -> None:
    record = run(drift_job(tmp_path, {"uri": "out"}, map_only=True))
    want = pa.schema([("k", pa.string()), ("v", pa.int64()), ("extra", pa.float64())])
    parts = sorted((tmp_path / "out").glob("part-*.parquet"))
    assert len(parts) == 5
    for part in parts:  # every part, the 0-row one too, has exactly the unified columns and types
        schema = pq.read_schema(part)
        assert schema.names == want.names and schema.types == want.types, part
    got = duckdb.connect().sql(f"select k, v, extra from '{tmp_path}/out/*.parquet'").df()
    assert len(got) == 32 and got["extra"].notna().sum() == 8 and got["v"].notna().sum() == 24
    assert pd.read_parquet(tmp_path / "out").shape == (32, 3)
    # the store's own final files (the run record's) read as one dataset too
    files = record.output.files
    assert duckdb.connect().execute("select count(*) from read_parquet($f)", {"f": files}).fetchall()[0][0] == 32


LOSSY = '''
import os
import pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(os.environ["MR_INPUT"])
v = t.column("v").cast(pa.string()) if os.environ["MR_TASK"] == "1" else t.column("v")
pq.write_table(pa.table({"k": t.column("k"), "v": v}), os.environ["MR_OUTPUT"])
'''


def test_a_lossy_disagreement_fails_the_stage_naming_column_types_and_tasks(tmp_path: Path) -> None:
    path = drift_job(tmp_path, None)
    write_program(tmp_path, "drift.py", LOSSY)
    with pytest.raises(SchemaConflict) as caught:
        run(path)
    message = str(caught.value)
    for part in ("stage 'map'", "'v'", "int64 in task 0", "string in task 1", "'schema'", "csv.schema"):
        assert part in message
    runs = os.listdir(tmp_path / "store" / "runs")
    record = RunRecord.from_json((tmp_path / "store" / "runs" / runs[0] / "run.json").read_text())
    assert record.status == "failed" and [s.name for s in record.stages] == ["map"]


# ---- empty tasks ------------------------------------------------------------------------------------------------

LOGGED_COUNT = '''
import os, json
import pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(os.environ["MR_INPUT"])
with open(os.environ["LOG"], "a") as log:
    log.write(json.dumps({"task": int(os.environ["MR_TASK"]), "rows": t.num_rows,
                          "schema": [[f.name, str(f.type)] for f in t.schema]}) + "\\n")
g = t.group_by("k").aggregate([("v", "sum"), ("v", "count")]) if t.num_rows else None
out = pa.table({"k": pa.array([], pa.string()), "s": pa.array([], pa.int64()), "n": pa.array([], pa.int64())})
if g is not None:
    out = pa.table({"k": g["k"], "s": g["v_sum"], "n": g["v_count"]})
pq.write_table(out, os.environ["MR_OUTPUT"])
'''

FILTER = '''
import os
import pyarrow.parquet as pq, pyarrow.compute as pc
t = pq.read_table(os.environ["MR_INPUT"])
pq.write_table(t.filter(pc.greater(t["v"], int(os.environ["KEEP_ABOVE"]))), os.environ["MR_OUTPUT"])
'''


def empty_job(tmp_path: Path, keep_above: int, partitions: int, output: bool = True) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    pq.write_table(pa.table({"k": ["a", "b", "a", None], "v": [1, 2, 3, 4]}), data / "f.parquet")
    flt = write_program(tmp_path, "filter.py", FILTER)
    count = write_program(tmp_path, "count.py", LOGGED_COUNT)
    job: dict[str, Any] = {
        "name": "empty", "store": str(tmp_path / "store"),
        "env": {"LOG": str(tmp_path / "log.jsonl"), "KEEP_ABOVE": str(keep_above)},
        "stages": [
            {"name": "map", "command": f"{sys.executable} {flt}", "inputs": [{"name": "d", "uri": "data/"}],
             "key": ["k"], "partitions": partitions, "schema": {"k": "string", "v": "int64"}},
            {"name": "reduce", "command": f"{sys.executable} {count}", "inputs": [{"name": "p", "stage": "map"}],
             "schema": {"k": "string", "s": "int64", "n": "int64"}},
        ]}
    if output:
        job["output"] = {"uri": "out"}
    return write_job(tmp_path, job)


def test_empty_reduce_tasks_do_not_start_the_program(tmp_path: Path) -> None:
    record = run(empty_job(tmp_path, 0, 16, output=False))
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    manifest_path = tmp_path / "store" / layout.stage_manifest(record.run_id, "map")
    commits = StageManifest.from_json(manifest_path.read_text()).commits
    non_empty = {p for c in commits for p, rows in enumerate(c.partition_rows) if rows}
    assert {e["task"] for e in log} == non_empty and len(log) == len(non_empty) <= 3
    assert all(e["rows"] > 0 for e in log)
    query = "select k, s, n from read_parquet($f)"
    got = duckdb.connect().execute(query, {"f": record.output.files}).fetchall()
    assert sorted(got, key=str) == sorted([("a", 4, 2), ("b", 2, 1), (None, 4, 1)], key=str)


def test_a_stage_whose_every_task_is_empty_still_ends_with_a_typed_result(tmp_path: Path) -> None:
    run(empty_job(tmp_path, 100, 8))  # the map keeps no row: every reduce partition is empty
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # one program, task 0, on a typed empty input: the upstream stage's schema
    assert log == [{"task": 0, "rows": 0, "schema": [["k", "string"], ["v", "int64"]]}]
    by_duckdb, by_pandas, by_dataset = read_everywhere(tmp_path / "out")
    assert len(by_duckdb) == len(by_pandas) == by_dataset.num_rows == 0
    assert by_dataset.schema.names == ["k", "s", "n"]
    assert by_dataset.schema.types == [pa.string(), pa.int64(), pa.int64()]
    assert json.loads((tmp_path / "out" / "_SUCCESS").read_text())["rows"] == 0


def test_output_options_validate_and_resolve(tmp_path: Path) -> None:
    path = write_job(tmp_path, {"name": "j", "output": {"uri": "r/", "format": "xml"},
                                "stages": [{"name": "s", "command": "cat", "inputs": [{"name": "d", "uri": "x"}]}]})
    with pytest.raises(BabelMRError, match=r"\$\.output\.format"):
        load_job(str(path))
    path = write_job(tmp_path, {"name": "j", "output": {"uri": "r/"},
                                "stages": [{"name": "s", "command": "cat", "inputs": [{"name": "d", "uri": "x"}]}]})
    job = load_job(str(path))
    assert (job.output.uri, job.output.format, job.output.mode) == (str(tmp_path / "r"), "parquet", "error")
    job = load_job(str(path), output="elsewhere", output_format="csv", overwrite=True)
    assert (job.output.uri, job.output.format, job.output.mode) == (os.path.abspath("elsewhere"), "csv", "overwrite")


# ---- unification and conformance, property-based against DuckDB ---------------------------------------------

INTS = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]


@st.composite
def drifting_tables(draw: st.DrawFn) -> list[pa.Table]:
    """Tables of one 'stage': each a subset of columns a, b, c in any order, integers of any width, NULLs."""
    tables = []
    for _ in range(draw(st.integers(1, 5))):
        names = draw(st.permutations(["a", "b", "c"]))[: draw(st.integers(1, 3))]
        rows = draw(st.integers(0, 4))
        columns = {}
        for name in names:
            if name == "c":  # a string column, sometimes all NULL of type null
                values = draw(st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=rows, max_size=rows))
                kind = pa.null() if all(v is None for v in values) and draw(st.booleans()) else pa.string()
                columns[name] = pa.array(values if kind == pa.string() else [None] * rows, kind)
            else:
                kind = draw(st.sampled_from(INTS))
                values = draw(st.lists(st.one_of(st.none(), st.integers(-100, 100)), min_size=rows, max_size=rows))
                columns[name] = pa.array(values, kind)
        tables.append(pa.table(columns))
    return tables


@settings(max_examples=60, deadline=None)
@given(drifting_tables())
def test_unified_stage_schema_keeps_every_value(tables: list[pa.Table]) -> None:
    schemas = [TaskSchema(i, t.schema, t.num_rows) for i, t in enumerate(tables)]
    unified = unify_stage_schemas("s", schemas)
    assert set(unified.names) == {n for t in tables for n in t.column_names}
    conformed = [conform_batch(b, unified) for t in tables for b in t.to_batches()]
    got = pa.Table.from_batches(conformed, schema=unified).to_pylist() if conformed else []
    con = duckdb.connect()
    for i, t in enumerate(tables):
        con.register(f"t{i}", t)
    query = " union all by name ".join(f"select * from t{i}" for i in range(len(tables)))
    want = [dict(zip(con.sql(query).columns, row, strict=True)) for row in con.sql(query).fetchall()]
    key = lambda r: repr(sorted(r.items()))  # noqa: E731
    assert sorted(got, key=key) == sorted(({n: r.get(n) for n in unified.names} for r in want), key=key)


@pytest.mark.parametrize(("left", "right"), [(pa.string(), pa.int64()), (pa.date32(), pa.timestamp("us")),
                                             (pa.bool_(), pa.float64()), (pa.binary(), pa.int32())])
def test_every_lossy_pair_is_refused_by_name(left: pa.DataType, right: pa.DataType) -> None:
    schemas = [TaskSchema(3, pa.schema([("k", pa.string()), ("x", left)]), 5),
               TaskSchema(7, pa.schema([("x", right)]), 2)]
    with pytest.raises(SchemaConflict, match=re.escape(f"'x': {left} in task 3, {right} in task 7") + ".*'schema'"):
        unify_stage_schemas("st", schemas)
    # a 0-row task holds no value: it gives way instead of failing the stage
    schemas[1] = TaskSchema(7, schemas[1].schema, 0)
    assert unify_stage_schemas("st", schemas).field("x").type == left


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_outputs_of_drifting_tasks_have_one_header_and_every_row(tmp_path: Path, fmt: str) -> None:
    """CSV and JSON Lines parts: the same columns in the same order in every part, NULLs kept."""
    run(drift_job(tmp_path, {"uri": "out", "format": fmt}, map_only=True))
    parts = sorted((tmp_path / "out").glob(f"part-*.{fmt}"))
    assert len(parts) == 5
    reader = "read_csv" if fmt == "csv" else "read_json"
    got = duckdb.connect().sql(f"select k, v, extra from {reader}('{tmp_path}/out/part-*.{fmt}')").df()
    assert len(got) == 32 and got["extra"].notna().sum() == 8 and got["v"].notna().sum() == 24
    if fmt == "csv":
        assert {p.read_text().splitlines()[0] for p in parts} == {'"k","v","extra"'}
