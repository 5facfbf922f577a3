"""Warm programs: a stage with ``"warm": true`` starts its program once per worker and hands it one task at a time.

Protocol (docs/program-contract.md): the program starts with ``MR_WARM=1`` and two extra file descriptors,
their numbers in ``MR_WARM_IN`` (tasks, read) and ``MR_WARM_OUT`` (replies, write). For each task the engine
writes one JSON line: an object of the task's ``MR_*`` variables (name -> string, exactly what a cold program
gets in its environment). The program does the task (its current directory is not the task's: use
``MR_WORKDIR`` or the absolute paths) and answers one line, ``{"ok": true}`` once the output file is written
or ``{"error": "..."}``. Its stdout and stderr go to anonymous files that are cut per task, so per-task logs
and counter lines work as for a cold program, and its own logging cannot corrupt the channel.

A program that times out is killed (its whole session) and started afresh for the next task; one that
crashes, too. A program that never reads its task (it does not speak the protocol) is stopped after
`warm_read_timeout` seconds (`babelmr.settings`) with an error that is not retried.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import tempfile
import termios
import threading
import time
from dataclasses import dataclass
from multiprocessing import util as mp_util

from babelmr.errors import TaskError
from babelmr.settings import settings
from babelmr.worker import program as program_module
from babelmr.worker.program import PAGE_SIZE, ProgramRun, _PeakSampler, program_argv, read_reports

# MR_* variables that differ from task to task: the rest of the environment identifies a warm program.
PER_TASK = ("MR_TASK", "MR_ATTEMPT", "MR_INPUTS", "MR_INPUT", "MR_OUTPUT", "MR_WORKDIR", "MR_PARTITION")
# MR_* variables that differ from stage to stage: a program that lists its modes serves the stages that differ only
# in these (they come with each task's line too)
PER_STAGE = ("MR_MODE", "MR_STAGE", "MR_FORMAT", "MR_KEY", "MR_PARTITIONS")
MAX_IDLE = 4  # idle warm programs one worker keeps (e.g. a map and a reduce program of each of two runs)
CHUNK = 1 << 20


def _anonymous_file() -> int:
    """A file without a name (nothing to clean up in a task's /tmp), opened for appending and reading."""
    flags = os.O_RDWR | os.O_APPEND
    with contextlib.suppress(OSError, AttributeError):
        return os.open(tempfile.gettempdir(), flags | os.O_TMPFILE, 0o600)
    fd, path = tempfile.mkstemp(prefix="babelmr-warm-")
    os.close(fd)
    try:
        return os.open(path, flags)
    finally:
        os.unlink(path)


def _rss(pid: int) -> int:
    """Bytes resident in one process (a fraction of a millisecond; the session-wide scan takes several)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _unread(fd: int) -> int:
    """Bytes written to a pipe that its reader has not read yet."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


@dataclass(frozen=True)
class _Identity:
    """What a warm program is started with and found by again.

    ``key``: the argv (command and mode) and the environment without the per-task variables: a program serves
    the tasks of the same key (one stage of one run). ``family``: the same without the mode and the other
    per-stage variables: a program that lists the modes it serves in its answers (``"modes"``, as the helpers
    do) also serves the tasks of its family whose mode it lists: one program for all stages of a run that run
    the same command in the same environment.
    """

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    family: tuple
    mode: str | None

    @classmethod
    def of(cls, command: list[str], mode: str | None, shell: bool, env: dict[str, str]) -> _Identity:
        base = tuple(sorted((k, v) for k, v in env.items() if k not in PER_TASK))
        family = (tuple(command), shell, tuple((k, v) for k, v in base if k not in PER_STAGE))
        return cls(tuple(program_argv(command, mode, shell)), base, family, mode)

    @property
    def key(self) -> tuple:
        return self.argv, self.env

    def served_by(self, program: WarmProgram) -> bool:
        """Whether ``program`` can take a task of this identity."""
        return program.key == self.key or (program.family == self.family and self.mode is not None
                                           and program.modes is not None and self.mode in program.modes)


class WarmProgram:
    """One running program speaking the warm protocol."""

    def __init__(self, identity: _Identity, cwd: str, label: str):
        self.argv, env = list(identity.argv), dict(identity.env)
        self.key, self.family = identity.key, identity.family
        self.modes: frozenset[str] | None = None  # the modes it said it serves (None: only its own)
        self.answered = 0
        self.out, self.err = _anonymous_file(), _anonymous_file()
        task_r, self.task_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        env = {**env, "MR_WARM": "1", "MR_WARM_IN": str(task_r), "MR_WARM_OUT": str(reply_w)}
        try:
            self.proc = subprocess.Popen(self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.out,
                                         stderr=self.err, pass_fds=(task_r, reply_w), start_new_session=True)
        except FileNotFoundError:
            self.close()
            raise TaskError(f"{label}: command {self.argv[0]!r} not found: install it (in the image) or fix the "
                            "stage's 'command'", retryable=False) from None
        except PermissionError:
            self.close()
            raise TaskError(f"{label}: command {self.argv[0]!r} is not executable: chmod +x it or run it "
                            "through its interpreter", retryable=False) from None
        finally:
            os.close(task_r)
            os.close(reply_w)
        self._buffer = b""

    @property
    def alive(self) -> bool:
        return getattr(self, "proc", None) is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the program and everything it started."""
        if getattr(self, "proc", None) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        """Kill the program and release its pipes and logs."""
        self.kill()
        for name in ("task_w", "reply_r", "out", "err"):
            fd = getattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)

    def _cut_log(self, fd: int, path: str) -> None:
        """Move what the program wrote since the last cut to ``path``."""
        size = os.fstat(fd).st_size
        with open(path, "wb") as f:
            offset = 0
            while offset < size:
                data = os.pread(fd, min(CHUNK, size - offset), offset)
                if not data:
                    break
                f.write(data)
                offset += len(data)
        os.ftruncate(fd, 0)  # O_APPEND: the program's next write lands at the start again

    def run(self, request: dict[str, str], *, timeout: float | None, log_dir: str, label: str) -> ProgramRun:
        """Hand the program one task and wait for its answer, its death or the timeout."""
        start = time.perf_counter()
        line = (json.dumps(request, separators=(",", ":")) + "\n").encode()
        sampler = _PeakSampler(self.proc.pid)
        sampler.start()
        failure, retryable, timed_out, exit_code = None, True, False, 0
        try:
            try:
                os.write(self.task_w, line)  # a task line is far below the pipe's 64 KiB
                written = True
            except BrokenPipeError:
                written = False  # it died between tasks: reported below
            read = False
            reply = None
            while reply is None:
                now = time.perf_counter()
                waits = [0.5]
                if timeout:
                    waits.append(start + timeout - now)
                if not read:
                    read = written and _unread(self.task_w) == 0
                    if not read:
                        waits.append(min(0.05, start + settings().warm_read_timeout - now))
                if timeout and now - start >= timeout:
                    timed_out = True
                    break
                if not read and now - start >= settings().warm_read_timeout and not self.answered:
                    failure, retryable = (
                        f"the program {' '.join(self.argv)!r} was started in warm mode but never answered within "
                        f"{settings().warm_read_timeout:g} s (it did not read its task): set \"warm\": false on the "
                        "stage, or read tasks from the file descriptor in $MR_WARM_IN as in "
                        "docs/program-contract.md"), False
                    break
                ready, _, _ = select.select([self.reply_r], [], [], max(0.0, min(waits)))
                if not ready:
                    continue
                data = os.read(self.reply_r, 65536)
                if not data:  # the program closed its end: it exited (or closed fd MR_WARM_OUT)
                    break
                self._buffer += data
                if b"\n" in self._buffer:
                    reply, self._buffer = self._buffer.split(b"\n", 1)
            seconds = time.perf_counter() - start  # the program's time: not the bookkeeping below
            if reply is None:
                if timed_out or failure:
                    self.kill()
                else:
                    try:
                        self.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:  # alive, but closed its answer channel
                        self.kill()
                        failure = (f"the warm program {' '.join(self.argv)!r} closed the file descriptor in "
                                   "$MR_WARM_OUT without exiting (see docs/program-contract.md)")
                exit_code = self.proc.returncode
                read = read or (written and _unread(self.task_w) == 0)  # it may have read just before dying
                if not timed_out and failure is None:
                    if not self.answered and not read:
                        failure, retryable = (
                            f"the program {' '.join(self.argv)!r} was started in warm mode but exited with code "
                            f"{exit_code} without reading its task: set \"warm\": false on the stage, or read tasks "
                            "from the file descriptor in $MR_WARM_IN as in docs/program-contract.md"), False
                    elif exit_code == 0:
                        failure = (f"the warm program {' '.join(self.argv)!r} exited (code 0) without answering "
                                   "its task")
            else:
                failure, retryable = self._verdict(reply)
                self.answered += 1
        finally:
            peak = sampler.stop()
            if self.alive:  # a task shorter than the sampler's period: at least the program itself (cheap)
                peak = max(peak, _rss(self.proc.pid))
        stdout_path, stderr_path = os.path.join(log_dir, "stdout.log"), os.path.join(log_dir, "stderr.log")
        self._cut_log(self.out, stdout_path)
        self._cut_log(self.err, stderr_path)
        return ProgramRun(self.argv, exit_code, seconds, peak, timed_out, stdout_path,
                          stderr_path, *read_reports(stderr_path), failure=failure,
                          retryable=retryable)

    def _verdict(self, reply: bytes) -> tuple[str | None, bool]:
        """(failure, retryable) from a reply line."""
        try:
            answer = json.loads(reply)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("modes"), list):
            self.modes = frozenset(m for m in answer["modes"] if isinstance(m, str))
        if isinstance(answer, dict) and answer.get("ok") is True:
            return None, True
        if isinstance(answer, dict) and "error" in answer:
            return f"the warm program answered with an error: {answer['error']}", True
        self.kill()  # it speaks something else: start afresh
        return (f"the warm program answered {reply[:200].decode(errors='replace')!r}, not {{\"ok\": true}} or "
                "{\"error\": \"...\"} (see docs/program-contract.md)"), False


_lock = threading.Lock()
_idle: list[WarmProgram] = []  # most recently used last
_deferred: dict[tuple, list[tuple[_Identity, str, str]]] = {}  # family -> (identity, workdir, label) to start


def _take(identity: _Identity) -> WarmProgram | None:
    """An idle program for ``identity``: one that said it serves the mode first (its start-up is paid), else one
    started for exactly this stage."""
    with _lock:
        for exact in (False, True):
            for i in range(len(_idle) - 1, -1, -1):
                if (_idle[i].key == identity.key) == exact and identity.served_by(_idle[i]):
                    return _idle.pop(i)
    return None


def _give_back(program: WarmProgram) -> None:
    with _lock:
        _idle.append(program)
        evicted = _idle[:-MAX_IDLE]
        del _idle[:-MAX_IDLE]
    for p in evicted:
        p.close()


def kill_all() -> None:
    """SIGKILL every idle warm program of this process without waiting (safe in a signal handler)."""
    for p in list(_idle):
        if getattr(p, "proc", None) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.proc.pid, signal.SIGKILL)


def close_all() -> None:
    """Stop every idle warm program of this process (a worker's exit)."""
    with _lock:
        programs = list(_idle)
        _idle.clear()
        _deferred.clear()
    for p in programs:
        p.close()


def _start(identity: _Identity, workdir: str, label: str) -> WarmProgram:
    # a folder that outlives the task (the local backends' root; / in a container, where /tmp is the task's)
    return WarmProgram(identity, os.path.dirname(os.path.abspath(workdir)) or "/", label)


def _prestart(identity: _Identity, workdir: str, label: str) -> bool:
    try:
        program = _start(identity, workdir, label)
    except TaskError:
        return False  # the task itself reports it (command not found, not executable)
    _give_back(program)
    return True


def prestart(command: list[str], mode: str | None, *, shell: bool, env: dict[str, str], workdir: str,
             label: str) -> bool:
    """Start the warm program that a task with this command and environment will take, unless one is idle;
    it starts up while the worker waits for that task. A program of the same family (another stage, same
    command and environment) is started first and alone: once it answers a task, this one starts only if that
    program does not serve this mode. True when a program was started now."""
    identity = _Identity.of(command, mode, shell, env)
    with _lock:
        if any(identity.served_by(p) and p.alive for p in _idle):
            return False
        if mode is not None and (identity.family in _deferred
                                 or any(p.family == identity.family and p.alive for p in _idle)):
            _deferred.setdefault(identity.family, []).append((identity, workdir, label))
            return False
    return _prestart(identity, workdir, label)


def _start_deferred(program: WarmProgram) -> None:
    """After ``program`` answered: start the deferred programs of its family whose mode it does not serve."""
    with _lock:
        waiting = _deferred.pop(program.family, [])
    for identity, workdir, label in waiting:
        if program.modes is None or identity.mode not in program.modes:
            _prestart(identity, workdir, label)


def run_warm(command: list[str], mode: str | None, *, shell: bool, env: dict[str, str], workdir: str,
             log_dir: str, timeout: float | None, label: str) -> ProgramRun:
    """Like `run_program`, but through a warm program of this worker (started when there is none)."""
    identity = _Identity.of(command, mode, shell, env)
    request = {k: v for k, v in env.items() if k.startswith("MR_")}
    program = _take(identity)
    if program is None or not program.alive:
        if program is not None:
            program.close()
        program = _start(identity, workdir, label)
    if program_module.on_program_started is not None:  # each attempt: the backend kills it with the attempt
        program_module.on_program_started(program.proc.pid)
    try:
        run = program.run(request, timeout=timeout, log_dir=log_dir, label=label)
    except BaseException:
        program.close()
        raise
    if program.answered:
        _start_deferred(program)
    if program.alive:
        _give_back(program)
    else:
        program.close()
    return run


# multiprocessing workers leave through os._exit, which skips atexit: Finalize runs there and at a normal exit
mp_util.Finalize(None, close_all, exitpriority=10)
