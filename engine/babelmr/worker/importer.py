"""Import a task's inputs from the store to its working directory, in the program's format.

Only the requested columns and row groups are read; many objects are read in parallel threads and
their record batches stream through a bounded queue into one local file per input.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from babelmr.errors import InputError, TaskError
from babelmr.spec import PARTITION_INDEX_KEY, FileSlice, TaskInput
from babelmr.store import filesystem_for
from babelmr.worker import chunkcopy, csvsplit, sort
from babelmr.worker.formats import BATCH_ROWS, EXTENSIONS, READ_BLOCK, arrow_schema, open_writer, plain_schema

READ_THREADS = int(os.environ.get("BABELMR_READ_THREADS", "8"))  # files opened, byte ranges copied at once
# Files decoded at once. Each holds its pre-buffered column chunks and a batch (~40 MB for lineitem): 4 keeps a
# 16-file partition under 512 MB of RSS and, on a 2-core worker, imports no slower than 8.
DECODE_THREADS = int(os.environ.get("BABELMR_DECODE_THREADS", "4"))
QUEUE_BATCHES = 2  # each reader thread also holds one batch while it waits: memory is (threads + this) batches
PREBUFFER_BYTES = 16 << 20  # compressed bytes of row groups a file reads ahead at once (bounds memory per file)


@dataclass
class ImportedInput:
    name: str
    path: str
    rows: int
    bytes: int
    files: int
    method: str = "decode"  # or "copy": column chunks copied without decoding (see chunkcopy)
    origins: list[str] = field(default_factory=list)  # copied: the source file of each row group

    def check_copied(self) -> None:
        """Raise InputError naming the source file when a copied input does not decode."""
        if self.method == "copy" and (bad := chunkcopy.first_unreadable(self.path, self.origins)):
            uri, error = bad
            raise InputError(f"input {self.name!r}: cannot read Parquet file {uri}: {error}")


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
    index = json.loads(kv[PARTITION_INDEX_KEY])
    groups = index["row_groups"]
    if partition >= len(groups):
        raise InputError(f"{uri} has {len(groups)} partitions; partition {partition} was asked for")
    return groups[partition]


class _ParquetSource:
    """One Parquet file, opened, with the row groups and columns to read."""

    def __init__(self, inp: TaskInput, piece: FileSlice):
        self.uri, self.name = piece.uri, inp.name
        fs, path = filesystem_for(piece.uri)
        try:
            self.handle = fs.open_input_file(path)
            self.file = pq.ParquetFile(self.handle, pre_buffer=True)
        except (pa.ArrowInvalid, FileNotFoundError) as e:  # corrupt or vanished: retrying will not help
            raise InputError(f"input {inp.name!r}: cannot read Parquet file {piece.uri}: {e}") from None
        schema = self.file.schema_arrow
        if inp.columns:
            missing = [c for c in inp.columns if c not in schema.names]
            if missing:
                raise InputError(f"input {inp.name!r}: {piece.uri} has no column(s) {missing}; "
                                 f"it has {schema.names}: fix 'columns' in the job file")
            schema = pa.schema([schema.field(c) for c in inp.columns])
        self.schema = schema
        self.columns = inp.columns
        if inp.kind == "stage":
            self.row_groups = partition_row_groups(self.file.metadata, inp.partition or 0, piece.uri)
        elif piece.row_groups is not None:
            bad = [g for g in piece.row_groups if g >= self.file.num_row_groups]
            if bad:
                raise InputError(f"input {inp.name!r}: {piece.uri} has {self.file.num_row_groups} row groups; "
                                 f"row_groups {bad} do not exist")
            self.row_groups = piece.row_groups
        else:
            self.row_groups = list(range(self.file.num_row_groups))

    @property
    def empty(self) -> bool:
        return not self.row_groups

    def _runs(self) -> Iterator[list[int]]:
        """The row groups in runs of about ``PREBUFFER_BYTES`` (of the columns read).

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
                yield run
                run, size = [], 0
            run.append(g)
            size += cost
        if run:
            yield run

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.row_groups:
            try:
                for run in self._runs():
                    yield from self.file.iter_batches(batch_size=BATCH_ROWS, row_groups=run, columns=self.columns)
            except pa.ArrowInvalid as e:  # corrupt data pages: retrying will not help
                raise InputError(f"input {self.name!r}: cannot read Parquet file {self.uri}: {e}") from None
            except OSError as e:  # corrupt pages, or a network error on S3: worth another attempt
                raise TaskError(f"input {self.name!r}: reading Parquet file {self.uri} failed: {e}") from None


