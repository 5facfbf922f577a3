"""Check a babelmr TPC-H Q1 result against DuckDB running the standard Q1 SQL on the same lineitem files.

    python check.py RESULT.parquet... [--data DATA_DIR_OR_GLOB]

Flags and count_order must match exactly, the sums and averages to a relative 1e-9 (babelmr's program
adds floats where DuckDB adds decimals). Row order is ignored: rows are matched on the two flags.
"""

from __future__ import annotations

import os
import sys

import duckdb
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
sys.path.insert(0, os.path.dirname(HERE))
from _support import assert_same_rows, check_arguments, read_results, run_check  # noqa: E402

Q1 = """
SELECT
    l_returnflag,
    l_linestatus,
    sum(l_quantity) AS sum_qty,
    sum(l_extendedprice) AS sum_base_price,
    sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
    avg(l_quantity) AS avg_qty,
    avg(l_extendedprice) AS avg_price,
    avg(l_discount) AS avg_disc,
    count(*) AS count_order
FROM read_parquet($files)
WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL '90' DAY
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus
"""


def expected(data: str = DATA) -> pd.DataFrame:
    """Q1 over the lineitem Parquet files in `data` (the prepared folder, a lineitem folder or a glob)."""
    if os.path.isdir(os.path.join(data, "lineitem")):
        data = os.path.join(data, "lineitem")
    files = os.path.join(data, "*.parquet") if os.path.isdir(data) else data
    return duckdb.execute(Q1, {"files": files}).df()


def compare(result_files: list[str], data: str = DATA) -> None:
    """Raise AssertionError with a readable diff when the result files do not hold Q1's answer."""
    got = read_results(result_files)
    assert_same_rows(got, expected(data), key=["l_returnflag", "l_linestatus"], rtol=1e-9)


if __name__ == "__main__":
    args = check_arguments(__doc__, DATA).parse_args()
    sys.exit(run_check(lambda: compare(args.results, args.data)))
