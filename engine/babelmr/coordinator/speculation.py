"""Speculative execution: a backup attempt for a straggler; the first attempt to commit wins.

Like Hadoop's speculative execution: once a stage has finished most of its tasks (``after``, default 75 %)
and a running attempt has run longer than ``slowdown`` times the median of the finished ones and at
least ``min_seconds``, a backup attempt of that task starts in a free slot (never more tasks at once
than the stage's concurrency). The commit protocol lets exactly one attempt publish (docs/commit-protocol.md);
as soon as one commits, the backend stops the other (`Backend.cancel`: the local backend kills its process
group, docker removes its container, Lambda ignores its result) and the stage's clean-up removes any data
file the loser wrote.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from babelmr.backends.base import Backend
from babelmr.job import Stage
from babelmr.spec import TaskResult, TaskSpec

TICK = 0.25  # seconds between straggler checks while a stage with speculation runs
LOSER_WAIT = 10.0  # seconds a stage waits at its end for stopped losers to report (a Lambda is not waited for)
LOST = "another attempt of this task committed first (speculative execution)"


def start_thread(fn: Callable[..., Any], *args: Any, name: str = "babelmr-attempt") -> Future:
    """Run ``fn(*args)`` in a daemon thread: an interrupted run never waits at exit for a blocked attempt."""
    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # handed to the coordinator's loop, which re-raises it
            future.set_exception(e)

    threading.Thread(target=run, daemon=True, name=name).start()
    return future


def stops_losers(backend: Backend) -> bool:
    """Whether ``backend`` can stop a running attempt (Lambda cannot: a losing invocation runs to its end)."""
    return type(backend).cancel is not Backend.cancel


@dataclass
class Attempts:
    """What the coordinator knows about one task's attempts while they run (shared by its threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[int, tuple[TaskSpec, float]] = field(default_factory=dict)  # attempt -> (spec, started)
    winner: TaskResult | None = None
    winner_seconds: float = 0.0
    backup: int | None = None  # the backup's attempt number, once launched
    futures: int = 0  # futures of this task not yet collected by the coordinator's loop
    reported: bool = False

    def started(self, spec: TaskSpec) -> None:
        with self.lock:
            self.running[spec.attempt] = (spec, time.monotonic())

    def finished(self, backend: Backend, result: TaskResult) -> None:
        """Note an attempt's end; the first to commit wins and the others are stopped."""
        with self.lock:
            _, began = self.running.pop(result.attempt, (None, time.monotonic()))
            if result.status == "error" or self.winner is not None:
                return
            self.winner, self.winner_seconds = result, time.monotonic() - began
            losers = [spec for spec, _ in self.running.values()]
        for spec in losers:
            backend.cancel(spec, LOST)

    @property
    def settled(self) -> bool:
        return self.winner is not None

    def longest(self, now: float) -> float:
        with self.lock:
            return max((now - began for _, began in self.running.values()), default=0.0)


class Speculator:
    """Decides, for one stage, which running tasks get a backup attempt."""

    def __init__(self, stage: Stage, backend: Backend, tasks: int):
        self.policy = stage.speculation
        self.backup_attempt = stage.retries + 2  # after every regular attempt's number: logs never collide
        self.tasks = tasks
        self.durations: list[float] = []

    @property
    def tick(self) -> float | None:
        """How long the coordinator's loop may wait for a task before checking for stragglers again."""
        return TICK if self.policy is not None and self.tasks > 1 else None

    def task_done(self, state: Attempts) -> None:
        """Count a finished task: its winning attempt's duration feeds the median."""
        if state.winner is not None:
            self.durations.append(state.winner_seconds)

    def stragglers(self, running: Iterable[tuple[TaskSpec, Attempts]], free: int) -> list[tuple[TaskSpec, Attempts]]:
        """Tasks to back up now, longest-running first, at most ``free`` of them."""
        if self.policy is None or free <= 0 or not self.durations:
            return []
        if len(self.durations) < self.policy.after * self.tasks:
            return []
        threshold = max(self.policy.min_seconds, self.policy.slowdown * statistics.median(self.durations))
        now = time.monotonic()
        found = sorted(((state.longest(now), spec, state) for spec, state in running
                        if state.backup is None and not state.settled and state.longest(now) > threshold),
                       key=lambda t: -t[0])
        chosen = [(spec.with_attempt(self.backup_attempt), state) for _, spec, state in found[:free]]
        for spec, state in chosen:
            state.backup = spec.attempt
        return chosen



def speculation_summary(states: Iterable[Attempts]) -> dict[str, int]:
    """Backup attempts a stage launched, and how many of them committed first."""
    launched = won = 0
    for s in states:
        if s.backup is not None:
            launched += 1
            won += s.winner is not None and s.winner.attempt == s.backup
    return {"backups": launched, "won": won}
