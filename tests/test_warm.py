"""Warm programs (``"warm": true``): one program per worker serves many tasks over fds MR_WARM_IN/MR_WARM_OUT.

Real processes throughout: the worker's `run_task` in this process starts the real program, as the local,
docker and Lambda workers do.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.spec import FileSlice, TaskInput, TaskResult, TaskSpec
from babelmr.worker import warm
from babelmr.worker.task import run_task

# A warm program in plain Python (the protocol of docs/program-contract.md), plus per-task behaviour from $ACTIONS.
PROGRAM = r'''
import json, os, shutil, sys, time

def serve(run):
    """Run `run()` once per task line on fd $MR_WARM_IN; answer each on fd $MR_WARM_OUT."""
    with open(int(os.environ["MR_WARM_IN"])) as tasks, open(int(os.environ["MR_WARM_OUT"]), "w") as replies:
        for line in tasks:
            task = json.loads(line)
            os.environ.update(task)
            os.chdir(task["MR_WORKDIR"])
            try:
                run()
                reply = {"ok": True}
            except Exception as e:
                reply = {"error": f"{type(e).__name__}: {e}"}
            sys.stdout.flush(), sys.stderr.flush()
            print(json.dumps(reply), file=replies, flush=True)

def run():
    t = os.environ["MR_TASK"]
    action = json.load(open(os.environ["ACTIONS"])).get(t, "copy")
    print(f"task {t} pid {os.getpid()} cwd {os.getcwd()}", flush=True)
    print(f"reporter:counter:warm,calls,1\nreporter:counter:warm,task,{int(t) + 1}", file=sys.stderr, flush=True)
    if action == "crash":
        os._exit(3)
    if action == "sleep":
        time.sleep(60)
    if action == "nap":
        time.sleep(1)
    if action == "error":
        raise ValueError(f"task {t} refuses")
    if action == "grow":
        global ballast
        ballast = bytearray(200 << 20)
        ballast[::4096] = b"x" * len(ballast[::4096])
    shutil.copy("in.parquet", os.environ["MR_OUTPUT"])

if os.environ.get("MR_WARM"):
    serve(run)
else:
    run()
'''


@pytest.fixture
def job(tmp_path: Path):
    """A function running task ``t`` of a stage of the test program, warm or cold, with per-task actions."""
    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"k": list(range(300)), "v": [float(i) / 7 for i in range(300)]}), src)
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    actions = tmp_path / "actions.json"
    actions.write_text("{}")

    def run(t: int, *, warm_: bool = True, acts: dict[str, str] | None = None, timeout: float | None = None,
            command: list[str] | None = None, attempt: int = 1) -> TaskResult:
        actions.write_text(json.dumps(acts or {}))
        spec = TaskSpec(run_id="r1", job="j", stage="s", task=t, attempt=attempt, store=str(tmp_path / "store"),
                        inputs=[TaskInput(name="data", kind="files", format="parquet", files=[FileSlice(str(src))])],
                        command=command or [sys.executable, str(program)], key=["k"], partitions=2,
                        timeout=timeout, env={"ACTIONS": str(actions)}, warm=warm_)
        return run_task(spec, str(tmp_path / "work" / f"t{t}-a{attempt}"), keep_workdir=True)

    yield run
    warm.close_all()


def _stdout(tmp_path: Path, t: int, attempt: int = 1) -> str:
    path = tmp_path / "work" / f"t{t}-a{attempt}" / ".babelmr" / "stdout.log"
    return path.read_text() if path.exists() else ""


def _pid(tmp_path: Path, t: int) -> int:
    return int(_stdout(tmp_path, t).split()[3])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_one_program_serves_many_tasks_with_the_same_output_as_cold(job, tmp_path: Path) -> None:
    warm_results = [job(t) for t in range(4)]
    assert all(r.status == "ok" for r in warm_results), [r.error for r in warm_results]
    assert len({_pid(tmp_path, t) for t in range(4)}) == 1  # started once
    for t in range(4):  # each task's log holds its own lines only, and it ran in its own workdir
        assert _stdout(tmp_path, t).splitlines() == [
            f"task {t} pid {_pid(tmp_path, 0)} cwd {tmp_path / 'work' / f't{t}-a1'}"]
    warm.close_all()
    cold = job(9, warm_=False)
    assert cold.status == "ok"
    for r in (warm_results[0], cold):
        assert r.commit.partition_rows == warm_results[1].commit.partition_rows
    assert pq.read_table(cold.commit.uri).equals(pq.read_table(warm_results[0].commit.uri))


def test_counters_are_per_task(job) -> None:
    results = [job(t) for t in range(3)]
    assert [r.stats.counters for r in results] == [
        {"warm.calls": 1, "warm.task": t + 1} for t in range(3)]
    assert [r.commit.counters for r in results] == [r.stats.counters for r in results]


def test_a_crash_fails_the_task_and_the_next_task_gets_a_fresh_program(job, tmp_path: Path) -> None:
    assert job(0).status == "ok"
    first = _pid(tmp_path, 0)
    crashed = job(1, acts={"1": "crash"})
    assert crashed.status == "error" and crashed.retryable
    assert "exited with code 3" in crashed.error
    assert job(2).status == "ok"
    assert _pid(tmp_path, 2) != first


def test_a_crash_on_the_first_task_is_a_crash_not_a_protocol_error(job) -> None:
    """The program read its first task and died at once: retried like a cold crash, not refused as non-speaking."""
    for t in range(3):
        crashed = job(t, acts={str(t): "crash"})
        assert crashed.status == "error" and crashed.retryable, crashed.error
        assert "exited with code 3" in crashed.error and "warm mode" not in crashed.error


def test_a_timeout_kills_the_program_and_the_next_task_restarts_it(job, tmp_path: Path) -> None:
    assert job(0, timeout=30).status == "ok"
    first = _pid(tmp_path, 0)
    start = time.monotonic()
    slow = job(1, acts={"1": "sleep"}, timeout=1)
    assert time.monotonic() - start < 10
    assert slow.status == "error" and slow.retryable and "timeout of 1 s" in slow.error
    assert not _alive(first)
    assert job(2, timeout=30).status == "ok" and _pid(tmp_path, 2) != first


def test_an_error_answer_fails_the_task_and_keeps_the_program(job, tmp_path: Path) -> None:
    assert job(0).status == "ok"
    bad = job(1, acts={"1": "error"})
    assert bad.status == "error" and bad.retryable
    assert "answered with an error: ValueError: task 1 refuses" in bad.error
    assert job(2).status == "ok" and _pid(tmp_path, 2) == _pid(tmp_path, 0)


def test_a_program_that_exits_without_reading_gets_a_clear_error(job) -> None:
    # cp runs in the warm program's folder, not the task's: it fails without ever reading fd MR_WARM_IN
    result = job(0, command=["cp", "in.parquet", "out.parquet"])
    assert result.status == "error" and not result.retryable
    assert "started in warm mode" in result.error and '"warm": false' in result.error
    assert "docs/program-contract.md" in result.error


def test_a_program_that_never_reads_its_task_is_stopped(job, tune) -> None:
    tune(warm_read_timeout=1.0)
    start = time.monotonic()
    result = job(0, command=["sleep", "60"])
    assert time.monotonic() - start < 10
    assert result.status == "error" and not result.retryable
    assert "never answered within 1 s" in result.error and '"warm": false' in result.error


def test_memory_is_the_programs_peak_during_the_task(job) -> None:
    small = job(0)
    big = job(1, acts={"1": "grow"})
    assert big.status == "ok"
    assert big.stats.program_peak_rss_bytes >= small.stats.program_peak_rss_bytes + (150 << 20)
    assert small.stats.program_peak_rss_bytes > 0


def test_a_job_with_a_warm_stage_runs_on_the_local_backend(tmp_path: Path) -> None:
    """Workers of the process pool keep their warm program between tasks: 4 tasks, at most 2 programs."""
    from conftest import write_job
    from examples import run_cli

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        pq.write_table(pa.table({"k": [i * 10 + j for j in range(10)]}), data / f"p{i}.parquet")
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "actions.json").write_text("{}")
    stage = {"name": "copy", "command": f"{sys.executable} {{job_dir}}/prog.py", "warm": True,
             "inputs": [{"name": "data", "uri": f"{data}/*.parquet"}], "split": {"files_per_task": 1},
             "key": ["k"], "partitions": 2, "env": {"ACTIONS": str(tmp_path / "actions.json")}}
    path = write_job(tmp_path, {"name": "w", "stages": [stage]})
    record = run_cli(str(path), "--store", str(tmp_path / "store"), "--concurrency", "2")
    assert record["status"] == "succeeded"
    keys = sorted(k for f in record["output"]["files"] for k in pq.read_table(f)["k"].to_pylist())
    assert keys == list(range(40))
    logs = sorted((tmp_path / "store").rglob("*.stdout"))
    pids = {p.read_text().split()[3] for p in logs}
    assert len(logs) == 4 and 1 <= len(pids) <= 2


START_LOGGING = r"""
import os, sys, time
with open(os.environ["START_LOG"], "a") as f:
    f.write(f"{os.environ['MR_STAGE']} {os.getpid()} {time.time()}\n")
