"""The base image and ``babelmr image``: non-root, read-only root file system, a real task end to end
with the spec in the environment, and the Lambda mode invoked through AWS's Runtime Interface Emulator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import docker
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from docker.types import Mount

from babelmr.errors import ImageError
from babelmr.images import (
    BASE_TAG,
    SOURCE_LABEL,
    BuildReport,
    build_image,
    default_tag,
    dockerfile_bases,
    image_env,
    image_labels,
    source_hash,
)
from babelmr.spec import FileSlice, TaskInput, TaskSpec
from babelmr.store import layout
from babelmr.worker.__main__ import RESULT_MARKER
from docker_fixtures import build_job_image, container, remove_image

READ_ONLY = {"read_only": True, "tmpfs": {"/tmp": "rw,exec,size=512m"}}

COUNT_PY = """\
import os, sys
import pandas as pd

assert sys.argv[-1] == "map", sys.argv
if os.getuid() == 0:
    sys.exit("running as root")
words = pd.read_parquet(os.environ["MR_INPUT"])
counts = words.groupby("word").size().reset_index(name="count")
counts.to_parquet(os.environ["MR_OUTPUT"], index=False)
print("counted", len(words), "words in", os.getcwd())
"""

DOCKERFILE = f"""\
FROM {BASE_TAG}
COPY . /opt/job/
ENV MR_CMD="python3 /opt/job/count.py"
"""

WORDS = ["a", "b", "a", "c", "b", "a", "d"]


# --- without Docker --------------------------------------------------------------------------------

def test_missing_dockerfile_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no Dockerfile"):
        build_image(tmp_path)


def test_dockerfile_bases_and_default_tag(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM --platform=linux/amd64 golang:1.19 AS build\nRUN true\n"
                                         f"from {BASE_TAG}\nCOPY --from=build /x /x\n")
    assert dockerfile_bases(tmp_path / "Dockerfile") == ["golang:1.19", BASE_TAG]
    assert default_tag(tmp_path / "My Job") == "babelmr-my-job:latest"


def test_source_hash_follows_the_sources(tmp_path: Path) -> None:
    (tmp_path / "base-image").mkdir()
    (tmp_path / "engine" / "babelmr" / "__pycache__").mkdir(parents=True)
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / "base-image" / "entrypoint.sh").write_text("#!/bin/sh\n")
    (tmp_path / "engine" / "babelmr" / "a.py").write_text("x = 1\n")
    first = source_hash(tmp_path)
    (tmp_path / "engine" / "babelmr" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"cache")
    assert source_hash(tmp_path) == first
    (tmp_path / "engine" / "babelmr" / "a.py").write_text("x = 2\n")
    second = source_hash(tmp_path)
    assert second != first
    (tmp_path / "base-image" / "lib" / "go").mkdir(parents=True)  # the program helpers the image ships are sources too
    (tmp_path / "base-image" / "lib" / "go" / "babelmr.go").write_text("package babelmr\n")
    assert source_hash(tmp_path) != second


# --- the base image --------------------------------------------------------------------------------

@pytest.mark.docker
def test_base_image_settings(base_image: BuildReport) -> None:
    env = image_env(BASE_TAG)
    assert env["BABELMR_JOB_DIR"] == "/opt/job"
    assert env["MR_WORKDIR"] == "/tmp"
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/babelmr/venv/bin:")
    assert image_labels(BASE_TAG)[SOURCE_LABEL] == source_hash()
    assert base_image.size < 600e6, f"the base image grew to {base_image.size / 1e6:.0f} MB"


@pytest.mark.docker
def test_runs_as_non_root_on_a_read_only_root(docker_client: docker.DockerClient, base_image: BuildReport) -> None:
    script = ("id -u; python3 -c 'import pyarrow.parquet, pyarrow.dataset, pandas, fastparquet, awslambdaric, "
              "babelmr.worker.lambda_handler; print(\"imports ok\")'; touch /opt/x 2>/dev/null || echo read-only; "
              "test -x /usr/local/bin/aws-lambda-rie && echo rie; find /tmp -mindepth 1 | wc -l")
    with container(docker_client, BASE_TAG, entrypoint=["sh", "-c", script], **READ_ONLY) as c:
        assert c.wait(timeout=120)["StatusCode"] == 0, c.logs().decode()
        out = c.logs(stdout=True, stderr=False).decode().split()
        err = c.logs(stdout=False, stderr=True).decode()
    assert out[0] == "1000" and "read-only" in out and "rie" in out, out
    assert out[-1] == "0", "importing wrote files into /tmp"
    assert err == "", err


@pytest.mark.docker
def test_the_base_image_ships_the_program_helpers(docker_client: docker.DockerClient,
                                                  base_image: BuildReport) -> None:
    """Go's and C#'s helpers at /opt/babelmr/lib as in the checkout's base-image/lib/, Python's importable."""
    root = Path(__file__).resolve().parent.parent
    shipped = {"/opt/babelmr/lib/go/go.mod": "base-image/lib/go/go.mod",
               "/opt/babelmr/lib/go/babelmr.go": "base-image/lib/go/babelmr.go",
               "/opt/babelmr/lib/csharp/Babelmr.cs": "base-image/lib/csharp/Babelmr.cs"}
    for path, source in shipped.items():
        with container(docker_client, BASE_TAG, entrypoint=["cat", path], **READ_ONLY) as c:
            assert c.wait(timeout=120)["StatusCode"] == 0, c.logs().decode()
            assert c.logs(stdout=True, stderr=False).decode() == (root / source).read_text(), path
    script = ["python3", "-c", "from babelmr import helper; print(helper.__file__)"]
    with container(docker_client, BASE_TAG, entrypoint=script, **READ_ONLY) as c:
        assert c.wait(timeout=120)["StatusCode"] == 0, c.logs().decode()


@pytest.mark.docker
def test_worker_needs_a_spec(docker_client: docker.DockerClient, base_image: BuildReport) -> None:
    with container(docker_client, BASE_TAG, **READ_ONLY) as c:
        assert c.wait(timeout=120)["StatusCode"] == 2
        assert "BABELMR_TASK_SPEC" in c.logs().decode()


# --- a job image: a task end to end ----------------------------------------------------------------

@pytest.fixture(scope="module")
def job_image(docker_client: docker.DockerClient, base_image: BuildReport,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tiny job image FROM the base (a pandas word count), built with ``babelmr image build``."""
    tag = f"babelmr-test-count-{uuid.uuid4().hex[:8]}:latest"
    seconds = build_job_image(tmp_path_factory.mktemp("job"), tag, {"Dockerfile": DOCKERFILE, "count.py": COUNT_PY})
    print(f"\nbuilt {tag} in {seconds:.1f} s")
    try:
        yield tag
    finally:
        remove_image(docker_client, tag)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder mounted into containers at the same path, writable by the image's user; holds input and store."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    pq.write_table(pa.table({"word": WORDS}), folder / "words.parquet")
    return folder


