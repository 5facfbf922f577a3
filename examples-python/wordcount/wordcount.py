"""Word count on babelmr.

map:     reads lines of text (CSV column `line`) in chunks of WORDCOUNT_CHUNK_LINES lines (constant memory)
         and writes how often each word occurs in each chunk;
combine: (the map stage's combiner) adds up the map's counts per word, so a word leaves a map task once;
reduce:  gets every partial count of its words and writes the totals.
All read and write CSV with the columns `word,count`.
"""

import os

import pandas as pd

from babelmr import helper

CHUNK_LINES = int(os.environ.get("WORDCOUNT_CHUNK_LINES", "10000"))


def read_csv(**kwargs) -> pd.DataFrame:
    # keep_default_na=False: "null", "none" or "nan" in the text are words, not missing values
    return pd.read_csv(helper.input_path(), keep_default_na=False, **kwargs)


def map_lines() -> None:
    with open(helper.output_path(), "w") as out:
        out.write("word,count\n")
        for chunk in read_csv(usecols=["line"], dtype=str, chunksize=CHUNK_LINES):
            words = chunk["line"].str.lower().str.findall(r"[a-z]+").explode().dropna()
            words.value_counts().rename_axis("word").reset_index(name="count").to_csv(out, index=False, header=False)


def reduce_counts() -> pd.DataFrame:
    counts = read_csv(dtype={"word": str, "count": "int64"})
    return counts.groupby("word", as_index=False)["count"].sum()


if __name__ == "__main__":
    helper.run({"map": map_lines, "combine": reduce_counts, "reduce": reduce_counts})
