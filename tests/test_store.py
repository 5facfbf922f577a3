"""babelmr.store: LocalStore and S3Store (through open_store), input listing, filesystem_for.

Every store test runs twice through the ``store_uri`` fixture: on a temp folder and on a prefix of a
real SeaweedFS S3 server.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from babelmr.errors import InputError, StoreError
from babelmr.store import Store, filesystem_for, list_input_files, open_store
from babelmr.store.local import LocalStore
from babelmr.store.s3 import S3Store


@pytest.fixture
def store(store_uri: str) -> Store:
    return open_store(store_uri)


def is_s3(store: Store) -> bool:
    return store.uri.startswith("s3://")


# -- open_store / filesystem_for ---------------------------------------------------------------------


def test_open_store_picks_the_store_kind(store_uri: str) -> None:
    store = open_store(store_uri)
    if store_uri.startswith("s3://"):
        assert isinstance(store, S3Store)
        assert store.uri == store_uri
        assert store.uri_for("a/b.json") == f"{store_uri}/a/b.json"
    else:
        assert isinstance(store, LocalStore)
        assert store.uri == os.path.abspath(store_uri)
        assert store.uri_for("a/b.json") == os.path.join(os.path.abspath(store_uri), "a", "b.json")


def test_open_store_accepts_file_uri_and_refuses_other_schemes(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/s")
    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / "s")
    with pytest.raises(StoreError, match="unsupported scheme"):
        open_store("gs://bucket/prefix")


def test_filesystem_for_opens_what_the_store_wrote(store: Store) -> None:
    store.write_bytes("dir/obj.bin", b"payload")
    fs, path = filesystem_for(store.uri_for("dir/obj.bin"))
    if is_s3(store):
        assert isinstance(fs, pafs.S3FileSystem)
        assert path == store.path("dir/obj.bin")
        assert not path.startswith("s3://")
    else:
        assert isinstance(fs, pafs.LocalFileSystem)
        assert os.path.isabs(path)
    with fs.open_input_stream(path) as f:
        assert f.read() == b"payload"


def test_filesystem_for_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fs, path = filesystem_for("rel/x.parquet")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == str(tmp_path / "rel" / "x.parquet")
    assert filesystem_for(f"file://{tmp_path}/y.csv")[1] == str(tmp_path / "y.csv")


# -- put_if_absent ---------------------------------------------------------------------------------------


def test_put_if_absent_first_writer_wins(store: Store) -> None:
    assert store.put_if_absent("commits/t00001.json", b"first") is True
    assert store.put_if_absent("commits/t00001.json", b"second") is False
    assert store.read_bytes("commits/t00001.json") == b"first"
    # another key is independent
    assert store.put_if_absent("commits/t00002.json", b"other") is True
    assert store.read_bytes("commits/t00002.json") == b"other"


def test_put_if_absent_after_write_bytes_is_refused(store: Store) -> None:
    store.write_bytes("k", b"written")
    assert store.put_if_absent("k", b"late") is False
    assert store.read_bytes("k") == b"written"


def test_put_if_absent_race_has_exactly_one_winner(store: Store) -> None:
    threads_n = 16
    barrier = threading.Barrier(threads_n)
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def attempt(i: int) -> None:
        try:
            barrier.wait()
            results[i] = store.put_if_absent("race/commit.json", f"attempt-{i}".encode())
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == threads_n
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1, f"winners: {winners}"
    assert store.read_bytes("race/commit.json") == f"attempt-{winners[0]}".encode()
    assert [e.path for e in store.list("race")] == ["race/commit.json"]  # no temp files left behind


# -- write_bytes / read_bytes / exists / delete -----------------------------------------------------------


def test_write_bytes_replaces_and_read_bytes_reads(store: Store) -> None:
    store.write_bytes("runs/r1/run.json", b'{"v": 1}')
    assert store.read_bytes("runs/r1/run.json") == b'{"v": 1}'
    store.write_bytes("runs/r1/run.json", b'{"v": 2, "longer": true}')
    assert store.read_bytes("runs/r1/run.json") == b'{"v": 2, "longer": true}'
    store.write_bytes("runs/r1/run.json", b"{}")  # shorter: no tail of the old content survives
    assert store.read_bytes("runs/r1/run.json") == b"{}"
    assert [e.path for e in store.list("runs")] == ["runs/r1/run.json"]


def test_read_bytes_of_a_missing_key_raises_file_not_found(store: Store) -> None:
    with pytest.raises(FileNotFoundError):
        store.read_bytes("no/such/key")


def test_exists(store: Store) -> None:
    assert not store.exists("a/b.txt")
    store.write_bytes("a/b.txt", b"x")
    assert store.exists("a/b.txt")
    assert not store.exists("a")  # a "folder" is not an object
    assert not store.exists("a/b")
    store.delete(["a/b.txt"])
    assert not store.exists("a/b.txt")


def test_open_output_list_and_delete(store: Store) -> None:
    payload = os.urandom(300_000)
    with store.open_output("data/t00000-a1-abcd.parquet") as f:
        f.write(payload[:100_000])
        f.write(payload[100_000:])
    with store.open_output("data/t00001-a1-ef01.parquet") as f:
        f.write(b"small")
    assert store.read_bytes("data/t00000-a1-abcd.parquet") == payload
    entries = store.list("data")
    assert [(e.path, e.size) for e in entries] == [
        ("data/t00000-a1-abcd.parquet", 300_000),
        ("data/t00001-a1-ef01.parquet", 5),
    ]
    store.delete(["data/t00000-a1-abcd.parquet", "data/never-existed"])  # absent keys are ignored
    assert [e.path for e in store.list("data")] == ["data/t00001-a1-ef01.parquet"]
    store.delete([])
    store.delete(["data/t00001-a1-ef01.parquet"])
    assert store.list("data") == []


@pytest.mark.s3
def test_open_output_on_s3_appears_only_when_closed(s3_prefix: str) -> None:
    store = open_store(s3_prefix)
    f = store.open_output("pending/obj.bin")
    f.write(os.urandom(1000))
    assert not store.exists("pending/obj.bin")
    f.close()
    assert store.exists("pending/obj.bin")


def test_delete_many_keys(store: Store) -> None:
    keys = [f"many/k{i:04d}" for i in range(1005)] if is_s3(store) else [f"many/k{i:04d}" for i in range(50)]
    for key in keys[:3] + keys[-3:]:
        store.write_bytes(key, b"x")
    store.delete(keys)  # more than one delete_objects batch on S3
    assert store.list("many") == []


# -- list --------------------------------------------------------------------------------------------------


def test_list_is_recursive_sorted_and_hides_nothing_it_should_not(store: Store) -> None:
    keys = {
        "stage/data/b.parquet": b"bb",
        "stage/data/a.parquet": b"a",
        "stage/commits/t00000.json": b"{}",
        "stage/logs/deep/er/x.stdout": b"12345",
        "stage/_SUCCESS": b"0",
        "stage/.hidden": b"h",
        "stage/_metadata": b"m",
    }
    for key, data in keys.items():
        store.write_bytes(key, data)
    store.write_bytes("stagefoo/not-under-stage", b"n")  # shares the prefix string, not the folder
    store.write_bytes("top.json", b"t")

    entries = store.list("stage")
    assert [e.path for e in entries] == sorted(keys)
    assert {e.path: e.size for e in entries} == {k: len(v) for k, v in keys.items()}
    assert [e.path for e in store.list("stage/logs")] == ["stage/logs/deep/er/x.stdout"]
    everything = [e.path for e in store.list("")]
    assert everything == sorted([*keys, "stagefoo/not-under-stage", "top.json"])


def test_list_of_a_missing_prefix_is_empty(store: Store) -> None:
    assert store.list("nothing/here") == []


def test_local_list_hides_temp_files_of_writes_in_progress(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s"))
    store.write_bytes("d/real.json", b"1")
    (tmp_path / "s" / "d" / ".tmp-abc123").write_bytes(b"partial")
    assert [e.path for e in store.list("d")] == ["d/real.json"]


# -- upload_file ---------------------------------------------------------------------------------------------


def test_upload_file(store: Store, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = os.urandom(12 * 1024 * 1024 + 17)  # more than one 8 MiB chunk (and multipart on S3)
    big.write_bytes(data)
    store.upload_file(str(big), "logs/big.bin")
    assert store.read_bytes("logs/big.bin") == data
    assert [(e.path, e.size) for e in store.list("logs")] == [("logs/big.bin", len(data))]

    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    store.upload_file(str(empty), "logs/empty.log")
    assert store.exists("logs/empty.log")
    assert store.read_bytes("logs/empty.log") == b""


# -- list_input_files -----------------------------------------------------------------------------------------


def _put(store: Store, key: str, data: bytes) -> None:
    # Through pyarrow, not boto3: botocore's "Expect: 100-continue" PUT of an EMPTY body leaves a stale
    # response on the pooled connection to SeaweedFS, and the next boto3 request hangs until its timeout.
    with store.open_output(key) as f:
        f.write(data)


def _input_tree(store: Store) -> None:
    for key, data in {
        "in/part-0.parquet": b"0" * 10,
        "in/part-1.parquet": b"1" * 11,
        "in/sub/part-2.parquet": b"2" * 12,
        "in/other.csv": b"a,b\n",
        "in/_SUCCESS": b"",
        "in/.part-0.parquet.crc": b"crc",
        "in/sub/_metadata": b"meta",
        "in/sub/.hidden": b"h",
        "in2/part-9.parquet": b"9",
    }.items():
        _put(store, key, data)


def test_list_input_files_single_file(store: Store) -> None:
    _input_tree(store)
    uri = store.uri_for("in/part-1.parquet")
    assert [(e.path, e.size) for e in list_input_files(uri)] == [(uri, 11)]


def test_list_input_files_folder_skips_markers_and_hidden_files(store: Store) -> None:
    _input_tree(store)
    files = list_input_files(store.uri_for("in"))
    assert [(e.path, e.size) for e in files] == [
        (store.uri_for("in/other.csv"), 4),
        (store.uri_for("in/part-0.parquet"), 10),
        (store.uri_for("in/part-1.parquet"), 11),
        (store.uri_for("in/sub/part-2.parquet"), 12),
    ]
    # a trailing slash names the same folder
    assert [e.path for e in list_input_files(store.uri_for("in") + "/")] == [e.path for e in files]


def test_list_input_files_glob(store: Store) -> None:
    _input_tree(store)
    files = list_input_files(store.uri_for("in/part-*.parquet"))
    assert [e.path for e in files] == [store.uri_for("in/part-0.parquet"), store.uri_for("in/part-1.parquet")]
    assert [e.size for e in files] == [10, 11]
    assert [e.path for e in list_input_files(store.uri_for("in*/part-[19].parquet"))] == [
        store.uri_for("in/part-1.parquet"),
        store.uri_for("in2/part-9.parquet"),
    ]
    assert [e.path for e in list_input_files(store.uri_for("in/*.csv"))] == [store.uri_for("in/other.csv")]


def test_list_input_files_glob_wildcards_stay_within_a_folder(store: Store) -> None:
    _input_tree(store)
    top = [e.path for e in list_input_files(store.uri_for("in/*.parquet"))]
    assert top == [store.uri_for("in/part-0.parquet"), store.uri_for("in/part-1.parquet")]  # not in/sub/...
    nested = [e.path for e in list_input_files(store.uri_for("in/*/part-?.parquet"))]
    assert nested == [store.uri_for("in/sub/part-2.parquet")]


def test_keys_with_url_special_characters(store: Store) -> None:
    # '?' and '#' are plain characters of keys and file names, not a URL's query or fragment
    _put(store, "odd#dir/what?.csv", b"a\n1\n")
    uri = store.uri_for("odd#dir/what?.csv")
    assert [(e.path, e.size) for e in list_input_files(uri)] == [(uri, 4)]
    assert [e.path for e in list_input_files(store.uri_for("odd#dir"))] == [uri]
    assert [e.path for e in store.list("odd#dir")] == ["odd#dir/what?.csv"]


def test_list_input_files_glob_matching_nothing_names_the_uri(store: Store) -> None:
    _input_tree(store)
    uri = store.uri_for("in/*.json")
    with pytest.raises(InputError, match="matches no files") as err:
        list_input_files(uri)
    assert uri in str(err.value)


def test_list_input_files_missing_path_names_the_uri(store: Store) -> None:
    uri = store.uri_for("absent/data.parquet")
    with pytest.raises(InputError) as err:
        list_input_files(uri)
    assert uri in str(err.value)


def test_list_input_files_empty_folder_names_the_uri(store: Store) -> None:
    _put(store, "only-markers/_SUCCESS", b"")
    uri = store.uri_for("only-markers")
    with pytest.raises(InputError) as err:
        list_input_files(uri)
    assert uri in str(err.value)


def test_list_input_files_local_relative_and_file_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("x\n1\n")
    monkeypatch.chdir(tmp_path)
    expected = [str(tmp_path / "d" / "a.csv")]
    assert [e.path for e in list_input_files("d")] == expected
    assert [e.path for e in list_input_files(f"file://{tmp_path}/d/*.csv")] == expected
