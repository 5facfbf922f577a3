"""Run records: what a run did, stored as JSON at ``runs/<run>/run.json`` in the store.

While a run is running, ``run.json`` is written only when the run starts or resumes; each finished
stage writes its own entry (``records/<stage>.json``) and the heartbeat carries progress, so
the cost of recording a stage does not grow with the stages before it. The final ``run.json``
(written once, when the run ends) holds every stage. `read_record` gives the same shape either way.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from typing import Any

from babelmr.errors import BabelMRError
from babelmr.store import layout
from babelmr.store.base import Store


def new_run_id(job_name: str) -> str:
    """Unique per run, sortable by start time: reruns never collide."""
    return f"{job_name}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def write_record(store: Store, record: dict[str, Any]) -> None:
    """Write ``run.json``; the stage entries only once the run has ended (until then each stage has its own)."""
    record["updated_at"] = time.time()
    data = record if record.get("status") != "running" else {k: v for k, v in record.items() if k != "stages"}
    store.write_bytes(layout.run_record(record["run_id"]), json.dumps(data, indent=2).encode())


def write_stage_record(store: Store, run_id: str, summary: dict[str, Any]) -> None:
    """Write one stage's entry of the run record, on its own: O(this stage), whatever ran before."""
    store.write_bytes(layout.stage_record(run_id, summary["name"]), json.dumps(summary, indent=2).encode())


def stage_records(store: Store, run_id: str, stage_names: list[str]) -> list[dict[str, Any]]:
    """The stage entries written so far, in the job's stage order."""
    found = []
    for name in stage_names:
        try:
            found.append(json.loads(store.read_bytes(layout.stage_record(run_id, name))))
        except FileNotFoundError:
            continue
    return found


def resolve_run_id(store: Store, run_id: str) -> str:
    """The full id of ``run_id`` or of the one run it is a unique prefix of."""
    if store.exists(layout.run_record(run_id)):
        return run_id
    matches = [r for r in list_runs(store) if r.startswith(run_id)]
    if len(matches) != 1:
        found = "several runs" if matches else "no run"
        raise BabelMRError(f"{found} named {run_id!r} in store {store.uri}: `babelmr runs --store "
                           f"{store.uri}` lists them")
    return matches[0]


def read_record(store: Store, run_id: str) -> dict[str, Any]:
    """The run record of ``run_id`` (a unique prefix of it is enough), with its stage entries."""
    record = json.loads(store.read_bytes(layout.run_record(resolve_run_id(store, run_id))))
    if "stages" not in record:  # still running, or its coordinator died: assemble the stages written so far
        record["stages"] = stage_records(store, record["run_id"], record.get("stage_names", []))
    return record


def read_heartbeat(store: Store, run_id: str) -> dict[str, Any] | None:
    """The coordinator's last heartbeat, or None if it never wrote one."""
    try:
        return json.loads(store.read_bytes(layout.heartbeat(run_id)))
    except FileNotFoundError:
        return None


def list_runs(store: Store) -> list[str]:
    """Run ids with a run record in ``store``, oldest first."""
    suffix = "/run.json"
    ids = [e.path[len(layout.RUNS) + 1: -len(suffix)] for e in store.list(layout.RUNS)
           if e.path.endswith(suffix) and e.path.count("/") == 2]
    return sorted(ids, key=lambda r: r.rsplit("-", 3)[-3:])
