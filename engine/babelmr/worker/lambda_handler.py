"""The AWS Lambda entry point: ``babelmr.worker.lambda_handler.handler``.

The event is ``{"spec": {...}}`` or, for specs over Lambda's payload limit, ``{"spec_uri": "s3://..."}``.
The task runs in ``/tmp`` (Lambda's only writable folder) and the `TaskResult` is returned as JSON.
"""

from __future__ import annotations

import os
from typing import Any

from babelmr.spec import TaskSpec
from babelmr.worker.__main__ import read_spec_uri
from babelmr.worker.task import run_task

WORKDIR = os.environ.get("MR_WORKDIR", "/tmp")


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Run the task attempt described by ``event``."""
    if "spec_uri" in event:
        spec = TaskSpec.from_json(read_spec_uri(event["spec_uri"]))
    else:
        spec = TaskSpec.from_dict(event["spec"])
    return run_task(spec, WORKDIR).to_dict()
