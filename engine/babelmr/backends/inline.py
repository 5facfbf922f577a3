"""Tasks run in the calling process: for unit tests and debugging (like mrjob's inline runner).

Each attempt runs the real worker (`babelmr.worker.task.run_task`) in a thread of the coordinator's
process, in a fresh temporary working directory, so a ``breakpoint()`` in the engine stops there and
no process boundary hides a traceback. The user's program still runs as a child process, as on every
backend. One task at a time unless ``concurrency`` says otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading

from babelmr.backends.base import Backend, ProcessOptions
from babelmr.settings import settings
from babelmr.spec import TaskResult, TaskSpec


class InlineBackend(Backend):
    """Runs each attempt in this process, in its own temporary working directory."""

    name = "inline"
    Options = ProcessOptions

    def __init__(self, concurrency: int | None = None, workdir: str | None = None):
        super().__init__(concurrency)
        self._root = tempfile.mkdtemp(prefix="babelmr-inline-", dir=workdir or settings().workdir)
        self._programs: set[int] = set()  # process groups of the programs running now
        self._lock = threading.Lock()

    def default_concurrency(self) -> int:
        """One task at a time: runs are reproducible step by step and a debugger sees one task."""
        return 1

    def run_task(self, spec: TaskSpec) -> TaskResult:
        """Run the attempt here and now; the worker turns every failure into an ``error`` result."""
        from babelmr.worker import program
        from babelmr.worker.task import run_task  # imported on first use: pyarrow is not needed before

        program.on_program_started = self._started  # close() kills what Ctrl-C interrupted

        # The spec crosses JSON as on every other backend, so a field that does not survive the trip
        # fails here too rather than only in containers.
        spec = TaskSpec.from_json(spec.to_json())
        os.makedirs(self._root, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix=f"{spec.stage}-t{spec.task}-a{spec.attempt}-", dir=self._root)
        try:
            result = run_task(spec, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return TaskResult.from_dict(result.to_dict())

    def _started(self, pid: int) -> None:
        with self._lock:
            self._programs = {p for p in self._programs if _alive(p)} | {pid}

    def close(self) -> None:
        """Kill the programs still running (Ctrl-C) and remove the temporary working directories."""
        with self._lock:
            running, self._programs = self._programs, set()
        for pid in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(self._root, ignore_errors=True)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
