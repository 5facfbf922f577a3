"""babelmr itself: the examples' job files, run through the coordinator on a backend."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from babelmr.backends import get_backend
from babelmr.backends.containers import ContainerLimits
from babelmr.coordinator.run import run_job
from babelmr.job import load_job
from babelmr.spec import RunRecord
from benchmarks.common import ROOT, Context, Result


def job_copy(ctx: Context, language: str, source: Path | None = None,
             inputs: dict[str, str] | None = None, split: dict[str, Any] | None = None,
             warm: bool | None = None) -> Path:
    """The example's folder (or ``source``) copied into the scratch folder, its inputs pointed at the benchmark
    data (or at ``inputs``); ``split`` cuts the stages' external inputs into tasks; ``warm`` (unless None) sets
    every stage's ``"warm"``."""
    folder = ctx.work / f"{language}-{ctx.query}"
    shutil.copytree(source or ROOT / language / ctx.query, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("data", ".babelmr", "__pycache__"))
    job = json.loads((folder / "job.json").read_text())
    uris = inputs or ctx.inputs()
    for stage in job["stages"]:
        if warm is not None:
            stage["warm"] = warm
        for inp in stage["inputs"]:
            if inp["name"] in uris:
                inp["uri"] = uris[inp["name"]]
                if split:
                    stage["split"] = split
        if ctx.query == "bigbench-q1":
            stage.setdefault("env", {})["Q1_MIN_COUNT"] = str(ctx.min_count)
    (folder / "job.json").write_text(json.dumps(job, indent=2))
    return folder / "job.json"


def read_output(uri: str) -> pd.DataFrame:
    """One committed output file (a local path or an s3:// URI) as a DataFrame."""
    from babelmr.store import filesystem_for

    fs, path = filesystem_for(uri)
    return pq.read_table(path, filesystem=fs).to_pandas()


def timeline(record: RunRecord) -> list[dict[str, Any]]:
    """Per committed task attempt: stage, task, start and the import/program/export seconds."""
    rows = []
    for stage in record.stages:
        for a in stage.task_attempts:
            st = a.stats
            if a.status == "ok" and st.started_at is not None:
                rows.append({"stage": stage.name, "task": a.task, "start": st.started_at - record.started_at,
                             "import": st.import_seconds or 0, "program": st.program_seconds or 0,
                             "export": st.export_seconds or 0,
                             "end": (st.finished_at or st.started_at) - record.started_at})
    return rows


def run_babelmr(ctx: Context, language: str = "examples-python", backend: str = "local",
                source: Path | None = None, store: str | None = None,
                inputs: dict[str, str] | None = None, split: dict[str, Any] | None = None,
                warm: bool | None = None, **options: Any) -> Result:
    """Run the example job of ``language`` (or the job in ``source``) on ``backend``; wall time is the whole
    `run_job` (warm programs included: each worker starts them within it). ``store`` defaults to a folder in the
    scratch folder; ``warm`` True/False sets every stage's ``"warm"`` (None: as the job file says).

    Fairness: the backend is started before the timer (`Backend.start`: the local backend's worker processes,
    forked from a server that has imported the engine), as PySpark's session is and as the hand-written code
    has its modules imported; everything the job needs (planning, the programs, every stage) is timed."""
    job = load_job(str(job_copy(ctx, language, source, inputs, split, warm)),
                   store=store or str(ctx.work / "store"))
    with get_backend(backend, concurrency=ctx.parallelism, **options) as b:
        b.start()
        start = time.perf_counter()
        record = run_job(job, b)
        seconds = time.perf_counter() - start
    assert record.output is not None
    answer = pd.concat([read_output(f) for f in record.output.files], ignore_index=True)
    engine = {"import": sum(s.import_seconds for s in record.stages),
              "program": sum(s.program_seconds for s in record.stages),
              "export": sum(s.export_seconds for s in record.stages)}
    return Result(seconds, answer, engine, timeline(record), max(s.engine_peak_rss_bytes for s in record.stages))


def local(ctx: Context) -> Result:
    return run_babelmr(ctx, warm=False)


def local_warm(ctx: Context) -> Result:
    """The same job with every stage ``"warm": true``: one program per worker and stage, not per task."""
    return run_babelmr(ctx, warm=True)


def duckdb_programs(ctx: Context) -> Result:
    """Bring your own engine: TPC-H Q1 whose map and reduce programs are DuckDB SQL (benchmarks/byoe/)."""
    if ctx.query != "tpch-q1":
        raise NotImplementedError("only TPC-H Q1 has DuckDB programs")
    return run_babelmr(ctx, source=ROOT / "benchmarks" / "byoe", warm=False)


def duckdb_programs_warm(ctx: Context) -> Result:
    """The DuckDB programs, warm: one Python + duckdb process per worker and stage."""
    if ctx.query != "tpch-q1":
        raise NotImplementedError("only TPC-H Q1 has DuckDB programs")
    return run_babelmr(ctx, source=ROOT / "benchmarks" / "byoe", warm=True)


# /tmp is on the host's disk: up to Lambda's 10 GB of ephemeral storage, whatever the memory
CONTAINER = ContainerLimits(memory=3 << 30, ephemeral_storage=10 << 30)


def docker_python(ctx: Context, warm: bool = False) -> Result:
    """The Python example's image on the docker backend (``warm``: one program per container and stage)."""
    return run_babelmr(ctx, backend="docker", limits=CONTAINER, warm=warm)


def docker_go(ctx: Context, warm: bool = False) -> Result:
    """The Go example's image on the docker backend."""
    return run_babelmr(ctx, "examples-go", backend="docker", limits=CONTAINER, warm=warm)


def docker_csharp(ctx: Context, warm: bool = False) -> Result:
    """The C# example's image on the docker backend."""
    return run_babelmr(ctx, "examples-csharp", backend="docker", limits=CONTAINER, warm=warm)


def docker_python_warm(ctx: Context) -> Result:
    return docker_python(ctx, warm=True)


def docker_go_warm(ctx: Context) -> Result:
    return docker_go(ctx, warm=True)


def docker_csharp_warm(ctx: Context) -> Result:
    return docker_csharp(ctx, warm=True)
