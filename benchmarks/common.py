"""What every benchmark variant shares: its context, its result, and the queries' reference answers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ("tpch-q1", "bigbench-q1")
BIGBENCH_MIN_COUNT = 50


@dataclass(frozen=True)
class Context:
    """One variant run: the query's data at one scale factor and a scratch folder of its own."""

    query: str
    sf: float
    data: Path  # tpch-q1: data/lineitem/*.parquet; bigbench-q1: data/store_sales/, data/item/
    work: Path
    parallelism: int = os.cpu_count() or 2
    min_count: int = BIGBENCH_MIN_COUNT

    def inputs(self) -> dict[str, str]:
        """The query's input globs."""
        if self.query == "tpch-q1":
            return {"lineitem": f"{self.data}/lineitem/*.parquet"}
        return {"store_sales": f"{self.data}/store_sales/*.parquet", "item": f"{self.data}/item/*.parquet"}


@dataclass
class Result:
    """What a variant reports: wall seconds, its answer (checked against DuckDB) and optional details."""

    seconds: float
    answer: pd.DataFrame
    engine: dict[str, float] = field(default_factory=dict)  # babelmr: import/program/export seconds
    tasks: list[dict[str, Any]] = field(default_factory=list)  # babelmr: per-task timeline
    peak_rss_bytes: int = 0


Variant = Callable[[Context], Result]


def timed(fn: Callable[[], pd.DataFrame]) -> tuple[float, pd.DataFrame]:
    """Wall seconds of ``fn`` and what it returned."""
    start = time.perf_counter()
    answer = fn()
    return time.perf_counter() - start, answer


TPCH_Q1 = """
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc,
       count(*) AS count_order
FROM read_parquet($lineitem)
WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL '90' DAY
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus
"""

BIGBENCH_Q1 = """
WITH baskets AS (
    SELECT DISTINCT s.ss_ticket_number, s.ss_item_sk
    FROM read_parquet($store_sales) s JOIN read_parquet($item) i ON s.ss_item_sk = i.i_item_sk
    WHERE i.i_category_id IN (1, 2, 3) AND s.ss_store_sk IN (10, 20, 33, 40, 50)
)
SELECT a.ss_item_sk AS item_sk_1, b.ss_item_sk AS item_sk_2, count(*) AS cnt
FROM baskets a JOIN baskets b ON a.ss_ticket_number = b.ss_ticket_number AND a.ss_item_sk < b.ss_item_sk
GROUP BY 1, 2
HAVING count(*) >= $min_count
ORDER BY cnt DESC, item_sk_1, item_sk_2
LIMIT 100
"""


def duckdb_answer(ctx: Context, threads: int | None = None) -> pd.DataFrame:
    """The query's answer from DuckDB SQL: the reference every variant is checked against."""
    con = duckdb.connect()
    con.execute(f"SET threads = {threads or ctx.parallelism}")
    params: dict[str, Any] = dict(ctx.inputs())
    sql = TPCH_Q1
    if ctx.query == "bigbench-q1":
        sql, params["min_count"] = BIGBENCH_Q1, ctx.min_count
    return con.execute(sql, params).fetchdf()


def same_answer(got: pd.DataFrame, want: pd.DataFrame, query: str) -> None:
    """Raise AssertionError unless ``got`` is ``want`` (floats to a relative 1e-9)."""
    sort = ["l_returnflag", "l_linestatus"] if query == "tpch-q1" else ["cnt", "item_sk_1", "item_sk_2"]
    asc = [True, True] if query == "tpch-q1" else [False, True, True]
    g = got[list(want.columns)].sort_values(sort, ascending=asc).reset_index(drop=True)
    w = want.sort_values(sort, ascending=asc).reset_index(drop=True)
    assert len(g) == len(w), f"{len(g)} rows, expected {len(w)}"
    for col in w.columns:
        if pd.api.types.is_numeric_dtype(w[col]) or (w[col].dtype == object and query == "tpch-q1" and col not in sort):
            gv, wv = g[col].astype(float).to_numpy(), w[col].astype(float).to_numpy()
            assert (abs(gv - wv) <= 1e-9 * abs(wv) + 1e-12).all(), f"column {col} differs:\n{g[col]}\n{w[col]}"
        else:
            assert list(g[col].astype(str)) == list(w[col].astype(str)), f"column {col} differs"
