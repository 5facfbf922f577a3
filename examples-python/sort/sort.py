"""Total-order sort on babelmr: the program is the identity; babelmr partitions by range and sorts.

    map:    writes its share of lineitem as it is; babelmr puts each row into the partition of its
            (l_shipdate, l_orderkey) range (the job's "partitioner": "range").
    sort:   writes its partition as babelmr hands it over: sorted by (l_shipdate, l_orderkey, l_linenumber)
            (the job's "sort"). Part i of the result orders before part i+1.

Both read in.parquet (MR_INPUT) and write out.parquet (MR_OUTPUT); the file is copied, never loaded.
"""

from __future__ import annotations

import os
import shutil
import sys


def main() -> None:
    mode = sys.argv[-1] if len(sys.argv) > 1 else os.environ.get("MR_MODE", "")
    if mode not in ("map", "sort"):
        sys.exit(f"usage: {sys.argv[0]} map|sort")
    shutil.copyfile(os.environ.get("MR_INPUT", "in.parquet"), os.environ.get("MR_OUTPUT", "out.parquet"))


if __name__ == "__main__":
    main()
