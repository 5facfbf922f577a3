"""Job files: schema, validation messages with JSON paths, resolution of paths and defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from babelmr.cli import main
from babelmr.errors import JobFileError
from babelmr.job import ExternalInput, StageInput, job_schema, load_job, validate_job_data
from conftest import write_job

GOOD = {
    "name": "wc",
    "stages": [
        {"name": "map", "command": "python3 {job_dir}/wc.py", "mode": "map",
         "inputs": [{"name": "text", "uri": "data/*.csv", "format": "csv"}],
         "split": {"bytes_per_task": "64MB"}, "key": ["word"], "partitions": 4, "program_format": "csv",
         "schema": {"word": "string", "count": "int64"}},
        {"name": "reduce", "command": ["python3", "wc.py"], "mode": "reduce",
         "inputs": [{"name": "counts", "stage": "map", "columns": ["word", "count"]}], "retries": 0},
    ],
}


def test_valid_job_loads_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    job = load_job(str(write_job(tmp_path, GOOD)))
    assert job.store == str(tmp_path / ".babelmr")
    map_stage, reduce_stage = job.stages
    (text,) = map_stage.inputs
    assert isinstance(text, ExternalInput)
    assert text.uri == str(tmp_path / "data/*.csv")
    assert map_stage.command == ("python3", "{job_dir}/wc.py")  # resolved by the worker
    assert map_stage.split.bytes_per_task == 64_000_000
    assert map_stage.retries == 2 and reduce_stage.retries == 0
    assert isinstance(reduce_stage.inputs[0], StageInput)
    assert reduce_stage.partitions == 1 and reduce_stage.program_format == "parquet"


def test_store_override_and_s3_store(tmp_path: Path) -> None:
    job = load_job(str(write_job(tmp_path, {**GOOD, "store": "s3://bucket/prefix"})))
    assert job.store == "s3://bucket/prefix"
    assert load_job(str(write_job(tmp_path, GOOD)), store="s3://other/x").store == "s3://other/x"


def test_output_format_override_must_be_an_output_format(tmp_path: Path) -> None:
    """load_job is public (babelmr.load_job): an output_format outside parquet/csv/jsonl is a job-file problem."""
    path = str(write_job(tmp_path, GOOD))
    assert load_job(path, output=str(tmp_path / "out"), output_format="csv").output.format == "csv"
    with pytest.raises(JobFileError, match=r"output_format 'xlsx' is not an output format: use one of parquet"):
        load_job(path, output=str(tmp_path / "out"), output_format="xlsx")  # type: ignore[arg-type]


def test_every_problem_is_reported_with_its_path() -> None:
    bad = json.loads(json.dumps(GOOD))
    bad["name"] = "has space"
    bad["stages"][0]["inputs"][0]["format"] = "orc"
    bad["stages"][0]["partitons"] = 3
    bad["stages"][1]["inputs"][0]["stage"] = "nope"
    del bad["stages"][1]["command"]
    problems = validate_job_data(bad)
    text = "\n".join(problems)
    assert "$.name: 'has space' is not a valid name" in text
    assert "$.stages[0].inputs[0].format: 'orc' is not allowed: use one of 'parquet', 'csv'" in text
    assert "$.stages[0]: unknown field 'partitons' (did you mean 'partitions'?)" in text
    assert "$.stages[1].inputs[0].stage: 'nope' is no stage of that name" in text
    assert "$.stages[1]: give 'command'" in text
    assert len(problems) == 5


@pytest.mark.parametrize(("change", "expected"), [
    (lambda j: j["stages"].reverse(), "$.stages[0].inputs[0].stage: 'map' is a later stage or this one"),
    (lambda j: j["stages"][1].update(name="map"), "$.stages[1].name: stage name 'map' is used twice"),
    (lambda j: j["stages"][0].pop("key"), "$.stages[0].partitions: partitions > 1 needs 'key'"),
    (lambda j: j["stages"][0]["inputs"].append({"name": "more", "uri": "x"}),
     "$.stages[0].inputs[1]: only one external input per stage is split"),
    (lambda j: j["stages"][1]["inputs"].append({"name": "dim", "uri": "x"}),
     "mark external inputs here \"broadcast\": true"),
    (lambda j: j["stages"][0]["inputs"][0].update(row_groups=[0]), "row_groups works only with format 'parquet'"),
    (lambda j: j["stages"][0].update(split={"bytes_per_task": "lots"}), '"lots" is not valid: A byte count'),
    (lambda j: j["stages"][0].update(schema={"word": "varchar"}), "'varchar' is not a type babelmr knows"),
    (lambda j: j["stages"][0].update(schema={"t": "timestamp[us, tz=Mars/Base]"}),
     "$.stages[0].schema.t: unknown time zone 'Mars/Base'"),
    (lambda j: j["stages"][0].update(schema={"m": "decimal128(40,2)"}), "$.stages[0].schema.m: 'decimal128(40,2)'"),
    (lambda j: j["stages"][1].update(split={"files_per_task": 2}), "$.stages[1].split: 'split' applies to"),
    (lambda j: j.pop("stages"), "$: missing required field 'stages': add it"),
    (lambda j: j["stages"][0].update(timeout="10"), "$.stages[0].timeout: expected number, got str"),
])
def test_each_rule_has_a_message(change, expected: str) -> None:
    job = json.loads(json.dumps(GOOD))
    change(job)
    assert any(expected in p for p in validate_job_data(job)), validate_job_data(job)


def test_unreadable_job_files(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="file not found"):
        load_job(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",\n "stages": [}')
    with pytest.raises(JobFileError, match=r"line 2, column 13: not valid JSON"):
        load_job(str(broken))


def test_schema_is_valid_draft_2020_12() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(job_schema())
    assert set(job_schema()["$defs"]["stage"]["properties"]) >= {
        "name", "command", "mode", "inputs", "split", "program_format", "key", "partitions", "schema",
        "timeout", "retries", "concurrency"}


def test_example_job_files_are_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    jobs = sorted(root.glob("examples-*/*/job.json"))
    assert jobs, "no example job files found"
    for path in jobs:
        assert validate_job_data(json.loads(path.read_text())) == [], path


def _job_text(tmp_path: Path, text: str | bytes) -> Path:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "job.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _validate(path: Path) -> tuple[int, str]:
    """``babelmr validate`` in-process: exit code and stderr; never an exception or a traceback."""
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr, result.stderr
    return result.exit_code, result.stderr


def _with(path: tuple, value_text: str) -> str:
    """GOOD as JSON text with the value at ``path`` replaced by raw JSON text (which may be NaN, 1e400, ...)."""
    job = json.loads(json.dumps(GOOD))
    target = job
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = "__here__"
    return json.dumps(job).replace('"__here__"', value_text)


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("stages", 0, "partitions"), '"four"', '$.stages[0].partitions: expected integer, got str "four"'),
    (("stages", 0, "partitions"), '"4"', 'partitions: expected integer, got str "4": write 4 without quotes'),
    (("stages", 0, "partitions"), '{"n": 4}', "$.stages[0].partitions: expected integer, got dict"),
    (("stages", 0, "partitions"), "[4]", "$.stages[0].partitions: expected integer, got list"),
    (("stages", 0, "partitions"), "4.0", "$.stages[0].partitions: expected integer, got float 4.0: write 4"),
    (("stages", 0, "retries"), "1e0", "$.stages[0].retries: expected integer, got float 1.0: write 1"),
    (("stages", 0, "split", "bytes_per_task"), "1e8", "$.stages[0].split.bytes_per_task: 100000000.0 is not valid"),
    (("stages", 0, "partitions"), "NaN", "$.stages[0].partitions: NaN is not a number in JSON"),
    (("stages", 0, "timeout"), "Infinity", "$.stages[0].timeout: Infinity is not a number in JSON"),
    (("stages", 0, "timeout"), "-Infinity", "$.stages[0].timeout: -Infinity is not a number in JSON"),
    (("stages", 0, "timeout"), "1e400", "$.stages[0].timeout: 1e400 is too large for a number"),
    (("stages", 0, "timeout"), "1e300", "$.stages[0].timeout: 1e+300 is greater than the maximum"),
    (("stages", 0, "partitions"), "9" * 5000, "$.stages[0].partitions: 9999"),
    (("stages", 0, "concurrency"), "9" * 18, "$.stages[0].concurrency: 999999999999999999 is greater than"),
    (("stages", 0, "memory"), '"99999999999999999999999TB"', '$.stages[0].memory: "99999999999999999999999TB" is'),
    (("stages", 0, "memory"), '"' + "9" * 400 + 'B"', "$.stages[0].memory: \"999999"),
    (("stages", 0, "memory"), '"0MB"', '$.stages[0].memory: "0MB" is 0 bytes: give a size from 1 byte to 1 PiB'),
    (("stages", 0, "schema", "count"), '"decimal128(99,2)"', "$.stages[0].schema.count: 'decimal128(99,2)': "
                                                             "decimal128 needs a precision from 1 to 38"),
    (("stages", 1, "inputs", 0, "stage"), '["map"]', "$.stages[1].inputs[0].stage: expected string, got list"),
    (("stages", 1, "name"), '{"a": 1}', "$.stages[1].name: expected string, got dict"),
    (("stages", 0, "command"), '"python3 \'x"', "$.stages[0].command: cannot be split like a shell would (No clos"),
    (("stages", 0, "command"), '" "', "$.stages[0].command: is blank"),
    (("stages", 0, "inputs", 0, "uri"), '"da\\u0000ta"', "$.stages[0].inputs[0].uri: contains a NUL character"),
    (("stages", 0, "env"), '{"A": "x\\u0000"}', "$.stages[0].env.A: contains a NUL character"),
    (("stages", 0, "key"), "[" * 30 + "]" * 30, "$.stages[0].key[0][0][0]"),
    (("stages", 0, "key"), "[" * 100_000 + "]" * 100_000, "$: nested too deeply to read"),
], ids=lambda v: v[:24] if isinstance(v, str) else None)
def test_wrong_types_and_numbers_name_the_path_without_crashing(tmp_path: Path, path: tuple, value: str,
                                                                expected: str) -> None:
    code, err = _validate(_job_text(tmp_path, _with(path, value)))
    assert code == 1 and expected in err, err


@pytest.mark.parametrize(("path", "value"), [
    (("name",), "wc\n"), (("stages", 0, "name"), "map\n"), (("stages", 0, "inputs", 0, "name"), "text\n"),
    (("stages", 0, "env"), {"HOME\n": "x"}), (("stages", 0, "schema", "word"), "string\n"),
    (("stages", 0, "inputs", 0, "csv"), {"schema": {"a": "int64\n"}}),
])
def test_names_ending_in_a_line_break_are_refused(path: tuple, value: object) -> None:
    job = json.loads(json.dumps(GOOD))
    target = job
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    problems = validate_job_data(job)
    assert sum("it ends in a line break: remove it" in p for p in problems) == 1, problems


def test_unreadable_job_files_give_one_message_each(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading used to wait for a writer forever
    (tmp_path / "folder").mkdir()
    cases = {
        tmp_path / "loop": "cannot open it: Too many levels of symbolic links",
        tmp_path / "fifo": "is not a regular file (a pipe, socket or device)",
        tmp_path / "folder": "is a folder: give the path of the job's JSON file",
        _job_text(tmp_path / "a", b""): "$: the file is empty",
        _job_text(tmp_path / "b", b"{\"name\": \"\xff\"}"): "$: not a UTF-8 text file (byte 0xff at offset 10)",
        _job_text(tmp_path / "c", "[]"): "$: expected object, got list []",
    }
    for path, expected in cases.items():
        code, err = _validate(path)
        assert code == 1 and expected in err, (path, err)
    bom = _job_text(tmp_path / "d", b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert load_job(str(bom)).name == "wc"  # editors on Windows write a byte order mark: accept it


def _join(left: dict, right: dict) -> dict:
    stage = {"command": "x", "inputs": [{"name": "i", "uri": "d"}]}
    return {"name": "join", "stages": [
        {**stage, "name": "left", **left}, {**stage, "name": "right", **right},
        {"name": "joined", "command": "x",
         "inputs": [{"name": "l", "stage": "left"}, {"name": "r", "stage": "right"}]}]}


@pytest.mark.parametrize(("left", "right", "expected"), [
    ({"key": ["a"], "partitions": 4}, {"key": ["b"], "partitions": 4}, "partitioned by different keys"),
    ({"key": ["a", "b"], "partitions": 4}, {"key": ["b", "a"], "partitions": 4}, "partitioned by different keys"),
    ({"key": ["a"], "partitions": 4}, {"key": ["a", "b"], "partitions": 4}, "partitioned by different keys"),
    ({"key": ["a"], "partitions": 4}, {"key": ["a"], "partitions": 3}, "partitioned differently"),
    ({"key": ["a"], "partitions": 4}, {}, "an unpartitioned stage has only partition 0"),
    ({"key": ["a"], "partitions": 4}, {"key": ["a"]}, "an unpartitioned stage has only partition 0"),
])
def test_joining_stages_partitioned_differently_is_refused(left: dict, right: dict, expected: str) -> None:
    problems = validate_job_data(_join(left, right))
    assert len(problems) == 1 and problems[0].startswith("$.stages[2].inputs: ") and expected in problems[0]
    assert "partition both stages by the same key columns (rename the join columns alike" in problems[0]


@pytest.mark.parametrize(("left", "right"), [
    ({"key": ["a", "b"], "partitions": 4}, {"key": ["a", "b"], "partitions": 4}),
    ({"key": ["a"]}, {"key": ["b"]}),  # one partition each: one task reads both sides whole
    ({}, {}),
])
def test_joining_stages_partitioned_alike_is_valid(left: dict, right: dict) -> None:
    assert validate_job_data(_join(left, right)) == []


def _readers(job: dict, *sorts: list) -> dict:
    """``job`` with more stages reading its map stage, each sorting as given."""
    for i, sort in enumerate(sorts):
        job["stages"].append({"name": f"more{i}", "command": "x", "inputs": [{"name": "m", "stage": "map"}],
                              "sort": sort})
    return job


@pytest.mark.parametrize(("change", "expected"), [
    (lambda j: j["stages"][0].update(partitioner="range", partitions=1, key=None) or j["stages"][0].pop("key"),
     "$.stages[0].partitioner: partitioner 'range' places rows by their key: give the stage a 'key'"),
    (lambda j: j["stages"][0].update(partitioner="salted", partitions=1) or j["stages"][0].pop("key"),
     "$.stages[0].partitioner: partitioner 'salted' places rows by their key"),
    (lambda j: j["stages"][0].update(partitioner="fancy"),
     "$.stages[0].partitioner: 'fancy' is not allowed: use one of 'hash', 'range', 'salted', 'random'"),
    (lambda j: j["stages"][0].update(partitioner="Range"), "$.stages[0].partitioner: 'Range' is not allowed"),
    (lambda j: j["stages"][0].update(salts=2), "$.stages[0].salts: 'salts' applies to partitioner 'salted' (this "
                                               "stage's is 'hash')"),
    (lambda j: j["stages"][0].update(partitioner="random", salts=2), "$.stages[0].salts: 'salts' applies to "
                                                                     "partitioner 'salted'"),
    (lambda j: j["stages"][0].update(partitioner="salted", salts=9),
     "$.stages[0].salts: 9 salts exceed the stage's 4 partition(s)"),
    (lambda j: j["stages"][0].update(partitioner="salted", salts=0), "$.stages[0].salts: 0 is less than the minimum"),
    (lambda j: j["stages"][0].update(partitioner="salted") or j["stages"][1].update(sort=["count"]),
     "$.stages[1].sort: stage 'map' spreads each key over several partitions (partitioner 'salted'), so no task "
     "gets a whole group"),
    (lambda j: j["stages"][0].update(partitioner="random") or j["stages"][1].update(sort=["word"]),
     "$.stages[1].sort: stage 'map' spreads each key over several partitions (partitioner 'random')"),
    (lambda j: _readers(j, ["word"], [{"column": "word", "order": "desc"}])["stages"][0].update(partitioner="range"),
     "$.stages[3].sort: stage 'map' is range-partitioned and stages[2] sorts its key as (word asc nulls last), "
     "but this stage as (word desc nulls last)"),
    (lambda j: _readers(j, ["word"], [{"column": "word", "nulls": "first"}])["stages"][0].update(partitioner="range"),
     "but this stage as (word asc nulls first)"),
])
def test_each_partitioner_rule_names_the_stage_and_field(change, expected: str) -> None:
    job = json.loads(json.dumps(GOOD))
    change(job)
    problems = validate_job_data(job)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("change", [
    lambda j: j["stages"][0].update(partitioner="range"),
    lambda j: j["stages"][0].update(partitioner="salted", salts=4),
    lambda j: j["stages"][0].update(partitioner="random"),
    lambda j: j["stages"][0].update(partitioner="hash"),
    lambda j: _readers(j, ["word", "count"], [{"column": "count", "order": "desc"}])["stages"][0].update(
        partitioner="range"),  # the key sorted alike (ascending), the secondary columns differ: fine
])
def test_partitioners_used_as_meant_are_valid(tmp_path: Path, change) -> None:
    job = json.loads(json.dumps(GOOD))
    change(job)
    assert validate_job_data(job) == []
    stage = load_job(str(write_job(tmp_path, job))).stages[0]
    assert stage.partitioner == job["stages"][0].get("partitioner", "hash")
    assert stage.salts == job["stages"][0].get("salts")


@pytest.mark.parametrize("how", ["range", "salted", "random"])
def test_joining_a_stage_not_hash_partitioned_is_refused(how: str) -> None:
    problems = validate_job_data(_join({"key": ["a"], "partitions": 4, "partitioner": how},
                                       {"key": ["a"], "partitions": 4}))
    assert len(problems) == 1 and problems[0].startswith("$.stages[2].inputs: "), problems
    assert f"'left' by partitioner {how!r}" in problems[0] and "with the 'hash' partitioner" in problems[0]
    one = validate_job_data(_join({"key": ["a"], "partitions": 1, "partitioner": how}, {"key": ["a"]}))
    assert one == []  # one partition each: one task reads both sides whole
