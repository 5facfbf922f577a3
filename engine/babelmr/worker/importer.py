"""Import a task's inputs from the store to its working directory, in the program's format.

Only the requested columns and row groups are read; many objects are read in parallel threads and
their record batches stream through a bounded queue into one local file per input.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import botocore.exceptions
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from babelmr.errors import InputChanged, InputError, TaskError
from babelmr.schemas import conform_batch, deserialize_schema
from babelmr.settings import settings
from babelmr.spec import PARTITION_INDEX_KEY, FileSlice, PartitionIndex, TaskInput
from babelmr.store import filesystem_for, requests
from babelmr.store.locations import file_version
from babelmr.worker import chunkcopy, csvsplit, shuffleindex, sort
from babelmr.worker.formats import (
    BATCH_ROWS,
    EXTENSIONS,
    READ_BLOCK,
    arrow_schema,
    csv_batches,
    csv_conversion_error,
    open_csv,
    open_writer,
    plain_schema,
    plain_type,
    promote,
)
from babelmr.worker.parquet_checks import check_columns, check_row_groups, unreadable

log = logging.getLogger(__name__)
# settings().read_threads (BABELMR_READ_THREADS): files opened, byte ranges copied at once.
# settings().decode_threads (BABELMR_DECODE_THREADS): files decoded at once. Each holds its pre-buffered column
# chunks and a batch (~40 MB for lineitem): 4 keeps a 16-file partition under 512 MB of RSS and, on a 2-core
# worker, imports no slower than 8.
PROBE_BLOCK = 1 << 20  # bytes of each CSV file after the first that its column types are inferred from
QUEUE_BATCHES = 2  # each reader thread also holds one batch while it waits: memory is (threads + this) batches
PREBUFFER_BYTES = 16 << 20  # compressed bytes of row groups a file reads ahead at once (bounds memory per file)
KEPT_BYTES = 32 << 20  # an input's row-group bytes kept from its footer reads, not read again (bounds memory)


@dataclass
class ImportedInput:
    name: str
    path: str
    rows: int
    bytes: int
    files: int
    method: str = "decode"  # or "copy": column chunks copied without decoding (see chunkcopy)
    origins: list[str] = field(default_factory=list)  # copied: the source file of each row group
    why: str = ""  # decoded: why the column chunks were not copied

    def check_copied(self) -> None:
        """Raise InputError naming the source file when a copied input does not decode."""
        if self.method == "copy" and (bad := chunkcopy.first_unreadable(self.path, self.origins)):
            uri, error = bad
            raise unreadable(self.name, uri, error)


def input_paths(spec_inputs: list[TaskInput], workdir: str, fmt: str) -> dict[str, str]:
    """Where each input goes: ``in.<ext>`` for a single input, ``in_<name>.<ext>`` for several."""
    ext = EXTENSIONS[fmt]
    if len(spec_inputs) == 1:
        return {spec_inputs[0].name: os.path.join(workdir, f"in.{ext}")}
    return {i.name: os.path.join(workdir, f"in_{i.name}.{ext}") for i in spec_inputs}


def partition_row_groups(metadata: pq.FileMetaData, partition: int, uri: str) -> list[int]:
    """The row groups of an exported file that hold ``partition``, from the exporter's index."""
    kv = metadata.metadata or {}
    if PARTITION_INDEX_KEY not in kv:
        raise InputError(f"{uri} has no babelmr partition index: it was not written by babelmr's exporter")
    groups = PartitionIndex.from_json(kv[PARTITION_INDEX_KEY], f"the partition index of {uri}").row_groups
    if partition >= len(groups):
        raise InputError(f"{uri} has {len(groups)} partitions; partition {partition} was asked for")
    return groups[partition]


class _Remembered:
    """A file handle that keeps what was read through it: the read of an exported file's tail for its partition
    footer also holds the partition's row groups when they are small, and copying them then reads nothing more."""

    def __init__(self, handle: pa.NativeFile):
        self.handle = handle
        self.reads: list[tuple[int, bytes]] = []

    def size(self) -> int:
        return self.handle.size()

    def read_at(self, length: int, offset: int) -> bytes:
        buf = self.handle.read_at(length, offset)
        self.reads.append((offset, buf))
        return buf