def word_count_spec(shared: Path, command: list[str] | None) -> TaskSpec:
    """A map task that counts words into 2 partitions, committed to a local store in ``shared``."""
    source = shared / "words.parquet"
    return TaskSpec(run_id=f"r{uuid.uuid4().hex[:8]}", job="count", stage="map", task=0, attempt=1,
                    store=str(shared / "store"), mode="map", command=command, key=["word"], partitions=2,
                    job_dir="/not/in/the/image",
                    inputs=[TaskInput(name="words", kind="files", format="parquet", source=str(source),
                                      files=[FileSlice(uri=str(source), size=source.stat().st_size)])])


def check_committed(spec: TaskSpec, result: dict) -> None:
    """The commit record exists and its file holds the word counts in 2 partitions (row groups)."""
    assert result["status"] == "ok", result.get("error")
    record = json.loads(Path(spec.store, layout.commit_record(spec.run_id, spec.stage, spec.task)).read_text())
    assert record["file"] == result["commit"]["file"]
    data = pq.ParquetFile(Path(spec.store, record["file"]))
    assert data.num_row_groups == 2
    counts = dict(zip(*data.read().select(["word", "count"]).to_pydict().values(), strict=True))
    assert counts == {w: WORDS.count(w) for w in set(WORDS)}
    assert sum(record["partition_rows"]) == len(counts)


@pytest.mark.docker
def test_task_in_a_read_only_container(docker_client: docker.DockerClient, job_image: str, shared: Path) -> None:
    spec = word_count_spec(shared, ["python3", "{job_dir}/count.py"])
    with container(docker_client, job_image, environment={"BABELMR_TASK_SPEC": spec.to_json()},
                   mounts=[Mount(str(shared), str(shared), type="bind")], network_disabled=True, **READ_ONLY) as c:
        code = c.wait(timeout=300)["StatusCode"]
        stdout = c.logs(stdout=True, stderr=False).decode()
        logs = c.logs().decode()
    assert code == 0, logs
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(RESULT_MARKER), stdout
    check_committed(spec, json.loads(last.removeprefix(RESULT_MARKER)))
    log = Path(spec.store, layout.task_log(spec.run_id, "map", 0, 1, "stdout")).read_text()
    assert "counted 7 words in /tmp" in log


def invoke(port: str, payload: dict, deadline: float = 60.0) -> dict:
    """Invoke the emulator like Lambda (boto3), retrying while it starts up."""
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=botocore.config.Config(retries={"max_attempts": 0}, connect_timeout=5,
                                                        read_timeout=300))
    give_up = time.monotonic() + deadline
    while True:
        try:
            return client.invoke(FunctionName="function", Payload=json.dumps(payload).encode())
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
            if time.monotonic() > give_up:
                raise
            time.sleep(0.3)


@pytest.mark.docker
def test_lambda_mode_through_the_emulator(docker_client: docker.DockerClient, job_image: str, shared: Path) -> None:
    assert image_env(job_image)["MR_CMD"] == "python3 /opt/job/count.py"
    spec = word_count_spec(shared, None)  # no command: the image's MR_CMD
    with container(docker_client, job_image, environment={"BABELMR_LAMBDA_EMULATOR": "1"},
                   ports={"8080/tcp": ("127.0.0.1", None)}, mounts=[Mount(str(shared), str(shared), type="bind")],
                   **READ_ONLY) as c:
        c.reload()
        port = c.ports["8080/tcp"][0]["HostPort"]
        response = invoke(port, {"spec": json.loads(spec.to_json())})
        give_up = time.monotonic() + 10
        while "REPORT RequestId" not in (logs := c.logs().decode()) and time.monotonic() < give_up:
            time.sleep(0.2)
    assert response["StatusCode"] == 200, logs
    assert "FunctionError" not in response, response["Payload"].read()
    check_committed(spec, json.loads(response["Payload"].read()))
    assert "REPORT RequestId" in logs
