"""The program helpers (docs/program-contract.md, "Helpers"): Go's base-image/lib/go, C#'s
base-image/lib/csharp/Babelmr.cs and
Python's babelmr.helper, each in a real program run by the worker's warm and cold machinery.

One program per language, the same behaviour: its step `copy` reads the only input (or, without one, the
input named `b`), writes the text to the output, counts one `t.calls`, and fails on the text `fail`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelmr.spec import FileSlice, TaskInput, TaskSpec
from babelmr.worker import warm
from babelmr.worker.program import run_program
from babelmr.worker.task import run_task

ROOT = Path(__file__).resolve().parent.parent

PYTHON = '''
from babelmr import helper
import os

def copy():
    text = open(helper.input_path() if os.environ.get("MR_INPUT") else helper.input_path("b")).read()
    helper.counter("t", "calls", 1)
    if text == "fail":
        raise ValueError("refused")
    with open(helper.output_path(), "w") as f:
        f.write(text)

helper.run({"copy": copy})
'''

GO = '''package main

import (
	"errors"
	"os"

	"babelmr"
)

func main() { babelmr.Run(babelmr.Steps{"copy": copyInput}) }

func copyInput() error {
	path := babelmr.Input()
	if os.Getenv("MR_INPUT") == "" {
		path = babelmr.NamedInput("b")
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	babelmr.Counter("t", "calls", 1)
	if string(text) == "fail" {
		return errors.New("refused")
	}
	return os.WriteFile(babelmr.Output(), text, 0o644)
}
'''

CSHARP = '''using System;
using System.Collections.Generic;
using System.IO;

static class P
{
    static void Copy()
    {
        string text = File.ReadAllText(Environment.GetEnvironmentVariable("MR_INPUT") != null
                                       ? Babelmr.Input() : Babelmr.Input("b"));
        Babelmr.Counter("t", "calls", 1);
        if (text == "fail") throw new InvalidOperationException("refused");
        File.WriteAllText(Babelmr.Output, text);
    }

    static int Main(string[] args) { return Babelmr.Run(args, new Dictionary<string, Action> { { "copy", Copy } }); }
}
'''


# Writes rows whose values CSV easily gets wrong: the empty string, NULL, quotes, commas, a leading space,
# NaN and the infinities, the extreme int64.
GO_CSV = '''package main

import (
	"math"

	"babelmr"
)

func main() { babelmr.Run(babelmr.Steps{"write": write}) }

func write() error {
	out, err := babelmr.CreateCSV(babelmr.Output(), "s", "f", "i")
	if err != nil {
		return err
	}
	defer out.Close()
	out.Write("", 0.1, int64(1))
	out.Write(nil, math.NaN(), nil)
	out.Write("a,b", math.Inf(1), babelmr.NullInt{Int64: 7, Valid: true})
	out.Write("q\\"u", math.Inf(-1), babelmr.NullInt{})
	out.Write(" x", 1e300, int64(math.MinInt64))
	return out.Close()
}
'''

# Copies its CSV input field by field through the helper's reader and writer.
CSHARP_CSV = '''using System;
using System.Collections.Generic;

static class P
{
    static void Copy()
    {
        using (var input = new CsvReader())
        using (var output = new CsvWriter(Babelmr.Output, input.Header))
        {
            var row = new List<string>();
            while (input.Read(row))
            {
                foreach (string field in row) output.Field(field);
                output.EndRow();
            }
        }
    }

    static int Main(string[] args) { return Babelmr.Run(args, new Dictionary<string, Action> { { "copy", Copy } }); }
}
'''


def _build(language: str, folder: Path, go: str = GO, csharp: str = CSHARP) -> list[str]:
    """The command of the test program in ``language``, built in ``folder`` (skipped without the tools)."""
    folder.mkdir(parents=True, exist_ok=True)
    if language == "python":
        (folder / "prog.py").write_text(PYTHON)
        return [sys.executable, str(folder / "prog.py")]
    if language == "go":
        if not shutil.which("go"):
            pytest.skip("no go on this machine")
        (folder / "main.go").write_text(go)
        (folder / "go.mod").write_text(f"module t\n\ngo 1.19\n\nrequire babelmr v0.0.0\n\n"
                                       f"replace babelmr => {ROOT / 'base-image' / 'lib' / 'go'}\n")
        subprocess.run(["go", "build", "-o", "prog", "."], cwd=folder, check=True,
                       env={**os.environ, "CGO_ENABLED": "0", "GOCACHE": str(folder / "gocache")})
        return [str(folder / "prog")]
    if not (shutil.which("mcs") and shutil.which("mono")):
        pytest.skip("no mcs/mono on this machine")
    (folder / "Program.cs").write_text(csharp)
    subprocess.run(["mcs", "-warnaserror", f"-out:{folder / 'prog.exe'}", str(folder / "Program.cs"),
                    str(ROOT / "base-image" / "lib" / "csharp" / "Babelmr.cs")], check=True)
    return ["mono", str(folder / "prog.exe")]


@pytest.fixture(params=["python", "go", "csharp"])
def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return _build(request.param, tmp_path_factory.mktemp(request.param))


def _env() -> dict[str, str]:
    """The worker's environment with this checkout's engine first (the Python helper is in it)."""
    path = os.pathsep.join([str(ROOT / "engine"), os.environ.get("PYTHONPATH", "")])
    return {k: v for k, v in os.environ.items() if not k.startswith("MR_")} | {"PYTHONPATH": path}


def _task(tmp_path: Path, t: int, text: str, named: bool = False) -> tuple[dict[str, str], Path, Path]:
    """A task's environment, its working directory and its log folder; its input holds ``text``."""
    work = tmp_path / f"t{t}"
    logs = work / ".logs"
    logs.mkdir(parents=True)
    name = "b" if named else "a"
    (work / f"in_{name}.txt").write_text(text)
    env = {"MR_TASK": str(t), "MR_ATTEMPT": "1", "MR_WORKDIR": str(work), "MR_OUTPUT": str(work / "out.txt"),
           "MR_FORMAT": "txt", "MR_INPUTS": json.dumps({name: str(work / f"in_{name}.txt")})}
    if not named:
        env["MR_INPUT"] = str(work / f"in_{name}.txt")
    return env, work, logs


