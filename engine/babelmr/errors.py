"""Errors a user can cause. Each carries a message naming the file, field or task and the fix."""

from __future__ import annotations


class BabelMRError(Exception):
    """Base class of every error babelmr reports to the user without a traceback."""


class JobFileError(BabelMRError):
    """The job file is missing, not JSON, or does not follow the schema."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the job file:\n{lines}")


class InputError(BabelMRError):
    """An input named by the job cannot be read (no files match, corrupt file, missing column)."""


class StoreError(BabelMRError):
    """The store cannot be reached or written."""


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
