"""The hand-written ("All Custom") programs of benchmarks/handwritten/, run in this process through their main().

Fairness: the programs' modules (pandas, pyarrow, boto3) are imported before the timer, as every variant's are;
the timer covers the whole of main(): listing the input, starting the worker processes (a multiprocessing pool
of ctx.parallelism processes, forked as Linux's default is), the map and reduce stages with their shuffle files
in ctx.work, and reading the reducers' results back into the answer. Shuffles use ctx.parallelism partitions.
"""

from __future__ import annotations

from benchmarks.common import Context, Result, timed
from benchmarks.handwritten import bigbench_q1, tpch_q1


def run(ctx: Context) -> Result:
    argv = ["--work", str(ctx.work / "handwritten"), "--parallelism", str(ctx.parallelism)]
    if ctx.query == "tpch-q1":
        argv += ["--input", ctx.inputs()["lineitem"]]
        seconds, answer = timed(lambda: tpch_q1.main(argv))
    else:
        argv += ["--input", str(ctx.data), "--min-count", str(ctx.min_count)]
        seconds, answer = timed(lambda: bigbench_q1.main(argv))
    return Result(seconds, answer)