"""


def test_the_local_backend_starts_each_stages_warm_programs_before_its_first_task(tmp_path: Path) -> None:
    """prepare() has every worker start the warm program of each warm stage at once: the second stage's programs
    are up before its first task, and no program is started twice (each task finds its worker's)."""
    from babelmr.backends import get_backend
    from babelmr.coordinator.run import run_job
    from babelmr.job import load_job
    from conftest import write_job

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        pq.write_table(pa.table({"k": [i * 10 + j for j in range(10)]}), data / f"p{i}.parquet")
    (tmp_path / "prog.py").write_text(START_LOGGING + PROGRAM)
    # the first stage's last tasks (the second stage has tasks 0 and 1) take a second: on a busy machine a
    # prestarted program's own start-up must not decide the test
    (tmp_path / "actions.json").write_text(json.dumps({"2": "nap", "3": "nap"}))
    starts = tmp_path / "starts.log"
    stage = {"command": f"{sys.executable} {{job_dir}}/prog.py", "warm": True, "key": ["k"], "partitions": 2}
    env = {"ACTIONS": str(tmp_path / "actions.json"), "START_LOG": str(starts)}
    path = write_job(tmp_path, {"name": "w", "env": env,
                                "stages": [{**stage, "name": "first", "split": {"files_per_task": 1},
                                            "inputs": [{"name": "data", "uri": f"{data}/*.parquet"}]},
                                           {**stage, "name": "second", "inputs": [{"name": "up", "stage": "first"}]}]})
    with get_backend("local", concurrency=2) as backend:
        record = run_job(load_job(str(path), store=str(tmp_path / "store")), backend)
    assert record.output is not None
    keys = sorted(k for f in record.output.files for k in pq.read_table(f)["k"].to_pylist())
    assert keys == list(range(40))
    started: dict[str, list[float]] = {}
    for line in starts.read_text().splitlines():
        name, _, at = line.split()
        started.setdefault(name, []).append(float(at))
    assert len(started["first"]) == len(started["second"]) == 2  # one per worker and stage: none wasted
    second = next(s for s in record.stages if s.name == "second")
    first_task = min(a.stats.started_at for a in second.task_attempts if a.stats.started_at is not None)
    assert max(started["second"]) < first_task


SHARING = r"""
import os, shutil, sys
with open(os.environ["START_LOG"], "a") as f:
    f.write(f"{sys.argv[-1]} {os.getpid()}\n")
import pyarrow as pa, pyarrow.parquet as pq
from babelmr import helper

def copy():
    shutil.copy(helper.input_path(), helper.output_path())

def tag():  # says which stage and mode ran it: the task line's, not the program's start environment
    table = pq.read_table(helper.input_path())
    return table.append_column("ran", pa.array([f"{os.environ['MR_STAGE']}/{os.environ['MR_MODE']}"] * len(table)))

# ONLY_OWN: a program serves (and says it serves) only the mode it was started with
steps = {"map": copy, "reduce": tag}
helper.run({sys.argv[-1]: steps[sys.argv[-1]]} if os.environ.get("ONLY_OWN") else steps)
"""


@pytest.mark.parametrize("only_own", [False, True])
def test_a_program_that_lists_its_modes_serves_every_stage_of_the_run(tmp_path: Path, only_own: bool) -> None:
    """The helpers answer with the modes they serve: a worker's one program then runs the tasks of both stages
    (same command and environment), each task by its own mode and MR_* values. A program that lists only its own
    mode gets a second program for the other stage."""
    from babelmr.backends import get_backend
    from babelmr.coordinator.run import run_job
    from babelmr.job import load_job
    from conftest import write_job

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        pq.write_table(pa.table({"k": [i * 10 + j for j in range(10)]}), data / f"p{i}.parquet")
    (tmp_path / "prog.py").write_text(SHARING)
    starts = tmp_path / "starts.log"
    stage = {"command": f"{sys.executable} {{job_dir}}/prog.py", "warm": True}
    env = {"START_LOG": str(starts), "PYTHONPATH": os.pathsep.join(sys.path)} | ({"ONLY_OWN": "1"} if only_own else {})
    path = write_job(tmp_path, {"name": "w", "env": env, "stages": [
        {**stage, "name": "first", "mode": "map", "split": {"files_per_task": 1}, "key": ["k"], "partitions": 3,
         "inputs": [{"name": "data", "uri": f"{data}/*.parquet"}]},
        {**stage, "name": "second", "mode": "reduce", "inputs": [{"name": "up", "stage": "first"}]}]})
    with get_backend("local", concurrency=2) as backend:
        record = run_job(load_job(str(path), store=str(tmp_path / "store")), backend)
    assert record.output is not None
    out = pa.concat_tables([pq.read_table(f) for f in record.output.files])
    assert sorted(out["k"].to_pylist()) == list(range(40))
    assert set(out["ran"].to_pylist()) == {"second/reduce"}
    started = [line.split()[0] for line in starts.read_text().splitlines()]
    assert sorted(started) == (["map", "map", "reduce", "reduce"] if only_own else ["map", "map"])


EXAMPLE_DATA = {
    "wordcount": lambda m, d: m.prepare(str(d), mb=0.3, files=2, seed=5),
    "tpch-q1": lambda m, d: m.prepare(str(d), sf=0.01, parts=2),
    "bigbench-q1": lambda m, d: m.prepare(str(d), rows=50_000, files=2, row_groups=2, seed=3),
}


def example_inputs(example: str, data: Path) -> dict[str, str]:
    """The inputs of an example's job pointed at ``data``."""
    return {"wordcount": {"text": f"{data}/*.csv"},
            "tpch-q1": {"lineitem": f"{data}/lineitem/*.parquet"},
            "bigbench-q1": {"store_sales": f"{data}/store_sales/*.parquet", "item": f"{data}/item/*.parquet"},
            }[example]


LANGUAGES = ["examples-python", "examples-go", "examples-csharp"]


@pytest.fixture(scope="session")
def local_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """The Go and C# examples built for this machine (go build, mcs) when their tools are installed: MR_CMD."""
    import shutil
    import subprocess

    from examples import ROOT

    out = tmp_path_factory.mktemp("programs")
    built = {}
    for example in EXAMPLE_DATA:
        if shutil.which("go"):
            subprocess.run(["go", "build", "-o", str(out / f"go-{example}"), "."], cwd=ROOT / "examples-go" / example,
                           check=True, env={**os.environ, "CGO_ENABLED": "0", "GOCACHE": str(out / "gocache")})
            built["examples-go", example] = str(out / f"go-{example}")
        if shutil.which("mcs") and shutil.which("mono"):
            exe = out / f"cs-{example}.exe"
            subprocess.run(["mcs", "-optimize+", "-warnaserror", f"-out:{exe}",
                            str(ROOT / "examples-csharp" / example / "Program.cs"),
                            str(ROOT / "base-image" / "lib" / "csharp" / "Babelmr.cs")], check=True)
            built["examples-csharp", example] = f"mono {exe}"
    return built


@pytest.mark.slow
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("example", list(EXAMPLE_DATA))
def test_the_examples_give_the_same_answer_warm_and_cold(example: str, language: str, tmp_path: Path,
                                                         local_programs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example on the local backend, cold then warm: both DuckDB's answer, and the same rows."""
    from examples import example_module, fetch, job_for_data, run_cli

    if language != "examples-python":
        if (language, example) not in local_programs:
            pytest.skip(f"no {'go' if 'go' in language else 'mcs/mono'} on this machine")
        monkeypatch.setenv("MR_CMD", local_programs[language, example])  # what the example's image sets
    data = tmp_path / "data"
    EXAMPLE_DATA[example](example_module("examples-python", example, "prepare"), data)
    env = {"Q1_MIN_COUNT": "3"} if example == "bigbench-q1" else None
    results = {}
    for mode in ("cold", "warm"):
        job = job_for_data(language, example, tmp_path / mode, example_inputs(example, data), env=env,
                           warm=mode == "warm")
        record = run_cli(str(job), "--store", str(tmp_path / "store"), "--concurrency", "2")
        files = fetch(record["output"]["files"], tmp_path / mode / "result")
        check = example_module("examples-python", example, "check")
        check.compare(files, str(data), 3) if example == "bigbench-q1" else check.compare(files, str(data))
        table = pa.concat_tables([pq.read_table(f) for f in files])
        results[mode] = table.sort_by([(k, "ascending") for k in table.column_names])
    assert results["warm"].equals(results["cold"])


def test_the_job_file_field_is_a_boolean(tmp_path: Path) -> None:
    from babelmr.job.loader import validate_job_data

    stage = {"name": "s", "command": "true", "inputs": [{"name": "i", "uri": "x.parquet"}]}
    assert validate_job_data({"name": "j", "stages": [{**stage, "warm": True}]}) == []
    problems = validate_job_data({"name": "j", "stages": [{**stage, "warm": "yes"}]})
    assert any(p.startswith("$.stages[0].warm") for p in problems), problems
