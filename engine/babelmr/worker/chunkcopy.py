"""Parquet in, Parquet for the program: copy the compressed column chunks instead of decoding them.

When a program reads Parquet and its input is Parquet whose selected columns need no conversion, the
task's input file is put together from the column chunks of the row groups the task reads, byte for
byte, under a new footer: no page is decompressed, decoded or encoded again. This is how parquet-mr's
``ParquetFileWriter.appendRowGroups`` (``parquet-tools merge``, ``ParquetRewriter``) joins files.

Copying applies only when the result reads exactly as the decoding import would write it; otherwise
``plan`` says why not and the importer decodes. The conditions: every selected column is flat (no
nested types) and not an INT96 timestamp; every file has the same Parquet type for each selected column;
no file is encrypted or was written by a parquet-mr older than 1.2.9 (whose chunk sizes leave out the
dictionary page header). The footer carries the plain Arrow schema (``ARROW:schema``), so view,
dictionary and large types read back as their plain types, as after decoding. After writing, the file's
schema is read back and compared with the decoding import's; any difference discards the copy.

Page indexes, bloom filters and sorting columns are not copied (their offsets point into the source);
statistics are. Memory is bounded: at most ``BABELMR_READ_THREADS`` extents of ``EXTENT_BYTES`` are in flight.
Extents of local files are copied by the kernel (``os.copy_file_range``) without passing through this process;
where the kernel refuses (across filesystems on some kernels, other platforms) they are read and written.
Set ``BABELMR_COPY_COLUMN_CHUNKS=0`` to always decode.
"""

from __future__ import annotations

import base64
import errno
import itertools
import os
import re
import stat
import struct
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from babelmr import __version__
from babelmr.settings import settings
from babelmr.store import requests
from babelmr.worker import thrift
from babelmr.worker.thrift import I16, I32, I64, LIST, STRUCT, Struct

EXTENT_BYTES = 8 << 20  # the largest single read: bounds memory per thread
MAGIC = b"PAR1"
_PARQUET_MR = re.compile(rb"parquet-mr version (\d+)\.(\d+)\.(\d+)")

# field ids of parquet.thrift (https://github.com/apache/parquet-format/blob/master/src/main/thrift/parquet.thrift)
INT96 = 3  # Type.INT96
FMD_VERSION, FMD_SCHEMA, FMD_NUM_ROWS, FMD_ROW_GROUPS, FMD_KV, FMD_CREATED_BY, FMD_COLUMN_ORDERS, FMD_ENCRYPTION = (
    1, 2, 3, 4, 5, 6, 7, 8)
SE_TYPE, SE_NAME, SE_NUM_CHILDREN, SE_FIELD_ID = 1, 4, 5, 9
SE_SIGNATURE = (1, 2, 3, 6, 7, 8, 10)  # type, type_length, repetition, converted type, scale, precision, logical
RG_COLUMNS, RG_TOTAL_BYTE_SIZE, RG_NUM_ROWS, RG_FILE_OFFSET, RG_TOTAL_COMPRESSED_SIZE, RG_ORDINAL = 1, 2, 3, 5, 6, 7
CC_FILE_PATH, CC_FILE_OFFSET, CC_META_DATA, CC_CRYPTO = 1, 2, 3, 8
CC_PAGE_INDEX = (4, 5, 6, 7)  # offset index offset and length, column index offset and length
CMD_TOTAL_UNCOMPRESSED, CMD_TOTAL_COMPRESSED = 6, 7
CMD_DATA_PAGE, CMD_INDEX_PAGE, CMD_DICTIONARY_PAGE = 9, 10, 11
CMD_BLOOM_FILTER = (14, 15)  # offset, length


@dataclass
class Source:
    """An open Parquet file of a task's input: its handle, metadata and the row groups to copy."""

    uri: str
    handle: pa.NativeFile
    metadata: pq.FileMetaData
    row_groups: list[int]
    cached: list[tuple[int, bytes]] = field(default_factory=list)  # bytes already read: (offset, bytes)


@dataclass
class _Chunk:
    source: Source
    start: int  # the first byte of the column chunk (its dictionary page, if it has one)
    length: int
    column: Struct  # its ColumnChunk


