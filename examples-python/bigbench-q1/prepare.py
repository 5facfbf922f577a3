"""Generate TPC-DS-like store_sales and item tables as Parquet for TPCx-BB Q1.

    data/store_sales/part-<n>.parquet   several files, several row groups each
    data/item/item.parquet

Tickets have 1 to 19 lines (one per distinct item, as TPC-DS's key (ss_item_sk, ss_ticket_number)
says); items are drawn from a skewed popularity distribution, so some pairs of popular items are bought
together in many tickets. Rows are stored in random order: the lines of one ticket are spread over all
files, and only babelmr's shuffle by ss_ticket_number brings them together. The data is deterministic
for a given seed and size, and kept (skipped next time) unless --force is given or the parameters change.

    python prepare.py [--rows 4000000] [--files 4] [--row-groups 4] [--seed 7] [--data DIR] [--force]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from _support import folder_size, prepare_once  # noqa: E402

ITEMS = 18_000  # as TPC-DS at scale factor 1
STORES = 50  # store_sk 1..50, so that all of Q1's stores (10, 20, 33, 40, 50) exist
CUSTOMERS = 100_000
FIRST_DATE_SK = 2_450_816  # 1998-01-02, TPC-DS's first sales date
DAYS = 1_826
CATEGORIES = ["Women", "Men", "Children", "Shoes", "Music", "Jewelry", "Home", "Sports", "Books", "Electronics"]
NULL_RATE = 0.02  # TPC-DS leaves some foreign keys of sales rows empty
MONEY = pa.decimal128(7, 2)


def money(values: np.ndarray) -> pa.Array:
    return pa.array(np.round(values, 2)).cast(MONEY)


def with_nulls(rng: np.random.Generator, values: np.ndarray) -> pa.Array:
    return pa.array(values, mask=rng.random(len(values)) < NULL_RATE)


def item_table(rng: np.random.Generator) -> pa.Table:
    sk = np.arange(1, ITEMS + 1)
    category_id = rng.integers(1, len(CATEGORIES) + 1, ITEMS)
    return pa.table({
        "i_item_sk": sk,
        "i_item_id": [f"AAAAAAAA{k:08d}" for k in sk],
        "i_category_id": category_id,
        "i_category": np.array(CATEGORIES)[category_id - 1],
        "i_class_id": rng.integers(1, 17, ITEMS),
        "i_current_price": money(rng.uniform(0.5, 100, ITEMS)),
    })


def store_sales_table(rng: np.random.Generator, rows: int, price: np.ndarray) -> pa.Table:
    """About `rows` sales lines in random order; item popularity: Zipf-like (70%) plus uniform (30%)."""
    popularity = 0.7 / np.arange(1, ITEMS + 1) / np.sum(1 / np.arange(1, ITEMS + 1)) + 0.3 / ITEMS
    popularity = popularity[rng.permutation(ITEMS)]  # popular items anywhere in the catalogue
    lines = rng.integers(1, 20, rows // 10)
    ticket = np.repeat(np.arange(1, len(lines) + 1), lines)
    item = rng.choice(ITEMS, len(ticket), p=popularity) + 1
    line = np.unique(ticket * (ITEMS + 1) + item)  # one line per item and ticket
    ticket, item = line // (ITEMS + 1), line % (ITEMS + 1)
    order = rng.permutation(len(ticket))
    ticket, item = ticket[order], item[order]
    n_tickets = len(lines)
    store = rng.integers(1, STORES + 1, n_tickets + 1)[ticket]  # a ticket is from one store, customer, day
    customer = rng.integers(1, CUSTOMERS + 1, n_tickets + 1)[ticket]
    date = rng.integers(FIRST_DATE_SK, FIRST_DATE_SK + DAYS, n_tickets + 1)[ticket]
    quantity = rng.integers(1, 101, len(ticket))
    return pa.table({
        "ss_sold_date_sk": with_nulls(rng, date),
        "ss_item_sk": item,
        "ss_customer_sk": with_nulls(rng, customer),
        "ss_store_sk": with_nulls(rng, store),
        "ss_ticket_number": ticket,
        "ss_quantity": quantity,
        "ss_net_paid": money(price[item - 1] * quantity * rng.uniform(0.5, 1.0, len(ticket))),
    })


def prepare(data: str, rows: int, files: int, row_groups: int, seed: int, force: bool = False) -> None:
    """Write item and about `rows` store_sales rows (`files` files of `row_groups` row groups) into `data`."""

    def build(folder: str) -> None:
        rng = np.random.default_rng(seed)
        item = item_table(rng)
        sales = store_sales_table(rng, rows, item["i_current_price"].to_numpy().astype(float))
        os.makedirs(os.path.join(folder, "item"))
        pq.write_table(item, os.path.join(folder, "item", "item.parquet"))
        os.makedirs(os.path.join(folder, "store_sales"))
        per_file = -(-sales.num_rows // files)
        for i in range(files):
            part = sales.slice(i * per_file, per_file)
            pq.write_table(part, os.path.join(folder, "store_sales", f"part-{i}.parquet"),
                           row_group_size=-(-part.num_rows // row_groups))

    if prepare_once(data, {"rows": rows, "files": files, "row_groups": row_groups, "seed": seed}, build, force):
        n = pq.ParquetDataset(os.path.join(data, "store_sales")).read(columns=["ss_item_sk"]).num_rows
        print(f"{data}: {n} store_sales rows in {files} files, {ITEMS} items, {folder_size(data) / 1e6:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="about this many store_sales rows")
    parser.add_argument("--files", type=int, default=4, help="store_sales files (default 4)")
    parser.add_argument("--row-groups", type=int, default=4, help="row groups per file (default 4)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", default=os.path.join(HERE, "data"), help="output folder (default ./data)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the data is there")
    args = parser.parse_args()
    prepare(args.data, args.rows, args.files, args.row_groups, args.seed, args.force)


if __name__ == "__main__":
    main()
