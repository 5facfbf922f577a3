"""Errors a user can cause. Each carries a message naming the file, field or task and the fix.

Each class says whether another attempt of a task can succeed after it (``retryable``): deterministic
causes (a bad key type, a missing column, a schema conflict, a corrupt or changed input, a command that
does not exist, an unreadable output) fail the task at once; transient ones (a program crash, I/O and
network errors, throttling, a worker that died) are retried. `babelmr.worker.task.retryable` applies this
to every exception an attempt can raise.
"""

from __future__ import annotations

from typing import Any


class BabelMRError(Exception):
    """Base class of every error babelmr reports to the user without a traceback."""

    run: Any = None  # set by babelmr.run() when the run had started: the failed babelmr.api.Run
    retryable: bool = False  # deterministic unless a subclass (or instance) says otherwise


class JobFileError(BabelMRError):
    """The job file is missing, not JSON, or does not follow the schema."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the job file:\n{lines}")


class InputError(BabelMRError):
    """An input named by the job cannot be read (no files match, corrupt file, missing column)."""


class InputChanged(InputError):
    """An input file was replaced or deleted after the job was planned: the run would mix two versions."""


class StoreError(BabelMRError):
    """The store cannot be reached or written."""

    retryable = True


class TaskError(BabelMRError):
    """A task attempt failed: the program failed, its output is unusable, or the engine could not do I/O."""

    def __init__(self, message: str, *, retryable: bool = True):
        self.retryable = retryable
        super().__init__(message)


class ImageError(BabelMRError):
    """A container image cannot be built or found: no Docker engine, a failed build, a missing Dockerfile."""


class JobFailed(BabelMRError):
    """A stage could not complete: a task failed on every attempt."""


class OutputError(BabelMRError):
    """The job's output location cannot be used: not empty, holds files babelmr did not write, unreachable."""


class SettingsError(BabelMRError):
    """A ``BABELMR_*`` environment variable holds a value babelmr cannot use (docs/settings.md)."""
