"""The issue's targets, each checked against this run's numbers: met, missed, or not measured."""

from __future__ import annotations

from typing import Any

BASELINE = "babelmr (local, Python)"
# The honest babelmr configurations a target may pick the best of: the same programs and job, cold or warm.
LOCAL = ("babelmr (local, Python)", "babelmr (local, Python, warm)")
S3 = ("babelmr (S3)", "babelmr (S3, warm)")
DUCKDB_PROGRAMS = ("babelmr (local, DuckDB programs)", "babelmr (local, DuckDB programs, warm)")


def best(medians: dict, labels: tuple[str, ...], query: str, sf: float) -> tuple[str, float | None]:
    """The fastest of ``labels`` (label, median seconds) for ``query`` at ``sf``; (labels[0], None) if none ran."""
    ran = [(medians[(v, query, sf)], v) for v in labels if medians.get((v, query, sf))]
    if not ran:
        return labels[0], None
    seconds, label = min(ran)
    return label, seconds


def _mark(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[ok]


def _throughput(row: dict[str, Any]) -> float | None:
    for key in ("mb_per_s", "rows_per_s"):
        if isinstance(row.get(key), int | float):
            return float(row[key])
    return None


def engine_share(tasks: list[dict[str, Any]]) -> float:
    """The engine's part of task time: everything in a task but the user's program."""
    total = sum(t["end"] - t["start"] for t in tasks)
    program = sum(t["program"] for t in tasks)
    return (total - program) / total if total else 0.0


def targets(medians: dict, runs: list[dict[str, Any]], micro: list[dict[str, Any]], sfs: list[float]) -> list[str]:
    """Markdown rows: target, measured, verdict."""
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    sf = max(sfs)
    for query, title in (("tpch-q1", "TPC-H Q1"), ("bigbench-q1", "TPCx-BB Q1")):
        which, ours = best(medians, LOCAL, query, sf)
        peers = [("hand-written (pandas/pyarrow)", "hand-written", 1.0), ("PySpark local[2]", "PySpark local[2]", 1.5)]
        if query == "tpch-q1":
            peers.append(("Lithops localhost", "Lithops localhost", 1.0))
        for peer, short, factor in peers:
            theirs = medians.get((peer, query, sf))
            goal = "at least as fast as" if factor == 1.0 else f"≥ {factor:g}× faster than"
            if ours and theirs:
                measured = (f"{which} {ours:.2f} s, {short} {theirs:.2f} s: babelmr {theirs / ours:.2f}× as fast"
                            f" (best of {len(LOCAL)} local configurations)")
            else:
                measured = "—"
            ok = None if not (ours and theirs) else theirs / ours >= factor
            rows.append(f"| babelmr {title} at SF {sf:g} (local) {goal} {short} | {measured} | {_mark(ok)} |")
    timeline = [r for r in runs if r["variant"] == BASELINE and r["query"] == "tpch-q1" and r["sf"] == sf]
    if timeline:
        share = engine_share(timeline[-1]["tasks"])
        rows.append(f"| engine ≤ 25 % of task time (TPC-H Q1, SF {sf:g}) | {share:.0%} | {_mark(share <= 0.25)} |")
    by_case: dict[tuple[str, str], dict[str, float]] = {}
    for r in micro:
        value = _throughput(r)
        if r.get("block") in ("import", "repartition", "export") and value is not None:
            by_case.setdefault((r["block"], r.get("case", "")), {})[str(r.get("variant", ""))] = value
    for (block, case), values in by_case.items():
        ours_v = next((v for k, v in values.items() if k.startswith("babelmr")), None)
        hand = next((v for k, v in values.items() if k.startswith("hand")), None)
        raw = next((v for k, v in values.items() if k.startswith("raw")), None)
        if ours_v and hand:
            rows.append(f"| {block} ({case}) ≥ 3× hand-written | {ours_v / hand:.2f}× | {_mark(ours_v / hand >= 3)} |")
        if ours_v and raw:
            rows.append(f"| {block} ({case}) ≥ 0.8× raw pyarrow | {ours_v / raw:.2f}× | {_mark(ours_v / raw >= 0.8)} |")
    rows += _new_targets(medians, micro, sf)
    for r in micro:
        if r.get("block") == "task overhead" and r.get("variant") == "local" and "tasks_per_s" in r:
            rate = float(r["tasks_per_s"])
            rows.append(f"| ≥ 50 no-op tasks/s on the local backend | {rate:.1f} tasks/s | {_mark(rate >= 50)} |")
        if r.get("block") == "program start-up" and "target" in r:
            ms = float(r["warm_program_ms"])
            rows.append(f"| warm Python program start ≤ 10 ms per task | {ms:.1f} ms | {_mark(ms <= 10)} |")
        if r.get("block") == "peak RSS" and "engine_peak_rss_mb" in r:
            mb = float(r["engine_peak_rss_mb"])
            rows.append(f"| engine peak RSS ≤ 512 MB ({r.get('case', '')}) | {mb:.0f} MB | {_mark(mb <= 512)} |")
    return rows


def _ratio_row(target: str, ours: float | None, theirs: float | None, limit: float, ours_name: str,
               theirs_name: str) -> str:
    """A row for 'ours within ``limit`` times theirs' (seconds: lower is better)."""
    if not (ours and theirs):
        return f"| {target} | — | {_mark(None)} |"
    return (f"| {target} | {ours_name} {ours:.2f} s, {theirs_name} {theirs:.2f} s: {ours / theirs:.2f}× | "
            f"{_mark(ours / theirs <= limit)} |")


def _new_targets(medians: dict, micro: list[dict[str, Any]], sf: float) -> list[str]:
    """Issue 10's targets: S3 fan-in, reduce tasks against the partition count, DuckDB programs."""
    rows = []
    which, s3 = best(medians, S3, "tpch-q1", sf)
    hand = medians.get(("hand-written (S3)", "tpch-q1", sf))
    measured = f"{which} {s3:.2f} s, hand-written {hand:.2f} s: speed-up {hand / s3:.2f}×" if s3 and hand else "—"
    from benchmarks.variants.s3 import map_tasks

    rows.append(f"| on S3 with {map_tasks(sf)} map tasks (TPC-H Q1, SF {sf:g}) ≥ 2× faster than hand-written | "
                f"{measured} | "
                f"{_mark(None if not (s3 and hand) else hand / s3 >= 2)} |")
    reduce = {r["partitions"]: r["task_ms"] for r in micro if r.get("block") == "reduce task"}
    if reduce:
        few, many = min(reduce), max(reduce)
        q = reduce[many] / reduce[few]
        rows.append(f"| reduce task at {many:,} partitions ≤ 1.5× the {few}-partition time | {reduce[many]:.1f} ms vs "
                    f"{reduce[few]:.1f} ms: {q:.2f}× | {_mark(q <= 1.5 if many >= 1000 else None)} |")
    which, ours = best(medians, DUCKDB_PROGRAMS, "tpch-q1", sf)
    rows.append(_ratio_row(f"babelmr running DuckDB programs within 1.5× of DuckDB alone (TPC-H Q1, SF {sf:g})",
                           ours, medians.get(("DuckDB SQL", "tpch-q1", sf)), 1.5, which, "DuckDB"))
    return rows
