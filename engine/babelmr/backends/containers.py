"""What the Docker and Lambda-emulator backends share: how a task's container is set up.

A task container sees the store the way the coordinator does: a local store (and local input
folders) mounted at the same absolute paths, or S3 through the coordinator's AWS settings (on the
host network when the endpoint is on loopback). Memory and CPU mirror Lambda: CPU share grows with
memory (1,769 MB = one vCPU) and ``/tmp`` is a tmpfs sized like Lambda's ephemeral storage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
from docker.types import Mount

from babelmr.errors import BabelMRError
from babelmr.spec import TaskSpec
from babelmr.store.base import Store
from babelmr.store.local import LocalStore
from babelmr.store.s3 import endpoint_url

BASE_IMAGE = "babelmr-base:latest"
LAMBDA_MB_PER_VCPU = 1769
DEFAULT_MEMORY = 2048 << 20
DEFAULT_EPHEMERAL = 512 << 20
LABEL = "babelmr.backend"
RUN_LABEL = "babelmr.run"


@dataclass(frozen=True)
class ContainerLimits:
    """Per-task resources; ``memory`` is what the program and engine get, like Lambda's memory setting."""

    memory: int = DEFAULT_MEMORY
    ephemeral_storage: int = DEFAULT_EPHEMERAL

    def cpus(self) -> float:
        return min(float(os.cpu_count() or 1), max(0.1, (self.memory >> 20) / LAMBDA_MB_PER_VCPU))


def docker_client(pool_size: int) -> docker.DockerClient:
    """A client of the local Docker engine, or an error saying how to start one."""
    try:
        client = docker.from_env(max_pool_size=max(10, pool_size + 4), timeout=600)
        client.ping()
        return client
    except docker.errors.DockerException as e:
        raise BabelMRError(f"cannot reach the Docker engine ({e}): start it (e.g. `dockerd &` or "
                           "`systemctl start docker`) and check `docker info`") from None


def check_image(client: docker.DockerClient, image: str, stage: str) -> None:
    """Fail before any task runs when a stage's image is missing."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        hint = "`babelmr image base`" if image == BASE_IMAGE else f"`babelmr image build DIR -t {image}`"
        raise BabelMRError(f"stage {stage!r}: image {image!r} not found: build it with {hint}") from None


def _local_dirs(spec: TaskSpec) -> set[str]:
    return {os.path.dirname(f.uri) for i in spec.inputs for f in i.files if "://" not in f.uri}


def mounts(spec: TaskSpec, store: Store) -> list[Mount]:
    """Bind mounts at identical paths: the store read-write, local input folders read-only."""
    writable = [store.root] if isinstance(store, LocalStore) else []
    readonly = sorted(_local_dirs(spec))
    chosen: list[Mount] = []
    covered: list[str] = []
    for path, ro in [(p, False) for p in writable] + [(p, True) for p in readonly]:
        if any(path == c or path.startswith(c.rstrip("/") + "/") for c in covered):
            continue
        covered.append(path)
        chosen.append(Mount(target=path, source=path, type="bind", read_only=ro))
    return chosen


def network_mode() -> str | None:
    """The host network when S3 is on this machine's loopback (unreachable from a bridge network)."""
    endpoint = endpoint_url()
    host = urlparse(endpoint).hostname if endpoint else None
    return "host" if host in ("127.0.0.1", "localhost", "::1") else None


def prepare_local_store(store: Store, run_prefix: str) -> None:
    """Let the image's non-root user write a local store's run folder (Lambda runs as non-root too)."""
    if isinstance(store, LocalStore):
        path = os.path.join(store.root, run_prefix, "stages")
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)  # a task container runs as another uid than the coordinator


def container_options(spec: TaskSpec, store: Store, limits: ContainerLimits, labels: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.run`` shared by every task container.

    Every container carries the labels ``babelmr.backend`` and ``babelmr.run`` (the run id).
    """
    memory = spec.memory or limits.memory
    return {
        "image": spec.image or BASE_IMAGE,
        "mounts": mounts(spec, store),
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,exec,nosuid,size={limits.ephemeral_storage}"},
        # tmpfs pages count against the container's memory cgroup: add them, so the program gets `memory`.
        "mem_limit": memory + limits.ephemeral_storage,
        "nano_cpus": int(ContainerLimits(memory, limits.ephemeral_storage).cpus() * 1e9),
        "network_mode": network_mode(),
        "labels": {LABEL: "1", RUN_LABEL: spec.run_id, **labels},
        "detach": True,
    }
