"""The embedded default: tasks run in a pool of local worker processes, no Docker or cloud needed."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from babelmr.backends.base import Backend, ProcessOptions
from babelmr.job import Job
from babelmr.settings import PREFIX, reload, settings
from babelmr.spec import TaskResult, TaskSpec
from babelmr.store.base import Store
from babelmr.store.s3 import aws_environment, reset_clients


def _tunables() -> dict[str, str]:
    """The ``BABELMR_*`` variables of this process (the settings' source)."""
    return {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}


def _sync_environment(aws_env: dict[str, str], tunables: dict[str, str]) -> None:
    """Pool workers outlive environment changes in the coordinator: adopt its current AWS settings and
    ``BABELMR_*`` tunables (then read the settings again)."""
    if aws_env != aws_environment():
        for k in aws_environment():
            os.environ.pop(k, None)
        os.environ.update(aws_env)
        reset_clients()
    if tunables != _tunables():
        for k in _tunables():
            os.environ.pop(k, None)
        os.environ.update(tunables)
        reload()


def _run_in_worker(spec_json: str, workdir_root: str, aws_env: dict[str, str], tunables: dict[str, str]) -> dict:
    from babelmr.worker.task import run_task

    _sync_environment(aws_env, tunables)
    spec = TaskSpec.from_json(spec_json)
    workdir = tempfile.mkdtemp(prefix=f"{spec.stage}-t{spec.task}-a{spec.attempt}-", dir=workdir_root)
    try:
        return run_task(spec, workdir).to_dict()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _warm_up() -> None:
    import babelmr.worker.task  # noqa: F401 - the import is the point


class LocalBackend(Backend):
    """Each task attempt runs in a long-lived worker process, in its own private working directory."""

    name = "local"
    Options = ProcessOptions

    def __init__(self, concurrency: int | None = None, workdir: str | None = None):
        super().__init__(concurrency)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._root = tempfile.mkdtemp(prefix="babelmr-", dir=workdir or settings().workdir)

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(["babelmr.worker.task"])
                self._pool = ProcessPoolExecutor(max_workers=self.concurrency, mp_context=ctx)
            return self._pool

    def prepare(self, job: Job, store: Store, run_id: str) -> None:
        """Start the workers now, while the first stage is planned (each imports pyarrow and pandas once)."""
        pool = self._get_pool()
        for _ in range(self.concurrency):
            pool.submit(_warm_up)

    def run_task(self, spec: TaskSpec) -> TaskResult:
        pool = self._get_pool()
        try:
            future = pool.submit(_run_in_worker, spec.to_json(), self._root, aws_environment(), _tunables())
            return TaskResult.from_dict(future.result())
        except BrokenProcessPool:
            with self._lock:  # the next attempt gets a fresh pool
                if self._pool is pool:
                    self._pool = None
            return TaskResult("error", spec.stage, spec.task, spec.attempt,
                              error=f"{spec.label}: the worker process died (killed, or out of memory?)")

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        shutil.rmtree(self._root, ignore_errors=True)
