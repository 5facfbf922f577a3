"""Micro-benchmarks of the engine's building blocks on the same bytes, against hand-written
pandas/fastparquet code (`benchmarks.micro_handwritten`) and raw pyarrow (the ceiling).

- import: `import_input` of many files (all columns, a subset of columns, a subset of row groups) into
  a local Parquet file; MB/s of the compressed column chunks selected. Each case runs twice: as babelmr
  runs it (column chunks copied, `babelmr.worker.chunkcopy`) and with copying off, as it runs when the
  input must be decoded (a CSV or JSONL program, a type to convert, nested columns).
- repartition: `split_by_partition` of 64 Ki-row record batches by a key; input rows/s.
- export: `export_partitions` of record batches into one Parquet file, one row group per partition;
  MB/s of the Arrow data exported.
- task overhead: no-op tasks through the coordinator on each backend; tasks/s.
- peak RSS: the worker's peak resident memory on one task whose input partition is ~4 GB in Arrow; also with the
  stage's `sort` (the partition sorted on the task's disk before the program runs, `babelmr.worker.sort`).

Every variant runs once untimed (checked for the right row count), then ``reps`` times interleaved with
the others, so that the noise of a shared machine hits all alike; rows report the median.

    python -m benchmarks.micro --data DIR [--work DIR] [--reps 5] [--smoke]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from babelmr.backends.base import Backend
from babelmr.job import Job, Stage
from babelmr.settings import replaced, settings
from babelmr.spec import RESULT_MARKER, FileSlice, TaskInput, TaskResult, TaskSpec, TaskStats
from babelmr.worker.exporter import export_partitions
from babelmr.worker.formats import BATCH_ROWS, plain_schema
from babelmr.worker.importer import import_input
from babelmr.worker.partition import partition_ids, split_by_partition
from benchmarks import micro_handwritten as handwritten

BABELMR, HANDWRITTEN, PYARROW = "babelmr", "hand-written pandas/fastparquet", "raw pyarrow"
TARGET_VS_HANDWRITTEN = 3.0  # babelmr's throughput at least 3x the hand-written code's
TARGET_VS_CEILING = 0.8  # and at least 0.8x raw pyarrow's
TARGET_TASKS_PER_S = 50.0  # no-op tasks per second on the local backend
TARGET_PEAK_RSS_MB = 512.0  # engine peak RSS on a 4 GB partition
SUBSET_COLUMNS = ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice"]
PARTITIONS = 8
NOOP_COMMAND = ["cp", "in.parquet", "out.parquet"]  # the worker needs an output file: `true` writes none
MB = 1e6


# ---------------------------------------------------------------------------------------------- timing

def _interleaved(variants: dict[str, Callable[[], Any]], reps: int,
                 check: Callable[[str, Any], None] | None = None) -> dict[str, list[float]]:
    """Seconds of each variant in each of ``reps`` rounds, after one untimed round (checked by ``check``)."""
    for name, fn in variants.items():
        result = fn()
        if check:
            check(name, result)
        del result
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def _throughput_rows(block: str, case: str, seconds: dict[str, list[float]], *, mb: float | None, rows: int,
                     metric: str, definition: str) -> list[dict[str, Any]]:
    """One row per variant: median throughput and its ratio to babelmr's, judged against the targets.

    ``ratio_to_babelmr`` is babelmr's throughput divided by the variant's (the median over rounds of the
    variant's seconds over babelmr's in the same round): the hand-written row meets its target at >= 3,
    the raw pyarrow row (the ceiling) at >= 0.8.
    """
    out = []
    for variant, times in seconds.items():
        median = statistics.median(times)
        # the ratio within each round, then its median: robust to rounds slowed down by other load
        ratio = statistics.median(t / b for t, b in zip(times, seconds[BABELMR], strict=True))
        row: dict[str, Any] = {"block": block, "case": case, "variant": variant, "metric": metric,
                               "definition": definition, "median_seconds": median, "seconds": times,
                               "rows_per_s": rows / median, "ratio_to_babelmr": ratio}
        if mb is not None:
            row["mb_per_s"] = mb / median
        goal = {HANDWRITTEN: TARGET_VS_HANDWRITTEN, PYARROW: TARGET_VS_CEILING}.get(variant)
        if goal is not None:
            row.update(target=f"babelmr >= {goal:g}x", meets_target=ratio >= goal)
        out.append(row)
    return out


def _rows_in(path: Path) -> int:
    return pq.read_metadata(path).num_rows


# ------------------------------------------------------------------------------------------------ data

class Lineitem:
    """The benchmark's data: TPC-H lineitem files, and their rows in Arrow (as babelmr sees them) and pandas."""

    def __init__(self, files: list[Path]):
        self.files = files
        self._table: pa.Table | None = None
        self._frame: pd.DataFrame | None = None

    @property
    def table(self) -> pa.Table:
        """All rows, plain types (string, not string_view: what the importer hands a program), one chunk."""
        if self._table is None:
            table = pq.read_table([str(f) for f in self.files])
            self._table = table.cast(plain_schema(table.schema)).combine_chunks()
        return self._table

    @property
    def frame(self) -> pd.DataFrame:
        """All rows as the hand-written code has them: read with fastparquet."""
        if self._frame is None:
            self._frame = handwritten.read_files(self.files, None, None)
        return self._frame

    def batches(self) -> list[pa.RecordBatch]:
        """The rows in batches of the size babelmr's readers produce."""
        return self.table.to_batches(max_chunksize=BATCH_ROWS)

    def drop_frame(self) -> None:
        """Free the pandas copy (several GB at scale factor 1)."""
        self._frame = None
        gc.collect()


