"""Run the user's program: no shell unless asked, a timeout, stdout/stderr captured to files.

The engine speaks to the program only through files, environment variables, the exit code and
stderr. Hadoop Streaming's counter lines (``reporter:counter:GROUP,NAME,AMOUNT``) on stderr are
collected as task counters; its status lines (``reporter:status:MESSAGE``) set the task's latest status,
which is watched while the program runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TextIO

from babelmr.bounded import cut_line, read_tail
from babelmr.errors import TaskError

COUNTER_PREFIX = "reporter:counter:"
STATUS_PREFIX = "reporter:status:"
STATUS_CHARS = 500  # a status line is a short message: keep records small
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TAIL_LINES = 20


@dataclass
class ProgramRun:
    argv: list[str]
    exit_code: int
    seconds: float
    peak_rss_bytes: int
    timed_out: bool
    stdout_path: str
    stderr_path: str
    counters: dict[str, int] = field(default_factory=dict)
    status: str | None = None
    failure: str | None = None  # a warm program's protocol error or error answer (worker/warm.py)
    retryable: bool = True


def program_argv(command: list[str], mode: str | None, shell: bool) -> list[str]:
    """The argv to exec: the command plus the mode, through ``/bin/sh -c`` only when asked."""
    argv = list(command) + ([mode] if mode else [])
    if shell:
        return ["/bin/sh", "-c", " ".join(command) + (f" {shlex.quote(mode)}" if mode else "")]
    return argv


def stderr_tail(path: str, lines: int = TAIL_LINES) -> str:
    """The last lines of a log file (without counter lines), each cut to a bounded length, for error messages.

    Reads only the end of the file: a program that printed 100 MB (or one 30 MB line) costs no more.
    """
    try:
        data, skipped = read_tail(path)
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace").split("\n")
    if text and text[-1] == "":
        text.pop()
    first_cut = skipped > 0 and bool(text)
    kept: deque[str] = deque(maxlen=lines)
    for i, line in enumerate(text):
        if line.startswith((COUNTER_PREFIX, STATUS_PREFIX)):
            continue
        if i == 0 and first_cut:
            line = f"[... babelmr cut {skipped} bytes before this ...] {line}"
        kept.append(cut_line(line))
    return "\n".join(kept)


def _lines(f: TextIO, limit: int = 64 * 1024) -> Iterator[str]:
    """Lines of a text file, each at most ``limit`` characters (the rest of a longer line is skipped)."""
    while line := f.readline(limit):
        if len(line) == limit and not line.endswith("\n"):
            while (rest := f.readline(limit)) and not rest.endswith("\n"):
                pass
            continue  # a very long line is no counter line
        yield line


def read_reports(path: str) -> tuple[dict[str, int], str | None]:
    """The Hadoop-Streaming-style reports in a stderr log, in one streaming pass (long lines cost no memory):
    the summed counter lines and the last status line (``reporter:status:MESSAGE``)."""
    counters: dict[str, int] = {}
    status = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in _lines(f):
            if line.startswith(COUNTER_PREFIX):
                try:
                    group, name, amount = line[len(COUNTER_PREFIX):].strip().rsplit(",", 2)
                    counters[f"{group}.{name}"] = counters.get(f"{group}.{name}", 0) + int(amount)
                except ValueError:
                    continue
            elif line.startswith(STATUS_PREFIX):
                status = line[len(STATUS_PREFIX):].strip()[:STATUS_CHARS]
    return counters, status


def read_counters(path: str) -> dict[str, int]:
    """Sum the counter lines in a stderr log."""
    return read_reports(path)[0]


def read_status(path: str) -> str | None:
    """The last status line in a stderr log, if any (None also when there is no log)."""
    with contextlib.suppress(FileNotFoundError):
        return read_reports(path)[1]
    return None


SAMPLE_SECONDS = 0.05
DISCOVER_SECONDS = 0.5  # how often the memory sampler looks for the program's new processes
STATUS_SECONDS = 0.5


class _StatusWatcher(threading.Thread):
    """Reads new lines of the program's stderr while it runs and reports each new status line."""

    def __init__(self, path: str, on_status: Callable[[str], None]):
        super().__init__(daemon=True)
        self.path, self.on_status = path, on_status
        self._halt = threading.Event()

    def run(self) -> None:
        with open(self.path, "rb") as f:
            partial, last = b"", None
            while True:
                stopping = self._halt.wait(STATUS_SECONDS)
                data = partial + f.read()
                lines = data.split(b"\n")
                partial = lines.pop()  # an unfinished line waits for its end
                for line in lines:
                    if line.startswith(STATUS_PREFIX.encode()):
                        last = line[len(STATUS_PREFIX):].decode(errors="replace").strip()[:STATUS_CHARS]
                if last is not None:
                    with contextlib.suppress(Exception):  # a status is news, never a reason to fail the task
                        self.on_status(last)
                    last = None
                if stopping:
                    return

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


