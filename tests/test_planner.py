"""babelmr.coordinator.planner: which task reads which files, row groups and partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.coordinator.planner import StageOutput, StagePlan, plan_stage
from babelmr.errors import InputError
from babelmr.job import Job, load_job
from conftest import write_job

STORE = "/tmp/unused-store"


def load(tmp_path: Path, stages: list[dict[str, Any]], **job: Any) -> Job:
    return load_job(str(write_job(tmp_path, {"name": "plan-test", "stages": stages, **job})))


def plan(job: Job, stage: int = 0, upstream: dict[str, StageOutput] | None = None) -> StagePlan:
    return plan_stage(job, job.stages[stage], "run-1", STORE, upstream or {})


def write_parquet(path: Path, rows: int, row_group_size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(rng.integers(0, 2**62, rows)), "v": pa.array(rng.random(rows))}),
                   path, row_group_size=row_group_size)
    return path


def group_sizes(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [sum(meta.row_group(g).column(c).total_compressed_size for c in range(meta.row_group(g).num_columns))
            for g in range(meta.num_row_groups)]


def map_stage(uri: str, **extra: Any) -> dict[str, Any]:
    return {"name": "map", "command": ["prog", "--flag"], "mode": "map",
            "inputs": [{"name": "data", "uri": uri}], **extra}


# -- files_per_task ---------------------------------------------------------------------------------------------


def test_small_files_share_a_task_by_default(tmp_path: Path) -> None:
    for i in range(3):
        write_parquet(tmp_path / "in" / f"part-{i}.parquet", 10, 10)
    (task,) = plan(load(tmp_path, [map_stage("in")])).tasks  # the default split: ~128 MiB per task
    assert [f.uri for f in task.inputs[0].files] == [str(tmp_path / "in" / f"part-{i}.parquet") for i in range(3)]


@pytest.mark.parametrize(("mib", "concurrency", "tasks"), [(10, 4, 1), (100, 4, 4), (1000, 2, 2), (1100, 2, 4),
                                                         (5000, 4, 12)])
def test_default_split_fills_every_worker_with_whole_waves(mib: int, concurrency: int, tasks: int) -> None:
    from babelmr.job import Split

    total = mib << 20
    target = Split().target_bytes(total, concurrency)
    assert -(-total // target) == tasks  # 32 MiB at least, 512 MiB at most, a multiple of the workers


@pytest.mark.parametrize(("mib", "concurrency", "tasks"), [(10, 2, 1), (100, 2, 2), (1000, 2, 16), (2400, 2, 38)])
def test_default_split_of_a_warm_stage_makes_tasks_of_at_most_64_mib(mib: int, concurrency: int, tasks: int) -> None:
    from babelmr.job import Split

    total = mib << 20
    target = Split().target_bytes(total, concurrency, warm=True)
    assert -(-total // target) == tasks  # its program starts once per worker: small tasks cost little


def test_a_warm_stage_is_planned_with_the_warm_default_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task size limits are scaled down to these small files (real files, real planner) instead of writing
    hundreds of MiB: a warm stage gets one task per file, the same stage cold fewer, larger tasks."""
    from babelmr.job import model

    for i in range(4):
        write_parquet(tmp_path / "in" / f"part-{i}.parquet", 10, 10)
    monkeypatch.setattr(model, "SPLIT_MIN_BYTES", 1)
    monkeypatch.setattr(model, "SPLIT_MAX_WARM_BYTES", 1)  # below any row group: each alone
    cold = plan(load(tmp_path, [map_stage("in")])).tasks
    warm = plan(load(tmp_path, [map_stage("in", warm=True)])).tasks
    assert len(warm) == 4 and all(t.warm for t in warm)
    assert len(cold) < 4


