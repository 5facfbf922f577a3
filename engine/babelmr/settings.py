"""Every tunable ``BABELMR_*`` environment variable, in one typed, frozen `Settings`, read once.

Modules never read ``BABELMR_*`` from ``os.environ`` themselves: they call `settings()` (cached) or take
the value as an argument. An invalid value fails with a `SettingsError` naming the variable and the fix.
docs/settings.md is generated from the field docs here (``python -m babelmr.settings``; a test keeps it
current). The worker protocol's variables (``BABELMR_TASK_SPEC``, ``BABELMR_RESULT``, ``BABELMR_JOB_DIR``)
are wire constants, not settings: they live in `babelmr.spec`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from babelmr.errors import SettingsError
from babelmr.units import parse_size

PREFIX = "BABELMR_"
COMPRESSIONS = ("none", "snappy", "lz4", "zstd", "gzip", "brotli")


def _size(text: str) -> int:
    value = parse_size(text)  # ValueError names the accepted forms
    if value <= 0:
        raise ValueError("must be more than 0 bytes")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("not a whole number") from None
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive, finite number of seconds")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("use 1 or 0 (or true/false)")


def _compression(text: str) -> str:
    if text not in COMPRESSIONS:
        raise ValueError(f"use one of {', '.join(COMPRESSIONS)}")
    return text


def _optional(text: str) -> str | None:
    return text or None


def _setting(default: Any, parse: Callable[[str], Any], doc: str, shown: str | None = None) -> Any:
    """A field of `Settings`: its default, how its variable's text is parsed, and its one-line doc."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "shown": shown})


@dataclass(frozen=True)
class Settings:
    """The engine's tunables; the variable of field ``x`` is ``BABELMR_X``."""

    read_threads: int = _setting(8, _positive, "Worker: input files opened and byte ranges copied at once.")
    decode_threads: int = _setting(4, _positive, "Worker: input files decoded at once (each holds its prebuffered "
                                   "column chunks and a batch in memory).")
    copy_column_chunks: bool = _setting(True, _flag, "Worker: copy Parquet column chunks into the program's Parquet "
                                        "input without decoding when possible; 0 always decodes.")
    row_group_bytes: int = _setting(64 << 20, _size, "Worker: a partition's row group of the exported file ends "
                                    "once this many bytes are buffered.", "64MiB")
    export_buffer: int = _setting(64 << 20, _size, "Worker: bytes of output batches the exporter holds over all "
                                  "partitions before it flushes them all.", "64MiB")
    program_parquet_compression: str = _setting("none", _compression, "Worker: compression of the Parquet file "
                                                 "a program reads (none is fastest; lz4/zstd save /tmp space).")
    workdir: str | None = _setting(None, _optional, "local/inline backends: folder for the tasks' temporary "
                                   "working directories (`babelmr run --workdir` overrides; default: the "
                                   "system's temporary folder).")
    task_tmp: str | None = _setting(None, _optional, "docker backend: host folder under which each task's /tmp "
                                    "(disk-backed, limited to the ephemeral storage) is made; default: the "
                                    "system's temporary folder.")
    config: str | None = _setting(None, _optional, "The config file (prices); default "
                                  "$XDG_CONFIG_HOME/babelmr/config.toml or ~/.config/babelmr/config.toml.")
    docker: str | None = _setting(None, _optional, "`babelmr image`: the docker CLI to build with (default: the "
                                  "first on PATH that builds with BuildKit).")
    debian_mirror: str = _setting("http://deb.debian.org/debian", str, "`babelmr image base`: the Debian mirror "
                                  "debootstrap uses when debian:bookworm-slim cannot be pulled.")

    sort_run_bytes: int = _setting(48 << 20, _size, "Worker, `sort`: Arrow bytes sorted in memory at once; each "
                                   "sorted run is spilled to the task's disk.", "48MiB")
    sort_merge_batch_bytes: int = _setting(1 << 20, _size, "Worker, `sort`: bytes read back from each run per "
                                           "merge step.", "1MiB")
    sort_max_fanin: int = _setting(128, _positive, "Worker, `sort`: runs merged at once; more are merged in "
                                   "several passes.")
    warm_read_timeout: float = _setting(30.0, _seconds, "Worker, `warm`: seconds a warm program may take to read "
                                        "its first task before it counts as not speaking the protocol.")
    heartbeat_seconds: float = _setting(2.0, _seconds, "Coordinator: seconds between heartbeats in the store.")
    heartbeat_stale_seconds: float = _setting(20.0, _seconds, "`babelmr status/resume`: a coordinator whose "
                                              "heartbeat is older than this many seconds counts as dead.")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``environ`` (default: this process's environment); unset variables keep defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = variable(f.name)
            text = environ.get(name)
            if text is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](text)
            except ValueError as e:
                raise SettingsError(f"{name}={text!r} is invalid: {e}; {f.metadata['doc']} Unset it for the "
                                    f"default ({describe_default(f.name)}), see docs/settings.md") from None
        return cls(**values)


