"""TPCx-BB Q1 on babelmr: the top 100 pairs of items sold together in given stores and categories.

join:  a share of store_sales joined with the whole item table -> (ss_ticket_number, ss_item_sk) of the
       sales in stores 10, 20, 33, 40, 50 of items in categories 1, 2, 3;
pairs: all lines of some tickets -> every pair of distinct items of a ticket (item_sk_1 < item_sk_2),
       counted (cnt) per pair;
count: all counts of some pairs -> the total per pair, kept when >= Q1_MIN_COUNT (default 50), the
       top 100 by cnt desc, item_sk_1, item_sk_2.
"""

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from babelmr import helper

CATEGORIES = [1, 2, 3]
STORES = [10, 20, 33, 40, 50]
PAIR = ["item_sk_1", "item_sk_2"]
MIN_COUNT = int(os.environ.get("Q1_MIN_COUNT", "50"))


def read(name: str | None = None) -> pa.Table:
    """The stage's only input, or the input `name` of several."""
    return pq.read_table(helper.input_path(name))


def distinct(table: pa.Table) -> pa.Table:
    """The distinct rows of `table` (a group-by on every column, no aggregate; NULL is one value, as in SQL)."""
    return table.group_by(table.column_names, use_threads=False).aggregate([])


def join() -> pa.Table:
    sales, item = read("store_sales"), read("item")
    sales = sales.filter(pc.is_in(sales["ss_store_sk"], pa.array(STORES, sales["ss_store_sk"].type)))
    item = item.filter(pc.is_in(item["i_category_id"], pa.array(CATEGORIES, item["i_category_id"].type)))
    # the inner join's rows are deduplicated below, so a semi-join (is the item among the categories'?) is the
    # same; a NULL item matches nothing, as in SQL
    sold = sales.filter(pc.is_in(sales["ss_item_sk"], item["i_item_sk"].combine_chunks(), skip_nulls=True))
    return distinct(sold.select(["ss_ticket_number", "ss_item_sk"]))


def pairs() -> pa.Table:
    baskets = distinct(read()).rename_columns({"ss_item_sk": "item_sk"})
    both = baskets.join(baskets, "ss_ticket_number", join_type="inner", left_suffix="_1", right_suffix="_2",
                        use_threads=False)
    both = both.filter(pc.less(both["item_sk_1"], both["item_sk_2"]))
    counts = both.group_by(PAIR, use_threads=False).aggregate([([], "count_all")])
    return pa.table({"item_sk_1": counts["item_sk_1"], "item_sk_2": counts["item_sk_2"], "cnt": counts["count_all"]})


def count() -> pa.Table:
    totals = read().group_by(PAIR, use_threads=False).aggregate([("cnt", "sum")])
    totals = pa.table({"item_sk_1": totals["item_sk_1"], "item_sk_2": totals["item_sk_2"], "cnt": totals["cnt_sum"]})
    frequent = totals.filter(pc.greater_equal(totals["cnt"], MIN_COUNT))
    return frequent.sort_by([("cnt", "descending"), ("item_sk_1", "ascending"), ("item_sk_2", "ascending")])[:100]


if __name__ == "__main__":
    helper.run({"join": join, "pairs": pairs, "count": count})  # a returned Table is written as Parquet
