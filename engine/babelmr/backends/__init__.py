"""Backends run task specs: local processes (default), Docker containers, AWS Lambda.

Each is a small class implementing `Backend`; `get_backend(name)` picks one.
"""

from __future__ import annotations

from babelmr.backends.base import Backend
from babelmr.errors import BabelMRError

BACKENDS = ("local", "docker", "lambda")


def get_backend(name: str, *, concurrency: int | None = None) -> Backend:
    """The backend called ``name``."""
    if name == "local":
        from babelmr.backends.local import LocalBackend

        return LocalBackend(concurrency=concurrency)
    if name == "docker":
        from babelmr.backends.docker import DockerBackend

        return DockerBackend(concurrency=concurrency)
    raise BabelMRError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "get_backend"]
