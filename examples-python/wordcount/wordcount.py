"""Word count on babelmr.

map:    reads lines of text (CSV column `line`) and writes how often each word occurs in them;
reduce: gets every partial count of its words and writes the totals.
Both read and write CSV with the columns `word,count`.
"""

import json
import os
import sys

import pandas as pd


def read_csv(**kwargs) -> pd.DataFrame:
    # keep_default_na=False: "null", "none" or "nan" in the text are words, not missing values
    return pd.read_csv(os.environ.get("MR_INPUT", "in.csv"), keep_default_na=False, **kwargs)


def map_lines() -> pd.DataFrame:
    lines = read_csv(usecols=["line"], dtype=str)["line"]
    words = lines.str.lower().str.findall(r"[a-z]+").explode().dropna()
    return words.value_counts().rename_axis("word").reset_index(name="count")


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
    steps = {"map": map_lines, "reduce": reduce_counts}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(steps)}")

    def run() -> None:
        steps[sys.argv[1]]().to_csv(os.environ.get("MR_OUTPUT", "out.csv"), index=False)

    if os.environ.get("MR_WARM"):
        serve(run)  # started once per worker: tasks arrive on fd $MR_WARM_IN
    else:
        run()