def thrift_footer(metadata: pq.FileMetaData, row_groups: Collection[int] | None = None,
                  columns: Collection[str] | None = None) -> Struct:
    """The file's FileMetaData struct (serialized again by pyarrow: no second read of the file).

    With ``row_groups``, only those row groups are decoded and, of them, only the ColumnChunks of the top-level
    ``columns`` (None: all); every other row group and column chunk is skipped and stands as None in its list.
    Decoding costs about a footer's size in Python, and most of a footer are the chunks a task does not copy.
    """
    sink = pa.BufferOutputStream()
    metadata.write_metadata_file(sink)
    buf = sink.getvalue().to_pybytes()
    size = struct.unpack_from("<I", buf, len(buf) - 8)[0]
    buf = buf[len(buf) - 8 - size:len(buf) - 8]
    if row_groups is None:
        return thrift.loads(buf)
    reader = thrift._Reader(buf)
    footer = Struct()
    last = 0
    try:
        while (field := reader.field_header(last)) is not None:
            wire, last = field
            if last == FMD_ROW_GROUPS and wire == thrift.LIST and footer.get(FMD_SCHEMA) is not None:
                positions = _positions(footer.get(FMD_SCHEMA).items, columns)
                footer.set(last, wire, _some(reader, set(row_groups), partial(_row_group, reader, positions)))
            elif wire in (thrift.TRUE, thrift.FALSE):
                footer.set(last, thrift.TRUE, wire == thrift.TRUE)
            else:
                footer.set(last, wire, reader.value(wire))
    except (IndexError, struct.error) as e:
        raise thrift.ThriftError(f"truncated Thrift struct at byte {reader.pos} of {len(buf)}") from e
    return footer


def _positions(elements: list[Struct], columns: Collection[str] | None) -> set[int] | None:
    """The indexes in each row group of the chunks of top-level ``columns``; None (all) for a nested schema."""
    top = elements[1:]
    if columns is None or len(top) != (elements[0].get(SE_NUM_CHILDREN) or 0):
        return None
    wanted = set(columns)
    return {i for i, e in enumerate(top) if _name(e) in wanted}


def _some(reader: Any, wanted: set[int] | None, decode: Callable[[], Any]) -> thrift.List:
    """The list at ``reader``: elements in ``wanted`` (None: all) decoded by ``decode``, the others skipped."""
    header = reader.byte()
    size, etype = header >> 4, header & 0x0F
    if size == 15:
        size = reader.varint()
    items: list[Any] = []
    for i in range(size):
        if etype == STRUCT and (wanted is None or i in wanted):
            items.append(decode())
        else:
            reader.skip(etype)
            items.append(None)
    return thrift.List(etype, items)


def _row_group(reader: Any, positions: set[int] | None) -> Struct:
    """The RowGroup struct at ``reader``, with only the ColumnChunks at ``positions`` (None: all) decoded."""
    rg = Struct()
    last = 0
    while (field := reader.field_header(last)) is not None:
        wire, last = field
        if last == RG_COLUMNS and wire == thrift.LIST:
            rg.set(last, wire, _some(reader, positions, reader.struct))
        elif wire in (thrift.TRUE, thrift.FALSE):
            rg.set(last, thrift.TRUE, wire == thrift.TRUE)
        else:
            rg.set(last, wire, reader.value(wire))
    return rg


def _name(element: Struct) -> str:
    return element.get(SE_NAME, b"").decode()


def _leaves(top: list[Struct], position: dict[str, int], columns: list[str]) -> list[Struct] | str:
    """The selected columns' schema elements (without field ids), or why they cannot be copied."""
    if missing := [c for c in columns if c not in position]:
        return f"it has no column(s) {missing}"
    plain = []
    for c in columns:  # a field id would become field metadata, which the decoding import does not write
        e = top[position[c]].copy()
        e.pop(SE_FIELD_ID)
        plain.append(e)
    return plain


def _old_parquet_mr(created_by: bytes | None) -> bool:
    m = _PARQUET_MR.search(created_by or b"")
    return m is not None and tuple(int(g) for g in m.groups()) < (1, 2, 9)


def chunk_start(meta: Struct) -> int:
    """The first byte of a column chunk (its ColumnMetaData ``meta``): its dictionary page, if it has one."""
    start = meta.get(CMD_DATA_PAGE)
    dictionary = meta.get(CMD_DICTIONARY_PAGE)
    if dictionary and 0 < dictionary < start:
        start = dictionary
    return start