def test_warm_tasks_run_through_the_helper(program: list[str], tmp_path: Path) -> None:
    """Many tasks, one process; an error fails only its task; a variable of the last task does not leak."""
    pids = set()
    try:
        for t, (text, named) in enumerate([("one", False), ("two", True), ("fail", False), ("four", False)]):
            env, work, logs = _task(tmp_path, t, text, named)
            run = warm.run_warm(program, "copy", shell=False, env=_env() | env, workdir=str(work),
                                log_dir=str(logs), timeout=60, label=f"t{t}")
            pids |= {p.proc.pid for p in warm._idle}
            assert run.counters == {"t.calls": 1}, Path(run.stderr_path).read_text()
            if text == "fail":
                assert run.failure and "refused" in run.failure and run.retryable
                assert "refused" in Path(run.stderr_path).read_text()  # the whole error in the task's log
            else:
                assert run.failure is None, (run.failure, Path(run.stderr_path).read_text())
                # task 1 has no MR_INPUT: reading task 0's input instead would copy "one"
                assert (work / "out.txt").read_text() == text
        assert len(pids) == 1
    finally:
        warm.close_all()


def test_cold_failure_and_unknown_mode(program: list[str], tmp_path: Path) -> None:
    env, work, logs = _task(tmp_path, 0, "fail")
    run = run_program(program, "copy", shell=False, env=_env() | env, workdir=str(work), log_dir=str(logs),
                      timeout=60, label="t0")
    stderr = Path(run.stderr_path).read_text()
    assert run.exit_code == 1 and "refused" in stderr and "copy" in stderr
    run = run_program(program, "sort", shell=False, env=_env() | env, workdir=str(work), log_dir=str(logs),
                      timeout=60, label="t0")
    assert run.exit_code == 2 and re.search(r"usage: .*copy", Path(run.stderr_path).read_text())
    env, work, logs = _task(tmp_path, 1, "hello")
    run = run_program(program, "copy", shell=False, env=_env() | env, workdir=str(work), log_dir=str(logs),
                      timeout=60, label="t1")
    assert run.exit_code == 0 and (work / "out.txt").read_text() == "hello"