def variable(name: str) -> str:
    """The environment variable of the `Settings` field ``name``."""
    return PREFIX + name.upper()


def describe_default(name: str) -> str:
    """How docs show the default of field ``name``."""
    f = next(f for f in fields(Settings) if f.name == name)
    if f.metadata["shown"]:
        return f.metadata["shown"]
    if isinstance(f.default, bool):
        return "1" if f.default else "0"
    return "unset" if f.default is None else str(f.default)


_current: Settings | None = None
_lock = threading.Lock()


def settings() -> Settings:
    """The process's settings, read from the environment on first use (then cached)."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = Settings.from_environ()
    return _current


def reload() -> Settings:
    """Read the environment again, e.g. after a test changed a variable."""
    global _current
    with _lock:
        _current = Settings.from_environ()
    return _current


@contextlib.contextmanager
def replaced(**changes: Any) -> Iterator[Settings]:
    """The settings with ``changes`` (field names) while the block runs, for tests and benchmarks."""
    global _current
    before = settings()
    _current = replace(before, **changes)
    try:
        yield _current
    finally:
        _current = before


def worker_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker tunables (their doc starts with "Worker") set in ``environ`` (default: this process's).

    Container backends pass them to their tasks, so a tunable set for a run means the same on every backend.
    """
    environ = os.environ if environ is None else environ
    names = [variable(f.name) for f in fields(Settings) if f.metadata["doc"].startswith("Worker")]
    return {name: environ[name] for name in names if name in environ}


def markdown() -> str:
    """docs/settings.md: every setting in one table."""
    lines = [
        "# Settings",
        "",
        "Tunables are environment variables, read once per process (the coordinator's and each worker's; the",
        "local backend's workers inherit the coordinator's environment; docker and Lambda-emulator tasks get the",
        "AWS_* variables and the *Worker* tunables set in the coordinator's environment; a function deployed to",
        "AWS Lambda reads its own configuration). An invalid value stops babelmr with a message naming the variable.",
        "Generated from `engine/babelmr/settings.py` by `python -m babelmr.settings > docs/settings.md`.",
        "",
        "| Variable | Type | Default | What it does |",
        "|---|---|---|---|",
    ]
    for f in fields(Settings):
        kind = {_size: "size (bytes, or e.g. 64MiB)", _positive: "integer ≥ 1", _flag: "flag (1/0)",
                _seconds: "seconds",
                _compression: "one of " + ", ".join(COMPRESSIONS), _optional: "path", str: "URL"}[f.metadata["parse"]]
        lines.append(f"| `{variable(f.name)}` | {kind} | `{describe_default(f.name)}` | {f.metadata['doc']} |")
    lines += [
        "",
        "Not settings but the worker protocol (`babelmr.spec`): `BABELMR_TASK_SPEC` (the task spec a container",
        "task reads), `BABELMR_RESULT` (the marker of the result line it prints) and `BABELMR_JOB_DIR` (set in an",
        "image: where it keeps the job's folder, what `{job_dir}` means there).",
        "",
    ]
    return "\n".join(lines)


def help_text() -> str:
    """One line per setting for ``babelmr --help``."""
    return "\n".join(f"{variable(f.name)} (default {describe_default(f.name)})" for f in fields(Settings))


if __name__ == "__main__":
    print(markdown(), end="")
