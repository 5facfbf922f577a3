"""Thrift's compact protocol, generic and lossless: the Parquet footers that ``chunkcopy`` rewrites.

Parquet footers are Thrift structs in the compact protocol. Copying column chunks means changing a few
offsets in the source's footer and writing the rest back exactly: every field, including ones newer than
any IDL this code was written against (a new logical type, size statistics), with its wire type. An
IDL-driven codec (thriftpy2, fastparquet's) drops or retypes what its IDL does not know, and a footer
with a retyped field does not load. So this reads a struct into field id -> (wire type, value), lets
the caller edit fields by id, and writes it back in the same types. Specification:
https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

# wire types (a boolean field carries its value in its type: TRUE or FALSE)
STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
_INTS = (BYTE, I16, I32, I64)


@dataclass
class List:
    """A list or set: its element type and elements."""

    etype: int
    items: list[Any]
    kind: int = LIST


@dataclass
class Map:
    ktype: int
    vtype: int
    items: list[tuple[Any, Any]]


@dataclass
class Struct:
    """A struct as read: field id -> (wire type, value), in the order read."""

    fields: dict[int, tuple[int, Any]] = field(default_factory=dict)

    def get(self, fid: int, default: Any = None) -> Any:
        f = self.fields.get(fid)
        return default if f is None else f[1]

    def set(self, fid: int, wire: int, value: Any) -> None:
        self.fields[fid] = (wire, value)

    def pop(self, fid: int) -> None:
        self.fields.pop(fid, None)

    def copy(self) -> Struct:
        """A shallow copy: its own fields, the same values."""
        return Struct(dict(self.fields))


class ThriftError(ValueError):
    """Bytes that are not a Thrift compact struct."""


def loads(buf: bytes) -> Struct:
    """The struct encoded in ``buf``."""
    reader = _Reader(buf)
    try:
        return reader.struct()
    except (IndexError, struct.error) as e:
        raise ThriftError(f"truncated Thrift struct at byte {reader.pos} of {len(buf)}") from e


def field_spans(buf: bytes, elements: dict[int, list[tuple[int, int]]] | None = None
                ) -> dict[int, tuple[int, int, int, int]]:
    """Where each top-level field of the struct in ``buf`` lies, without decoding it.

    field id -> (wire type, start of its field header, start of its value, end). Bytes between fields are
    copied as they are: the parts of a large footer that need no edit cost no Python objects. For each list
    field whose id is a key of ``elements``, its elements' (start, end) are appended there (same pass).
    """
    reader = _Reader(buf)
    spans: dict[int, tuple[int, int, int, int]] = {}
    last = 0
    try:
        while True:
            start = reader.pos
            field = reader.field_header(last)
            if field is None:
                return spans
            wire, fid = field
            last = fid
            value = reader.pos
            if elements is not None and fid in elements and wire in (LIST, SET):
                list_header = reader.byte()
                size, etype = list_header >> 4, list_header & 0x0F
                if size == 15:
                    size = reader.varint()
                for _ in range(size):
                    begin = reader.pos
                    reader.skip(etype)
                    elements[fid].append((begin, reader.pos))
            elif wire not in (TRUE, FALSE):
                reader.skip(wire)
            spans[fid] = (wire, start, value, reader.pos)
    except (IndexError, struct.error) as e:
        raise ThriftError(f"truncated Thrift struct at byte {reader.pos} of {len(buf)}") from e


def list_spans(buf: bytes, start: int) -> tuple[int, list[tuple[int, int]]]:
    """The element type and each element's (start, end) of the list whose header is at ``start``."""
    reader = _Reader(buf)
    reader.pos = start
    try:
        header = reader.byte()
        size, etype = header >> 4, header & 0x0F
        if size == 15:
            size = reader.varint()
        items = []
        for _ in range(size):
            begin = reader.pos
            reader.skip(etype)
            items.append((begin, reader.pos))
    except (IndexError, struct.error) as e:
        raise ThriftError(f"truncated Thrift list at byte {reader.pos} of {len(buf)}") from e
    return etype, items


def field_header(fid: int, wire: int, last: int) -> bytes:
    """The compact protocol's header of field ``fid`` after field ``last``."""
    out = bytearray()
    _write_field_header(out, fid, wire, last)
    return bytes(out)


def _write_field_header(out: bytearray, fid: int, wire: int, last: int) -> None:
    delta = fid - last
    if 0 < delta <= 15:
        out.append(delta << 4 | wire)
    else:
        out.append(wire)
        _zigzag(out, fid)


def list_header(etype: int, size: int) -> bytes:
    """The compact protocol's header of a list of ``size`` elements of type ``etype``."""
    out = bytearray()
    if size < 15:
        out.append(size << 4 | etype)
    else:
        out.append(0xF0 | etype)
        _varint(out, size)
    return bytes(out)


def value_bytes(wire: int, value: Any) -> bytes:
    """``value`` of wire type ``wire`` in the compact protocol (no field header)."""
    out = bytearray()
    _write_value(out, wire, value)
    return bytes(out)


