"""Every key babelmr writes in a store, defined in one place.

    runs/<run>/run.json                                   the run record (rewritten at start, resume, end)
    runs/<run>/heartbeat.json                             the coordinator's heartbeat and progress, every few s
    runs/<run>/fingerprint.json                           the job and its resolved input files, for resume
    runs/<run>/coordinator.log                            a detached coordinator's output (local stores)
    runs/<run>/records/<stage>.json                       the stage's entry of the run record, once run
    runs/<run>/plans/<stage>.json                         the stage's plan: concurrency, a digest per task
    runs/<run>/stages/<stage>/data/t<task>-a<attempt>-<token>.parquet   an attempt's output
                                                          (.csv/.jsonl: a final stage writing a job output)
    runs/<run>/stages/<stage>/conformed/t<task>.<ext>     a final file rewritten to the stage's unified schema
    runs/<run>/stages/<stage>/commits/t<task>.json        the commit record publishing one attempt
    runs/<run>/stages/<stage>/manifest.json               the stage's committed files, once complete
    runs/<run>/stages/<stage>/logs/t<task>-a<attempt>.{stdout,stderr}   the program's output streams
    runs/<run>/stages/<stage>/logs/t<task>-a<attempt>.engine    after an unexpected error: the worker's log, traceback
    runs/<run>/stages/<stage>/logs/t<task>-a<attempt>.container a task container's stdout and stderr (docker)
    runs/<run>/stages/<stage>/status/t<task>-a<attempt>.txt   the latest status line of a running attempt
    runs/<run>/specs/<stage>/t<task>-a<attempt>.json      task specs too large for an invocation payload

A job's output location (its own folder or prefix, not in the store):

    part-<n>.<ext>                                        the final stage's committed files, numbered
    _PUBLISHING                                           while publishing: what is written and replaced
    _SUCCESS                                              written last: run id, rows, the parts (JSON)
"""

from __future__ import annotations

RUNS = "runs"


def run_prefix(run_id: str) -> str:
    return f"{RUNS}/{run_id}"


def run_record(run_id: str) -> str:
    return f"{run_prefix(run_id)}/run.json"


def stage_prefix(run_id: str, stage: str) -> str:
    return f"{run_prefix(run_id)}/stages/{stage}"


def data_prefix(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/data"


def attempt_data(run_id: str, stage: str, task: int, attempt: int, token: str, ext: str = "parquet") -> str:
    return f"{data_prefix(run_id, stage)}/t{task:05d}-a{attempt}-{token}.{ext}"


def conformed_data(run_id: str, stage: str, task: int, ext: str) -> str:
    return f"{stage_prefix(run_id, stage)}/conformed/t{task:05d}.{ext}"


OUTPUT_SUCCESS = "_SUCCESS"
OUTPUT_PUBLISHING = "_PUBLISHING"


def output_part(index: int, ext: str) -> str:
    """The key of a job output's part ``index``, relative to the output location."""
    return f"part-{index:05d}.{ext}"


def commit_prefix(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/commits"


def commit_record(run_id: str, stage: str, task: int) -> str:
    return f"{commit_prefix(run_id, stage)}/t{task:05d}.json"


def stage_manifest(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/manifest.json"


def log_prefix(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/logs"


def task_log(run_id: str, stage: str, task: int, attempt: int, stream: str) -> str:
    """An attempt's log: ``stream`` is stdout, stderr (the program's), engine (the worker's) or container."""
    return f"{log_prefix(run_id, stage)}/t{task:05d}-a{attempt}.{stream}"


def task_spec(run_id: str, stage: str, task: int, attempt: int) -> str:
    return f"{run_prefix(run_id)}/specs/{stage}/t{task:05d}-a{attempt}.json"


def status_prefix(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/status"


def task_status(run_id: str, stage: str, task: int, attempt: int) -> str:
    return f"{status_prefix(run_id, stage)}/t{task:05d}-a{attempt}.txt"


def heartbeat(run_id: str) -> str:
    return f"{run_prefix(run_id)}/heartbeat.json"


def fingerprint(run_id: str) -> str:
    return f"{run_prefix(run_id)}/fingerprint.json"


def coordinator_log(run_id: str) -> str:
    return f"{run_prefix(run_id)}/coordinator.log"


# Not under stages/<stage>/: the coordinator must not create that folder before the stage's tasks (in a
# container, as another user) create theirs in it.
def stage_record(run_id: str, stage: str) -> str:
    return f"{run_prefix(run_id)}/records/{stage}.json"


def stage_plan(run_id: str, stage: str) -> str:
    return f"{run_prefix(run_id)}/plans/{stage}.json"