@dataclass
class Plan:
    """What to copy: the output schema elements and, per output row group, its column chunks."""

    schema: pa.Schema
    elements: list[Struct]
    column_orders: list[Any] | None
    row_groups: list[tuple[int, list[_Chunk]]]  # (rows, chunks in column order)

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self.row_groups)

    @property
    def origins(self) -> list[str]:
        """The source file of each row group written."""
        return [group[0].source.uri if group else "" for _, group in self.row_groups]


def plan(sources: list[Source], columns: list[str] | None, schema: pa.Schema) -> Plan | str:
    """How to copy ``columns`` of ``sources`` into a file reading back as ``schema``, or why not."""
    if not settings().copy_column_chunks:
        return "disabled by BABELMR_COPY_COLUMN_CHUNKS=0"
    if any(pa.types.is_nested(f.type) for f in schema):
        return "a selected column is nested"
    names = columns or schema.names
    elements: list[Struct] | None = None
    signature: list[tuple[Any, ...]] = []
    column_orders: list[Any] | None = None
    groups: list[tuple[int, list[_Chunk]]] = []
    for source in sources:
        footer = thrift_footer(source.metadata, source.row_groups, names)
        if footer.get(FMD_ENCRYPTION) is not None:
            return f"{source.uri} is encrypted"
        if _old_parquet_mr(footer.get(FMD_CREATED_BY)):
            return f"{source.uri} was written by a parquet-mr older than 1.2.9"
        schema_elements = footer.get(FMD_SCHEMA).items
        top = schema_elements[1:]
        if len(top) != (schema_elements[0].get(SE_NUM_CHILDREN) or 0):
            return f"{source.uri}: it has nested columns"
        position = {_name(e): i for i, e in enumerate(top)}  # a leaf's index in the schema and in each row group
        leaves = _leaves(top, position, names)
        if isinstance(leaves, str):
            return f"{source.uri}: {leaves}"
        if any(e.get(SE_TYPE) == INT96 for e in leaves):
            return f"{source.uri} has an INT96 timestamp"
        mine = [tuple(repr(e.fields.get(f)) for f in SE_SIGNATURE) for e in leaves]
        if elements is None:
            elements, signature = leaves, mine
            orders = footer.get(FMD_COLUMN_ORDERS)
            if orders is not None:
                column_orders = [orders.items[position[c]] for c in names]
        elif mine != signature:
            return f"{source.uri} stores a selected column with another Parquet type than {sources[0].uri}"
        row_groups = footer.get(FMD_ROW_GROUPS).items
        for g in source.row_groups:
            rg = row_groups[g]
            chunks = []
            for c in names:
                column = rg.get(RG_COLUMNS).items[position[c]]
                meta = column.get(CC_META_DATA)
                if column.get(CC_FILE_PATH) or column.get(CC_CRYPTO) is not None or meta is None:
                    return f"{source.uri}: row group {g} keeps a column chunk in another file or encrypted"
                chunks.append(_Chunk(source, chunk_start(meta), meta.get(CMD_TOTAL_COMPRESSED), column))
            groups.append((rg.get(RG_NUM_ROWS), chunks))
    if elements is None:
        return "no files"
    return Plan(schema, elements, column_orders, groups)


def _extents(chunks: list[_Chunk]) -> Iterator[tuple[Source, int, int]]:
    """Byte ranges to read, in output order: adjacent chunks of one file merged, split at EXTENT_BYTES."""
    run: list[Any] | None = None
    for c in chunks:
        if run and run[0] is c.source and run[1] + run[2] == c.start:
            run[2] += c.length
        else:
            if run:
                yield from _split(*run)
            run = [c.source, c.start, c.length]
    if run:
        yield from _split(*run)


def _split(source: Source, start: int, length: int) -> Iterator[tuple[Source, int, int]]:
    for offset in range(start, start + length, EXTENT_BYTES):
        yield source, offset, min(EXTENT_BYTES, start + length - offset)


