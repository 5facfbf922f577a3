"""``babelmr ui``: a read-only web dashboard of the runs in a store.

A Starlette app serves one HTML page and a small script (``static/``) plus a JSON API built from the run
records, the task logs and the status lines in the store, read through the `Store` interface (so local
folders and S3 both work). Running runs are polled by the page. Nothing here writes to the store.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from babelmr.coordinator.records import list_runs, read_live, read_record
from babelmr.cost import load_prices, run_cost
from babelmr.errors import BabelMRError
from babelmr.spec import AttemptRecord, LiveState, RunRecord, TaskStats
from babelmr.store import layout
from babelmr.store.base import Store

STATIC = str(resources.files("babelmr.ui") / "static")
LOG_BYTES = 1 << 20  # the tail of a log the page shows
_STAGE_DATA = re.compile(r"/stages/([^/]+)/data/")
_LOG_NAME = re.compile(r"t(\d+)-a(\d+)\.(stdout|stderr|engine|container)$")


def _edges(record: RunRecord) -> dict[str, list[str]]:
    """stage -> the stages it reads, from the job file when it is readable, else from the inputs' paths."""
    edges: dict[str, list[str]] = {}
    for stage in record.stages:
        ups = set()
        for files in stage.inputs.values():
            for f in files or []:
                m = _STAGE_DATA.search(str(f))
                if m and record.run_id in str(f):
                    ups.add(m.group(1))
        edges[stage.name] = sorted(ups)
    return edges


def _planned_stages(record: RunRecord) -> list[dict[str, Any]]:
    """The job's stages and their upstream stages from its job file, if this machine can read it."""
    path = record.job_file
    if not path or not os.path.exists(path):
        return []
    try:
        from babelmr.job import load_job

        job = load_job(path)
    except (BabelMRError, OSError, ValueError):
        return []
    return [{"name": s.name, "upstream": [i.stage for i in s.stage_inputs]} for s in job.stages]


def _task_rows(task_attempts: list[AttemptRecord], tasks: int, skipped: set[int], running: bool,
               logs: dict[tuple[int, int], list[str]], status_lines: dict[str, str]) -> list[dict[str, Any]]:
    """One row per task: its final (or latest) attempt's figures, every attempt with its logs."""
    by_task: dict[int, list[AttemptRecord]] = {}
    for a in task_attempts:
        by_task.setdefault(a.task, []).append(a)
    rows = []
    for task in range(max(tasks, max(by_task, default=-1) + 1)):
        attempts = sorted(by_task.get(task, []), key=lambda a: a.attempt)
        last = attempts[-1] if attempts else None
        if last is None and task in skipped:
            status = "skipped"  # empty input partitions (the program was not started), or committed before a resume
        elif last is None and not running:
            status = "not run"  # the stage stopped (a task failed) before this task started
        elif last is None:  # a running stage: running when it has published a status line
            status = "running" if str(task) in status_lines else "waiting"
        elif last.status == "error" and last.final is False:
            status = "retrying"  # the live state marks attempts that another attempt follows
        else:
            status = last.status
        st = last.stats if last is not None else TaskStats()
        rss = max(st.engine_peak_rss_bytes or 0, st.program_peak_rss_bytes or 0)
        rows.append({
            "task": task, "status": status, "attempts": len(attempts),
            "started_at": attempts[0].stats.started_at if attempts else None,
            "finished_at": st.finished_at,
            "seconds": {"import": st.import_seconds, "program": st.program_seconds, "export": st.export_seconds},
            "rows_in": st.rows_in, "rows_out": st.rows_out,
            "bytes_in": st.bytes_in, "bytes_out": st.bytes_out, "peak_rss_bytes": rss or None,
            "counters": st.counters or {},
            "status_line": status_lines.get(str(task)) or st.status_line,
            "error": last.error if last is not None and last.status == "error" else None,
            "attempt_list": [{"attempt": a.attempt, "status": a.status, "error": a.error,
                              "logs": logs.get((task, a.attempt), [])} for a in attempts],
        })
    return rows


def _stage_view(store: Store, run_id: str, name: str, status: str, tasks: int, seconds: float | None,
                attempts: list[AttemptRecord], skipped: set[int], running: bool,
                status_lines: dict[str, str]) -> dict[str, Any]:
    logs: dict[tuple[int, int], list[str]] = {}
    for entry in store.list(layout.log_prefix(run_id, name)):
        m = _LOG_NAME.search(entry.path)
        if m:
            logs.setdefault((int(m[1]), int(m[2])), []).append(m[3])
    rows = _task_rows(attempts, tasks, skipped, running, logs, status_lines)
    done = sum(1 for r in rows if r["status"] in ("ok", "duplicate", "skipped"))
    return {"name": name, "status": status, "tasks": tasks, "done": done,
            "failed": sum(1 for r in rows if r["status"] == "error"),
            "retries": sum(max(0, r["attempts"] - 1) for r in rows), "seconds": seconds, "upstream": [],
            "task_rows": rows}


