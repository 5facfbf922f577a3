"""Tasks in Docker containers of each stage's image: the same image that goes to Lambda.

A task's ``/tmp`` (its working directory: the imported input, the program's output, its scratch files) is a
folder on the host's disk bind-mounted into the container, as Lambda's ``/tmp`` is disk, not memory: a task
may write more than its memory to ``/tmp``. Its size is limited like Lambda's ephemeral storage: a watchdog
measures the folder every ``TMP_POLL_SECONDS`` and kills the container when it holds more than the backend's
``ephemeral_storage``; the task then fails with an error saying so. (The limit is enforced by polling, not by
a file system quota: a task can overshoot it by what it writes in one interval before it is stopped.) The
folders live under ``$BABELMR_TASK_TMP`` (default: the host's temporary folder) and are removed after the task.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading

import docker.errors
import requests.exceptions
from docker.types import Mount

from babelmr.backends.base import Backend
from babelmr.backends.containers import (
    BASE_IMAGE,
    ContainerLimits,
    check_access,
    check_image,
    container_options,
    docker_client,
    prepare_local_store,
)
from babelmr.job import Job, Stage
from babelmr.spec import TaskResult, TaskSpec
from babelmr.store import layout
from babelmr.store.base import Store
from babelmr.store.s3 import aws_environment
from babelmr.worker.__main__ import RESULT_MARKER, SPEC_ENV
from babelmr.worker.program import TAIL_LINES

WAIT_GRACE = 120  # seconds a container may outlive the program's timeout (import and export)
TMP_POLL_SECONDS = 0.5  # how often a task's /tmp folder is measured against its ephemeral storage


def folder_bytes(path: str) -> int:
    """Disk bytes of the files below ``path`` (allocated blocks: a sparse file counts what it uses)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while measured
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


class TmpWatchdog:
    """Kills a container whose /tmp folder outgrows ``limit`` bytes; ``exceeded`` says whether it did."""

    def __init__(self, folder: str, limit: int, kill):
        self.folder, self.limit, self._kill = folder, limit, kill
        self.exceeded = 0  # the bytes seen when the limit was exceeded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="babelmr-tmp-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(TMP_POLL_SECONDS):
            used = folder_bytes(self.folder)
            if used > self.limit:
                self.exceeded = used
                with contextlib.suppress(docker.errors.DockerException):  # it ended meanwhile
                    self._kill()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def task_tmp(limits: ContainerLimits) -> str:
    """A new host folder for one task's /tmp, writable by the image's (non-root) user like a tmpfs."""
    root = os.environ.get("BABELMR_TASK_TMP") or tempfile.gettempdir()
    os.makedirs(root, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="babelmr-task-", dir=root)
    os.chmod(folder, 0o1777)
    return folder


def disk_tmp(options: dict, folder: str, memory: int) -> dict:
    """``options`` with /tmp bind-mounted from ``folder`` instead of a tmpfs, and memory for the task alone."""
    options = dict(options)
    options.pop("tmpfs", None)
    options["mounts"] = [*options.get("mounts", []), Mount(target="/tmp", source=folder, type="bind")]
    options["mem_limit"] = memory  # no tmpfs pages to count against the container's memory any more
    return options


def parse_result(stdout: str) -> dict | None:
    """The `TaskResult` the worker printed as its last marked line, if any."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    return None


class DockerBackend(Backend):
    """One container per task attempt; containers are always removed, also on failure and Ctrl-C."""

    name = "docker"

    def __init__(self, concurrency: int | None = None, limits: ContainerLimits | None = None):
        super().__init__(concurrency)
        self.limits = limits or ContainerLimits()
        self._client = None
        self._store: Store | None = None
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._store_checked: set[str] = set()  # images whose user was seen writing the run folder

    def prepare(self, job: Job, store: Store, run_id: str) -> None:
        self._client = docker_client(self.concurrency)
        self._store = store
        for stage in job.stages:
            check_image(self._client, stage.image or BASE_IMAGE, stage.name)
        prepare_local_store(store, layout.run_prefix(run_id), [s.name for s in job.stages])

    def check_tasks(self, stage: Stage, tasks: list[TaskSpec]) -> None:
        image = stage.image or BASE_IMAGE
        check_access(self._client, tasks, self._store, self.name, check_store=image not in self._store_checked)
        self._store_checked.add(image)

    def run_task(self, spec: TaskSpec) -> TaskResult:
        assert self._client is not None and self._store is not None, "prepare() first"
        if self._closed.is_set():
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: interrupted",
                              retryable=False)
        tmp = task_tmp(self.limits)
        try:
            return self._run_in(spec, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _run_in(self, spec: TaskSpec, tmp: str) -> TaskResult:
        """Run the attempt in a container whose /tmp is the host folder ``tmp``."""
        assert self._client is not None and self._store is not None
        options = disk_tmp(container_options(spec, self._store, self.limits, {}), tmp,
                           spec.memory or self.limits.memory)
        env = {**aws_environment(), SPEC_ENV: spec.to_json()}
        container = self._client.containers.run(environment=env, **options)
        with self._lock:
            self._active.add(container.id)
        if self._closed.is_set():  # close() ran while this container was being created: it missed it
            self._remove(container.id)
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: interrupted",
                              retryable=False)
        watchdog = TmpWatchdog(tmp, self.limits.ephemeral_storage, container.kill)
        try:
            timeout = spec.timeout + WAIT_GRACE if spec.timeout else None
            try:
                status = container.wait(timeout=timeout)
            except requests.exceptions.ConnectionError:
                container.kill()
                return TaskResult("error", spec.stage, spec.task, spec.attempt,
                                  error=f"{spec.label}: the container did not finish within {timeout:g} s")
            watchdog.stop()
            if watchdog.exceeded:  # the same task writes as much again: another attempt would fail the same way
                limit = self.limits.ephemeral_storage
                return TaskResult("error", spec.stage, spec.task, spec.attempt, retryable=False,
                                  error=f"{spec.label}: the task wrote more than its ephemeral storage of "
                                        f"{limit / 2**20:,.0f} MiB to /tmp (at least {watchdog.exceeded / 2**20:,.0f}"
                                        " MiB) and was stopped: give the run more ephemeral storage "
                                        "(--ephemeral-storage, up to 10 GB as on Lambda), or let each task read less "
                                        "(more tasks, fewer columns)")
            stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
            stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
            self._store.write_bytes(layout.task_log(spec.run_id, spec.stage, spec.task, spec.attempt, "container"),
                                    (stdout + stderr).encode())
            result = parse_result(stdout)
            if result is not None:
                return TaskResult.from_dict(result)
            container.reload()
            oom = container.attrs.get("State", {}).get("OOMKilled", False)
            why = "it ran out of memory: give the stage more 'memory'" if oom else "it printed no result"
            tail = "\n".join(stderr.splitlines()[-TAIL_LINES:])
            return TaskResult("error", spec.stage, spec.task, spec.attempt,
                              error=f"{spec.label}: the container exited with code {status.get('StatusCode')}: "
                                    f"{why}\n--- last lines of the container's stderr ---\n{tail}")
        except docker.errors.APIError as e:
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: Docker: {e}")
        finally:
            watchdog.stop()
            self._remove(container.id)

    def _remove(self, container_id: str) -> None:
        try:
            self._client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        finally:
            with self._lock:
                self._active.discard(container_id)

    def close(self) -> None:
        """Remove every container still running (Ctrl-C, a failed stage)."""
        self._closed.set()
        with self._lock:
            active = list(self._active)
        for container_id in active:
            self._remove(container_id)