def test_the_documented_python_snippet_speaks_the_protocol(tmp_path: Path) -> None:
    """The ≤10-line standard-library snippet in docs/program-contract.md, as a user copies it."""
    doc = (ROOT / "docs" / "program-contract.md").read_text()
    snippet = re.search(r"```python\n(def serve\(run\):.*?)```", doc, re.S).group(1)
    assert len(snippet.splitlines()) <= 10
    prog = tmp_path / "prog.py"
    prog.write_text("import json, os, shutil, sys\n" + snippet + "\ndef run():\n"
                    "    shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])\n"
                    "    if open(os.environ['MR_INPUT']).read() == 'fail':\n        raise ValueError('refused')\n"
                    "serve(run) if os.environ.get('MR_WARM') else run()\n")
    try:
        for t, text in enumerate(["one", "fail", "three"]):
            env, work, logs = _task(tmp_path, t, text)
            run = warm.run_warm([sys.executable, str(prog)], None, shell=False, env=_env() | env,
                                workdir=str(work), log_dir=str(logs), timeout=60, label=f"t{t}")
            assert (run.failure is None) == (text != "fail"), run.failure
            assert (work / "out.txt").read_text() == text
    finally:
        warm.close_all()


def _csv_task(command: list[str], mode: str, source: Path, schema: dict[str, str], tmp_path: Path) -> pa.Table:
    """The table one task of the program makes from ``source`` with CSV as its program format."""
    spec = TaskSpec(run_id="r1", job="j", stage="s", task=0, attempt=1, store=str(tmp_path / "store"),
                    inputs=[TaskInput(name="data", kind="files", format="parquet", files=[FileSlice(str(source))])],
                    command=command, mode=mode, program_format="csv", schema=schema)
    result = run_task(spec, str(tmp_path / "work"), keep_workdir=True)
    assert result.status == "ok", result.error
    return pq.read_table(result.commit.uri)


def test_the_go_csv_writer_keeps_null_empty_strings_and_floats_exact(tmp_path: Path) -> None:
    command = _build("go", tmp_path / "go", go=GO_CSV)
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": [1]}), source)
    got = _csv_task(command, "write", source, {"s": "string", "f": "float64", "i": "int64"}, tmp_path)
    assert got.column("s").to_pylist() == ["", None, "a,b", 'q"u', " x"]
    f = got.column("f").to_pylist()
    assert f[0] == 0.1 and f[1] != f[1] and f[2:] == [float("inf"), float("-inf"), 1e300]
    assert got.column("i").to_pylist() == [1, None, 7, None, -(2 ** 63)]


def test_the_csharp_csv_reader_and_writer_keep_null_and_empty_strings_apart(tmp_path: Path) -> None:
    command = _build("csharp", tmp_path / "cs", csharp=CSHARP_CSV)
    source = tmp_path / "in.parquet"
    table = pa.table({"s": ["", None, "a,b", 'q"u', " x", "plain"], "i": [1, None, 3, None, -(2 ** 63), 2 ** 63 - 1]})
    pq.write_table(table, source)
    got = _csv_task(command, "copy", source, {"s": "string", "i": "int64"}, tmp_path)
    assert got.to_pylist() == table.to_pylist()


def test_a_python_step_returning_a_pyarrow_table_keeps_null_and_empty_strings_apart(tmp_path: Path) -> None:
    """babelmr.helper writes a returned Table in the stage's format; through CSV, NULL and "" stay apart."""
    program = ("import pyarrow as pa\nfrom babelmr import helper\n"
               "helper.run({'write': lambda: pa.table({'s': ['', None, 'a,b', 'q\"u', ' x'], "
               "'i': pa.array([1, None, 3, None, -(2 ** 63)], pa.int64())})})\n")
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": [1]}), source)
    got = _csv_task([sys.executable, "-c", program], "write", source, {"s": "string", "i": "int64"}, tmp_path)
    assert got.column("s").to_pylist() == ["", None, "a,b", 'q"u', " x"]
    assert got.column("i").to_pylist() == [1, None, 3, None, -(2 ** 63)]
