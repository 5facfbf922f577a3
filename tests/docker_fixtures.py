"""Docker fixtures, a pytest plugin: the engine's client and the base image, built once per session.

The base image is rebuilt only when the checkout's sources (Dockerfile, base-image/, engine/) differ
from those it was built from (its ``org.babelmr.source-hash`` label), so a suite run costs one
build at most.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from babelmr.errors import ImageError
from babelmr.images import (
    BASE_TAG,
    BuildReport,
    build_base_image,
    ensure_base_image,
    ensure_docker,
    image_exists,
    source_hash,
)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """A client of the local Docker engine (tests/run.sh starts one); fails the test if none answers."""
    try:
        return ensure_docker()
    except ImageError as e:
        pytest.fail(f"{e}\n(tests/run.sh starts dockerd when it can; or deselect these tests with -m 'not docker')")


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> BuildReport:
    """The ``babelmr-base:latest`` image, built from the checkout unless an up-to-date one exists."""
    try:
        return ensure_base_image(BASE_TAG, quiet=True)
    except ImageError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def checkout_image(docker_client: docker.DockerClient) -> str:
    """The base image built from this checkout, under a tag of its own sources' hash.

    ``babelmr-base:latest`` is one tag for every checkout on the machine: another checkout rebuilding it
    while these tests run would put other engine sources in their containers.
    """
    tag = f"babelmr-base:checkout-{source_hash()}"
    if not image_exists(tag):
        build_base_image(tag, quiet=True)
    return tag


def build_job_image(folder: Path, tag: str, files: dict[str, str]) -> float:
    """Write ``files`` (a Dockerfile and the job's files) into ``folder``, build it with the CLI; the seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    done = subprocess.run([sys.executable, "-m", "babelmr", "image", "build", str(folder), "--tag", tag],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"babelmr image build failed:\n{done.stdout}\n{done.stderr}"
    report = next((line for line in done.stderr.splitlines() if line.startswith("built ")), "")
    assert tag in report, done.stderr
    return float(report.split(" built in ")[1].split(" s")[0])


def remove_image(client: docker.DockerClient, tag: str) -> None:
    """Remove an image the tests built; never fail a test over it."""
    with contextlib.suppress(docker.errors.DockerException):
        client.images.remove(tag, force=True)


@contextlib.contextmanager
def container(client: docker.DockerClient, image: str, **options: Any) -> Iterator[Container]:
    """Run a detached container and always remove it afterwards."""
    started = client.containers.run(image, detach=True, **options)
    try:
        yield started
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            started.remove(force=True)
