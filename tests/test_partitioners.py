"""The range, salted and random partitioners (worker/partitioners.py, coordinator/sampling.py) against DuckDB."""

from __future__ import annotations

import json
import math
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babelmr.backends.local import LocalBackend
from babelmr.coordinator.run import run_job
from babelmr.coordinator.sampling import boundaries
from babelmr.errors import InputError, JobFailed
from babelmr.job import load_job
from babelmr.worker.partition import UnsupportedKeyError
from babelmr.worker.partitioners import RangeSplitter, SaltedSplitter, encode_boundaries, make_splitter, task_seed
from conftest import write_job, write_program
from test_sort import tables


def _norm(v):
    """A value comparable with ==: NaN equals NaN, -0.0 equals 0.0 (as DuckDB's ORDER BY and GROUP BY tie them)."""
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else v + 0.0
    return str(v) if isinstance(v, Decimal) else v


def _order_sql(sort: list[dict[str, str]]) -> str:
    return ", ".join(f'"{s["column"]}" {s["order"].upper()} NULLS {s["nulls"].upper()}' for s in sort)


CON = duckdb.connect()


def _ids_in_order(table: pa.Table, sort: list[dict[str, str]]) -> list[int]:
    CON.register("t", table)
    try:
        return [r[0] for r in CON.sql(f"SELECT id FROM t ORDER BY {_order_sql(sort)}, id").fetchall()]
    finally:
        CON.unregister("t")


def _split(splitter, table: pa.Table, partitions: int, chunk: int) -> list[pa.Table]:
    parts: list[list[pa.RecordBatch]] = [[] for _ in range(partitions)]
    for batch in table.to_batches(max_chunksize=chunk):
        for p, piece in splitter(batch):
            parts[p].append(piece)
    return [pa.Table.from_batches(b, schema=table.schema) for b in parts]


@st.composite
def range_cases(draw):
    table, sort = draw(tables())
    if table.num_rows and draw(st.booleans()):  # one hot key: most rows repeat row 0
        hot = draw(st.integers(1, 300))
        table = table.take(pa.array([0] * hot + list(range(table.num_rows))))
    table = table.append_column("id", pa.array(range(table.num_rows), pa.int64()))
    sample = draw(st.lists(st.integers(0, max(0, table.num_rows - 1)), max_size=60)) if table.num_rows else []
    return table, sort, sample, draw(st.integers(1, 8)), draw(st.integers(1, 50))


@settings(max_examples=40, deadline=None)
@given(range_cases())
def test_range_parts_concatenate_to_duckdbs_order_by(case) -> None:
    """Each part sorted, the parts in order equal ORDER BY over everything; no key's rows in two parts."""
    table, sort, sample, partitions, chunk = case
    key = [s["column"] for s in sort]
    bounds = boundaries(table.take(pa.array(sample, pa.int64())).select(key), sort, partitions)
    options = {"order": sort, "boundaries": encode_boundaries(bounds) if bounds is not None else None}
    parts = _split(make_splitter(key, partitions, "range", options), table, partitions, chunk)
    assert sum(p.num_rows for p in parts) == table.num_rows
    got = [i for part in parts for i in _ids_in_order(part, sort)]
    assert got == _ids_in_order(table, sort)
    where: dict[tuple, set[int]] = {}
    for p, part in enumerate(parts):
        for row in part.select(key).to_pylist():
            where.setdefault(tuple(_norm(v) for v in row.values()), set()).add(p)
    assert all(len(ps) == 1 for ps in where.values()), where


def test_range_balances_a_uniform_key_and_keeps_a_hot_key_whole() -> None:
    n = 10_000
    table = pa.table({"k": pa.array(np.r_[np.arange(n), np.full(n, 77)], pa.int64())})
    order = [{"column": "k", "order": "asc", "nulls": "last"}]
    splitter = RangeSplitter(["k"], 4, order, boundaries(table.slice(0, n), order, 4))
    counts = np.bincount(splitter.ids(table.slice(0, n).to_batches()[0]), minlength=4)
    assert counts.tolist() == [2500] * 4
    hot = splitter.ids(pa.record_batch({"k": pa.array([77] * 100, pa.int64())}))
    assert len(set(hot.tolist())) == 1


def test_range_compares_a_task_key_of_another_type_in_the_boundaries_type() -> None:
    order = [{"column": "k", "order": "asc", "nulls": "last"}]
    bounds = pa.table({"k": pa.array([10, 20], pa.int64())})
    splitter = RangeSplitter(["k"], 3, order, bounds)
    batch = pa.record_batch({"k": pa.array([5, 10, 11, 20, 25, None], pa.int32())})
    assert splitter.ids(batch).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(UnsupportedKeyError, match=r"key column 'k': the program wrote double.*declare the key's "
                                                  r"type in the stage's 'schema'"):
        splitter.ids(pa.record_batch({"k": pa.array([1.5])}))