def _read(source: Source, offset: int, length: int) -> bytes:
    for start, buf in source.cached:  # e.g. a small exported file's row groups, read with its partition footer
        if start <= offset and offset + length <= start + len(buf):
            return buf[offset - start:offset - start + length]
    requests.count("GET")  # one ranged read per extent
    buf = source.handle.read_at(length, offset)
    if len(buf) != length:
        raise OSError(f"{source.uri}: short read at byte {offset} ({len(buf)} of {length} bytes)")
    return buf


def _local_path(uri: str) -> str | None:
    """The path of a source file on this machine's disk; None for an object store's."""
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    return None if "://" in uri else uri


# copy_file_range refusing a pair of files: across filesystems (before Linux 5.3, and again since 5.19 for
# some), a filesystem or file kind without it, or a sandbox that forbids the call. The bytes are then read.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EPERM,
                   errno.EBADF}


class _KernelCopy:
    """Extents of local source files copied by the kernel (``os.copy_file_range``): no bytes pass through Python.

    One source file is open at a time (extents come file by file). Where the call is missing or refused, every
    later extent goes through `_read` instead.
    """

    def __init__(self, out: int):
        self.out = out
        self.usable = hasattr(os, "copy_file_range")
        self.source: Source | None = None
        self.fd: int | None = None

    def wants(self, source: Source) -> bool:
        """Whether ``source``'s extents are copied here (local files), not read ahead in threads."""
        return self.usable and not source.cached and _local_path(source.uri) is not None

    def _open(self, source: Source) -> int | None:
        if source is not self.source:
            self.close()
            self.source = source
            try:
                fd = os.open(_local_path(source.uri) or "", os.O_RDONLY)
            except OSError:  # unreadable by name (the handle was opened otherwise): read through the handle
                return None
            if stat.S_ISREG(os.fstat(fd).st_mode):
                self.fd = fd
            else:  # a pipe or device: no offsets to copy from
                os.close(fd)
        return self.fd

    def copy(self, source: Source, offset: int, length: int) -> int:
        """Copy ``length`` bytes at ``offset`` to the output's end; returns how many the kernel copied."""
        fd = self._open(source) if self.usable else None
        if fd is None:
            return 0
        requests.count("GET")  # what the same extent costs on S3
        done = 0
        while done < length:
            try:
                n = os.copy_file_range(fd, self.out, length - done, offset + done)
            except OSError as e:
                if e.errno not in _NO_KERNEL_COPY:
                    raise
                self.usable = False  # the rest is read (and written) by this process
                return done
            if n == 0:
                raise OSError(f"{source.uri}: short read at byte {offset + done} ({done} of {length} bytes)")
            done += n
        return done

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.source, self.fd = None, None


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write(p: Plan, path: str, threads: int) -> int:
    """Write the planned file to ``path``; returns its rows.

    Extents of local files are copied by the kernel; others are read ahead in ``threads`` threads.
    """
    # A row group's chunks are written in their source's order, not the columns' (the footer says where each
    # is): the selected columns of a file are often neighbours there, and neighbours are read in one range.
    chunks = [c for _, group in p.row_groups for c in sorted(group, key=lambda c: c.start)]
    new_start: dict[int, int] = {}  # id(chunk) -> its offset in the output
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    kernel = _KernelCopy(out)
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            _write_all(out, MAGIC)
            position = len(MAGIC)
            extents = _extents(chunks)

            def start(extent: tuple[Source, int, int]) -> tuple[tuple[Source, int, int], Future[bytes] | None]:
                return extent, None if kernel.wants(extent[0]) else pool.submit(_read, *extent)

            pending = deque(start(extent) for extent in itertools.islice(extents, max(1, threads)))
            order = iter(chunks)
            chunk = next(order, None)
            consumed = 0  # bytes of ``chunk`` already written
            while pending:
                (source, offset, length), future = pending.popleft()
                if future is not None:
                    _write_all(out, future.result())
                elif (copied := kernel.copy(source, offset, length)) < length:
                    _write_all(out, _read(source, offset + copied, length - copied))
                if (extent := next(extents, None)) is not None:
                    pending.append(start(extent))
                left = length
                while left and chunk is not None:  # which chunks the bytes just written belong to
                    if consumed == 0:
                        new_start[id(chunk)] = position
                    step = min(left, chunk.length - consumed)
                    consumed, position, left = consumed + step, position + step, left - step
                    if consumed == chunk.length:
                        chunk, consumed = next(order, None), 0
        footer = thrift.dumps(_footer(p, new_start, position))
        _write_all(out, footer + struct.pack("<I", len(footer)) + MAGIC)
    finally:
        kernel.close()
        os.close(out)
    return p.rows


