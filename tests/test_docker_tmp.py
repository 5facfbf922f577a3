"""A docker task's /tmp is disk, not memory, and is limited like Lambda's ephemeral storage."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import babelmr
from babelmr.errors import JobFailed
from conftest import write_job

# Writes ``MB`` MiB to a scratch file in /tmp (the task's working directory) in 8 MiB blocks, holds it a moment
# (the watchdog measures every 0.5 s), fails if /tmp is a tmpfs, then copies its input to its output.
PROGRAM = """
import os, shutil, sys, time
mounts = [line.split() for line in open('/proc/mounts')]
if any(m[1] == '/tmp' and m[2] == 'tmpfs' for m in mounts):
    sys.exit('/tmp is a tmpfs: it counts against the memory')
block = b'x' * (8 << 20)
with open('/tmp/scratch.bin', 'wb') as f:
    for _ in range(int(os.environ['MB']) // 8):
        f.write(block)
        f.flush()
time.sleep(2)
os.remove('/tmp/scratch.bin')
shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])
"""


def _job(tmp_path: Path, mb: int) -> Path:
    (tmp_path / "data").mkdir(parents=True)
    pq.write_table(pa.table({"k": list(range(100))}), tmp_path / "data" / "part.parquet")
    return write_job(tmp_path, {"name": "scratch", "stages": [{
        "name": "write", "command": ["python3", "-c", PROGRAM], "env": {"MB": str(mb)}, "retries": 0,
        "inputs": [{"name": "d", "uri": "data/*.parquet"}]}]})


@pytest.mark.docker
def test_a_task_writes_more_to_tmp_than_its_memory(base_image, tmp_path: Path) -> None:
    run = babelmr.run(_job(tmp_path, 512), backend="docker", memory="256MiB", ephemeral_storage="1GiB")
    assert run.succeeded and run.stage("write").rows_out == 100


@pytest.mark.docker
def test_a_task_writing_more_than_its_ephemeral_storage_fails_clearly(base_image, tmp_path: Path) -> None:
    with pytest.raises(JobFailed) as failed:
        babelmr.run(_job(tmp_path, 256), backend="docker", memory="512MiB", ephemeral_storage="64MiB")
    message = str(failed.value)
    assert "more than its ephemeral storage of 64 MiB" in message and "--ephemeral-storage" in message, message
