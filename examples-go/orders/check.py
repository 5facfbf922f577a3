"""Check the Go per-order summaries against DuckDB's GROUP BY over the same lineitem files.

    python check.py RESULT.parquet... [--data DATA_DIR_OR_GLOB]

Every column must match exactly (the quantity is a decimal, the rest integers and dates). Rows are matched
on l_orderkey, so their order across result files does not matter.
"""

from __future__ import annotations

import os
import sys

import duckdb
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples-python"))
from _support import assert_same_rows, check_arguments, read_results, run_check  # noqa: E402

SQL = """
SELECT
    l_orderkey,
    count(*) AS lines,
    sum(l_quantity) AS quantity,
    min(l_shipdate) AS first_ship,
    max(l_shipdate) AS last_ship,
    first(l_linenumber ORDER BY l_shipdate, l_linenumber) AS first_line
FROM read_parquet($files)
GROUP BY l_orderkey
"""


def expected(data: str = DATA) -> pd.DataFrame:
    """The summaries over the lineitem Parquet files in `data` (the prepared folder, a lineitem folder or a glob)."""
    if os.path.isdir(os.path.join(data, "lineitem")):
        data = os.path.join(data, "lineitem")
    files = os.path.join(data, "*.parquet") if os.path.isdir(data) else data
    frame = duckdb.connect().sql(SQL, params={"files": files}).df()
    return frame.astype({"lines": "int64", "first_line": "int64"})


def compare(result_files: list[str], data: str = DATA) -> None:
    """Raise AssertionError with a readable diff when the result files do not hold the summaries."""
    got = read_results(result_files)
    want = expected(data)
    assert_same_rows(got.astype({c: want[c].dtype for c in want.columns if c != "quantity"}), want,
                     key=["l_orderkey"])


if __name__ == "__main__":
    args = check_arguments(__doc__, DATA).parse_args()
    sys.exit(run_check(lambda: compare(args.results, args.data)))