def _partition_footer(handle: _Remembered, partition: int, uri: str,
                      name: str) -> tuple[pq.FileMetaData, int] | None:
    """The metadata of ``partition``'s row groups of an exported file (see `shuffleindex`), or None."""
    try:
        return shuffleindex.read_partition(cast(pa.NativeFile, handle), partition)
    except LookupError as e:
        raise InputError(f"{uri} has {e.args[0]} partitions; partition {partition} was asked for") from None
    except shuffleindex.PartitionIndexError as e:
        raise InputError(f"input {name!r}: cannot read the partition index of {uri}: {e}") from None


def check_pinned(inp: TaskInput, piece: FileSlice) -> None:
    """Raise `InputChanged` when ``piece``'s file is no longer the version the planner listed.

    Called before a file is opened and after its last byte was read: equal versions at both ends mean every
    byte read in between came from the planned version (an S3 ETag or a local mtime and inode change with
    any rewrite). Unpinned slices (stage outputs, specs of older releases) are not checked.
    """
    if piece.version is None:
        return
    try:
        now = file_version(piece.uri)
    except PermissionError as e:  # not a passing fault: the file's or a folder's mode
        raise InputError(f"input {inp.name!r}: cannot read {piece.uri}: {e}") from None
    except (OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        raise TaskError(f"input {inp.name!r}: cannot check that {piece.uri} is the version planned: {e}") from None
    if now is None:
        raise InputChanged(f"input {inp.name!r}: {piece.uri} was deleted after the job was planned: "
                           "rerun the job (it lists its inputs again)")
    size, version = now
    if version != piece.version or (piece.file_size is not None and size != piece.file_size):
        raise InputChanged(f"input {inp.name!r}: {piece.uri} changed after the job was planned (planned: "
                           f"{piece.file_size} bytes, version {piece.version}; now: {size} bytes, version "
                           f"{version}): rerun the job to read its new content")


def _network_error(uri: str, e: OSError) -> bool:
    """Whether a read error of ``uri`` came from the network (worth another attempt), not from the bytes.

    pyarrow reports every S3 failure as "AWS Error ..." (curl's among them); a local file's read error while
    decoding, like an S3 one without that mark, is the data itself: corrupt pages.
    """
    return uri.startswith("s3://") and ("AWS Error" in str(e) or "curl" in str(e).lower())


def _pinned_batches(batches: Iterator[pa.RecordBatch], inp: TaskInput,
                    piece: FileSlice) -> Iterator[pa.RecordBatch]:
    """``batches``, then the check that the file did not change while read; a read error of a file that changed
    is reported as the change (its cause)."""
    try:
        yield from batches
    except Exception:
        check_pinned(inp, piece)
        raise
    check_pinned(inp, piece)


class _Budget:
    """Bytes that may still be kept in memory, taken by many threads."""

    def __init__(self, limit: int):
        self.left = limit
        self.lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self.lock:
            if n > self.left:
                return False
            self.left -= n
            return True


class _ParquetSource:
    """One Parquet file, opened, with the row groups and columns to read."""

    def __init__(self, inp: TaskInput, piece: FileSlice, budget: _Budget | None = None):
        self.uri, self.name = piece.uri, inp.name
        self.inp, self.piece = inp, piece
        check_pinned(inp, piece)
        fs, path = filesystem_for(piece.uri)
        partition_footer = None
        self.read: list[tuple[int, bytes]] = []  # bytes read for the footer, kept for the copy
        try:
            self.handle = fs.open_input_file(path)
            if inp.kind == "stage":  # only this partition's footer: its cost does not grow with the partitions
                remembered = _Remembered(self.handle)
                partition_footer = _partition_footer(remembered, inp.partition or 0, piece.uri, inp.name)
                self.read = remembered.reads  # trimmed to the row groups read, once they are known
            self.file = pq.ParquetFile(self.handle, pre_buffer=True,
                                       metadata=partition_footer[0] if partition_footer else None)
            requests.count("HEAD")  # the open asks for the size
            requests.count("GET")  # the footer (one read of the file's tail)
        except (pa.ArrowInvalid, FileNotFoundError) as e:  # corrupt or vanished: retrying will not help
            check_pinned(inp, piece)  # unless it changed since planned: say so
            raise unreadable(inp.name, piece.uri, e) from None
        schema = plain_schema(self.file.schema_arrow)
        if inp.columns:  # a column this file lacks is NULL here if another file of the input has it
            schema = pa.schema([schema.field(c) for c in inp.columns if c in schema.names])
        self.schema = schema
        self.columns = schema.names if inp.columns else None
        if partition_footer is not None:
            self.row_groups = list(range(self.file.num_row_groups))
        elif inp.kind == "stage":  # written before partition footers existed
            self.row_groups = partition_row_groups(self.file.metadata, inp.partition or 0, piece.uri)
        elif piece.row_groups is not None:
            try:
                check_row_groups(inp.name, piece.uri, self.file.num_row_groups, piece.row_groups)
            except InputError:
                check_pinned(inp, piece)  # unless it changed since planned: say so
                raise
            self.row_groups = piece.row_groups
        else:
            self.row_groups = list(range(self.file.num_row_groups))
        if not self.row_groups:  # nothing more will be read: was the footer the planned version's?
            check_pinned(inp, piece)
        self.read = self._kept(self.read, budget)

    def _kept(self, reads: list[tuple[int, bytes]], budget: _Budget | None) -> list[tuple[int, bytes]]:
        """Of the bytes read for the footer, those of the row groups to read, copied out (the rest is freed) while
        ``budget`` allows; none when they were not all read."""
        if not reads or not self.row_groups or budget is None:
            return []
        start, end = None, 0
        for g in self.row_groups:
            rg = self.file.metadata.row_group(g)
            for c in range(rg.num_columns):
                column = rg.column(c)
                first = column.data_page_offset
                if column.has_dictionary_page and 0 < (column.dictionary_page_offset or 0) < first:
                    first = column.dictionary_page_offset
                start = first if start is None else min(start, first)
                end = max(end, first + column.total_compressed_size)
        for offset, buf in reads:
            if start is not None and offset <= start and end <= offset + len(buf) and budget.take(end - start):
                return [(start, bytes(buf[start - offset:end - offset]))]
        return []

    @property
    def empty(self) -> bool:
        return not self.row_groups

    def _runs(self) -> Iterator[tuple[list[int], int]]:
        """The row groups in runs of about ``PREBUFFER_BYTES`` (of the columns read), with their bytes.

        Pre-buffering reads all row groups asked for at once: for a whole large file that is the whole file.
        """
        wanted = set(self.columns) if self.columns else None
        run: list[int] = []
        size = 0
        for g in self.row_groups:
            rg = self.file.metadata.row_group(g)
            cost = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns)
                       if wanted is None or rg.column(c).path_in_schema.split(".")[0] in wanted)
            if run and size + cost > PREBUFFER_BYTES:
                yield run, size
                run, size = [], 0
            run.append(g)
            size += cost
        if run:
            yield run, size

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.row_groups:
            try:
                yield from _pinned_batches(self._decode(), self.inp, self.piece)
            except pa.ArrowInvalid as e:  # corrupt data pages: retrying will not help
                raise unreadable(self.name, self.uri, e) from None
            except OSError as e:  # corrupt pages (deterministic), or a network error on S3 (transient)
                if _network_error(self.uri, e):
                    raise TaskError(f"input {self.name!r}: reading Parquet file {self.uri} failed: {e}") from None
                raise unreadable(self.name, self.uri, e) from None

    def _decode(self) -> Iterator[pa.RecordBatch]:
        for run, size in self._runs():
            requests.count_ranged_reads(size)
            yield from self.file.iter_batches(batch_size=BATCH_ROWS, row_groups=run, columns=self.columns)


