"""Fault matrix, resume and detach rows (docs/fault-tolerance.md): a coordinator SIGKILLed mid-stage and
resumed, a resume refused over changed inputs, `run --detach` with `logs --follow`, `wait` and `stop`.
Real processes throughout: `babelmr` runs as a subprocess of this worktree's sources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import babelmr as babelmr_api
from babelmr.cli import main
from babelmr.spec import Fingerprint, LiveState, RunRecord
from babelmr.store import open_store

ENGINE = str(Path(__file__).resolve().parents[1] / "engine")

# Appends "stage task attempt" to $COUNT for every invocation; map tasks >= $SLOW_FROM wait until $RELEASE exists
# (at most 30 s), so a test can kill the coordinator while they run.
PROGRAM = """
echo "$MR_STAGE $MR_TASK $MR_ATTEMPT" >> "$COUNT"
echo "hello from $MR_STAGE task $MR_TASK" >&2
if [ "$MR_STAGE" = map ] && [ "$MR_TASK" -ge "$SLOW_FROM" ]; then
  i=0; while [ ! -e "$RELEASE" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
fi
cp in.parquet out.parquet
"""


def write_job(folder: Path, *, files: int = 4, slow_from: int = 99, seed: int = 0,
              map_extra: dict[str, Any] | None = None) -> Path:
    """Generated input (string keys with NULLs, skewed) and a three-stage job: map -> reduce -> final."""
    rng = np.random.default_rng(seed)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        keys = rng.zipf(1.5, 300) % 40
        pq.write_table(pa.table({"k": pa.array([None if x == 0 else f"k{x}" for x in keys], pa.string()),
                                 "v": pa.array(rng.integers(-99, 99, 300), pa.int64())}), data / f"p{f}.parquet")
    (folder / "prog.sh").write_text(PROGRAM)
    command = ["sh", str(folder / "prog.sh")]
    job = {"name": "resumable", "store": "store",
           "env": {"COUNT": str(folder / "count.txt"), "RELEASE": str(folder / "release"), "SLOW_FROM": str(slow_from)},
           "stages": [
               {"name": "map", "command": command, "inputs": [{"name": "d", "uri": "data/*.parquet"}],
                "split": {"files_per_task": 1}, "key": ["k"], "partitions": 3, "retries": 0, **(map_extra or {})},
               {"name": "reduce", "command": command, "inputs": [{"name": "p", "stage": "map"}], "key": ["k"],
                "partitions": 2},
               {"name": "final", "command": command, "inputs": [{"name": "p", "stage": "reduce"}]}]}
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    return path


def babelmr(*args: str, check: int | None = 0, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the babelmr command of this worktree in a process of its own."""
    env = {**os.environ, "PYTHONPATH": ENGINE}
    proc = subprocess.run([sys.executable, "-m", "babelmr", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def cli(*args: str, check: int | None = 0) -> Result:
    """Run a babelmr command in this process (faster than a new interpreter on a loaded machine)."""
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.stderr, result.stderr
    if check is not None:
        assert result.exit_code == check, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


CHECKSUM = "select count(*), sum(hash(k, v)), count(k), sum(v) from {source}"


def checksum(files: list[str]) -> tuple:
    """Row count and an order-independent checksum of the rows (NULL keys included) by DuckDB."""
    return duckdb.sql(CHECKSUM.format(source=f"read_parquet({files})")).fetchall()[0]


def oracle(folder: Path) -> tuple:
    return checksum(sorted(str(p) for p in (folder / "data").glob("*.parquet")))


def record(store: Path, run_id: str) -> RunRecord:
    from babelmr.coordinator.records import read_record

    return read_record(open_store(str(store)), run_id)


def invocations(folder: Path) -> list[tuple[str, int]]:
    lines = (folder / "count.txt").read_text().split("\n") if (folder / "count.txt").exists() else []
    return [(s, int(t)) for s, t, _ in (line.split() for line in lines if line)]


def wait_until(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def only_run(store: Path) -> str:
    (run_id,) = [p.name for p in (store / "runs").iterdir()]
    return run_id


def test_sigkilled_coordinator_is_resumed_running_only_uncommitted_tasks(tmp_path: Path) -> None:
    """SIGKILL of `babelmr run` (its whole process group: coordinator and pool workers; the programs, in
    their own sessions, are released by the test) while map tasks 2 and 3 run and 0, 1 have committed.
    `status` then says the coordinator died, `wait` exits 1, `stop` marks the run interrupted, and
    `resume` runs map tasks 2, 3 and the later stages only, to the rows of a clean run."""
    job = write_job(tmp_path, slow_from=2)
    store = tmp_path / "store"
    (tmp_path / "work").mkdir()  # the killed coordinator's working folders stay here, not in /tmp
    env = {**os.environ, "PYTHONPATH": ENGINE, "BABELMR_WORKDIR": str(tmp_path / "work")}
    proc = subprocess.Popen([sys.executable, "-m", "babelmr", "run", str(job), "-c", "4"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        commits = lambda: list((store / "runs").glob("*/stages/map/commits/*.json"))  # noqa: E731
        wait_until(lambda: len(commits()) == 2 and len(invocations(tmp_path)) == 4, what="2 commits, 4 tasks")
        time.sleep(0.5)  # a heartbeat or two
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (tmp_path / "release").touch()  # the orphaned programs exit; their workers are gone: nothing commits
    run_id = only_run(store)
    assert record(store, run_id).status == "running"
    status = cli("status", run_id, "--store", str(store)).stdout
    assert "coordinator died" in status and "babelmr resume" in status, status
    cli("wait", run_id, "--store", str(store), check=1)
    assert "marked interrupted" in cli("stop", run_id, "--store", str(store)).stderr
    assert record(store, run_id).status == "interrupted"

    before = len(invocations(tmp_path))
    cli("resume", run_id, "--store", str(store))
    rerun = invocations(tmp_path)[before:]
    assert sorted(t for s, t in rerun if s == "map") == [2, 3]  # tasks 0 and 1 had commit records
    assert sorted(t for s, t in rerun if s == "reduce") == [0, 1, 2]
    rec = record(store, run_id)
    assert rec.status == "succeeded" and len(rec.resumes) == 1
    assert rec.resumes[0].previous_status == "interrupted"
    assert rec.stages[0].resumed_tasks == [0, 1]
    assert {c.task for c in rec.stages[0].committed} == {0, 1, 2, 3}
    assert checksum(rec.output.files) == oracle(tmp_path)
    # no file of an attempt that did not commit is left in the stage's data
    committed = {c.uri for c in rec.stages[0].committed}
    assert {str(p) for p in (store / "runs" / run_id / "stages/map/data").iterdir()} == committed
    shown = cli("show", run_id, "--store", str(store)).stdout
    assert "resumed at" in shown


def failing_run(tmp_path: Path, fail_task: int = 1) -> tuple[Path, Path, str]:
    """A run whose map task ``fail_task`` fails for good (its program exits 3): returns job, store, run id."""
    job = write_job(tmp_path)
    data = json.loads(job.read_text())
    data["stages"][0]["command"] = ["sh", "-c", f'[ "$MR_TASK" = {fail_task} ] && exit 3; sh {tmp_path}/prog.sh']
    job.write_text(json.dumps(data))
    cli("run", str(job), "-b", "inline", check=1)
    store = tmp_path / "store"
    return job, store, only_run(store)


def fix_command(job: Path) -> None:
    data = json.loads(job.read_text())
    data["stages"][0]["command"] = ["sh", str(job.parent / "prog.sh")]
    job.write_text(json.dumps(data))


def test_a_failed_run_resumes_with_a_fixed_command_and_reruns_only_the_failed_task(tmp_path: Path) -> None:
    """A program bug fixed in the job file: the resume runs the map tasks without commit records, then the rest."""
    job, store, run_id = failing_run(tmp_path)
    assert record(store, run_id).status == "failed"
    before = len(invocations(tmp_path))
    committed = sorted(int(p.stem[1:]) for p in (store / "runs" / run_id / "stages/map/commits").iterdir())
    assert committed == [0]  # one task at a time: the run stopped at task 1's failure
    fix_command(job)
    cli("run", str(job), "-b", "inline", "--resume", run_id)
    rerun = invocations(tmp_path)[before:]
    assert sorted(t for s, t in rerun if s == "map") == [1, 2, 3]  # all but the committed one
    rec = record(store, run_id)
    assert rec.status == "succeeded" and rec.resumes[0].previous_status == "failed"
    assert rec.resumes[0].command_changed is True
    assert checksum(rec.output.files) == oracle(tmp_path)
    # the resumed attempt continues the numbering: attempt 2 (attempt 1 failed before the resume)
    assert [(c.task, c.attempt) for c in rec.stages[0].committed] == [(0, 1), (1, 2), (2, 1), (3, 1)]
    cli("resume", run_id, "--store", str(store), check=1)  # succeeded: nothing to resume


@pytest.mark.parametrize("change", ["rewrite", "delete", "add", "partitions", "partitioner"])
def test_resume_refuses_changed_inputs_or_partitioning_unless_forced(tmp_path: Path, change: str) -> None:
    """An input file rewritten, deleted or added, or the partitioning changed, after the run failed."""
    job, store, run_id = failing_run(tmp_path)
    fix_command(job)
    data = tmp_path / "data"
    if change == "rewrite":
        time.sleep(0.01)
        pq.write_table(pa.table({"k": ["changed"], "v": pa.array([1], pa.int64())}), data / "p2.parquet")
    elif change == "delete":
        (data / "p3.parquet").unlink()
    elif change == "add":
        pq.write_table(pa.table({"k": ["new"], "v": pa.array([5], pa.int64())}), data / "p9.parquet")
    elif change == "partitioner":  # the same key and partitions, placed by range: other files, other digests
        d = json.loads(job.read_text())
        d["stages"][0]["partitioner"] = "range"
        job.write_text(json.dumps(d))
    else:
        d = json.loads(job.read_text())
        d["stages"][0]["partitions"] = 4
        job.write_text(json.dumps(d))
    refused = cli("resume", run_id, "--store", str(store), check=1)
    assert "cannot be resumed" in refused.stderr and "--force" in refused.stderr
    assert (change if change.startswith("partition") else "p") in refused.stderr
    assert record(store, run_id).status == "failed" and not record(store, run_id).resumes
    cli("resume", run_id, "--store", str(store), "--force")
    rec = record(store, run_id)
    assert rec.status == "succeeded" and rec.resumes[0].forced
    if change.startswith("partition"):  # every map task's plan changed: all ran again, and the result is exact
        assert checksum(rec.output.files) == oracle(tmp_path)


def test_run_detach_then_logs_follow_and_wait(tmp_path: Path) -> None:
    """`run --detach` returns at once with the run id; `logs --follow` prints every task's stderr as
    attempts end and returns when the run ends; `wait` exits 0; the coordinator's log is in the store."""
    job = write_job(tmp_path, files=2)
    started = babelmr("run", str(job), "--detach", "-c", "2")
    run_id = started.stdout.strip()
    store = tmp_path / "store"
    follow = subprocess.run([sys.executable, "-m", "babelmr", "logs", run_id, "--store", str(store), "--follow"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ENGINE}, timeout=120)
    assert follow.returncode == 0, follow.stderr
    for stage, tasks in (("map", 2), ("reduce", 3), ("final", 2)):
        for t in range(tasks):
            assert f"==> stage {stage} task {t} attempt 1 stderr <==\nhello from {stage} task {t}\n" in follow.stdout
    cli("wait", run_id, "--store", str(store))
    assert record(store, run_id).status == "succeeded"
    assert (store / "runs" / run_id / "coordinator.log").stat().st_size > 0
    one = cli("logs", run_id, "--store", str(store), "--stage", "reduce", "--task", "1").stdout
    assert one == "==> stage reduce task 1 attempt 1 stderr <==\nhello from reduce task 1\n"
    assert "succeeded" in cli("status", run_id, "--store", str(store)).stdout


def test_stop_interrupts_a_detached_run_which_then_resumes(tmp_path: Path) -> None:
    """`stop` sends SIGTERM to a live detached coordinator: the record says interrupted, `wait` exits 130,
    and a detached resume finishes the run to the clean rows."""
    job = write_job(tmp_path, files=3, slow_from=1)
    run_id = babelmr("run", str(job), "--detach", "-c", "3").stdout.strip()
    store = tmp_path / "store"
    wait_until(lambda: len(invocations(tmp_path)) == 3, what="all map tasks started")
    # the heartbeat (every 2 s) carries the stage's progress: wait for the beat after the stage started
    wait_until(lambda: "stage map: running" in cli("status", run_id, "--store", str(store)).stdout,
               what="status shows the map stage running")
    status = cli("status", run_id, "--store", str(store)).stdout
    assert "heartbeat" in status, status
    stopped = cli("stop", run_id, "--store", str(store))
    assert "interrupted" in stopped.stderr
    (tmp_path / "release").touch()
    cli("wait", run_id, "--store", str(store), check=130)
    assert babelmr("resume", run_id, "--store", str(store), "--detach").stdout.strip() == run_id
    cli("wait", run_id, "--store", str(store))
    rec = record(store, run_id)
    assert rec.status == "succeeded" and rec.resumes[0].previous_status == "interrupted"
    assert checksum(rec.output.files) == oracle(tmp_path)


@pytest.mark.s3
def test_resume_on_s3_refuses_a_same_size_rewrite_of_an_input_then_resumes_exactly(tmp_path: Path,
                                                                                  s3_prefix: str) -> None:
    """Inputs and store on SeaweedFS: a failed run; one input object rewritten with other bytes of the same size is
    refused (the fingerprint keeps the ETag of each object); restored, the resume is exact."""
    from babelmr.store.s3 import s3_filesystem

    job = write_job(tmp_path)
    fs = s3_filesystem()
    base = s3_prefix.removeprefix("s3://")
    originals = {}
    for p in sorted((tmp_path / "data").glob("*.parquet")):
        originals[p.name] = p.read_bytes()
        with fs.open_output_stream(f"{base}/data/{p.name}") as out:
            out.write(originals[p.name])
    data = json.loads(job.read_text())
    data["store"] = f"{s3_prefix}/store"
    data["stages"][0]["inputs"][0]["uri"] = f"{s3_prefix}/data/*.parquet"
    data["stages"][0]["command"] = ["sh", "-c", f'[ "$MR_TASK" = 1 ] && exit 3; sh {tmp_path}/prog.sh']
    job.write_text(json.dumps(data))
    cli("run", str(job), "-b", "inline", check=1)
    from babelmr.coordinator.records import list_runs

    (run_id,) = list_runs(open_store(f"{s3_prefix}/store"))
    fp = Fingerprint.from_json(open_store(f"{s3_prefix}/store").read_bytes(f"runs/{run_id}/fingerprint.json"))
    (listed,) = fp.inputs.values()
    assert len({e[3] for e in listed}) == 4 and all(e[3] for e in listed)  # each object's ETag (multipart: md5-N)
    fix_command(job)
    flipped = bytearray(originals["p2.parquet"])
    flipped[len(flipped) // 2] ^= 0xFF  # same size, other bytes
    with fs.open_output_stream(f"{base}/data/p2.parquet") as out:
        out.write(bytes(flipped))
    refused = cli("resume", run_id, "--store", f"{s3_prefix}/store", check=1)
    assert "p2.parquet" in refused.stderr and "changed" in refused.stderr
    with fs.open_output_stream(f"{base}/data/p2.parquet") as out:
        out.write(originals["p2.parquet"])
    # restored: the same bytes have the same ETag, so the input is the one planned and the resume goes on
    cli("resume", run_id, "--store", f"{s3_prefix}/store")
    run = babelmr_api.open_run(run_id, f"{s3_prefix}/store")
    assert run.status == "succeeded" and run.record.resumes[0].previous_status == "failed"
    result = run.read_table()  # noqa: F841 - DuckDB reads the Arrow table by its name
    assert duckdb.sql(CHECKSUM.format(source="result")).fetchall()[0] == oracle(tmp_path)


@pytest.mark.docker
def test_run_detach_logs_follow_and_wait_on_docker(base_image, tmp_path: Path) -> None:
    """`run --detach --backend docker`: `logs --follow` prints each task container's program stderr (the worker
    in the container copies it to the store), `wait` exits 0, and the result has the input's rows."""
    write_job(tmp_path, files=2)
    echo = ["sh", "-c", 'echo "hello from $MR_STAGE task $MR_TASK" >&2; cp in.parquet out.parquet']
    job = tmp_path / "docker.json"
    job.write_text(json.dumps({"name": "detached", "store": "store", "stages": [
        {"name": "map", "command": echo, "inputs": [{"name": "d", "uri": "data/*.parquet"}],
         "split": {"files_per_task": 1}, "key": ["k"], "partitions": 2},
        {"name": "reduce", "command": echo, "inputs": [{"name": "p", "stage": "map"}]}]}))
    run_id = babelmr("run", str(job), "--detach", "--backend", "docker", "-c", "2").stdout.strip()
    store = tmp_path / "store"
    follow = babelmr("logs", run_id, "--store", str(store), "--follow", timeout=300)
    for stage, tasks in (("map", 2), ("reduce", 2)):
        for t in range(tasks):
            assert f"==> stage {stage} task {t} attempt 1 stderr <==\nhello from {stage} task {t}\n" in follow.stdout
    cli("wait", run_id, "--store", str(store))
    rec = record(store, run_id)
    assert rec.status == "succeeded" and rec.backend == "docker"
    assert checksum(rec.output.files) == oracle(tmp_path)


def test_a_coordinator_on_another_host_is_dead_only_when_its_heartbeat_is_stale() -> None:
    """The pid cannot be checked on another host: the heartbeat's age decides (20 s by default)."""
    from babelmr.coordinator.resume import coordinator_state
    from babelmr.settings import settings

    now = time.time()
    record = RunRecord(run_id="r", job="j", job_file="j.json", store="s", backend="local", status="running",
                       started_at=now - 7200, host="elsewhere", pid=1, updated_at=now - 3600)

    def live(updated_at: float, pid: int = 1) -> LiveState:
        return LiveState(run_id="r", pid=pid, host=record.host, updated_at=updated_at, interval=2.0)

    assert coordinator_state(record, live(now - 1), now) == "alive"
    stale = now - settings().heartbeat_stale_seconds - 1
    assert coordinator_state(record, live(stale), now) == "dead"
    assert coordinator_state(record, None, now) == "dead"  # no heartbeat, an old record
    here = replace(record, host=os.uname().nodename, pid=2**22 + 12345)  # above pid_max: no such process
    assert coordinator_state(here, live(now, here.pid), now) == "dead"
    assert coordinator_state(replace(record, status="failed"), None, now) == "ended"
