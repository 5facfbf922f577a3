"""babelmr: polyglot, container-based MapReduce.

The data path: job file (``job``) -> plan (``coordinator.planner``) -> coordinator -> backend
(``backends``) -> worker (``worker``: import -> run -> export) -> store (``store``).

The public Python API (docs/api.md): ``babelmr.run(job)``, ``babelmr.open_run(run_id, store)``,
``babelmr.load_job(path)``, the `Run` they return, and the typed errors. ``import babelmr`` stays
cheap: each name is imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module defining it. Imported on first access (PEP 562), not here: the worker
# imports this package for __version__ and must not pull in the coordinator or pyarrow with it.
_EXPORTS = {
    "run": "babelmr.api",
    "open_run": "babelmr.api",
    "resume": "babelmr.api",
    "load_job": "babelmr.api",
    "Run": "babelmr.api",
    "StageSummary": "babelmr.api",
    "TaskAttempt": "babelmr.api",
    "CommittedFile": "babelmr.api",
    "BabelMRError": "babelmr.errors",
    "JobFileError": "babelmr.errors",
    "InputError": "babelmr.errors",
    "StoreError": "babelmr.errors",
    "TaskError": "babelmr.errors",
    "ImageError": "babelmr.errors",
    "JobFailed": "babelmr.errors",
}

__all__ = [  # spelt out (not built from _EXPORTS) so linters see the names the TYPE_CHECKING block imports
    "BabelMRError", "CommittedFile", "ImageError", "InputError", "JobFailed", "JobFileError", "Run", "StageSummary",
    "StoreError", "TaskAttempt", "TaskError", "__version__", "load_job", "open_run", "resume", "run",
]

if TYPE_CHECKING:  # for type checkers and editors only
    from babelmr.api import CommittedFile, Run, StageSummary, TaskAttempt, load_job, open_run, resume, run
    from babelmr.errors import BabelMRError, ImageError, InputError, JobFailed, JobFileError, StoreError, TaskError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'babelmr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
