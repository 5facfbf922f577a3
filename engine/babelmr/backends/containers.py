"""What the Docker and Lambda-emulator backends share: how a task's container is set up.

A task container sees the store the way the coordinator does: a local store's run folder (and local
input folders) mounted at the same absolute paths, or S3 through the coordinator's AWS settings (on the
host network when the endpoint is on loopback). Only the run's folder of a local store is mounted, so a
private store folder (mode 0700, or another user's) works: the container never needs to enter the store
folder itself. Before a stage's first task a probe container of the stage's image checks that its user
can write the run folder and read every local input file; if not, the run fails with one message naming
the folder, the container's uid and the fix. Memory and CPU mirror Lambda: CPU share grows with
memory (1,769 MB = one vCPU) and ``/tmp`` is a tmpfs sized like Lambda's ephemeral storage.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import psutil
from docker.types import Mount

from babelmr.backends.base import BackendOptions
from babelmr.errors import BabelMRError, InputError, StoreError
from babelmr.images import BASE_IMAGE, build_hint
from babelmr.spec import TaskSpec
from babelmr.store import layout
from babelmr.store.base import Store
from babelmr.store.s3 import endpoint_url

LAMBDA_MB_PER_VCPU = 1769
DEFAULT_MEMORY = 2048 << 20
DEFAULT_EPHEMERAL = 512 << 20
LABEL = "babelmr.backend"
RUN_LABEL = "babelmr.run"
PROBE_MARKER = "BABELMR_PROBE "  # starts the line the probe script (_PROBE) prints its findings on
COORDINATOR_LABEL = "babelmr.coordinator"  # host:pid:start time of the process that started the container
PIDS_LIMIT = 1024
PROBE_LABEL = "babelmr.probe"


@dataclass(frozen=True)
class ContainerLimits:
    """Per-task resources; ``memory`` is what the program and engine get, like Lambda's memory setting."""

    memory: int = DEFAULT_MEMORY
    ephemeral_storage: int = DEFAULT_EPHEMERAL

    def cpus(self) -> float:
        return min(float(os.cpu_count() or 1), max(0.1, (self.memory >> 20) / LAMBDA_MB_PER_VCPU))


@dataclass(frozen=True)
class ContainerOptions(BackendOptions):
    """The docker backend's options: the per-task resources."""

    limits: ContainerLimits | None = None


def check_image(client: docker.DockerClient, image: str, stage: str) -> None:
    """Fail before any task runs when a stage's image is missing."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise BabelMRError(f"stage {stage!r}: image {image!r} not found: build it with {build_hint(image)}") from None


def _local_dirs(spec: TaskSpec) -> set[str]:
    return {os.path.dirname(f.uri) for i in spec.inputs for f in i.files if "://" not in f.uri}


def mounts(spec: TaskSpec, store: Store) -> list[Mount]:
    """Bind mounts at identical paths: the store's run folder read-write, local input folders read-only."""
    writable = [run_folder(store, spec.run_id)] if store.local_root is not None else []
    readonly = sorted(_local_dirs(spec))
    chosen: list[Mount] = []
    covered: list[str] = []
    for path, ro in [(p, False) for p in writable] + [(p, True) for p in readonly]:
        if any(path == c or path.startswith(c.rstrip("/") + "/") for c in covered):
            continue
        covered.append(path)
        chosen.append(Mount(target=path, source=path, type="bind", read_only=ro))
    return chosen


def stage_mounts(tasks: list[TaskSpec], store: Store) -> list[Mount]:
    """The mounts of every task of a stage, each target once (for a container that serves them all)."""
    chosen: dict[str, Mount] = {}
    for t in tasks:
        for m in mounts(t, store):
            chosen.setdefault(m["Target"], m)
    return list(chosen.values())


def covers(mounted: list[str], target: str) -> bool:
    """Whether ``target`` is one of the ``mounted`` targets or lies under one."""
    return any(target == m or target.startswith(m.rstrip("/") + "/") for m in mounted)


def network_mode() -> str | None:
    """The host network when S3 is on this machine's loopback (unreachable from a bridge network)."""
    endpoint = endpoint_url()
    host = urlparse(endpoint).hostname if endpoint else None
    return "host" if host in ("127.0.0.1", "localhost", "::1") else None


