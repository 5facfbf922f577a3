"""Shared fixtures: a real SeaweedFS S3 server, stores of both kinds, small generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from babelmr.store.s3 import reset_clients
from s3server import SeaweedS3

pytest_plugins = ["docker_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "babelmr-test"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One SeaweedFS server for the session; its AWS settings are in os.environ while it runs."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    with SeaweedS3() as server:
        server.create_bucket(BUCKET)
        os.environ.update(server.env())
        reset_clients()
        try:
            yield server
        finally:
            for k in [k for k in os.environ if k.startswith("AWS_")]:
                del os.environ[k]
            os.environ.update(saved)
            reset_clients()


@pytest.fixture
def s3_prefix(s3_server: SeaweedS3) -> str:
    """A fresh ``s3://`` prefix on the test server."""
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URI: a temp folder, then a prefix on the real SeaweedFS server."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_prefix")


@pytest.fixture(scope="session")
def tpch_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TPC-H lineitem at scale factor 0.01 in 3 Parquet files (tpchgen-cli)."""
    out = tmp_path_factory.mktemp("tpch")
    subprocess.run(["tpchgen-cli", "parquet", "-s", "0.01", "--tables", "lineitem", "--parts", "3",
                    "--output-dir", str(out)], check=True, capture_output=True)
    return out / "lineitem"


def write_job(folder: Path, job: dict[str, Any], name: str = "job.json") -> Path:
    """Write a job file into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(job, indent=2))
    return path


def write_program(folder: Path, name: str, source: str) -> Path:
    """Write a Python program for a test job."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source)
    return path


@pytest.fixture
def tune(monkeypatch: pytest.MonkeyPatch):
    """Change engine settings for one test, e.g. ``tune(row_group_bytes=16_000)`` (fields of babelmr.settings)."""
    import dataclasses

    import babelmr.settings

    def change(**changes: Any) -> None:
        monkeypatch.setattr(babelmr.settings, "_current", dataclasses.replace(babelmr.settings.settings(), **changes))

    return change
