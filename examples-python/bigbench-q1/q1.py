"""TPCx-BB Q1 on babelmr: the top 100 pairs of items sold together in given stores and categories.

join:  a share of store_sales joined with the whole item table -> (ss_ticket_number, ss_item_sk) of the
       sales in stores 10, 20, 33, 40, 50 of items in categories 1, 2, 3;
pairs: all lines of some tickets -> every pair of distinct items of a ticket (item_sk_1 < item_sk_2),
       counted (cnt) per pair;
count: all counts of some pairs -> the total per pair, kept when >= Q1_MIN_COUNT (default 50), the
       top 100 by cnt desc, item_sk_1, item_sk_2.
"""

import json
import os
import sys

import pandas as pd

CATEGORIES = [1, 2, 3]
STORES = [10, 20, 33, 40, 50]
MIN_COUNT = int(os.environ.get("Q1_MIN_COUNT", "50"))


def read(name: str | None = None) -> pd.DataFrame:
    """The stage's only input, or the input `name` of several."""
    if name is None:
        return pd.read_parquet(os.environ.get("MR_INPUT", "in.parquet"))
    inputs = json.loads(os.environ.get("MR_INPUTS", "{}"))
    return pd.read_parquet(inputs.get(name, f"in_{name}.parquet"))


def join() -> pd.DataFrame:
    sales, item = read("store_sales"), read("item")
    sales = sales[sales.ss_store_sk.isin(STORES)]
    item = item[item.i_category_id.isin(CATEGORIES)]
    sold = sales.merge(item, left_on="ss_item_sk", right_on="i_item_sk")
    return sold[["ss_ticket_number", "ss_item_sk"]].drop_duplicates()


def pairs() -> pd.DataFrame:
    baskets = read().drop_duplicates().rename(columns={"ss_item_sk": "item_sk"})
    both = baskets.merge(baskets, on="ss_ticket_number", suffixes=("_1", "_2"))
    both = both[both.item_sk_1 < both.item_sk_2]
    return both.groupby(["item_sk_1", "item_sk_2"]).size().reset_index(name="cnt")


def count() -> pd.DataFrame:
    totals = read().groupby(["item_sk_1", "item_sk_2"], as_index=False)["cnt"].sum()
    frequent = totals[totals.cnt >= MIN_COUNT]
    return frequent.sort_values(["cnt", "item_sk_1", "item_sk_2"], ascending=[False, True, True]).head(100)


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
    steps = {"join": join, "pairs": pairs, "count": count}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(steps)}")

    def run() -> None:
        steps[sys.argv[1]]().to_parquet(os.environ.get("MR_OUTPUT", "out.parquet"), index=False)

    if os.environ.get("MR_WARM"):
        serve(run)  # started once per worker: tasks arrive on fd $MR_WARM_IN
    else:
        run()