def lineitem_files(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "lineitem").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no {data_dir}/lineitem/*.parquet: run examples-python/tpch-q1/prepare.py "
                                f"--sf 1 --parts 8 --data {data_dir}")
    return files


def selected_bytes(files: list[Path], columns: list[str] | None, row_groups: list[int] | None) -> int:
    """Compressed bytes of the column chunks that a read of these columns and row groups touches."""
    total = 0
    for f in files:
        meta = pq.read_metadata(f)
        for g in row_groups if row_groups is not None else range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                chunk = rg.column(c)
                if columns is None or chunk.path_in_schema in columns:
                    total += chunk.total_compressed_size
    return total


def selected_rows(files: list[Path], row_groups: list[int] | None) -> int:
    total = 0
    for f in files:
        meta = pq.read_metadata(f)
        total += sum(meta.row_group(g).num_rows for g in (row_groups if row_groups is not None
                                                         else range(meta.num_row_groups)))
    return total


# ---------------------------------------------------------------------------------------------- import

def _program_file_options() -> dict[str, Any]:
    """How babelmr writes the program's input Parquet file (`formats._ParquetWriter`): the ceiling writes the same."""
    compression = settings().program_parquet_compression
    plain = compression == "none"
    return {"compression": compression, "use_dictionary": not plain, "write_statistics": not plain}


def _pyarrow_import(files: list[Path], columns: list[str] | None, row_groups: list[int] | None, out: Path) -> None:
    """The ceiling: pyarrow's multi-threaded dataset read of exactly these columns and row groups, one write of
    the same kind of file babelmr writes."""
    if row_groups is None:
        table = pq.read_table([str(f) for f in files], columns=columns)
    else:
        dataset = ds.dataset([str(f) for f in files], format="parquet")
        fragments = [frag.subset(row_group_ids=row_groups) for frag in dataset.get_fragments()]
        table = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem).to_table(
            columns=columns)
    pq.write_table(table, str(out), **_program_file_options())


def bench_import(data: Lineitem, work: Path, reps: int) -> list[dict[str, Any]]:
    files = data.files
    n_columns = len(pq.read_schema(files[0]).names)
    n_groups = min(pq.read_metadata(f).num_row_groups for f in files)
    subset = [1, 2] if n_groups >= 3 else [0]  # a contiguous range, so fastparquet can select it too
    cases = [
        (f"{len(files)} files, all {n_columns} columns", None, None),
        (f"{len(files)} files, {len(SUBSET_COLUMNS)} of {n_columns} columns", SUBSET_COLUMNS, None),
        (f"{len(files)} files, {len(SUBSET_COLUMNS)} of {n_columns} columns, row groups "
         f"{subset[0]}-{subset[-1]} of {n_groups} per file", SUBSET_COLUMNS, subset),
    ]
    rows_out = []
    for (case, columns, row_groups), copy in ((c, copy) for copy in (True, False) for c in cases):
        case = f"{case}, {'column chunks copied' if copy else 'decoded'}"
        outs = {v: work / f"import-{i}.parquet" for i, v in enumerate((BABELMR, HANDWRITTEN, PYARROW))}
        spec = TaskInput(name="lineitem", kind="files", format="parquet", columns=columns,
                         files=[FileSlice(str(f), row_groups) for f in files])
        expected = selected_rows(files, row_groups)

        def check(variant: str, _: Any, outs: dict[str, Path] = outs, expected: int = expected) -> None:
            assert _rows_in(outs[variant]) == expected, f"{variant}: {_rows_in(outs[variant])} rows, not {expected}"

        def babelmr(spec: TaskInput = spec, out: Path = outs[BABELMR], copy: bool = copy) -> None:
            with replaced(copy_column_chunks=copy):
                assert import_input(spec, str(out), "parquet").method == ("copy" if copy else "decode")

        variants = {
            BABELMR: babelmr,
            HANDWRITTEN: lambda c=columns, g=row_groups, out=outs[HANDWRITTEN]: handwritten.import_files(
                files, c, g, out),
            PYARROW: lambda c=columns, g=row_groups, out=outs[PYARROW]: _pyarrow_import(files, c, g, out),
        }
        seconds = _interleaved(variants, reps, check)
        rows_out += _throughput_rows(
            "import", case, seconds, mb=selected_bytes(files, columns, row_groups) / MB, rows=expected,
            metric="mb_per_s", definition="compressed MB of the selected column chunks read per second, read and "
                                          "written into one local Parquet file (warm page cache); babelmr copies "
                                          "the column chunks or, decoding, writes like the ceiling, "
                                          f"{_program_file_options()}; hand-written with fastparquet's defaults "
                                          "(uncompressed)")
        for out in outs.values():
            out.unlink(missing_ok=True)
    return rows_out


# ----------------------------------------------------------------------------------------- repartition

def bench_repartition(data: Lineitem, reps: int) -> list[dict[str, Any]]:
    table, frame, batches = data.table, data.frame, data.batches()
    rows = table.num_rows
    out = []
    for key, what in ((["l_orderkey"], "l_orderkey (int64)"),
                      (["l_returnflag", "l_linestatus"], "l_returnflag, l_linestatus (strings)")):
        orders = [pa.array(np.argsort(partition_ids(b, key, PARTITIONS), kind="stable")) for b in batches]

        def babelmr(key: list[str] = key) -> int:
            return sum(len(split_by_partition(b, key, PARTITIONS)) for b in batches)

        def ceiling(orders: list[pa.Array] = orders) -> int:
            return sum(b.take(o).num_rows for b, o in zip(batches, orders, strict=True))

        def check(variant: str, result: Any, key: list[str] = key) -> None:
            if variant == HANDWRITTEN:
                assert sum(len(g) for g in result.values()) == rows, variant

        seconds = _interleaved({
            BABELMR: babelmr,
            HANDWRITTEN: lambda key=key: handwritten.repartition(frame, key, PARTITIONS),
            PYARROW: ceiling,
        }, reps, check)
        case = f"{rows / 1e6:.2f} M rows x {table.num_columns} columns by {what} into {PARTITIONS} partitions"
        out += _throughput_rows(
            "repartition", case, seconds, mb=None, rows=rows, metric="rows_per_s",
            definition=f"input rows per second; babelmr and the ceiling in {BATCH_ROWS}-row Arrow batches, "
                       "hand-written on the whole pandas DataFrame; the ceiling is RecordBatch.take of a "
                       "precomputed partition order (no hashing, no sort): the data movement alone")
    return out


# ---------------------------------------------------------------------------------------------- export

def bench_export(data: Lineitem, work: Path, reps: int) -> list[dict[str, Any]]:
    table, frame, batches = data.table, data.frame, data.batches()
    key = ["l_orderkey"]
    outs = {v: work / f"export-{i}.parquet" for i, v in enumerate((BABELMR, HANDWRITTEN, PYARROW))}

    def check(variant: str, _: Any) -> None:
        assert _rows_in(outs[variant]) == table.num_rows, variant

    seconds = _interleaved({
        BABELMR: lambda: export_partitions(batches, table.schema, pa.OSFile(str(outs[BABELMR]), "wb"), key,
                                           PARTITIONS),
        HANDWRITTEN: lambda: handwritten.export(frame, key, PARTITIONS, outs[HANDWRITTEN]),
        PYARROW: lambda: pq.write_table(table, str(outs[PYARROW]), compression="snappy"),
    }, reps, check)
    for out in outs.values():
        out.unlink(missing_ok=True)
    case = (f"{table.num_rows / 1e6:.2f} M rows x {table.num_columns} columns ({table.nbytes / MB:.0f} MB in Arrow) "
            f"into {PARTITIONS} partitions by l_orderkey")
    return _throughput_rows(
        "export", case, seconds, mb=table.nbytes / MB, rows=table.num_rows, metric="mb_per_s",
        definition="MB of Arrow data (in-memory size of the rows) exported per second into one local Parquet "
                   "file; babelmr and hand-written: one row group per partition plus an index; the ceiling: "
                   "pq.write_table of the same rows, not partitioned")


# --------------------------------------------------------------------------------------- task overhead

class TimedBackend(Backend):
    """Wraps a backend and records the wall seconds of every task attempt it runs."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.concurrency = inner.concurrency
        self.seconds: list[float] = []

    def prepare(self, job: Job, store: Any, run_id: str) -> None:
        self.inner.prepare(job, store, run_id)

    def stage_concurrency(self, stage: Stage) -> int:
        return self.inner.stage_concurrency(stage)

    def run_task(self, spec: TaskSpec) -> TaskResult:
        start = time.perf_counter()
        try:
            return self.inner.run_task(spec)
        finally:
            self.seconds.append(time.perf_counter() - start)

    def close(self) -> None:
        self.inner.close()


def noop_job(work: Path, tasks: int) -> Path:
    """A job of ``tasks`` no-op tasks, each reading a one-row Parquet file and copying it to its output."""
    folder = work / f"noop-{tasks}"
    inputs = folder / "in"
    if not (inputs / f"part-{tasks - 1:05d}.parquet").exists():
        inputs.mkdir(parents=True, exist_ok=True)
        for t in range(tasks):
            pq.write_table(pa.table({"k": [t]}), inputs / f"part-{t:05d}.parquet")
    job = {"name": "noop", "store": str(folder / "store"),
           "stages": [{"name": "noop", "command": NOOP_COMMAND, "retries": 0, "split": {"files_per_task": 1},
                       "inputs": [{"name": "in", "uri": str(inputs / "*.parquet")}]}]}
    path = folder / "job.json"
    path.write_text(json.dumps(job, indent=1))
    return path


def docker_ready() -> bool:
    """A Docker engine answers and the base image is there."""
    try:
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=30)
        subprocess.run(["docker", "image", "inspect", "babelmr-base:latest"], check=True, capture_output=True,
                       timeout=30)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def _empty(folder: Path) -> None:
    """Remove what is in ``folder`` but keep it: emulator containers have it bind-mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def bench_task_overhead(work: Path, reps: int, smoke: bool) -> list[dict[str, Any]]:
    """No-op tasks/s through `run_job`: the first job on a fresh backend (cold), then ``reps`` jobs on it (warm)."""
    from babelmr.backends.local import LocalBackend
    from babelmr.coordinator.run import run_job
    from babelmr.job.loader import load_job

    backends: list[tuple[str, Callable[[], Backend], int]] = [("local", LocalBackend, 20 if smoke else 100)]
    if not smoke and docker_ready():
        from babelmr.backends.aws_lambda import LambdaBackend
        from babelmr.backends.docker import DockerBackend

        backends += [("docker", DockerBackend, 10), ("lambda (emulator)", lambda: LambdaBackend(emulators=2), 10)]
    out = []
    for variant, make, tasks in backends:
        job = load_job(str(noop_job(work, tasks)))
        _empty(Path(job.store))
        with TimedBackend(make()) as backend:
            runs = []
            for _ in range(1 + reps):
                backend.seconds.clear()
                record = run_job(job, backend)
                stage = record.stages[0]
                assert stage.tasks == stage.rows_out == tasks, f"{variant}: {stage.tasks} tasks, not {tasks}"
                runs.append((stage.seconds, statistics.median(backend.seconds)))
                _empty(Path(job.store))
        cold, warm = runs[0], runs[1:] or runs
        stage_seconds = statistics.median(s for s, _ in warm)
        row: dict[str, Any] = {
            "block": "task overhead", "case": f"{tasks} no-op tasks ({' '.join(NOOP_COMMAND)}, one-row input)",
            "variant": variant, "concurrency": backend.concurrency, "tasks": tasks,
            "tasks_per_s": tasks / stage_seconds, "median_task_seconds": statistics.median(t for _, t in warm),
            "cold_tasks_per_s": tasks / cold[0], "cold_median_task_seconds": cold[1],
            "stage_seconds": [s for s, _ in warm],
            "definition": "tasks / wall seconds of the stage in run_job (plan, run, read commits), median of the "
                          "jobs after the first on the same backend; cold_*: the first job, which starts the "
                          "backend's workers; task seconds: backend.run_task wall time"}
        if variant == "local":
            row.update(target=f">= {TARGET_TASKS_PER_S:g} tasks/s",
                       meets_target=row["tasks_per_s"] >= TARGET_TASKS_PER_S)
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------- peak RSS

def partition_files(data: Lineitem, folder: Path, target_bytes: int, files: int) -> tuple[list[Path], int]:
    """``files`` exported files (babelmr's format) whose rows, all in partition 0, total ``target_bytes`` in Arrow."""
    marker = folder / "done.json"
    source = [[str(f), f.stat().st_size] for f in data.files]
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("source") == source:
            return [Path(p) for p in info["files"]], info["arrow_bytes"]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    table = data.table
    rows = math.ceil(target_bytes / (table.nbytes / table.num_rows) / files)
    paths, total = [], 0
    for i in range(files):  # the lineitem rows over and over, as many times as it takes
        start = i * rows % table.num_rows
        pieces = [table.slice(start, rows)]
        while sum(p.num_rows for p in pieces) < rows:
            pieces.append(table.slice(0, rows - sum(p.num_rows for p in pieces)))
        piece = pa.concat_tables(pieces)
        path = folder / f"part-{i:03d}.parquet"
        export_partitions(piece.to_batches(max_chunksize=BATCH_ROWS), piece.schema, pa.OSFile(str(path), "wb"),
                          None, 1)
        paths.append(path)
        total += piece.nbytes
    marker.write_text(json.dumps({"files": [str(f) for f in paths], "arrow_bytes": total, "source": source}))
    return paths, total


def _run_worker(spec: TaskSpec, folder: Path, env: dict[str, str] | None = None) -> TaskStats:
    """The stats of one task attempt run by ``python -m babelmr.worker`` in a fresh process."""
    spec_path = folder / "spec.json"
    spec_path.write_text(spec.to_json())
    # Linux keeps ru_maxrss across fork and exec: a worker started by this process (gigabytes of benchmark data)
    # would report this process's peak as its own. A small launcher process starts it instead.
    launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-m", "babelmr.worker", str(spec_path),
                           "--workdir", str(folder / f"task-{spec.attempt}")], capture_output=True, text=True,
                          check=False, env={**os.environ, **(env or {})})
    line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith(RESULT_MARKER)), None)
    if line is None:
        raise RuntimeError(f"the worker printed no result:\n{proc.stderr[-3000:]}")
    result = TaskResult.from_json(line[len(RESULT_MARKER):], "the worker's result")
    if result.status != "ok":
        raise RuntimeError(f"the peak-RSS task failed: {result['error']}")
    shutil.rmtree(folder / "store", ignore_errors=True)
    return result.stats


def bench_peak_rss(data: Lineitem, work: Path, reps: int, smoke: bool) -> list[dict[str, Any]]:
    """The worker's peak RSS on one reduce-like task: import a partition, copy it, export it repartitioned."""
    target = (16 << 20) if smoke else 4 * 10**9
    out = []
    for n_files, copy in ((n, copy) for n in ((2,) if smoke else (4, 16)) for copy in (True, False)):
        files, arrow_bytes = partition_files(data, work / f"partition-{target}-{n_files}", target, n_files)
        folder = work / "rss"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        spec = TaskSpec(run_id="micro", job="micro", stage="rss", task=0, attempt=1, store=str(folder / "store"),
                        inputs=[TaskInput(name="part", kind="stage", format="parquet", partition=0, source="export",
                                          files=[FileSlice(str(f)) for f in files])],
                        command=NOOP_COMMAND, key=["l_orderkey"], partitions=PARTITIONS)
        env = {"BABELMR_COPY_COLUMN_CHUNKS": "1" if copy else "0"}
        stats = [_run_worker(spec.with_attempt(a), folder, env) for a in range(1, 1 + (1 if smoke else min(reps, 3)))]
        method = "copy" if copy else "decode"
        assert all(s.import_methods == {"part": method} for s in stats), stats[0].import_methods
        peak = [(s.engine_peak_rss_bytes or 0) / MB for s in stats]
        median = statistics.median(peak)
        size = f"{arrow_bytes / 1e9:.1f} GB" if not smoke else f"{arrow_bytes / MB:.0f} MB (smoke)"
        how = "column chunks copied" if copy else "decoded"
        out.append({
            "block": "peak RSS", "case": f"{size} partition in {n_files} files, {how}", "variant": BABELMR,
            "engine_peak_rss_mb": median, "engine_peak_rss_mb_runs": peak, "partition_arrow_bytes": arrow_bytes,
            "partition_files": n_files, "rows": stats[0].rows_in, "import_method": method,
            "import_seconds": statistics.median(s.import_seconds or 0.0 for s in stats),
            "export_seconds": statistics.median(s.export_seconds or 0.0 for s in stats),
            "program": " ".join(NOOP_COMMAND),
            "definition": f"ru_maxrss of a fresh `python -m babelmr.worker` process running one task: import the "
                          f"partition (all columns) to Parquet, the program copies it, export it into {PARTITIONS} "
                          "partitions by l_orderkey (the program's own memory is not counted)",
            "target": f"<= {TARGET_PEAK_RSS_MB:g} MB", "meets_target": median <= TARGET_PEAK_RSS_MB})
    return out


SORT = [{"column": "l_orderkey", "order": "asc", "nulls": "last"},
        {"column": "l_shipdate", "order": "desc", "nulls": "last"}]


def bench_sort_rss(data: Lineitem, work: Path, reps: int, smoke: bool) -> list[dict[str, Any]]:
    """The worker's peak RSS on a reduce task whose ~4 GB partition is sorted (runs spilled, k-way merge)."""
    target = (16 << 20) if smoke else 4 * 10**9
    n_files = 2 if smoke else 4
    files, arrow_bytes = partition_files(data, work / f"partition-{target}-{n_files}", target, n_files)
    folder = work / "rss-sort"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec = TaskSpec(run_id="micro", job="micro", stage="rss-sort", task=0, attempt=1, store=str(folder / "store"),
                    inputs=[TaskInput(name="part", kind="stage", format="parquet", partition=0, source="export",
                                      files=[FileSlice(str(f)) for f in files], sort=SORT)],
                    command=NOOP_COMMAND, key=["l_orderkey"], partitions=PARTITIONS)
    stats = [_run_worker(spec.with_attempt(a), folder) for a in range(1, 1 + (1 if smoke else min(reps, 2)))]
    peak = [(s.engine_peak_rss_bytes or 0) / MB for s in stats]
    median = statistics.median(peak)
    size = f"{arrow_bytes / 1e9:.1f} GB" if not smoke else f"{arrow_bytes / MB:.0f} MB (smoke)"
    return [{
        "block": "peak RSS", "case": f"{size} partition in {n_files} files, sorted by (l_orderkey, l_shipdate desc)",
        "variant": BABELMR, "engine_peak_rss_mb": median, "engine_peak_rss_mb_runs": peak,
        "partition_arrow_bytes": arrow_bytes, "partition_files": n_files, "rows": stats[0].rows_in,
        "import_method": "decode", "import_seconds": statistics.median(s.import_seconds or 0.0 for s in stats),
        "export_seconds": statistics.median(s.export_seconds or 0.0 for s in stats), "program": " ".join(NOOP_COMMAND),
        "definition": "as above, with the input sorted before the program runs: sorted runs of 48 MB spilled to "
                      "the task's disk as Arrow IPC (lz4), then a k-way merge into the program's input file",
        "target": f"<= {TARGET_PEAK_RSS_MB:g} MB", "meets_target": median <= TARGET_PEAK_RSS_MB}]


# ------------------------------------------------------------------------------------------------ all

def run_micro(data_dir: Path, work: Path, reps: int, smoke: bool) -> list[dict[str, Any]]:
    """Every micro-benchmark on the lineitem files in ``data_dir``; one dict per variant and case."""
    work.mkdir(parents=True, exist_ok=True)
    data = Lineitem(lineitem_files(data_dir))
    rows = bench_import(data, work, reps)
    rows += bench_repartition(data, reps)
    rows += bench_export(data, work, reps)
    data.drop_frame()  # before the workers run
    rows += bench_peak_rss(data, work, reps, smoke)
    rows += bench_sort_rss(data, work, reps, smoke)
    rows += bench_task_overhead(work, reps, smoke)
    return rows


def _verdict(row: dict[str, Any]) -> str:
    if "target" not in row:
        return ""
    ratio = f"babelmr/this {row['ratio_to_babelmr']:.2f}, " if "ratio_to_babelmr" in row else ""
    return f"  ({ratio}target {row['target']}: {'met' if row['meets_target'] else 'MISSED'})"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a plain-text table."""
    lines = []
    for r in rows:
        if r["block"] in ("import", "export"):
            value = f"{r['mb_per_s']:9.1f} MB/s"
        elif r["block"] == "repartition":
            value = f"{r['rows_per_s'] / 1e6:9.2f} Mrows/s"
        elif r["block"] == "task overhead":
            value = (f"{r['tasks_per_s']:9.1f} tasks/s, median task {r['median_task_seconds'] * 1000:.0f} ms, "
                     f"cold {r['cold_tasks_per_s']:.1f} tasks/s")
        else:
            value = f"{r['engine_peak_rss_mb']:9.0f} MB"
        lines.append(f"{r['block']:13} {r['case'][:72]:72} {r['variant']:32} {value}{_verdict(r)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with lineitem/*.parquet")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", choices=["import", "repartition", "export", "rss", "sort", "overhead"],
                        action="append")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="babelmr-micro-"))
    if args.only:
        work.mkdir(parents=True, exist_ok=True)
        data = Lineitem(lineitem_files(args.data))
        rows: list[dict[str, Any]] = []
        for block in args.only:
            rows += {"import": lambda: bench_import(data, work, args.reps),
                     "repartition": lambda: bench_repartition(data, args.reps),
                     "export": lambda: bench_export(data, work, args.reps),
                     "rss": lambda: bench_peak_rss(data, work, args.reps, args.smoke),
                     "sort": lambda: bench_sort_rss(data, work, args.reps, args.smoke),
                     "overhead": lambda: bench_task_overhead(work, args.reps, args.smoke)}[block]()
    else:
        rows = run_micro(args.data, work, args.reps, args.smoke)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
