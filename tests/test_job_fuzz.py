"""Fuzzing job files: every mutated example job validates (exit 0) or is refused with a JSON path (exit 1).

The example job files of every language are mutated at random JSON paths: other JSON types, huge,
negative and fractional numbers, NaN/Infinity literals, deep nesting, names ending in a line break,
dropped required fields, unknown fields, broken bytes. Each goes through ``babelmr validate`` in-process;
no traceback and no exception may escape, and a valid file must load into a consistent `Job` whose
stages plan (against small stand-in input files) into tasks or a typed error.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelmr.cli import main
from babelmr.coordinator.planner import StageOutput, plan_stage
from babelmr.errors import BabelMRError
from babelmr.job import Job, load_job, validate_job_data

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [json.loads(p.read_text()) for p in sorted(ROOT.glob("examples-*/*/job.json"))]
EXAMPLES = 1100  # >= 1,000 files per run of the suite

# Text spliced into the serialised file where a mutation put a placeholder: what json.dumps cannot write.
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 40, "-" + "9" * 5000, "4.0", "1E3",
              "[" * 50 + "]" * 50, "[" * 5000 + "]" * 5000]

TRIED: dict[str, int] = {"files": 0, "valid": 0, "refused": 0, "planned": 0}


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every JSON path in ``value`` (the seeds are shallow, so recursion is fine here)."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


names = st.sampled_from(["map", "reduce", "x", "a b", "map\n", "q1\n", "", "-x", "ü", "A" * 70, "k\r", "$x",
                         "\ud800"])
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(10**6), 10**6), st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 4.0, 2.5, -1.0, 1e300, 1e-300]),
    st.text(max_size=12), names,
    st.sampled_from(["four", "64MB", "99999999999999999999999TB", "0B", "9" * 400 + "B", "1.5GiB\n", "int64\n",
                     "decimal128(99,2)", "decimal128(10,12)", "timestamp[ns]", "parquet", "csv", "jsonl", "{job_dir}",
                     "python3 'x", 'a "b', "  ", "x\\", "a\x00b"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(names, st.text(max_size=6)), inner, max_size=3)),
    max_leaves=8)


@st.composite
def mutated_job(draw: st.DrawFn) -> bytes:
    """One example job file with 1-4 mutations, as the bytes of the file."""
    job = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    raw: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(job)
        path = draw(st.sampled_from(paths))
        parent = job
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1] if path else None
        op = draw(st.sampled_from(["replace", "replace", "raw", "drop", "unknown", "newline", "nest", "copy"]))
        if op == "replace" and path:
            parent[last] = draw(json_values)
        elif op == "raw" and path:
            raw.append(draw(st.sampled_from(RAW_TOKENS)))
            parent[last] = f"__raw{len(raw) - 1}__"
        elif op == "drop" and path:
            del parent[last]
        elif op == "unknown":
            target = parent[last] if path else job
            if isinstance(target, dict):
                target[draw(st.sampled_from(["partitons", "extra", "Name", "key\n"]))] = draw(json_values)
        elif op == "newline" and path and isinstance(parent[last], str):
            parent[last] += draw(st.sampled_from(["\n", "\r\n", " ", "\x00"]))
        elif op == "nest" and path:
            parent[last] = _nested(draw(st.integers(1, 40)), parent[last])
        elif op == "copy" and path:  # another part of the job, moved to a place it does not belong
            parent[last] = copy.deepcopy(draw(st.sampled_from([job.get("stages"), job.get("name"), SEEDS[0]])))
    text = json.dumps(job, indent=1)  # NaN and Infinity floats come out as their literals
    for i, token in enumerate(raw):
        text = text.replace(f'"__raw{i}__"', token)
    data = text.encode()
    how = draw(st.sampled_from(["as-is"] * 12 + ["truncate", "bad-bytes", "empty", "bom"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "bad-bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + data[at:]
    elif how == "empty":
        data = b"  \n"
    elif how == "bom":
        data = b"\xef\xbb\xbf" + data
    return data


def _columns(value: Any) -> set[str]:
    """Every column name the seed jobs mention."""
    if isinstance(value, dict):
        found = set(value.get("columns", [])) | set(value.get("key", []))
        return found.union(*(_columns(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_columns(v) for v in value))
    return set()


@pytest.fixture(scope="module")
def job_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each fuzzed job is written, beside small files for the examples' inputs, so planning runs."""
    folder = tmp_path_factory.mktemp("fuzz")
    table = pa.table({c: [1, 2] for c in sorted(set().union(*map(_columns, SEEDS)))})
    for sub in ("lineitem", "item", "store_sales"):
        (folder / "data" / sub).mkdir(parents=True)
        pq.write_table(table, folder / "data" / sub / "part-0.parquet")
    (folder / "data" / "text.csv").write_text("line\nthe quick brown fox\n")
    return folder / "job.json"


