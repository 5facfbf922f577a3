"""The interface every backend implements."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

from babelmr.job import Job, Stage
from babelmr.spec import TaskResult, TaskSpec
from babelmr.store.base import Store


@dataclass(frozen=True)
class BackendOptions:
    """The options every backend takes; a backend with more declares a subclass as its ``Options``."""

    concurrency: int | None = None  # tasks at once (default: the backend's `default_concurrency`)


@dataclass(frozen=True)
class ProcessOptions(BackendOptions):
    """The options of the backends running tasks on this machine (local, inline)."""

    workdir: str | None = None  # where the tasks' working directories go (default: BABELMR_WORKDIR, else /tmp)


class Backend(ABC):
    """Runs task specs somewhere. `run_task` blocks and is called from many threads at once."""

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    @classmethod
    def from_options(cls, options: BackendOptions) -> Backend:
        """The backend built from its options (the constructor takes each field as a keyword)."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(options)})

    @classmethod
    def option_names(cls) -> set[str]:
        """The keyword options `get_backend` passes on to this backend."""
        return {f.name for f in fields(cls.Options)}

    @property
    def memory_per_task(self) -> int | None:
        """Bytes of memory a task gets unless its stage says (container backends); None: not limited."""
        return None

    @property
    def emulated(self) -> bool:
        """Whether the backend stands in for a cloud service on this machine (the lambda emulators)."""
        return False

    def __init__(self, concurrency: int | None = None):
        self.concurrency = concurrency or self.default_concurrency()

    def default_concurrency(self) -> int:
        """How many tasks run at once unless the job or the command line says otherwise."""
        return os.cpu_count() or 1

    def start(self) -> None:  # noqa: B027 - optional hook
        """Bring up what does not depend on a job (the local backend's worker processes); `prepare` does it
        when nobody did. Calling it ahead of `run_job` takes that start-up out of the run."""

    def prepare(self, job: Job, store: Store, run_id: str) -> None:  # noqa: B027 - optional hook
        """Get ready to run ``job`` (check images, start pools); called once before the first stage."""

    def check_tasks(self, stage: Stage, tasks: list[TaskSpec]) -> None:  # noqa: B027 - optional hook
        """Fail before the first task of ``stage`` runs when its tasks cannot work (e.g. cannot reach their files)."""

    def stage_concurrency(self, stage: Stage) -> int:
        """Tasks of ``stage`` to run at once."""
        return min(stage.concurrency, self.concurrency) if stage.concurrency else self.concurrency

    @abstractmethod
    def run_task(self, spec: TaskSpec) -> TaskResult:
        """Run one attempt to completion; failures come back as a result with status ``error``."""

    def cancel(self, spec: TaskSpec, reason: str) -> None:  # noqa: B027 - optional hook
        """Stop the running attempt ``spec`` (a speculative attempt that lost); its result is then ignored."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything the backend holds (pools, containers); safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
