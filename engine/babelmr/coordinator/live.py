"""The live state of a running run: one writer, one typed record (`LiveState`, ``heartbeat.json``).

Every ``BABELMR_HEARTBEAT_SECONDS`` (2 s) the coordinator rewrites its live state: its process and host, the
time (a coordinator that died stops beating: `babelmr status` shows it dead and `resume` may take over) and
the running stage (`RunningStage`): its task count, the attempts finished so far, the tasks running and each
running attempt's latest status line (``reporter:status:``), which the workers publish in the store
(``layout.task_status``). ``run.json`` itself is written only when the run starts, resumes and ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

from babelmr.coordinator.run import StageProgress, attempt_entry
from babelmr.job import Stage
from babelmr.settings import settings
from babelmr.spec import LiveState, RunningStage, StageRecord, TaskResult, TaskSpec
from babelmr.store import layout
from babelmr.store.base import Store

log = logging.getLogger(__name__)


class LiveWriter(StageProgress):
    """Forwards stage events to ``inner`` and keeps the run's `LiveState` in the store, written periodically.

    On S3 each write is a PUT and each status poll a LIST: about $0.02 an hour at the default 2 s.
    """

    def __init__(self, inner: StageProgress, store: Store, run_id: str):
        self.inner, self.store = inner, store
        self.interval = settings().heartbeat_seconds
        self.state = LiveState(run_id=run_id, pid=os.getpid(), host=os.uname().nodename, updated_at=time.time(),
                               interval=self.interval)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stage: Stage | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="live-state")

    def start(self) -> LiveWriter:
        """Write the first live state and keep writing it until `close`."""
        self._write()
        self._thread.start()
        return self

    # StageProgress events
    def stage_started(self, stage: Stage, tasks: int) -> None:
        with self._lock:
            self._stage = stage
            self.state.stage = RunningStage(name=stage.name, tasks=tasks, started_at=time.time())
        self.inner.stage_started(stage, tasks)

    def task_started(self, stage: Stage, spec: TaskSpec) -> None:
        with self._lock:
            if self.state.stage is not None and spec.task not in self.state.stage.running:
                self.state.stage.running.append(spec.task)
        self.inner.task_started(stage, spec)

    def task_finished(self, stage: Stage, result: TaskResult) -> None:
        with self._lock:
            running = self.state.stage
            if running is not None:
                with contextlib.suppress(ValueError):
                    running.running.remove(result.task)
                if result.status == "error":
                    running.failed += 1
                else:
                    running.done += 1
                running.task_attempts.append(attempt_entry(result, final=True))
        self.inner.task_finished(stage, result)

    def task_retrying(self, stage: Stage, result: TaskResult) -> None:
        with self._lock:
            if self.state.stage is not None:
                self.state.stage.retries += 1
                self.state.stage.task_attempts.append(attempt_entry(result, final=False))
        self.inner.task_retrying(stage, result)

    def stage_finished(self, stage: Stage, summary: StageRecord) -> None:
        with self._lock:
            self.state.stage, self._stage = None, None
        self.inner.stage_finished(stage, summary)

    def __getattr__(self, name: str) -> Any:  # events added to StageProgress later reach the caller too
        return getattr(self.inner, name)

    def _poll_status(self) -> None:
        """Read the running attempts' status lines from the store; tell ``inner`` of the new ones."""
        with self._lock:
            stage, running = self._stage, self.state.stage
            if stage is None or running is None:
                return
            done = {(a.task, a.attempt) for a in running.task_attempts}
            seen = dict(running.status_lines)
        for entry in self.store.list(layout.status_prefix(self.state.run_id, stage.name)):
            name = entry.path.rsplit("/", 1)[-1].removesuffix(".txt")  # t00003-a1
            task, attempt = (int(part[1:]) for part in name.split("-"))
            if (task, attempt) in done:
                continue
            try:
                text = self.store.read_bytes(entry.path).decode(errors="replace")
            except FileNotFoundError:
                continue
            if seen.get(str(task)) != text:
                seen[str(task)] = text
                notify = getattr(self.inner, "task_status", None)
                if notify:
                    notify(stage, task, text)
        with self._lock:
            if self.state.stage is running:
                running.status_lines = seen

    def _write(self, ended: bool = False) -> None:
        with self._lock:
            self.state.updated_at, self.state.ended = time.time(), ended
            data = self.state.to_json()  # a snapshot: events may change the state while it is written
        with contextlib.suppress(Exception):  # a missed write is made good by the next; never fail the run
            self.store.write_bytes(layout.heartbeat(self.state.run_id), data.encode())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll_status()
            except Exception:  # a missed status line is shown at the next poll
                log.debug("polling status lines failed", exc_info=True)
            self._write()

    def close(self) -> None:
        """Stop writing (before the final record is written); the last live state says the run ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            self.state.stage = None
        self._write(ended=True)

