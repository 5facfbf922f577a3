"""Check a babelmr word count against the same count in DuckDB SQL.

    python check.py RESULT.parquet... [--data DATA_DIR_OR_GLOB]

A word is a run of the letters a-z after lower-casing, as in wordcount.py.
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

SQL = """
SELECT word, count(*) AS count
FROM (SELECT unnest(regexp_extract_all(lower(line), '[a-z]+')) AS word
      FROM read_csv($files, header = true, delim = ',', quote = '"', escape = '"',
                    columns = {'line': 'VARCHAR'}))
GROUP BY word
ORDER BY word
"""


def expected(data: str = DATA) -> pd.DataFrame:
    """The word counts of the CSV files in `data` (a folder or a glob), computed by DuckDB."""
    files = os.path.join(data, "*.csv") if os.path.isdir(data) else data
    return duckdb.execute(SQL, {"files": files}).df()


def compare(result_files: list[str], data: str = DATA) -> None:
    """Raise AssertionError with a readable diff when the result files do not hold the expected counts."""
    assert_same_rows(read_results(result_files), expected(data), key=["word"])


if __name__ == "__main__":
    args = check_arguments(__doc__, DATA).parse_args()
    sys.exit(run_check(lambda: compare(args.results, args.data)))
