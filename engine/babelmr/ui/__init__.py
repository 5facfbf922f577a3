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

from babelmr.coordinator.records import list_runs, read_record
from babelmr.cost import load_prices, run_cost
from babelmr.errors import BabelMRError
from babelmr.store import layout
from babelmr.store.base import Store

STATIC = str(resources.files("babelmr.ui") / "static")
LOG_BYTES = 1 << 20  # the tail of a log the page shows
_STAGE_DATA = re.compile(r"/stages/([^/]+)/data/")
_LOG_NAME = re.compile(r"t(\d+)-a(\d+)\.(stdout|stderr|engine|container)$")


def _edges(record: dict[str, Any]) -> dict[str, list[str]]:
    """stage -> the stages it reads, from the job file when it is readable, else from the inputs' paths."""
    edges: dict[str, list[str]] = {}
    for stage in record.get("stages") or []:
        ups = set()
        for files in (stage.get("inputs") or {}).values():
            for f in files or []:
                m = _STAGE_DATA.search(str(f))
                if m and record.get("run_id", "") in str(f):
                    ups.add(m.group(1))
        edges[stage.get("name", "?")] = sorted(ups)
    return edges


def _planned_stages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's stages and their upstream stages from its job file, if this machine can read it."""
    path = record.get("job_file")
    if not path or not os.path.exists(path):
        return []
    try:
        from babelmr.job import load_job

        job = load_job(path)
    except (BabelMRError, OSError, ValueError):
        return []
    return [{"name": s.name, "upstream": [i.stage for i in s.stage_inputs]} for s in job.stages]


def _task_rows(stage: dict[str, Any], tasks: int, logs: dict[tuple[int, int], list[str]],
               status_lines: dict[str, str]) -> list[dict[str, Any]]:
    """One row per task: its final (or latest) attempt's figures, every attempt with its logs."""
    by_task: dict[int, list[dict[str, Any]]] = {}
    for a in stage.get("task_attempts") or []:
        by_task.setdefault(int(a.get("task", 0)), []).append(a)
    skipped = {int(t) for t in [*(stage.get("skipped_tasks") or []), *(stage.get("resumed_tasks") or [])]}
    rows = []
    for task in range(max(tasks, max(by_task, default=-1) + 1)):
        attempts = sorted(by_task.get(task, []), key=lambda a: a.get("attempt", 0))
        last = attempts[-1] if attempts else {}
        if not attempts and task in skipped:
            status = "skipped"  # empty input partitions (the program was not started), or committed before a resume
        elif not attempts and not stage.get("running_stage"):
            status = "not run"  # the stage stopped (a task failed) before this task started
        elif not attempts:  # a running stage: running when it has published a status line
            status = "running" if str(task) in status_lines else "waiting"
        elif last.get("status") == "error" and last.get("final") is False:
            status = "retrying"  # the live record marks attempts that another attempt follows
        else:
            status = last.get("status") or "?"
        rss = max(int(last.get("engine_peak_rss_bytes") or 0), int(last.get("program_peak_rss_bytes") or 0))
        rows.append({
            "task": task, "status": status, "attempts": len(attempts),
            "started_at": attempts[0].get("started_at") if attempts else None,
            "finished_at": last.get("finished_at"),
            "seconds": {k: last.get(f"{k}_seconds") for k in ("import", "program", "export")},
            "rows_in": last.get("rows_in"), "rows_out": last.get("rows_out"),
            "bytes_in": last.get("bytes_in"), "bytes_out": last.get("bytes_out"), "peak_rss_bytes": rss or None,
            "counters": last.get("counters") or {},
            "status_line": status_lines.get(str(task)) or last.get("status_line"),
            "error": last.get("error") if last.get("status") == "error" else None,
            "attempt_list": [{"attempt": a.get("attempt"), "status": a.get("status"), "error": a.get("error"),
                              "logs": logs.get((task, int(a.get("attempt", 0))), [])} for a in attempts],
        })
    return rows


