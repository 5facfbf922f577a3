"""Lithops with its localhost backend and localhost storage: ``ctx.parallelism`` worker processes.

Fairness: the FunctionExecutor is created BEFORE the timer and cleaned up after it (a one-time cost per
application); the timer covers submitting the jobs, the task processes Lithops starts (one Python process per
call, as its localhost backend does), their work and fetching the answer. The runtime is this interpreter
(``sys.executable``, not a ``python`` looked up on PATH). The job monitor polls the storage every 0.1 s instead
of Lithops's default 2 s, a setting meant for cloud storage that would add seconds of idle waiting per job here.

TPC-H Q1: ``map_reduce``, one map call per lineitem file (the same logic as babelmr's q1.py, decimals as
float64), one reduce call combining the partial sums.
TPCx-BB Q1: Lithops has no shuffle of its own, so the calls exchange data through Lithops's storage (the
``storage`` client Lithops passes to a function that asks for it): ``map`` over the store_sales files, the whole
item table in every call, writes each call's baskets as ``ctx.parallelism`` Parquet objects, one per ticket
partition; then ``map_reduce`` runs one call per ticket partition, which reads its object from every join call
and counts its pairs of items, and one reduce call adds the counts up and keeps the top 100.
The task functions live in lithops_tasks.py, which imports only pandas and pyarrow. Lithops does not ship that
module with each job (``include_modules=None``): its task processes import it from this checkout through
PYTHONPATH, because Lithops 3.8's localhost workers all rewrite the shipped module files into one folder per job
at once, and a call that imports a half-written copy fails with "Can't get attribute 'q1_map'".
"""

from __future__ import annotations

import _thread
import glob
import os
import sys
import threading
from pathlib import Path
from typing import Any

import lithops
import pandas as pd

from benchmarks.common import Context, Result, timed
from benchmarks.variants.lithops_tasks import bb_count, bb_join, bb_pairs, q1_map, q1_reduce

MONITORING_INTERVAL = 0.1
# Lithops 3.8's localhost job manager can stop just as the next job is invoked, which then never runs and
# map_reduce waits forever (seen once in 18 TPCx-BB runs). A run taking longer than this is reported as failed.
TIMEOUT_SECONDS = int(os.environ.get("BABELMR_BENCH_LITHOPS_TIMEOUT", "180"))
ROOT = Path(__file__).resolve().parents[2]


def config(parallelism: int) -> dict[str, Any]:
    return {
        "lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING",
                    "monitoring_interval": MONITORING_INTERVAL},
        "localhost": {"worker_processes": parallelism, "runtime": sys.executable},
    }


def answer(fexec: lithops.FunctionExecutor, ctx: Context, prefix: str) -> pd.DataFrame:
    if ctx.query == "tpch-q1":
        files = sorted(glob.glob(ctx.inputs()["lineitem"]))
        return fexec.get_result(fexec.map_reduce(q1_map, files, q1_reduce, include_modules=None),
                                show_progressbar=False)
    sales, item = (sorted(glob.glob(ctx.inputs()[name])) for name in ("store_sales", "item"))
    partitions = ctx.parallelism
    fexec.get_result(fexec.map(bb_join, sales, extra_args=(item, prefix, partitions), include_modules=None),
                     show_progressbar=False)
    futures = fexec.map_reduce(bb_pairs, list(range(partitions)), bb_count, extra_args=(prefix, len(sales)),
                               extra_args_reduce=(ctx.min_count,), include_modules=None)
    return fexec.get_result(futures, show_progressbar=False)


def importable_here() -> None:
    """Let Lithops's task processes (children of this one) import ``benchmarks`` from this checkout."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])


def run(ctx: Context) -> Result:
    importable_here()
    hung = threading.Event()

    def watchdog() -> None:  # Lithops owns SIGALRM (and cancels alarms in every wait): interrupt the main thread
        hung.set()
        _thread.interrupt_main()

    timer = threading.Timer(TIMEOUT_SECONDS, watchdog)
    timer.start()
    try:
        with lithops.FunctionExecutor(config=config(ctx.parallelism)) as fexec:
            prefix = f"babelmr-benchmark/{fexec.executor_id}"
            seconds, result = timed(lambda: answer(fexec, ctx, prefix))
            storage = lithops.Storage(config=config(ctx.parallelism))
            storage.delete_objects(storage.bucket, storage.list_keys(storage.bucket, prefix))
    except KeyboardInterrupt:
        if not hung.is_set():
            raise  # a real Ctrl-C
        raise TimeoutError(f"Lithops did not finish within {TIMEOUT_SECONDS} s (its localhost job manager can "
                           "miss a job invoked while it stops)") from None
    finally:
        timer.cancel()
    return Result(seconds, result)
