"""The paper's setting: data and store on S3 (a SeaweedFS server the benchmark starts), many map outputs.

TPC-H Q1's lineitem is rewritten into ``MAP_TASKS`` Parquet objects (64, so each reducer fans in from that
many map outputs; ``SMOKE_MAP_TASKS`` below SF 0.1, to keep the smoke run short) in a bucket of a
throw-away SeaweedFS (tests/s3server.py's ``SeaweedS3``), once per scale factor; the upload is not timed.
babelmr runs one map task per object with its store in the same bucket; the hand-written code
(benchmarks/handwritten/tpch_q1.py) reads the same objects and writes its shuffle files there too. Both see
the server through the standard AWS environment variables, set only while a variant runs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import ROOT, Context, Result, timed

MAP_TASKS = 64
SMOKE_MAP_TASKS = 8


def map_tasks(sf: float) -> int:
    """Map tasks (objects of lineitem) at scale factor ``sf``."""
    return MAP_TASKS if sf >= 0.1 else SMOKE_MAP_TASKS
BUCKET = "bench"

_server = None
_uploaded: dict[float, str] = {}


def server():
    """The benchmark's SeaweedFS S3 server, started at the first call and stopped at exit."""
    global _server
    if _server is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from s3server import SeaweedS3

        _server = SeaweedS3(volume_size_limit_mb=1024).start()
        atexit.register(_server.stop)
        _server.create_bucket(BUCKET)
    return _server


@contextlib.contextmanager
def s3_environment() -> Iterator[None]:
    """The AWS environment of the benchmark's server, for the duration of a variant."""
    env = server().env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def lineitem(ctx: Context) -> str:
    """The s3:// prefix of `map_tasks` lineitem objects at the context's scale factor (uploaded once)."""
    if ctx.sf in _uploaded:
        return _uploaded[ctx.sf]
    prefix = f"tpch-q1-sf{ctx.sf:g}/lineitem"
    client = server().client()
    sources = [pq.ParquetFile(f) for f in sorted((Path(ctx.data) / "lineitem").glob("*.parquet"))]
    tasks = map_tasks(ctx.sf)
    per = -(-sum(f.metadata.num_rows for f in sources) // tasks)
    # one object in memory at a time: the whole table at SF 10 would be ~15 GB
    batches = (b for f in sources for b in f.iter_batches(batch_size=64 * 1024))
    pending: list[pa.RecordBatch] = []
    for i in range(tasks):
        local = ctx.work / f"lineitem-{i:03d}.parquet"
        piece, rows = [], 0
        while rows < per:
            batch = pending.pop() if pending else next(batches, None)
            if batch is None:
                break
            if rows + batch.num_rows > per:
                pending.append(batch.slice(per - rows))
                batch = batch.slice(0, per - rows)
            piece.append(batch)
            rows += batch.num_rows
        pq.write_table(pa.Table.from_batches(piece, sources[0].schema_arrow), local)  # as the whole table's slice
        client.upload_file(str(local), BUCKET, f"{prefix}/part-{i:03d}.parquet")
        local.unlink()
    _uploaded[ctx.sf] = f"s3://{BUCKET}/{prefix}"
    return _uploaded[ctx.sf]


def babelmr(ctx: Context, warm: bool = False) -> Result:
    """babelmr with its inputs and store on S3, one map task per object (``warm``: every stage warm)."""
    if ctx.query != "tpch-q1":
        raise NotImplementedError("the S3 variants run TPC-H Q1")
    from benchmarks.variants.babelmr import run_babelmr

    with s3_environment():
        data = lineitem(ctx)
        return run_babelmr(ctx, store=f"s3://{BUCKET}/store-{uuid.uuid4().hex[:8]}",
                           inputs={"lineitem": f"{data}/*.parquet"}, split={"files_per_task": 1}, warm=warm)


def babelmr_warm(ctx: Context) -> Result:
    """babelmr on S3 with warm programs: one program per worker and stage for the 64 map tasks."""
    return babelmr(ctx, warm=True)


def handwritten(ctx: Context) -> Result:
    """The hand-written code reading the same objects, its shuffle files on S3 too."""
    if ctx.query != "tpch-q1":
        raise NotImplementedError("the S3 variants run TPC-H Q1")
    from benchmarks.handwritten import tpch_q1

    with s3_environment():
        data = lineitem(ctx)
        argv = ["--input", f"{data}/*.parquet", "--work", f"s3://{BUCKET}/hw-{uuid.uuid4().hex[:8]}",
                "--parallelism", str(ctx.parallelism)]
        seconds, answer = timed(lambda: tpch_q1.main(argv))
    return Result(seconds, answer)
