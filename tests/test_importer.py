"""babelmr.worker.importer: a task's inputs, read from the store, written locally in the program's format."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import babelmr.worker.importer as importer
from babelmr.errors import BabelMRError, InputError
from babelmr.spec import FileSlice, TaskInput
from babelmr.store import open_store
from babelmr.worker.exporter import export_partitions
from babelmr.worker.formats import open_writer, read_batches
from babelmr.worker.importer import import_input, import_inputs, input_paths
from babelmr.worker.partition import partition_ids


def rows_table(start: int, n: int, id_type: pa.DataType | None = None,
               name_type: pa.DataType | None = None) -> pa.Table:
    ids = np.arange(start, start + n)
    id_type, name_type = id_type or pa.int64(), name_type or pa.string()
    return pa.table({
        "id": pa.array(ids, id_type),
        "name": pa.array([f"n{i}" for i in ids], name_type),
        "x": pa.array(ids * 0.5),
    })


def parquet_input(*paths: Path | str, name: str = "data", columns: list[str] | None = None,
                  row_groups: list[int] | None = None) -> TaskInput:
    return TaskInput(name=name, kind="files", format="parquet", columns=columns, source="test",
                     files=[FileSlice(str(p), row_groups) for p in paths])


def csv_input(*paths: Path, schema: dict[str, str] | None = None, columns: list[str] | None = None,
              **options: object) -> TaskInput:
    csv = {"delimiter": ",", "header": True, "column_names": None, "schema": schema, **options}
    return TaskInput(name="data", kind="files", format="csv", files=[FileSlice(str(p)) for p in paths],
                     columns=columns, csv=csv, source="test")


def read_local(path: str, fmt: str = "parquet") -> pa.Table:
    if fmt == "parquet":
        return pq.read_table(path)
    batches = list(read_batches(path, fmt))
    return pa.Table.from_batches(batches)


# -- Parquet: columns and row groups ---------------------------------------------------------------------------


def test_columns_and_row_groups_subset(tmp_path: Path) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(rows_table(0, 500), src, row_group_size=100)
    assert pq.ParquetFile(src).num_row_groups == 5
    out = tmp_path / "in.parquet"
    done = import_input(parquet_input(src, columns=["x", "id"], row_groups=[1, 3]), str(out), "parquet")
    back = pq.read_table(out)
    assert back.column_names == ["x", "id"]
    assert back.column("id").to_pylist() == list(range(100, 200)) + list(range(300, 400))
    assert back.column("x").to_pylist() == [i * 0.5 for i in back.column("id").to_pylist()]
    assert (done.rows, done.files, done.name, done.path) == (200, 1, "data", str(out))
    assert done.bytes == os.path.getsize(out)


def test_row_groups_that_do_not_exist_are_named(tmp_path: Path) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(rows_table(0, 200), src, row_group_size=100)
    with pytest.raises(InputError, match=r"has 2 row groups; row_groups \[2, 7\] do not exist") as err:
        import_input(parquet_input(src, row_groups=[0, 2, 7]), str(tmp_path / "in.parquet"), "parquet")
    assert str(src) in str(err.value)


def test_many_files_are_read_in_parallel_and_all_rows_arrive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "QUEUE_BATCHES", 2)  # readers block on a full queue and still finish
    monkeypatch.setattr(importer, "BATCH_ROWS", 100)
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"part-{i:02d}.parquet")
        pq.write_table(rows_table(i * 1000, 1000), paths[-1], row_group_size=250)
    out = tmp_path / "in.parquet"
    done = import_input(parquet_input(*paths), str(out), "parquet")
    back = pq.read_table(out)
    assert done.rows == back.num_rows == 12_000 and done.files == 12
    assert sorted(back.column("id").to_pylist()) == list(range(12_000))
    assert sorted(back.column("name").to_pylist()) == sorted(f"n{i}" for i in range(12_000))


def test_compatible_schemas_are_unified(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    pq.write_table(rows_table(0, 10, pa.int32(), pa.string()), a)
    pq.write_table(rows_table(10, 10, pa.int64(), pa.string_view()), b)
    pq.write_table(rows_table(20, 10, pa.int16(), pa.large_string()), c)
    out = tmp_path / "in.parquet"
    import_input(parquet_input(a, b, c), str(out), "parquet")
    back = pq.read_table(out)
    assert back.schema.field("id").type == pa.int64()
    assert back.schema.field("name").type == pa.string()
    assert sorted(back.column("id").to_pylist()) == list(range(30))


def test_incompatible_schemas_are_an_input_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": [1, 2]}), a)
    pq.write_table(pa.table({"id": ["x", "y"]}), b)
    with pytest.raises(InputError, match="incompatible schemas"):
        import_input(parquet_input(a, b), str(tmp_path / "in.parquet"), "parquet")


# -- stage inputs ---------------------------------------------------------------------------------------------------


def exported_files(store_uri: str, partitions: int, files: int = 3) -> tuple[list[str], pa.Table]:
    """Exporter output of ``files`` upstream tasks in a store; returns their URIs and all their rows."""
    store = open_store(store_uri)
    rng = np.random.default_rng(5)
    uris, tables = [], []
    for t in range(files):
        n = 2000
        table = pa.table({"word": pa.array([f"w{i}" for i in rng.integers(0, 300, n)]),
                          "n": pa.array(np.arange(t * n, (t + 1) * n))})
        key = f"runs/r/stages/map/data/t{t:05d}-a1-x.parquet"
        export_partitions(table.to_batches(max_chunksize=300), table.schema, store.open_output(key), ["word"],
                          partitions)
        uris.append(store.uri_for(key))
        tables.append(table)
    return uris, pa.concat_tables(tables)


def stage_input(uris: list[str], partition: int, columns: list[str] | None = None) -> TaskInput:
    return TaskInput(name="mapped", kind="stage", format="parquet", files=[FileSlice(u) for u in uris],
                     partition=partition, columns=columns, source="map")


def test_stage_input_reads_exactly_one_partition(store_uri: str, tmp_path: Path) -> None:
    partitions = 4
    uris, everything = exported_files(store_uri, partitions)
    ids = partition_ids(everything.combine_chunks().to_batches()[0], ["word"], partitions)
    total = 0
    for p in range(partitions):
        out = tmp_path / f"in-{p}.parquet"
        done = import_input(stage_input(uris, p), str(out), "parquet")
        back = pq.read_table(out)
        expected = everything.filter(pa.array(ids == p))
        assert done.rows == back.num_rows == expected.num_rows > 0
        assert sorted(back.column("n").to_pylist()) == sorted(expected.column("n").to_pylist())
        assert set(partition_ids(back.combine_chunks().to_batches()[0], ["word"], partitions).tolist()) == {p}
        total += back.num_rows
    assert total == everything.num_rows


def test_stage_input_empty_partition_gives_an_empty_file_with_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "up.parquet"
    table = pa.table({"word": ["only"] * 10, "n": list(range(10))})
    index = export_partitions(table.to_batches(), table.schema, pa.OSFile(str(path), "wb"), ["word"], 8)
    empty = next(p for p, groups in enumerate(index.row_groups) if not groups)
    full = next(p for p, groups in enumerate(index.row_groups) if groups)
    out = tmp_path / "in.parquet"
    assert import_input(stage_input([str(path)], empty), str(out), "parquet").rows == 0
    back = pq.read_table(out)
    assert back.num_rows == 0 and back.schema.names == ["word", "n"]
    out_csv = tmp_path / "in.csv"
    assert import_input(stage_input([str(path), str(path)], full, ["n"]), str(out_csv), "csv").rows == 20
    assert sorted(read_local(str(out_csv), "csv").column("n").to_pylist()) == sorted(list(range(10)) * 2)


def test_stage_input_of_a_file_without_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pq.write_table(rows_table(0, 10), path)
    with pytest.raises(InputError, match="no babelmr partition index") as err:
        import_input(stage_input([str(path)], 0), str(tmp_path / "in.parquet"), "parquet")
    assert str(path) in str(err.value)


def test_stage_input_partition_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "up.parquet"
    table = pa.table({"word": ["a", "b"], "n": [1, 2]})
    export_partitions(table.to_batches(), table.schema, pa.OSFile(str(path), "wb"), ["word"], 2)
    with pytest.raises(InputError, match="has 2 partitions; partition 5"):
        import_input(stage_input([str(path)], 5), str(tmp_path / "in.parquet"), "parquet")


# -- errors ----------------------------------------------------------------------------------------------------------


def test_corrupt_parquet_file_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(rows_table(0, 100), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(InputError, match="cannot read Parquet file") as err:
        import_input(parquet_input(good, bad, name="events"), str(tmp_path / "in.parquet"), "parquet")
    assert str(bad) in str(err.value) and "'events'" in str(err.value)


def test_truncated_parquet_file_is_named(tmp_path: Path) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(rows_table(0, 10_000), src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])  # an upload cut short: no footer
    with pytest.raises(InputError) as err:
        import_input(parquet_input(src), str(tmp_path / "in.parquet"), "parquet")
    assert str(src) in str(err.value)


def corrupt_pages(tmp_path: Path) -> Path:
    src = tmp_path / "src.parquet"
    pq.write_table(rows_table(0, 100_000), src, row_group_size=20_000)
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes(b ^ 0x5A for b in data[middle:middle + 2000])  # footer intact
    src.write_bytes(bytes(data))
    return src


def test_corrupt_data_pages_name_the_file_when_decoded(tmp_path: Path) -> None:
    src = corrupt_pages(tmp_path)
    with pytest.raises(BabelMRError) as err:
        import_input(parquet_input(src), str(tmp_path / "in.csv"), "csv")
    assert str(src) in str(err.value)


def test_corrupt_data_pages_copied_are_named_when_checked(tmp_path: Path) -> None:
    """Copying does not decode, so the pages reach the program; the worker checks them when it fails."""
    src = corrupt_pages(tmp_path)
    good = tmp_path / "good.parquet"
    pq.write_table(rows_table(0, 1000), good)
    imported = import_input(parquet_input(good, src), str(tmp_path / "in.parquet"), "parquet")
    assert imported.method == "copy"
    with pytest.raises(InputError) as err:
        imported.check_copied()
    assert str(src) in str(err.value) and str(good) not in str(err.value)


def test_missing_parquet_file_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "gone.parquet"
    with pytest.raises(InputError) as err:
        import_input(parquet_input(gone), str(tmp_path / "in.parquet"), "parquet")
    assert str(gone) in str(err.value)


def test_a_column_no_file_has_names_the_column(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(rows_table(0, 10), a)
    pq.write_table(rows_table(10, 10).drop_columns(["x"]), b)
    with pytest.raises(InputError) as err:
        import_input(parquet_input(a, b, columns=["id", "nope"]), str(tmp_path / "in.parquet"), "parquet")
    message = str(err.value)
    assert "'nope'" in message and "fix 'columns'" in message


def test_a_column_some_files_lack_is_null_in_their_rows(tmp_path: Path) -> None:
    """Schema drift: a column only some files have is read as NULL from the others (named or not)."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(rows_table(0, 10), a)
    pq.write_table(rows_table(10, 10).drop_columns(["x"]), b)
    for columns in (["id", "x"], None):
        out = tmp_path / "in.parquet"
        assert import_input(parquet_input(a, b, columns=columns), str(out), "parquet").rows == 20
        back = pq.read_table(out).sort_by("id")
        assert back.column("x").to_pylist() == [i * 0.5 for i in range(10)] + [None] * 10