def run_folder(store: Store, run_id: str) -> str:
    """The folder of a run in a local store: all a task container mounts of the store."""
    return store.path(layout.run_prefix(run_id))


def prepare_local_store(store: Store, run_prefix: str, stages: Sequence[str] = ()) -> None:
    """Let the image's non-root user write a local store's run folder (Lambda runs as non-root too).

    The run folder is mounted alone, so the store folder's own mode does not matter; the folders tasks write
    in are made writable for every uid (a task container runs as another uid than the coordinator, and the
    coordinator must be able to delete what tasks wrote), whatever the coordinator's umask.
    """
    if store.local_root is not None:
        run = store.path(run_prefix)
        writable = [os.path.join(run, "stages")] + [
            os.path.join(run, "stages", stage, part) for stage in stages for part in ("data", "commits", "logs")]
        for path in writable:
            os.makedirs(path, exist_ok=True)
        os.chmod(run, 0o755)
        for path in [os.path.join(run, "stages", stage) for stage in stages]:
            os.chmod(path, 0o755)
        for path in writable:
            os.chmod(path, 0o777)
        os.makedirs(os.path.join(run, "specs"), exist_ok=True)  # large specs the coordinator writes, tasks read
        os.chmod(os.path.join(run, "specs"), 0o755)


# Runs in a probe container as the image's user: can it write the run folder and read the input files?
# For a path it cannot use, it names the first folder on the way it cannot enter (or the file itself).
_PROBE = r"""
import json, os, sys, tempfile
todo = json.loads(sys.argv[1])
out = {"uid": os.getuid(), "gid": os.getgid(), "problems": []}

def blocker(path):
    parts = path.rstrip("/").split("/")
    for i in range(2, len(parts)):
        folder = "/".join(parts[:i])
        if not os.access(folder, os.X_OK):
            return folder
    return path

for path in todo["write"]:
    try:
        fd, name = tempfile.mkstemp(dir=path, prefix=".probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        out["problems"].append({"path": path, "need": "write", "blocker": blocker(path), "error": str(e)})
for name, path in todo["read"]:
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        out["problems"].append({"path": path, "input": name, "need": "read", "blocker": blocker(path),
                                "error": str(e)})
print("BABELMR_PROBE " + json.dumps(out))
"""


def _open_to_all(path: str, root: str) -> bool:
    """Whether every folder from ``root`` down to the file ``path`` lets any uid in, and the file any uid read."""
    try:
        folders = [root]
        rest = os.path.relpath(os.path.dirname(path), root)
        for part in [] if rest == "." else rest.split(os.sep):
            folders.append(os.path.join(folders[-1], part))
        return all(os.stat(f).st_mode & 0o005 == 0o005 for f in folders) and os.stat(path).st_mode & 0o004 != 0
    except OSError:
        return False


def check_access(client: docker.DockerClient, tasks: list[TaskSpec], store: Store, backend: str,
                 check_store: bool = True) -> None:
    """Fail before a stage's first task when its image's user cannot write the run folder or read an input.

    One probe container of the stage's image, with the mounts of all its tasks, tries what the tasks will do
    (about a second). With ``check_store`` False (the image's user was already seen writing the run folder)
    it runs only when an input file or a folder above it is closed to other users.
    """
    if not tasks:
        return
    spec = tasks[0]
    writes = [os.path.join(run_folder(store, spec.run_id), "stages")] if check_store and (
        store.local_root is not None) else []
    reads = sorted({(i.name, f.uri) for t in tasks for i in t.inputs if i.kind == "files" for f in i.files
                    if "://" not in f.uri})
    chosen = {m["Target"]: m for m in stage_mounts(tasks, store)}
    if not writes:
        roots = [m["Source"] for m in chosen.values()]
        reads = [(name, path) for name, path in reads if not _open_to_all(
            path, max((r for r in roots if path.startswith(r.rstrip("/") + "/")), key=len, default="/"))]
    if not writes and not reads:
        return
    image = spec.image or BASE_IMAGE
    todo = json.dumps({"write": writes, "read": reads})
    labels = {LABEL: "1", RUN_LABEL: spec.run_id, PROBE_LABEL: "1", **coordinator_labels()}
    try:
        output = client.containers.run(image, entrypoint=["python", "-c", _PROBE], command=[todo],
                                       mounts=list(chosen.values()), read_only=True, network_mode="none",
                                       tmpfs={"/tmp": "rw,size=16m"}, labels=labels,
                                       remove=True, stdout=True, stderr=False)
    except docker.errors.DockerException:
        return  # no python in a foreign image, say: the tasks report their own errors
    except BaseException:  # Ctrl-C while it runs: the client would not remove it
        for c in client.api.containers(all=True, filters={"label": [f"{RUN_LABEL}={spec.run_id}", PROBE_LABEL]}):
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_container(c["Id"], force=True)
        raise
    line = next((x for x in output.decode(errors="replace").splitlines() if x.startswith(PROBE_MARKER)), None)
    if line is None:
        return
    found = json.loads(line.removeprefix(PROBE_MARKER))
    if found["problems"]:
        raise _access_error(found, spec, image, backend, list(chosen))


