"""Run records: what a run did, stored as JSON at ``runs/<run>/run.json`` in the store.

While a run is running, ``run.json`` is written only when the run starts or resumes; each finished
stage writes its own entry (``records/<stage>.json``) and the live state (``heartbeat.json``, written by
`babelmr.coordinator.live`) carries progress, so the cost of recording a stage does not grow with the
stages before it. The final ``run.json`` (written once, when the run ends) holds every stage. `read_record`
gives the same `RunRecord` either way. The records themselves are defined in `babelmr.spec`.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from typing import TypeVar

from babelmr.errors import BabelMRError
from babelmr.spec import LiveState, Record, RecordError, RunRecord, StageRecord
from babelmr.store import layout
from babelmr.store.base import Store

R = TypeVar("R", bound=Record)


def new_run_id(job_name: str) -> str:
    """Unique per run, sortable by start time: reruns never collide."""
    return f"{job_name}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def write_record(store: Store, record: RunRecord) -> None:
    """Write ``run.json``; the stage entries only once the run has ended (until then each stage has its own)."""
    record.updated_at = time.time()
    data = record.to_dict()
    if record.status == "running":
        del data["stages"]
    store.write_bytes(layout.run_record(record.run_id), json.dumps(data, indent=2).encode())


def write_stage_record(store: Store, run_id: str, summary: StageRecord) -> None:
    """Write one stage's entry of the run record, on its own: O(this stage), whatever ran before."""
    store.write_bytes(layout.stage_record(run_id, summary.name), summary.to_json(indent=2).encode())


def read_stored(store: Store, key: str, kind: type[R]) -> R | None:
    """The record of type ``kind`` stored at ``key``, or None if there is none (errors name the key)."""
    try:
        return kind.from_json(store.read_bytes(key), store.uri_for(key))
    except FileNotFoundError:
        return None


def read_stage_record(store: Store, run_id: str, stage: str) -> StageRecord | None:
    """The entry stage ``stage`` wrote, if it did."""
    return read_stored(store, layout.stage_record(run_id, stage), StageRecord)


def stage_records(store: Store, run_id: str, stage_names: list[str]) -> list[StageRecord]:
    """The stage entries written so far, in the job's stage order."""
    return [s for s in (read_stage_record(store, run_id, name) for name in stage_names) if s is not None]


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


def read_record(store: Store, run_id: str) -> RunRecord:
    """The run record of ``run_id`` (a unique prefix of it is enough), with its stage entries."""
    key = layout.run_record(resolve_run_id(store, run_id))
    where = store.uri_for(key)
    try:
        data = json.loads(store.read_bytes(key))
    except ValueError as e:
        raise RecordError(f"{where}: not valid JSON ({e}): the run record is damaged") from None
    record = RunRecord.from_dict(data, where)
    if isinstance(data, dict) and "stages" not in data:  # running, or its coordinator died: the stages so far
        record.stages = stage_records(store, record.run_id, record.stage_names)
    return record


def read_live(store: Store, run_id: str) -> LiveState | None:
    """The coordinator's last live state (its heartbeat), or None if it never wrote one."""
    return read_stored(store, layout.heartbeat(run_id), LiveState)


def list_runs(store: Store) -> list[str]:
    """Run ids with a run record in ``store``, oldest first."""
    suffix = "/run.json"
    ids = [e.path[len(layout.RUNS) + 1: -len(suffix)] for e in store.list(layout.RUNS)
           if e.path.endswith(suffix) and e.path.count("/") == 2]
    return sorted(ids, key=lambda r: r.rsplit("-", 3)[-3:])
