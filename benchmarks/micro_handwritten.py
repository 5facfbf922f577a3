"""The hand-written counterparts of babelmr's building blocks: what a competent engineer writes with
pandas and fastparquet when doing the import, repartition and export steps of a MapReduce job by hand.

Kept in a module of its own so that its code is visibly plain pandas/fastparquet, with no babelmr in it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fastparquet
import numpy as np
import pandas as pd

READ_THREADS = 4  # the same number of files decoded at once as babelmr's importer (BABELMR_DECODE_THREADS)


def read_files(files: Sequence[Path], columns: list[str] | None, row_groups: list[int] | None) -> pd.DataFrame:
    """The selected columns (and row groups) of many Parquet files, read in parallel, as one DataFrame."""

    def read(path: Path) -> pd.DataFrame:
        pf = fastparquet.ParquetFile(str(path))
        if row_groups is None:
            return pf.to_pandas(columns=columns)
        return pd.concat([pf[g].to_pandas(columns=columns) for g in row_groups], ignore_index=True)

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        frames = list(pool.map(read, files))
    return pd.concat(frames, ignore_index=True)


def import_files(files: Sequence[Path], columns: list[str] | None, row_groups: list[int] | None, out: Path) -> None:
    """Read the selected part of ``files`` and write it as one local Parquet file for the program (uncompressed:
    fastparquet's default, and what babelmr writes for the program)."""
    fastparquet.write(str(out), read_files(files, columns, row_groups), write_index=False)


def partition_of_rows(df: pd.DataFrame, key: list[str], partitions: int) -> np.ndarray:
    """The partition of each row: pandas' own row hash of the key columns, modulo ``partitions``."""
    return (pd.util.hash_pandas_object(df[key], index=False).to_numpy() % np.uint64(partitions)).astype(np.int64)


def repartition(df: pd.DataFrame, key: list[str], partitions: int) -> dict[int, pd.DataFrame]:
    """The rows of ``df`` grouped into one DataFrame per (non-empty) partition."""
    ids = partition_of_rows(df, key, partitions)
    return {int(p): group for p, group in df.groupby(ids, sort=True)}


def export(df: pd.DataFrame, key: list[str], partitions: int, out: Path) -> None:
    """One Parquet file for the mapper's output, one row group per partition, the index in its metadata."""
    ids = partition_of_rows(df, key, partitions)
    ordered = df.take(np.argsort(ids, kind="stable"))
    counts = np.bincount(ids, minlength=partitions)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts)
    index = {"partitions": partitions, "row_groups": {int(p): i for i, p in enumerate(present)},
             "rows": counts.tolist()}
    fastparquet.write(str(out), ordered, row_group_offsets=[int(s) for s in starts[present]], compression="SNAPPY",
                      write_index=False, custom_metadata={"partitions": json.dumps(index)})
