"""Write docs/benchmarks.md and its plots from one run's results: every number in it comes from that run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import QUERIES, ROOT

# Measured once (commit 1e483f1 built it, bf2a3cd removed it), not a number of this run: said so in the report.
ARROW_DECISION = (
    "`program_format: \"arrow\"` (the program reads an uncompressed, memory-mappable Arrow IPC `in.arrow` and "
    "writes `out.arrow`) was built and measured against Parquet with this benchmark in earlier runs, and was "
    "slower in every one: Python TPC-H Q1 at SF 1 took 5.6 s with Arrow IPC against 4.7 s with Parquet (medians), "
    "and 13.5 s against 12.1 s and 19.4 s against 16.1 s in two runs on a busy machine. "
    "Arrow IPC lost because its import must decode and write out every page that the Parquet import "
    "copies as compressed column chunks, and the program then reads several times more bytes. As the issue asked "
    "(keep it only if it wins), it was removed; Parquet, CSV and JSON Lines remain.")

LANGUAGE_OF = {"Python": "examples-python", "Go": "examples-go", "C#": "examples-csharp"}


def _versions() -> str:
    names = ["babelmr", "pyarrow", "pandas", "fastparquet", "duckdb", "pyspark", "lithops", "docker"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"Python {platform.python_version()}, " + ", ".join(found)


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 2**20
    try:
        engine = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        engine = ""
    return f"{os.cpu_count()} × {cpu}, {mem:.0f} GiB, {platform.system()} {platform.release()}" + (
        f", Docker engine {engine}" if engine else "")


def _lines(variant: str, query: str) -> str:
    from benchmarks.loc import babelmr_lines, count_lines, handwritten_lines, helper_lines

    if variant.startswith("babelmr"):
        if variant.startswith("babelmr (local, DuckDB programs"):  # a Python program through babelmr.helper
            byoe, language = ROOT / "benchmarks" / "byoe", "examples-python"
            counts = {p.name: count_lines(p) for p in (byoe / "q1_duckdb.py", byoe / "job.json")}
        else:
            details = variant.rstrip(")").rsplit("(", 1)[-1].split(", ")  # e.g. "(docker, Go, warm)"
            language = next((LANGUAGE_OF[d] for d in details if d in LANGUAGE_OF), "examples-python")  # S3: Python
            counts = babelmr_lines(language, query)
        (helper, size), = helper_lines(language).items()
        return (f"{sum(counts.values())} ({' + '.join(f'{n} {f}' for f, n in counts.items())}; "
                f"not counted: babelmr's helper {helper}, {size})")
    elif variant.startswith("hand-written"):
        counts = handwritten_lines(query)
    else:
        return "—"
    return f"{sum(counts.values())} ({' + '.join(f'{n} {f}' for f, n in counts.items())})"


def _runtime_plot(medians: dict, sfs: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(QUERIES), figsize=(7 * len(QUERIES), 4.8), squeeze=False)
    for ax, query in zip(axes[0], QUERIES, strict=True):
        variants = sorted({v for v, q, _ in medians if q == query}, key=list(dict.fromkeys(
            v for v, _, _ in medians)).index)
        width = 0.8 / max(1, len(sfs))
        for i, sf in enumerate(sfs):
            values = [medians.get((v, query, sf), 0) for v in variants]
            ax.barh([y + i * width for y in range(len(variants))], values, height=width, label=f"SF {sf:g}")
        ax.set_yticks([y + width * (len(sfs) - 1) / 2 for y in range(len(variants))], variants)
        ax.invert_yaxis()
        ax.set_xlabel("median wall time (s)")
        ax.set_title(query)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _timeline_plot(tasks: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.35 * len(tasks) + 1.5))
    colors = {"import": "#4e79a7", "program": "#f28e2b", "export": "#59a14f", "other": "#bab0ac"}
    for y, t in enumerate(tasks):
        start = t["start"]
        for part in ("import", "program", "export"):
            ax.barh(y, t[part], left=start, color=colors[part])
            start += t[part]
        ax.barh(y, max(0.0, t["end"] - start), left=start, color=colors["other"])
    ax.set_yticks(range(len(tasks)), [f"{t['stage']} {t['task']}" for t in tasks])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title(title)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()],
              labels=["import", "program", "export", "engine (start, commit)"], loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _micro_value(r: dict[str, Any]) -> str:
    if r["block"] in ("import", "export"):
        return f"{r['mb_per_s']:.1f} MB/s"
    if r["block"] == "repartition":
        return f"{r['rows_per_s'] / 1e6:.2f} M rows/s"
    if r["block"] == "task overhead":
        return (f"{r['tasks_per_s']:.1f} tasks/s warm, {r['cold_tasks_per_s']:.1f} cold; median task "
                f"{r['median_task_seconds'] * 1000:.0f} ms")
    if r["block"] == "program start-up":
        verdict = f" (target {r['target']}: {'met' if r['meets_target'] else 'MISSED'})" if "target" in r else ""
        return (f"program cold {r['cold_program_ms']:.1f} ms, warm {r['warm_program_ms']:.1f} ms; task cold "
                f"{r['cold_task_ms']:.1f} ms, warm {r['warm_task_ms']:.1f} ms{verdict}")
    if r["block"] == "reduce task":
        return f"{r['task_ms']:.1f} ms per task (import {r['import_ms']:.1f} ms)"
    return f"{r['engine_peak_rss_mb']:.0f} MB peak RSS"


def _scaling_plot(scaling: dict, path: Path) -> None:
    """Median seconds of TPC-H Q1 against the scale factor, one line per variant (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for variant in dict.fromkeys(v for v, _, _ in scaling):
        points = sorted((sf, s) for (v, _, sf), s in scaling.items() if v == variant)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=variant)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("TPC-H scale factor")
    ax.set_ylabel("median wall time (s)")
    ax.set_title("tpch-q1: scaling")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_section(results: dict[str, Any], plots: Path) -> list[str]:
    """The scaling series' table and plot, when the run had one (``--scaling``)."""
    from benchmarks.__main__ import median_seconds

    runs = results.get("scaling", {}).get("runs", [])
    if not runs:
        return []
    medians = median_seconds(runs)
    sfs = sorted({sf for _, _, sf in medians})
    _scaling_plot(medians, plots / "scaling.png")
    lines = ["", "## Scaling: TPC-H Q1", "", "| variant | " + " | ".join(f"SF {s:g} s" for s in sfs) + " |",
             "|---|" + "---|" * len(sfs)]
    for v in dict.fromkeys(v for v, _, _ in medians):
        lines.append(f"| {v} | " + " | ".join(f"{medians[(v, 'tpch-q1', s)]:.2f}" if (v, "tpch-q1", s) in medians
                                              else "—" for s in sfs) + " |")
    for name, why in results["scaling"].get("skipped", {}).items():
        lines.append(f"\n- skipped {name}: {why}")
    return [*lines, "", f"![TPC-H Q1 against the scale factor]({plots.name}/scaling.png)"]


def _micro_table(rows: list[dict[str, Any]]) -> list[str]:
    """One row per measurement; each block's definition once, below the table."""
    if not rows:
        return ["(not run)"]
    out = ["| block | case | variant | measured | babelmr ÷ this |", "|---|---|---|---|---|"]
    definitions: dict[str, str] = {}
    for r in rows:
        ratio = f"{r['ratio_to_babelmr']:.2f}" if "ratio_to_babelmr" in r and r["variant"] != "babelmr" else ""
        out.append(f"| {r['block']} | {r.get('case', '')} | {r.get('variant', '')} | {_micro_value(r)} | {ratio} |")
        definitions.setdefault(r["block"], r.get("definition", ""))
    out.append("")
    out += [f"- **{block}**: {text}" for block, text in definitions.items() if text]
    return out


def write_report(out: Path, results: dict[str, Any], micro: list[dict[str, Any]], *, sfs: list[float], reps: int,
                 started: float, finished: float | None = None) -> Path:
    """Write the markdown report and its PNG plots (beside it, in a folder named after it)."""
    from benchmarks.__main__ import median_seconds
    from benchmarks.targets import BASELINE, targets

    runs = results["runs"]
    medians = median_seconds(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = out.parent / out.stem
    plots.mkdir(exist_ok=True)
    finished = finished or datetime.now().timestamp()
    (plots / "results.json").write_text(json.dumps(
        {"results": results, "micro": micro, "sfs": sfs, "reps": reps, "started": started, "finished": finished},
        indent=1, default=str))
    scaling = sorted({r["sf"] for r in results.get("scaling", {}).get("runs", [])})
    command = (f"python -m benchmarks run --sf {','.join(f'{s:g}' for s in sfs)} --reps {reps}"
               + (f" --scaling {','.join(f'{s:g}' for s in scaling)}" if scaling else ""))
    _runtime_plot(medians, sfs, plots / "runtime.png")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on "
        f"{datetime.fromtimestamp(started):%Y-%m-%d %H:%M} (took {(finished - started) / 60:.1f} "
        f"min). Every number below comes from that one run (raw: `docs/{plots.name}/results.json`); rerun the "
        "command to regenerate this file and its plots (`python -m benchmarks report` renders it again from the "
        "raw results).",
        "",
        f"- Machine: {_machine()}",
        f"- Versions: {_versions()}",
        "- Every variant's answer was checked against DuckDB's SQL answer before its time was recorded.",
        "- What each timer covers: what is started once per application is started before it (PySpark's session "
        "and JVM, babelmr's backend with its worker processes, the hand-written code's imports); everything the "
        "query needs after that is timed: planning, every program (babelmr's warm programs start within the "
        "run), the shuffles and reading the answer. Each variant's module docstring in `benchmarks/variants/` "
        "says exactly what it times.",
        "- Lines of user code: non-blank lines that are not only a comment; Python docstrings do not count "
        "(`benchmarks/loc.py`). babelmr: the program + the job file, what a user writes (the language's helper "
        "that babelmr ships, `base-image/lib/go`, `base-image/lib/csharp` or `babelmr.helper`, is named apart, "
        "not counted); "
        "hand-written: the whole program.",
        "",
        "## Targets",
        "",
        "A target's seconds are the median of every measurement of its variants at that scale factor in this run: "
        "the tables' and, for TPC-H Q1, the scaling series' too (on 2 shared cores one measurement can be off by "
        "a third).",
        "",
    ]
    lines += targets(median_seconds(runs + results.get("scaling", {}).get("runs", [])), runs, micro, sfs)
    for query in QUERIES:
        per_sf = " | ".join(f"SF {s:g} median s | ratio to babelmr" for s in sfs)
        lines += ["", f"## {query}", "",
                  f"| variant | lines of user code | {per_sf} | engine split import/program/export |",
                  "|---|---|" + "---|---|" * len(sfs) + "---|"]
        variants = list(dict.fromkeys(v for v, q, _ in medians if q == query))
        for v in variants:
            cells = [v, _lines(v, query)]
            for sf in sfs:
                m, base = medians.get((v, query, sf)), medians.get((BASELINE, query, sf))
                cells += [f"{m:.2f}" if m else "—", f"{m / base:.2f}×" if m and base else "—"]
            engine = [r["engine"] for r in runs if r["variant"] == v and r["query"] == query and r["engine"]]
            if engine:
                e = engine[-1]
                total = sum(e.values()) or 1
                cells.append(" / ".join(f"{e[k] / total:.0%}" for k in ("import", "program", "export")))
            else:
                cells.append("—")
            lines.append("| " + " | ".join(cells) + " |")
    for name, why in results["skipped"].items():
        lines.append(f"\n- skipped {name}: {why}")
    timeline_runs = [r for r in runs if r["variant"] == BASELINE and r["query"] == "tpch-q1" and r["tasks"]]
    lines += ["", "## Runtime", "", f"![runtime per variant and scale factor]({plots.name}/runtime.png)"]
    if timeline_runs:
        chosen = timeline_runs[-1]
        _timeline_plot(chosen["tasks"], f"babelmr TPC-H Q1, SF {chosen['sf']:g}: tasks over time",
                       plots / "timeline.png")
        lines += ["", "## A babelmr run, task by task", "",
                  "Import, program and export of each task (cf. the BabelMR paper's Figure 5); grey is the engine's "
                  "own time around them (worker start, commit, log upload).", "",
                  f"![per-task timeline]({plots.name}/timeline.png)"]
    lines += scaling_section(results, plots)
    lines += ["", "## Engine building blocks", "", *_micro_table(micro)]
    lines += ["", "## Not in this run: the Arrow IPC program format", "", ARROW_DECISION]
    out.write_text("\n".join(lines) + "\n")
    return out
