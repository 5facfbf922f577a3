"""Run records: what a run did, stored as JSON at ``runs/<run>/run.json`` in the store."""

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
    record["updated_at"] = time.time()
    store.write_bytes(layout.run_record(record["run_id"]), json.dumps(record, indent=2).encode())


def read_record(store: Store, run_id: str) -> dict[str, Any]:
    """The run record of ``run_id`` (a unique prefix of it is enough)."""
    key = layout.run_record(run_id)
    if not store.exists(key):
        matches = [r for r in list_runs(store) if r.startswith(run_id)]
        if len(matches) != 1:
            found = "several runs" if matches else "no run"
            raise BabelMRError(f"{found} named {run_id!r} in store {store.uri}: `babelmr runs --store "
                               f"{store.uri}` lists them")
        key = layout.run_record(matches[0])
    return json.loads(store.read_bytes(key))


def list_runs(store: Store) -> list[str]:
    """Run ids with a run record in ``store``, oldest first."""
    suffix = "/run.json"
    ids = [e.path[len(layout.RUNS) + 1: -len(suffix)] for e in store.list(layout.RUNS)
           if e.path.endswith(suffix) and e.path.count("/") == 2]
    return sorted(ids, key=lambda r: r.rsplit("-", 3)[-3:])
