"""CSV and text files cut into byte ranges, each read with ranged reads, every line read exactly once.

Hadoop's rule (TextInputFormat): a range ``[start, end)`` reads the lines that *start* in ``(start, end]``
(the first range also the line at 0): it skips to just after the first line break at or after ``start``
(unless ``start`` is 0) and reads up to and including the line that crosses ``end``. Line breaks are
``\\n`` (so CRLF files work: the ``\\r`` stays with its line and the CSV parser drops it). With a header,
every range is read as the file's first line followed by its own lines.

A quoted value with a line break inside could be cut in two; inputs that have them say
``"csv": {"newlines_in_values": true}`` and are never split (the planner checks `splittable`).
Compressed files are never split either: a range of compressed bytes cannot be decoded alone. The planner
computes the ranges (coordinator/planner.py `_byte_ranges`); this module reads them.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pyarrow as pa

from babelmr.errors import InputError, TaskError
from babelmr.spec import FileSlice
from babelmr.store import filesystem_for

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

SCAN_BYTES = 64 << 10  # bytes read at a time while looking for a line break
READ_BYTES = 4 << 20  # bytes read at a time while streaming a range


def _line_end(f: pa.NativeFile, pos: int, size: int) -> int:
    """The offset just after the first line break at or after ``pos`` (the file's size if there is none)."""
    while pos < size:
        chunk = f.read_at(min(SCAN_BYTES, size - pos), pos)
        if not chunk:
            break
        found = chunk.find(b"\n")
        if found >= 0:
            return pos + found + 1
        pos += len(chunk)
    return size


class RangeStream(io.RawIOBase):
    """The header line (if any) then the bytes ``[begin, finish)`` of an open file, read in ranges."""

    def __init__(self, f: pa.NativeFile, header: bytes, begin: int, finish: int):
        self._f, self._pending, self._pos, self._finish = f, header, begin, finish

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(READ_BYTES), b""))
        if self._pending:
            out, self._pending = self._pending[:n], self._pending[n:]
            return out
        want = min(n, READ_BYTES, self._finish - self._pos)
        if want <= 0:
            return b""
        out = self._f.read_at(want, self._pos)
        if len(out) < want:
            raise OSError(f"short read at byte {self._pos}: the file changed while it was read")
        self._pos += len(out)
        return out

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")  # any writable buffer, written as bytes
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def open_range(piece: FileSlice, header: bool, what: str, *, rows: bool = True) -> RangeStream | None:
    """A stream of the lines of ``piece``'s byte range (after the header line when ``header``), or None
    when no line starts in the range; with ``rows`` False, of the header line alone."""
    fs, path = filesystem_for(piece.uri)
    try:
        f = fs.open_input_file(path)
        size = f.size()
        start, end = piece.start, size if piece.end is None else min(piece.end, size)
        header_end = _line_end(f, 0, size) if header else 0
        begin = max(header_end, 0 if start == 0 else _line_end(f, start, size))
        finish = size if end >= size else _line_end(f, end, size)
        head = f.read_at(header_end, 0) if header_end else b""
    except FileNotFoundError:
        raise InputError(f"{what}: CSV file {piece.uri} does not exist (any more)") from None
    except OSError as e:  # a network error on S3: worth another attempt
        raise TaskError(f"{what}: reading CSV file {piece.uri} failed: {e}") from None
    if not rows:
        finish = begin
    elif begin >= finish and start > 0:
        f.close()
        return None
    if head and not head.endswith(b"\n"):  # a header-only file without a final line break
        head += b"\n"
    return RangeStream(f, head, begin, max(begin, finish))
