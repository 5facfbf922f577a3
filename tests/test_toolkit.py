"""Sorted reduce input, the combiner and their validation, end to end on the local backend."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.backends.local import LocalBackend
from babelmr.coordinator.run import run_job
from babelmr.errors import JobFailed, JobFileError
from babelmr.job import load_job
from babelmr.job.loader import validate_job_data
from babelmr.spec import RunRecord
from conftest import write_job, write_program

# A reducer as a plain streaming loop: one row at a time, one group in memory, failing loudly when the
# rows do not arrive grouped by k (ascending, NULL last) and sorted by ts descending (NULL last) within k.
STREAMING_REDUCER = r'''
import csv, json, os, sys
fmt, path = os.environ["MR_FORMAT"], os.environ["MR_INPUT"]

def rows():
    if fmt == "csv":
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                yield (int(r["k"]) if r["k"] != "" else None), (r["ts"] or None), r["v"]
    elif fmt == "jsonl":
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                yield r["k"], r["ts"], r["v"]
    else:
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(path).iter_batches(batch_size=100):
            for r in batch.to_pylist():
                yield r["k"], r["ts"], r["v"]

def before(a, b):  # group keys ascending, NULL last
    return a is not None and (b is None or a < b)

out = []
group, n, previous, seen = object(), 0, None, set()
for k, ts, v in rows():
    if k != group:
        if n:
            out.append((group, n))
        if k in seen or (out and not before(out[-1][0], k)):
            sys.exit(f"key {k!r} after {group!r}: not grouped/sorted")
        seen.add(k)
        group, n, previous = k, 0, ts
    elif previous is None and ts is not None or (ts is not None and previous is not None and ts > previous):
        sys.exit(f"ts {ts!r} after {previous!r} in group {k!r}: not sorted descending")
    n += 1
    previous = ts
if n:
    out.append((group, n))
with open(os.environ["MR_OUTPUT"], "w") as f:
    if fmt == "csv":
        f.write("k,n\n" + "".join(f"{'' if k is None else k},{c}\n" for k, c in out))
    elif fmt == "jsonl":
        f.write("".join(json.dumps({"k": k, "n": c}) + "\n" for k, c in out))
if fmt == "parquet":
    import pyarrow as pa, pyarrow.parquet as pq
    pq.write_table(pa.table({"k": pa.array([k for k, _ in out], pa.int64()), "n": [c for _, c in out]}),
                   os.environ["MR_OUTPUT"])
'''


def _data(folder: Path) -> pa.Table:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(4):
        n = 700
        ks = [None if j % 37 == 0 else (j * 31 + i) % 23 for j in range(n)]
        ts = pa.array([None if j % 11 == 0 else 1_600_000_000_000_000 + ((j * 7919 + i) % 5000) * 1_000_000
                       for j in range(n)], pa.timestamp("us"))
        part = pa.table({"k": pa.array(ks, pa.int64()), "ts": ts, "v": [f"r{i}-{j}" for j in range(n)]})
        pq.write_table(part, folder / f"p{i}.parquet", row_group_size=200)
        parts.append(part)
    return pa.concat_tables(parts)


def _output(record: RunRecord) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in record.output.files)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_streaming_reducer_gets_its_partition_sorted(tmp_path: Path, fmt: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny runs (4 KB) make every reduce task spill and merge; the reducer checks order row by row."""
    monkeypatch.setenv("BABELMR_SORT_RUN_BYTES", "4096")
    table = _data(tmp_path / "data")
    reducer = write_program(tmp_path, "reduce.py", STREAMING_REDUCER)
    path = write_job(tmp_path, {"name": "sorted", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1}, "key": ["k"], "partitions": 3},
        {"name": "reduce", "command": [sys.executable, str(reducer)], "inputs": [{"name": "p", "stage": "map"}],
         "program_format": fmt, "schema": {"k": "int64", "n": "int64"},
         "sort": [{"column": "ts", "order": "desc"}]}]})
    backend = LocalBackend(concurrency=2)
    try:
        record = run_job(load_job(str(path)), backend)
    finally:
        backend.close()
    got = sorted(_output(record).to_pylist(), key=repr)
    rows = table  # noqa: F841 - DuckDB reads the local variable
    want = duckdb.sql("SELECT k, count(*) AS n FROM rows GROUP BY k").to_arrow_table()
    assert got == sorted(want.to_pylist(), key=repr)


def test_unsorted_input_fails_the_streaming_reducer(tmp_path: Path) -> None:
    """The check above can fail: without 'sort', the same reducer sees keys out of order."""
    _data(tmp_path / "data")
    reducer = write_program(tmp_path, "reduce.py", STREAMING_REDUCER)
    path = write_job(tmp_path, {"name": "unsorted", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1}, "key": ["k"], "partitions": 1},
        {"name": "reduce", "command": [sys.executable, str(reducer)], "inputs": [{"name": "p", "stage": "map"}],
         "retries": 0}]})
    backend = LocalBackend(concurrency=2)
    try:
        with pytest.raises(JobFailed, match=r"not grouped/sorted|not sorted descending"):
            run_job(load_job(str(path)), backend)
    finally:
        backend.close()


