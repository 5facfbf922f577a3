"""Bounded text: error messages, log tails and records never grow with what a program printed.

One 30 MB line of stderr once made a run record 94 MB; everything babelmr keeps from a program's
output goes through here and says what it cut.
"""

from __future__ import annotations

import os

MAX_LINE = 2000  # characters of one line kept in an error message
MAX_ERROR = 16 * 1024  # characters of one error message kept in a run record
MAX_LOG = 1 << 20  # bytes of a task's stdout/stderr copied to the store (the tail)
TAIL_READ = 256 * 1024  # bytes read from the end of a log for an error message


def cut_line(line: str, limit: int = MAX_LINE) -> str:
    """``line``, or its head and tail with a note of how many characters were cut between them."""
    if len(line) <= limit:
        return line
    head, tail = limit * 3 // 4, limit // 4
    return f"{line[:head]} [... babelmr cut {len(line) - head - tail} characters of this line ...] {line[-tail:]}"


def bounded(text: str | None, limit: int = MAX_ERROR) -> str | None:
    """``text`` with long lines cut and at most ``limit`` characters (its head and tail), saying so."""
    if text is None:
        return None
    if len(text) <= limit and all(len(line) <= MAX_LINE for line in text.splitlines()):
        return text
    text = "\n".join(cut_line(line) for line in text.splitlines())
    if len(text) <= limit:
        return text
    head, tail = limit // 2, limit // 2
    return f"{text[:head]}\n[... babelmr cut {len(text) - head - tail} characters ...]\n{text[-tail:]}"


def read_tail(path: str, limit: int = TAIL_READ) -> tuple[bytes, int]:
    """The last ``limit`` bytes of a file and how many bytes before them were skipped."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - limit)
        f.seek(start)
        return f.read(), start


def log_for_store(path: str, limit: int = MAX_LOG) -> bytes:
    """What of a task's log is copied to the store: all of it, or a note and its last ``limit`` bytes."""
    data, skipped = read_tail(path, limit)
    if not skipped:
        return data
    return f"[babelmr: the first {skipped} bytes of this log were cut; the last {len(data)} follow]\n".encode() + data
