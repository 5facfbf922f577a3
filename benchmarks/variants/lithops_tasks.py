"""The functions the Lithops variant runs in its worker processes: TPC-H Q1 and TPCx-BB Q1, the same logic as
the babelmr example programs. This module imports only pandas and pyarrow, so that each Lithops call (a new
Python process) imports no more than a babelmr task's program does.
"""

from __future__ import annotations

import datetime
import io
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FLAGS = ["l_returnflag", "l_linestatus"]
COLUMNS = ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax", "l_shipdate"]
SHIPPED_BY = datetime.date(1998, 12, 1) - datetime.timedelta(days=90)
CATEGORIES = [1, 2, 3]
STORES = [10, 20, 33, 40, 50]
PAIR = ["item_sk_1", "item_sk_2"]


def read_plain(path: str, columns: list[str]) -> pa.Table:
    """Parquet with decimals as float64 and string views as strings (pandas handles both better)."""
    table = pq.read_table(path, columns=columns)
    plain = [pa.field(f.name, pa.float64() if pa.types.is_decimal(f.type)
                      else pa.string() if pa.types.is_string_view(f.type) else f.type) for f in table.schema]
    return table.cast(pa.schema(plain))


# ---- TPC-H Q1 ----

def q1_map(path: str) -> pd.DataFrame:
    items = read_plain(path, COLUMNS)
    items = items.filter(pc.field("l_shipdate") <= SHIPPED_BY).to_pandas()
    items["disc_price"] = items.l_extendedprice * (1 - items.l_discount)
    items["charge"] = items.disc_price * (1 + items.l_tax)
    return items.groupby(FLAGS, as_index=False).agg(
        sum_qty=("l_quantity", "sum"),
        sum_base_price=("l_extendedprice", "sum"),
        sum_disc_price=("disc_price", "sum"),
        sum_charge=("charge", "sum"),
        sum_disc=("l_discount", "sum"),
        count_order=("l_quantity", "size"),
    )


def q1_reduce(results: list[pd.DataFrame]) -> pd.DataFrame:
    q1 = pd.concat(results).groupby(FLAGS, as_index=False).sum()
    q1["avg_qty"] = q1.sum_qty / q1.count_order
    q1["avg_price"] = q1.sum_base_price / q1.count_order
    q1["avg_disc"] = q1.sum_disc / q1.count_order
    columns = [*FLAGS, "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge",
               "avg_qty", "avg_price", "avg_disc", "count_order"]
    return q1.sort_values(FLAGS, ignore_index=True)[columns]


# ---- TPCx-BB Q1 ----

def bb_join(sales_path: str, item_paths: list[str], prefix: str, partitions: int, id: int, storage: Any) -> None:
    """One store_sales file joined with item: its baskets, one Parquet object per ticket partition."""
    sales = read_plain(sales_path, ["ss_ticket_number", "ss_item_sk", "ss_store_sk"]).to_pandas()
    item = pd.concat([read_plain(p, ["i_item_sk", "i_category_id"]).to_pandas() for p in item_paths])
    sales = sales[sales.ss_store_sk.isin(STORES)]
    item = item[item.i_category_id.isin(CATEGORIES)]
    sold = sales.merge(item, left_on="ss_item_sk", right_on="i_item_sk")
    baskets = sold[["ss_ticket_number", "ss_item_sk"]].drop_duplicates()
    part = pd.util.hash_pandas_object(baskets[["ss_ticket_number"]], index=False).to_numpy() % partitions
    for p in range(partitions):
        body = io.BytesIO()
        baskets[part == p].to_parquet(body, index=False)
        storage.put_object(storage.bucket, f"{prefix}/join/{id}/{p}.parquet", body.getvalue())


def bb_pairs(partition: int, prefix: str, mappers: int, storage: Any) -> pd.DataFrame:
    """The pairs of items of the tickets in one partition, counted."""
    parts = [pd.read_parquet(io.BytesIO(storage.get_object(storage.bucket, f"{prefix}/join/{m}/{partition}.parquet")))
             for m in range(mappers)]
    baskets = pd.concat(parts).drop_duplicates().rename(columns={"ss_item_sk": "item_sk"})
    both = baskets.merge(baskets, on="ss_ticket_number", suffixes=("_1", "_2"))
    both = both[both.item_sk_1 < both.item_sk_2]
    return both.groupby(PAIR).size().reset_index(name="cnt")


def bb_count(results: list[pd.DataFrame], min_count: int) -> pd.DataFrame:
    totals = pd.concat(results).groupby(PAIR, as_index=False)["cnt"].sum()
    frequent = totals[totals.cnt >= min_count]
    return frequent.sort_values(["cnt", *PAIR], ascending=[False, True, True], ignore_index=True).head(100)
