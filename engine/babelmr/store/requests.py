"""Counts of the object-store requests this process makes, by kind (for the cost report).

The engine counts where it makes a request: the store's methods, the importer's file opens and reads, the
exporter's upload. Some requests are made inside pyarrow's S3 filesystem; those are estimated from what the
engine asks for (documented in docs/dashboard.md, "What is counted"):

- an upload through ``open_output`` / ``upload_file``: one PUT when it fits in one part (up to 10 MiB,
  pyarrow's part size), else ``parts + 2`` (create, parts, complete), all billed as PUT-class requests;
- opening an input file: one HEAD; reading its Parquet footer: one GET;
- decoding Parquet row groups: one GET per 32 MiB read (pyarrow's pre-buffer coalesces ranges up to that);
- a CSV file: one GET per read block; a column-chunk copy: one GET per extent read (exact).

Counts are the same whether the store is a local folder or S3: on a local store they are the requests the
same run would make on S3, which is what the Lambda estimate prices.
"""

from __future__ import annotations

import math
import threading
from collections import Counter

KINDS = ("GET", "PUT", "LIST", "HEAD", "COPY", "DELETE")
PART_BYTES = 10 << 20  # pyarrow's S3 multipart part size
COALESCE_BYTES = 32 << 20  # pyarrow's pre-buffer range size limit

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def count(kind: str, n: int = 1) -> None:
    """Add ``n`` requests of ``kind`` (one of KINDS)."""
    if n:
        with _lock:
            _counts[kind] += n


def count_upload(size: int) -> None:
    """The PUT-class requests of a streamed upload of ``size`` bytes (see the module docstring)."""
    parts = math.ceil(size / PART_BYTES)
    count("PUT", 1 if parts <= 1 else parts + 2)


def count_ranged_reads(size: int, chunk: int = COALESCE_BYTES) -> None:
    """GETs of reading ``size`` bytes in ranges of at most ``chunk`` bytes (at least one)."""
    count("GET", max(1, math.ceil(size / chunk)))


def snapshot() -> dict[str, int]:
    """The counts so far, every kind present."""
    with _lock:
        return {k: _counts.get(k, 0) for k in KINDS}


def reset() -> None:
    """Start counting from zero (a worker does this at the start of each task attempt)."""
    with _lock:
        _counts.clear()
