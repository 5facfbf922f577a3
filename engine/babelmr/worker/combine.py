"""The combiner: a program run on a task's whole output before it is partitioned and exported.

Like Hadoop's combiner it gets the output sorted by the stage's key (ascending, NULLs last), so that it can
stream one group at a time; unlike Hadoop's, it runs once on the task's whole output (not per spill or per
partition), in the stage's program format, under the same contract as the stage's program: ``in.<ext>``
in a folder of its own, ``out.<ext>`` written there, ``MR_MODE=combine`` and ``combine`` as its last
argument. Its output must keep the key columns; it is what the stage exports.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace

import pyarrow as pa

from babelmr.errors import TaskError
from babelmr.job.model import resolve_sort
from babelmr.spec import TaskSpec, TaskStats
from babelmr.store import layout
from babelmr.store.base import Store
from babelmr.worker.formats import EXTENSIONS, open_writer
from babelmr.worker.program import run_program
from babelmr.worker.sort import sort_batches

MODE = "combine"


def run_combiner(spec: TaskSpec, workdir: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], store: Store,
                 stats: TaskStats) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Sort the program's output by key into the combiner's input, run it, and return its output batches.

    ``stats`` gains ``combine_rows_in``, ``combine_seconds`` and, as the batches are read, ``combine_rows_out``.
    """
    from babelmr.worker.task import _failure, _output_batches, program_command, program_env  # task imports this

    start = time.perf_counter()
    folder = os.path.join(workdir, "combine")
    log_dir = os.path.join(workdir, ".babelmr", "combine")
    os.makedirs(log_dir, exist_ok=True)
    os.makedirs(folder, exist_ok=True)
    ext = EXTENSIONS[spec.program_format]
    source, output = os.path.join(folder, f"in.{ext}"), os.path.join(folder, f"out.{ext}")

    rows = 0
    writer = open_writer(source, spec.program_format, schema)
    try:
        for batch in sort_batches(batches, schema, resolve_sort(spec.key, spec.key) or [], folder,
                                  f"{spec.label}: the program's output"):
            rows += batch.num_rows
            writer.write(batch)
    finally:
        writer.close()
    for name in os.listdir(workdir):  # the program's output is in the combiner's input now: free the disk
        if name.startswith("out.") and os.path.isfile(os.path.join(workdir, name)):
            os.remove(os.path.join(workdir, name))

    env = program_env(spec, folder, {"in": source}, output)
    env["MR_MODE"] = MODE
    command = program_command(replace(spec, command=spec.combiner))
    run = run_program(command, MODE, shell=spec.shell, env=env, workdir=folder, log_dir=log_dir,
                      timeout=spec.timeout, label=f"{spec.label} (combiner)")
    for stream, path in (("combine.stdout", run.stdout_path), ("combine.stderr", run.stderr_path)):
        if os.path.exists(path) and os.path.getsize(path):
            store.upload_file(path, layout.task_log(spec.run_id, spec.stage, spec.task, spec.attempt, stream))
    if run.timed_out:
        raise TaskError(_failure(spec, f"the combiner ran longer than the stage's timeout of {spec.timeout:g} s "
                                       "and was killed", run.stderr_path))
    if run.exit_code != 0:
        raise TaskError(_failure(spec, f"the combiner {' '.join(run.argv)!r} exited with code {run.exit_code}",
                                 run.stderr_path))
    counters = stats.counters = stats.counters if stats.counters is not None else {}
    for name, amount in run.counters.items():
        counters[name] = counters.get(name, 0) + amount
    stats.combine_rows_in, stats.combine_rows_out = rows, 0
    stats.combine_seconds, stats.combine_peak_rss_bytes = time.perf_counter() - start, run.peak_rss_bytes
    combined_schema, combined = _output_batches(spec, output, run.stderr_path)

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in combined:
            stats.combine_rows_out = (stats.combine_rows_out or 0) + batch.num_rows
            yield batch

    return combined_schema, counted()
