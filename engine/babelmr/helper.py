"""babelmr's helper for Python programs (docs/program-contract.md): the program side of the contract.

A program is its steps and one call::

    from babelmr import helper

    def map_lines(): ...          # reads helper.input_path(); returns a DataFrame/Table or writes helper.output_path()
    def reduce_counts(): ...

    if __name__ == "__main__":
        helper.run({"map": map_lines, "reduce": reduce_counts})

`run` picks the step of the stage's mode (the last argument) and runs it once, or in warm mode
(``MR_WARM`` set) once per task; a pandas DataFrame or pyarrow Table a step returns is written to the task's
output in the stage's program format (Parquet or CSV). Standard library only (pandas is used only through the frame a
step returns), so importing it costs a program nothing. It is part of the babelmr package: in the base
image and wherever babelmr is installed.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any


def program_format() -> str:
    """The stage's program format: ``csv``, ``jsonl`` or ``parquet`` (``MR_FORMAT``)."""
    return os.environ.get("MR_FORMAT", "csv")


def input_path(name: str | None = None) -> str:
    """The path of the stage's only input (``MR_INPUT``), or of the input ``name`` of several (``MR_INPUTS``)."""
    if name is None:
        return os.environ.get("MR_INPUT") or f"in.{program_format()}"
    inputs = json.loads(os.environ.get("MR_INPUTS") or "{}")
    return inputs.get(name) or f"in_{name}.{program_format()}"


def output_path() -> str:
    """The path to write the task's output to (``MR_OUTPUT``)."""
    return os.environ.get("MR_OUTPUT") or f"out.{program_format()}"


def counter(group: str, name: str, amount: int = 1) -> None:
    """Add ``amount`` to the task's counter ``group``/``name`` (a Hadoop Streaming reporter line on stderr)."""
    print(f"reporter:counter:{group},{name},{amount}", file=sys.stderr, flush=True)


def status(message: str) -> None:
    """Set the task's status line, shown while it runs."""
    print("reporter:status:" + message.replace("\n", " "), file=sys.stderr, flush=True)


def write(frame: Any) -> None:
    """Write a pandas DataFrame or a pyarrow Table to the task's output in the stage's format: Parquet or CSV."""
    path, fmt = output_path(), program_format()
    if type(frame).__module__.startswith("pyarrow"):  # imported only for a Table: the helper stays light
        if fmt == "parquet":
            import pyarrow.parquet as pq
            pq.write_table(frame, path)
            return
        if fmt == "csv":  # NULL an empty field, the empty string "": babelmr's CSV convention
            import pyarrow.csv as pacsv
            pacsv.write_csv(frame, path)
            return
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "csv":
        frame.to_csv(path, index=False)  # NULL (NaN, None) and the empty string are both an empty field
    else:  # pandas' to_json rounds floats to 15 digits: a JSON Lines step writes exactly what it means
        raise ValueError(f"the helper writes a returned table as parquet or csv, not {fmt}: write "
                         f"{path} in the step and return None")


def _run_step(step: Callable[[], Any]) -> None:
    result = step()
    if result is not None:  # a step that wrote its output itself returns None
        write(result)


def _serve(steps: Mapping[str, Callable[[], Any]], mode: str) -> None:
    """The warm protocol: a JSON line of the task's MR_* variables per task on fd $MR_WARM_IN, an answer
    line per task on fd $MR_WARM_OUT; end of file: no more tasks. Each task runs the step of its own MR_MODE
    (``mode``, the program's argument, when it has none), and each answer lists the modes this program
    serves, so the engine may hand it the tasks of the run's other stages with the same command."""
    previous: dict[str, str] = {}
    modes = list(steps)
    with open(int(os.environ["MR_WARM_IN"])) as tasks, open(int(os.environ["MR_WARM_OUT"]), "w") as replies:
        for line in tasks:
            try:
                task = json.loads(line)
                for name in previous.keys() - task.keys():
                    os.environ.pop(name, None)  # the last task's MR_INPUT must not leak into one without it
                os.environ.update(task)
                previous = task
                os.chdir(task["MR_WORKDIR"])
                step = task.get("MR_MODE") or mode
                if step not in steps:
                    raise ValueError(f"no step {step!r}: this program has {', '.join(modes)}")
                _run_step(steps[step])
                reply: dict[str, Any] = {"ok": True, "modes": modes}
            except Exception as e:  # the task fails, the program keeps serving
                traceback.print_exc()
                reply = {"error": f"{type(e).__name__}: {e}", "modes": modes}
            sys.stdout.flush()
            sys.stderr.flush()
            print(json.dumps(reply), file=replies, flush=True)


def run(steps: Mapping[str, Callable[[], Any]]) -> None:
    """Run the step named by the last argument (the stage's mode): once, or once per task in warm mode.

    An unknown mode prints the usage and exits 2; a step's exception fails the task (cold: its traceback
    and exit code 1; warm: an error answer, the traceback in the task's log, and the program serves on).
    """
    if len(sys.argv) < 2 or sys.argv[-1] not in steps:
        print(f"usage: {os.path.basename(sys.argv[0])} {'|'.join(steps)}", file=sys.stderr)
        sys.exit(2)
    if os.environ.get("MR_WARM"):
        _serve(steps, sys.argv[-1])
    else:
        _run_step(steps[sys.argv[-1]])