@dataclass
class _CsvFile:
    """One CSV file of an input: its columns and their types (declared, else inferred from its first block)."""

    piece: FileSlice
    schema: pa.Schema | None  # None: the file is empty (0 bytes, or only blank lines)
    reader: Any = None  # the reader that found the schema, when it can be read on


def _csv_read_options(inp: TaskInput, block: int | None = None) -> pacsv.ReadOptions:
    opts = inp.csv
    names = opts.get("column_names")
    return pacsv.ReadOptions(block_size=block or READ_BLOCK, column_names=names,
                             skip_rows=1 if names and opts.get("header", True) else 0,
                             autogenerate_column_names=not opts.get("header", True) and not names)


def _csv_opener(inp: TaskInput, piece: FileSlice) -> Callable[[], Any]:
    """How to open one CSV file, or one byte range of a large one (worker/csvsplit.py: Hadoop's rule, the
    file's header line first); a range in which no line starts reads as the header alone (no rows)."""
    if piece.end is None and not piece.start:
        fs, path = filesystem_for(piece.uri)
        return lambda: fs.open_input_stream(path, compression="detect")
    header, what = inp.csv.get("header", True), f"input {inp.name!r}"
    return lambda: (csvsplit.open_range(piece, header, what)
                    or csvsplit.open_range(piece, header, what, rows=False))


