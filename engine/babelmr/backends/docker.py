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
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import docker.errors
import requests.exceptions
from docker.types import Mount

from babelmr.backends.base import Backend
from babelmr.backends.containers import (
    ContainerLimits,
    ContainerOptions,
    check_access,
    check_image,
    container_options,
    prepare_local_store,
    remove_orphans,
    stage_mounts,
)
from babelmr.backends.credentials import CredentialsFile
from babelmr.bounded import MAX_LOG, TAIL_READ, bounded
from babelmr.images import BASE_IMAGE, docker_client
from babelmr.job import Job, Stage
from babelmr.settings import settings, worker_environment
from babelmr.spec import RESULT_MARKER, SPEC_ENV, TaskResult, TaskSpec
from babelmr.store import layout
from babelmr.store.base import Store
from babelmr.worker.program import TAIL_LINES
from babelmr.worker.warm_server import CLIENT, SOCKET

CREATE_WAIT = 30  # seconds close() waits for containers being created, to remove them too
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

    def __init__(self, folder: str, limit: int, kill: Callable[[], object]):
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
    root = settings().task_tmp or tempfile.gettempdir()
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


def parse_result(stdout: str) -> TaskResult | None:
    """The `TaskResult` the worker printed as its last marked line, if any."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return TaskResult.from_json(line[len(RESULT_MARKER):], "the task container's result")
    return None


class DockerBackend(Backend):
    """One container per task attempt; containers are always removed, also on failure and Ctrl-C."""

    name = "docker"
    Options = ContainerOptions

    def __init__(self, concurrency: int | None = None, limits: ContainerLimits | None = None):
        super().__init__(concurrency)
        self.limits = limits or ContainerLimits()
        self._client: docker.DockerClient | None = None
        self._store: Store | None = None
        self._active: set[str] = set()
        self._attempts: dict[tuple[str, int, int], str] = {}  # running attempt -> its container
        self._stopped: dict[str, str] = {}  # container -> why the backend stopped it
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)
        self._starting = 0  # containers being created: close() waits for them (stage threads are daemons)
        self._closed = threading.Event()
        self._store_checked: set[str] = set()  # images whose user was seen writing the run folder
        # warm stages: long-lived containers per (image, memory, stage mounts), each serving one task at a time
        self._warm: dict[tuple, queue.Queue[str]] = {}
        self._stage_mounts: dict[str, list] = {}

        self._credentials = CredentialsFile()
    @property
    def memory_per_task(self) -> int | None:
        return self.limits.memory

    def prepare(self, job: Job, store: Store, run_id: str) -> None:
        self._client = docker_client(self.concurrency)
        self._store = store
        remove_orphans(self._client)  # what a killed coordinator left
        for stage in job.stages:
            check_image(self._client, stage.image or BASE_IMAGE, stage.name)
        prepare_local_store(store, layout.run_prefix(run_id), [s.name for s in job.stages])

    def _prepared(self) -> tuple[docker.DockerClient, Store]:
        """The Docker client and the store that prepare() set up; every later call needs them."""
        if self._client is None or self._store is None:
            raise RuntimeError("the docker backend was used before prepare()")
        return self._client, self._store

    def check_tasks(self, stage: Stage, tasks: list[TaskSpec]) -> None:
        client, store = self._prepared()
        image = stage.image or BASE_IMAGE
        check_access(client, tasks, store, self.name, check_store=image not in self._store_checked)
        self._store_checked.add(image)
        if stage.warm:
            self._stage_mounts[stage.name] = stage_mounts(tasks, store)

    def run_task(self, spec: TaskSpec) -> TaskResult:
        assert self._client is not None and self._store is not None, "prepare() first"
        if self._closed.is_set():
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: interrupted",
                              retryable=False)
        if spec.warm:
            return self._run_warm(spec)
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
        options["mounts"] = options["mounts"] + self._credentials.mounts()
        env = {**worker_environment(), **self._credentials.environment(), SPEC_ENV: spec.to_json()}
        key = (spec.stage, spec.task, spec.attempt)
        with self._lock:
            if self._closed.is_set():
                return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: interrupted",
                                  retryable=False)
            self._starting += 1
        container = None
        try:
            container = self._client.containers.run(environment=env, **options)
        finally:
            with self._lock:  # in one step with the count: close() sees the container once it stops waiting
                self._starting -= 1
                if container is not None:
                    self._active.add(container.id)
                    self._attempts[key] = container.id
                self._started.notify_all()
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
                                    (stdout + stderr).encode()[-MAX_LOG:])
            result = parse_result(stdout)
            if result is not None:
                return result
            container.reload()
            oom = container.attrs.get("State", {}).get("OOMKilled", False)
            why = "it ran out of memory: give the stage more 'memory'" if oom else "it printed no result"
            tail = bounded("\n".join(stderr[-TAIL_READ:].splitlines()[-TAIL_LINES:]))
            return TaskResult("error", spec.stage, spec.task, spec.attempt,
                              error=f"{spec.label}: the container exited with code {status.get('StatusCode')}: "
                                    f"{why}\n--- last lines of the container's stderr ---\n{tail}")
        except (docker.errors.APIError, requests.exceptions.RequestException) as e:
            with self._lock:
                stopped = self._stopped.get(container.id)
            if stopped or self._closed.is_set():
                return TaskResult("error", spec.stage, spec.task, spec.attempt, retryable=False,
                                  error=f"{spec.label}: stopped: {stopped or 'interrupted'}")
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: Docker: {e}")
        finally:
            watchdog.stop()
            self._remove(container.id)
            with self._lock:
                self._attempts.pop(key, None)
                self._stopped.pop(container.id, None)

    def cancel(self, spec: TaskSpec, reason: str) -> None:
        """Stop a running attempt: remove its container (the attempt then reports ``stopped``)."""
        with self._lock:
            container_id = self._attempts.get((spec.stage, spec.task, spec.attempt))
            if container_id is not None:
                self._stopped[container_id] = reason
        if container_id is not None:
            self._remove(container_id)

    def _warm_pool(self, spec: TaskSpec) -> tuple[queue.Queue[str], list]:
        _, store = self._prepared()
        mounted = self._stage_mounts.get(spec.stage) or container_options(spec, store, self.limits, {})["mounts"]
        key = (spec.image or BASE_IMAGE, spec.memory, tuple(sorted(m["Target"] for m in mounted)))
        with self._lock:
            return self._warm.setdefault(key, queue.Queue()), mounted

    def _start_warm(self, spec: TaskSpec, mounted: list) -> str:
        """A container of the stage's image running the warm worker (babelmr.worker.warm_server)."""
        client, store = self._prepared()
        options = container_options(spec, store, self.limits, {"babelmr.warm": "1"})
        options["mounts"] = mounted + self._credentials.mounts()  # credentials as for cold tasks: a private file
        env = {**worker_environment(), **self._credentials.environment()}
        container = client.containers.run(entrypoint=["python", "-m", "babelmr.worker.warm_server", SOCKET],
                                          command=[], environment=env, **options)
        with self._lock:
            self._active.add(container.id)
        return container.id

    def _run_warm(self, spec: TaskSpec) -> TaskResult:
        """Hand the task to an idle warm container of its stage (started if there is none) via ``docker exec``."""
        client, store = self._prepared()
        pool, mounted = self._warm_pool(spec)
        try:
            container_id = pool.get_nowait()
        except queue.Empty:
            container_id = self._start_warm(spec, mounted)
        keep = False
        try:
            container = client.containers.get(container_id)
            _, output = container.exec_run(["python", "-c", CLIENT, SOCKET], demux=True,
                                           environment={SPEC_ENV: spec.to_json()})
            # types-docker says bytes | Iterator[bytes]; with demux=True docker-py returns (stdout, stderr)
            stdout, stderr = cast("tuple[bytes | None, bytes | None]", output)
            text = (stdout or b"").decode(errors="replace")
            result = parse_result(text)
            if result is not None:
                keep = True
                return result
            container.reload()
            oom = container.attrs.get("State", {}).get("OOMKilled", False)
            why = "it ran out of memory: give the stage more 'memory'" if oom else "it answered no result"
            logs = container.logs().decode(errors="replace") + (stderr or b"").decode(errors="replace")
            store.write_bytes(layout.task_log(spec.run_id, spec.stage, spec.task, spec.attempt, "container"),
                              logs.encode())
            tail = "\n".join(logs.splitlines()[-TAIL_LINES:])
            return TaskResult("error", spec.stage, spec.task, spec.attempt,
                              error=f"{spec.label}: the warm worker container failed: {why}\n"
                                    f"--- last lines of the container's output ---\n{tail}")
        except docker.errors.APIError as e:
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: Docker: {e}")
        finally:
            if keep and not self._closed.is_set():
                pool.put(container_id)
            else:
                self._remove(container_id)

    def _remove(self, container_id: str) -> None:
        try:
            self._prepared()[0].api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: its removal is already in progress (cancel() and the attempt's end)
                raise
        finally:
            with self._lock:
                self._active.discard(container_id)

    def close(self) -> None:
        """Remove every container still running (Ctrl-C, a failed stage) and the warm workers."""
        self._closed.set()
        self._warm.clear()
        with self._lock:  # a container being created now is added to _active when its creation returns
            self._started.wait_for(lambda: self._starting == 0, timeout=CREATE_WAIT)
            active = list(self._active)
        if active:  # at once, not one after the other: Ctrl-C must stop a wide stage within seconds
            with ThreadPoolExecutor(max_workers=min(16, len(active))) as pool:
                list(pool.map(self._remove, active))
        self._credentials.close()