def run_view(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """Everything the run page shows, from the run record and the stage logs in the store."""
    run_id = record.get("run_id", "")
    edges = _edges(record)
    stages = []
    recorded = list(record.get("stages") or [])
    running = record.get("running_stage")
    if running:
        recorded.append({**running, "status": "running", "running_stage": True})
    for stage in recorded:
        name = stage.get("name", "?")
        logs: dict[tuple[int, int], list[str]] = {}
        for entry in store.list(layout.log_prefix(run_id, name)):
            m = _LOG_NAME.search(entry.path)
            if m:
                logs.setdefault((int(m[1]), int(m[2])), []).append(m[3])
        tasks = int(stage.get("tasks") or 0)
        rows = _task_rows(stage, tasks, logs, stage.get("status_lines") or {})
        done = sum(1 for r in rows if r["status"] in ("ok", "duplicate", "skipped"))
        stages.append({"name": name, "status": stage.get("status", "?"), "tasks": tasks, "done": done,
                       "failed": sum(1 for r in rows if r["status"] == "error"),
                       "retries": sum(max(0, r["attempts"] - 1) for r in rows),
                       "seconds": stage.get("seconds"), "upstream": edges.get(name, []), "task_rows": rows})
    seen = {s["name"] for s in stages}
    for planned in _planned_stages(record):
        if planned["name"] in seen:
            next(s for s in stages if s["name"] == planned["name"])["upstream"] = planned["upstream"]
        else:
            status = "pending" if record.get("status") == "running" else "not run"
            stages.append({"name": planned["name"], "status": status, "tasks": 0, "done": 0, "failed": 0,
                           "retries": 0, "seconds": None, "upstream": planned["upstream"], "task_rows": []})
    try:
        cost = run_cost(record, load_prices()).to_dict()
    except BabelMRError as e:
        cost = {"error": str(e)}
    return {"run_id": run_id, "job": record.get("job"), "status": record.get("status"),
            "backend": record.get("backend"), "started_at": record.get("started_at"),
            "seconds": record.get("seconds"), "updated_at": record.get("updated_at"), "error": record.get("error"),
            "output": record.get("output"), "store": store.uri, "stages": stages, "cost": cost,
            "has_timeline": any(a.get("started_at") for s in recorded for a in s.get("task_attempts") or [])}


def run_summary(record: dict[str, Any]) -> dict[str, Any]:
    """A row of the runs list."""
    try:
        report = run_cost(record, load_prices())
        dollars = report.total.dollars(report.prices)["total"]
        cost = {"dollars": dollars, "estimate": report.estimate, "architecture": report.prices.architecture}
    except BabelMRError:
        cost = None
    stages = record.get("stages") or []
    seconds = record.get("seconds")
    if seconds is None and record.get("updated_at") and record.get("started_at"):
        seconds = record["updated_at"] - record["started_at"]
    return {"run_id": record.get("run_id"), "job": record.get("job"), "status": record.get("status"),
            "started_at": record.get("started_at"), "seconds": seconds, "backend": record.get("backend"),
            "stages": len(stages) + (1 if record.get("running_stage") else 0), "cost": cost}


def create_app(store: Store) -> Starlette:
    """The dashboard of ``store`` as an ASGI app (GET only)."""

    finished: dict[str, dict[str, Any]] = {}  # records of ended runs never change: read each once

    def _record(run_id: str) -> dict[str, Any]:
        if run_id in finished:
            return finished[run_id]
        record = read_record(store, run_id)
        if record.get("status") != "running" and record.get("run_id") == run_id:
            finished[run_id] = record
        return record

    async def index(request: Request) -> Response:
        return FileResponse(os.path.join(STATIC, "index.html"))

    async def api_runs(request: Request) -> Response:
        def runs() -> list[dict[str, Any]]:
            out = []
            for run_id in reversed(list_runs(store)):  # newest first
                try:
                    out.append(run_summary(_record(run_id)))
                except (BabelMRError, FileNotFoundError, json.JSONDecodeError):
                    continue  # a record being replaced or unreadable: the next poll shows it
            return out

        return JSONResponse({"store": store.uri, "runs": await run_in_threadpool(runs)})

    async def api_run(request: Request) -> Response:
        try:
            view = await run_in_threadpool(lambda: run_view(store, _record(request.path_params["run_id"])))
        except BabelMRError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        return JSONResponse(view)

    async def api_timeline(request: Request) -> Response:
        from babelmr.timeline import render

        fmt = request.path_params["fmt"]
        try:
            data = await run_in_threadpool(lambda: render(_record(request.path_params["run_id"]), fmt))
        except BabelMRError as e:
            return PlainTextResponse(str(e), status_code=404)
        return Response(data, media_type="image/png" if fmt == "png" else "image/svg+xml",
                        headers={"Cache-Control": "no-store"})

    async def api_log(request: Request) -> Response:
        p = request.path_params
        if p["stream"] not in ("stdout", "stderr", "engine", "container"):
            return PlainTextResponse("stdout, stderr, engine or container", status_code=404)
        run_id = _record(p["run_id"])["run_id"]
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
