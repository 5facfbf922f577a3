"""Run the user's program: no shell unless asked, a timeout, stdout/stderr captured to files.

The engine speaks to the program only through files, environment variables, the exit code and
stderr. Hadoop Streaming's counter lines (``reporter:counter:GROUP,NAME,AMOUNT``) on stderr are
collected as task counters.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from babelmr.errors import TaskError

COUNTER_PREFIX = "reporter:counter:"
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


def program_argv(command: list[str], mode: str | None, shell: bool) -> list[str]:
    """The argv to exec: the command plus the mode, through ``/bin/sh -c`` only when asked."""
    argv = list(command) + ([mode] if mode else [])
    if shell:
        return ["/bin/sh", "-c", " ".join(command) + (f" {shlex.quote(mode)}" if mode else "")]
    return argv


def stderr_tail(path: str, lines: int = TAIL_LINES) -> str:
    """The last lines of a log file (without counter lines), for error messages."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tail = deque((line.rstrip("\n") for line in f if not line.startswith(COUNTER_PREFIX)), maxlen=lines)
    except FileNotFoundError:
        return ""
    return "\n".join(tail)


def read_counters(path: str) -> dict[str, int]:
    """Sum the Hadoop-Streaming-style counter lines in a stderr log."""
    counters: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(COUNTER_PREFIX):
                try:
                    group, name, amount = line[len(COUNTER_PREFIX):].strip().rsplit(",", 2)
                    counters[f"{group}.{name}"] = counters.get(f"{group}.{name}", 0) + int(amount)
                except ValueError:
                    continue
    return counters


def run_program(command: list[str], mode: str | None, *, shell: bool, env: dict[str, str], workdir: str,
                log_dir: str, timeout: float | None, label: str) -> ProgramRun:
    """Run the program to completion (or until ``timeout``) and report how it went."""
    argv = program_argv(command, mode, shell)
    stdout_path, stderr_path = os.path.join(log_dir, "stdout.log"), os.path.join(log_dir, "stderr.log")
    start = time.perf_counter()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True)
        except FileNotFoundError:
            raise TaskError(f"{label}: command {argv[0]!r} not found: install it (in the image) or fix the "
                            "stage's 'command'", retryable=False) from None
        except PermissionError:
            raise TaskError(f"{label}: command {argv[0]!r} is not executable: chmod +x it or run it "
                            "through its interpreter", retryable=False) from None
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the program and everything it started

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return ProgramRun(argv, proc.returncode, time.perf_counter() - start, usage.ru_maxrss * 1024,
                      timed_out.is_set(), stdout_path, stderr_path, read_counters(stderr_path))