def _footer(p: Plan, new_start: dict[int, int], end: int) -> Struct:
    row_groups = []
    for ordinal, (rows, group) in enumerate(p.row_groups):
        columns = [moved_column_chunk(c.column, new_start[id(c)]) for c in group]
        metas = [c.get(CC_META_DATA) for c in columns]
        rg = Struct()
        rg.set(RG_COLUMNS, LIST, thrift.List(STRUCT, columns))
        rg.set(RG_TOTAL_BYTE_SIZE, I64, sum(m.get(CMD_TOTAL_UNCOMPRESSED) for m in metas))
        rg.set(RG_NUM_ROWS, I64, rows)
        rg.set(RG_FILE_OFFSET, I64, min(chunk_start(m) for m in metas) if metas else end)
        rg.set(RG_TOTAL_COMPRESSED_SIZE, I64, sum(m.get(CMD_TOTAL_COMPRESSED) for m in metas))
        if ordinal < 1 << 15:
            rg.set(RG_ORDINAL, I16, ordinal)
        row_groups.append(rg)
    root = Struct()
    root.set(SE_NAME, thrift.BINARY, b"schema")
    root.set(SE_NUM_CHILDREN, I32, len(p.elements))
    arrow_schema = Struct()
    arrow_schema.set(1, thrift.BINARY, b"ARROW:schema")
    arrow_schema.set(2, thrift.BINARY, base64.b64encode(p.schema.serialize().to_pybytes()))
    footer = Struct()
    footer.set(FMD_VERSION, I32, 2)
    footer.set(FMD_SCHEMA, LIST, thrift.List(STRUCT, [root, *p.elements]))
    footer.set(FMD_NUM_ROWS, I64, p.rows)
    footer.set(FMD_ROW_GROUPS, LIST, thrift.List(STRUCT, row_groups))
    footer.set(FMD_KV, LIST, thrift.List(STRUCT, [arrow_schema]))
    footer.set(FMD_CREATED_BY, thrift.BINARY, f"babelmr version {__version__} (column chunks copied)".encode())
    if p.column_orders is not None:
        footer.set(FMD_COLUMN_ORDERS, LIST, thrift.List(STRUCT, p.column_orders))
    return footer


def moved_column_chunk(column: Struct, start: int) -> Struct:
    """A copy of the ColumnChunk with its pages at ``start``, without page index or bloom filter."""
    column, meta = column.copy(), column.get(CC_META_DATA).copy()
    shift = start - chunk_start(meta)
    for fid in (CMD_DATA_PAGE, CMD_INDEX_PAGE, CMD_DICTIONARY_PAGE):
        if meta.get(fid):
            meta.set(fid, I64, meta.get(fid) + shift)
    for fid in CMD_BLOOM_FILTER:
        meta.pop(fid)
    column.set(CC_META_DATA, STRUCT, meta)
    if column.get(CC_FILE_OFFSET):
        column.set(CC_FILE_OFFSET, I64, column.get(CC_FILE_OFFSET) + shift)
    for fid in CC_PAGE_INDEX:
        column.pop(fid)
    return column


def first_unreadable(path: str, origins: list[str]) -> tuple[str, str] | None:
    """The source file and error of the first row group of a copied file that does not decode, if any.

    Copying does not decode pages, so corrupt pages reach the program; when it fails, this says whether
    its input was at fault (row group by row group: memory stays bounded).
    """
    try:
        file = pq.ParquetFile(path)
        for g in range(file.num_row_groups):
            try:
                for _ in file.iter_batches(row_groups=[g]):
                    pass
            except (pa.ArrowException, OSError) as e:
                return (origins[g] if g < len(origins) else path), str(e)
    except (pa.ArrowException, OSError) as e:
        return path, str(e)
    return None


def reads_back_as(path: str, schema: pa.Schema) -> bool:
    """Whether the written file's Arrow schema is ``schema`` (field metadata aside)."""
    try:
        written = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError):
        return False
    return written.remove_metadata().equals(schema.remove_metadata())