def test_one_file_per_task(tmp_path: Path) -> None:
    for i in range(3):
        write_parquet(tmp_path / "in" / f"part-{i}.parquet", 10, 10)
    job = load(tmp_path, [map_stage("in", key=["id"], partitions=5, env={"A": "stage"}, split={"files_per_task": 1})],
               env={"A": "job", "B": "j"})
    p = plan(job)
    assert [t.task for t in p.tasks] == [0, 1, 2]
    assert [[f.uri for f in t.inputs[0].files] for t in p.tasks] == [
        [str(tmp_path / "in" / f"part-{i}.parquet")] for i in range(3)]
    assert p.resolved_inputs == {"data": [str(tmp_path / "in" / f"part-{i}.parquet") for i in range(3)]}
    t = p.tasks[0]
    assert (t.run_id, t.job, t.stage, t.attempt, t.store) == ("run-1", "plan-test", "map", 1, STORE)
    assert (t.command, t.mode, t.key, t.partitions) == (["prog", "--flag"], "map", ["id"], 5)
    assert t.env == {"A": "stage", "B": "j"}  # the stage's env wins over the job's
    assert t.inputs[0].kind == "files" and t.inputs[0].files[0].row_groups is None
    assert t.inputs[0].files[0].size == (tmp_path / "in" / "part-0.parquet").stat().st_size


def test_files_per_task_groups_files(tmp_path: Path) -> None:
    for i in range(5):
        write_parquet(tmp_path / "in" / f"part-{i}.parquet", 10, 10)
    p = plan(load(tmp_path, [map_stage("in/*.parquet", split={"files_per_task": 2})]))
    assert [[Path(f.uri).name for f in t.inputs[0].files] for t in p.tasks] == [
        ["part-0.parquet", "part-1.parquet"], ["part-2.parquet", "part-3.parquet"], ["part-4.parquet"]]
    assert [t.task for t in p.tasks] == [0, 1, 2]


