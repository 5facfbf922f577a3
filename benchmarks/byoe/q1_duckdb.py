"""TPC-H Q1 with DuckDB as the program's engine ("bring your own engine"): SQL over the task's in.parquet.

map:    the items shipped by 1998-09-02, summed per (l_returnflag, l_linestatus);
reduce: the partial sums added up, the averages derived, sorted by the two flags.
"""

import json
import os
import sys

import duckdb

MAP = """
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       sum(l_discount) AS sum_disc, count(*) AS count_order
FROM read_parquet($input)
WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL '90' DAY
GROUP BY l_returnflag, l_linestatus
"""

REDUCE = """
SELECT l_returnflag, l_linestatus,
       sum(sum_qty) AS sum_qty, sum(sum_base_price) AS sum_base_price,
       sum(sum_disc_price) AS sum_disc_price, sum(sum_charge) AS sum_charge,
       sum(sum_qty) / sum(count_order) AS avg_qty, sum(sum_base_price) / sum(count_order) AS avg_price,
       sum(sum_disc) / sum(count_order) AS avg_disc, sum(count_order)::BIGINT AS count_order
FROM read_parquet($input)
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus
"""



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
    steps = {"map": MAP, "reduce": REDUCE}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(steps)}")
    con = duckdb.connect()  # one connection: a warm program reuses it for every task

    def run() -> None:
        # the output's path is SQL text, not a parameter, in COPY: quote it
        target = os.environ.get("MR_OUTPUT", "out.parquet").replace("'", "''")
        con.execute(f"COPY ({steps[sys.argv[1]]}) TO '{target}' (FORMAT parquet)",
                    {"input": os.environ.get("MR_INPUT", "in.parquet")})

    if os.environ.get("MR_WARM"):
        serve(run)  # started once per worker: tasks arrive on fd $MR_WARM_IN
    else:
        run()
