"""Resume a run: fingerprints, stage plans, skipping finished stages and committed tasks.

A run's store holds what makes a restart cheap: a stage with a manifest is finished; in the stage
that was running, a task with a commit record is done. `RunBook` is what `run_job` asks about a
run, new or resumed. A resume is refused when the inputs or the partitioning changed since the run
started (its result would mix two datasets) unless forced; a changed program command is allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import defaultdict
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from babelmr.backends.base import Backend
from babelmr.bounded import bounded
from babelmr.coordinator.planner import StageOutput, StagePlan
from babelmr.coordinator.records import (
    read_live,
    read_record,
    read_stage_record,
    resolve_run_id,
    write_stage_record,
)
from babelmr.errors import BabelMRError
from babelmr.job import Job, Stage
from babelmr.settings import settings
from babelmr.spec import (
    CommitRecord,
    Fingerprint,
    LiveState,
    ResumeEntry,
    RunRecord,
    StageManifest,
    StagePlanRecord,
    StageRecord,
    TaskSpec,
    ToleratedFailure,
)
from babelmr.store import layout, list_input_files
from babelmr.store.base import Store
from babelmr.store.s3 import s3_client, split_s3_uri

if TYPE_CHECKING:
    from babelmr.coordinator.run import TaskOutcome

_ATTEMPT = re.compile(r"/t(\d+)-a(\d+)[-.]")


class ResumeRefused(BabelMRError):
    """A run cannot be resumed: it succeeded, it is still running, or its inputs changed."""


def _input_definition(inp: Any) -> dict[str, Any]:
    d = asdict(inp)
    d["kind"] = type(inp).__name__
    return d


def job_structure(job: Job) -> list[dict[str, Any]]:
    """What of the job a resume must not change: stages, their inputs, split, key and partitions (not commands)."""
    structure = [{"name": s.name, "inputs": [_input_definition(i) for i in s.inputs], "split": asdict(s.split),
                  "key": list(s.key) if s.key else None, "partitions": s.partitions} for s in job.stages]
    for entry, s in zip(structure, job.stages, strict=True):
        if s.partitioner != "hash":  # only then: fingerprints of hash-partitioned jobs stay as they were
            entry["partitioner"] = {"name": s.partitioner, "salts": s.salts}
    return structure


def input_files(job: Job) -> dict[str, list[list[Any]]]:
    """Every external input URI of the job and its files: [uri, size, mtime in ns] each."""
    files: dict[str, list[list[Any]]] = {}
    for stage in job.stages:
        for inp in stage.external_inputs:
            if inp.uri in files:
                continue
            # the listing carries sizes and modification times (S3: LastModified): no request per file
            entries = list_input_files(inp.uri)
            etags = _etags([e.path for e in entries])
            files[inp.uri] = [[e.path, e.size, e.mtime_ns, etags.get(e.path)] for e in entries]
    return files


def _etags(uris: list[str]) -> dict[str, str]:
    """S3 ETags of ``uris`` (one listing of their common prefix): a rewrite within LastModified's one-second
    resolution, of the same size, still changes it. Empty for local files (their mtimes are in ns)."""
    if not uris or not uris[0].startswith("s3://"):
        return {}
    bucket = split_s3_uri(uris[0])[0]
    keys = {split_s3_uri(u)[1] for u in uris}
    found = {}
    prefix = os.path.commonprefix(list(keys))  # noqa: RUF071 - an S3 prefix is a string prefix, not a path
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"] in keys:
                found[f"s3://{bucket}/{obj['Key']}"] = obj["ETag"].strip('"')
    return found


def fingerprint(job: Job) -> Fingerprint:
    """The job file's digest, its structure and its resolved input files (names, sizes, mtimes)."""
    with open(job.path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return Fingerprint(job_file=job.path, job_sha256=digest, structure=job_structure(job), inputs=input_files(job))


def fingerprint_changes(old: Fingerprint, new: Fingerprint) -> list[str]:
    """What changed between two fingerprints that a resume must not silently accept."""
    changes = []
    old_stages = {s["name"]: s for s in old.structure}
    new_names = [s["name"] for s in new.structure]
    if list(old_stages) != new_names:
        changes.append(f"the stages changed: {list(old_stages)} -> {new_names}")
    for s in new.structure:
        before = old_stages.get(s["name"])
        if before is None:
            continue
        for field in ("inputs", "split", "key", "partitions", "partitioner"):
            if before.get(field) != s.get(field):  # (no 'partitioner': hash)
                changes.append(f"stage {s['name']!r}: '{field}' changed: {json.dumps(before.get(field))[:200]} -> "
                               f"{json.dumps(s.get(field))[:200]}")
    for uri in sorted(set(old.inputs) | set(new.inputs)):
        was = {f[0]: f[1:] for f in old.inputs.get(uri, [])}
        now = {f[0]: f[1:] for f in new.inputs.get(uri, [])}
        gone, added = sorted(set(was) - set(now)), sorted(set(now) - set(was))
        changed = sorted(p for p in set(was) & set(now) if was[p] != now[p])
        kinds = (("deleted", gone), ("added", added), ("changed (size, modification time or ETag)", changed))
        for what, paths in kinds:
            if paths:
                more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
                changes.append(f"input {uri!r}: {len(paths)} file(s) {what}: {', '.join(paths[:3])}{more}")
    return changes


def _digest(spec: TaskSpec) -> str:
    """What a task reads and how its output is partitioned: equal digests, interchangeable commits."""
    data: dict[str, Any] = {"inputs": [asdict(i) for i in spec.inputs], "key": spec.key, "partitions": spec.partitions}
    if spec.partitioner != "hash":  # range boundaries, salts: another split is another output
        data.update(partitioner=spec.partitioner, partition_options=spec.partition_options)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def coordinator_state(record: RunRecord, live: LiveState | None, now: float | None = None) -> str:
    """``alive``, ``dead`` or ``ended`` for a run's coordinator, from its record and live state (heartbeat)."""
    if record.status != "running":
        return "ended"
    now = now or time.time()
    beat = (live.updated_at if live else None) or record.updated_at or 0
    pid = live.pid if live else record.pid
    if pid and record.host == os.uname().nodename and not pid_alive(pid):
        return "dead"
    return "dead" if now - beat > settings().heartbeat_stale_seconds else "alive"


class RunBook:
    """What the coordinator knows of a run beyond this process: its record, fingerprint, finished work."""

    def __init__(self, store: Store, job: Job, record: RunRecord, resuming: bool):
        self.store, self.job, self.record, self.resuming = store, job, record, resuming
        self.run_id: str = record.run_id

    @classmethod
    def start(cls, store: Store, job: Job, backend: Backend, run_id: str) -> RunBook:
        """A new run: its record (not yet written); `write_fingerprint` follows once the record is."""
        record = RunRecord(run_id=run_id, job=job.name, job_file=job.path, store=store.uri, backend=backend.name,
                           status="running", started_at=time.time(), host=os.uname().nodename, pid=os.getpid(),
                           stage_names=[s.name for s in job.stages])
        return cls(store, job, record, resuming=False)

    def write_fingerprint(self) -> None:
        """A new run: record what a resume must find unchanged (lists the inputs: may raise `InputError`)."""
        if not self.resuming:
            self.store.write_bytes(layout.fingerprint(self.run_id), fingerprint(self.job).to_json().encode())

    @classmethod
    def resume(cls, store: Store, job: Job, backend: Backend, run_id: str, *, force: bool = False) -> RunBook:
        """Take over run ``run_id``; raises `ResumeRefused` when that would be wrong."""
        run_id = resolve_run_id(store, run_id)
        record = read_record(store, run_id)
        how = f"`babelmr run {job.path}` starts a new run"
        if record.status == "succeeded":
            raise ResumeRefused(f"run {run_id} succeeded: nothing to resume ({how})")
        state = coordinator_state(record, read_live(store, run_id))
        if state == "alive":
            raise ResumeRefused(f"run {run_id} is still running (pid {record.pid} on {record.host}, "
                                f"heartbeat fresh): `babelmr stop {run_id}` first, or `babelmr wait {run_id}`")
        if record.job != job.name:
            raise ResumeRefused(f"run {run_id} is a run of job {record.job!r}, not of {job.name!r} ({job.path})")
        key = layout.fingerprint(run_id)
        try:
            old = Fingerprint.from_json(store.read_bytes(key), store.uri_for(key))
        except FileNotFoundError:
            raise ResumeRefused(f"run {run_id} has no fingerprint (it was started by an older babelmr): "
                                f"it cannot be resumed safely; {how}") from None
        new = fingerprint(job)
        changes = fingerprint_changes(old, new)
        if changes and not force:
            listed = "\n".join(f"  - {c}" for c in changes)
            raise ResumeRefused(f"run {run_id} cannot be resumed: its inputs or partitioning changed since it "
                                f"started:\n{listed}\nits finished stages would not match the rest. {how}; or "
                                f"`babelmr resume {run_id} --force` keeps the finished work anyway")
        previous = record.status if state == "ended" else "running (coordinator died)"
        record.resumes.append(ResumeEntry(
            at=time.time(), previous_status=previous, previous_error=bounded(record.error, 2000),
            host=os.uname().nodename, pid=os.getpid(), backend=backend.name, forced=bool(changes),
            changes=changes[:50], command_changed=old.job_sha256 != new.job_sha256 and not changes))
        record.status, record.error, record.output, record.stages = "running", None, None, []
        record.host, record.pid, record.backend = os.uname().nodename, os.getpid(), backend.name
        record.stage_names = [s.name for s in job.stages]
        record.finished_at = record.seconds = None
        if changes:  # forced: the new fingerprint is what later resumes compare with
            store.write_bytes(layout.fingerprint(run_id), new.to_json().encode())
        return cls(store, job, record, resuming=True)

    def finished_stage(self, stage: Stage) -> StageOutput | None:
        """When resuming: the output of ``stage`` if its manifest exists (its entry joins the record)."""
        if not self.resuming:
            return None
        key = layout.stage_manifest(self.run_id, stage.name)
        try:
            manifest = StageManifest.from_json(self.store.read_bytes(key), self.store.uri_for(key))
        except FileNotFoundError:
            return None
        summary = read_stage_record(self.store, self.run_id, stage.name)
        if summary is None:  # the coordinator died between the manifest and the stage's entry
            from babelmr.coordinator.run import committed_entry

            summary = StageRecord(name=stage.name, status="succeeded", tasks=len(manifest.files),
                                  rows_out=sum(c.rows for c in manifest.commits),
                                  bytes_out=sum(c.bytes for c in manifest.commits),
                                  committed=[committed_entry(c) for c in manifest.commits if c.file])
        summary.skipped_on_resume = True
        self.record.stages.append(summary)
        return StageOutput(stage.name, manifest.partitions, manifest.files, manifest.commits, manifest.arrow_schema)

    def plan_concurrency(self, stage: Stage, default: int) -> int:
        """The concurrency the stage was first planned with (the default split depends on it)."""
        if self.resuming:
            plan = self._read_plan(stage.name)
            if plan is not None:
                return plan.concurrency
        return default

    def _read_plan(self, stage: str) -> StagePlanRecord | None:
        key = layout.stage_plan(self.run_id, stage)
        try:
            return StagePlanRecord.from_json(self.store.read_bytes(key), self.store.uri_for(key))
        except FileNotFoundError:
            return None

    def prepare_stage(self, plan: StagePlan, concurrency: int) -> set[int]:
        """Record the stage's plan; when resuming, the tasks already committed for this very plan (to skip).

        A commit record of a task whose inputs differ from the new plan's (possible only with --force) is
        removed with its file, so that task runs again. Attempts continue the numbering of earlier ones.
        """
        digests = [_digest(t) for t in plan.tasks]
        skip: set[int] = set()
        if self.resuming:
            stage = plan.stage.name
            planned = self._read_plan(stage)
            old = planned.digests if planned is not None else []
            for entry in self.store.list(layout.commit_prefix(self.run_id, stage)):
                commit = CommitRecord.from_json(self.store.read_bytes(entry.path), self.store.uri_for(entry.path))
                t = commit.task
                if t < len(digests) and t < len(old) and old[t] == digests[t]:
                    skip.add(t)
                else:
                    self.store.delete([p for p in (entry.path, commit.file) if p])
            last: dict[int, int] = defaultdict(int)
            for prefix in (layout.log_prefix(self.run_id, stage), layout.data_prefix(self.run_id, stage)):
                for e in self.store.list(prefix):
                    if m := _ATTEMPT.search("/" + e.path.rsplit("/", 1)[-1]):
                        last[int(m[1])] = max(last[int(m[1])], int(m[2]))
            failed = read_stage_record(self.store, self.run_id, stage)
            for a in failed.task_attempts if failed is not None else []:  # the stage failed before: its attempts
                last[a.task] = max(last[a.task], a.attempt)
            plan.tasks[:] = [t.with_attempt(last[t.task] + 1) if last[t.task] else t for t in plan.tasks]
        self.store.write_bytes(layout.stage_plan(self.run_id, plan.stage.name),
                               StagePlanRecord(concurrency=concurrency, digests=digests).to_json().encode())
        return skip

    def stage_finished(self, summary: StageRecord, skipped: set[int]) -> None:
        """Write the stage's entry of the run record on its own (not the whole record)."""
        if skipped:
            summary.resumed_tasks = sorted(skipped)
        write_stage_record(self.store, self.run_id, summary)


def tolerated_failures(store: Store, plan: StagePlan, failed: list[TaskOutcome]) -> list[ToleratedFailure] | None:
    """The failed tasks a stage tolerates (none published), or None when they are more than it allows.

    A failed task whose commit record exists (its reply was lost) is no failure: its output is published.
    """
    allowed = plan.stage.tolerated(len(plan.tasks))
    if not allowed:  # off (the default): any final failure fails the stage, as before
        return None
    run_id, stage = plan.tasks[0].run_id, plan.stage.name
    lost = [o for o in failed if not store.exists(layout.commit_record(run_id, stage, o.final.task))]
    if len(lost) > allowed:
        return None
    listed = []
    for o in lost:
        inputs = []
        for i in o.spec.inputs:
            if i.kind == "stage":
                inputs.append(f"partition {i.partition} of stage {i.source!r}")
            else:
                inputs.extend(f.uri + (f" row groups {f.row_groups}" if f.row_groups is not None else "")
                              for f in i.files)
        listed.append(ToleratedFailure(task=o.final.task, attempts=len(o.attempts), inputs=inputs,
                                       error=bounded(o.final.error, 4000)))
    return listed
