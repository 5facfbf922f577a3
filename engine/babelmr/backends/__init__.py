"""Backends run task specs: local processes (default), Docker containers, AWS Lambda, or in-process.

Each is a small class implementing `Backend` and declaring its own options (`Backend.Options`, a frozen
dataclass); `REGISTRY` names the class of each backend (imported on first use), `get_backend(name, **options)`
builds one.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from babelmr.backends.base import Backend, BackendOptions
from babelmr.backends.containers import ContainerLimits
from babelmr.errors import BabelMRError

log = logging.getLogger(__name__)

# name -> "module:class"; a backend module is imported only when its backend is used
REGISTRY: dict[str, str] = {
    "local": "babelmr.backends.local:LocalBackend",
    "docker": "babelmr.backends.docker:DockerBackend",
    "lambda": "babelmr.backends.aws_lambda:LambdaBackend",
    "inline": "babelmr.backends.inline:InlineBackend",
}
BACKENDS = tuple(REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The class of the backend called ``name``."""
    if name not in REGISTRY:
        raise BabelMRError(f"unknown backend {name!r}: use one of {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def get_backend(name: str, **options: Any) -> Backend:
    """The backend called ``name``, built from the options its class declares (``concurrency``, ``limits``, ...).

    Options another backend declares are ignored, so one command line serves every backend; an option no
    backend declares is an error (a typo).
    """
    cls = backend_class(name)
    own = cls.option_names()
    foreign = {k for k in options if k not in own}
    if foreign:
        known = set().union(*(backend_class(n).option_names() for n in REGISTRY))
        if unknown := sorted(foreign - known):
            raise BabelMRError(f"backend {name!r}: unknown option(s) {unknown}: it takes {sorted(own)}")
        given = sorted(k for k in foreign if options[k] is not None)
        if given:
            log.debug("backend %s ignores option(s) %s (other backends' options)", name, given)
    return cls.from_options(cls.Options(**{k: v for k, v in options.items() if k in own}))


__all__ = ["BACKENDS", "REGISTRY", "Backend", "BackendOptions", "ContainerLimits", "backend_class", "get_backend"]
