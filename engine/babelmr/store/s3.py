"""A store on S3 or any S3-compatible server (SeaweedFS, MinIO, ...).

Transient S3 errors (5xx, throttling, connection refused, timeouts) are retried with exponential back-off
and jitter by the SDKs themselves: botocore's ``standard`` retry mode (``AWS_RETRY_MODE=adaptive`` adds
client-side rate limiting) and pyarrow's `AwsStandardS3RetryStrategy`, both with ``AWS_MAX_ATTEMPTS``
attempts (default `DEFAULT_MAX_ATTEMPTS`: rides out an outage of about a minute). When the budget is
spent, the store's operations raise `StoreError` naming the store, the operation and the cause.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Concatenate, Literal, ParamSpec, TypeVar
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions
import pyarrow.fs as pafs

from babelmr.errors import StoreError
from babelmr.store import requests
from babelmr.store.base import FileEntry, Store

if TYPE_CHECKING:  # the stubs (types-boto3-s3) are a development dependency
    from types_boto3_s3 import S3Client


def endpoint_url() -> str | None:
    """The S3 endpoint override from the standard AWS variables, if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _endpoint_variable() -> str:
    return "AWS_ENDPOINT_URL_S3" if os.environ.get("AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"


def checked_endpoint_url() -> str | None:
    """`endpoint_url`, refused with the fix unless it is an http(s) URL with a host."""
    endpoint = endpoint_url()
    if endpoint is None:
        return None
    try:
        parsed = urlparse(endpoint)
        parsed.port  # noqa: B018 -- raises ValueError for a port that is not a number
        ok = parsed.scheme in ("http", "https") and parsed.hostname
        why = "" if ok else "it needs http:// or https:// and a host"
    except ValueError as e:
        why = str(e)
    if why:
        raise StoreError(f"{_endpoint_variable()}={endpoint!r} is not an S3 endpoint URL ({why}): set it to e.g. "
                         "http://localhost:8333, or unset it to use AWS")
    return endpoint


def describe_s3_error(error: BaseException) -> str:
    """The cause of a failed S3 request (boto3 or pyarrow) and how to fix it, in one line."""
    text = str(error)
    code = ""
    if isinstance(error, botocore.exceptions.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
    where = endpoint_url() or "AWS"
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return ("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
                "or run where an instance role applies")
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken") or any(
            s in text for s in ("ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID",
                                "EXPIRED_TOKEN", "InvalidAccessKeyId", "SignatureDoesNotMatch")):
        return (f"access denied by {where} ({code or text[:160]}): check the AWS credentials (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and that they may use this bucket and prefix")
    if code in ("404", "NoSuchBucket") or "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text:
        return "the bucket does not exist: create it, or fix the bucket name in the URI"
    if isinstance(error, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError) \
            or any(s in text for s in ("NETWORK_CONNECTION", "Could not connect", "Couldn't connect")):
        return (f"cannot reach S3 at {where}: check {_endpoint_variable()}, the network, and that the server runs "
                f"({text[:160]})")
    return f"S3 request failed at {where}: {text[:300]}"


DEFAULT_MAX_ATTEMPTS = 10  # back-off capped at 20 s between attempts: about a minute of outage on average
CHECK_ATTEMPTS = 3  # the check before a run: a wrong endpoint or bucket fails within seconds
CONNECT_TIMEOUT = 10  # seconds
REQUEST_TIMEOUT = 120  # seconds without a byte before a request counts as failed (and is retried)


def max_attempts() -> int:
    """Attempts per S3 request, first one included: ``AWS_MAX_ATTEMPTS`` (the AWS SDKs' own variable)."""
    try:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)))
    except ValueError:
        return DEFAULT_MAX_ATTEMPTS


def retry_mode() -> Literal["standard", "adaptive", "legacy"]:
    """botocore's retry mode: ``standard`` unless ``AWS_RETRY_MODE`` says ``adaptive`` (or ``legacy``)."""
    mode = os.environ.get("AWS_RETRY_MODE", "standard")
    if mode == "adaptive":
        return "adaptive"
    return "legacy" if mode == "legacy" else "standard"


@cache
def s3_client(attempts: int | None = None) -> S3Client:
    """A boto3 S3 client from the standard chain (environment, config files, instance role), retrying with back-off.

    ``attempts`` overrides `max_attempts` (a first check of the store fails fast on a wrong endpoint).
    """
    endpoint = checked_endpoint_url()
    config = botocore.config.Config(retries={"mode": retry_mode(), "total_max_attempts": attempts or max_attempts()},
                                    connect_timeout=CONNECT_TIMEOUT, read_timeout=REQUEST_TIMEOUT)
    try:
        return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
    except (ValueError, botocore.exceptions.BotoCoreError) as e:
        raise StoreError(f"cannot make an S3 client: {describe_s3_error(e)}") from None


