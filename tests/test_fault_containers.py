"""Fault matrix, containers: a killed task container fails only its attempt (the retry gives the exact rows);
Ctrl-C and SIGTERM remove every container; containers of a dead coordinator are removed by the next run;
task containers are hardened and keep the coordinator's AWS secrets out of their environment."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest

from babelmr.backends.containers import COORDINATOR_LABEL, LABEL, RUN_LABEL, coordinator_labels, remove_orphans
from babelmr.backends.docker import DockerBackend
from babelmr.coordinator.run import run_job
from babelmr.job import load_job
from babelmr.store import open_store
from babelmr.store.layout import task_log
from faults import checksum_uris, data_checksum
from scripted import make_job

pytestmark = pytest.mark.docker

SLOW_FIRST = ["sh", "-c",
              'if [ "$MR_TASK" = 0 ] && [ "$MR_ATTEMPT" = 1 ]; then sleep 30; fi; cp in.parquet out.parquet']


def task_of(container) -> int | None:
    """The task a task container runs, from the spec in its environment."""
    for entry in container.attrs["Config"]["Env"]:
        if entry.startswith("BABELMR_TASK_SPEC="):
            return json.loads(entry.partition("=")[2])["task"]
    return None


def containers_of(client: docker.DockerClient, run_id: str) -> list[dict]:
    """The run's containers, as one listing (containers removed meanwhile cannot make it fail)."""
    return client.api.containers(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def start_two_sleeping_tasks(client: docker.DockerClient, tmp_path: Path,
                             *args: str) -> tuple[Path, subprocess.Popen, str]:
    """Start `babelmr run ... -c 2 ARGS` on a job of two sleeping map tasks; (job, process, run id) once both run."""
    job = make_job(tmp_path, files=2, map_command=["sleep", "60"])
    proc = subprocess.Popen([sys.executable, "-m", "babelmr", "run", str(job), "-c", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    runs = tmp_path / ".babelmr" / "runs"
    deadline = time.monotonic() + 120
    run_id = ""
    while time.monotonic() < deadline:
        run_id = run_id or next((p.name for p in runs.iterdir()), "") if runs.exists() else ""
        if run_id and len(running(client, run_id)) == 2:
            return job, proc, run_id
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no task container started: {proc.communicate()}")


def running(client: docker.DockerClient, run_id: str) -> list:
    """The run's running containers, inspected (those gone meanwhile left out)."""
    found = []
    for c in containers_of(client, run_id):
        if c["State"] == "running":
            with contextlib.suppress(docker.errors.NotFound):
                found.append(client.containers.get(c["Id"]))
    return found


def test_a_killed_task_container_fails_only_its_attempt(base_image, tmp_path: Path) -> None:
    client = docker.from_env()
    job = load_job(str(make_job(tmp_path, files=2, map_command=SLOW_FIRST, map_options={"speculation": False})))
    killed: list[str] = []

    def kill_first() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for c in running(client, "ctr-killed"):
                if task_of(c) == 0:
                    c.kill()
                    killed.append(c.id)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_first)
    killer.start()
    with DockerBackend(concurrency=2) as backend:
        record = run_job(job, backend, run_id="ctr-killed")
    killer.join()
    assert killed
    attempts = {(a.task, a.attempt): a for a in record.stages[0].task_attempts}
    assert attempts[(0, 1)].status == "error" and attempts[(0, 2)].status == "ok"
    assert "PermissionError" not in record.to_json()
    assert record.output is not None and checksum_uris(record.output.files) == data_checksum(tmp_path)
    assert containers_of(client, "ctr-killed") == []


@pytest.mark.parametrize(("backend", "sig"), [
    ("docker", signal.SIGINT), ("docker", signal.SIGTERM), ("lambda", signal.SIGINT), ("lambda", signal.SIGTERM)])
def test_a_signal_removes_every_container(base_image, tmp_path: Path, backend: str, sig: signal.Signals) -> None:
    client = docker.from_env()
    options = ["--emulators", "2"] if backend == "lambda" else []
    _, proc, run_id = start_two_sleeping_tasks(client, tmp_path, "--backend", backend, *options)
    runs = tmp_path / ".babelmr" / "runs"
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert time.monotonic() - sent < 20, "stopping took too long"
    assert proc.returncode == 130, err
    assert json.loads((runs / run_id / "run.json").read_text())["status"] == "interrupted"
    assert containers_of(client, run_id) == []


def test_containers_of_a_dead_coordinator_are_removed(base_image) -> None:
    client = docker.from_env()
    dead = subprocess.Popen(["true"])
    dead.wait()
    labels = {LABEL: "1", RUN_LABEL: "orphaned-run", COORDINATOR_LABEL: f"{os.uname().nodename}:{dead.pid}:1"}
    orphan = client.containers.run("babelmr-base:latest", entrypoint=["sleep", "60"], labels=labels, detach=True)
    mine = client.containers.run("babelmr-base:latest", entrypoint=["sleep", "60"], detach=True,
                                 labels={LABEL: "1", RUN_LABEL: "live-run", **coordinator_labels()})
    try:
        removed = remove_orphans(client)
        assert orphan.id in removed and mine.id not in removed
        assert containers_of(client, "orphaned-run") == []
    finally:
        for c in (orphan, mine):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)


ENV_PROGRAM = ["sh", "-c", "sleep 2; env >&2; cp in.parquet out.parquet"]  # the sleep: time to inspect


@pytest.mark.s3
def test_task_containers_are_hardened_and_keep_secrets_private(base_image, s3_prefix: str, tmp_path: Path) -> None:
    client = docker.from_env()
    seen: list[dict] = []

    def inspect() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen:
            for c in running(client, "hardened"):
                seen.append(c.attrs)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=inspect)
    watcher.start()
    job = load_job(str(make_job(tmp_path, files=1, map_command=ENV_PROGRAM, store=s3_prefix)))
    with DockerBackend(concurrency=1) as backend:
        record = run_job(job, backend, run_id="hardened")
    watcher.join()
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    attrs = seen[0]
    assert secret not in json.dumps(attrs), "the secret key is visible to docker inspect"
    assert "AWS_SHARED_CREDENTIALS_FILE=/run/babelmr/aws-credentials" in attrs["Config"]["Env"]
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"] and host["PidsLimit"] == 1024
    program_env = open_store(s3_prefix).read_bytes(task_log("hardened", "map", 0, 1, "stderr")).decode()
    assert "AWS_REGION=" in program_env and secret not in program_env
    assert "AWS_SHARED_CREDENTIALS_FILE" not in program_env
    assert record.output is not None and checksum_uris(record.output.files) == data_checksum(tmp_path)