def test_csv_files_per_task(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    for i in range(4):
        (tmp_path / "csv" / f"{i}.csv").write_text("a\n1\n")
    stage = {"name": "m", "command": "prog", "split": {"files_per_task": 3},
             "inputs": [{"name": "t", "uri": "csv/*.csv", "format": "csv",
                         "csv": {"delimiter": ";", "schema": {"a": "int64"}}}]}
    p = plan(load(tmp_path, [stage]))
    assert [len(t.inputs[0].files) for t in p.tasks] == [3, 1]
    inp = p.tasks[0].inputs[0]
    assert inp.format == "csv" and inp.csv["delimiter"] == ";" and inp.csv["schema"] == {"a": "int64"}


# -- bytes_per_task ------------------------------------------------------------------------------------------------


def test_bytes_per_task_splits_a_large_file_covering_every_row_group_once(tmp_path: Path) -> None:
    src = write_parquet(tmp_path / "big.parquet", 20_000, 1000)
    sizes = group_sizes(src)
    assert len(sizes) == 20
    budget = sum(sizes[:3])  # about three row groups per task
    p = plan(load(tmp_path, [map_stage("big.parquet", split={"bytes_per_task": budget})]))
    assert 5 <= len(p.tasks) <= 8
    covered = []
    for t in p.tasks:
        (piece,) = t.inputs[0].files  # adjacent row groups of one file merge into one slice
        assert piece.uri == str(src)
        assert piece.row_groups == list(range(piece.row_groups[0], piece.row_groups[-1] + 1))
        assert piece.size == sum(sizes[g] for g in piece.row_groups)
        covered += piece.row_groups
    assert covered == list(range(20))  # every row group exactly once, in order
    task_sizes = [t.inputs[0].files[0].size for t in p.tasks]
    assert all(s >= budget for s in task_sizes[:-1])
    assert all(s < budget + max(sizes) for s in task_sizes)


def test_bytes_per_task_over_several_files(tmp_path: Path) -> None:
    files = [write_parquet(tmp_path / "in" / f"{i}.parquet", 3000, 1000, seed=i) for i in range(3)]
    total = sum(sum(group_sizes(f)) for f in files)
    p = plan(load(tmp_path, [map_stage("in", split={"bytes_per_task": total // 2})]))
    assert len(p.tasks) == 2
    seen = [(piece.uri, g) for t in p.tasks for piece in t.inputs[0].files for g in piece.row_groups]
    assert sorted(seen) == sorted((str(f), g) for f in files for g in range(3))
    for t in p.tasks:  # one slice per file within a task
        uris = [piece.uri for piece in t.inputs[0].files]
        assert len(uris) == len(set(uris))


def test_bytes_per_task_larger_than_the_input_is_one_task(tmp_path: Path) -> None:
    src = write_parquet(tmp_path / "x.parquet", 5000, 1000)
    p = plan(load(tmp_path, [map_stage("x.parquet", split={"bytes_per_task": "1GB"})]))
    assert len(p.tasks) == 1
    assert [(f.uri, f.row_groups) for f in p.tasks[0].inputs[0].files] == [(str(src), [0, 1, 2, 3, 4])]


def test_bytes_per_task_with_row_groups_reads_only_those(tmp_path: Path) -> None:
    src = write_parquet(tmp_path / "x.parquet", 10_000, 1000)
    stage = map_stage("x.parquet", split={"bytes_per_task": 1})  # every row group its own task
    stage["inputs"][0]["row_groups"] = [1, 4, 7]
    p = plan(load(tmp_path, [stage]))
    assert [(f.uri, f.row_groups) for t in p.tasks for f in t.inputs[0].files] == [
        (str(src), [1]), (str(src), [4]), (str(src), [7])]


def test_row_groups_are_passed_through(tmp_path: Path) -> None:
    for i in range(2):
        write_parquet(tmp_path / "in" / f"{i}.parquet", 500, 100)
    stage = map_stage("in", split={"files_per_task": 1})
    stage["inputs"][0]["row_groups"] = [0, 2]
    stage["inputs"][0]["columns"] = ["v"]
    p = plan(load(tmp_path, [stage]))
    assert [[(Path(f.uri).name, f.row_groups) for f in t.inputs[0].files] for t in p.tasks] == [
        [("0.parquet", [0, 2])], [("1.parquet", [0, 2])]]
    assert p.tasks[0].inputs[0].columns == ["v"]


# -- broadcast and stage inputs ---------------------------------------------------------------------------------


def test_broadcast_input_goes_whole_to_every_task(tmp_path: Path) -> None:
    for i in range(3):
        write_parquet(tmp_path / "big" / f"{i}.parquet", 100, 100)
    small = [write_parquet(tmp_path / "small" / f"{i}.parquet", 10, 10) for i in range(2)]
    stage = {"name": "join", "command": "prog", "inputs": [
        {"name": "dim", "uri": "small", "broadcast": True, "columns": ["id"]},
        {"name": "facts", "uri": "big"},
    ], "split": {"files_per_task": 1}}
    p = plan(load(tmp_path, [stage]))
    assert len(p.tasks) == 3
    for t in p.tasks:
        assert [i.name for i in t.inputs] == ["dim", "facts"]  # the job's order
        dim = t.inputs[0]
        assert [f.uri for f in dim.files] == [str(s) for s in small]
        assert dim.columns == ["id"] and dim.kind == "files"
    assert [t.inputs[1].files[0].uri for t in p.tasks] == [str(tmp_path / "big" / f"{i}.parquet") for i in range(3)]


def test_stage_input_gives_one_task_per_upstream_partition(tmp_path: Path) -> None:
    write_parquet(tmp_path / "in.parquet", 10, 10)
    small = write_parquet(tmp_path / "dim.parquet", 10, 10)
    job = load(tmp_path, [
        map_stage("in.parquet", key=["id"], partitions=4),
        {"name": "reduce", "command": "prog", "mode": "reduce", "inputs": [
            {"name": "mapped", "stage": "map", "columns": ["id"]},
            {"name": "dim", "uri": "dim.parquet", "broadcast": True},
        ]},
    ])
    upstream_files = [f"{STORE}/runs/run-1/stages/map/data/t0000{i}-a1-ab.parquet" for i in range(3)]
    p = plan(job, 1, {"map": StageOutput("map", 4, upstream_files)})
    assert [t.task for t in p.tasks] == [0, 1, 2, 3]
    for t in p.tasks:
        mapped, dim = t.inputs
        assert (mapped.kind, mapped.format, mapped.partition, mapped.columns, mapped.source) == (
            "stage", "parquet", t.task, ["id"], "map")
        assert [f.uri for f in mapped.files] == upstream_files
        assert all(f.row_groups is None for f in mapped.files)
        assert [f.uri for f in dim.files] == [str(small)] and dim.partition is None
    assert p.resolved_inputs["mapped"] == upstream_files


def test_stage_input_of_a_single_partition_stage(tmp_path: Path) -> None:
    write_parquet(tmp_path / "in.parquet", 10, 10)
    job = load(tmp_path, [map_stage("in.parquet"),
                          {"name": "all", "command": "prog", "inputs": [{"name": "m", "stage": "map"}]}])
    p = plan(job, 1, {"map": StageOutput("map", 1, ["a.parquet", "b.parquet"])})
    assert len(p.tasks) == 1 and p.tasks[0].inputs[0].partition == 0


# -- errors --------------------------------------------------------------------------------------------------------


def test_glob_matching_nothing_is_an_input_error_naming_it(tmp_path: Path) -> None:
    write_parquet(tmp_path / "in" / "a.parquet", 10, 10)
    with pytest.raises(InputError, match="matches no files") as err:
        plan(load(tmp_path, [map_stage("in/*.csv")]))
    assert str(tmp_path / "in" / "*.csv") in str(err.value)


def test_corrupt_parquet_file_under_bytes_per_task_is_named(tmp_path: Path) -> None:
    write_parquet(tmp_path / "in" / "a.parquet", 100, 10)
    bad = tmp_path / "in" / "b.parquet"
    bad.write_bytes(b"definitely not parquet")
    with pytest.raises(InputError, match="cannot read Parquet file") as err:
        plan(load(tmp_path, [map_stage("in", split={"bytes_per_task": "1MB"})]))
    assert str(bad) in str(err.value)


def test_missing_column_is_found_at_plan_time(tmp_path: Path) -> None:
    src = write_parquet(tmp_path / "x.parquet", 10, 10)
    stage = map_stage("x.parquet")
    stage["inputs"][0]["columns"] = ["id", "nope"]
    with pytest.raises(InputError, match=r"no column\(s\) \['nope'\]") as err:
        plan(load(tmp_path, [stage]))
    assert str(src) in str(err.value)


def test_missing_row_group_is_found_at_plan_time(tmp_path: Path) -> None:
    write_parquet(tmp_path / "x.parquet", 30, 10)
    stage = map_stage("x.parquet", split={"bytes_per_task": "1MB"})
    stage["inputs"][0]["row_groups"] = [0, 3]
    with pytest.raises(InputError, match=r"has 3 row groups; row_groups \[3\] do not exist"):
        plan(load(tmp_path, [stage]))


@pytest.mark.parametrize("split", [{}, {"bytes_per_task": "1MB"}])
def test_a_column_only_some_files_have_is_planned_like_the_importer_reads_it(tmp_path: Path,
                                                                               split: dict[str, Any]) -> None:
    """The importer reads a column a file lacks as NULL when another file has it: the planner must not refuse
    it (it did per file when it read every footer), whichever file lacks it; a column no file has still fails."""
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "in" / "a.parquet")
    pq.write_table(pa.table({"id": [3], "extra": ["x"]}), tmp_path / "in" / "b.parquet")
    stage = map_stage("in", split=split) if split else map_stage("in")
    stage["inputs"][0]["columns"] = ["id", "extra"]
    planned = plan(load(tmp_path, [stage]))
    assert sorted(f.uri for t in planned.tasks for f in t.inputs[0].files) == [
        str(tmp_path / "in" / "a.parquet"), str(tmp_path / "in" / "b.parquet")]
    stage["inputs"][0]["columns"] = ["id", "nope"]
    with pytest.raises(InputError, match=r"a.parquet has no column\(s\) \['nope'\]; it has \['id'\]: fix 'columns' "
                                         r"in the job file \(nor does any of the input's 1 other file\(s\)\)"):
        plan(load(tmp_path, [stage]))
