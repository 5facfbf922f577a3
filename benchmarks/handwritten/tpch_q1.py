"""TPC-H Q1 (pricing summary report) distributed by hand with pyarrow, pandas, boto3 and a process pool.

    python tpch_q1.py --input 'DIR_OR_GLOB_OR_S3_GLOB' --work DIR_OR_S3_PREFIX [--parallelism 2] [--partitions N]

map:    one task per input file, run by a pool of --parallelism processes: reads the 7 columns Q1 needs, keeps
        the items shipped by 1998-09-02 and sums them per (l_returnflag, l_linestatus); the partial sums are
        hash-partitioned by the two flags and written as ONE Parquet file per task, one row group per partition,
        with the partition -> row groups index in the file's key-value metadata;
reduce: one task per partition: reads its row groups from every map file, many files at once in a thread pool,
        adds the partial sums up and derives the averages;
driver: collects the reducers' results and prints Q1.

Input and work locations are local paths or s3://bucket/key URIs (endpoint from AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL, credentials from the usual AWS environment).
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import functools
import glob
import io
import json
import multiprocessing
import os
import re
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import boto3
import botocore.config
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax", "l_shipdate"]
FLAGS = ["l_returnflag", "l_linestatus"]
SHIPPED_BY = datetime.date(1998, 12, 1) - datetime.timedelta(days=90)
ROW_GROUP_ROWS = 1 << 20  # a partition larger than this spans several row groups
IMPORT_THREADS = 16  # map files a reducer reads at once


# ---- storage: local paths and s3:// URIs ----

def s3() -> Any:
    """This process's S3 client (a client must not cross a fork)."""
    return _s3_client(os.getpid())


@functools.cache
def _s3_client(pid: int) -> Any:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = botocore.config.Config(max_pool_connections=2 * IMPORT_THREADS)
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def list_inputs(pattern: str) -> list[str]:
    """The Parquet files of a folder, a glob, or an s3:// prefix or glob, sorted."""
    if not pattern.startswith("s3://"):
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*.parquet")
        return sorted(glob.glob(pattern))
    bucket, key = split_s3(pattern)
    prefix = re.split(r"[*?\[]", key, maxsplit=1)[0]
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    if prefix == key:  # one object or a folder
        keys = [k for k in keys if k == key or (k.startswith(key.rstrip("/") + "/") and k.endswith(".parquet"))]
    else:
        keys = [k for k in keys if fnmatch.fnmatchcase(k, key)]
    return [f"s3://{bucket}/{k}" for k in sorted(keys)]


class S3Reader(io.RawIOBase):
    """A seekable S3 object read by byte ranges: Parquet readers fetch only the footer and the chunks they need."""

    def __init__(self, uri: str) -> None:
        self.bucket, self.key = split_s3(uri)
        self.size = s3().head_object(Bucket=self.bucket, Key=self.key)["ContentLength"]
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        end = min(self.pos + len(buffer), self.size)
        if end <= self.pos:
            return 0
        body = s3().get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-{end - 1}")["Body"].read()
        memoryview(buffer)[: len(body)] = body
        self.pos += len(body)
        return len(body)


def open_input(uri: str) -> IO[bytes]:
    return S3Reader(uri) if uri.startswith("s3://") else open(uri, "rb")


def put(uri: str, data: pa.Buffer) -> None:
    """Write a whole object; a local file appears atomically, so a failed task leaves no half file behind."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        s3().put_object(Bucket=bucket, Key=key, Body=data.to_pybytes())
        return
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    with open(uri + ".tmp", "wb") as f:
        f.write(data)
    os.replace(uri + ".tmp", uri)


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    with open_input(uri) as f:
        return plain_types(pq.read_table(f, columns=columns))


def plain_types(table: pa.Table) -> pa.Table:
    """Decimals as float64 (pandas is slow on Python Decimal objects), string views as strings."""
    def plain(t: pa.DataType) -> pa.DataType:
        return pa.float64() if pa.types.is_decimal(t) else pa.string() if pa.types.is_string_view(t) else t
    return table.cast(pa.schema([pa.field(f.name, plain(f.type)) for f in table.schema]))


def write_table(table: pa.Table, uri: str) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    put(uri, sink.getvalue())


# ---- shuffle: one file per mapper, one row group per partition ----

def write_partitioned(table: pa.Table, key: list[str], partitions: int, uri: str) -> None:
    """`table` hash-partitioned by `key` into one Parquet file; footer metadata "partitions": {p: [row groups]}."""
    part = pd.util.hash_pandas_object(table.select(key).to_pandas(), index=False).to_numpy() % partitions
    index: dict[int, list[int]] = {}
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema) as writer:
        groups = 0
        for p in range(partitions):
            rows = table.filter(pa.array(part == p))
            if rows.num_rows:
                writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)
                n = -(-rows.num_rows // ROW_GROUP_ROWS)
                index[p], groups = list(range(groups, groups + n)), groups + n
        writer.add_key_value_metadata({"partitions": json.dumps(index)})
    put(uri, sink.getvalue())


def read_partition(uri: str, partition: int) -> pa.Table:
    """The row groups of `partition` in one map output file (only those are fetched)."""
    with open_input(uri) as f:
        parquet = pq.ParquetFile(f)
        index = json.loads(parquet.metadata.metadata[b"partitions"])
        return parquet.read_row_groups(index.get(str(partition), []))


def import_partition(uris: list[str], partition: int) -> pa.Table:
    """A reducer's input: its row groups of every map output, read in parallel."""
    with ThreadPoolExecutor(max_workers=IMPORT_THREADS) as pool:
        tables = list(pool.map(lambda uri: read_partition(uri, partition), uris))
    return pa.concat_tables(tables)


