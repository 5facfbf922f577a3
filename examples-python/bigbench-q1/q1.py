"""TPCx-BB Q1 on babelmr: the top 100 pairs of items sold together in given stores and categories.

join:  a share of store_sales joined with the whole item table -> (ss_ticket_number, ss_item_sk) of the
       sales in stores 10, 20, 33, 40, 50 of items in categories 1, 2, 3;
pairs: all lines of some tickets -> every pair of distinct items of a ticket (item_sk_1 < item_sk_2),
       counted (cnt) per pair;
count: all counts of some pairs -> the total per pair, kept when >= Q1_MIN_COUNT (default 50), the
       top 100 by cnt desc, item_sk_1, item_sk_2.
"""

import os

import pandas as pd

from babelmr import helper

CATEGORIES = [1, 2, 3]
STORES = [10, 20, 33, 40, 50]
MIN_COUNT = int(os.environ.get("Q1_MIN_COUNT", "50"))


def read(name: str | None = None) -> pd.DataFrame:
    """The stage's only input, or the input `name` of several."""
    return pd.read_parquet(helper.input_path(name))


def join() -> pd.DataFrame:
    sales, item = read("store_sales"), read("item")
    sales = sales[sales.ss_store_sk.isin(STORES)]
    item = item[item.i_category_id.isin(CATEGORIES)]
    sold = sales.merge(item, left_on="ss_item_sk", right_on="i_item_sk")
    return sold[["ss_ticket_number", "ss_item_sk"]].drop_duplicates()


def pairs() -> pd.DataFrame:
    baskets = read().drop_duplicates().rename(columns={"ss_item_sk": "item_sk"})
    both = baskets.merge(baskets, on="ss_ticket_number", suffixes=("_1", "_2"))
    both = both[both.item_sk_1 < both.item_sk_2]
    return both.groupby(["item_sk_1", "item_sk_2"]).size().reset_index(name="cnt")


def count() -> pd.DataFrame:
    totals = read().groupby(["item_sk_1", "item_sk_2"], as_index=False)["cnt"].sum()
    frequent = totals[totals.cnt >= MIN_COUNT]
    return frequent.sort_values(["cnt", "item_sk_1", "item_sk_2"], ascending=[False, True, True]).head(100)


if __name__ == "__main__":
    helper.run({"join": join, "pairs": pairs, "count": count})