def test_sort_on_an_external_input_sorts_each_share(tmp_path: Path) -> None:
    table = _data(tmp_path / "data")
    path = write_job(tmp_path, {"name": "mapsort", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 2}, "sort": [{"column": "k", "nulls": "first"}, {"column": "v",
                                                                                     "order": "desc"}]}]})
    backend = LocalBackend(concurrency=2)
    try:
        record = run_job(load_job(str(path)), backend)
    finally:
        backend.close()
    files = record.output.files
    assert len(files) == 2
    for f in files:
        got = pq.read_table(f)
        con = duckdb.connect()
        con.register("t", got)
        want = con.sql("SELECT * FROM t ORDER BY k ASC NULLS FIRST, v DESC").to_arrow_table()
        assert got.to_pylist() == want.to_pylist()
    assert sum(pq.read_metadata(f).num_rows for f in files) == table.num_rows


def test_a_missing_sort_column_names_the_input(tmp_path: Path) -> None:
    _data(tmp_path / "data")
    path = write_job(tmp_path, {"name": "badsort", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "key": ["k"]},
        {"name": "reduce", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "p", "stage": "map"}],
         "sort": ["nope"]}]})
    backend = LocalBackend(concurrency=1)
    try:
        with pytest.raises(JobFailed, match=r"input 'p' from map has no column\(s\) \['nope'\] to sort by"):
            run_job(load_job(str(path)), backend)
    finally:
        backend.close()


# The map emits (word, 1) per word; the combiner and the reducer sum per word, streaming over sorted input.
WORDS_MAP = r'''
import csv, os
with open(os.environ["MR_INPUT"], newline="") as f, open(os.environ["MR_OUTPUT"], "w") as out:
    out.write("word,count\n")
    for row in csv.DictReader(f):
        for w in row["line"].split():
            out.write(f"{w},1\n")
'''
WORDS_SUM = r'''
import csv, os, sys
total, word, last = 0, None, None
with open(os.environ["MR_INPUT"], newline="") as f, open(os.environ["MR_OUTPUT"], "w") as out:
    out.write("word,count\n")
    for row in csv.DictReader(f):
        if row["word"] != word:
            if word is not None:
                out.write(f"{word},{total}\n")
            if last is not None and row["word"] < last:
                sys.exit("combiner input not sorted")
            word, last, total = row["word"], row["word"], 0
        total += int(row["count"])
    if word is not None:
        out.write(f"{word},{total}\n")
print(os.environ["MR_MODE"], sys.argv[-1], file=sys.stderr)
'''


def _words_job(tmp_path: Path, combiner: bool) -> RunRecord:
    data = tmp_path / "text"
    data.mkdir(exist_ok=True)
    for i in range(3):
        (data / f"t{i}.csv").write_text("line\n" + "".join(f"w{(j * 7 + i) % 13} w{j % 5} w{j % 3}\n"
                                                            for j in range(300)))
    write_program(tmp_path, "map.py", WORDS_MAP)
    write_program(tmp_path, "sum.py", WORDS_SUM)
    schema = {"word": "string", "count": "int64"}
    map_stage = {"name": "map", "command": [sys.executable, str(tmp_path / "map.py")], "program_format": "csv",
                 "inputs": [{"name": "t", "uri": "text", "format": "csv"}], "split": {"files_per_task": 1},
                 "schema": schema, "key": ["word"], "partitions": 2}
    if combiner:
        map_stage["combiner"] = [sys.executable, str(tmp_path / "sum.py")]
    job = {"name": "words", "stages": [map_stage, {
        "name": "reduce", "command": [sys.executable, str(tmp_path / "sum.py")], "program_format": "csv",
        "inputs": [{"name": "c", "stage": "map"}], "schema": schema, "sort": ["word"]}]}
    backend = LocalBackend(concurrency=2)
    try:
        return run_job(load_job(str(write_job(tmp_path, job, f"job{combiner}.json"))), backend)
    finally:
        backend.close()


