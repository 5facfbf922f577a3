"""Detached runs and the commands around them: start a coordinator in the background, then watch
(`status`, `logs`), wait for (`wait`) and stop (`stop`) it from any terminal, through the store."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from babelmr.coordinator.records import read_live, read_record, read_stored, resolve_run_id, write_record
from babelmr.coordinator.resume import coordinator_state
from babelmr.errors import BabelMRError
from babelmr.spec import LiveState, RunRecord
from babelmr.store import layout
from babelmr.store.base import Store

DETACHED_ENV = "BABELMR_DETACHED"  # set in a detached coordinator's environment
EXIT_CODES = {"succeeded": 0, "failed": 1, "interrupted": 130}
_LOG_NAME = re.compile(r"t(\d+)-a(\d+)\.(\w+)$")


def raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: stop the run as Ctrl-C does (record `interrupted`, resumable)."""
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install_stop_handler() -> None:
    """In a detached coordinator: `babelmr stop` (SIGTERM) interrupts the run like Ctrl-C."""
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)


def coordinator_log_path(store: Store, run_id: str) -> str:
    """Where a detached coordinator writes its output: in a local store's run folder, else in ~/.babelmr/logs."""
    if store.local_root is not None:
        path = store.path(layout.coordinator_log(run_id))
    else:
        path = os.path.join(os.path.expanduser("~"), ".babelmr", "logs", f"{run_id}.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def start_detached(store: Store, run_id: str, args: list[str], timeout: float = 120) -> str:
    """Start ``babelmr ARGS`` in its own session (it survives the terminal) and wait for its run record.

    Returns the path of its log. Raises `BabelMRError` with the log's end if it exits before recording.
    """
    log = coordinator_log_path(store, run_id)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "babelmr", *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, DETACHED_ENV: "1"},
                                close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = _raw_record(store, run_id)
        if record is not None and record.pid == proc.pid:  # a resumed run's old record has an old pid
            return log
        if proc.poll() is not None:
            with open(log, "rb") as f:
                tail = f.read()[-4000:].decode(errors="replace")
            raise BabelMRError(f"the detached coordinator exited with code {proc.returncode} before starting "
                               f"run {run_id}; the end of its log {log}:\n{tail}")
        time.sleep(0.1)
    return log  # still planning or checking the store: its log tells


def _raw_record(store: Store, run_id: str) -> RunRecord | None:
    """The stored run.json alone (no stage entries): what polling needs, in one read."""
    return read_stored(store, layout.run_record(run_id), RunRecord)


