"""Generate the sort example's input, TPC-H lineitem, as the Q1 example does: data/lineitem/*.parquet.

The data is kept (skipped next time) unless --force is given or the parameters change.

    python prepare.py [--sf 0.1] [--parts 4] [--data DIR] [--force]
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from _support import lineitem_main, prepare_lineitem  # noqa: E402

prepare = prepare_lineitem  # prepare(data, sf, parts, force=False), as the tests and benchmarks call it

if __name__ == "__main__":
    lineitem_main(__doc__, HERE, default_sf=0.1)
