"""babelmr.worker.exporter: one Parquet file per task, one partition per row group, and an index."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import babelmr.worker.exporter as exporter
from babelmr.spec import PARTITION_INDEX_KEY, PartitionIndex
from babelmr.worker.chunkcopy import RG_FILE_OFFSET, RG_ORDINAL, thrift_footer
from babelmr.worker.exporter import export_partitions
from babelmr.worker.partition import partition_ids
from babelmr.worker.shuffleindex import FMD_ROW_GROUPS


def word_counts(n: int, seed: int = 0, words: int = 400) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "word": pa.array([f"w{i:04d}" for i in rng.integers(0, words, n)]),
        "count": pa.array(rng.integers(1, 100, n), pa.int64()),
        "row": pa.array(np.arange(n), pa.int64()),
    })


def export(path: Path, table: pa.Table, key: list[str] | None, partitions: int, batch_rows: int = 1000) -> dict:
    return export_partitions(table.to_batches(max_chunksize=batch_rows), table.schema, pa.OSFile(str(path), "wb"),
                             key, partitions)


def file_index(path: Path) -> PartitionIndex:
    return PartitionIndex.from_json(pq.ParquetFile(path).metadata.metadata[PARTITION_INDEX_KEY])


def check_index(path: Path, table: pa.Table, key: list[str], partitions: int) -> PartitionIndex:
    """The index in the file is right: each partition's row groups hold exactly that partition's rows."""
    f = pq.ParquetFile(path)
    index = file_index(path)
    assert index.partitions == partitions and index.key == key
    assert len(index.row_groups) == partitions == len(index.rows)
    listed = sorted(g for groups in index.row_groups for g in groups)
    assert listed == list(range(f.num_row_groups)), "every row group listed exactly once"

    expected = np.bincount(partition_ids(table.combine_chunks().to_batches()[0], key, partitions),
                           minlength=partitions) if table.num_rows else np.zeros(partitions, int)
    seen_rows = []
    for p, groups in enumerate(index.row_groups):
        rows = 0
        for g in groups:
            group = f.read_row_group(g)
            got = partition_ids(group.combine_chunks().to_batches()[0], key, partitions)
            assert set(got.tolist()) == {p}, f"row group {g} listed for partition {p} holds {set(got.tolist())}"
            rows += group.num_rows
            seen_rows.extend(group.column("row").to_pylist())
        assert rows == index.rows[p] == expected[p], p
    assert sorted(seen_rows) == list(range(table.num_rows)), "no row lost or duplicated"
    return index


def test_index_maps_each_partition_to_its_row_groups(tmp_path: Path) -> None:
    table = word_counts(20_000)
    index = export(tmp_path / "out.parquet", table, ["word"], 8)
    assert index == file_index(tmp_path / "out.parquet")
    assert index.version == 1
    check_index(tmp_path / "out.parquet", table, ["word"], 8)
    # defaults keep a small output at one row group per partition
    assert all(len(groups) == 1 for groups in index.row_groups)
    assert pq.read_table(tmp_path / "out.parquet").schema == table.schema


def test_multi_column_key(tmp_path: Path) -> None:
    table = word_counts(5000).append_column("day", pa.array(np.arange(5000) % 3, pa.int32()))
    export(tmp_path / "out.parquet", table, ["word", "day"], 5)
    check_index(tmp_path / "out.parquet", table, ["word", "day"], 5)


def test_empty_partitions_have_no_row_groups(tmp_path: Path) -> None:
    table = pa.table({"word": ["a", "b", "a", "c"] * 50, "row": np.arange(200)})
    index = export(tmp_path / "out.parquet", table, ["word"], 32)
    check_index(tmp_path / "out.parquet", table, ["word"], 32)
    used = [p for p, groups in enumerate(index.row_groups) if groups]
    assert 1 <= len(used) <= 3
    assert sum(1 for groups in index.row_groups if groups == []) == 32 - len(used)
    assert all(index.rows[p] == 0 for p in range(32) if p not in used)
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == len(used)


def test_no_rows_at_all_gives_a_readable_file_with_an_empty_index(tmp_path: Path) -> None:
    schema = pa.schema([("word", pa.string()), ("row", pa.int64())])
    index = export_partitions(iter([]), schema, pa.OSFile(str(tmp_path / "out.parquet"), "wb"), ["word"], 4)
    assert index.row_groups == [[], [], [], []] and index.rows == [0, 0, 0, 0]
    assert file_index(tmp_path / "out.parquet") == index
    back = pq.read_table(tmp_path / "out.parquet")
    assert back.num_rows == 0 and back.schema == schema


def test_one_partition_without_key(tmp_path: Path) -> None:
    table = word_counts(3000)
    index = export(tmp_path / "out.parquet", table, None, 1)
    assert index.key == [] and index.partitions == 1
    assert index.rows == [3000]
    assert index.row_groups == [list(range(pq.ParquetFile(tmp_path / "out.parquet").num_row_groups))]
    assert pq.read_table(tmp_path / "out.parquet").equals(table)  # order kept too


def test_batches_are_cast_to_the_schema(tmp_path: Path) -> None:
    schema = pa.schema([("k", pa.int64()), ("row", pa.int64())])
    narrow = pa.record_batch([pa.array([1, 2, 3], pa.int32()), pa.array([0, 1, 2], pa.int32())], names=["k", "row"])
    export_partitions([narrow], schema, pa.OSFile(str(tmp_path / "out.parquet"), "wb"), ["k"], 2)
    back = pq.read_table(tmp_path / "out.parquet")
    assert back.schema == schema
    assert sorted(back.column("row").to_pylist()) == [0, 1, 2]


def test_an_error_in_the_batches_aborts_and_propagates(tmp_path: Path) -> None:
    table = word_counts(100)

    def failing() -> Iterator[pa.RecordBatch]:
        yield table.to_batches()[0]
        raise RuntimeError("program output unreadable")

    stream = pa.OSFile(str(tmp_path / "out.parquet"), "wb")
    with pytest.raises(RuntimeError, match="unreadable"):
        export_partitions(failing(), table.schema, stream, ["word"], 4)
    assert stream.closed


class FailingSink:
    """A file that fails after ``limit`` bytes, as a store connection dropping mid-upload would.
    (Injected: a real store cannot be made to fail at a chosen byte.)"""

    def __init__(self, limit: int):
        self.limit, self.written, self.closed = limit, 0, False

    def write(self, data: bytes) -> int:
        if self.written + len(data) > self.limit:
            raise OSError("connection reset while uploading")
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_an_error_writing_a_row_group_propagates_and_does_not_hang(tmp_path: Path, tune) -> None:
    """Row groups are encoded by a writer thread: its error must reach the caller, at once or at close."""
    tune(row_group_bytes=16_000)
    table = word_counts(40_000, words=1000)
    sink = FailingSink(50_000)
    with pytest.raises(OSError, match="connection reset"):
        export_partitions(table.to_batches(max_chunksize=500), table.schema, pa.PythonFile(sink, mode="w"),
                          ["word"], 4)
    assert not any(t.name == "babelmr-export" and t.is_alive() for t in threading.enumerate())


def test_mostly_distinct_columns_get_no_dictionary(tmp_path: Path) -> None:
    table = word_counts(5000)  # 400 words: a dictionary; row numbers: all distinct
    export(tmp_path / "out.parquet", table, ["word"], 2, batch_rows=2000)
    group = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    encodings = {group.column(c).path_in_schema: group.column(c).encodings for c in range(group.num_columns)}
    assert "RLE_DICTIONARY" in encodings["word"] and "RLE_DICTIONARY" not in encodings["row"], encodings
    assert exporter.dictionary_columns(table.to_batches(max_chunksize=100)[0]) is True  # too few rows to tell


def test_keys_in_short_runs_get_no_dictionary_when_plain_is_smaller(tmp_path: Path) -> None:
    """Order keys repeat in runs of a few rows (an order's line items): a quarter of the values distinct, yet
    plain + snappy is smaller (and faster to write) than dictionary indices; low-cardinality columns keep theirs."""
    rng = np.random.default_rng(1)
    n = 20_000
    orders = np.repeat(np.arange(n // 4) * 32 + 1, 4)  # increasing order keys, four line items each
    table = pa.table({"order": pa.array(orders, pa.int64()),
                      "flag": pa.array(rng.choice(["A", "N", "R"], n)), "row": pa.array(np.arange(n), pa.int64())})
    index = export(tmp_path / "out.parquet", table, ["order"], 4, batch_rows=5000)
    check_index(tmp_path / "out.parquet", table, ["order"], 4)
    assert sum(index.rows) == n
    meta = pq.ParquetFile(tmp_path / "out.parquet").metadata
    for g in range(meta.num_row_groups):
        encodings = {meta.row_group(g).column(c).path_in_schema: meta.row_group(g).column(c).encodings
                     for c in range(meta.num_columns)}
        assert "RLE_DICTIONARY" not in encodings["order"] and "RLE_DICTIONARY" in encodings["flag"], encodings
    assert pq.read_table(tmp_path / "out.parquet").sort_by("row").equals(table)


def test_row_groups_encoded_apart_read_as_one_file(tmp_path: Path, tune) -> None:
    """Row groups are encoded in parallel into files in memory and their chunks appended under one footer: every
    row group's metadata (offsets, row counts, statistics, ordinal) must describe its own data where it landed."""
    tune(row_group_bytes=20_000, export_buffer=60_000)
    n = 30_000
    rng = np.random.default_rng(2)
    table = pa.table({"word": pa.array([f"w{i:03d}" if i % 11 else None for i in rng.integers(0, 300, n)]),
                      "amount": pa.array(rng.normal(size=n)), "row": pa.array(np.arange(n), pa.int64())})
    index = export(tmp_path / "out.parquet", table, ["word"], 5, batch_rows=700)
    check_index(tmp_path / "out.parquet", table, ["word"], 5)
    f = pq.ParquetFile(tmp_path / "out.parquet")
    assert f.num_row_groups == sum(len(g) for g in index.row_groups) > 20
    assert f.metadata.num_rows == n and f.schema_arrow == table.schema
    groups = thrift_footer(f.metadata).get(FMD_ROW_GROUPS).items  # the ordinals and offsets pyarrow does not show
    previous_end = 4
    for g in range(f.num_row_groups):
        meta, data = f.metadata.row_group(g), f.read_row_group(g)
        assert meta.num_rows == data.num_rows and groups[g].get(RG_ORDINAL) == g
        assert groups[g].get(RG_FILE_OFFSET) in (None, previous_end)
        for c in range(meta.num_columns):
            chunk, column = meta.column(c), data.column(c)
            start = min(o for o in (chunk.dictionary_page_offset, chunk.data_page_offset) if o)
            assert start == previous_end, (g, c)  # the chunks follow one another, nothing lost or overlapping
            previous_end = start + chunk.total_compressed_size
            stats = chunk.statistics
            assert stats.null_count == column.null_count and stats.num_values == len(column) - column.null_count
            if column.null_count < len(column):
                assert (stats.min, stats.max) == (pc.min(column).as_py(), pc.max(column).as_py()), (g, c)
    assert f.read().sort_by("row").equals(table)


# -- buffering --------------------------------------------------------------------------------------------------


def test_full_buffers_become_row_groups(tmp_path: Path, tune) -> None:
    tune(row_group_bytes=16_000)
    table = word_counts(40_000, words=1000)  # ~1 MB in batches of 500 rows
    index = export(tmp_path / "out.parquet", table, ["word"], 4, batch_rows=500)
    check_index(tmp_path / "out.parquet", table, ["word"], 4)
    assert all(len(groups) >= 5 for groups in index.row_groups), [len(g) for g in index.row_groups]
    f = pq.ParquetFile(tmp_path / "out.parquet")
    # row groups of different partitions interleave in the file; no single one grows far past the limit
    order = [p for g in range(f.num_row_groups) for p, groups in enumerate(index.row_groups) if g in groups]
    assert order != sorted(order)
    assert max(f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)) < 2500


