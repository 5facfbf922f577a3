"""Fault matrix, S3: the real SeaweedFS server is killed mid-stage. Restarted on the same ports within the retry
budget, the job gives the exact rows of a clean run; kept down, the run stops with a clear error and no traceback."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from babelmr.backends.local import LocalBackend
from babelmr.coordinator.run import run_job
from babelmr.errors import BabelMRError
from babelmr.job import load_job
from babelmr.store.s3 import reset_clients
from faults import checksum_uris, data_checksum, leftover_processes, run_processes
from s3server import SeaweedS3
from scripted import make_job

pytestmark = pytest.mark.s3

# First attempts wait, so that the server dies while every task is between import and export.
WAIT_FIRST = ["sh", "-c", 'if [ "$MR_ATTEMPT" = 1 ]; then sleep 2; fi; cp in.parquet out.parquet']


@pytest.fixture
def own_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedS3]:
    """A SeaweedFS server of this test alone (the session's one must not die), in the AWS environment."""
    with SeaweedS3() as server:
        server.create_bucket("fault")
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(k)
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        reset_clients()
        yield server
    reset_clients()


def kill_server(server: SeaweedS3) -> list[str]:
    """SIGKILL the server's process group; returns its command line (with its ports) to restart it."""
    cmd = shlex.split(server._cmdline)
    server._kill(grace=0)
    return cmd


def restart_server(server: SeaweedS3, cmd: list[str]) -> None:
    """Start the server again on the same ports and data folder, and wait until it answers."""
    assert server.log_path is not None
    server._log_file = server.log_path.open("ab")
    server._log_offset = server._log_file.tell()
    server._proc = subprocess.Popen(cmd, cwd=server.data_dir, stdin=subprocess.DEVNULL, stdout=server._log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    server._wait_until_ready(time.monotonic())


def when_programs_run(run_id: str, count: int, action) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(p.name() == "sleep" for p in run_processes(run_id)) >= count:
                action()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_an_outage_within_the_retry_budget_is_ridden_out(own_server: SeaweedS3, tmp_path: Path) -> None:
    job = load_job(str(make_job(tmp_path, files=3, map_command=WAIT_FIRST, retries=0, store="s3://fault/ok",
                                map_options={"speculation": False})))
    down: list[float] = []

    def outage() -> None:
        cmd = kill_server(own_server)
        start = time.monotonic()
        time.sleep(3)  # the programs finish while the store is down: their export and commit hit the outage
        restart_server(own_server, cmd)
        down.append(time.monotonic() - start)

    watcher = when_programs_run("s3-outage", 3, outage)
    with LocalBackend(concurrency=3) as backend:
        record = run_job(job, backend, run_id="s3-outage")
    watcher.join()
    assert down, "the server was never killed"
    assert record.status == "succeeded" and record.output is not None
    assert all(a.status == "ok" for s in record.stages for a in s.task_attempts), "retries: 0"
    assert checksum_uris(record.output.files) == data_checksum(tmp_path)
    assert leftover_processes("s3-outage") == []


def test_a_store_that_stays_down_stops_the_run_with_a_clear_error(own_server: SeaweedS3, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # a small budget keeps the test short
    reset_clients()
    job = load_job(str(make_job(tmp_path, files=2, map_command=WAIT_FIRST, retries=1, store="s3://fault/down",
                                map_options={"speculation": False})))
    watcher = when_programs_run("s3-down", 2, lambda: kill_server(own_server))
    with pytest.raises(BabelMRError) as failed, LocalBackend(concurrency=2) as backend:
        run_job(job, backend, run_id="s3-down")
    watcher.join()
    message = str(failed.value)
    assert "stage 'map'" in message and "attempt" in message
    assert "store s3://fault/down" in message or "Connection refused" in message or "NETWORK" in message, message
    assert "Traceback" not in message
    assert leftover_processes("s3-down") == []