def _plan_every_stage(job: Job) -> None:
    """Plan each stage as a run would (upstream outputs stand in, without files): a typed error or tasks."""
    upstream: dict[str, StageOutput] = {}
    for stage in job.stages:
        try:
            plan = plan_stage(job, stage, "run", str(Path(job.directory) / "store"), upstream, concurrency=2)
        except BabelMRError:
            return  # e.g. a mutated column list the files lack: reported, not a crash
        assert plan.tasks
        upstream[stage.name] = StageOutput(stage.name, stage.partitions, [])
    TRIED["planned"] += 1


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(data=mutated_job())
def test_mutated_job_files_validate_or_name_a_json_path(job_path: Path, data: bytes) -> None:
    job_path.write_bytes(data)
    result = CliRunner().invoke(main, ["validate", str(job_path)])
    TRIED["files"] += 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), (result.exit_code, output)
    if result.exit_code == 1:
        TRIED["refused"] += 1
        problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
        assert problems and all(p.startswith("  - $") for p in problems), result.stderr
        return
    TRIED["valid"] += 1
    job = load_job(str(job_path))  # what validate accepted loads into a consistent model
    for stage in job.stages:
        assert type(stage.partitions) is int and 1 <= stage.partitions <= 100_000
        assert type(stage.retries) is int and 0 <= stage.retries <= 20
        assert stage.timeout is None or (0 < stage.timeout < math.inf and type(stage.timeout) is not bool)
        assert all(isinstance(c, str) for c in stage.command or ())
        assert all(isinstance(k, str) and k for k in stage.key or ())
        assert not stage.name.endswith("\n") and not job.name.endswith("\n")
        assert stage.memory is None or 1 <= stage.memory <= 2**50
        assert stage.partitioner in ("hash", "range", "salted", "random")
        assert stage.partitioner == "hash" or stage.key  # every other partitioner places rows by a key
        assert stage.salts is None or (stage.partitioner == "salted" and 1 <= stage.salts <= stage.partitions)
    _plan_every_stage(job)


def test_fuzz_count() -> None:
    """Runs after the fuzz test (file order): it tried at least 1,000 files, and some of each outcome."""
    if TRIED["files"] == 0:
        pytest.skip("the fuzz test did not run in this session")
    print(f"fuzzed job files: {TRIED}")
    assert TRIED["files"] >= 1000, TRIED
    assert TRIED["valid"] > 0 and TRIED["refused"] > 0 and TRIED["planned"] > 0, TRIED


@st.composite
def stage_graph(draw: st.DrawFn) -> dict:
    """A job of 2-5 stages: each later stage reads 1-3 earlier ones, each partitioned at random."""
    stages: list[dict] = []
    for i in range(draw(st.integers(2, 5))):
        stage: dict[str, Any] = {"name": f"s{i}", "command": "true"}
        partitions = draw(st.sampled_from([1, 1, 2, 4]))
        if partitions > 1 or draw(st.booleans()):
            stage["key"] = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2, unique=True))
        if partitions > 1 or draw(st.booleans()):
            stage["partitions"] = partitions
        if "key" in stage and draw(st.integers(0, 2)) == 0:  # every partitioner needs a key
            stage["partitioner"] = draw(st.sampled_from(["hash", "range", "salted", "random"]))
        if i == 0 or draw(st.integers(0, 3)) == 0:
            stage["inputs"] = [{"name": "data", "uri": "data"}]
        else:
            refs = draw(st.lists(st.sampled_from([s["name"] for s in stages]), min_size=1, max_size=3))
            stage["inputs"] = [{"name": f"in{j}", "stage": ref} for j, ref in enumerate(refs)]
        stages.append(stage)
    return {"name": "graph", "stages": stages}


def _joins_meet(job: dict) -> list[int]:
    """The oracle: indexes of stages whose task p would not see every row of each side's key group.

    Task p reads partition p of every stage it reads; that is complete only if all of them put equal
    keys in the same partition (same key list, same count, each by the key's hash) or all have one
    partition (one task). Range boundaries are sampled per stage, salted and random spread keys apart.
    """
    by_name = {s["name"]: s for s in job["stages"]}
    bad = []
    for i, stage in enumerate(job["stages"]):
        refs = {inp["stage"] for inp in stage["inputs"] if "stage" in inp}
        layouts = {(tuple(by_name[r].get("key", ())), by_name[r].get("partitions", 1)) for r in refs}
        placed = any(by_name[r].get("partitioner", "hash") != "hash" and by_name[r].get("partitions", 1) > 1
                     for r in refs)
        if len(refs) > 1 and (len(layouts) > 1 or placed) and max(p for _, p in layouts) > 1:
            bad.append(i)
    return bad


@settings(max_examples=200, deadline=None, database=None)
@given(job=stage_graph())
def test_joins_are_refused_exactly_when_rows_could_miss_each_other(job: dict) -> None:
    problems = validate_job_data(job)
    refused = sorted({int(p.split("]")[0].removeprefix("$.stages[")) for p in problems})
    assert all(p.startswith("$.stages[") and ".inputs: the stages read here are partitioned" in p
               for p in problems), problems  # (also those by more than a key's hash)
    assert refused == _joins_meet(job), (problems, job)
