"""Run one task attempt from a spec file: ``python -m babelmr.worker SPEC.json [--workdir DIR]``.

Prints the `TaskResult` as JSON on stdout. The Docker backend runs containers with this command.
"""

from __future__ import annotations

import argparse
import json
import sys

from babelmr.spec import TaskSpec
from babelmr.worker.task import run_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m babelmr.worker", description=__doc__)
    parser.add_argument("spec", help="task spec JSON file, or - for standard input")
    parser.add_argument("--workdir", default="/tmp", help="the task's working directory (default /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory's files")
    args = parser.parse_args(argv)
    if args.spec == "-":
        text = sys.stdin.read()
    else:
        with open(args.spec, encoding="utf-8") as f:
            text = f.read()
    result = run_task(TaskSpec.from_json(text), args.workdir, keep_workdir=args.keep)
    print(json.dumps(result.to_dict()))
    return 0 if result.status != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
