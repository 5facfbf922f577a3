"""Program start-up per task, cold vs warm, per language: N no-op tasks of a trivial program on the local backend.

The program copies its 3-row input to its output; it is written with babelmr's helper for its language. Cold,
babelmr starts it for every task; warm (``"warm": true``), the worker starts it once and hands it each task over
fds MR_WARM_IN/MR_WARM_OUT (docs/program-contract.md). Per task it reports the program's time as the engine
measures it (start to exit cold, task line to answer warm) and the whole task's time at the backend (import,
program, export, commit). Go and C# run when ``go`` and ``mcs``/``mono`` are installed. Target: warm Python
start ≤ 10 ms per task.

    python -m benchmarks.startup [--tasks 50] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

WARM_PYTHON_TARGET_MS = 10.0

# The trivial program in each language, through babelmr's helper for it (docs/program-contract.md, "Helpers"):
# the start-up measured is what a program written with the helper pays.
PYTHON = '''import os, shutil
{imports}
from babelmr import helper

def copy():
    shutil.copyfile(helper.input_path(), helper.output_path())

helper.run({{"copy": copy}})
'''

GO = '''package main

import (
	"io"
	"os"

	"babelmr"
)

func copyInput() error {
	in, err := os.Open(babelmr.Input())
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(babelmr.Output())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Close()
}

func main() { babelmr.Run(babelmr.Steps{"copy": copyInput}) }
'''

CSHARP = r'''using System;
using System.Collections.Generic;
using System.IO;

static class Copy
{
    static void Run() { File.Copy(Babelmr.Input(), Babelmr.Output, true); }

    static int Main(string[] args) { return Babelmr.Run(args, new Dictionary<string, Action> { { "copy", Run } }); }
}
'''


def programs(work: Path) -> dict[str, list[str]]:
    """Language -> the command of the trivial program, built where the tools are installed."""
    work.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    for name, imports in (("Python", ""), ("Python + pandas", "import pandas")):
        path = work / f"copy_{len(found)}.py"
        path.write_text(PYTHON.format(imports=imports))
        found[name] = [sys.executable, str(path)]
    if shutil.which("go"):
        src = work / "go"
        src.mkdir(exist_ok=True)
        (src / "main.go").write_text(GO)
        (src / "go.mod").write_text(f"module copy\n\ngo 1.19\n\nrequire babelmr v0.0.0\n\n"
                                    f"replace babelmr => {ROOT / 'base-image' / 'lib' / 'go'}\n")
        subprocess.run(["go", "build", "-o", str(work / "copy-go"), "."], cwd=src, check=True, capture_output=True,
                       env={**__import__("os").environ, "CGO_ENABLED": "0", "GOCACHE": str(work / "gocache")})
        found["Go"] = [str(work / "copy-go")]
    if shutil.which("mcs") and shutil.which("mono"):
        (work / "Copy.cs").write_text(CSHARP)
        subprocess.run(["mcs", "-optimize+", f"-out:{work / 'copy.exe'}", str(work / "Copy.cs"),
                        str(ROOT / "base-image" / "lib" / "csharp" / "Babelmr.cs")], check=True, capture_output=True)
        found["C# (Mono)"] = ["mono", str(work / "copy.exe")]
    return found


def run_startup(work: Path, tasks: int = 50) -> list[dict[str, Any]]:
    """Per language: median program and task milliseconds over ``tasks`` no-op tasks, cold and warm."""
    from babelmr.backends.local import LocalBackend
    from babelmr.spec import FileSlice, TaskInput, TaskSpec

    work.mkdir(parents=True, exist_ok=True)
    data = work / "in.csv"
    data.write_text("x\n1\n2\n3\n")
    rows = []
    for language, command in programs(work / "programs").items():
        measured: dict[str, dict[str, float]] = {}
        for mode in ("cold", "warm"):
            with LocalBackend(concurrency=1) as backend:
                program, task = [], []
                for t in range(tasks + 1):  # task 0 starts the worker (and the warm program): not counted
                    spec = TaskSpec(run_id=f"startup-{mode}", job="startup", stage=language, task=t, attempt=1,
                                    store=str(work / "store"), inputs=[TaskInput(
                                        name="in", kind="files", format="csv", files=[FileSlice(str(data))])],
                                    command=command, mode="copy", program_format="csv", schema={"x": "int64"},
                                    warm=mode == "warm")
                    start = time.perf_counter()
                    result = backend.run_task(spec)
                    seconds = time.perf_counter() - start
                    if result.status != "ok":
                        raise RuntimeError(f"{language} {mode}: {result.error}")
                    if t:
                        program.append(result.stats.program_seconds or 0.0)
                        task.append(seconds)
            measured[mode] = {"program_ms": statistics.median(program) * 1000,
                              "task_ms": statistics.median(task) * 1000}
        shutil.rmtree(work / "store", ignore_errors=True)
        row: dict[str, Any] = {
            "block": "program start-up", "case": f"{language}, {tasks} no-op tasks", "variant": "babelmr local",
            "cold_program_ms": measured["cold"]["program_ms"], "warm_program_ms": measured["warm"]["program_ms"],
            "cold_task_ms": measured["cold"]["task_ms"], "warm_task_ms": measured["warm"]["task_ms"],
            "definition": "median per task of the program's time as the engine measures it (start to exit cold, "
                          "task line to answer warm) and of the whole task at the backend; one worker"}
        if language == "Python":
            row["target"] = f"warm ≤ {WARM_PYTHON_TARGET_MS:g} ms"
            row["meets_target"] = row["warm_program_ms"] <= WARM_PYTHON_TARGET_MS
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows side by side: cold and warm milliseconds per task."""
    lines = [f"{'language':18} {'program cold':>13} {'program warm':>13} {'task cold':>10} {'task warm':>10}"]
    for r in rows:
        verdict = f"  (target {r['target']}: {'met' if r['meets_target'] else 'MISSED'})" if "target" in r else ""
        lines.append(f"{r['case'].split(',')[0]:18} {r['cold_program_ms']:10.1f} ms {r['warm_program_ms']:10.1f} ms "
                     f"{r['cold_task_ms']:7.1f} ms {r['warm_task_ms']:7.1f} ms{verdict}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50, help="tasks per language and mode (default 50)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="babelmr-startup-") as tmp:
        print(format_table(run_startup(args.work or Path(tmp), args.tasks)))


if __name__ == "__main__":
    main()