def dumps(s: Struct) -> bytes:
    """``s`` in the compact protocol."""
    out = bytearray()
    _write_struct(out, s)
    return bytes(out)


class _Reader:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def field_header(self, last: int) -> tuple[int, int] | None:
        """The next field's (wire type, field id) after field id ``last``; None at the struct's end."""
        header = self.byte()
        if header == STOP:
            return None
        wire, delta = header & 0x0F, header >> 4
        return wire, (last + delta if delta else self.zigzag())

    def skip(self, wire: int) -> None:
        """Move past a value of type ``wire`` without building it."""
        if wire in (TRUE, FALSE, BYTE):
            self.pos += 1
        elif wire in (I16, I32, I64):
            while self.buf[self.pos] & 0x80:
                self.pos += 1
            self.pos += 1
        elif wire == DOUBLE:
            self.pos += 8
        elif wire == BINARY:
            n = self.varint()
            if self.pos + n > len(self.buf):
                raise IndexError("binary runs past the end")
            self.pos += n
        elif wire in (LIST, SET):
            header = self.byte()
            size, etype = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self.skip(etype)
        elif wire == MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4)
                    self.skip(types & 0x0F)
        elif wire == STRUCT:
            while True:
                header = self.byte()
                if header == STOP:
                    return
                field_wire, delta = header & 0x0F, header >> 4
                if not delta:
                    self.zigzag()
                if field_wire not in (TRUE, FALSE):
                    self.skip(field_wire)
        else:
            raise ThriftError(f"unknown Thrift compact type {wire} at byte {self.pos}")

    def value(self, wire: int) -> Any:
        if wire in (TRUE, FALSE):  # only in lists, sets and maps: one byte each
            return self.byte() == TRUE
        if wire == BYTE:
            b = self.byte()
            return b - 256 if b > 127 else b
        if wire in (I16, I32, I64):
            return self.zigzag()
        if wire == DOUBLE:
            (d,) = struct.unpack_from("<d", self.buf, self.pos)
            self.pos += 8
            return d
        if wire == BINARY:
            n = self.varint()
            data = bytes(self.buf[self.pos:self.pos + n])
            if len(data) != n:
                raise IndexError("binary runs past the end")
            self.pos += n
            return data
        if wire in (LIST, SET):
            header = self.byte()
            size, etype = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return List(etype, [self.value(etype) for _ in range(size)], wire)
        if wire == MAP:
            size = self.varint()
            if not size:
                return Map(0, 0, [])
            types = self.byte()
            ktype, vtype = types >> 4, types & 0x0F
            return Map(ktype, vtype, [(self.value(ktype), self.value(vtype)) for _ in range(size)])
        if wire == STRUCT:
            return self.struct()
        raise ThriftError(f"unknown Thrift compact type {wire} at byte {self.pos}")

    def struct(self) -> Struct:
        s = Struct()
        last = 0
        while True:
            field = self.field_header(last)
            if field is None:
                return s
            wire, fid = field
            last = fid
            if wire in (TRUE, FALSE):
                s.fields[fid] = (TRUE, wire == TRUE)
            else:
                s.fields[fid] = (wire, self.value(wire))


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(out: bytearray, n: int) -> None:
    _varint(out, (n << 1) ^ (n >> 63) if n < 0 else n << 1)


def _write_value(out: bytearray, wire: int, value: Any) -> None:
    if wire in (TRUE, FALSE):
        out.append(TRUE if value else FALSE)
    elif wire == BYTE:
        out.append(value & 0xFF)
    elif wire in _INTS:
        _zigzag(out, value)
    elif wire == DOUBLE:
        out += struct.pack("<d", value)
    elif wire == BINARY:
        data = value.encode() if isinstance(value, str) else value
        _varint(out, len(data))
        out += data
    elif wire in (LIST, SET):
        n = len(value.items)
        if n < 15:
            out.append(n << 4 | value.etype)
        else:
            out.append(0xF0 | value.etype)
            _varint(out, n)
        for item in value.items:
            _write_value(out, value.etype, item)
    elif wire == MAP:
        _varint(out, len(value.items))
        if value.items:
            out.append(value.ktype << 4 | value.vtype)
            for k, v in value.items:
                _write_value(out, value.ktype, k)
                _write_value(out, value.vtype, v)
    elif wire == STRUCT:
        _write_struct(out, value)
    else:
        raise ThriftError(f"unknown Thrift compact type {wire}")


def _write_struct(out: bytearray, s: Struct) -> None:
    last = 0
    for fid in sorted(s.fields):
        wire, value = s.fields[fid]
        if value is None:
            continue
        if wire in (TRUE, FALSE):
            wire = TRUE if value else FALSE
        _write_field_header(out, fid, wire, last)
        last = fid
        if wire not in (TRUE, FALSE):
            _write_value(out, wire, value)
    out.append(STOP)
