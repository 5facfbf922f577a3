"""Word count on babelmr.

map:    reads lines of text (CSV column `line`) and writes how often each word occurs in them;
reduce: gets every partial count of its words and writes the totals.
Both read and write CSV with the columns `word,count`.
"""

import os
import sys

import pandas as pd

INPUT = os.environ.get("MR_INPUT", "in.csv")
OUTPUT = os.environ.get("MR_OUTPUT", "out.csv")


def read_csv(**kwargs) -> pd.DataFrame:
    # keep_default_na=False: "null", "none" or "nan" in the text are words, not missing values
    return pd.read_csv(INPUT, keep_default_na=False, **kwargs)


def map_lines() -> pd.DataFrame:
    lines = read_csv(usecols=["line"], dtype=str)["line"]
    words = lines.str.lower().str.findall(r"[a-z]+").explode().dropna()
    return words.value_counts().rename_axis("word").reset_index(name="count")


def reduce_counts() -> pd.DataFrame:
    counts = read_csv(dtype={"word": str, "count": "int64"})
    return counts.groupby("word", as_index=False)["count"].sum()


if __name__ == "__main__":
    steps = {"map": map_lines, "reduce": reduce_counts}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(steps)}")
    steps[sys.argv[1]]().to_csv(OUTPUT, index=False)
