"""A long-lived worker in a container, for warm stages on the docker backend: ``python -m babelmr.worker.warm_server``.

It listens on a Unix socket and runs one task spec per connection with `run_task`, in this process, so the
stage's warm program (`babelmr.worker.warm`) survives between tasks as it does in a local worker process or a
Lambda execution environment. The backend hands it a task with ``docker exec`` of `CLIENT`, which sends the
spec from ``BABELMR_TASK_SPEC`` and prints the `TaskResult` line as ``python -m babelmr.worker`` does.
"""

from __future__ import annotations

import os
import socket
import sys
from functools import partial

from babelmr.spec import RESULT_MARKER, SPEC_ENV

SOCKET = "/tmp/.babelmr-worker.sock"

# Runs in the container per task: only the standard library, so it starts in a few tens of milliseconds.
CLIENT = """
import os, socket, sys, time
s, deadline = socket.socket(socket.AF_UNIX), time.monotonic() + 120
while True:  # a fresh container's worker binds the socket after importing the engine
    try:
        s.connect(sys.argv[1])
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.02)
s.sendall(os.environ[__SPEC_ENV__].encode())
s.shutdown(socket.SHUT_WR)
print(__RESULT_MARKER__ + b"".join(iter(lambda: s.recv(1 << 16), b"")).decode(), flush=True)
""".replace("__SPEC_ENV__", repr(SPEC_ENV)).replace("__RESULT_MARKER__", repr(RESULT_MARKER))


def serve(path: str = SOCKET, workdir: str | None = None) -> None:
    """Run the task spec of each connection and answer with its result, one connection at a time."""
    from babelmr.spec import TaskResult, TaskSpec
    from babelmr.worker.task import run_task

    workdir = workdir or os.environ.get("MR_WORKDIR", "/tmp")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(8)
        print("babelmr warm worker listening on " + path, flush=True)
        while True:
            conn, _ = server.accept()
            with conn:
                data = b"".join(iter(partial(conn.recv, 1 << 16), b""))
                try:
                    answer = run_task(TaskSpec.from_json(data.decode()), workdir)
                except Exception as e:  # a spec this engine cannot read: an image of another babelmr version?
                    answer = TaskResult("error", "?", -1, 0, retryable=False,
                                        error=f"the warm worker cannot read the task spec: {type(e).__name__}: {e}")
                conn.sendall(answer.to_json().encode())


if __name__ == "__main__":
    serve(*sys.argv[1:2])
