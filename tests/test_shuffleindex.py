"""Partition footers (babelmr.worker.shuffleindex): a reducer reads only its partition's metadata."""

from __future__ import annotations

import datetime
import struct
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelmr.errors import InputError
from babelmr.spec import FileSlice, TaskInput
from babelmr.worker import shuffleindex, thrift
from babelmr.worker.exporter import export_partitions
from babelmr.worker.importer import import_input, partition_row_groups


def table_of(n: int, seed: int, keys: int) -> pa.Table:
    """Rows of several types with NULLs and NaNs; ``row`` numbers them."""
    rng = np.random.default_rng(seed)
    nulls = rng.random(n) < 0.2
    floats = rng.random(n)
    floats[rng.random(n) < 0.1] = np.nan
    return pa.table({
        "key": pa.array(rng.integers(0, keys, n), pa.int64(), mask=rng.random(n) < 0.05),
        "word": pa.array([f"w{i}" for i in rng.integers(0, 50, n)], mask=nulls),
        "value": pa.array(floats, pa.float64()),
        "day": pa.array([datetime.date(2020, 1, 1) + datetime.timedelta(days=int(d)) for d in rng.integers(0, 900, n)],
                        pa.date32()),
        "flag": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1),
        "row": pa.array(np.arange(n), pa.int64()),
    })


def comparable(table: pa.Table) -> pa.Table:
    """``table`` with its floats as text: NaN equals NaN, NULL stays NULL."""
    return table.set_column(2, "value", pc.cast(table.column("value"), pa.string()))


def export(path: Path, table: pa.Table, partitions: int, batch_rows: int = 500) -> dict:
    return export_partitions(table.to_batches(max_chunksize=batch_rows), table.schema, pa.OSFile(str(path), "wb"),
                             ["key"], partitions)


def partition_rows_through_footer(path: Path, p: int) -> list[int]:
    """The oracle: partition ``p``'s rows read through the whole footer and the JSON index."""
    f = pq.ParquetFile(path)
    groups = partition_row_groups(f.metadata, p, str(path))
    return sorted(f.read_row_groups(groups).column("row").to_pylist()) if groups else []


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 1500), partitions=st.integers(1, 40), keys=st.sampled_from([1, 3, 1000]),
       seed=st.integers(0, 1000))
def test_each_partition_footer_reads_exactly_its_rows(tmp_path: Path, n: int, partitions: int, keys: int,
                                                      seed: int) -> None:
    table = table_of(n, seed, keys)
    path = tmp_path / "out.parquet"
    index = export(path, table, partitions)
    with pa.OSFile(str(path)) as handle:
        seen = []
        for p in range(partitions):
            found = shuffleindex.read_partition(handle, p)
            assert found is not None
            metadata, count = found
            assert count == partitions and metadata.num_rows == index.rows[p]
            assert metadata.num_row_groups == len(index.row_groups[p])
            part = pq.ParquetFile(handle, metadata=metadata).read() if metadata.num_row_groups else None
            rows = sorted(part.column("row").to_pylist()) if part is not None else []
            assert rows == partition_rows_through_footer(path, p)
            if part is not None:
                assert part.schema == table.schema
                expected = comparable(table.take(pa.array(rows, pa.int64())).sort_by("row"))
                assert comparable(part.sort_by("row")).equals(expected)  # NULLs, NaNs and types as written
            seen += rows
    assert sorted(seen) == list(range(n))
    # still one valid Parquet file for any reader: DuckDB sees every row
    assert duckdb.connect().execute(f"select count(*), count(distinct row) from '{path}'").fetchone() == (n, n)


