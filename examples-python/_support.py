"""What the examples' prepare.py and check.py share. The babelmr programs themselves need none of it."""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

MARKER = ".prepared.json"


def prepare_once(data: str, params: dict[str, Any], build: Callable[[str], None],
                 force: bool = False) -> bool:
    """Make the folder `data` with `build(folder)` unless it already holds data made with the same params.

    `build` writes into a scratch folder that replaces `data` only once complete, so an interrupted run
    never leaves half a data set behind. Returns False when the data was already there.
    """
    marker = os.path.join(data, MARKER)
    if not force and os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == params:
                print(f"{data}: already prepared with {params}; --force makes it again")
                return False
    partial = data.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    build(partial)
    with open(os.path.join(partial, MARKER), "w") as f:
        json.dump(params, f)
    shutil.rmtree(data, ignore_errors=True)
    os.replace(partial, data)
    return True


def prepare_lineitem(data: str, sf: float, parts: int, force: bool = False) -> None:
    """Write TPC-H lineitem at scale factor `sf` as `parts` Parquet files into `data`/lineitem/ (tpchgen-cli)."""
    tpchgen = shutil.which("tpchgen-cli")
    if tpchgen is None:
        sys.exit("tpchgen-cli not found: pip install tpchgen-cli")

    def build(folder: str) -> None:
        subprocess.run([tpchgen, "parquet", "--scale-factor", str(sf), "--tables", "lineitem",
                        "--parts", str(parts), "--output-dir", folder, "--quiet"], check=True)

    if prepare_once(data, {"sf": sf, "parts": parts}, build, force):
        size = folder_size(data) / 1e6
        print(f"{data}: lineitem at scale factor {sf:g} in {parts} Parquet files, {size:.0f} MB")


def lineitem_main(doc: str, here: str, default_sf: float) -> None:
    """The command line of an example whose input is lineitem: --sf, --parts, --data, --force."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--sf", type=float, default=default_sf,
                        help=f"TPC-H scale factor (default {default_sf:g}: {default_sf * 6:g} M rows)")
    parser.add_argument("--parts", type=int, default=4, help="number of Parquet files (default 4)")
    parser.add_argument("--data", default=os.path.join(here, "data"), help="output folder (default ./data)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the data is there")
    args = parser.parse_args()
    prepare_lineitem(args.data, args.sf, args.parts, args.force)


def folder_size(path: str) -> int:
    """Bytes in all files below `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def result_files(paths: Iterable[str]) -> list[str]:
    """The result Parquet files named, in the order given; a folder stands for its *.parquet files in name order."""
    files: list[str] = []
    for path in paths:
        files += sorted(glob.glob(os.path.join(path, "*.parquet"))) if os.path.isdir(path) else [path]
    if not files:
        raise AssertionError("no result files given")
    return files


def read_results(paths: Iterable[str]) -> pd.DataFrame:
    """All rows of babelmr result Parquet files; a folder stands for the *.parquet files in it."""
    return pd.concat([pd.read_parquet(f) for f in result_files(paths)], ignore_index=True)


def _rows(title: str, frame: pd.DataFrame, limit: int) -> str:
    more = f" (first {limit})" if len(frame) > limit else ""
    return f"{title}{more}:\n{frame.head(limit).to_string(index=False, float_format='{:.17g}'.format)}"


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, key: list[str], rtol: float = 0.0,
                     limit: int = 10) -> None:
    """Raise AssertionError listing how `got` differs from `want`, rows matched on the `key` columns.

    Float columns may differ by the relative tolerance `rtol`; everything else must be equal.
    """
    if list(got.columns) != list(want.columns):
        raise AssertionError(f"columns differ: got {list(got.columns)}, expected {list(want.columns)}")
    problems = []
    duplicated = got[got.duplicated(key, keep=False)]
    if len(duplicated):
        title = (f"{len(duplicated)} result row(s) share their key {key} with another row "
                 "(the rows of one key were not brought together)")
        problems.append(_rows(title, duplicated.sort_values(key), limit))
    merged = got.drop_duplicates(key).merge(want, on=key, how="outer", suffixes=("", " expected"),
                                            indicator=True)
    for side, what in (("right_only", "missing from the result"), ("left_only", "not expected")):
        rows = merged.loc[merged["_merge"] == side, key]
        if len(rows):
            problems.append(_rows(f"{len(rows)} row(s) {what}", rows, limit))
    both = merged[merged["_merge"] == "both"]
    for column in [c for c in want.columns if c not in key]:
        g, w = both[column], both[f"{column} expected"]
        floats = pd.api.types.is_float_dtype(w) or pd.api.types.is_float_dtype(g)
        if floats:
            bad = ~np.isclose(g.astype(float), w.astype(float), rtol=rtol, atol=0.0, equal_nan=True)
        else:
            bad = (g != w).to_numpy()
        if bad.any():
            rows = both.loc[bad, [*key, column, f"{column} expected"]]
            rows = rows.astype({column: got[column].dtype, f"{column} expected": want[column].dtype})
            tolerance = f" (relative tolerance {rtol:g})" if floats and rtol else ""
            problems.append(_rows(f"{int(bad.sum())} row(s) differ in {column!r}{tolerance}", rows, limit))
    if problems:
        summary = f"result differs from the DuckDB answer ({len(got)} rows, {len(want)} expected)"
        raise AssertionError("\n\n".join([summary, *problems]))


def check_arguments(doc: str, data: str) -> argparse.ArgumentParser:
    """The command line every check.py takes: result files, then where the input data is."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="result Parquet files (or folders) that babelmr printed")
    parser.add_argument("--data", default=data, help=f"the job's input data (default {data})")
    return parser


def run_check(compare: Callable[[], None]) -> int:
    """Run `compare()` and report: exit code 0 when it passes, 1 with the differences when it fails."""
    try:
        compare()
    except AssertionError as e:
        print(f"MISMATCH: {e}")
        return 1
    print("OK: the result matches DuckDB")
    return 0