def run_view(store: Store, record: RunRecord, live: LiveState | None = None) -> dict[str, Any]:
    """Everything the run page shows, from the run record, its live state and the stage logs in the store."""
    run_id = record.run_id
    edges = _edges(record)
    stages = [_stage_view(store, run_id, s.name, s.status, s.tasks, s.seconds, s.task_attempts,
                          {*s.skipped_tasks, *s.resumed_tasks}, False, {}) for s in record.stages]
    running = live.stage if live is not None and record.status == "running" else None
    if running is not None and running.name not in {s.name for s in record.stages}:
        stages.append(_stage_view(store, run_id, running.name, "running", running.tasks, None,
                                  running.task_attempts, set(), True, running.status_lines))
    for s in stages:
        s["upstream"] = edges.get(s["name"], [])
    seen = {s["name"] for s in stages}
    for planned in _planned_stages(record):
        if planned["name"] in seen:
            next(s for s in stages if s["name"] == planned["name"])["upstream"] = planned["upstream"]
        else:
            status = "pending" if record.status == "running" else "not run"
            stages.append({"name": planned["name"], "status": status, "tasks": 0, "done": 0, "failed": 0,
                           "retries": 0, "seconds": None, "upstream": planned["upstream"], "task_rows": []})
    try:
        cost = run_cost(record, load_prices()).to_dict()
    except BabelMRError as e:
        cost = {"error": str(e)}
    attempts = [a for s in record.stages for a in s.task_attempts] + (running.task_attempts if running else [])
    return {"run_id": run_id, "job": record.job, "status": record.status,
            "backend": record.backend, "started_at": record.started_at,
            "seconds": record.seconds, "updated_at": live.updated_at if live else record.updated_at,
            "error": record.error, "output": record.output.to_dict() if record.output else None,
            "store": store.uri, "stages": stages, "cost": cost,
            "has_timeline": any(a.stats.started_at for a in attempts)}


def run_summary(record: RunRecord, live: LiveState | None = None) -> dict[str, Any]:
    """A row of the runs list."""
    try:
        report = run_cost(record, load_prices())
        dollars = report.total.dollars(report.prices)["total"]
        cost = {"dollars": dollars, "estimate": report.estimate, "architecture": report.prices.architecture}
    except BabelMRError:
        cost = None
    seconds = record.seconds
    updated = live.updated_at if live is not None else record.updated_at
    if seconds is None and updated and record.started_at:
        seconds = updated - record.started_at
    running = live is not None and live.stage is not None and record.status == "running"
    return {"run_id": record.run_id, "job": record.job, "status": record.status,
            "started_at": record.started_at, "seconds": seconds, "backend": record.backend,
            "stages": len(record.stages) + (1 if running else 0), "cost": cost}


def create_app(store: Store) -> Starlette:
    """The dashboard of ``store`` as an ASGI app (GET only)."""

    finished: dict[str, RunRecord] = {}  # records of ended runs never change: read each once

    def _record(run_id: str) -> RunRecord:
        if run_id in finished:
            return finished[run_id]
        record = read_record(store, run_id)
        if record.status != "running" and record.run_id == run_id:
            finished[run_id] = record
        return record

    def _live(record: RunRecord) -> LiveState | None:
        return read_live(store, record.run_id) if record.status == "running" else None

    async def index(request: Request) -> Response:
        return FileResponse(os.path.join(STATIC, "index.html"))

    async def api_runs(request: Request) -> Response:
        def runs() -> list[dict[str, Any]]:
            out = []
            for run_id in reversed(list_runs(store)):  # newest first
                try:
                    record = _record(run_id)
                    out.append(run_summary(record, _live(record)))
                except (BabelMRError, FileNotFoundError, json.JSONDecodeError):
                    continue  # a record being replaced or unreadable: the next poll shows it
            return out

        return JSONResponse({"store": store.uri, "runs": await run_in_threadpool(runs)})

    async def api_run(request: Request) -> Response:
        try:
            def view_of(run_id: str) -> dict[str, Any]:
                record = _record(run_id)
                return run_view(store, record, _live(record))

            view = await run_in_threadpool(view_of, request.path_params["run_id"])
        except BabelMRError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        return JSONResponse(view)

    async def api_timeline(request: Request) -> Response:
        from babelmr.timeline import render

        fmt = request.path_params["fmt"]
        try:
            def image(run_id: str) -> bytes:
                record = _record(run_id)
                return render(record, fmt, _live(record))

            data = await run_in_threadpool(image, request.path_params["run_id"])
        except BabelMRError as e:
            return PlainTextResponse(str(e), status_code=404)
        return Response(data, media_type="image/png" if fmt == "png" else "image/svg+xml",
                        headers={"Cache-Control": "no-store"})

    async def api_log(request: Request) -> Response:
        p = request.path_params
        if p["stream"] not in ("stdout", "stderr", "engine", "container"):
            return PlainTextResponse("stdout, stderr, engine or container", status_code=404)
        run_id = _record(p["run_id"]).run_id
        key = layout.task_log(run_id, p["stage"], int(p["task"]), int(p["attempt"]), p["stream"])
        try:
            data = await run_in_threadpool(store.read_bytes, key)
        except FileNotFoundError:
            return PlainTextResponse("(no output)", status_code=404)
        return PlainTextResponse(data[-LOG_BYTES:].decode(errors="replace"))

    routes = [
        Route("/", index), Route("/runs/{run_id}", index),
        Route("/api/runs", api_runs), Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/timeline.{fmt:str}", api_timeline),
        Route("/api/runs/{run_id}/logs/{stage}/{task:int}/{attempt:int}/{stream}", api_log),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def serve(store: Store, host: str, port: int, announce: Callable[[str], None] = print) -> None:
    """Serve the dashboard until interrupted."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise BabelMRError(f"cannot listen on {host}:{port}: {e}: choose another --port") from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    announce(f"http://{shown}:{bound}/")
    server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning"))
    server.run(sockets=[sock])