@dataclass
class Status:
    """A run as `babelmr status` shows it."""

    record: RunRecord
    live: LiveState | None
    coordinator: str  # alive, dead or ended
    heartbeat_age: float | None

    def lines(self) -> list[str]:
        """Human-readable lines: the run, the coordinator, then each stage."""
        r, live = self.record, self.live
        age = f"{self.heartbeat_age:.1f} s ago" if self.heartbeat_age is not None else "never"
        out = [f"run {r.run_id} (job {r.job}, backend {r.backend}): {r.status}"]
        if self.coordinator == "alive":
            out.append(f"coordinator: pid {live.pid if live else r.pid} on {live.host if live else r.host}, "
                       f"heartbeat {age}")
        elif self.coordinator == "dead":
            out.append(f"coordinator died (pid {r.pid} on {r.host}, last heartbeat {age}): "
                       f"`babelmr resume {r.run_id} --store {r.store}` continues the run")
        done = {s.name: s for s in r.stages}
        running = live.stage if live is not None else None
        for name in r.stage_names or list(done):
            s = done.get(name)
            if s is not None:
                failed = len(s.tolerated_failures)
                extra = f", {failed} failed task(s) tolerated" if failed else ""
                skipped = " (finished before a resume)" if s.skipped_on_resume else ""
                out.append(f"  stage {name}: {s.status}{skipped}: {s.tasks} task(s){extra}")
            elif running is not None and running.name == name and r.status == "running":
                out.append(f"  stage {name}: running: {running.done}/{running.tasks} task(s) done, "
                           f"{len(running.running)} running {sorted(running.running)[:20]}, {running.failed} failed, "
                           f"{running.retries} retries")
            else:
                out.append(f"  stage {name}: not started")
        if r.error:
            out.append(f"error: {r.error.splitlines()[0] if r.error else ''}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """For ``status --json``."""
        return {"run_id": self.record.run_id, "status": self.record.status, "coordinator": self.coordinator,
                "heartbeat_age": self.heartbeat_age, "live": self.live.to_dict() if self.live else None,
                "stages": [{"name": s.name, "status": s.status, "tasks": s.tasks} for s in self.record.stages]}


def run_status(store: Store, run_id: str) -> Status:
    """The run's record, live state and whether its coordinator lives."""
    record = read_record(store, run_id)
    live = read_live(store, record.run_id)
    age = time.time() - live.updated_at if live else None
    return Status(record, live, coordinator_state(record, live), age)


def wait_for(store: Store, run_id: str, poll: float = 0.5, timeout: float | None = None) -> tuple[int, Status]:
    """Block until the run ends or its coordinator dies; returns its exit code (0, 1, 130) and status."""
    run_id = resolve_run_id(store, run_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = _raw_record(store, run_id)
        if record is None or record.status != "running" or \
                coordinator_state(record, read_live(store, run_id)) == "dead":
            status = run_status(store, run_id)
            return (1 if status.coordinator == "dead" else EXIT_CODES.get(status.record.status, 1)), status
        if deadline is not None and time.monotonic() > deadline:
            raise BabelMRError(f"run {run_id} is still running after {timeout:g} s")
        time.sleep(poll)


@dataclass(frozen=True)
class TaskLog:
    """One log object of a task attempt in the store."""

    key: str
    stage: str
    task: int
    attempt: int
    stream: str


def task_logs(store: Store, record: RunRecord, stage: str | None = None, task: int | None = None,
              attempt: int | None = None) -> list[TaskLog]:
    """The task logs in the store, by stage (job order), task, attempt and stream."""
    names = record.stage_names or [s.name for s in record.stages]
    if stage is not None and stage not in names:
        raise BabelMRError(f"run {record.run_id} has no stage {stage!r}; its stages: {', '.join(names)}")
    found = []
    for name in names if stage is None else [stage]:
        for e in store.list(layout.log_prefix(record.run_id, name)):
            m = _LOG_NAME.search(e.path)
            if not m:
                continue
            log = TaskLog(e.path, name, int(m[1]), int(m[2]), m[3])
            if (task is None or log.task == task) and (attempt is None or log.attempt == attempt):
                found.append(log)
    order = {n: i for i, n in enumerate(names)}
    return sorted(found, key=lambda g: (order[g.stage], g.task, g.attempt, g.stream))


def follow_logs(store: Store, run_id: str, stage: str | None = None, task: int | None = None,
                attempt: int | None = None, follow: bool = False, poll: float = 1.0) -> Iterator[tuple[TaskLog, bytes]]:
    """Each matching log once; with ``follow``, new ones as attempts end, until the run ends."""
    run_id = resolve_run_id(store, run_id)
    seen: set[str] = set()
    while True:
        record = read_record(store, run_id)
        ended = record.status != "running" or coordinator_state(record, read_live(store, run_id)) == "dead"
        for log in task_logs(store, record, stage, task, attempt):
            if log.key not in seen:
                seen.add(log.key)
                yield log, store.read_bytes(log.key)
        if not follow or ended:  # after the end, one last listing above caught the last logs
            return
        time.sleep(poll)


def stop_run(store: Store, run_id: str, timeout: float = 60) -> str:
    """SIGTERM the run's coordinator (which stops its tasks and records `interrupted`); mark a dead one.

    Returns what happened, for the user.
    """
    run_id = resolve_run_id(store, run_id)
    record = read_record(store, run_id)  # with its stage entries: a record marked here is final
    state = coordinator_state(record, read_live(store, run_id))
    if state == "ended":
        return f"run {run_id} already ended: {record.status}"
    if state == "dead":
        record.status, record.finished_at = "interrupted", time.time()
        record.error = "the coordinator died (stale heartbeat); marked interrupted by `babelmr stop`"
        record.seconds = record.finished_at - record.started_at
        write_record(store, record)
        return f"run {run_id}: its coordinator had died; marked interrupted (`babelmr resume {run_id}` continues it)"
    if record.host != os.uname().nodename:
        raise BabelMRError(f"run {run_id}'s coordinator runs on host {record.host!r} (pid {record.pid}):"
                           " run `babelmr stop` there")
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return stop_run(store, run_id, timeout)  # it died just now
    _, status = wait_for(store, run_id, poll=0.2, timeout=timeout)
    if status.coordinator == "dead":  # it had no SIGTERM handler and died without recording: say so now
        return stop_run(store, run_id, timeout)
    return f"run {run_id} stopped: {status.record.status} (`babelmr resume {run_id}` continues it)"
