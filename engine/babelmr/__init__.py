"""babelmr: polyglot, container-based MapReduce.

The data path: job file (``job``) -> plan (``coordinator.planner``) -> coordinator -> backend
(``backends``) -> worker (``worker``: import -> run -> export) -> store (``store``).
"""

__version__ = "0.1.0"
