"""Per-partition footers: a reducer reads the metadata of its own row groups, not the whole footer.

An exported file's Parquet footer lists every row group, so it grows with the partition count, and
parsing it in every reducer made a reducer's import grow with it too (518 ms per task at 1,000
partitions against 75 ms at 100). The exporter therefore appends, after the data and before the
final footer, one *partition footer* per partition: a Parquet FileMetaData (schema, Arrow schema,
created_by, column orders) restricted to that partition's row groups, whose column chunk offsets are
those of the file. A fixed-width table and trailer locate them:

    PAR1 | row groups | (pyarrow's footer) | partition footer 0 .. P-1 | table | trailer | footer | len | PAR1

    table:   P entries of (offset u64, length u32), little-endian: partition p's footer bytes
    trailer: (table offset u64, P u32, b"BMRX"): the 16 bytes just before the final footer

The final footer is the whole file's, so every Parquet reader reads the file as before (the bytes
between the last column chunk and the footer are never referenced). A reducer reads the file's last
64 KiB and, when the footer is larger than that (many partitions), three small ranged reads more: the
trailer, its table entry and its partition footer, whatever the partition count. pyarrow then reads
the data with that partition footer as the file's metadata (``pq.ParquetFile(..., metadata=...)``).
Files without the trailer (written before it existed) are read through their whole footer, as before.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from babelmr.spec import PARTITION_INDEX_KEY
from babelmr.worker import thrift
from babelmr.worker.thrift import I64, LIST, STRUCT

MAGIC = b"BMRX"
PARQUET_MAGIC = b"PAR1"
TRAILER = struct.Struct("<QI4s")  # table offset, partitions, MAGIC
ENTRY = struct.Struct("<QI")  # a partition footer's offset and length
FMD_NUM_ROWS, FMD_ROW_GROUPS, FMD_KV = 3, 4, 5  # FileMetaData's field ids (parquet.thrift)
TAIL_BYTES = 64 << 10  # read first, as Parquet readers read a footer: one S3 GET, or one pread


class PartitionIndexError(ValueError):
    """The partition footers are damaged (a truncated or corrupt file)."""


def footer_bytes(metadata: pq.FileMetaData) -> bytes:
    """The Thrift bytes of ``metadata``, as the writer put them in the file's footer."""
    sink = pa.BufferOutputStream()
    metadata.write_metadata_file(sink)
    buf = sink.getvalue().to_pybytes()
    size = struct.unpack_from("<I", buf, len(buf) - 8)[0]
    return buf[len(buf) - 8 - size:len(buf) - 8]


def partition_footers(footer: bytes, row_groups: list[list[int]], rows: list[int]) -> Iterator[bytes]:
    """Each partition's FileMetaData: ``footer``'s fields with only its row groups and rows.

    The row groups are copied as bytes (never decoded), and the key-value metadata loses the partition
    index (it lists every partition: kept, it would make each partition footer grow with their count).
    """
    found: dict[int, list[tuple[int, int]]] = {FMD_ROW_GROUPS: []}
    spans = thrift.field_spans(footer, found)  # one pass: the row groups' spans come with the fields'
    if FMD_ROW_GROUPS not in spans:
        raise thrift.ThriftError("the footer has no row groups field")
    etype, groups = thrift.STRUCT, found[FMD_ROW_GROUPS]
    parts: list[tuple[int, bytes]] = []  # (field id, its value bytes) of the fields shared by every partition
    for fid, (_, _, value, end) in sorted(spans.items()):
        if fid == FMD_KV:
            kv = thrift.loads(b"\x19" + footer[value:end] + b"\x00").get(1)  # the list as field 1 of a struct
            kept = [item for item in kv.items if item.get(1) != PARTITION_INDEX_KEY]
            parts.append((fid, thrift.value_bytes(LIST, thrift.List(STRUCT, kept))))
        elif fid not in (FMD_NUM_ROWS, FMD_ROW_GROUPS):
            parts.append((fid, footer[value:end]))
    wires = {fid: spans[fid][0] for fid in spans}
    wires.setdefault(FMD_NUM_ROWS, I64)
    for mine, count in zip(row_groups, rows, strict=True):
        fields = [*parts, (FMD_NUM_ROWS, thrift.value_bytes(I64, count)),
                  (FMD_ROW_GROUPS, thrift.list_header(etype, len(mine))
                   + b"".join(footer[groups[g][0]:groups[g][1]] for g in mine))]
        out = bytearray()
        last = 0
        for fid, encoded in sorted(fields, key=lambda f: f[0]):
            wire = LIST if fid == FMD_ROW_GROUPS else wires[fid]
            out += thrift.field_header(fid, wire, last)
            out += encoded
            last = fid
        out.append(thrift.STOP)
        yield bytes(out)