def test_a_backup_container_beats_a_straggler_and_the_loser_is_removed(base_image, tmp_path: Path) -> None:
    """A 120 s straggler: container start-up on a loaded machine makes the median of finished tasks several s."""
    straggler = [SLOW_FIRST[0], SLOW_FIRST[1], SLOW_FIRST[2].replace("sleep 30", "sleep 120")]
    job = load_job(str(make_job(tmp_path, files=4, map_command=straggler, map_options={"speculation": {
        "min_seconds": 1}})))
    with DockerBackend(concurrency=4) as backend:
        record = run_job(job, backend, run_id="ctr-spec")
    stage = record.stages[0]
    assert stage.speculation == {"backups": 1, "won": 1}
    assert stage.seconds < 90, "the 120 s straggler held the stage"
    slow = next(a for a in stage.task_attempts if a.task == 0 and a.attempt == 1)
    assert "stopped" in (slow.error or "")
    assert record.output is not None and checksum_uris(record.output.files) == data_checksum(tmp_path)
    assert containers_of(docker.from_env(), "ctr-spec") == []


def test_the_next_run_removes_the_containers_of_a_killed_coordinator(base_image, tmp_path: Path) -> None:
    """`babelmr run` SIGKILLed with task containers running; the next docker backend's prepare removes them."""
    client = docker.from_env()
    job, proc, run_id = start_two_sleeping_tasks(client, tmp_path, "--backend", "docker")
    proc.kill()
    proc.wait()
    assert len(running(client, run_id)) == 2, "SIGKILL cannot be handled: the containers outlive it"
    loaded = load_job(str(job))
    backend = DockerBackend(concurrency=1)
    backend.prepare(loaded, open_store(str(tmp_path / ".babelmr")), "next-run")
    backend.close()
    assert containers_of(client, run_id) == []
