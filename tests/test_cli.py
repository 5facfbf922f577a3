"""The commands around a run: --json, runs, show, cat, schema, and --help everywhere."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from babelmr.cli import main
from babelmr.store.s3 import reset_clients
from conftest import BUCKET, write_job

PROGRAM = ("import os, pyarrow.parquet as pq, pyarrow.compute as pc;"
           "t = pq.read_table(os.environ['MR_INPUT']);"
           "pq.write_table(t.group_by('k').aggregate([('v', 'sum')]), os.environ['MR_OUTPUT'])")


@pytest.fixture
def finished_run(tmp_path: Path) -> tuple[Path, dict]:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"k": ["a", "b", "c"] * 10, "v": list(range(30))}), data / f"p{i}.parquet")
    job = write_job(tmp_path, {"name": "sums", "stages": [
        {"name": "map", "command": [sys.executable, "-c", PROGRAM], "inputs": [{"name": "d", "uri": "data"}],
         "split": {"files_per_task": 1},
         "key": ["k"], "partitions": 2},
        {"name": "reduce", "command": [sys.executable, "-c", PROGRAM.replace("'v', 'sum'", "'v_sum', 'sum'")],
         "inputs": [{"name": "p", "stage": "map"}]}]})
    result = CliRunner().invoke(main, ["run", str(job), "--json"])
    assert result.exit_code == 0, result.stderr
    return tmp_path, json.loads(result.stdout)


def test_run_json_is_the_run_record(finished_run: tuple[Path, dict]) -> None:
    folder, record = finished_run
    assert record["status"] == "succeeded" and record["backend"] == "local"
    assert [s["name"] for s in record["stages"]] == ["map", "reduce"]
    assert record["stages"][0]["inputs"]["d"] == sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    assert record["stages"][0]["tasks"] == 3 and record["stages"][1]["tasks"] == 2
    assert record["stages"][1]["rows_out"] == 3
    stored = json.loads((folder / ".babelmr" / "runs" / record["run_id"] / "run.json").read_text())
    assert stored["output"] == record["output"]


def test_runs_and_show(finished_run: tuple[Path, dict]) -> None:
    folder, record = finished_run
    store = str(folder / ".babelmr")
    listed = CliRunner().invoke(main, ["runs", "--store", store])
    assert listed.exit_code == 0 and record["run_id"] in listed.stdout and "succeeded" in listed.stdout
    shown = CliRunner().invoke(main, ["show", record["run_id"][:-2], "--store", store])  # a unique prefix works
    assert shown.exit_code == 0
    assert "reduce" in shown.stdout and record["output"]["files"][0] in shown.stdout
    as_json = CliRunner().invoke(main, ["show", record["run_id"], "--store", store, "--json"])
    assert json.loads(as_json.stdout)["run_id"] == record["run_id"]
    missing = CliRunner().invoke(main, ["show", "nope", "--store", store])
    assert missing.exit_code == 1 and "no run named 'nope'" in missing.stderr


def test_cat_prints_the_result(finished_run: tuple[Path, dict]) -> None:
    _, record = finished_run
    files = record["output"]["files"]
    as_csv = CliRunner().invoke(main, ["cat", "--csv", *files])
    assert as_csv.exit_code == 0
    rows = sorted(as_csv.stdout.strip().splitlines()[1:])
    assert rows == ['"a",405', '"b",435', '"c",465']  # 3 files x (0+3+...+27, 1+4+...+28, 2+5+...+29)
    table = CliRunner().invoke(main, ["cat", *files])
    assert "v_sum_sum" in table.stdout and "3 rows" in table.stdout
    nothing = CliRunner().invoke(main, ["cat", "/no/such/*.parquet"])
    assert nothing.exit_code == 1 and "matches no files" in nothing.stderr


def test_schema_and_help() -> None:
    schema = CliRunner().invoke(main, ["schema"])
    assert json.loads(schema.stdout)["title"] == "babelmr job"
    for command in ([], ["run"], ["validate"], ["schema"], ["cat"], ["runs"], ["show"], ["image"], ["deploy"],
                    ["policy"]):
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.stdout, command


@pytest.mark.parametrize("content", [b"k,v\n1,2\n", b"", b"PAR1 truncated"], ids=["csv", "empty", "corrupt"])
def test_cat_on_a_file_that_is_not_parquet_names_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    for args in ([str(path)], ["--csv", str(path)]):
        result = CliRunner().invoke(main, ["cat", *args])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)
        assert f"cannot read {path} as Parquet" in result.stderr and "Traceback" not in result.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed: connections are refused


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    """Change the AWS environment for one test; S3 clients are rebuilt before and after it."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # one attempt: a refused connection fails at once
    reset_clients()
    yield monkeypatch
    reset_clients()


@pytest.mark.s3
@pytest.mark.parametrize(("change", "bucket", "expected"), [
    ({"AWS_SECRET_ACCESS_KEY": "wrong"}, BUCKET, "access denied by http://"),
    ({}, "no-such-bucket", "the bucket does not exist: create it"),
    ({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:{port}"}, BUCKET, "cannot reach S3 at http://127.0.0.1:"),
    ({"AWS_ENDPOINT_URL_S3": "http://[bad"}, BUCKET, "AWS_ENDPOINT_URL_S3='http://[bad' is not an S3 endpoint URL"),
    ({"AWS_ENDPOINT_URL_S3": "localhost:8333"}, BUCKET, "is not an S3 endpoint URL (it needs http:// or https://"),
], ids=["wrong-secret", "missing-bucket", "closed-port", "malformed-endpoint", "endpoint-without-scheme"])
def test_s3_misconfiguration_names_the_store_cause_and_fix(tmp_path: Path, s3_env: pytest.MonkeyPatch,
                                                           change: dict, bucket: str, expected: str) -> None:
    for name, value in change.items():
        s3_env.setenv(name, value.format(port=_closed_port()))
    store = f"s3://{bucket}/cli"
    job = write_job(tmp_path, {"name": "s3", "store": store, "stages": [
        {"name": "map", "command": "true", "inputs": [{"name": "d", "uri": str(tmp_path)}]}]})
    for command in (["run", str(job)], ["runs", "--store", store], ["show", "x", "--store", store],
                    ["cat", f"{store}/a.parquet"]):
        start = time.perf_counter()
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (command, repr(result.exception))
        assert expected in result.stderr and "Traceback" not in result.stderr, (command, result.stderr)
        if "no-such-bucket" in store or "SECRET" in str(change) or "{port}" in str(change):
            assert f"s3://{bucket}" in result.stderr, (command, result.stderr)  # names the store or bucket
        assert time.perf_counter() - start < 10, command
