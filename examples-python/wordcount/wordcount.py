"""Word count on babelmr.

map:     reads lines of text (CSV column `line`) in chunks of WORDCOUNT_CHUNK_LINES lines (constant memory)
         and writes how often each word occurs in each chunk;
combine: (the map stage's combiner) adds up the map's counts per word, so a word leaves a map task once;
reduce:  gets every partial count of its words and writes the totals.
All read and write CSV with the columns `word,count`.
"""

import json
import os
import sys

import pandas as pd

CHUNK_LINES = int(os.environ.get("WORDCOUNT_CHUNK_LINES", "10000"))


def read_csv(**kwargs) -> pd.DataFrame:
    # keep_default_na=False: "null", "none" or "nan" in the text are words, not missing values
    return pd.read_csv(os.environ.get("MR_INPUT", "in.csv"), keep_default_na=False, **kwargs)


def map_lines() -> None:
    with open(os.environ.get("MR_OUTPUT", "out.csv"), "w") as out:
        out.write("word,count\n")
        for chunk in read_csv(usecols=["line"], dtype=str, chunksize=CHUNK_LINES):
            words = chunk["line"].str.lower().str.findall(r"[a-z]+").explode().dropna()
            words.value_counts().rename_axis("word").reset_index(name="count").to_csv(out, index=False, header=False)


def reduce_counts() -> pd.DataFrame:
    counts = read_csv(dtype={"word": str, "count": "int64"})
    return counts.groupby("word", as_index=False)["count"].sum()


def serve(run) -> None:
    """Warm mode (MR_WARM set): run `run()` per task line read from fd $MR_WARM_IN, answer on fd $MR_WARM_OUT."""
    with open(int(os.environ["MR_WARM_IN"])) as tasks, open(int(os.environ["MR_WARM_OUT"]), "w") as replies:
        for line in tasks:
            task = json.loads(line)  # the task's MR_* variables
            os.environ.update(task)
            os.chdir(task["MR_WORKDIR"])
            try:
                run()
                reply = {"ok": True}
            except Exception as e:
                reply = {"error": f"{type(e).__name__}: {e}"}
            sys.stdout.flush(), sys.stderr.flush()
            print(json.dumps(reply), file=replies, flush=True)


if __name__ == "__main__":
    steps = {"map": map_lines, "combine": reduce_counts, "reduce": reduce_counts}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(steps)}")

    def run() -> None:
        result = steps[sys.argv[1]]()
        if result is not None:  # map writes its output itself, chunk by chunk
            result.to_csv(os.environ.get("MR_OUTPUT", "out.csv"), index=False)

    if os.environ.get("MR_WARM"):
        serve(run)  # started once per worker: tasks arrive on fd $MR_WARM_IN
    else:
        run()