@pytest.mark.parametrize("t", [pa.list_(pa.int64()), pa.struct([("a", pa.int64())]),
                               pa.map_(pa.string(), pa.int64())])
def test_range_refuses_a_key_without_an_order(t: pa.DataType) -> None:
    splitter = make_splitter(["k"], 2, "range", {})
    with pytest.raises(UnsupportedKeyError, match=r"key column 'k' of type .* has no order"):
        splitter(pa.record_batch({"k": pa.array([None], t)}))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.none() | st.integers(0, 5) | st.just(3), max_size=300), st.integers(1, 6),
       st.integers(1, 6), st.integers(0, 50), st.integers(1, 40))
def test_salted_partials_combined_per_key_equal_group_by(keys, partitions, salts, task, chunk) -> None:
    """Partial sums per (partition, key), combined per key, equal GROUP BY; a retry splits alike."""
    salts = min(salts, partitions)
    table = pa.table({"k": pa.array(keys, pa.int64()), "v": pa.array(range(len(keys)), pa.int64())})
    splitter = make_splitter(["k"], partitions, "salted", {"salts": salts}, "map", task)
    parts = _split(splitter, table, partitions, chunk)
    partial = pa.concat_tables([p.group_by("k").aggregate([("v", "sum")]) for p in parts if p.num_rows]
                               or [pa.table({"k": pa.array([], pa.int64()), "v_sum": pa.array([], pa.int64())})])
    got = sorted(partial.group_by("k").aggregate([("v_sum", "sum")]).to_pylist(), key=repr)
    CON.register("t", table)
    want = CON.sql("SELECT k, sum(v) AS v_sum_sum FROM t GROUP BY k").fetchall()
    CON.unregister("t")
    assert got == sorted(({"k": k, "v_sum_sum": s} for k, s in want), key=repr)
    # another attempt of the task, reading the program's output in other batches, splits every row alike
    again = _split(make_splitter(["k"], partitions, "salted", {"salts": salts}, "map", task), table, partitions, 7)
    assert [p.to_pylist() for p in again] == [p.to_pylist() for p in parts]
    for part_id, part in enumerate(parts):  # each key stays within its 'salts' partitions
        for k in set(part["k"].to_pylist()):
            home = make_splitter(["k"], partitions)(pa.record_batch({"k": pa.array([k], pa.int64())}))[0][0]
            assert (part_id - home) % partitions < salts


def test_random_spreads_a_hot_key_and_depends_on_the_task() -> None:
    batch = pa.record_batch({"k": pa.array([1] * 4000, pa.int64())})
    ids = SaltedSplitter(["k"], 4, 4, task_seed("map", 0)).ids(batch)
    assert np.bincount(ids, minlength=4).min() > 800  # a hot key lands everywhere
    other = SaltedSplitter(["k"], 4, 4, task_seed("map", 1)).ids(batch)
    assert (ids != other).any()
    assert (SaltedSplitter(["k"], 4, 4, task_seed("map", 0)).ids(batch) == ids).all()


# --------------------------------------------------------------------------------------- end to end

REDUCE = '''
import os, sys
import pyarrow.parquet as pq
# partial or final sums per key: a plain streaming loop over sorted input is not needed here
t = pq.read_table(os.environ["MR_INPUT"])
pq.write_table(t.group_by("k").aggregate([("v", "sum")]).rename_columns(["k", "v"]), os.environ["MR_OUTPUT"])
'''


def _skewed(folder: Path) -> pa.Table:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    parts = []
    for i in range(3):
        k = np.where(rng.random(2000) < 0.7, 7, rng.integers(0, 50, 2000))
        part = pa.table({"k": pa.array([None if x == 13 else f"k{x}" for x in k]),
                         "v": pa.array(rng.integers(-9, 9, 2000), pa.int64())})
        pq.write_table(part, folder / f"p{i}.parquet", row_group_size=500)
        parts.append(part)
    return pa.concat_tables(parts)


def _run(path: Path) -> dict:
    backend = LocalBackend(concurrency=2)
    try:
        return run_job(load_job(str(path)), backend)
    finally:
        backend.close()


