"""Tasks as AWS Lambda invocations of a function built from the stage's image.

The task spec travels in the payload, or through the store when it exceeds Lambda's payload limit.
Throttling (429 / TooManyRequestsException) is backed off and retried without counting as a failed
attempt. With ``emulators=N`` the backend starts N containers of each stage's image running AWS's
Runtime Interface Emulator and invokes them through the same boto3 client (endpoint override), which
is how the test suite exercises the real invoke path without AWS.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions
import docker
from docker.types import Mount
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from babelmr.backends.base import Backend
from babelmr.backends.containers import (
    ContainerLimits,
    ContainerOptions,
    check_access,
    check_image,
    container_options,
    covers,
    mounts,
    prepare_local_store,
    remove_orphans,
    stage_mounts,
)
from babelmr.backends.credentials import CredentialsFile
from babelmr.cost import lambda_report
from babelmr.errors import BabelMRError
from babelmr.images import BASE_IMAGE, docker_client, image_repository
from babelmr.job import Job, Stage
from babelmr.settings import worker_environment
from babelmr.spec import TaskResult, TaskSpec
from babelmr.store import layout
from babelmr.store.base import Store

if TYPE_CHECKING:  # the stubs (types-boto3-lambda) are a development dependency
    from docker.models.containers import Container
    from types_boto3_lambda import LambdaClient
    from types_boto3_lambda.type_defs import InvocationResponseTypeDef

PAYLOAD_LIMIT = 256 * 1024  # asynchronous limit; stay under it even for synchronous invokes
THROTTLE_PATIENCE = 900  # seconds of throttling tolerated for one invocation
HANDLER = ["python", "-m", "awslambdaric", "babelmr.worker.lambda_handler.handler"]
RIE = "/usr/local/bin/aws-lambda-rie"
PERMANENT_ERRORS = ("ResourceNotFoundException", "AccessDeniedException", "InvalidParameterValueException")


def function_name(image: str) -> str:
    """The Lambda function `babelmr deploy` creates for an image: its repository name, sanitised."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", image_repository(image))[:64]


def _throttled(e: BaseException) -> bool:
    return isinstance(e, botocore.exceptions.ClientError) and (
        e.response.get("Error", {}).get("Code") in ("TooManyRequestsException", "ThrottlingException")
        or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 429)


@dataclass(frozen=True)
class Endpoint:
    """Where to invoke: a real Lambda function (url None) or an emulator container."""

    function: str
    url: str | None = None