def write_index(stream: pa.NativeFile, metadata: pq.FileMetaData, row_groups: list[list[int]],
                rows: list[int]) -> None:
    """Append the partition footers, their table and trailer, and the file's footer again (see module doc)."""
    footer = footer_bytes(metadata)
    entries = bytearray()
    position = stream.tell()
    for mini in partition_footers(footer, row_groups, rows):
        stream.write(mini)
        entries += ENTRY.pack(position, len(mini))
        position += len(mini)
    stream.write(bytes(entries))
    stream.write(TRAILER.pack(position, len(row_groups), MAGIC))
    stream.write(footer)
    stream.write(struct.pack("<I", len(footer)) + PARQUET_MAGIC)


class _Tail:
    """The file's last ``TAIL_BYTES``, read at once; reads before them go to the file (one ranged read each)."""

    def __init__(self, handle: pa.NativeFile, size: int):
        self.handle = handle
        self.start = max(0, size - TAIL_BYTES)
        self.buf = self._read(size - self.start, self.start)

    def _read(self, length: int, offset: int) -> bytes:
        buf = bytes(self.handle.read_at(length, offset))
        if len(buf) != length:
            raise PartitionIndexError(f"short read at byte {offset} ({len(buf)} of {length} bytes)")
        return buf

    def read(self, length: int, offset: int) -> bytes:
        if offset >= self.start:
            return self.buf[offset - self.start:offset - self.start + length]
        return self._read(length, offset)


def read_partition(handle: pa.NativeFile, partition: int) -> tuple[pq.FileMetaData, int] | None:
    """Partition ``partition``'s metadata from its partition footer, and the file's partition count.

    The file's tail is read first: with few partitions the footer, the table and the partition footer all lie
    in it (one read, as reading a footer always took); with many, the footer is larger and the trailer, the
    table entry and the partition footer take one small read each. None: the file has no partition footers
    (it was written before they existed). Raises `PartitionIndexError` when they are damaged, or `LookupError` when
    the file has fewer partitions.
    """
    size = handle.size()
    if size < 2 * len(PARQUET_MAGIC) + 4 + TRAILER.size:
        return None
    tail = _Tail(handle, size)
    length, magic = struct.unpack("<I4s", tail.read(8, size - 8))
    trailer_at = size - 8 - length - TRAILER.size
    if magic != PARQUET_MAGIC or trailer_at < len(PARQUET_MAGIC):
        return None
    table, partitions, mark = TRAILER.unpack(tail.read(TRAILER.size, trailer_at))
    if mark != MAGIC:
        return None
    if partition >= partitions:
        raise LookupError(partitions)
    if table + ENTRY.size * partitions != trailer_at:
        raise PartitionIndexError(f"the partition table at byte {table} does not end at the trailer "
                                  f"(byte {trailer_at})")
    offset, mini_length = ENTRY.unpack(tail.read(ENTRY.size, table + ENTRY.size * partition))
    if offset + mini_length > table:
        raise PartitionIndexError(f"partition {partition}'s footer (bytes {offset}-{offset + mini_length}) "
                                  "overlaps its table")
    mini = tail.read(mini_length, offset)
    try:
        metadata = pq.read_metadata(pa.BufferReader(PARQUET_MAGIC + mini + struct.pack("<I", mini_length)
                                                    + PARQUET_MAGIC))
    except (pa.ArrowException, OSError) as e:
        raise PartitionIndexError(f"partition {partition}'s footer does not parse: {e}") from None
    return metadata, partitions