def test_a_salted_job_then_a_combine_stage_equals_group_by(tmp_path: Path) -> None:
    data = _skewed(tmp_path / "data")  # noqa: F841 - DuckDB reads it
    reduce = write_program(tmp_path, "reduce.py", REDUCE)
    path = write_job(tmp_path, {"name": "salted", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1}, "key": ["k"], "partitions": 4, "partitioner": "salted", "salts": 3},
        {"name": "partial", "command": [sys.executable, str(reduce)], "inputs": [{"name": "m", "stage": "map"}],
         "key": ["k"], "partitions": 2},
        {"name": "final", "command": [sys.executable, str(reduce)], "inputs": [{"name": "p", "stage": "partial"}]}],
        "output": {"uri": "out"}})
    record = _run(path)
    map_rows = record.stages[0]
    assert map_rows.rows_out == 6000
    got = pa.concat_tables(pq.read_table(f) for f in record.output.files)
    want = duckdb.sql("SELECT k, sum(v) AS v FROM data GROUP BY k").fetchall()
    assert sorted(map(tuple, (r.values() for r in got.to_pylist())), key=repr) == sorted(want, key=repr)
    # the hot key's rows were spread: the partial stage wrote it from more than one task
    partial = pa.concat_tables(pq.read_table(c.uri) for c in record.stages[1].committed)
    assert partial.filter(pa.compute.equal(partial["k"], "k7")).num_rows > 1


def test_total_order_job_with_the_range_partitioner(tmp_path: Path) -> None:
    """Keys of several types with NULLs and NaN; the parts of the result, in order, are ORDER BY's rows."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(1)
    parts = []
    for i in range(3):
        n = 1500
        f = rng.normal(size=n)
        f[rng.random(n) < 0.05] = np.nan
        part = pa.table({"f": pa.array(f, mask=rng.random(n) < 0.05),
                         "s": pa.array([None if x == 0 else f"s{x}" for x in rng.integers(0, 20, n)]),
                         "id": pa.array(np.arange(n) + i * n, pa.int64())})
        pq.write_table(part, folder / f"p{i}.parquet", row_group_size=300)
        parts.append(part)
    table = pa.concat_tables(parts)
    path = write_job(tmp_path, {"name": "totalorder", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1}, "key": ["f", "s"], "partitions": 5, "partitioner": "range"},
        {"name": "sort", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "m", "stage": "map"}],
         "sort": [{"column": "s", "order": "desc", "nulls": "first"}, "id"]}], "output": {"uri": "out"}})
    record = _run(path)
    files = sorted(record.output.files)
    got = pa.concat_tables(pq.read_table(f) for f in files)
    sort = [{"column": "f", "order": "asc", "nulls": "last"}, {"column": "s", "order": "desc", "nulls": "first"},
            {"column": "id", "order": "asc", "nulls": "last"}]
    assert got["id"].to_pylist() == _ids_in_order(table, sort)
    sizes = [pq.read_metadata(f).num_rows for f in files]
    assert len(sizes) == 5 and max(sizes) < 2 * 4500 / 5, sizes  # the sample balanced the parts


def test_range_on_a_key_the_input_lacks_names_the_stage(tmp_path: Path) -> None:
    _skewed(tmp_path / "data")
    path = write_job(tmp_path, {"name": "nokey", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "key": ["nope"], "partitions": 2, "partitioner": "range"}]})
    with pytest.raises(InputError, match=r"stage 'map': the range partitioner samples the key \['nope'\] from "
                                        r"input 'd'.*nope"):
        _run(path)


def test_range_on_an_unordered_sampled_key_names_the_stage_and_column(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"k": pa.array([[1], [2]], pa.list_(pa.int64()))}), tmp_path / "data" / "a.parquet")
    path = write_job(tmp_path, {"name": "unordered", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "key": ["k"], "partitions": 2, "partitioner": "range"}]})
    with pytest.raises(InputError, match=r"stage 'map' \(input 'd'\): key column 'k' of type list<\w+: int64> has "
                                        r"no order"):
        _run(path)


def test_a_program_writing_an_unordered_range_key_fails_without_retries(tmp_path: Path) -> None:
    """The sample (the input) is ordered; the program's output is not: the task fails once, naming the column."""
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"k": [1, 2, 3]}), tmp_path / "data" / "a.parquet")
    prog = write_program(tmp_path, "listify.py", (
        "import os, pyarrow as pa, pyarrow.parquet as pq\n"
        "pq.write_table(pa.table({'k': pa.array([[1]], pa.list_(pa.int64()))}), os.environ['MR_OUTPUT'])\n"))
    path = write_job(tmp_path, {"name": "badout", "stages": [
        {"name": "map", "command": [sys.executable, str(prog)], "inputs": [{"name": "d", "uri": "data"}],
         "key": ["k"], "partitions": 2, "partitioner": "range", "retries": 3}]})
    with pytest.raises(JobFailed, match=r"attempt 1: key column 'k' of type list<\w+: int64> has no order"):
        _run(path)