def test_a_partition_footer_does_not_grow_with_the_partition_count(tmp_path: Path) -> None:
    """The bytes a reducer reads for its metadata: at most the tail and three small reads, at any partition count,
    while the whole footer grows with it (and its parse with it)."""
    table = table_of(20_000, 1, keys=20_000)
    read: dict[int, list[int]] = {}
    footers: dict[int, int] = {}
    for partitions in (10, 1000):
        path = tmp_path / f"{partitions}.parquet"
        export(path, table, partitions, batch_rows=20_000)
        footers[partitions] = pq.ParquetFile(path).metadata.serialized_size
        handle = pa.OSFile(str(path))
        reads: list[int] = read.setdefault(partitions, [])

        def read_at(nbytes: int, offset: int, handle=handle, reads=reads) -> bytes:
            reads.append(nbytes)
            return handle.read_at(nbytes, offset)

        counting = type("Counting", (), {"size": handle.size, "read_at": staticmethod(read_at)})()
        metadata, _ = shuffleindex.read_partition(counting, partitions // 2)
        assert metadata.num_row_groups == 1
    assert footers[1000] > 4 * shuffleindex.TAIL_BYTES, footers  # the whole footer is far beyond the tail
    assert len(read[10]) == 1, read  # a small footer: the tail holds everything
    assert len(read[1000]) <= 4 and sum(read[1000]) < shuffleindex.TAIL_BYTES + 8192, read


def test_a_file_without_partition_footers_is_read_through_its_footer(tmp_path: Path) -> None:
    """Files of an older exporter (only the JSON index in the footer) still import."""
    table = table_of(500, 2, keys=5)
    new = tmp_path / "new.parquet"
    index = export(new, table, 4)
    old = tmp_path / "old.parquet"
    f = pq.ParquetFile(new)
    with pq.ParquetWriter(old, f.schema_arrow) as w:  # the same row groups and index, no partition footers
        for g in range(f.num_row_groups):
            w.write_table(f.read_row_group(g))
        w.add_key_value_metadata({k.decode(): v.decode() for k, v in f.metadata.metadata.items()
                                  if k != b"ARROW:schema"})
    with pa.OSFile(str(old)) as handle:
        assert shuffleindex.read_partition(handle, 0) is None
    for p in range(4):
        inp = TaskInput("x", "stage", "parquet", [FileSlice(str(old))], partition=p)
        got = import_input(inp, str(tmp_path / f"in{p}.parquet"), "parquet")
        assert got.rows == index.rows[p]


def test_a_partition_beyond_the_files_count_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    export(path, table_of(100, 3, keys=5), 3)
    inp = TaskInput("x", "stage", "parquet", [FileSlice(str(path))], partition=3)
    with pytest.raises(InputError, match="has 3 partitions; partition 3 was asked for"):
        import_input(inp, str(tmp_path / "in.parquet"), "parquet")


def test_a_damaged_partition_table_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    export(path, table_of(100, 4, keys=5), 3)
    data = bytearray(path.read_bytes())
    footer_length = struct.unpack_from("<I", data, len(data) - 8)[0]
    trailer = len(data) - 8 - footer_length - shuffleindex.TRAILER.size
    table_at, _, _ = shuffleindex.TRAILER.unpack_from(data, trailer)
    struct.pack_into("<Q", data, table_at, len(data) * 2)  # partition 0's footer points past the end
    path.write_bytes(bytes(data))
    inp = TaskInput("x", "stage", "parquet", [FileSlice(str(path))], partition=0)
    with pytest.raises(InputError, match=f"partition index of {path}"):
        import_input(inp, str(tmp_path / "in.parquet"), "parquet")


def test_field_spans_match_the_decoded_footer(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    export(path, table_of(3000, 5, keys=100), 7)
    footer = shuffleindex.footer_bytes(pq.ParquetFile(path).metadata)
    decoded = thrift.loads(footer)
    spans = thrift.field_spans(footer)
    assert sorted(spans) == sorted(decoded.fields)
    found: dict[int, list[tuple[int, int]]] = {4: []}
    assert thrift.field_spans(footer, found) == spans
    assert found[4] == thrift.list_spans(footer, spans[4][2])[1] and len(found[4]) == len(decoded.get(4).items)
    for fid, (wire, _, value, end) in spans.items():
        assert wire == decoded.fields[fid][0]
        if wire == thrift.LIST:
            _, items = thrift.list_spans(footer, value)
            assert len(items) == len(decoded.get(fid).items) and items[-1][1] == end


@pytest.mark.s3
def test_partition_footers_are_read_from_s3_at_many_partitions(s3_prefix: str, tmp_path: Path) -> None:
    """On S3 a footer beyond the tail takes ranged GETs of the trailer, the entry and the partition footer."""
    from babelmr.store import filesystem_for

    table = table_of(20_000, 6, keys=20_000)
    uri = f"{s3_prefix}/map-0.parquet"
    fs, path = filesystem_for(uri)
    index = export_partitions(table.to_batches(max_chunksize=20_000), table.schema, fs.open_output_stream(path),
                              ["key"], 1000)
    assert pq.ParquetFile(path, filesystem=fs).metadata.serialized_size > shuffleindex.TAIL_BYTES
    for p in (0, 499, 999):
        inp = TaskInput("x", "stage", "parquet", [FileSlice(uri)], partition=p)
        got = import_input(inp, str(tmp_path / f"in{p}.parquet"), "parquet")
        assert got.rows == index.rows[p]
        rows = pq.read_table(got.path).column("row").to_pylist() if got.rows else []
        assert sorted(rows) == sorted(partition_rows_through_footer_fs(fs, path, p))


def partition_rows_through_footer_fs(fs, path: str, p: int) -> list[int]:
    """The oracle on S3: partition ``p``'s rows through the whole footer and the JSON index."""
    f = pq.ParquetFile(path, filesystem=fs)
    groups = partition_row_groups(f.metadata, p, path)
    return f.read_row_groups(groups).column("row").to_pylist() if groups else []
