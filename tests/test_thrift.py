"""babelmr.worker.thrift: the compact protocol, read and written back without losing a field or its type."""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.worker import thrift
from babelmr.worker.thrift import BINARY, BYTE, DOUBLE, I16, I32, I64, LIST, MAP, SET, STRUCT, TRUE, Struct
from test_chunkcopy import many_types


def raw_footer(path: Path) -> bytes:
    data = path.read_bytes()
    size = struct.unpack_from("<I", data, len(data) - 8)[0]
    return data[len(data) - 8 - size:len(data) - 8]


@pytest.mark.parametrize("options", [
    {},
    {"write_page_index": True, "compression": "zstd", "data_page_version": "2.0"},
    {"use_dictionary": False, "write_statistics": False, "row_group_size": 100},
])
def test_parquet_footers_round_trip_byte_for_byte(tmp_path: Path, options: dict) -> None:
    table = many_types(0, 2000).append_column("half", pa.array([1.5] * 2000, pa.float16()))
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, **options)
    footer = raw_footer(path)
    assert thrift.dumps(thrift.loads(footer)) == footer


def test_every_wire_type_round_trips() -> None:
    inner = Struct()
    inner.set(1, TRUE, False)
    inner.set(40, I64, -(1 << 62))  # a field id too far for the short form
    s = Struct()
    s.set(1, BYTE, -5)
    s.set(2, I16, -300)
    s.set(3, I32, 1 << 30)
    s.set(4, I64, -1)
    s.set(5, DOUBLE, 2.5)
    s.set(6, BINARY, b"\x00bytes\xff")
    s.set(7, LIST, thrift.List(I32, list(range(-20, 20))))  # more than 14 elements: the long list header
    s.set(8, LIST, thrift.List(TRUE, [True, False, True]))
    s.set(9, SET, thrift.List(BINARY, [b"a"], SET))
    s.set(10, MAP, thrift.Map(BINARY, STRUCT, [(b"k", inner)]))
    s.set(11, MAP, thrift.Map(0, 0, []))
    s.set(12, STRUCT, inner)
    s.set(13, TRUE, True)
    back = thrift.loads(thrift.dumps(s))
    assert back == s


def test_unset_fields_are_left_out() -> None:
    s = Struct()
    s.set(1, I32, 7)
    s.set(2, I32, None)
    s.pop(1)
    assert thrift.dumps(s) == b"\x00"


def test_truncated_bytes_are_an_error() -> None:
    s = Struct()
    s.set(1, BINARY, b"x" * 100)
    with pytest.raises(thrift.ThriftError, match="truncated"):
        thrift.loads(thrift.dumps(s)[:50])