def test_the_combiner_shrinks_the_shuffle_not_the_result(tmp_path: Path) -> None:
    plain, combined = _words_job(tmp_path, False), _words_job(tmp_path, True)
    assert _output(plain).sort_by("word").to_pylist() == _output(combined).sort_by("word").to_pylist()
    words = duckdb.sql(f"SELECT unnest(string_split(line, ' ')) AS word FROM read_csv('{tmp_path}/text/*.csv')")  # noqa: F841 - DuckDB reads the local variable
    want = duckdb.sql("SELECT word, count(*) AS count FROM words GROUP BY word ORDER BY word").fetchall()
    assert [tuple(r.values()) for r in _output(combined).sort_by("word").to_pylist()] == want
    summary = combined.stages[0]
    assert summary.combine_rows_in == 3 * 300 * 3  # every (word, 1) the maps wrote
    assert summary.combine_rows_out == summary.rows_out <= 3 * 13
    assert plain.stages[0].combine_rows_in is None and "combine_rows_in" not in plain.stages[0].to_dict()
    assert summary.bytes_out < plain.stages[0].bytes_out


def test_a_failing_combiner_fails_the_task_with_its_stderr(tmp_path: Path) -> None:
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.csv").write_text("line\na b\n")
    path = write_job(tmp_path, {"name": "badcombine", "stages": [
        {"name": "map", "command": ["cp", "in.csv", "out.csv"], "program_format": "csv", "retries": 0,
         "inputs": [{"name": "t", "uri": "text", "format": "csv"}], "key": ["line"],
         "combiner": [sys.executable, "-c", "import sys; sys.exit('combiner says no')"]}]})
    backend = LocalBackend(concurrency=1)
    try:
        with pytest.raises(JobFailed, match=r"(?s)the combiner .* exited with code 1.*combiner says no"):
            run_job(load_job(str(path)), backend)
    finally:
        backend.close()


def _problems(stage_changes: dict, reduce_changes: dict | None = None) -> list[str]:
    stages = [{"name": "map", "command": "x", "inputs": [{"name": "d", "uri": "data", "columns": ["k", "v"]}],
               "key": ["k"], **stage_changes}]
    if reduce_changes is not None:
        stages.append({"name": "reduce", "command": "x", "inputs": [{"name": "p", "stage": "map"}],
                       **reduce_changes})
    return validate_job_data({"name": "j", "stages": stages})


def test_validation_names_the_json_path() -> None:
    assert _problems({"sort": ["k", {"column": "v", "order": "desc", "nulls": "first"}], "combiner": "c"}) == []
    assert _problems({"sort": ["ts"]}) == [
        "$.stages[0].sort[0]: input 'd' has no column 'ts' (its columns: k, v): fix the sort or the input's columns"]
    assert any(p.startswith("$.stages[0].combiner: a combiner runs") for p in
               validate_job_data({"name": "j", "stages": [{"name": "m", "command": "x", "combiner": "c",
                                                           "inputs": [{"name": "d", "uri": "data"}]}]}))
    assert _problems({}, {"sort": ["x"], "inputs": [{"name": "p", "stage": "map", "columns": ["v"]}]}) == [
        "$.stages[1].inputs[0].columns: 'sort' puts the key column 'k' of stage 'map' first, but this input's "
        "columns omit it: add it",
        "$.stages[1].sort[0]: input 'p' has no column 'x' (its columns: v): fix the sort or the input's columns"]
    assert _problems({"sort": [{"column": "k", "order": "up"}]})[0].startswith("$.stages[0].sort[0]")
    assert _problems({"sort": ["k", "k"]}) == ["$.stages[0].sort[1]: column 'k' is listed twice: list each "
                                               "column once"]


def test_a_job_with_problems_does_not_load(tmp_path: Path) -> None:
    path = write_job(tmp_path, {"name": "j", "stages": [{"name": "m", "command": "x", "combiner": "c",
                                                         "inputs": [{"name": "d", "uri": "data"}]}]})
    with pytest.raises(JobFileError, match=r"\$\.stages\[0\]\.combiner"):
        load_job(str(path))


def test_the_plan_sorts_split_inputs_key_first_and_leaves_broadcast_inputs(tmp_path: Path) -> None:
    from babelmr.coordinator.planner import StageOutput, plan_stage

    _data(tmp_path / "data")
    path = write_job(tmp_path, {"name": "plan", "stages": [
        {"name": "map", "command": "x", "inputs": [{"name": "d", "uri": "data"}], "key": ["k"], "partitions": 2},
        {"name": "reduce", "command": "x", "sort": [{"column": "ts", "order": "desc"}], "combiner": "c",
         "key": ["k"], "inputs": [{"name": "p", "stage": "map"},
                                  {"name": "b", "uri": "data", "broadcast": True}]}]})
    job = load_job(str(path))
    plan = plan_stage(job, job.stages[1], "r", str(tmp_path / "store"),
                      {"map": StageOutput("map", 2, [str(tmp_path / "data" / "p0.parquet")])})
    assert len(plan.tasks) == 2
    for task in plan.tasks:
        split, broadcast = task.inputs
        assert split.sort == [{"column": "k", "order": "asc", "nulls": "last"},
                              {"column": "ts", "order": "desc", "nulls": "last"}]
        assert broadcast.sort is None
        assert task.combiner == ["c"]
