"""The embedded default: tasks run in local worker processes the backend owns, no Docker or cloud needed.

Worker processes are forked from a forkserver that has already imported the engine (pyarrow, pandas); each
runs one attempt at a time, many in a row. The backend owns every worker: a worker that dies (killed, out of
memory) fails only its own attempt, and stopping an attempt (Ctrl-C, a speculative backup that lost) kills
its process and the program's process group. Nothing outlives a killed coordinator either: the forkserver
exits when the coordinator dies, its workers get SIGTERM from the kernel (``PR_SET_PDEATHSIG``)
and kill their program's group, and each program gets SIGKILL when its worker dies.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

from babelmr.backends.base import Backend, ProcessOptions
from babelmr.coordinator.planner import stage_spec
from babelmr.job import Job
from babelmr.settings import PREFIX, reload, settings
from babelmr.spec import TaskResult, TaskSpec
from babelmr.store.base import Store
from babelmr.store.s3 import aws_environment, reset_clients
from babelmr.worker import warm

PRESTART, TASK = "prestart", "task"  # the messages a worker gets
READY, PROGRAM, RESULT = "ready", "program", "result"  # and those it sends
log = logging.getLogger(__name__)
STOP_WAIT = 5.0  # seconds close() waits for killed attempt processes to be gone
READY_WAIT = 60.0  # seconds start() waits for a new worker to be ready
_ROOT_PREFIX = "babelmr-"


def _tunables() -> dict[str, str]:
    """The ``BABELMR_*`` variables of this process (the settings' source)."""
    return {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}


def _sync_environment(aws_env: dict[str, str], tunables: dict[str, str]) -> None:
    """The forkserver outlives environment changes in the coordinator: adopt its current AWS settings and
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


def _message(kind: str, specs: list[str], workdir: str) -> tuple:
    """What a worker gets: the kind, the task specs (JSON), the working folder, and this process's AWS settings
    and tunables (the worker adopts them first)."""
    return kind, specs, workdir, aws_environment(), _tunables()


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: run the attempts the backend sends, one at a time; report each program's pid, then the
    result. Ends when the backend closes its end of the pipe."""
    from babelmr.worker import program
    from babelmr.worker.task import prestart_warm, run_task

    current: dict[str, Any] = {"programs": [], "workdir": None}

    def stop(signum: int, _frame: Any) -> None:
        # the coordinator died (PDEATHSIG) or stops us: the program's group must not survive us
        for pid in current["programs"]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        warm.kill_all()  # idle warm programs too: they outlive the task that started them
        if current["workdir"]:
            shutil.rmtree(current["workdir"], ignore_errors=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole terminal group: the coordinator decides
    signal.signal(signal.SIGTERM, stop)
    # Every forkserver child holds the write end of the pipe that keeps the forkserver alive: close ours, so the
    # forkserver exits when the coordinator dies (and starts no process of its own, which this one never asks).
    # (a private CPython attribute, so read with a default: a Python without it just keeps the fd open)
    server = multiprocessing.forkserver._forkserver
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(alive_fd)
        server._forkserver_alive_fd = None  # type: ignore[attr-defined]  # private, so typeshed does not declare it
    libc = program._libc()
    if libc is not None:  # our parent is the forkserver, which exits when the coordinator dies
        libc.prctl(program.PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def report(pid: int) -> None:
        current["programs"].append(pid)
        conn.send((PROGRAM, pid))

    program.on_program_started = report
    conn.send((READY, None))
    while True:
        try:
            kind, specs, workdir, aws_env, tunables = conn.recv()
        except (EOFError, OSError):
            return
        _sync_environment(aws_env, tunables)
        if kind == PRESTART:  # no answer: the programs start up while the worker waits for its first task
            for spec_json in specs:
                prestart_warm(TaskSpec.from_json(spec_json), workdir)
            continue
        current.update(programs=[], workdir=workdir)
        conn.send((RESULT, run_task(TaskSpec.from_json(specs[0]), workdir).to_dict()))
        current.update(programs=[], workdir=None)


@dataclass
class _Worker:
    """A worker process the backend owns, and the attempt it runs."""

    process: Any  # multiprocessing's Process of the forkserver context
    conn: multiprocessing.connection.Connection
    program_pid: int | None = None
    stopped: str | None = None  # why the backend stopped its attempt
    ready: bool = False  # its READY message was read (else the first attempt reads it)

    def kill(self) -> None:
        """SIGKILL the program's process group and the worker process."""
        if self.program_pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.program_pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.kill()


def _remove_stale_roots(parent: str) -> None:
    """Remove working folders that a killed coordinator of this machine left (named after its pid)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            m = re.fullmatch(rf"{_ROOT_PREFIX}(\d+)-\w+", entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not psutil.pid_exists(int(m.group(1))):
                shutil.rmtree(entry.path, ignore_errors=True)


class LocalBackend(Backend):
    """Each task attempt runs in its own worker process, in its own private working directory."""

    name = "local"
    Options = ProcessOptions

    def __init__(self, concurrency: int | None = None, workdir: str | None = None):
        super().__init__(concurrency)
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int, int], _Worker] = {}  # attempt -> the worker running it
        self._idle: list[_Worker] = []
        self._closed = threading.Event()
        parent = workdir or settings().workdir or tempfile.gettempdir()
        _remove_stale_roots(parent)
        self._root = tempfile.mkdtemp(prefix=f"{_ROOT_PREFIX}{os.getpid()}-", dir=parent)

    @staticmethod
    def _context() -> Any:
        ctx = multiprocessing.get_context("forkserver")
        # imported once by the forkserver, not by every worker: the worker's code, its target's module, and the
        # coordinator's main module (which multiprocessing otherwise imports again in each child)
        ctx.set_forkserver_preload(["__main__", "babelmr.worker.task", __name__])
        return ctx

    def _start_worker(self) -> _Worker:
        ctx = self._context()
        ours, theirs = ctx.Pipe()
        # daemon: should the coordinator exit without close(), multiprocessing terminates it
        process = ctx.Process(target=_worker_main, args=(theirs,), daemon=True, name="babelmr-worker")
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def _take_worker(self) -> _Worker:
        """An idle worker, else a new one; one that died while idle (killed, OOM) is replaced, not used."""
        while True:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                return self._start_worker()
            if worker.process.is_alive():
                return worker
            worker.conn.close()

    def start(self) -> None:
        """Start the worker processes that are missing (the forkserver imports the engine once, then forks them)
        and wait until each is ready for a task."""
        self._top_up()
        with self._lock:
            idle = list(self._idle)
        for worker in idle:
            if not worker.ready and worker.conn.poll(READY_WAIT):
                with contextlib.suppress(EOFError, OSError):
                    worker.ready = worker.conn.recv()[0] == READY

    def _top_up(self) -> None:
        with self._lock:
            dead = [w for w in self._idle if not w.process.is_alive()]  # killed or OOM while idle: replaced
            self._idle = [w for w in self._idle if w not in dead]
            missing = self.concurrency - len(self._idle) - len(self._running)
        for worker in dead:
            worker.conn.close()
        workers = [self._start_worker() for _ in range(missing)]
        with self._lock:
            self._idle.extend(workers)

    def prepare(self, job: Job, store: Store, run_id: str) -> None:
        """Start the workers now, while the first stage is planned, and have each start the warm programs of the
        job's first warm stages (as many as a worker keeps idle; a stage with the same command as an earlier one
        waits for that program's first answer, which may say it serves both): their start-up overlaps the
        planning and the stages before theirs instead of delaying each stage's first tasks."""
        self._top_up()  # without waiting for them: the first stage is planned meanwhile
        specs = [stage_spec(job, stage, run_id, store.uri).to_json() for stage in job.stages if stage.warm]
        if not specs:
            return
        with self._lock:
            idle = list(self._idle)
        for worker in idle:
            with contextlib.suppress(OSError):
                worker.conn.send(_message(PRESTART, specs[:warm.MAX_IDLE], os.path.join(self._root, "prestart")))
        log.info("warm programs of %d stage(s) starting in %d worker(s)", min(len(specs), warm.MAX_IDLE), len(idle))

    def run_task(self, spec: TaskSpec) -> TaskResult:
        if self._closed.is_set():
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: interrupted",
                              retryable=False)
        worker = self._take_worker()
        worker.program_pid, worker.stopped = None, None
        workdir = tempfile.mkdtemp(prefix=f"{spec.stage}-t{spec.task}-a{spec.attempt}-", dir=self._root)
        key = (spec.stage, spec.task, spec.attempt)
        result: dict | None = None
        with self._lock:
            self._running[key] = worker
        try:
            if self._closed.is_set():  # close() ran while this attempt was starting: it may have missed it
                worker.stopped = "interrupted"
                worker.kill()
            with contextlib.suppress(OSError):
                worker.conn.send(_message(TASK, [spec.to_json()], workdir))
            while result is None:
                try:
                    kind, value = worker.conn.recv()
                except (EOFError, OSError):
                    break
                if kind == PROGRAM:
                    worker.program_pid = value
                elif kind == RESULT:
                    result = value
        finally:
            with self._lock:
                self._running.pop(key, None)
                keep = result is not None and not self._closed.is_set()
                if keep:
                    self._idle.append(worker)
            if not keep:  # died or stopped mid-attempt: it and its program must not outlive the attempt
                worker.kill()
                worker.conn.close()
                multiprocessing.connection.wait([worker.process.sentinel], timeout=STOP_WAIT)
            shutil.rmtree(workdir, ignore_errors=True)
        if result is not None:
            return TaskResult.from_dict(result)
        if worker.stopped:
            return TaskResult("error", spec.stage, spec.task, spec.attempt, retryable=False,
                              error=f"{spec.label}: stopped: {worker.stopped}")
        code = worker.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        return TaskResult("error", spec.stage, spec.task, spec.attempt,
                          error=f"{spec.label}: the worker process died ({how}: killed, or out of memory?)")

    def cancel(self, spec: TaskSpec, reason: str) -> None:
        """Stop the attempt ``spec`` if it is running: its worker process and the program's process group."""
        with self._lock:
            worker = self._running.get((spec.stage, spec.task, spec.attempt))
        if worker is not None:
            worker.stopped = reason
            worker.kill()

    def close(self) -> None:
        """Kill every running attempt (Ctrl-C, a failed stage), wait until they are gone, remove the folders."""
        self._closed.set()
        with self._lock:
            running, idle = list(self._running.values()), list(self._idle)
            self._idle.clear()
        for worker in running:
            worker.stopped = worker.stopped or "interrupted"
            worker.kill()
        for worker in idle:  # an idle worker ends when its pipe closes; killing it is as good and quicker
            worker.kill()
            worker.conn.close()
        sentinels = []
        for worker in running + idle:
            with contextlib.suppress(Exception):
                sentinels.append(worker.process.sentinel)
        deadline = time.monotonic() + STOP_WAIT
        while sentinels and time.monotonic() < deadline:
            ready = multiprocessing.connection.wait(sentinels, timeout=deadline - time.monotonic())
            sentinels = [s for s in sentinels if s not in ready]
        shutil.rmtree(self._root, ignore_errors=True)