def _access_error(found: dict[str, Any], spec: TaskSpec, image: str, backend: str,
                  targets: list[str]) -> BabelMRError:
    uid, gid = found["uid"], found["gid"]
    problem = found["problems"][0]
    folder = problem["blocker"]
    who = f"the {backend} backend's task containers (image {image}, uid {uid}, gid {gid})"
    if not covers(targets, folder):
        where = (f"{folder} is a private folder of the image, not of this machine: keep the store and the inputs "
                 "outside it (e.g. under /tmp, /srv or /home), or use an S3 store and inputs")
    elif problem["need"] == "write":
        where = (f"{folder} is not writable for uid {uid}: let that uid write it (chown {uid}:{gid} {folder}, or "
                 f"setfacl -m u:{uid}:rwx {folder}), or use an S3 store or the local backend")
    else:
        more = len(found["problems"]) - 1
        where = (f"{folder} is not readable for uid {uid}: make it readable (chmod o+rX on the folders and o+r on "
                 f"the files, or setfacl -R -m u:{uid}:rX {folder}), or put the input in S3"
                 + (f" ({more} more file(s) of the stage cannot be read either)" if more else ""))
    if problem["need"] == "write":
        return StoreError(f"stage {spec.stage!r}: {who} cannot write the run folder {problem['path']}: {where}")
    return InputError(f"stage {spec.stage!r}: input {problem['input']!r}: {who} cannot read {problem['path']}: "
                      f"{where}")


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
        "labels": {LABEL: "1", RUN_LABEL: spec.run_id, **coordinator_labels(), **labels},
        "detach": True,
        # hardened like a Lambda sandbox: no capabilities, no privilege gain through setuid, bounded processes
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": PIDS_LIMIT,
    }


def coordinator_labels() -> dict[str, str]:
    """Labels naming this coordinator process, so a later run can tell whether it is still alive."""
    return {COORDINATOR_LABEL: f"{os.uname().nodename}:{os.getpid()}:{int(psutil.Process().create_time())}"}


def _coordinator_alive(label: str) -> bool:
    host, _, rest = label.partition(":")
    pid, _, started = rest.partition(":")
    if host != os.uname().nodename:
        return True  # another machine's: not ours to judge
    try:
        return int(psutil.Process(int(pid)).create_time()) == int(started)
    except (psutil.Error, ValueError):
        return False


def remove_orphans(client: docker.DockerClient) -> list[str]:
    """Remove task containers whose coordinator on this machine is dead (killed with SIGKILL, say); their ids."""
    removed: list[str] = []
    try:  # the list call alone: containers.list() inspects each one, failing if one is removed meanwhile
        found = client.api.containers(all=True, filters={"label": [LABEL, COORDINATOR_LABEL]})
    except docker.errors.DockerException:
        return removed
    for c in found:
        if not _coordinator_alive((c.get("Labels") or {}).get(COORDINATOR_LABEL, "")):
            try:
                client.api.remove_container(c["Id"], force=True)
                removed.append(c["Id"])
            except docker.errors.DockerException:
                continue
    return removed
