"""Check a babelmr total-order sort of lineitem against DuckDB's ORDER BY, row for row.

    python check.py PART... [--data DATA_DIR_OR_GLOB]

The parts are read in the order given (part-00000 first; a folder stands for its *.parquet files in name
order) and concatenated; the result must equal `SELECT * FROM lineitem ORDER BY l_shipdate, l_orderkey,
l_linenumber` in every row and column (l_linenumber makes the order total, so there is one right answer).
"""

from __future__ import annotations

import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
sys.path.insert(0, os.path.dirname(HERE))
from _support import check_arguments, result_files, run_check  # noqa: E402

ORDER = "l_shipdate, l_orderkey, l_linenumber"


def expected(data: str = DATA) -> pa.Table:
    """lineitem sorted by DuckDB (`data`: the prepared folder, a lineitem folder or a glob)."""
    if os.path.isdir(os.path.join(data, "lineitem")):
        data = os.path.join(data, "lineitem")
    files = os.path.join(data, "*.parquet") if os.path.isdir(data) else data
    con = duckdb.connect()
    return con.sql(f"SELECT * FROM read_parquet($files) ORDER BY {ORDER}", params={"files": files}).to_arrow_table()


def concatenated(parts: list[str]) -> pa.Table:
    """The parts in the order given, one after another."""
    return pa.concat_tables([pq.read_table(f) for f in result_files(parts)], promote_options="permissive")


def compare(parts: list[str], data: str = DATA) -> None:
    """Raise AssertionError naming the first differing row when the parts are not lineitem in ORDER BY order."""
    got, want = concatenated(parts), expected(data)
    if got.num_rows != want.num_rows:
        raise AssertionError(f"{got.num_rows} rows, {want.num_rows} expected")
    got = got.select(want.column_names).cast(want.schema)
    for name in want.column_names:
        g, w = got[name].combine_chunks(), want[name].combine_chunks()
        if not g.equals(w):
            row = next(i for i in range(len(w)) if g[i] != w[i])
            raise AssertionError(f"row {row} differs in {name!r}: {g[row]} instead of {w[row]}")


if __name__ == "__main__":
    args = check_arguments(__doc__, DATA).parse_args()
    sys.exit(run_check(lambda: compare(args.results, args.data)))
