"""Fault matrix, local workers: a worker process SIGKILLed mid-task fails only that attempt; the retry gives the
exact rows of a clean run; the killed attempt's program does not survive it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from babelmr.backends.local import LocalBackend
from babelmr.coordinator.run import run_job
from babelmr.job import load_job
from babelmr.spec import TaskSpec
from babelmr.worker.task import program_env
from faults import checksum, data_checksum, leftover_processes, run_processes
from scripted import make_job

# Every first attempt sleeps long enough for the others to be running when task 0's worker is killed.
SLOW_FIRST = ["sh", "-c", 'if [ "$MR_ATTEMPT" = 1 ]; then sleep 4; fi; cp in.parquet out.parquet']


def _kill_worker_of_task(run_id: str, task: int, killed: list[int]) -> None:
    """Wait for task ``task``'s program, then SIGKILL the worker process that started it (its grandparent)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in run_processes(run_id):
            try:
                if p.name() == "sleep" and p.environ().get("MR_TASK") == str(task):
                    worker = p.parent().parent()  # sleep <- sh -c <- worker
                    killed.extend([worker.pid, p.pid])
                    worker.kill()
                    return
            except psutil.Error:
                continue
        time.sleep(0.05)


def test_a_killed_worker_fails_only_its_own_attempt(tmp_path: Path) -> None:
    job = load_job(str(make_job(tmp_path, files=3, map_command=SLOW_FIRST, map_options={"speculation": False})))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_worker_of_task, args=("worker-killed", 0, killed))
    killer.start()
    with LocalBackend(concurrency=3) as backend:
        record = run_job(job, backend, run_id="worker-killed")
    killer.join()
    assert killed, "the worker was never found"
    attempts = {(a.task, a.attempt): a for a in record.stages[0].task_attempts}
    assert "the worker process died (killed by SIGKILL" in (attempts[(0, 1)].error or "")
    assert attempts[(0, 2)].status == "ok"
    assert all(attempts[(t, 1)].status == "ok" for t in (1, 2)), "the other workers' attempts must not fail"
    assert record.stages[0].retries == 1 and record.output is not None
    assert checksum(record.output.files) == data_checksum(tmp_path)
    assert not psutil.pid_exists(killed[1]) or psutil.Process(killed[1]).status() == psutil.STATUS_ZOMBIE, \
        "the killed attempt's program survived it"
    assert leftover_processes("worker-killed") == []


def _spec(env: dict[str, str]) -> TaskSpec:
    return TaskSpec(run_id="r", job="j", stage="s", task=0, attempt=1, store="/tmp/x", inputs=[], command=["true"],
                    env=env)


def test_the_program_gets_no_aws_secrets_unless_the_job_asks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "tok",
               "AWS_SHARED_CREDENTIALS_FILE": "/run/babelmr/aws-credentials"}
    for k, v in {**secrets, "AWS_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    env = program_env(_spec({}), str(tmp_path), {}, "out.parquet")
    assert env["AWS_REGION"] == "eu-west-1" and not set(secrets) & set(env)
    asked = program_env(_spec({"BABELMR_PROGRAM_AWS_CREDENTIALS": "1"}), str(tmp_path), {}, "out.parquet")
    assert {k: asked[k] for k in secrets} == secrets
    named = program_env(_spec({"AWS_ACCESS_KEY_ID": "other"}), str(tmp_path), {}, "out.parquet")
    assert named["AWS_ACCESS_KEY_ID"] == "other" and "AWS_SECRET_ACCESS_KEY" not in named


def test_a_backend_reused_for_another_run_keeps_its_workers(tmp_path: Path) -> None:
    """Runs on one backend share its workers: a second run neither adds workers nor waits for new ones, and a
    worker that died between runs is replaced (the same rows each time)."""
    job = load_job(str(make_job(tmp_path, files=3)))
    with LocalBackend(concurrency=2) as backend:
        backend.start()
        first = {w.process.pid for w in backend._idle}
        assert len(first) == 2 and all(w.ready for w in backend._idle), "start() returns once the workers are ready"
        sums = []
        for run in range(3):
            record = run_job(job, backend, run_id=f"reused-{run}")
            assert record.output is not None
            sums.append(checksum(record.output.files))
            assert len(backend._idle) == 2, "every run would start 2 more workers"
            if run == 0:
                assert {w.process.pid for w in backend._idle} == first
                backend._idle[0].process.kill()
                backend._idle[0].process.join()
    assert sums == [data_checksum(tmp_path)] * 3