@cache
def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem with the same endpoint, region and credentials as boto3."""
    session = boto3.session.Session()
    kwargs: dict = {"region": session.region_name or os.environ.get("AWS_REGION") or "us-east-1"}
    creds = session.get_credentials()
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key,
                      session_token=frozen.token)
    endpoint = checked_endpoint_url()
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**kwargs, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts()),
                             connect_timeout=CONNECT_TIMEOUT, request_timeout=REQUEST_TIMEOUT)


P = ParamSpec("P")
R = TypeVar("R")


def _store_errors(method: Callable[Concatenate[S3Store, P], R]) -> Callable[Concatenate[S3Store, P], R]:
    """Turn what is left of an S3 outage after the SDK's retries into a `StoreError` naming store, operation, cause."""

    @functools.wraps(method)
    def wrapper(self: S3Store, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except FileNotFoundError:
            raise
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
            if isinstance(e, botocore.exceptions.ClientError) and not _transient(e):
                raise
            what = f"{method.__name__} {args[0]!r}" if args and isinstance(args[0], str) else method.__name__
            raise StoreError(f"store {self.uri}: {what} failed after {max_attempts()} attempts with back-off "
                             f"({type(e).__name__}: {e}): the store is unreachable or failing; once it is back, "
                             "`babelmr resume` continues the run") from e

    return wrapper


def _bucket_errors(function: Callable[Concatenate[str, str, P], R]) -> Callable[Concatenate[str, str, P], R]:
    """Like `_store_errors`, for the functions that take a bucket and a key or prefix (input listing)."""

    @functools.wraps(function)
    def wrapper(bucket: str, key: str, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(bucket, key, *args, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            if isinstance(e, botocore.exceptions.ClientError) and not _transient(e):
                raise
            raise StoreError(f"s3://{bucket}/{key}: {function.__name__} failed after {max_attempts()} attempts with "
                             f"back-off ({type(e).__name__}: {e}): S3 is unreachable or failing") from e

    return wrapper


def _transient(e: botocore.exceptions.ClientError) -> bool:
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    code = e.response.get("Error", {}).get("Code", "")
    return status >= 500 or status == 429 or "Throttl" in code or code in ("SlowDown", "RequestTimeout")


def aws_environment() -> dict[str, str]:
    """This process's AWS settings (endpoint, region, credentials), to hand to the workers it starts."""
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_") and k != "AWS_LAMBDA_RUNTIME_API"}


def reset_clients() -> None:
    """Forget cached clients, e.g. after the AWS environment changed."""
    s3_client.cache_clear()
    s3_filesystem.cache_clear()


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    # Not urlparse: '?' (a glob wildcard) and '#' are ordinary characters of S3 keys, not query or fragment.
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise StoreError(f"{uri!r} is not an S3 URI: use s3://bucket/prefix")
    return bucket, key.strip("/")


def _etag(value: str) -> str:
    return value.strip('"')


@_bucket_errors
def s3_list_objects(bucket: str, prefix: str) -> list[tuple[str, int, str]]:
    """(key, size, ETag) of every object under ``prefix`` (folder markers ending in '/' left out)."""
    found = []
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                found.append((obj["Key"], obj["Size"], _etag(obj["ETag"])))
    return found


@_bucket_errors
def s3_object_version(bucket: str, key: str) -> tuple[int, str] | None:
    """The size and ETag of an object (one HEAD request); None when it does not exist."""
    try:
        head = s3_client().head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head["ContentLength"], _etag(head["ETag"])


class S3Store(Store):
    """Keys are objects under ``s3://bucket/prefix``; conditional writes through boto3."""

    def __init__(self, uri: str):
        self.bucket, self.prefix = split_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.filesystem = s3_filesystem()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key

    def path(self, key: str) -> str:
        return f"{self.bucket}/{self._key(key)}".rstrip("/")

    def uri_for(self, key: str) -> str:
        return f"s3://{self.path(key)}"

    def check(self) -> None:
        """Fail early, naming the store, the cause and the fix, when the bucket cannot be used."""
        try:
            s3_client(CHECK_ATTEMPTS).head_bucket(Bucket=self.bucket)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise StoreError(f"store {self.uri}: bucket {self.bucket!r}: {describe_s3_error(e)}") from None


    @_store_errors
    def put_if_absent(self, key: str, data: bytes) -> bool:
        requests.count("PUT")
        try:
            s3_client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412",
                                                            "ConditionalRequestConflict"):
                return False
            raise

    @_store_errors
    def write_bytes(self, key: str, data: bytes) -> None:
        requests.count("PUT")
        s3_client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)  # S3 PUTs are atomic

    @_store_errors
    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            if chunk:
                requests.count("DELETE")  # one DeleteObjects request per 1000 keys
                s3_client().delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True})

    def copy(self, source_uri: str, key: str) -> None:
        """S3 to S3: a server-side copy (CopyObject; UploadPartCopy above 5 GB), no bytes through this process."""
        if not source_uri.startswith("s3://"):
            return super().copy(source_uri, key)
        bucket, source_key = split_s3_uri(source_uri)
        s3_client().copy({"Bucket": bucket, "Key": source_key}, self.bucket, self._key(key))
        return None

    @_store_errors
    def read_bytes(self, key: str) -> bytes:
        return super().read_bytes(key)

    @_store_errors
    def exists(self, key: str) -> bool:
        return super().exists(key)

    @_store_errors
    def list(self, prefix: str) -> list[FileEntry]:
        return super().list(prefix)

    @_store_errors
    def upload_file(self, local_path: str, key: str) -> None:
        super().upload_file(local_path, key)