def _csv_reader(inp: TaskInput, piece: FileSlice, types: dict[str, pa.DataType] | None,
                include_columns: list[str] | None = None, file_columns: int | None = None,
                block: int | None = None) -> pacsv.CSVStreamingReader:
    """A streaming reader of one CSV file; ``include_columns`` the file lacks come as NULL."""
    check_pinned(inp, piece)
    requests.count("HEAD")
    requests.count_ranged_reads(piece.size, READ_BLOCK)  # the stream reads block by block
    try:
        return open_csv(_csv_opener(inp, piece), _csv_read_options(inp, block),
                        inp.csv.get("delimiter", ","), types, include_columns, file_columns)
    except (pa.ArrowInvalid, pa.ArrowKeyError, FileNotFoundError) as e:  # bad data, missing column or file
        check_pinned(inp, piece)  # unless it changed since planned: say so
        raise InputError(f"input {inp.name!r}: cannot read CSV file {piece.uri}: {e}") from None


def _csv_probe(inp: TaskInput, piece: FileSlice, declared: dict[str, pa.DataType] | None, first: bool) -> _CsvFile:
    """The file's columns and types. The first file's reader is kept to be read on; the others infer from
    their first ``PROBE_BLOCK`` bytes only: a whole block of each would be parsed twice, and kept open they
    would hold many blocks in memory at once."""
    reader = None
    for block in ([READ_BLOCK] if first else [min(PROBE_BLOCK, READ_BLOCK), READ_BLOCK]):
        try:
            reader = _csv_reader(inp, piece, declared, block=block)
            break
        except InputError as e:
            if "Empty CSV file" in str(e):  # a 0-byte file (or only blank lines) is an input without rows
                return _CsvFile(piece, None)
            if "straddl" not in str(e) or block == READ_BLOCK:  # a row longer than the probe's block: a larger one
                raise
    assert reader is not None
    schema = pa.schema([pa.field(f.name, (declared or {}).get(f.name, f.type)) for f in reader.schema])
    if first:
        return _CsvFile(piece, schema, reader)
    reader.close()
    return _CsvFile(piece, schema)


def unify_files(inp: TaskInput, schemas: list[tuple[str, pa.Schema]], *, text: bool) -> pa.Schema:
    """One schema for an input's files, columns by name: lossless promotions only, else an InputError.

    Columns come in the order of the first file, then each column first seen in a later file; a column
    some file lacks is nullable (NULL in that file's rows).
    """
    types: dict[str, tuple[pa.DataType, str]] = {}
    nullable: dict[str, bool] = {}
    for uri, schema in schemas:
        for f in schema:
            if f.name not in types:
                types[f.name] = (plain_type(f.type), uri)
                nullable[f.name] = f.nullable or uri != schemas[0][0]
                continue
            have, where = types[f.name]
            unified = promote(have, f.type, text=text)
            if unified is None:
                hint = (f"declare its type in the input's csv.schema (e.g. \"{f.name}\": \"string\")" if text else
                        "rewrite the files with one type for it, or read them as separate inputs")
                raise InputError(f"input {inp.name!r}: its files have incompatible schemas: column {f.name!r} is "
                                 f"{have} in {where} but {plain_type(f.type)} in {uri}, and no type holds both "
                                 f"without loss: {hint}")
            types[f.name] = (unified, where)
            nullable[f.name] = nullable[f.name] or f.nullable
        for name in types.keys() - set(schema.names):
            nullable[name] = True
    return pa.schema([pa.field(n, t, nullable[n]) for n, (t, _) in types.items()])


def _select(inp: TaskInput, schema: pa.Schema, declared: dict[str, pa.DataType] | None,
            files: list[tuple[str, pa.Schema]]) -> pa.Schema:
    """The input's requested ``columns`` of the unified ``schema`` (a column no file has is an error)."""
    if not inp.columns:
        return schema
    check_columns(inp.name, inp.columns, [(uri, s.names) for uri, s in files])
    declared = declared or {}
    return pa.schema([schema.field(c) if c in schema.names else pa.field(c, declared.get(c, pa.null()))
                      for c in inp.columns])