def lambda_client(url: str | None, read_timeout: int = 960) -> LambdaClient:
    """A boto3 Lambda client; its own retries are off (the backend decides what to retry).

    An emulator (``url``) accepts any region and credentials; real Lambda needs both from the AWS chain.
    """
    config = botocore.config.Config(read_timeout=read_timeout, connect_timeout=10, retries={"max_attempts": 0},
                                    max_pool_connections=64)
    session = boto3.session.Session()
    if url is not None:
        creds = session.get_credentials()
        return session.client("lambda", endpoint_url=url, config=config, region_name=session.region_name or "us-east-1",
                              aws_access_key_id=creds.access_key if creds else "emulator",
                              aws_secret_access_key=creds.secret_key if creds else "emulator")
    if session.region_name is None:
        raise BabelMRError("no AWS region for Lambda: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
    return session.client("lambda", config=config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LambdaOptions(ContainerOptions):
    """The lambda backend's options: per-task resources (of the emulators) and how many emulators to start."""

    emulators: int | None = None  # start this many emulator containers per image instead of calling AWS


class LambdaBackend(Backend):
    """Invokes one Lambda function per stage image, with bounded concurrency and throttling backoff."""

    name = "lambda"
    Options = LambdaOptions

    def __init__(self, concurrency: int | None = None, *, emulators: int | None = None,
                 limits: ContainerLimits | None = None, throttle_patience: float = THROTTLE_PATIENCE):
        self.emulators = emulators
        super().__init__(concurrency)
        self.limits = limits or ContainerLimits()
        self.throttle_patience = throttle_patience
        self._store: Store | None = None
        # per image and the mount targets its emulators have (a stage needing others gets its own emulators)
        self._pools: dict[tuple[str, tuple[str, ...]], queue.Queue[Endpoint]] = {}
        self._stage_mounts: dict[str, list[Mount]] = {}
        self._clients: dict[str | None, LambdaClient] = {}
        self._containers: list[str] = []
        self._lock = threading.Lock()
        self._docker: docker.DockerClient | None = None
        self._store_checked: set[str] = set()  # images whose user was seen writing the run folder
        self._credentials = CredentialsFile()
        self._closed = threading.Event()

    @property
    def memory_per_task(self) -> int | None:
        return self.limits.memory

    @property
    def emulated(self) -> bool:
        return bool(self.emulators)

    def default_concurrency(self) -> int:
        return self.emulators or 64  # emulators serve one invocation each; AWS scales by itself

    def prepare(self, job: Job, store: Store, run_id: str) -> None:
        self._store = store
        if not self.emulators:
            self._client(None)  # fails now, with the fix, when AWS is not configured
        else:
            self._docker = docker_client(self.concurrency)
            remove_orphans(self._docker)  # what a killed coordinator left
            for stage in job.stages:
                check_image(self._docker, stage.image or BASE_IMAGE, stage.name)
            prepare_local_store(store, layout.run_prefix(run_id), [s.name for s in job.stages])

    def _prepared_store(self) -> Store:
        """The store that prepare() was given."""
        if self._store is None:
            raise RuntimeError("the lambda backend was used before prepare()")
        return self._store

    def _emulator_docker(self) -> docker.DockerClient:
        """The Docker client that prepare() opened for the emulator containers."""
        if self._docker is None:
            raise RuntimeError("the lambda backend started an emulator before prepare() or without emulators")
        return self._docker

    def check_tasks(self, stage: Stage, tasks: list[TaskSpec]) -> None:
        if self.emulators:  # the emulator containers mount the store and inputs like the docker backend's
            self._stage_mounts[stage.name] = stage_mounts(tasks, self._prepared_store())
            image = stage.image or BASE_IMAGE
            check_access(self._emulator_docker(), tasks, self._prepared_store(), "lambda emulator",
                         check_store=image not in self._store_checked)
            self._store_checked.add(image)

    def _client(self, url: str | None) -> LambdaClient:
        with self._lock:
            if url not in self._clients:
                self._clients[url] = lambda_client(url)
            return self._clients[url]

    def _pool(self, spec: TaskSpec) -> queue.Queue[Endpoint]:
        image = spec.image or BASE_IMAGE
        needed: list[Mount] = []
        if self.emulators:  # every folder any task of the stage reads: an emulator serves many tasks
            needed = self._stage_mounts.get(spec.stage) or mounts(spec, self._prepared_store())
        with self._lock:
            for (have_image, have), pool in self._pools.items():
                if have_image == image and all(covers(list(have), m["Target"]) for m in needed):
                    return pool
            pool = queue.Queue()
            if self.emulators:
                for _ in range(min(self.emulators, self.concurrency)):
                    pool.put(self._start_emulator(spec, needed))
            else:  # real Lambda scales by itself: every slot invokes the same function
                for _ in range(self.concurrency):
                    pool.put(Endpoint(function_name(image)))
            self._pools[(image, tuple(m["Target"] for m in needed))] = pool
            return pool

    def _start_emulator(self, spec: TaskSpec, mounted: list[Mount]) -> Endpoint:
        """A container of the stage's image serving invocations through AWS's Runtime Interface Emulator."""
        port, api_port = _free_port(), _free_port()
        options = container_options(spec, self._prepared_store(), self.limits, {"babelmr.lambda-emulator": "1"})
        options["mounts"] = list(mounted) + self._credentials.mounts()
        options["network_mode"] = "host"  # distinct ports per emulator, S3 on loopback reachable
        container = self._emulator_docker().containers.run(
            entrypoint=[RIE, "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
                        "--runtime-api-address", f"127.0.0.1:{api_port}"],
            command=HANDLER, environment={**worker_environment(), **self._credentials.environment(),
                                          "AWS_LAMBDA_FUNCTION_TIMEOUT": "900"},
            **options)
        self._containers.append(container.id)
        url = f"http://127.0.0.1:{port}"
        self._wait_until_listening(port, container)
        return Endpoint("function", url)

    @staticmethod
    def _wait_until_listening(port: int, container: Container, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            container.reload()
            if container.status == "exited":
                break
            time.sleep(0.05)
        logs = container.logs().decode(errors="replace")[-2000:]
        raise BabelMRError(f"the Lambda emulator container did not start listening on port {port}:\n{logs}")

    def _payload(self, spec: TaskSpec) -> bytes:
        payload = json.dumps({"spec": json.loads(spec.to_json())}).encode()
        if len(payload) <= PAYLOAD_LIMIT:
            return payload
        key = layout.task_spec(spec.run_id, spec.stage, spec.task, spec.attempt)
        store = self._prepared_store()
        store.write_bytes(key, spec.to_json().encode())
        return json.dumps({"spec_uri": store.uri_for(key)}).encode()

    def _invoke(self, endpoint: Endpoint, payload: bytes) -> InvocationResponseTypeDef:
        client = self._client(endpoint.url)
        retrying = Retrying(retry=retry_if_exception(_throttled), stop=stop_after_delay(self.throttle_patience),
                            wait=wait_random_exponential(multiplier=0.5, max=20), reraise=True)
        return retrying(client.invoke, FunctionName=endpoint.function, InvocationType="RequestResponse",
                        LogType="Tail", Payload=payload)

    def run_task(self, spec: TaskSpec) -> TaskResult:
        if self._closed.is_set():
            return TaskResult("error", spec.stage, spec.task, spec.attempt, error=f"{spec.label}: interrupted",
                              retryable=False)
        pool = self._pool(spec)
        endpoint = pool.get()
        try:
            response = self._invoke(endpoint, self._payload(spec))
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            retryable = code not in PERMANENT_ERRORS
            missing = code == "ResourceNotFoundException"
            hint = f": deploy it with `babelmr deploy {spec.image or BASE_IMAGE}`" if missing else ""
            return TaskResult("error", spec.stage, spec.task, spec.attempt, retryable=retryable,
                              error=f"{spec.label}: Lambda {endpoint.function}: {code}: {e}{hint}")
        except (botocore.exceptions.BotoCoreError, OSError) as e:
            return TaskResult("error", spec.stage, spec.task, spec.attempt,
                              error=f"{spec.label}: Lambda {endpoint.function}: {type(e).__name__}: {e}")
        finally:
            pool.put(endpoint)
        body = response["Payload"].read().decode(errors="replace")
        payload = json.loads(body) if body.startswith("{") else {}
        log_tail = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
        if response.get("FunctionError") or "errorMessage" in payload:  # the emulator omits the header
            return TaskResult("error", spec.stage, spec.task, spec.attempt, stats=lambda_report(log_tail),
                              error=f"{spec.label}: the Lambda function failed: {body[:2000]}"
                                    + (f"\n--- end of its log ---\n{log_tail}" if log_tail else ""))
        result = TaskResult.from_dict(payload)
        lambda_report(log_tail, result.stats)  # billed duration and memory size, for the cost report
        return result

    def close(self) -> None:
        """Remove the emulator containers (an invocation waiting on one then fails at once)."""
        self._closed.set()
        for container_id in self._containers:
            with contextlib.suppress(Exception):
                self._emulator_docker().api.remove_container(container_id, force=True)
        self._containers.clear()
        self._pools.clear()
        self._credentials.close()
