"""TPCx-BB Q1 (items sold together) distributed by hand with pyarrow, pandas, boto3 and a process pool.

    python bigbench_q1.py --input DIR_OR_S3_PREFIX --work DIR_OR_S3_PREFIX [--parallelism 2] [--partitions N]
                          [--min-count 50]

--input holds store_sales/*.parquet and item/*.parquet. Three stages, each run by a pool of --parallelism
processes; every stage hash-partitions its output by the next stage's key and writes ONE Parquet file per task,
one row group per partition, with the partition -> row groups index in the file's key-value metadata, and each
task of the next stage reads its row groups from every such file, many files at once in a thread pool.

join:   one task per store_sales file, with the whole (small) item table: the (ss_ticket_number, ss_item_sk)
        sold in stores 10, 20, 33, 40, 50 of items in categories 1, 2, 3, partitioned by ticket;
pairs:  one task per ticket partition: every pair of distinct items of a ticket (item_sk_1 < item_sk_2),
        counted per pair, partitioned by the pair;
count:  one task per pair partition: the total per pair, kept when >= --min-count, its top 100;
driver: the top 100 of all count tasks by cnt desc, item_sk_1, item_sk_2.

Input and work locations are local paths or s3://bucket/key URIs (endpoint from AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL, credentials from the usual AWS environment).
"""

from __future__ import annotations

import argparse
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

CATEGORIES = [1, 2, 3]
STORES = [10, 20, 33, 40, 50]
PAIR = ["item_sk_1", "item_sk_2"]
ROW_GROUP_ROWS = 1 << 20  # a partition larger than this spans several row groups
IMPORT_THREADS = 16  # upstream files a task reads at once


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

# The user logic is examples-python/bigbench-q1/q1.py's (pyarrow.compute, Table.group_by and Table.join), so that
# the comparison measures the distribution, not the dataframe library.

def distinct(table: pa.Table) -> pa.Table:
    return table.group_by(table.column_names, use_threads=False).aggregate([])


def join_task(sales_uri: str, item_uris: list[str], partitions: int, output_uri: str) -> str:
    sales = read_parquet(sales_uri, ["ss_ticket_number", "ss_item_sk", "ss_store_sk"])
    item = pa.concat_tables([read_parquet(uri, ["i_item_sk", "i_category_id"]) for uri in item_uris])
    sales = sales.filter(pc.is_in(sales["ss_store_sk"], pa.array(STORES, sales["ss_store_sk"].type)))
    item = item.filter(pc.is_in(item["i_category_id"], pa.array(CATEGORIES, item["i_category_id"].type)))
    sold = sales.filter(pc.is_in(sales["ss_item_sk"], item["i_item_sk"].combine_chunks(), skip_nulls=True))
    baskets = distinct(sold.select(["ss_ticket_number", "ss_item_sk"]))
    write_partitioned(baskets, ["ss_ticket_number"], partitions, output_uri)
    return output_uri


def pairs_task(join_outputs: list[str], partition: int, partitions: int, output_uri: str) -> str:
    baskets = distinct(import_partition(join_outputs, partition)).rename_columns({"ss_item_sk": "item_sk"})
    both = baskets.join(baskets, "ss_ticket_number", join_type="inner", left_suffix="_1", right_suffix="_2",
                        use_threads=False)
    both = both.filter(pc.less(both["item_sk_1"], both["item_sk_2"]))
    counts = both.group_by(PAIR, use_threads=False).aggregate([([], "count_all")])
    counts = pa.table({"item_sk_1": counts["item_sk_1"], "item_sk_2": counts["item_sk_2"], "cnt": counts["count_all"]})
    write_partitioned(counts, PAIR, partitions, output_uri)
    return output_uri


def count_task(pairs_outputs: list[str], partition: int, min_count: int, output_uri: str) -> str:
    totals = import_partition(pairs_outputs, partition).group_by(PAIR, use_threads=False).aggregate([("cnt", "sum")])
    totals = pa.table({"item_sk_1": totals["item_sk_1"], "item_sk_2": totals["item_sk_2"], "cnt": totals["cnt_sum"]})
    write_table(top100(totals.filter(pc.greater_equal(totals["cnt"], min_count))), output_uri)
    return output_uri


def top100(pairs: pa.Table) -> pa.Table:
    return pairs.sort_by([("cnt", "descending"), ("item_sk_1", "ascending"), ("item_sk_2", "ascending")])[:100]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="a folder or s3:// prefix holding store_sales/ and item/")
    parser.add_argument("--work", required=True, help="a folder or s3://bucket/prefix for intermediate and results")
    parser.add_argument("--parallelism", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--partitions", type=int, help="tasks of the pairs and count stages (default: --parallelism)")
    parser.add_argument("--min-count", type=int, default=50, help="keep pairs sold together this often (default 50)")
    args = parser.parse_args(argv)
    partitions = args.partitions or args.parallelism
    root = args.input.rstrip("/")
    sales, item = list_inputs(f"{root}/store_sales/"), list_inputs(f"{root}/item/")
    if not sales or not item:
        sys.exit(f"no store_sales or item Parquet files under {args.input}")
    run = f"{args.work.rstrip('/')}/bigbench-q1-{uuid.uuid4().hex[:12]}"

    with multiprocessing.Pool(args.parallelism) as pool:
        joined = pool.starmap(join_task, [(uri, item, partitions, f"{run}/join/part-{i:05d}.parquet")
                                          for i, uri in enumerate(sales)], chunksize=1)
        pairs = pool.starmap(pairs_task, [(joined, p, partitions, f"{run}/pairs/part-{p:05d}.parquet")
                                          for p in range(partitions)], chunksize=1)
        counts = pool.starmap(count_task, [(pairs, p, args.min_count, f"{run}/count/part-{p:05d}.parquet")
                                           for p in range(partitions)], chunksize=1)
    return top100(pa.concat_tables([read_parquet(uri) for uri in counts])).to_pandas()


if __name__ == "__main__":
    print(main().to_string(index=False))