# -- CSV ----------------------------------------------------------------------------------------------------------


def test_csv_without_declared_schema_infers_types(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text('code,amount,label\n007,1.5,"x, y"\n010,2.25,"multi\nline"\n', encoding="utf-8")
    out = tmp_path / "in.parquet"
    assert import_input(csv_input(src), str(out), "parquet").rows == 2
    back = pq.read_table(out)
    assert back.schema.field("code").type == pa.int64()
    assert back.to_pylist() == [{"code": 7, "amount": 1.5, "label": "x, y"},
                                {"code": 10, "amount": 2.25, "label": "multi\nline"}]


def test_csv_with_declared_schema(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("code,amount,day\n007,1.50,2024-01-02\n")
    b.write_text("code,amount,day\n010,2.25,2024-02-29\n")
    schema = {"code": "string", "amount": "decimal128(10,2)", "day": "date32"}
    out = tmp_path / "in.parquet"
    assert import_input(csv_input(a, b, schema=schema), str(out), "parquet").rows == 2
    back = pq.read_table(out)
    assert back.schema.types == [pa.string(), pa.decimal128(10, 2), pa.date32()]
    assert sorted(back.column("code").to_pylist()) == ["007", "010"]


def test_csv_later_files_follow_the_first_files_types(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("v\n1.5\n")
    b.write_text("v\n2\n")  # alone it would be int64
    out = tmp_path / "in.parquet"
    import_input(csv_input(a, b), str(out), "parquet")
    back = pq.read_table(out)
    assert back.schema.field("v").type == pa.float64()
    assert sorted(back.column("v").to_pylist()) == [1.5, 2.0]


def test_csv_options_delimiter_no_header_columns_and_gzip(tmp_path: Path) -> None:
    src = tmp_path / "a.csv.gz"
    with gzip.open(src, "wt") as f:
        f.write("1;alpha;x\n2;beta;y\n")
    inp = csv_input(src, header=False, delimiter=";", column_names=["id", "name", "tag"], columns=["name", "id"])
    out = tmp_path / "in.parquet"
    import_input(inp, str(out), "parquet")
    assert pq.read_table(out).to_pylist() == [{"name": "alpha", "id": 1}, {"name": "beta", "id": 2}]


def test_csv_value_not_matching_the_declared_type(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("id\n1\nabc\n")
    with pytest.raises(InputError, match="abc") as err:
        import_input(csv_input(src, schema={"id": "int64"}), str(tmp_path / "in.parquet"), "parquet")
    assert str(src) in str(err.value)


def test_csv_missing_column_and_missing_file_are_named(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("id,name\n1,x\n")
    with pytest.raises(InputError) as err:
        import_input(csv_input(src, columns=["nope"]), str(tmp_path / "in.parquet"), "parquet")
    assert "nope" in str(err.value) and str(src) in str(err.value)
    gone = tmp_path / "gone.csv"
    with pytest.raises(InputError) as err:
        import_input(csv_input(src, gone), str(tmp_path / "in.parquet"), "parquet")
    assert str(gone) in str(err.value)


# -- program formats and file names ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_parquet_input_in_text_formats(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(rows_table(0, 50), src)
    out = tmp_path / f"in.{fmt}"
    assert import_input(parquet_input(src), str(out), fmt).rows == 50
    if fmt == "jsonl":
        first = json.loads(out.read_text().splitlines()[0])
        assert first == {"id": 0, "name": "n0", "x": 0}
    back = pa.Table.from_batches(list(read_batches(str(out), fmt, {"id": pa.int64(), "name": pa.string(),
                                                                     "x": pa.float64()})))
    assert back.column("id").to_pylist() == list(range(50))
    assert back.column("name").to_pylist() == [f"n{i}" for i in range(50)]


def test_input_paths() -> None:
    one = [parquet_input("a", name="lines")]
    assert input_paths(one, "/w", "csv") == {"lines": "/w/in.csv"}
    two = [parquet_input("a", name="orders"), parquet_input("b", name="customers")]
    assert input_paths(two, "/w", "jsonl") == {"orders": "/w/in_orders.jsonl", "customers": "/w/in_customers.jsonl"}


def test_import_inputs_names_files_by_input(tmp_path: Path) -> None:
    src = tmp_path / "src.parquet"
    pq.write_table(rows_table(0, 30), src)
    work = tmp_path / "work"
    work.mkdir()
    single, seconds = import_inputs([parquet_input(src, name="lines")], str(work), "parquet")
    assert [i.path for i in single] == [str(work / "in.parquet")] and seconds >= 0
    both, _ = import_inputs([parquet_input(src, name="orders"), parquet_input(src, name="small", columns=["id"])],
                            str(work), "csv")
    assert [(i.name, i.path, i.rows) for i in both] == [("orders", str(work / "in_orders.csv"), 30),
                                                         ("small", str(work / "in_small.csv"), 30)]
    assert (work / "in_small.csv").read_text().splitlines()[:2] == ['"id"', "0"]


def test_an_input_without_files_gives_an_empty_file(tmp_path: Path) -> None:
    inp = TaskInput(name="nothing", kind="stage", format="parquet", files=[], partition=0, source="map")
    out = tmp_path / "in.parquet"
    assert import_input(inp, str(out), "parquet").rows == 0
    assert pq.read_table(out).num_rows == 0


# -- empty CSV inputs --------------------------------------------------------------------------------------------------


def test_a_zero_byte_csv_file_is_an_empty_input(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty.csv", tmp_path / "full.csv"
    empty.write_bytes(b"")
    full.write_text("id,name\n1,a\n2,b\n")
    for files in ([empty, full], [full, empty]):
        out = tmp_path / "in.parquet"
        assert import_input(csv_input(*files), str(out), "parquet").rows == 2
        assert pq.read_table(out).to_pylist() == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_only_empty_csv_files_give_a_typed_empty_input(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    out = tmp_path / f"in.{fmt}"
    schema = {"id": "int64", "day": "date32"}
    assert import_input(csv_input(empty, empty, schema=schema), str(out), fmt).rows == 0
    if fmt == "parquet":
        assert pq.read_schema(out) == pa.schema([("id", pa.int64()), ("day", pa.date32())])
    elif fmt == "csv":
        assert out.read_text().splitlines() == ['"id","day"']
    header_only = tmp_path / "header.csv"
    header_only.write_text("id,day,extra\n")
    assert import_input(csv_input(header_only, empty, schema=schema), str(out), "parquet").rows == 0
    assert pq.read_schema(out) == pa.schema([("id", pa.int64()), ("day", pa.date32()), ("extra", pa.null())])


# -- schema drift between the files of one task ---------------------------------------------------------------------


def test_csv_files_with_columns_in_another_order_are_read_by_name(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write_text("id,name,x\n1,a,0.5\n")
    b.write_text("x,id,name\n1.5,2,b\n")
    c.write_text("name,x,id,extra\nc,2.5,3,yes\n")  # and one column more
    for fmt in ("parquet", "csv", "jsonl"):
        out = tmp_path / f"in.{fmt}"
        assert import_input(csv_input(a, b, c), str(out), fmt).rows == 3
        back = read_local(str(out), fmt)
        assert back.schema.names == ["id", "name", "x", "extra"]
        assert sorted(back.to_pylist(), key=lambda r: r["id"]) == [
            {"id": 1, "name": "a", "x": 0.5, "extra": None}, {"id": 2, "name": "b", "x": 1.5, "extra": None},
            {"id": 3, "name": "c", "x": 2.5, "extra": "yes"}]
    out = tmp_path / "in.parquet"
    import_input(csv_input(a, b, c, columns=["extra", "id"]), str(out), "parquet")
    assert sorted(pq.read_table(out).to_pylist(), key=lambda r: r["id"]) == [
        {"extra": None, "id": 1}, {"extra": None, "id": 2}, {"extra": "yes", "id": 3}]


def test_csv_files_promote_losslessly(tmp_path: Path) -> None:
    """int in one file and float in another read as float64, an all-empty column takes the other files' type."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("v,w\n2,\n")  # v int64, w null
    b.write_text("v,w\n1.5,2024-01-02\n")
    out = tmp_path / "in.parquet"
    import_input(csv_input(a, b), str(out), "parquet")
    back = pq.read_table(out)
    assert back.schema == pa.schema([("v", pa.float64()), ("w", pa.date32())])
    assert sorted(back.column("v").to_pylist()) == [1.5, 2.0]


def test_csv_files_in_conflict_name_the_column_the_types_and_both_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("id,code\n1,10\n")
    b.write_text("code,id\nX7,2\n")
    with pytest.raises(InputError) as err:
        import_input(csv_input(a, b), str(tmp_path / "in.parquet"), "parquet")
    message = str(err.value)
    assert "'code'" in message and "int64" in message and "string" in message
    assert str(a) in message and str(b) in message and "csv.schema" in message
    out = tmp_path / "in.parquet"  # the fix the message names
    import_input(csv_input(a, b, schema={"code": "string"}), str(out), "parquet")
    assert sorted(pq.read_table(out).column("code").to_pylist()) == ["10", "X7"]


def test_parquet_files_drift_column_order_extra_columns_and_wider_types(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": pa.array([1], pa.int32()), "v": pa.array([None], pa.null())}), a)
    pq.write_table(pa.table({"v": pa.array(["x"]), "id": pa.array([2], pa.int64()), "more": [1.5]}), b)
    pq.write_table(pa.table({"more": pa.array([2.5], pa.float32()), "id": pa.array([3], pa.uint16())}), c)
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"in.{fmt}"
        assert import_input(parquet_input(a, b, c), str(out), fmt).rows == 3
        back = read_local(str(out), fmt)
        assert back.schema.names == ["id", "v", "more"]
        assert sorted(back.to_pylist(), key=lambda r: r["id"]) == [
            {"id": 1, "v": None, "more": None}, {"id": 2, "v": "x", "more": 1.5}, {"id": 3, "v": None, "more": 2.5}]
    assert pq.read_schema(tmp_path / "in.parquet").types == [pa.int64(), pa.string(), pa.float64()]


@pytest.mark.parametrize(("one", "other"), [(pa.int64(), pa.string()), (pa.int64(), pa.float64()),
                                            (pa.timestamp("us", tz="UTC"), pa.timestamp("us"))])
def test_parquet_files_in_lossy_conflict_are_refused(tmp_path: Path, one: pa.DataType, other: pa.DataType) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"k": [1], "v": pa.array([None], one)}), a)
    pq.write_table(pa.table({"v": pa.array([None], other), "k": [2]}), b)
    with pytest.raises(InputError) as err:
        import_input(parquet_input(a, b), str(tmp_path / "in.parquet"), "parquet")
    message = str(err.value)
    assert "'v'" in message and str(one) in message and str(other) in message
    assert str(a) in message and str(b) in message


# -- NULL in external CSV inputs ---------------------------------------------------------------------------------------


def test_csv_input_null_is_an_empty_unquoted_field(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text('s,n,f\n"",1,nan\n,,\nNA,3,\nnull,4,1.5\n')
    out = tmp_path / "in.parquet"
    import_input(csv_input(src), str(out), "parquet")
    back = pq.read_table(out)
    assert back.column("s").to_pylist() == ["", None, "NA", "null"]
    assert back.column("n").to_pylist() == [1, None, 3, 4]
    f = back.column("f").to_pylist()
    assert np.isnan(f[0]) and f[1:] == [None, None, 1.5]


def test_csv_input_of_one_column_keeps_its_null_rows(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text('k\na\n\n""\nb\n\n')
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"in.{fmt}"
        assert import_input(csv_input(src), str(out), fmt).rows == 5
        assert read_local(str(out), fmt).column("k").to_pylist() == ["a", None, "", "b", None]


# -- drift against an oracle ---------------------------------------------------------------------------------------

WORDS = ["", "x", "a,b", 'q"q', "two\nlines", "NA", "null", "\\N", "Zürich"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_drifting_files_read_like_duckdb_union_by_name(tmp_path: Path, data: st.DataObject) -> None:
    """Files of one input with columns in any order, some missing, ints of several widths: every row, by name.

    The oracle is DuckDB's read_parquet(union_by_name) over the same pieces; the CSV pieces hold the same rows.
    """
    n = data.draw(st.integers(0, 30))
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "s": pa.array(data.draw(st.lists(st.one_of(st.none(), st.sampled_from(WORDS)), min_size=n, max_size=n)),
                      pa.string()),
        "i": pa.array(data.draw(st.lists(st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)), min_size=n,
                                         max_size=n)), pa.int64()),
        "f": pa.array(data.draw(st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
                                         min_size=n, max_size=n)), pa.float64()),
    })
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=1, max_size=4)))
    pieces = [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    parquet_files, csv_files = [], []
    for p, piece in enumerate(pieces):
        kept = ["id", *data.draw(st.permutations(["s", "i", "f"])).copy()[:data.draw(st.integers(0, 3))]]
        order = data.draw(st.permutations(kept))
        piece = piece.select(order)
        if "i" in order and data.draw(st.booleans()):
            piece = piece.set_column(order.index("i"), "i", piece.column("i").cast(pa.int32()))
        pq.write_table(piece, tmp_path / f"p{p}.parquet")
        parquet_files.append(tmp_path / f"p{p}.parquet")
        writer = open_writer(str(tmp_path / f"p{p}.csv"), "csv", piece.schema)
        for batch in piece.to_batches():
            writer.write(batch)
        writer.close()
        csv_files.append(tmp_path / f"p{p}.csv")
    names = ", ".join(f"'{f}'" for f in parquet_files)
    oracle = duckdb.sql(f"select * from read_parquet([{names}], union_by_name = true)").to_arrow_table()
    want = sorted(oracle.to_pylist(), key=lambda r: r["id"])
    for inp in (parquet_input(*parquet_files), csv_input(*csv_files, schema={"s": "string"})):
        out = tmp_path / "in.parquet"
        assert import_input(inp, str(out), "parquet").rows == n
        back = pq.read_table(out)
        assert set(back.schema.names) == set(oracle.schema.names)
        got = sorted(back.to_pylist(), key=lambda r: r["id"])
        assert [{c: r[c] for c in oracle.schema.names} for r in got] == want, inp.format


def test_a_row_longer_than_the_probe_of_a_later_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Later CSV files infer types from a small first block; a row that does not fit it gets a larger one."""
    monkeypatch.setattr(importer, "PROBE_BLOCK", 64)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("id,text\n1,short\n")
    b.write_text(f'id,text\n2,"{"long " * 40}\nline"\n')
    out = tmp_path / "in.parquet"
    assert import_input(csv_input(a, b), str(out), "parquet").rows == 2
    assert sorted(pq.read_table(out).column("text").to_pylist()) == ["long " * 40 + "\nline", "short"]


def test_only_empty_parquet_files_give_their_schema(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.schema([("k", pa.int32()), ("t", pa.timestamp("us", tz="UTC"))]).empty_table(), a)
    pq.write_table(pa.schema([("t", pa.timestamp("us", tz="UTC")), ("k", pa.int64())]).empty_table(), b)
    out = tmp_path / "in.parquet"
    assert import_input(parquet_input(a, b), str(out), "parquet").rows == 0
    assert pq.read_schema(out) == pa.schema([("k", pa.int64()), ("t", pa.timestamp("us", tz="UTC"))])


def test_a_csv_input_column_whose_type_changes_after_the_first_block_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Types are inferred from a file's first block: a later value of another type names column, file and fix."""
    monkeypatch.setattr(importer, "READ_BLOCK", 1 << 10)
    src = tmp_path / "a.csv"
    src.write_text("id,v\n" + "".join(f"{i},{i}\n" for i in range(2000)) + "2000,2.5\n")
    with pytest.raises(InputError) as err:
        import_input(csv_input(src), str(tmp_path / "in.parquet"), "parquet")
    message = str(err.value)
    assert "column 'v'" in message and str(src) in message and "int64" in message and "'2.5'" in message
    assert '"v": "float64"' in message
    out = tmp_path / "in.parquet"
    assert import_input(csv_input(src, schema={"v": "float64"}), str(out), "parquet").rows == 2001
