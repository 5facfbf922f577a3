"""Backends run task specs: local processes (default), Docker containers, AWS Lambda, or in-process.

Each is a small class implementing `Backend`; `get_backend(name)` picks one.
"""

from __future__ import annotations

from babelmr.backends.base import Backend
from babelmr.backends.containers import ContainerLimits
from babelmr.errors import BabelMRError

BACKENDS = ("local", "docker", "lambda", "inline")


def get_backend(name: str, *, concurrency: int | None = None, limits: ContainerLimits | None = None,
                emulators: int | None = None) -> Backend:
    """The backend called ``name``; ``limits`` apply to container backends, ``emulators`` to lambda."""
    if name == "local":
        from babelmr.backends.local import LocalBackend

        return LocalBackend(concurrency=concurrency)
    if name == "docker":
        from babelmr.backends.docker import DockerBackend

        return DockerBackend(concurrency=concurrency, limits=limits)
    if name == "lambda":
        from babelmr.backends.aws_lambda import LambdaBackend

        return LambdaBackend(concurrency=concurrency, limits=limits, emulators=emulators)
    if name == "inline":
        from babelmr.backends.inline import InlineBackend

        return InlineBackend(concurrency=concurrency)
    raise BabelMRError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "get_backend"]