# ---- the query ----

# The user logic is examples-python/tpch-q1/q1.py's (pyarrow.compute and Table.group_by), so that the comparison
# measures the distribution, not the dataframe library.
SUMS = ["sum_qty", "sum_base_price", "sum_disc_price", "sum_charge", "sum_disc"]


def floats(table: pa.Table, name: str) -> pa.ChunkedArray:
    return pc.cast(table[name], pa.float64())


def plain_flags(table: pa.Table) -> pa.Table:
    for name in FLAGS:
        table = table.set_column(table.schema.get_field_index(name), name, pc.cast(table[name], pa.string()))
    return table


def map_task(input_uri: str, partitions: int, output_uri: str) -> str:
    with open_input(input_uri) as f:
        items = pq.read_table(f, columns=COLUMNS, filters=pc.field("l_shipdate") <= SHIPPED_BY, read_dictionary=FLAGS)
    price, discount = floats(items, "l_extendedprice"), floats(items, "l_discount")
    disc_price = pc.multiply(price, pc.subtract(1.0, discount))
    charge = pc.multiply(disc_price, pc.add(1.0, floats(items, "l_tax")))
    work = pa.table({"l_returnflag": items["l_returnflag"], "l_linestatus": items["l_linestatus"],
                     "sum_qty": floats(items, "l_quantity"), "sum_base_price": price, "sum_disc_price": disc_price,
                     "sum_charge": charge, "sum_disc": discount}).unify_dictionaries()
    sums = work.group_by(FLAGS, use_threads=False).aggregate([(c, "sum") for c in SUMS] + [([], "count_all")])
    partials = plain_flags(pa.table({**{name: sums[name] for name in FLAGS}, **{c: sums[f"{c}_sum"] for c in SUMS},
                                     "count_order": sums["count_all"]}))
    write_partitioned(partials, FLAGS, partitions, output_uri)
    return output_uri


def reduce_task(map_outputs: list[str], partition: int, output_uri: str) -> str:
    partials = import_partition(map_outputs, partition)
    sums = partials.group_by(FLAGS, use_threads=False).aggregate([(c, "sum") for c in [*SUMS, "count_order"]])
    q1 = {name: sums[name] for name in FLAGS} | {c: sums[f"{c}_sum"] for c in [*SUMS, "count_order"]}
    count = pc.cast(q1["count_order"], pa.float64())
    columns = {name: q1[name] for name in [*FLAGS, "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge"]}
    columns["avg_qty"] = pc.divide(q1["sum_qty"], count)
    columns["avg_price"] = pc.divide(q1["sum_base_price"], count)
    columns["avg_disc"] = pc.divide(q1["sum_disc"], count)
    columns["count_order"] = q1["count_order"]
    write_table(plain_flags(pa.table(columns)), output_uri)
    return output_uri


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="lineitem Parquet: a folder, a glob or an s3:// prefix or glob")
    parser.add_argument("--work", required=True, help="a folder or s3://bucket/prefix for intermediate and results")
    parser.add_argument("--parallelism", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--partitions", type=int, help="reduce tasks (default: --parallelism)")
    args = parser.parse_args(argv)
    partitions = args.partitions or args.parallelism
    inputs = list_inputs(args.input)
    if not inputs:
        sys.exit(f"no input files match {args.input}")
    run = f"{args.work.rstrip('/')}/tpch-q1-{uuid.uuid4().hex[:12]}"

    with multiprocessing.Pool(args.parallelism) as pool:
        maps = pool.starmap(map_task, [(uri, partitions, f"{run}/map/part-{i:05d}.parquet")
                                       for i, uri in enumerate(inputs)], chunksize=1)
        results = pool.starmap(reduce_task, [(maps, p, f"{run}/reduce/part-{p:05d}.parquet")
                                             for p in range(partitions)], chunksize=1)
    answer = pd.concat([read_parquet(uri).to_pandas() for uri in results], ignore_index=True)
    return answer.sort_values(FLAGS, ignore_index=True)


if __name__ == "__main__":
    print(main().to_string(index=False))
