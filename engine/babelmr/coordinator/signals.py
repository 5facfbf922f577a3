"""Ctrl-C and SIGTERM stop a run the same way: the record says ``interrupted`` and nothing is left running.

The first SIGINT or SIGTERM raises `KeyboardInterrupt` in the coordinator's main thread: the run record is
written as ``interrupted`` and the caller's ``with backend:`` block stops every task (processes, process
groups, containers) and removes the temporary folders, within seconds. A second signal while that is under
way stops at once: the backend's ``close`` kills what is still running and the process exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install_signal_handlers(stop_now: Callable[[], None]) -> Callable[[], None]:
    """Turn SIGINT and SIGTERM into `KeyboardInterrupt`; returns a function that restores the old handlers.

    Does nothing outside the main thread (Python delivers signals there only).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:  # the second Ctrl-C: no more waiting
            with contextlib.suppress(BaseException):
                stop_now()
            os._exit(128 + signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore

