"""A run's timeline: one bar per task attempt, split into import / program / export / engine overhead.

Drawn with matplotlib from the run record alone (each attempt's start and finish times and its phase
seconds), so it works for every backend. Bars are grouped by stage; a failed attempt (later retried) is
hatched with a red edge, a duplicate (a backup attempt that lost the commit race) is hatched grey.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from babelmr.errors import BabelMRError
from babelmr.spec import AttemptRecord, LiveState, RunRecord, TaskStats

if TYPE_CHECKING:  # matplotlib is imported when a timeline is drawn, not with this module
    from matplotlib.figure import Figure

PHASES: tuple[tuple[str, Callable[[TaskStats], float | None], str], ...] = (
    ("import", lambda s: s.import_seconds, "#4c72b0"), ("program", lambda s: s.program_seconds, "#55a868"),
    ("export", lambda s: s.export_seconds, "#dd8452"))
OVERHEAD_COLOR = "#b0b0b0"
FORMATS = ("png", "svg")


def attempts_of(record: RunRecord, live: LiveState | None = None) -> list[tuple[str, AttemptRecord]]:
    """(stage, attempt) for every attempt with times: finished stages, then the running one (``live``)."""
    out = []
    stages: list[tuple[str, list[AttemptRecord]]] = [(s.name, s.task_attempts) for s in record.stages]
    if live is not None and live.stage is not None and record.status == "running":
        stages.append((live.stage.name, live.stage.task_attempts))
    for name, attempts in stages:
        for a in sorted(attempts, key=lambda a: (a.task, a.attempt)):
            if a.stats.started_at is not None and a.stats.finished_at is not None:
                out.append((name, a))
    return out


def draw(record: RunRecord, width: float = 10.0, live: LiveState | None = None) -> Figure:
    """The timeline as a matplotlib Figure (raises BabelMRError when the record has no attempt times)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    attempts = attempts_of(record, live)
    if not attempts:
        raise BabelMRError(f"run {record.run_id}: its record has no task attempt times (written by an "
                           "older babelmr, or no task has finished yet): nothing to draw")
    t0 = min(record.started_at or a.stats.started_at or 0.0 for _, a in attempts)
    rows = len(attempts)
    fig = Figure(figsize=(width, min(40.0, 2.0 + 0.28 * rows)), layout="constrained")
    ax = fig.add_subplot()
    labels, stage_bounds = [], []
    current = None
    for y, (stage, a) in enumerate(attempts):
        if stage != current:
            stage_bounds.append((y, stage))
            current = stage
        start, end = (a.stats.started_at or 0.0) - t0, (a.stats.finished_at or 0.0) - t0
        x = start
        for _, phase, color in PHASES:
            seconds = max(0.0, phase(a.stats) or 0.0)
            if seconds:
                ax.barh(y, seconds, left=x, color=color, height=0.7)
                x += seconds
        if end > x:  # whatever the phases do not account for: opening the store, commit, log upload
            ax.barh(y, end - x, left=x, color=OVERHEAD_COLOR, height=0.7)
        status = a.status
        if status in ("error", "duplicate"):
            edge = "#c44e52" if status == "error" else "#555555"
            ax.barh(y, end - start, left=start, height=0.7, fill=False, hatch="///", edgecolor=edge, linewidth=1.2)
        mark = {"error": " ✗", "duplicate": " (backup)"}.get(status or "", "")
        labels.append(f"{stage} t{a.task} a{a.attempt}{mark}")
    ax.set_yticks(range(rows), labels, fontsize=7 if rows > 30 else 8)
    ax.invert_yaxis()
    for y, _stage in stage_bounds[1:]:
        ax.axhline(y - 0.5, color="#444444", linewidth=0.6)
    ax.set_xlabel("seconds since the run started")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    title = f"{record.run_id} — {record.backend}, {record.status}"
    ax.set_title(title, fontsize=10, loc="left")
    handles = [Patch(color=c, label=name) for name, _, c in PHASES] + [
        Patch(color=OVERHEAD_COLOR, label="engine overhead"),
        Patch(fill=False, hatch="///", edgecolor="#c44e52", label="failed attempt"),
        Patch(fill=False, hatch="///", edgecolor="#555555", label="backup (duplicate)")]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=6, frameon=False)
    return fig


def render(record: RunRecord, fmt: str = "png", live: LiveState | None = None) -> bytes:
    """The timeline as PNG or SVG bytes (a running run's ``live`` state adds its running stage)."""
    if fmt not in FORMATS:
        raise BabelMRError(f"timeline format {fmt!r}: use one of {', '.join(FORMATS)}")
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: smaller, searchable
        draw(record, live=live).savefig(buf, format=fmt, dpi=110)
    return buf.getvalue()


def save(record: RunRecord, path: str) -> str:
    """Write the timeline to ``path``; its extension (.png or .svg) chooses the format."""
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise BabelMRError(f"--timeline {path}: name a .png or .svg file")
    data = render(record, fmt)
    with open(path, "wb") as f:
        f.write(data)
    return path
