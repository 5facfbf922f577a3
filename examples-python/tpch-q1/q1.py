"""TPC-H Q1 (pricing summary report) on babelmr.

map:    one share of lineitem -> per (l_returnflag, l_linestatus), the sums and the row count of the
        items shipped by 1998-09-02;
reduce: all partial sums of its groups -> the totals and averages of Q1, sorted by the two flags.
"""

import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from babelmr import helper

FLAGS = ["l_returnflag", "l_linestatus"]
SHIPPED_BY = datetime.date(1998, 12, 1) - datetime.timedelta(days=90)
COLUMNS = [*FLAGS, "l_quantity", "l_extendedprice", "l_discount", "l_tax", "l_shipdate"]
SUMS = ["sum_qty", "sum_base_price", "sum_disc_price", "sum_charge", "sum_disc"]


def floats(table: pa.Table, name: str) -> pa.ChunkedArray:
    """A decimal column as float64: Arrow's vectorised float arithmetic, summed to a relative 1e-15."""
    return pc.cast(table[name], pa.float64())


def plain_flags(table: pa.Table) -> pa.Table:
    """The two flags as plain strings (they are read dictionary-encoded), for every reader of the output."""
    for name in FLAGS:
        table = table.set_column(table.schema.get_field_index(name), name, pc.cast(table[name], pa.string()))
    return table


def map_lineitem() -> pa.Table:
    # the flags dictionary-encoded: grouping by small integer codes, not by 1.5 M strings
    items = pq.read_table(helper.input_path(), columns=COLUMNS,
                          filters=pc.field("l_shipdate") <= SHIPPED_BY, read_dictionary=FLAGS)
    price, discount = floats(items, "l_extendedprice"), floats(items, "l_discount")
    disc_price = pc.multiply(price, pc.subtract(1.0, discount))
    charge = pc.multiply(disc_price, pc.add(1.0, floats(items, "l_tax")))
    work = pa.table({"l_returnflag": items["l_returnflag"], "l_linestatus": items["l_linestatus"],
                     "sum_qty": floats(items, "l_quantity"), "sum_base_price": price, "sum_disc_price": disc_price,
                     "sum_charge": charge, "sum_disc": discount}).unify_dictionaries()  # row groups: one each
    sums = work.group_by(FLAGS, use_threads=False).aggregate([(c, "sum") for c in SUMS] + [([], "count_all")])
    return plain_flags(pa.table({**{name: sums[name] for name in FLAGS}, **{c: sums[f"{c}_sum"] for c in SUMS},
                                 "count_order": sums["count_all"]}))


def reduce_partials() -> pa.Table:
    partials = pq.read_table(helper.input_path())
    sums = partials.group_by(FLAGS, use_threads=False).aggregate([(c, "sum") for c in [*SUMS, "count_order"]])
    q1 = {name: sums[name] for name in FLAGS} | {c: sums[f"{c}_sum"] for c in [*SUMS, "count_order"]}
    count = pc.cast(q1["count_order"], pa.float64())
    columns = {name: q1[name] for name in [*FLAGS, "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge"]}
    columns["avg_qty"] = pc.divide(q1["sum_qty"], count)
    columns["avg_price"] = pc.divide(q1["sum_base_price"], count)
    columns["avg_disc"] = pc.divide(q1["sum_disc"], count)
    columns["count_order"] = q1["count_order"]
    return plain_flags(pa.table(columns).sort_by([(f, "ascending") for f in FLAGS]))


if __name__ == "__main__":
    helper.run({"map": map_lineitem, "reduce": reduce_partials})  # a returned Table is written as Parquet
