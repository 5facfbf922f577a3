"""TPC-H Q1 with DuckDB as the program's engine ("bring your own engine"): SQL over the task's in.parquet.

map:    the items shipped by 1998-09-02, summed per (l_returnflag, l_linestatus);
reduce: the partial sums added up, the averages derived, sorted by the two flags.
"""

import duckdb

from babelmr import helper

MAP = """
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       sum(l_discount) AS sum_disc, count(*) AS count_order
FROM read_parquet($input)
WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL '90' DAY
GROUP BY l_returnflag, l_linestatus
"""

REDUCE = """
SELECT l_returnflag, l_linestatus,
       sum(sum_qty) AS sum_qty, sum(sum_base_price) AS sum_base_price,
       sum(sum_disc_price) AS sum_disc_price, sum(sum_charge) AS sum_charge,
       sum(sum_qty) / sum(count_order) AS avg_qty, sum(sum_base_price) / sum(count_order) AS avg_price,
       sum(sum_disc) / sum(count_order) AS avg_disc, sum(count_order)::BIGINT AS count_order
FROM read_parquet($input)
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus
"""

CON = duckdb.connect()  # one connection: a warm program reuses it for every task


def copy_to_output(query: str) -> None:
    """Run ``query`` over the task's input and write its result to the task's output as Parquet."""
    target = helper.output_path().replace("'", "''")  # the output's path is SQL text, not a parameter, in COPY
    CON.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)", {"input": helper.input_path()})


if __name__ == "__main__":
    helper.run({"map": lambda: copy_to_output(MAP), "reduce": lambda: copy_to_output(REDUCE)})
