"""babelmr.worker.chunkcopy: Parquet imported into Parquet by copying column chunks, never decoding a page.

Every copied file is checked against what the decoding import writes (same schema, same rows) and read by
three independent readers (pyarrow, DuckDB, fastparquet); every case that must not be copied is checked to
fall back to decoding, with the right answer.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
from pathlib import Path
from typing import Any

import duckdb
import fastparquet
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import babelmr.worker.chunkcopy as chunkcopy
from babelmr.errors import InputChanged, TaskError
from babelmr.settings import settings
from babelmr.spec import FileSlice, TaskInput
from babelmr.store import open_store
from babelmr.store.locations import file_version
from babelmr.worker.exporter import export_partitions
from babelmr.worker.formats import plain_schema
from babelmr.worker.importer import import_input

N = 3000


def many_types(start: int, n: int = N) -> pa.Table:
    """One column of each flat type a program may meet, with nulls where the type allows them."""
    i = np.arange(start, start + n)
    null = i % 7 == 0
    words = [None if k % 11 == 0 else f"word-{k % 97}" for k in i]
    return pa.table({
        "i8": pa.array(i % 100, pa.int8()),
        "i16": pa.array(i % 30000, pa.int16()),
        "i32": pa.array(i, pa.int32()),
        "i64": pa.array(i * 1_000_003, pa.int64()),
        "u32": pa.array(i, pa.uint32()),
        "f32": pa.array(i / 3, pa.float32()),
        "f64": pa.array(i / 7, mask=null),  # nulls, not NaN: NaN != NaN would fail the comparisons
        "flag": pa.array(i % 3 == 0),
        "dec": pa.array([decimal.Decimal(int(k)) / 100 for k in i], pa.decimal128(12, 2)),
        "s": pa.array(words, pa.string()),
        "ls": pa.array(words, pa.large_string()),
        "sv": pa.array(words, pa.string_view()),
        "dict": pa.array(words, pa.string()).dictionary_encode(),
        "bin": pa.array([w.encode() if w else None for w in words], pa.binary()),
        "fixed": pa.array([int(k).to_bytes(4, "little") for k in i], pa.binary(4)),
        "day": pa.array([datetime.date(2020, 1, 1) + datetime.timedelta(days=int(k % 900)) for k in i]),
        "ts": pa.array(i * 1_000_000, pa.timestamp("us")),
        "ts_tz": pa.array(i * 1_000, pa.timestamp("ms", tz="Europe/Paris")),
        "ns": pa.array(i, pa.timestamp("ns")),
    })


def files_input(*paths: Path | str, columns: list[str] | None = None, row_groups: list[int] | None = None,
                name: str = "data") -> TaskInput:
    return TaskInput(name=name, kind="files", format="parquet", columns=columns, source="test",
                     files=[FileSlice(str(p), row_groups) for p in paths])


def decoded(inp: TaskInput, path: Path, monkeypatch: pytest.MonkeyPatch) -> pa.Table:
    """What the decoding import writes for ``inp`` (one file at a time, so rows keep their order)."""
    with monkeypatch.context() as m:
        m.setattr("babelmr.settings._current", dataclasses.replace(settings(), copy_column_chunks=False))
        parts = []
        for k, piece in enumerate(inp.files):
            one = TaskInput(inp.name, inp.kind, inp.format, [piece], inp.columns, inp.partition, source=inp.source)
            out = path.with_name(f"{path.stem}-{k}.parquet")
            assert import_input(one, str(out), "parquet").method == "decode"
            parts.append(pq.read_table(out))
    return pa.concat_tables(parts)


def assert_same_everywhere(copied: str, expected: pa.Table) -> None:
    table = pq.read_table(copied)
    assert table.schema.equals(expected.schema), f"{table.schema}\n!=\n{expected.schema}"
    assert table.equals(expected)
    # two readers that share no code with pyarrow's writer or with each other
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{copied}')").fetchall()[0][0] == expected.num_rows
    assert len(fastparquet.ParquetFile(copied).to_pandas()) == expected.num_rows
    key = next((c for c in ("i64", "id") if c in expected.column_names), None)
    if key:
        total = duckdb.sql(f"SELECT sum({key}) FROM read_parquet('{copied}')").fetchall()[0][0]
        assert total == pa.compute.sum(expected[key]).as_py()


@pytest.mark.parametrize("compression,page_version", [
    ("snappy", "1.0"), ("zstd", "2.0"), ("gzip", "1.0"), ("none", "2.0"), ("lz4", "1.0"),
])
def test_every_flat_type_is_copied_as_the_decoding_import_writes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str, page_version: str) -> None:
    paths = []
    for k in range(3):
        p = tmp_path / f"part-{k}.parquet"
        pq.write_table(many_types(k * N), p, row_group_size=1000, compression=compression,
                       data_page_version=page_version, write_page_index=True, use_dictionary=k != 1)
        paths.append(p)
    inp = files_input(*paths)
    out = tmp_path / "in.parquet"
    imported = import_input(inp, str(out), "parquet")
    assert imported.method == "copy" and imported.rows == 3 * N
    assert imported.origins == [str(p) for p in paths for _ in range(3)]
    expected = decoded(inp, out, monkeypatch)
    assert expected.schema.equals(plain_schema(many_types(0).schema))  # views, large and dictionaries: plain
    assert_same_everywhere(str(out), expected)
    meta = pq.ParquetFile(out).metadata
    assert not meta.row_group(0).column(0).has_offset_index  # the source's page index is not carried over
    assert meta.created_by.startswith("babelmr")


def test_columns_reordered_and_row_groups_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(many_types(0, 10_000), src, row_group_size=1000)
    inp = files_input(src, columns=["s", "i64", "dec", "ts_tz"], row_groups=[7, 2, 3])
    out = tmp_path / "in.parquet"
    imported = import_input(inp, str(out), "parquet")
    assert imported.method == "copy" and imported.rows == 3000
    assert pq.read_schema(out).names == ["s", "i64", "dec", "ts_tz"]
    expected = pq.ParquetFile(src).read_row_groups([7, 2, 3], columns=["s", "i64", "dec", "ts_tz"])
    assert_same_everywhere(str(out), expected)
    assert expected.equals(decoded(inp, out, monkeypatch))


def test_chunks_larger_than_one_read_are_copied_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extents split chunks and merge neighbours; the offsets written must follow both."""
    monkeypatch.setattr(chunkcopy, "EXTENT_BYTES", 4097)
    paths = []
    for k in range(2):
        p = tmp_path / f"part-{k}.parquet"
        pq.write_table(many_types(k * 20_000, 20_000), p, row_group_size=7000)
        paths.append(p)
    inp = files_input(*paths, columns=["f64", "s", "i64"])
    out = tmp_path / "in.parquet"
    for threads in (1, 3):
        monkeypatch.setattr("babelmr.settings._current", dataclasses.replace(settings(), read_threads=threads))
        assert import_input(inp, str(out), "parquet").method == "copy"
        assert_same_everywhere(str(out), decoded(inp, out, monkeypatch))


