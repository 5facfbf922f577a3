"""Shared by the fault-matrix tests: leak checks (processes, containers, folders) and result checksums."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import psutil


def run_processes(run_id: str) -> list[psutil.Process]:
    """Live processes that belong to run ``run_id``: programs carry ``MR_RUN_ID`` in their environment,
    worker processes and containers' processes the run id on their command line or in their environment."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            env = p.environ()
            if env.get("MR_RUN_ID") == run_id or run_id in " ".join(p.info["cmdline"] or []) or \
                    run_id in env.get("BABELMR_TASK_SPEC", ""):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def leftover_processes(run_id: str, seconds: float = 5.0) -> list[str]:
    """Processes of the run still alive after ``seconds`` (a kill takes a moment to be reaped)."""
    deadline = time.monotonic() + seconds
    while True:
        alive = run_processes(run_id)
        if not alive or time.monotonic() > deadline:
            return [f"{p.pid} {' '.join(p.cmdline())}" for p in alive if p.is_running()]
        time.sleep(0.1)


def worker_children() -> list[psutil.Process]:
    """Attempt processes still alive below this test process (the forkserver itself is kept)."""
    me = psutil.Process()
    return [c for c in me.children(recursive=True)
            if "forkserver" not in " ".join(c.cmdline()) and "resource_tracker" not in " ".join(c.cmdline())]


def checksum(files: list[str]) -> tuple[int, str]:
    """(rows, md5 over the sorted rows as JSON) of Parquet files: equal for equal multisets of rows."""
    if not files:
        return 0, ""
    return duckdb.sql(
        "select count(*), coalesce(md5(string_agg(j, chr(10) order by j)), '') from "
        f"(select to_json(t)::varchar as j from read_parquet({files!r}) t)").fetchall()[0]


def data_checksum(folder: Path) -> tuple[int, str]:
    """The checksum of the generated input of `scripted.make_job`: what a copying job must output."""
    return checksum(sorted(str(p) for p in (folder / "data").glob("*.parquet")))


def leftover_folders(parent: Path, prefix: str = "babelmr-") -> list[str]:
    """Temporary working folders the local backend left in ``parent``."""
    return [p.name for p in parent.iterdir() if p.name.startswith(prefix)]


def checksum_uris(uris: list[str]) -> tuple[int, str]:
    """`checksum` of Parquet files at any URI babelmr reads (local paths or s3://)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from babelmr.store import filesystem_for

    tables = []
    for uri in uris:
        fs, path = filesystem_for(uri)
        tables.append(pq.read_table(path, filesystem=fs))
    if not tables:
        return 0, ""
    table = pa.concat_tables(tables)  # noqa: F841 - DuckDB reads it by name
    return duckdb.sql("select count(*), coalesce(md5(string_agg(j, chr(10) order by j)), '') from "
                      "(select to_json(t)::varchar as j from 'table' t)").fetchall()[0]
