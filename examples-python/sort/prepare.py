"""Generate TPC-H lineitem as Parquet with tpchgen-cli: data/lineitem/lineitem.<part>.parquet.

The data is kept (skipped next time) unless --force is given or the parameters change.

    python prepare.py [--sf 0.1] [--parts 4] [--data DIR] [--force]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from _support import folder_size, prepare_once  # noqa: E402


def prepare(data: str, sf: float, parts: int, force: bool = False) -> None:
    """Write lineitem at scale factor `sf` as `parts` Parquet files into `data`/lineitem/."""
    tpchgen = shutil.which("tpchgen-cli")
    if tpchgen is None:
        sys.exit("tpchgen-cli not found: pip install tpchgen-cli")

    def build(folder: str) -> None:
        subprocess.run([tpchgen, "parquet", "--scale-factor", str(sf), "--tables", "lineitem",
                        "--parts", str(parts), "--output-dir", folder, "--quiet"], check=True)

    if prepare_once(data, {"sf": sf, "parts": parts}, build, force):
        size = folder_size(data) / 1e6
        print(f"{data}: lineitem at scale factor {sf:g} in {parts} Parquet files, {size:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (default 0.1: 600 k rows)")
    parser.add_argument("--parts", type=int, default=4, help="number of Parquet files (default 4)")
    parser.add_argument("--data", default=os.path.join(HERE, "data"), help="output folder (default ./data)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the data is there")
    args = parser.parse_args()
    prepare(args.data, args.sf, args.parts, args.force)


if __name__ == "__main__":
    main()
