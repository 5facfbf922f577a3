"""DuckDB SQL on the same Parquet files: the single-node ceiling.

The timer covers connecting, the query with ``ctx.parallelism`` threads and fetching the answer as a DataFrame.
"""

from __future__ import annotations

from benchmarks.common import Context, Result, duckdb_answer, timed


def run(ctx: Context) -> Result:
    seconds, answer = timed(lambda: duckdb_answer(ctx, threads=ctx.parallelism))
    return Result(seconds, answer)