def test_range_refuses_a_task_key_that_orders_otherwise_than_the_boundaries() -> None:
    """Text keys against number boundaries would place '10' after '9' while the reader sorts text: refused."""
    order = [{"column": "k", "order": "asc", "nulls": "last"}]
    splitter = RangeSplitter(["k"], 2, order, pa.table({"k": pa.array([9], pa.int64())}))
    with pytest.raises(UnsupportedKeyError, match=r"the program wrote string, but the range boundaries are int64.*"
                                                  r"declare its type in the stage's 'schema'"):
        splitter.ids(pa.record_batch({"k": ["10", "9"]}))
    assert splitter.ids(pa.record_batch({"k": pa.array([None, None], pa.null())})).tolist() == [1, 1]


def test_range_on_a_stage_reading_an_earlier_stage(tmp_path: Path) -> None:
    """The sample comes from the upstream stage's partitions; NULL keys go last, into the last part."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(2)
    n = 3000
    table = pa.table({"k": pa.array(rng.integers(-50, 50, n), mask=rng.random(n) < 0.1),
                      "id": pa.array(np.arange(n), pa.int64())})
    for i in range(3):
        pq.write_table(table.slice(i * 1000, 1000), folder / f"p{i}.parquet")
    cp = ["cp", "in.parquet", "out.parquet"]
    path = write_job(tmp_path, {"name": "staged", "stages": [
        {"name": "map", "command": cp, "inputs": [{"name": "d", "uri": "data"}], "split": {"files_per_task": 1},
         "key": ["id"], "partitions": 3},
        {"name": "mid", "command": cp, "inputs": [{"name": "m", "stage": "map"}], "key": ["k"], "partitions": 4,
         "partitioner": "range"},
        {"name": "final", "command": cp, "inputs": [{"name": "r", "stage": "mid"}], "sort": ["id"]}],
        "output": {"uri": "out"}})
    record = _run(path)
    got = pa.concat_tables(pq.read_table(f) for f in sorted(record.output.files))
    assert got["id"].to_pylist() == _ids_in_order(table, [{"column": "k", "order": "asc", "nulls": "last"}])
    sizes = [pq.read_metadata(f).num_rows for f in sorted(record.output.files)]
    assert min(sizes) > 300, sizes


def test_a_retry_of_a_salted_task_exports_the_same_split(tmp_path: Path) -> None:
    """Attempts 1 and 2 of one map task (into two stores, so both commit) write the same rows per partition."""
    from babelmr.coordinator.planner import plan_stage
    from babelmr.worker.task import run_task

    _skewed(tmp_path / "data")
    path = write_job(tmp_path, {"name": "retry", "stages": [
        {"name": "map", "command": ["cp", "in.parquet", "out.parquet"], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1}, "key": ["k"], "partitions": 4, "partitioner": "salted", "salts": 2}]})
    job = load_job(str(path))
    splits = []
    for attempt in (1, 2):
        spec = plan_stage(job, job.stages[0], "run", str(tmp_path / f"store{attempt}"), {}).tasks[1]
        result = run_task(spec.with_attempt(attempt), str(tmp_path / f"work{attempt}"))
        assert result.status == "ok", result.error
        file = pq.ParquetFile(result.commit.uri)
        index = json.loads(file.metadata.metadata[b"babelmr.partitions"])
        splits.append([pa.concat_tables([file.read_row_group(g) for g in groups]).to_pylist() if groups else []
                       for groups in index["row_groups"]])
    assert splits[0] == splits[1]
    hot = [sum(r["k"] == "k7" for r in part) for part in splits[0]]
    assert sum(1 for n in hot if n) == 2  # the hot key in 'salts' partitions, no more


@settings(max_examples=30, deadline=None)
@given(st.lists(st.none() | st.text(max_size=3) | st.sampled_from(["a", "b", "\x00"]), max_size=80),
       st.lists(st.text(max_size=3), max_size=10), st.integers(1, 5))
def test_range_places_dictionary_and_large_string_keys_like_plain_strings(values, sample, partitions) -> None:
    """A task writing the key dictionary-encoded, or as large_string, lands rows where plain strings land."""
    order = [{"column": "k", "order": "asc", "nulls": "last"}]
    bounds = boundaries(pa.table({"k": pa.array(sample, pa.string())}), order, partitions)
    splitter = RangeSplitter(["k"], partitions, order, bounds)
    plain = splitter.ids(pa.record_batch({"k": pa.array(values, pa.string())}))
    encoded = splitter.ids(pa.record_batch({"k": pa.array(values, pa.string()).dictionary_encode()}))
    large = splitter.ids(pa.record_batch({"k": pa.array(values, pa.large_string())}))
    assert plain.tolist() == encoded.tolist() == large.tolist()
    ordered = sorted(zip(values, plain.tolist(), strict=True),
                     key=lambda vp: (vp[0] is None, (vp[0] or "").encode()))
    assert [p for _, p in ordered] == sorted(p for _, p in ordered)  # partitions follow the byte order, NULLs last
