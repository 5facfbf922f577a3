"""Per-reduce-task time against the partition count: does a reducer's import grow with the partitions?

A map stage (``cp``: the program copies its input) partitions the same rows into 10, 100 and 1,000
partitions; a reduce stage (``cp`` again) reads each partition from every map output. The per-task time
of the reduce stage (the worker's import, program and export, from its stats) should not grow with the
partition count: each reducer reads its share of the rows from the same number of upstream files.

    python -m benchmarks.reduce_partitions [--rows 200000] [--maps 8] [--partitions 10,100,1000]

prints one line per partition count and the ratio of the largest count's time to the smallest's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TARGET_RATIO = 1.5  # the target: per-task time at 1,000 partitions <= 1.5x that at 10


def make_data(folder: Path, rows: int, maps: int, seed: int = 1) -> None:
    """``maps`` Parquet files of ``rows`` rows in all: an integer key and a few columns of lineitem's kinds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per = rows // maps
    for m in range(maps):
        n = per if m < maps - 1 else rows - per * (maps - 1)
        table = pa.table({
            "key": rng.integers(0, 1 << 40, n),
            "quantity": rng.integers(1, 50, n).astype("float64"),
            "price": rng.random(n) * 1e5,
            "flag": pa.array(rng.choice(["A", "N", "R"], n)),
            "comment": pa.array([f"comment {i}" for i in rng.integers(0, 1 << 30, n)]),
        })
        pq.write_table(table, folder / f"part-{m:03d}.parquet")


def job(data: Path, partitions: int) -> dict[str, Any]:
    """The job file: map and reduce both copy their input (the program costs nothing)."""
    cp = "cp in.parquet out.parquet"
    return {"name": f"reduce-{partitions}", "stages": [
        {"name": "map", "command": cp, "inputs": [{"name": "rows", "uri": f"{data}/*.parquet", "format": "parquet"}],
         "key": ["key"], "partitions": partitions},
        {"name": "reduce", "command": cp, "inputs": [{"name": "rows", "stage": "map"}]},
    ]}


def reduce_task_seconds(run: Any) -> list[float]:
    """Each committed reduce task's time in the worker (import, program, export, commit)."""
    stage = run.stage("reduce")
    return [a.stats.finished_at - a.stats.started_at for a in stage.task_attempts
            if a.status == "ok" and a.stats.finished_at is not None and a.stats.started_at is not None]


def measure(rows: int, maps: int, partitions: list[int], backend: str = "local") -> list[dict[str, Any]]:
    """Run the job at each partition count; one result row per count."""
    import babelmr

    out = []
    with tempfile.TemporaryDirectory(prefix="babelmr-reduce-") as tmp:
        data = Path(tmp) / "data"
        make_data(data, rows, maps)
        for n in partitions:
            job_file = Path(tmp) / f"job-{n}.json"
            job_file.write_text(json.dumps(job(data, n)))
            start = time.perf_counter()
            run = babelmr.run(job_file, backend=backend, store=str(Path(tmp) / f"store-{n}"))
            wall = time.perf_counter() - start
            seconds = reduce_task_seconds(run)
            rows_out = run.stage("reduce").rows_out
            if rows_out != rows:
                raise SystemExit(f"{n} partitions: the reduce stage wrote {rows_out} rows, not {rows}")
            imports = [a.stats.import_seconds or 0.0 for a in run.stage("reduce").task_attempts
                       if a.status == "ok"]
            out.append({"block": "reduce task", "case": f"{rows:,} rows from {maps} map outputs, {n:,} partitions",
                        "variant": "babelmr", "partitions": n, "rows": rows, "maps": maps,
                        "task_ms": statistics.median(seconds) * 1e3,
                        "import_ms": statistics.median(imports) * 1e3, "run_seconds": wall,
                        "definition": "median time of one reduce task in the worker (import, program, export, "
                                      "commit) when a map stage of `cp` programs partitions the same rows into "
                                      "N partitions and a reduce stage of `cp` programs reads them back "
                                      "(benchmarks/reduce_partitions.py)"})
    return out


def ratio(results: list[dict[str, Any]]) -> float:
    """Per-task time at the most partitions over that at the fewest."""
    by = sorted(results, key=lambda r: r["partitions"])
    return by[-1]["task_ms"] / by[0]["task_ms"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--maps", type=int, default=8)
    ap.add_argument("--partitions", default="10,100,1000")
    ap.add_argument("--backend", default="local")
    args = ap.parse_args(argv)
    results = measure(args.rows, args.maps, [int(p) for p in args.partitions.split(",")], args.backend)
    for r in results:
        print(f"{r['partitions']:>6} partitions: {r['task_ms']:8.1f} ms per reduce task "
              f"(import {r['import_ms']:.1f} ms; run {r['run_seconds']:.1f} s)")
    q = ratio(results)
    verdict = "met" if q <= TARGET_RATIO else "MISSED"
    print(f"ratio {max(r['partitions'] for r in results)} / {min(r['partitions'] for r in results)} partitions: "
          f"{q:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