def _csv_reader(inp: TaskInput, piece: FileSlice, types: dict[str, pa.DataType] | None, stream=None):
    fs, path = filesystem_for(piece.uri)
    opts = inp.csv
    names = opts.get("column_names")
    try:
        return pacsv.open_csv(
            stream if stream is not None else fs.open_input_stream(path, compression="detect"),
            read_options=pacsv.ReadOptions(block_size=READ_BLOCK, column_names=names,
                                           skip_rows=1 if names and opts.get("header", True) else 0,
                                           autogenerate_column_names=not opts.get("header", True) and not names),
            parse_options=pacsv.ParseOptions(delimiter=opts.get("delimiter", ","), newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=types or {}, include_columns=inp.columns or []),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, FileNotFoundError) as e:  # bad data, missing column or file
        raise InputError(f"input {inp.name!r}: cannot read CSV file {piece.uri}: {e}") from None


def _pump(sources: list[Callable[[], Iterator[pa.RecordBatch]]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Batches of all sources, read by parallel threads through a bounded queue, cast to ``schema``."""
    if len(sources) == 1:
        for batch in sources[0]():
            yield batch if batch.schema == schema else batch.cast(schema)
        return
    q: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    stop = threading.Event()
    done = object()

    def read(source: Callable[[], Iterator[pa.RecordBatch]]) -> None:
        try:
            for batch in source():
                if stop.is_set():
                    return
                q.put(batch if batch.schema == schema else batch.cast(schema))
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(e)
        finally:
            q.put(done)

    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, len(sources))) as pool:
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
    with ThreadPoolExecutor(max_workers=max(1, min(READ_THREADS, len(inp.files)))) as pool:
        opened = list(pool.map(lambda piece: _ParquetSource(inp, piece), inp.files))
    with_rows = [s for s in opened if not s.empty] or opened
    try:
        schema = pa.unify_schemas([plain_schema(s.schema) for s in with_rows], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"input {inp.name!r}: its files have incompatible schemas: {e}") from None
    if inp.columns:
        schema = pa.schema([schema.field(c) for c in inp.columns])
    return schema, opened


def _copy_parquet(inp: TaskInput, opened: list[_ParquetSource], schema: pa.Schema,
                  path: str) -> ImportedInput | None:
    """The input copied column chunk by column chunk into ``path``, or None when it must be decoded."""
    chosen = [s for s in opened if not s.empty]
    if not chosen:
        return None
    plan = chunkcopy.plan([chunkcopy.Source(s.uri, s.handle, s.file.metadata, s.row_groups) for s in chosen],
                          inp.columns, schema)
    if isinstance(plan, str):
        return None
    try:
        rows = chunkcopy.write(plan, path, READ_THREADS)
    except OSError as e:  # a network error on S3, or a short read of a file that changed: worth another attempt
        raise TaskError(f"input {inp.name!r}: copying Parquet column chunks from {inp.source} failed: {e}") from None
    if not chunkcopy.reads_back_as(path, schema):
        os.remove(path)
        return None
    return ImportedInput(inp.name, path, rows, os.path.getsize(path), len(inp.files), "copy", plan.origins)


def _csv_input(inp: TaskInput) -> tuple[pa.Schema, list[Callable[[], Iterator[pa.RecordBatch]]]]:
    declared = arrow_schema(inp.csv.get("schema"))
    # byte ranges (worker/csvsplit.py) are opened now; ranges where no line starts are left out
    header = inp.csv.get("header", True)
    opened = [(p, csvsplit.open_range(p, header, f"input {inp.name!r}") if p.end is not None else None)
              for p in inp.files]
    pieces = [(p, s) for p, s in opened if p.end is None or s is not None] or [
        (inp.files[0], csvsplit.open_range(inp.files[0], header, f"input {inp.name!r}", rows=False))]
    first = _csv_reader(inp, pieces[0][0], declared, pieces[0][1])
    schema = plain_schema(first.schema)
    types = dict(zip(schema.names, schema.types, strict=True))
    sources: list[Callable[[], Iterator[pa.RecordBatch]]] = [lambda: iter(first)]
    for piece, stream in pieces[1:]:
        sources.append(lambda piece=piece, stream=stream: iter(_csv_reader(inp, piece, types, stream)))
    return schema, sources


def import_input(inp: TaskInput, path: str, fmt: str) -> ImportedInput:
    """Write one input into ``path`` in format ``fmt``; returns rows and bytes written."""
    if not inp.files:
        schema, sources = pa.schema([]), []
    elif inp.format == "parquet":
        schema, opened = _open_parquet(inp)
        if fmt == "parquet" and not inp.sort and (copied := _copy_parquet(inp, opened, schema, path)):
            return copied
        sources = [s.batches for s in opened if not s.empty]
    else:
        schema, sources = _csv_input(inp)
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
    return ImportedInput(inp.name, path, rows, os.path.getsize(path), len(inp.files))


def import_inputs(inputs: list[TaskInput], workdir: str, fmt: str) -> tuple[list[ImportedInput], float]:
    """Import every input of a task; returns what was written and the seconds it took."""
    start = time.perf_counter()
    paths = input_paths(inputs, workdir, fmt)
    imported = [import_input(inp, paths[inp.name], fmt) for inp in inputs]
    return imported, time.perf_counter() - start
