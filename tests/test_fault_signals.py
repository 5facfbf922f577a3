"""Fault matrix, signals: Ctrl-C (SIGINT) and SIGTERM stop `babelmr run` within seconds, a second signal at
once; the record says `interrupted`; no program, worker or temporary folder is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from babelmr.backends.local import LocalBackend
from faults import leftover_folders, leftover_processes, run_processes
from scripted import make_job

SLOW = ["sh", "-c", "sleep 60; cp in.parquet out.parquet"]  # sh forks sleep: the group has two processes
STOP_SECONDS = 10  # "within a few seconds", with room for a loaded test machine


def start_run(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start `babelmr run` on a job whose 3 map tasks sleep; return it and its run id once every program runs."""
    job = make_job(tmp_path, files=3, map_command=SLOW)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "BABELMR_WORKDIR": str(work)}
    # its own process group, like a terminal's foreground job: Ctrl-C reaches every process of the group
    proc = subprocess.Popen([sys.executable, "-m", "babelmr", "run", str(job), "-c", "3", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            process_group=0)
    runs = tmp_path / ".babelmr" / "runs"
    deadline = time.monotonic() + 60
    run_id = ""
    while time.monotonic() < deadline:
        if not run_id and runs.exists():
            run_id = next((p.name for p in runs.iterdir()), "")
        if run_id and sum("sleep" in p.name() for p in run_processes(run_id)) == 3:
            return proc, run_id
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the programs did not start: {proc.communicate()}")


def send(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Ctrl-C as a terminal sends it, to the whole process group; SIGTERM as `kill PID` does, to one process."""
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


def record(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / ".babelmr" / "runs" / run_id / "run.json").read_text())


@pytest.mark.parametrize(("backend", "sig"), [
    ("local", signal.SIGINT), ("local", signal.SIGTERM), ("inline", signal.SIGTERM)])
def test_a_signal_stops_the_run_within_seconds_and_leaves_nothing(tmp_path: Path, backend: str,
                                                                  sig: signal.Signals) -> None:
    proc, run_id = start_run(tmp_path, "--backend", backend)
    sent = time.monotonic()
    send(proc, sig)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert took < STOP_SECONDS, f"{sig.name} took {took:.1f} s"
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    rec = record(tmp_path, run_id)
    assert rec["status"] == "interrupted" and rec["error"] == sig.name
    assert rec["pid"] == proc.pid
    assert leftover_processes(run_id) == []
    assert leftover_folders(tmp_path / "work") + leftover_folders(tmp_path / "work", "babelmr-inline-") == []
    assert not list((tmp_path / ".babelmr" / "runs" / run_id / "stages" / "map" / "commits").glob("*")), \
        "nothing committed"


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    proc, run_id = start_run(tmp_path)
    send(proc, signal.SIGINT)
    send(proc, signal.SIGINT)
    sent = time.monotonic()
    proc.communicate(timeout=60)
    assert time.monotonic() - sent < STOP_SECONDS
    assert proc.returncode in (130, 128 + signal.SIGINT)
    assert leftover_processes(run_id) == []


def test_a_killed_coordinator_leaves_no_program_or_worker(tmp_path: Path) -> None:
    """SIGKILL cannot be handled: the kernel's parent-death signals end the workers and the programs."""
    proc, run_id = start_run(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert leftover_processes(run_id, seconds=10) == []
    assert record(tmp_path, run_id)["status"] == "running"  # what `babelmr resume` picks up
    LocalBackend(concurrency=1, workdir=str(tmp_path / "work")).close()  # the next local run removes the dead
    # coordinator's working folder (the killed run used BABELMR_WORKDIR, set in its environment)
    assert leftover_folders(tmp_path / "work") == []


WARM_PROGRAM = r'''
import json, os, shutil, sys, time
with open(int(os.environ["MR_WARM_IN"])) as tasks, open(int(os.environ["MR_WARM_OUT"]), "w") as replies:
    for line in tasks:
        task = json.loads(line)
        os.chdir(task["MR_WORKDIR"])
        if sys.argv[1] == "sleep":
            time.sleep(60)
        shutil.copy("in.parquet", task["MR_OUTPUT"])
        print(json.dumps({"ok": True}), file=replies, flush=True)
'''


def _marked(marker: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or []):
            found.append(f"{p.pid} {' '.join(p.info['cmdline'])}")
    return found


@pytest.mark.parametrize("when", ["mid-task", "idle"])
def test_a_killed_coordinator_leaves_no_warm_program(tmp_path: Path, when: str) -> None:
    """A warm program outlives the task that started it: it must not outlive the worker (busy or idle)."""
    script = tmp_path / "warm_program.py"
    script.write_text(WARM_PROGRAM)
    action = "sleep" if when == "mid-task" else "copy"
    job = make_job(tmp_path, files=1, partitions=1, map_command=[sys.executable, str(script), action],
                   map_options={"warm": True})
    if when == "idle":  # the worker's warm map program idles while the same worker runs the sleeping reduce
        spec = json.loads(job.read_text())
        spec["stages"][1]["command"] = SLOW
        job.write_text(json.dumps(spec))
    (tmp_path / "work").mkdir()
    env = {**os.environ, "BABELMR_WORKDIR": str(tmp_path / "work")}
    proc = subprocess.Popen([sys.executable, "-m", "babelmr", "run", str(job), "-c", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, process_group=0)
    deadline = time.monotonic() + 60
    while not (_marked(str(script)) and (when == "mid-task" or _marked("sleep 60"))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)  # the program runs its task (mid-task) or idles (idle)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while _marked(str(script)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked(str(script)) == []
