"""Keeps the run record current while a stage runs, for dashboards and progress displays.

While a stage runs the record carries ``running_stage``: the stage's name, its task count, the attempts
finished so far and each running attempt's latest status line (``reporter:status:``), which the workers
publish in the store (``layout.task_status``). The record is rewritten at most every two seconds, and only
when something changed; the entry is removed when the stage ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from babelmr.coordinator.records import write_record
from babelmr.coordinator.run import StageProgress, attempt_entry
from babelmr.job import Stage
from babelmr.spec import TaskResult
from babelmr.store import layout
from babelmr.store.base import Store

POLL_SECONDS = 2.0  # on S3 each poll is a LIST request: $0.009 an hour at this rate


class LiveRecord(StageProgress):
    """Forwards events to ``inner`` and mirrors them into the stored run record."""

    def __init__(self, inner: StageProgress, store: Store, record: dict[str, Any]):
        self.inner, self.store, self.record = inner, store, record
        self._lock = threading.Lock()
        self._dirty = False
        self._stop = threading.Event()
        self._stage: Stage | None = None
        self._thread: threading.Thread | None = None

    def stage_started(self, stage: Stage, tasks: int) -> None:
        self.inner.stage_started(stage, tasks)
        with self._lock:
            self._stage = stage
            self.record["running_stage"] = {"name": stage.name, "tasks": tasks, "started_at": time.time(),
                                            "task_attempts": [], "status_lines": {}}
            self._dirty = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="live-record")
            self._thread.start()

    def _add(self, result: TaskResult, final: bool) -> None:
        with self._lock:
            running = self.record.get("running_stage")
            if running is not None:
                running["task_attempts"].append({**attempt_entry(result), "final": final})
                self._dirty = True

    def task_finished(self, stage: Stage, result: TaskResult) -> None:
        self.inner.task_finished(stage, result)
        self._add(result, True)

    def task_retrying(self, stage: Stage, result: TaskResult) -> None:
        self.inner.task_retrying(stage, result)
        self._add(result, False)

    def stage_finished(self, stage: Stage, summary: dict[str, Any]) -> None:
        with self._lock:
            self.record.pop("running_stage", None)
            self._stage = None
        self.inner.stage_finished(stage, summary)

    def _poll_status(self) -> None:
        with self._lock:
            stage, running = self._stage, self.record.get("running_stage")
        if stage is None or running is None:
            return
        done = {(a["task"], a["attempt"]) for a in running["task_attempts"]}
        seen = dict(running["status_lines"])
        for entry in self.store.list(layout.status_prefix(self.record["run_id"], stage.name)):
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
            # (not `.get(...) is running`: mypy would narrow `running` to get's `Any | None`)
            if "running_stage" in self.record and self.record["running_stage"] is running \
                    and seen != running["status_lines"]:
                running["status_lines"] = seen
                self._dirty = True

    def _write(self) -> None:
        with self._lock:
            if not self._dirty or "running_stage" not in self.record:
                return
            snapshot = dict(self.record)
            running = snapshot["running_stage"]
            snapshot["running_stage"] = {**running, "task_attempts": list(running["task_attempts"]),
                                         "status_lines": dict(running["status_lines"])}
            self._dirty = False
        write_record(self.store, snapshot)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._poll_status()
                self._write()
            except Exception:  # a missed update is shown at the next one; never fail the run
                pass

    def close(self) -> None:
        """Stop updating (before the final record is written) and drop the running stage."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self.record.pop("running_stage", None)