def test_buffer_budget_flushes_every_buffer(tmp_path: Path, tune) -> None:
    # buffered slices keep their whole split batch in memory: only flushing every buffer frees those batches
    tune(row_group_bytes=1 << 30, export_buffer=50_000)  # row groups never full on their own
    table = word_counts(30_000, words=800)
    index = export(tmp_path / "out.parquet", table, ["word"], 6, batch_rows=300)
    check_index(tmp_path / "out.parquet", table, ["word"], 6)
    groups_per_partition = [len(groups) for groups in index.row_groups]
    assert min(groups_per_partition) >= 2 and len(set(groups_per_partition)) == 1, groups_per_partition


def test_row_group_larger_than_parquets_row_limit_stays_indexed(tmp_path: Path) -> None:
    # pyarrow cuts a row group at 64 Mi rows whatever row_group_size says: tiny rows (booleans) fit more than
    # that in one 64 MB buffer, and the index must still list every row group of the partition.
    n = 70_000_000
    table = pa.table({"flag": pa.array(np.zeros(n, dtype=bool))})
    index = export_partitions(table.to_batches(max_chunksize=1 << 22), table.schema,
                              pa.OSFile(str(tmp_path / "out.parquet"), "wb"), None, 1)
    f = pq.ParquetFile(tmp_path / "out.parquet")
    assert index.rows == [n]
    assert index.row_groups == [list(range(f.num_row_groups))]
    assert sum(f.metadata.row_group(g).num_rows for g in index.row_groups[0]) == n