def _pump(sources: list[Callable[[], Iterator[pa.RecordBatch]]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Batches of all sources, read by parallel threads through a bounded queue, cast to ``schema``."""
    if len(sources) == 1:
        for batch in sources[0]():
            yield conform_batch(batch, schema)
        return
    q: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    stop = threading.Event()
    done = object()

    def read(source: Callable[[], Iterator[pa.RecordBatch]]) -> None:
        try:
            for batch in source():
                if stop.is_set():
                    return
                q.put(conform_batch(batch, schema))
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(e)
        finally:
            q.put(done)

    with ThreadPoolExecutor(max_workers=min(settings().decode_threads, len(sources))) as pool:
        for source in sources:
            pool.submit(read, source)
        finished = 0
        try:
            while finished < len(sources):
                item = q.get()
                if item is done:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            while finished < len(sources):  # unblock readers waiting on a full queue
                if q.get() is done:
                    finished += 1


def _open_parquet(inp: TaskInput) -> tuple[pa.Schema, list[_ParquetSource]]:
    with ThreadPoolExecutor(max_workers=max(1, min(settings().read_threads, len(inp.files)))) as pool:
        budget = _Budget(KEPT_BYTES)
        opened = list(pool.map(lambda piece: _ParquetSource(inp, piece, budget), inp.files))
    if inp.schema:  # an earlier stage's files: the coordinator unified their schemas (babelmr.schemas)
        schema = plain_schema(deserialize_schema(inp.schema))
        if inp.columns:
            missing = [c for c in inp.columns if c not in schema.names]
            if missing:
                raise InputError(f"input {inp.name!r}: stage {inp.source!r} has no column(s) {missing}; it has "
                                 f"{schema.names}: fix 'columns' in the job file")
            schema = pa.schema([schema.field(c) for c in inp.columns])
        return schema, opened
    # files with no rows to read say nothing about the data: their columns do not count unless all are empty
    with_rows = [s for s in opened if not s.empty] or opened
    check_columns(inp.name, inp.columns, [(s.uri, s.file.schema_arrow.names) for s in opened])
    schema = unify_files(inp, [(s.uri, s.schema) for s in with_rows], text=False)
    if inp.columns:
        schema = pa.schema([schema.field(c) if c in schema.names else pa.field(c, pa.null()) for c in inp.columns])
    return schema, opened


def _copy_parquet(inp: TaskInput, opened: list[_ParquetSource], schema: pa.Schema,
                  path: str) -> ImportedInput | str:
    """The input copied column chunk by column chunk into ``path``, or why it must be decoded."""
    chosen = [s for s in opened if not s.empty]
    if not chosen:
        return "no row group to read"
    plan = chunkcopy.plan([chunkcopy.Source(s.uri, s.handle, s.file.metadata, s.row_groups, s.read) for s in chosen],
                          inp.columns, schema)
    if isinstance(plan, str):
        return plan
    try:
        rows = chunkcopy.write(plan, path, settings().read_threads)
    except OSError as e:  # a network error on S3, or a short read of a file that changed: worth another attempt
        for s in chosen:
            check_pinned(inp, s.piece)  # a changed file is not worth another attempt: say which
        raise TaskError(f"input {inp.name!r}: copying Parquet column chunks from {inp.source} failed: {e}") from None
    for s in chosen:  # every byte copied came from the planned versions?
        check_pinned(inp, s.piece)
    if not chunkcopy.reads_back_as(path, schema):
        os.remove(path)
        return "the copy does not read back as " + schema.to_string(show_schema_metadata=False).replace("\n", ", ")
    log.info("input %r: copied %d row group(s) of %d file(s) column chunk by column chunk, without decoding",
             inp.name, len(plan.row_groups), len(chosen))
    return ImportedInput(inp.name, path, rows, os.path.getsize(path), len(inp.files), "copy", plan.origins)


def _csv_input(inp: TaskInput) -> tuple[pa.Schema, list[Callable[[], Iterator[pa.RecordBatch]]]]:
    """The input's files read by column name into one schema (see ``unify_files``)."""
    declared = arrow_schema(inp.csv.get("schema"))
    with ThreadPoolExecutor(max_workers=max(1, min(settings().read_threads, len(inp.files)))) as pool:
        probed = list(pool.map(lambda ip: _csv_probe(inp, ip[1], declared, first=ip[0] == 0),
                               enumerate(inp.files)))
    files = [(f.piece.uri, f.schema) for f in probed if f.schema is not None]
    unified = unify_files(inp, files, text=True)
    if not files and declared and not inp.columns:  # only empty files: the declared columns
        unified = pa.schema(list(declared.items()))
    schema = _select(inp, unified, declared, files)
    types = dict(zip(schema.names, schema.types, strict=True))
    sources: list[Callable[[], Iterator[pa.RecordBatch]]] = []
    for f in probed:
        if f.schema is None:
            continue
        if f.reader is not None and f.schema == schema and not inp.columns:
            reader = f.reader  # the first file, already open and of the right shape: read on
            sources.append(partial(_csv_source, inp, f, partial(_same, reader), types))
            continue
        if f.reader is not None:
            f.reader.close()
        sources.append(partial(_csv_source, inp, f,
                               partial(_csv_reader, inp, f.piece, types, schema.names, len(f.schema)), types))
    return schema, sources


def _same(reader: Any) -> Any:
    """``reader`` itself: with `partial`, an opener of a reader that is already open."""
    return reader


def _csv_source(inp: TaskInput, f: _CsvFile, open_reader: Callable[[], Any],
                types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    try:
        yield from _pinned_batches(csv_batches(open_reader(), types), inp, f.piece)
    except pa.ArrowInvalid as e:  # a value of another type than the first block showed, or a malformed row
        bad = csv_conversion_error(e, f.schema.names if f.schema is not None else [])
        if bad is None:
            raise InputError(f"input {inp.name!r}: cannot read CSV file {f.piece.uri}: {e} (declare the column "
                             "types in the input's csv.schema)") from None
        column, type_, value = bad
        declared = column in (inp.csv.get("schema") or {})
        how = "is declared" if declared else "was inferred as"
        fix = "fix the file or the input's csv.schema" if declared else (
            f"declare its type in the input's csv.schema (e.g. \"{column}\": "
            f"\"{'float64' if type_ == 'int64' else 'string'}\")")
        raise InputError(f"input {inp.name!r}: column {column!r} of CSV file {f.piece.uri} {how} {type_}, but a "
                         f"row holds {value!r}: {fix}") from None


def input_batches(inp: TaskInput) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The input's rows in one schema, its files read one after another (a repeatable order; no sort)."""
    if not inp.files:
        return (plain_schema(deserialize_schema(inp.schema)) if inp.schema else pa.schema([])), iter(())
    if inp.format == "parquet":
        schema, opened = _open_parquet(inp)
        sources = [s.batches for s in opened if not s.empty]
    else:
        schema, sources = _csv_input(inp)
    return schema, (conform_batch(batch, schema) for source in sources for batch in source())


def import_input(inp: TaskInput, path: str, fmt: str) -> ImportedInput:
    """Write one input into ``path`` in format ``fmt``; returns rows and bytes written."""
    why = f"the program reads {fmt}"
    if not inp.files:
        schema, sources = plain_schema(deserialize_schema(inp.schema)) if inp.schema else pa.schema([]), []
        why = "no files"
    elif inp.format == "parquet":
        schema, opened = _open_parquet(inp)
        if fmt == "parquet" and inp.sort:
            why = "the input is sorted first"
        elif fmt == "parquet":
            copied = _copy_parquet(inp, opened, schema, path)
            if isinstance(copied, ImportedInput):
                log.info("input %r: copied %d row group(s) of %d file(s) column chunk by column chunk, without "
                         "decoding", inp.name, len(copied.origins), len(inp.files))
                return copied
            why = copied
        sources = [s.batches for s in opened if not s.empty]
    else:
        schema, sources = _csv_input(inp)
        why = "the input is CSV"
    log.info("input %r: decoded, not copied: %s", inp.name, why)
    rows = 0
    writer = open_writer(path, fmt, schema)
    try:
        if sources:
            batches = _pump(sources, schema)
            if inp.sort:  # sorted runs spill beside the input file
                batches = sort.sort_batches(batches, schema, inp.sort, os.path.dirname(path) or ".",
                                            f"input {inp.name!r} from {inp.source}")
            for batch in batches:
                rows += batch.num_rows
                writer.write(batch)
    except pa.ArrowInvalid as e:
        hint = " (declare the column types in the input's csv.schema)" if inp.format == "csv" else ""
        raise InputError(f"input {inp.name!r} from {inp.source}: {e}{hint}") from None
    finally:
        writer.close()
    return ImportedInput(inp.name, path, rows, os.path.getsize(path), len(inp.files), why=why)


def import_inputs(inputs: list[TaskInput], workdir: str, fmt: str) -> tuple[list[ImportedInput], float]:
    """Import every input of a task; returns what was written and the seconds it took."""
    start = time.perf_counter()
    paths = input_paths(inputs, workdir, fmt)
    imported = [import_input(inp, paths[inp.name], fmt) for inp in inputs]
    return imported, time.perf_counter() - start
