"""Check a babelmr TPCx-BB Q1 result against the query in DuckDB SQL on the same Parquet files.

    python check.py RESULT.parquet... [--data DATA_DIR] [--min-count N]

The threshold is --min-count, else the environment variable Q1_MIN_COUNT, else 50: give the value the
job's `count` stage ran with. Rows and their order (cnt desc, item_sk_1, item_sk_2) must match exactly.
"""

from __future__ import annotations

import os
import sys

import duckdb
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
MIN_COUNT = int(os.environ.get("Q1_MIN_COUNT", "50"))
sys.path.insert(0, os.path.dirname(HERE))
from _support import assert_same_rows, check_arguments, read_results, run_check  # noqa: E402

Q1 = """
WITH baskets AS (
    SELECT DISTINCT ss_ticket_number, ss_item_sk
    FROM read_parquet($store_sales) s JOIN read_parquet($item) i ON s.ss_item_sk = i.i_item_sk
    WHERE i.i_category_id IN (1, 2, 3) AND s.ss_store_sk IN (10, 20, 33, 40, 50)
)
SELECT a.ss_item_sk AS item_sk_1, b.ss_item_sk AS item_sk_2, count(*) AS cnt
FROM baskets a JOIN baskets b ON a.ss_ticket_number = b.ss_ticket_number AND a.ss_item_sk < b.ss_item_sk
GROUP BY item_sk_1, item_sk_2
HAVING count(*) >= $min_count
ORDER BY cnt DESC, item_sk_1, item_sk_2
LIMIT 100
"""


def expected(data: str = DATA, min_count: int = MIN_COUNT) -> pd.DataFrame:
    """Q1 over `data`/store_sales/*.parquet and `data`/item/*.parquet, computed by DuckDB."""
    files = {table: os.path.join(data, table, "*.parquet") for table in ("store_sales", "item")}
    return duckdb.execute(Q1, {**files, "min_count": min_count}).df()


def compare(result_files: list[str], data: str = DATA, min_count: int = MIN_COUNT) -> None:
    """Raise AssertionError with a readable diff when the result files do not hold Q1's answer in order."""
    got, want = read_results(result_files), expected(data, min_count)
    assert_same_rows(got, want, key=["item_sk_1", "item_sk_2"])
    if not got.reset_index(drop=True).equals(want.reset_index(drop=True)):
        raise AssertionError("the rows are right but not in the order cnt desc, item_sk_1, item_sk_2:\n"
                             + got.head(10).to_string(index=False))


if __name__ == "__main__":
    parser = check_arguments(__doc__, DATA)
    parser.add_argument("--min-count", type=int, default=MIN_COUNT, help=f"threshold (default {MIN_COUNT})")
    args = parser.parse_args()
    sys.exit(run_check(lambda: compare(args.results, args.data, args.min_count)))
