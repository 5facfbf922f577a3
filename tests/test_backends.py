"""What is particular to the container backends: Lambda throttling and large specs, memory limits,
and no container left behind when a run is interrupted."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber

from babelmr.backends.aws_lambda import LambdaBackend, function_name, lambda_client
from babelmr.spec import TaskSpec
from conftest import write_job

PROGRAM = "import os, shutil; shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])"


def _spec(**kw) -> TaskSpec:
    base = dict(run_id="r", job="j", stage="s", task=0, attempt=1, store="/tmp/none", inputs=[], command=["true"])
    return TaskSpec(**{**base, **kw})


def test_function_names_follow_the_image() -> None:
    assert function_name("babelmr-example-go-tpch-q1:latest") == "babelmr-example-go-tpch-q1"
    assert function_name("123.dkr.ecr.eu-west-1.amazonaws.com/team/wc:v2") == "wc"


def test_throttling_is_backed_off_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda's 429 cannot be provoked from the emulator, so Stubber injects it (a fault, not the proof)."""
    client = lambda_client("http://127.0.0.1:9")  # never contacted: the stubber answers
    backend = LambdaBackend(concurrency=1)
    monkeypatch.setattr(backend, "_client", lambda url: client)
    body = json.dumps({"status": "ok", "stage": "s", "task": 0, "attempt": 1, "stats": {"rows_out": 3}}).encode()
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)
        stub.add_response("invoke", {"StatusCode": 200, "Payload": io.BytesIO(body)})
        result = backend.run_task(_spec(image="wc:latest"))
        stub.assert_no_pending_responses()
    assert result.status == "ok" and result.stats.rows_out == 3


def test_function_errors_carry_the_log_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    client = lambda_client("http://127.0.0.1:9")
    backend = LambdaBackend(concurrency=1)
    monkeypatch.setattr(backend, "_client", lambda url: client)
    with Stubber(client) as stub:
        stub.add_response("invoke", {
            "StatusCode": 200, "FunctionError": "Unhandled",
            "Payload": io.BytesIO(b'{"errorMessage": "Task timed out after 900.00 seconds"}'),
            "LogResult": base64.b64encode(b"START RequestId\nsomething slow\n").decode()})
        result = backend.run_task(_spec())
    assert result.status == "error" and result.retryable
    assert "Task timed out after 900.00 seconds" in result.error and "something slow" in result.error


def _data(folder: Path) -> None:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"k": list(range(100)), "v": [1.0] * 100}), folder / "part.parquet")


@pytest.mark.docker
def test_a_spec_over_the_payload_limit_goes_through_the_store(base_image, tmp_path: Path) -> None:
    _data(tmp_path / "data")
    (tmp_path / "copy.py").write_text(PROGRAM)
    big = {f"BIG_{i}": "x" * 100_000 for i in range(3)}  # 300 KB of environment: over 256 KB
    job = write_job(tmp_path, {"name": "big", "stages": [{
        "name": "copy", "command": ["python3", "-c", PROGRAM], "env": big,
        "inputs": [{"name": "d", "uri": "data/*.parquet"}], "key": ["k"], "partitions": 2}]})
    proc = subprocess.run([sys.executable, "-m", "babelmr", "run", str(job), "--backend", "lambda", "--emulators",
                           "1", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    specs = list((tmp_path / ".babelmr" / "runs" / record["run_id"] / "specs").rglob("*.json"))
    assert specs, "the spec should have been written to the store"
    assert record["stages"][0]["rows_out"] == 100


@pytest.mark.docker
def test_memory_limit_kills_a_greedy_program_with_a_hint(base_image, tmp_path: Path) -> None:
    _data(tmp_path / "data")
    greedy = "b = bytearray(900 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    job = write_job(tmp_path, {"name": "greedy", "stages": [{
        "name": "eat", "command": ["python3", "-c", greedy], "memory": "300MB", "retries": 0,
        "inputs": [{"name": "d", "uri": "data/*.parquet"}]}]})
    proc = subprocess.run([sys.executable, "-m", "babelmr", "run", str(job), "--backend", "docker",
                           "--ephemeral-storage", "64MB"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "out of memory" in proc.stderr, proc.stderr


@pytest.mark.docker
def test_interrupting_a_docker_run_removes_its_containers(base_image, tmp_path: Path) -> None:
    _data(tmp_path / "data")
    job = write_job(tmp_path, {"name": "slow", "stages": [{
        "name": "sleep", "command": ["sleep", "60"], "inputs": [{"name": "d", "uri": "data/*.parquet"}]}]})
    proc = subprocess.Popen([sys.executable, "-m", "babelmr", "run", str(job), "--backend", "docker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = docker.from_env()
    runs = tmp_path / ".babelmr" / "runs"

    def ours() -> list:
        ids = [p.name for p in runs.iterdir()] if runs.exists() else []
        # the list call alone (containers.list() inspects each, failing on one removed meanwhile, e.g. the probe)
        return client.api.containers(all=True, filters={"label": f"babelmr.run={ids[0]}"}) if ids else []

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ours():
        time.sleep(0.2)
    assert ours(), "no task container started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)  # containers are removed at once; a loaded machine is slow to exit
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert ours() == []