PR_SET_PDEATHSIG = 1

# Called with the program's pid (= its process group and session id) as soon as it started: the local
# backend reports it to the coordinator, which kills the group when this worker process dies or is stopped.
on_program_started: Callable[[int], None] | None = None


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def _die_with_parent() -> None:
    """In the program's child before exec: SIGKILL it when the worker that started it dies (Linux only)."""
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` (the program and everything it started): a scan of all of /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _stat_rss(int(entry.name), sid) is not None:
            pids.append(int(entry.name))
    return pids


def _stat_rss(pid: int, sid: int) -> int | None:
    """Bytes resident in process ``pid`` if it is (still) in session ``sid``, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # fields after "(comm)": state ppid pgrp session ... rss is the 22nd
    return int(fields[21]) * PAGE_SIZE if int(fields[3]) == sid else None


def _session_rss(sid: int) -> int:
    """Bytes resident in all processes of session ``sid`` (the program and everything it started)."""
    return sum(_stat_rss(pid, sid) or 0 for pid in _session_pids(sid))


class _PeakSampler(threading.Thread):
    """Samples the program's resident memory until stopped; ``peak`` is the highest sample.

    (``wait4``'s ru_maxrss would count the Python worker's memory at fork time as the program's.)
    Every ``SAMPLE_SECONDS`` it reads the session's known processes (one small /proc file each); the scan of
    all of /proc that finds the session's new processes (milliseconds of CPU on a busy host, 20 times a second
    was ~4 % of a core per task) runs every ``DISCOVER_SECONDS``.
    """

    def __init__(self, sid: int):
        super().__init__(daemon=True)
        self.sid, self.peak = sid, 0
        self._done = threading.Event()  # not `_stop`: that is a method of Thread, called after a fork

    def run(self) -> None:
        members: list[int] = []
        discover = 0.0
        while not self._done.wait(SAMPLE_SECONDS):
            if time.monotonic() >= discover:
                members, discover = _session_pids(self.sid), time.monotonic() + DISCOVER_SECONDS
            self.peak = max(self.peak, sum(_stat_rss(pid, self.sid) or 0 for pid in members))

    def stop(self) -> int:
        self._done.set()
        return self.peak


def run_program(command: list[str], mode: str | None, *, shell: bool, env: dict[str, str], workdir: str,
                log_dir: str, timeout: float | None, label: str,
                on_status: Callable[[str], None] | None = None) -> ProgramRun:
    """Run the program to completion (or until ``timeout``) and report how it went.

    ``on_status`` is called (from another thread) with each new status line while the program runs.
    """
    argv = program_argv(command, mode, shell)
    stdout_path, stderr_path = os.path.join(log_dir, "stdout.log"), os.path.join(log_dir, "stderr.log")
    start = time.perf_counter()
    _libc()  # loaded here: the child between fork and exec must not search for libraries
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, preexec_fn=_die_with_parent)
        except FileNotFoundError:
            raise TaskError(f"{label}: command {argv[0]!r} not found: install it (in the image) or fix the "
                            "stage's 'command'", retryable=False) from None
        except PermissionError:
            raise TaskError(f"{label}: command {argv[0]!r} is not executable: chmod +x it or run it "
                            "through its interpreter", retryable=False) from None
        if on_program_started is not None:
            on_program_started(proc.pid)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the program and everything it started

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        sampler = _PeakSampler(proc.pid)
        sampler.start()
        watcher = _StatusWatcher(stderr_path, on_status) if on_status else None
        if watcher:
            watcher.start()
        try:
            _, status, _usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            proc.wait()
            raise
        finally:
            peak = sampler.stop()
            if watcher:
                watcher.stop()
            if timer:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return ProgramRun(argv, proc.returncode, time.perf_counter() - start, peak,
                      timed_out.is_set(), stdout_path, stderr_path, *read_reports(stderr_path))
