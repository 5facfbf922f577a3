"""Job files: schema, validation messages with JSON paths, resolution of paths and defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
