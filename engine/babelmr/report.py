"""Human output: progress bars per stage and the end-of-run summary (on stderr)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from babelmr.coordinator.run import StageProgress
from babelmr.cost import CostReport, Usage
from babelmr.job import Stage
from babelmr.spec import RunRecord, TaskResult
from babelmr.units import human_bytes, human_count


class RichProgress(StageProgress):
    """A progress bar per stage: tasks done of all, rows out so far, retries."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
            TextColumn("{task.fields[rows]} rows out"), TextColumn("{task.fields[retries]}"), TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[status]}"), console=console, transient=False,
        )
        self._ids: dict[str, Any] = {}
        self._rows: dict[str, int] = {}
        self._retries: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage_started(self, stage: Stage, tasks: int) -> None:
        self._rows[stage.name], self._retries[stage.name] = 0, 0
        self._ids[stage.name] = self.progress.add_task(stage.name, total=tasks, rows="0", retries="", status="")

    def _update(self, stage: Stage, advance: int = 0) -> None:
        retries = self._retries[stage.name]
        self.progress.update(self._ids[stage.name], advance=advance, rows=human_count(self._rows[stage.name]),
                             retries=f"[yellow]{retries} retries" if retries else "")

    def task_finished(self, stage: Stage, result: TaskResult) -> None:
        self._rows[stage.name] += result.stats.rows_out or 0
        self._update(stage, advance=1)

    def task_status(self, stage: Stage, task: int, text: str) -> None:
        """A running task's latest ``reporter:status:`` line, shown beside its stage's bar."""
        if stage.name in self._ids:
            self.progress.update(self._ids[stage.name], status=f"task {task}: {text}"[:80])

    def task_retrying(self, stage: Stage, result: TaskResult) -> None:
        self._retries[stage.name] += 1
        first_line = (result.error or "").splitlines()[0] if result.error else ""
        self.console.print(f"[yellow]retrying[/] {first_line}")
        self._update(stage)


def summary_table(record: RunRecord) -> Table:
    """Per stage: tasks, retries, rows and bytes, wall time and the import/program/export split."""
    table = Table(title=f"run {record.run_id} — {record.status}", title_justify="left")
    table.add_column("stage", no_wrap=True)
    for col in ("tasks", "retries", "rows in", "rows out", "bytes out", "wall s", "import/program/export s",
                "peak RSS"):
        table.add_column(col, justify="right")
    for s in record.stages:
        rss = max(s.engine_peak_rss_bytes, s.program_peak_rss_bytes)
        split = f"{s.import_seconds:.2f}/{s.program_seconds:.2f}/{s.export_seconds:.2f}"
        spec = s.speculation
        backups = f" (+{spec['backups']} backup, {spec.get('won', 0)} won)" if spec.get("backups") else ""
        retries = str(s.retries) + backups
        table.add_row(s.name, str(s.tasks), retries, human_count(s.rows_in), human_count(s.rows_out),
                      human_bytes(s.bytes_out), f"{s.seconds:.2f}", split, human_bytes(rss))
    return table


def _cost_row(table: Table, name: str, u: Usage, report: CostReport) -> None:
    kinds = " ".join(f"{k} {n}" for k, n in sorted(u.requests.items()) if n) or "-"
    table.add_row(name, f"{u.task_seconds:.2f}", f"{u.gb_seconds:.2f}", str(u.invocations), kinds,
                  human_bytes(u.bytes_read), human_bytes(u.bytes_written),
                  f"${u.dollars(report.prices)['total']:.6f}")


def cost_table(report: CostReport) -> Table:
    """Per stage and in total: task-seconds, GB-seconds, invocations, S3 requests by kind, bytes, dollars."""
    what = "estimate on Lambda" if report.estimate else "Lambda billed duration"
    table = Table(title=f"cost ({what}; {report.prices.architecture}, {report.prices.region} list prices of "
                        f"{report.prices.date})", title_justify="left")
    table.add_column("stage", no_wrap=True)
    for col in ("task s", "GB-s", "invocations", "S3 requests", "read", "written", "dollars"):
        table.add_column(col, justify="right")
    for name, usage in report.stages:
        _cost_row(table, name, usage, report)
    if report.coordinator_requests:
        _cost_row(table, "(coordinator)", Usage(requests=report.coordinator_requests), report)
    _cost_row(table, "total", report.total, report)
    return table
