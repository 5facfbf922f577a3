"""The commands around a run in the store: `resume`, `status`, `wait`, `logs`, `stop`, and `run --detach`.

Registered on the ``babelmr`` group by cli.py; the logic is in coordinator/resume.py and detach.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from babelmr.job import Job
from babelmr.spec import RunRecord
from babelmr.store import open_store

FC = TypeVar("FC", bound=Callable[..., Any])  # a click command function


def _store_option(f: FC) -> FC:
    return click.option("--store", default=".babelmr", show_default=True,
                        help="The store: a local folder or s3://bucket/prefix.")(f)


def prepare_coordinator() -> None:
    """In a detached coordinator, `babelmr stop`'s SIGTERM interrupts the run as Ctrl-C does."""
    from babelmr.coordinator.detach import DETACHED_ENV, install_stop_handler

    if os.environ.get(DETACHED_ENV):
        install_stop_handler()


def run_detached(job: Job, backend: str, concurrency: int | None, memory: str, ephemeral_storage: str,
                 emulators: int | None, resume_run: str | None, force: bool) -> None:
    """Start `babelmr run` for ``job`` in the background and print the run id (stdout) and how to follow it."""
    from babelmr.cli import err
    from babelmr.coordinator.detach import start_detached
    from babelmr.coordinator.records import new_run_id, resolve_run_id

    store = open_store(job.store)
    run_id = resolve_run_id(store, resume_run) if resume_run else new_run_id(job.name)
    args = ["run", job.path, "--backend", backend, "--store", job.store, "--memory", memory,
            "--ephemeral-storage", ephemeral_storage]
    args += ["--concurrency", str(concurrency)] if concurrency else []
    args += ["--emulators", str(emulators)] if emulators else []
    if job.output is not None:  # the job's output as resolved here (the command line's flags included)
        args += ["--output", job.output.uri, "--output-format", job.output.format]
        args += ["--overwrite"] if job.output.mode == "overwrite" else []
    args += ["--resume", run_id] + (["--force"] if force else []) if resume_run else ["--run-id", run_id]
    log = start_detached(store, run_id, args)
    click.echo(run_id)
    s = f"--store {job.store}"
    err.print(f"detached: run {run_id} (coordinator output: {log})\n"
              f"  babelmr status {run_id} {s}\n  babelmr logs {run_id} {s} --follow\n"
              f"  babelmr wait {run_id} {s}\n  babelmr stop {run_id} {s}", markup=False, highlight=False)


def show_resumes_and_tolerated(out: Any, record: RunRecord) -> None:
    """`babelmr show`: the run's resumes and the failed tasks its stages tolerated."""
    from datetime import datetime

    for r in record.resumes:
        at = datetime.fromtimestamp(r.at).strftime("%Y-%m-%d %H:%M:%S")
        forced = f" (forced over {len(r.changes)} change(s))" if r.forced else ""
        out.print(f"resumed at {at} on {r.host} after it {r.previous_status}{forced}", markup=False, highlight=False)
    for s in record.stages:
        for f in s.tolerated_failures:
            out.print(f"stage {s.name!r}: task {f.task} failed after {f.attempts} attempt(s) (tolerated, "
                      f"nothing published); its inputs: {', '.join(f.inputs) or 'none'}", markup=False,
                      highlight=False)
            first = (f.error or "").splitlines()
            if first:
                out.print(f"  {first[0]}", markup=False, highlight=False)


def register(main: click.Group, run: click.Command) -> None:
    """Add the commands to the ``babelmr`` group."""

    @main.command()
    @click.argument("run_id", metavar="RUN")
    @_store_option
    @click.option("--force", is_flag=True, help="Continue although the inputs or partitioning changed.")
    @click.option("--backend", "-b", help="Where tasks run (default: the run's backend).")
    @click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Tasks at once (default: cores).")
    @click.option("--detach", is_flag=True, help="Resume in the background; print the run id.")
    @click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON on stdout.")
    @click.pass_context
    def resume(ctx: click.Context, run_id: str, store: str, force: bool, backend: str | None,
               concurrency: int | None, detach: bool, as_json: bool) -> None:
        """Continue a failed, interrupted or killed run: finished stages and committed tasks are not run again.

        Its job file must be where it was; a changed command is fine, changed inputs or partitioning are
        refused unless --force. Same as `babelmr run JOB --resume RUN`.
        """
        from babelmr.coordinator.records import read_record

        record = read_record(open_store(store), run_id)
        ctx.invoke(run, job_file=record.job_file, backend=backend or record.backend, store=store,
                   concurrency=concurrency, resume_run=record.run_id, force=force, detach=detach,
                   as_json=as_json)

    @main.command()
    @click.argument("run_id", metavar="RUN")
    @_store_option
    @click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
    def status(run_id: str, store: str, as_json: bool) -> None:
        """Show a run's progress: stages, running tasks, heartbeat age; `coordinator died` when stale."""
        from babelmr.coordinator.detach import run_status

        st = run_status(open_store(store), run_id)
        if as_json:
            click.echo(json.dumps(st.to_dict(), indent=2))
            return
        for line in st.lines():
            click.echo(line)

    @main.command()
    @click.argument("run_id", metavar="RUN")
    @_store_option
    @click.option("--timeout", type=float, help="Give up after this many seconds (exit code 124).")
    def wait(run_id: str, store: str, timeout: float | None) -> None:
        """Wait for a run to end; exit with its code: 0 succeeded, 1 failed (or coordinator died), 130 interrupted."""
        from babelmr.cli import err
        from babelmr.coordinator.detach import wait_for
        from babelmr.errors import BabelMRError

        try:
            code, st = wait_for(open_store(store), run_id, timeout=timeout)
        except BabelMRError as e:
            if "still running" not in str(e):
                raise
            err.print(str(e), markup=False)
            sys.exit(124)
        for line in st.lines():
            err.print(line, markup=False, highlight=False)
        sys.exit(code)

    @main.command()
    @click.argument("run_id", metavar="RUN")
    @_store_option
    @click.option("--stage", "-s", help="Only this stage's tasks.")
    @click.option("--task", "-t", type=int, help="Only this task.")
    @click.option("--attempt", "-a", type=int, help="Only this attempt.")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new logs as attempts end, until the run ends.")
    def logs(run_id: str, store: str, stage: str | None, task: int | None, attempt: int | None,
             follow: bool) -> None:
        """Print task stdout/stderr from the store (the worker copies each attempt's logs when it ends)."""
        from babelmr.coordinator.detach import follow_logs

        out = sys.stdout.buffer
        for log, data in follow_logs(open_store(store), run_id, stage, task, attempt, follow):
            out.write(f"==> stage {log.stage} task {log.task} attempt {log.attempt} {log.stream} <==\n".encode())
            out.write(data if data.endswith(b"\n") or not data else data + b"\n")
            out.flush()

    @main.command()
    @click.argument("run_id", metavar="RUN")
    @_store_option
    @click.option("--timeout", type=float, default=60, show_default=True, help="Seconds to wait for it to stop.")
    def stop(run_id: str, store: str, timeout: float) -> None:
        """Stop a run (SIGTERM to its coordinator): tasks stop, the run is `interrupted` and resumable."""
        from babelmr.cli import err
        from babelmr.coordinator.detach import stop_run

        err.print(stop_run(open_store(store), run_id, timeout), markup=False, highlight=False)
