"""TPC-H Q1 (pricing summary report) on babelmr.

map:    one share of lineitem -> per (l_returnflag, l_linestatus), the sums and the row count of the
        items shipped by 1998-09-02;
reduce: all partial sums of its groups -> the totals and averages of Q1, sorted by the two flags.
"""

import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from babelmr import helper

FLAGS = ["l_returnflag", "l_linestatus"]
SHIPPED_BY = datetime.date(1998, 12, 1) - datetime.timedelta(days=90)


def read_as_floats(path: str, **kwargs) -> pd.DataFrame:
    """Read Parquet with its decimals as float64: pandas is slow on Python Decimal objects."""
    table = pq.read_table(path, **kwargs)
    floats = [pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in table.schema]
    return table.cast(pa.schema(floats)).to_pandas()


def map_lineitem() -> pd.DataFrame:
    items = read_as_floats(helper.input_path(), filters=[("l_shipdate", "<=", SHIPPED_BY)])
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


def reduce_partials() -> pd.DataFrame:
    q1 = pd.read_parquet(helper.input_path()).groupby(FLAGS, as_index=False).sum()
    q1["avg_qty"] = q1.sum_qty / q1.count_order
    q1["avg_price"] = q1.sum_base_price / q1.count_order
    q1["avg_disc"] = q1.sum_disc / q1.count_order
    columns = [*FLAGS, "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge",
               "avg_qty", "avg_price", "avg_disc", "count_order"]
    return q1.sort_values(FLAGS)[columns]


if __name__ == "__main__":
    helper.run({"map": map_lineitem, "reduce": reduce_partials})