def test_a_partition_of_a_stage_output_is_copied(store_uri: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Reducers read their row groups of each map output (in a local folder and on SeaweedFS S3)."""
    store = open_store(store_uri)
    table = many_types(0, 20_000)
    table = table.cast(plain_schema(table.schema))  # as the worker reads a program's output
    uris = []
    for k in range(2):
        key = f"out-{k}.parquet"
        export_partitions(iter(table.slice(k * 10_000, 10_000).to_batches(2000)), table.schema,
                          store.open_output(key), ["i32"], 5)
        uris.append(store.uri_for(key))
    for partition in range(5):
        inp = TaskInput("partials", "stage", "parquet", [FileSlice(u) for u in uris], partition=partition,
                        source="map")
        out = tmp_path / f"p{partition}.parquet"
        imported = import_input(inp, str(out), "parquet")
        assert imported.method == "copy"
        assert_same_everywhere(str(out), decoded(inp, out, monkeypatch))


def test_an_empty_partition_still_gives_a_file_with_the_schema(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    table = pa.table({"k": pa.array([1, 1, 1], pa.int64()), "v": ["a", "b", "c"]})
    export_partitions(iter(table.to_batches()), table.schema, store.open_output("o.parquet"), ["k"], 4)
    rows = []  # one key: one partition holds every row, the three others are empty
    for partition in range(4):
        inp = TaskInput("x", "stage", "parquet", [FileSlice(store.uri_for("o.parquet"))], partition=partition)
        out = tmp_path / f"p{partition}.parquet"
        import_input(inp, str(out), "parquet")
        got = pq.read_table(out)
        assert got.schema.names == ["k", "v"]
        rows.append(got.num_rows)
    assert sorted(rows) == [0, 0, 0, 3]


def nested(tmp_path: Path) -> list[Path]:
    p = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"id": [1, 2], "tags": [["a"], ["b", "c"]]}), p)
    return [p]


def int96(tmp_path: Path) -> list[Path]:
    p = tmp_path / "int96.parquet"
    pq.write_table(pa.table({"id": [1, 2], "t": pa.array([1, 2], pa.timestamp("ns"))}), p,
                   use_deprecated_int96_timestamps=True)
    return [p]


def widened(tmp_path: Path) -> list[Path]:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int32())}), a)
    pq.write_table(pa.table({"id": pa.array([3, 4], pa.int64())}), b)
    return [a, b]


def required_and_optional(tmp_path: Path) -> list[Path]:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": [1, 2]}, schema=pa.schema([pa.field("id", pa.int64(), nullable=False)])), a)
    pq.write_table(pa.table({"id": [3, None]}), b)
    return [a, b]


@pytest.mark.parametrize("make", [nested, int96, widened, required_and_optional])
def test_what_cannot_be_copied_is_decoded(tmp_path: Path, make) -> None:
    paths = make(tmp_path)
    out = tmp_path / "in.parquet"
    imported = import_input(files_input(*paths), str(out), "parquet")
    assert imported.method == "decode"
    expected = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="permissive")
    got = pq.read_table(out)
    assert got.num_rows == expected.num_rows
    assert sorted(map(str, got.column(0).to_pylist())) == sorted(map(str, expected.column(0).to_pylist()))


def test_copying_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(many_types(0), src)
    monkeypatch.setattr("babelmr.settings._current", dataclasses.replace(settings(), copy_column_chunks=False))
    assert import_input(files_input(src), str(tmp_path / "in.parquet"), "parquet").method == "decode"


def test_a_text_program_format_is_always_decoded(tmp_path: Path) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(many_types(0), src)
    assert import_input(files_input(src, columns=["i64", "s"]), str(tmp_path / "in.csv"), "csv").method == "decode"


def test_newer_logical_types_keep_their_annotations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FLOAT16 and UUID have Thrift field ids above 13, which older codecs drop: the footer must keep them."""
    src = tmp_path / "src.parquet"
    ids = [bytes([k] * 16) for k in range(100)]
    pq.write_table(pa.table({"half": pa.array(np.arange(100) / 4, pa.float16()),
                             "id": pa.ExtensionArray.from_storage(pa.uuid(), pa.array(ids, pa.binary(16)))}), src)
    inp = files_input(src)
    out = tmp_path / "in.parquet"
    assert import_input(inp, str(out), "parquet").method == "copy"
    expected = decoded(inp, out, monkeypatch)
    got = pq.read_table(out)
    assert got.schema.equals(expected.schema) and got.equals(expected)
    assert pq.ParquetFile(out).schema.column(0).logical_type.type == "FLOAT16"


def _copies_of_local_files(tmp_path: Path) -> tuple[TaskInput, Path]:
    """An input of two local files whose chunks span several extents (merged and split: EXTENT_BYTES is small)."""
    paths = []
    for k in range(2):
        p = tmp_path / f"part-{k}.parquet"
        pq.write_table(many_types(k * 20_000, 20_000), p, row_group_size=7000)
        paths.append(p)
    return files_input(*paths, columns=["f64", "s", "i64", "dec"], row_groups=None), tmp_path / "in.parquet"


def test_local_extents_are_copied_by_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every extent of a local file goes through os.copy_file_range, none through a Python buffer."""
    monkeypatch.setattr(chunkcopy, "EXTENT_BYTES", 4097)
    inp, out = _copies_of_local_files(tmp_path)
    kernel, read = [], []
    copy_file_range, read_extent = chunkcopy.os.copy_file_range, chunkcopy._read
    monkeypatch.setattr(chunkcopy.os, "copy_file_range", lambda *a: kernel.append(a) or copy_file_range(*a))
    monkeypatch.setattr(chunkcopy, "_read", lambda *a: read.append(a) or read_extent(*a))
    assert import_input(inp, str(out), "parquet").method == "copy"
    assert kernel and not read
    assert_same_everywhere(str(out), decoded(inp, out, monkeypatch))


@pytest.mark.parametrize("refused_after", [0, 1, 5])
def test_where_the_kernel_refuses_to_copy_the_bytes_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              refused_after: int) -> None:
    """The file is byte for byte the one the kernel copies, whether copy_file_range is refused from the start or in
    the middle of an extent (after a partial copy). The refusal (EXDEV: across filesystems on older kernels) is
    injected: this machine's kernel copies between any two of its files."""
    monkeypatch.setattr(chunkcopy, "EXTENT_BYTES", 4097)
    inp, out = _copies_of_local_files(tmp_path)
    assert import_input(inp, str(out), "parquet").method == "copy"
    by_kernel = out.read_bytes()
    calls = []
    copy_file_range = chunkcopy.os.copy_file_range

    def refusing(src: int, dst: int, count: int, offset: int) -> int:
        calls.append(count)
        if len(calls) > refused_after:
            raise OSError(chunkcopy.errno.EXDEV, "Invalid cross-device link")
        return copy_file_range(src, dst, max(1, count // 3), offset)  # partial copies, as the kernel may make

    monkeypatch.setattr(chunkcopy.os, "copy_file_range", refusing)
    assert import_input(inp, str(out), "parquet").method == "copy"
    assert len(calls) == refused_after + 1  # refused once: every later extent is read without asking again
    assert out.read_bytes() == by_kernel
    assert_same_everywhere(str(out), decoded(inp, out, monkeypatch))


def test_a_real_read_error_of_the_kernel_copy_is_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from copy_file_range is a failed task (worth another attempt), not a silent fallback. Injected: a
    disk error cannot be produced on demand."""
    inp, out = _copies_of_local_files(tmp_path)

    def failing(*args: int) -> int:
        raise OSError(chunkcopy.errno.EIO, "Input/output error")

    monkeypatch.setattr(chunkcopy.os, "copy_file_range", failing)
    with pytest.raises(TaskError, match=r"copying Parquet column chunks .* failed: .*Input/output error"):
        import_input(inp, str(out), "parquet")


def test_a_local_file_truncated_while_copied_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel copy stops at the new end of a file cut short after planning: a short read, then the pinned
    version says the file changed. (The moment is chosen by wrapping the planner: timing is the only fault.)"""
    src = tmp_path / "a.parquet"
    pq.write_table(many_types(0, 20_000), src, row_group_size=7000)
    size, version = file_version(str(src))
    inp = TaskInput("data", "files", "parquet", [FileSlice(str(src), None, size, size, version)], source="test")
    plan = chunkcopy.plan

    def plan_then_truncate(*args: Any, **kwargs: Any) -> Any:
        planned = plan(*args, **kwargs)
        with open(src, "r+b") as f:
            f.truncate(size // 2)
        return planned

    monkeypatch.setattr(chunkcopy, "plan", plan_then_truncate)
    with pytest.raises(InputChanged, match="changed after the job was planned"):
        import_input(inp, str(tmp_path / "in.parquet"), "parquet")


@pytest.mark.s3
def test_a_copy_from_s3_is_byte_for_byte_the_kernel_copy(tmp_path: Path, s3_prefix: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The same files on SeaweedFS (ranged reads) and on the local disk (copy_file_range) give the same file."""
    monkeypatch.setattr(chunkcopy, "EXTENT_BYTES", 4097)
    inp, out = _copies_of_local_files(tmp_path)
    assert import_input(inp, str(out), "parquet").method == "copy"
    store = open_store(s3_prefix)
    for piece in inp.files:
        store.upload_file(piece.uri, Path(piece.uri).name)
    remote = dataclasses.replace(inp, files=[FileSlice(store.uri_for(Path(p.uri).name)) for p in inp.files])
    from_s3 = tmp_path / "from-s3.parquet"
    assert import_input(remote, str(from_s3), "parquet").method == "copy"
    assert from_s3.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("row_groups,columns", [
    ([0], ["s"]), ([2, 0], ["dec", "i8", "ts_tz"]), ([1], None), ([], ["f64"])])
def test_a_footer_decoded_in_part_is_the_whole_footer_where_decoded(tmp_path: Path, row_groups: list[int],
                                                                     columns: list[str] | None) -> None:
    """Only the chunks copied are decoded; each is what decoding the whole footer gives, the others are None."""
    src = tmp_path / "src.parquet"
    pq.write_table(many_types(0, 3000), src, row_group_size=1000, write_page_index=True)
    metadata = pq.ParquetFile(src).metadata
    whole, part = chunkcopy.thrift_footer(metadata), chunkcopy.thrift_footer(metadata, row_groups, columns)
    assert {f: v for f, v in part.fields.items() if f != chunkcopy.FMD_ROW_GROUPS} == \
        {f: v for f, v in whole.fields.items() if f != chunkcopy.FMD_ROW_GROUPS}
    names = [e.get(chunkcopy.SE_NAME).decode() for e in whole.get(chunkcopy.FMD_SCHEMA).items[1:]]
    for g, (rg, full) in enumerate(zip(part.get(chunkcopy.FMD_ROW_GROUPS).items,
                                       whole.get(chunkcopy.FMD_ROW_GROUPS).items, strict=True)):
        if g not in row_groups:
            assert rg is None
            continue
        assert {f: v for f, v in rg.fields.items() if f != chunkcopy.RG_COLUMNS} == \
            {f: v for f, v in full.fields.items() if f != chunkcopy.RG_COLUMNS}
        for name, chunk, full_chunk in zip(names, rg.get(chunkcopy.RG_COLUMNS).items,
                                           full.get(chunkcopy.RG_COLUMNS).items, strict=True):
            assert chunk == (full_chunk if columns is None or name in columns else None)


@pytest.mark.parametrize("kept", [32 << 20, 1], ids=["kept", "budget-spent"])
def test_small_partitions_are_copied_from_the_footer_read(store_uri: str, tmp_path: Path, kept: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A small exported file's row groups lie in the tail read for its partition footer: copying them reads
    nothing more (one GET per file, not two). Past the input's budget of kept bytes they are read again, to
    the same file."""
    from babelmr.store import requests
    from babelmr.worker import importer

    monkeypatch.setattr(importer, "KEPT_BYTES", kept)
    store = open_store(store_uri)
    table = many_types(0, 3000)
    table = table.cast(plain_schema(table.schema))
    uris = []
    for k in range(3):
        key = f"out-{k}.parquet"
        export_partitions(iter(table.slice(k * 100, 100).to_batches(50)), table.schema, store.open_output(key),
                          ["i32"], 3)
        uris.append(store.uri_for(key))
    for partition in range(3):
        inp = TaskInput("partials", "stage", "parquet", [FileSlice(u) for u in uris], partition=partition,
                        source="map")
        out = tmp_path / f"p{partition}.parquet"
        requests.reset()
        assert import_input(inp, str(out), "parquet").method == "copy"
        gets = requests.snapshot()["GET"]
        assert gets == (len(uris) if kept > 1 else 2 * len(uris))
        assert_same_everywhere(str(out), decoded(inp, out, monkeypatch))


def test_neighbouring_chunks_are_read_in_one_range_whatever_the_column_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Columns asked for in another order than the file's are still read in one range per row group (the
    copy lays them out in the file's order; its footer lists them in the columns' order)."""
    from babelmr.store import requests

    src = tmp_path / "src.parquet"
    pq.write_table(many_types(0, 4000), src, row_group_size=1000)  # i8, i16, i32, i64, u32, ... in this order
    inp = files_input(src, columns=["i64", "i8", "i32", "i16"], row_groups=[3, 1])
    out = tmp_path / "in.parquet"
    requests.reset()
    assert import_input(inp, str(out), "parquet").method == "copy"
    assert requests.snapshot()["GET"] == 1 + 2  # the footer, then one range per row group
    assert pq.read_schema(out).names == ["i64", "i8", "i32", "i16"]
    expected = pq.ParquetFile(src).read_row_groups([3, 1], columns=["i64", "i8", "i32", "i16"])
    assert_same_everywhere(str(out), expected)
    assert expected.equals(decoded(inp, out, monkeypatch))
    footer = chunkcopy.thrift_footer(pq.ParquetFile(out).metadata)
    for rg in footer.get(chunkcopy.FMD_ROW_GROUPS).items:  # its offset is its first byte, whichever column is there
        starts = [chunkcopy.chunk_start(c.get(chunkcopy.CC_META_DATA)) for c in rg.get(chunkcopy.RG_COLUMNS).items]
        assert rg.get(chunkcopy.RG_FILE_OFFSET) == min(starts) < starts[0]
