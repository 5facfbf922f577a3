"""Run one task attempt: ``python -m babelmr.worker [SPEC] [--workdir DIR]``.

SPEC is a task spec JSON file, ``-`` for standard input, or a URI (``s3://…`` or a path) given as
``--spec-uri``; without either, the spec is read from the ``BABELMR_TASK_SPEC`` environment variable.
Prints the `TaskResult` as one JSON line on stdout (the last line). The Docker backend runs
containers of the base image this way.
"""

from __future__ import annotations

import argparse
import os
import sys

from babelmr.spec import RESULT_MARKER, SPEC_ENV, TaskSpec
from babelmr.store import filesystem_for
from babelmr.worker.task import run_task


def read_spec_uri(uri: str) -> str:
    """The text of a spec stored at a URI (for specs too large for a payload or an env variable)."""
    fs, path = filesystem_for(uri)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m babelmr.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", help="task spec JSON file, or - for standard input")
    parser.add_argument("--spec-uri", help="read the spec from this URI (s3://... or a path)")
    parser.add_argument("--workdir", default=os.environ.get("MR_WORKDIR", "/tmp"),
                        help="the task's working directory (default /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory's files")
    args = parser.parse_args(argv)
    if args.spec == "-":
        text = sys.stdin.read()
    elif args.spec:
        with open(args.spec, encoding="utf-8") as f:
            text = f.read()
    elif args.spec_uri:
        text = read_spec_uri(args.spec_uri)
    elif SPEC_ENV in os.environ:
        text = os.environ[SPEC_ENV]
    else:
        parser.error(f"give a spec file, --spec-uri, or set {SPEC_ENV}")
    result = run_task(TaskSpec.from_json(text), args.workdir, keep_workdir=args.keep)
    print(RESULT_MARKER + result.to_json(), flush=True)
    return 0 if result.status != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
