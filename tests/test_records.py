"""The typed records of babelmr.spec: JSON round trips of generated records, the version rule (a newer record is
refused with an upgrade message; one without a version, as written before versions existed, is read as
version 1), records in today's stored layout read back, and a worker refusing spec fields it does not know."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Literal, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelmr.coordinator.records import read_live, read_record, write_record, write_stage_record
from babelmr.errors import BabelMRError
from babelmr.spec import (
    RECORD_VERSION,
    AttemptRecord,
    CommitRecord,
    Fingerprint,
    LiveState,
    PartitionIndex,
    Record,
    RecordError,
    RecordVersionError,
    RunRecord,
    StageManifest,
    StagePlanRecord,
    StageRecord,
    TaskResult,
    TaskSpec,
    TaskStats,
)
from babelmr.store import layout, open_store

# JSON values as the records hold them: finite floats (JSON has no NaN), text without surrogates
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_float = st.floats(allow_nan=False, allow_infinity=False, width=64)
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _float, _text)
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=6)


def strategy(tp: Any) -> st.SearchStrategy[Any]:
    """Values of the annotated type ``tp``: records field by field (their own versions), lists, dicts, unions."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, Record):
        return records(tp)
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        return st.one_of(*(st.none() if a is type(None) else strategy(a) for a in args))
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(strategy(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(_text, strategy(args[1]), max_size=3)
    return {int: st.integers(-(2**53), 2**53), float: _float, str: _text, bool: st.booleans()}.get(tp, _json)


def records(cls: type[Record]) -> st.SearchStrategy[Any]:
    """Generated instances of the record class ``cls``."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "version" and cls.VERSIONED:
            fields[f.name] = st.integers(1, RECORD_VERSION)
        elif cls is AttemptRecord and f.name == "stats":
            fields[f.name] = records(TaskStats)
        else:
            fields[f.name] = strategy(hints[f.name])
    return st.builds(cls, **fields)


ALL = [TaskSpec, TaskResult, TaskStats, CommitRecord, PartitionIndex, StageManifest, AttemptRecord, StageRecord,
       RunRecord, LiveState, StagePlanRecord, Fingerprint]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_record_survives_its_json(cls: type[Record], data: st.DataObject) -> None:
    """to_json then from_json gives the record back, whatever its fields hold (nested records included)."""
    record = data.draw(records(cls))
    again = cls.from_json(record.to_json())
    if cls.OMIT_NONE or cls is AttemptRecord:  # None fields are left out of the JSON: compare the JSON forms
        assert again.to_dict() == json.loads(record.to_json())
    else:
        assert again == record
    assert cls.from_json(record.to_json(indent=2)).to_json() == again.to_json()


@pytest.mark.parametrize("cls", [c for c in ALL if c.VERSIONED], ids=lambda c: c.__name__)
def test_a_record_of_a_newer_version_is_refused_with_an_upgrade_message(cls: type[Record]) -> None:
    with pytest.raises(RecordVersionError) as e:
        cls.from_dict({"version": RECORD_VERSION + 1}, "runs/r/x.json")
    message = str(e.value)
    assert isinstance(e.value, BabelMRError) and "runs/r/x.json" in message
    assert f"written by babelmr record version {RECORD_VERSION + 1}" in message
    assert f"reads up to version {RECORD_VERSION}" in message and "upgrade babelmr" in message
    with pytest.raises(RecordError, match="which no babelmr writes"):
        cls.from_dict({"version": "2"}, "x")


def test_a_newer_run_record_in_a_store_is_a_clear_error_for_readers(tmp_path) -> None:
    """`babelmr show` (read_record) of a run recorded by a newer babelmr: the typed error, no traceback."""
    store = open_store(str(tmp_path / "store"))
    store.write_bytes(layout.run_record("r-1"), json.dumps({**_OLD_RUN, "version": 99}).encode())
    with pytest.raises(RecordVersionError, match="upgrade babelmr"):
        read_record(store, "r-1")


def test_a_damaged_record_names_its_file(tmp_path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.write_bytes(layout.run_record("r-1"), b'{"run_id": "r-1", "job": ')
    with pytest.raises(RecordError, match=r"run\.json: not valid JSON"):
        read_record(store, "r-1")
    store.write_bytes(layout.run_record("r-1"), json.dumps({"run_id": "r-1"}).encode())
    with pytest.raises(RecordError, match=r"run\.json: the run record lacks its field 'job'"):
        read_record(store, "r-1")


# A run record, a stage entry, a commit record and a manifest in the layout babelmr wrote before records had
# a version (tasks' stats flat in their attempt entries): readers take them as version 1.
_ATTEMPT = {"task": 0, "attempt": 1, "status": "ok", "error": None, "started_at": 10.0, "finished_at": 11.5,
            "memory_bytes": None, "s3_requests": {"GET": 2}, "import_seconds": 0.25, "rows_in": 3, "bytes_in": 99,
            "import_methods": {"d": "copy"}, "import_decoded_because": {}, "program_seconds": 1.0,
            "program_peak_rss_bytes": 5, "counters": {"g.n": 3}, "status_line": None, "export_seconds": 0.125,
            "rows_out": 3, "bytes_out": 80, "engine_peak_rss_bytes": 7, "memory_pool": "jemalloc"}
_COMMIT = {"task": 0, "attempt": 1, "file": "runs/r-1/stages/s/data/t00000-a1-ab.parquet",
           "uri": "/store/runs/r-1/stages/s/data/t00000-a1-ab.parquet", "rows": 3, "bytes": 80,
           "partition_rows": [1, 2], "format": "parquet", "schema": "k: string", "arrow_schema": "QUJD",
           "committed_at": 11.4, "counters": {"g.n": 3}}
_STAGE = {"name": "s", "tasks": 1, "skipped_tasks": [], "attempts": 1, "retries": 0,
          "speculation": {"backups": 0, "won": 0}, "seconds": 2.0, "rows_in": 3, "bytes_in": 99, "rows_out": 3,
          "bytes_out": 80, "import_seconds": 0.25, "program_seconds": 1.0, "export_seconds": 0.125,
          "engine_peak_rss_bytes": 7, "program_peak_rss_bytes": 5, "inputs": {"d": ["/data/p.parquet"]},
          "task_attempts": [_ATTEMPT], "memory_bytes": None, "cost": {"invocations": 1}, "status": "succeeded",
          "committed": [{k: _COMMIT[k] for k in ("task", "attempt", "uri", "rows", "bytes", "counters")}]}
_OLD_RUN = {"run_id": "r-1", "job": "j", "job_file": "/jobs/j.json", "store": "/store", "backend": "local",
            "status": "succeeded", "started_at": 9.0, "stages": [_STAGE], "output": {"stage": "s", "files": ["f"]},
            "error": None, "host": "h", "pid": 42, "stage_names": ["s"], "resumes": [], "emulated": False,
            "updated_at": 12.0, "finished_at": 12.0, "seconds": 3.0, "coordinator_s3_requests": {"PUT": 3},
            "cost": {"estimate": True}}


def test_records_written_before_versions_read_as_version_1(tmp_path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.write_bytes(layout.run_record("r-1"), json.dumps(_OLD_RUN).encode())
    record = read_record(store, "r-1")
    assert record.version == 1 and record.status == "succeeded" and record.output is not None
    (stage,) = record.stages
    (attempt,) = stage.task_attempts
    assert attempt.stats.import_methods == {"d": "copy"} and attempt.stats.s3_requests == {"GET": 2}
    assert attempt.counters == {"g.n": 3} and stage.counters == {"g.n": 3} and stage.output_files == [_COMMIT["uri"]]
    # written again, the layout is the same (plus the version; an attempt's None stats stay out)
    again = json.loads(record.to_json())
    assert again["version"] == 1 and again["stages"][0]["task_attempts"][0] == {
        k: v for k, v in _ATTEMPT.items() if v is not None or k == "error"}
    assert {k: v for k, v in again.items() if k != "version"}["stages"][0]["committed"] == _STAGE["committed"]
    commit = CommitRecord.from_dict(_COMMIT)
    assert commit.version == 1 and commit.partition_rows == [1, 2] and commit.skipped is None
    manifest = StageManifest.from_dict({"stage": "s", "partitions": 2, "key": ["k"], "files": [_COMMIT["uri"]],
                                        "schema": "k: string", "arrow_schema": "QUJD", "commits": [_COMMIT],
                                        "failed_tasks": []})
    assert manifest.commits == [commit]
    # the exporter has always written a version 1 partition index
    index = {"version": 1, "key": ["k"], "partitions": 2, "row_groups": [[0], [1]], "rows": [1, 2]}
    assert PartitionIndex.from_json(json.dumps(index)).row_groups == [[0], [1]]


def test_a_running_records_stages_come_from_their_own_entries(tmp_path) -> None:
    """While a run runs, run.json has no stages: read_record assembles the entries each stage wrote."""
    store = open_store(str(tmp_path / "store"))
    record = RunRecord.from_dict({**_OLD_RUN, "status": "running", "stage_names": ["s", "t"]})
    write_record(store, record)
    assert "stages" not in json.loads(store.read_bytes(layout.run_record("r-1")))
    write_stage_record(store, "r-1", StageRecord.from_dict(_STAGE))
    assert read_record(store, "r-1").stages == [StageRecord.from_dict(_STAGE)]


def test_an_older_heartbeat_still_tells_the_coordinators_age(tmp_path) -> None:
    """heartbeat.json as written before the live state was one record (its 'stage' a name, progress flat)."""
    store = open_store(str(tmp_path / "store"))
    old = {"stage": "map", "tasks": 4, "done": 1, "failed": 0, "running": [2, 3], "retries": 0, "run_id": "r-1",
           "pid": 7, "host": "h", "updated_at": 100.0, "interval": 2.0}
    store.write_bytes(layout.heartbeat("r-1"), json.dumps(old).encode())
    live = read_live(store, "r-1")
    assert live == LiveState(run_id="r-1", pid=7, host="h", updated_at=100.0, interval=2.0)


def test_a_worker_refuses_a_task_spec_field_it_does_not_know() -> None:
    """A coordinator newer than the worker's image adds a field: the worker must not run without it."""
    spec = TaskSpec("r", "j", "s", 0, 1, "/store", [], ["true"])
    assert TaskSpec.from_json(spec.to_json()) == spec
    with pytest.raises(RecordError, match=r"field\(s\) \['salt'\] this babelmr does not know.*rebuild the image"):
        TaskSpec.from_dict({**json.loads(spec.to_json()), "salt": 3})
    # a spec written before specs had a version (an older coordinator) is still run
    old = {k: v for k, v in json.loads(spec.to_json()).items() if k != "version"}
    assert TaskSpec.from_dict(old) == spec
