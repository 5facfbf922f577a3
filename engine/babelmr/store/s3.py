"""A store on S3 or any S3-compatible server (SeaweedFS, MinIO, ...)."""

from __future__ import annotations

import os
from functools import cache
from urllib.parse import urlparse

import boto3
import botocore.exceptions
import pyarrow.fs as pafs

from babelmr.errors import StoreError
from babelmr.store import requests
from babelmr.store.base import Store


def endpoint_url() -> str | None:
    """The S3 endpoint override from the standard AWS variables, if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@cache
def s3_client():
    """A boto3 S3 client from the standard chain (environment, config files, instance role)."""
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url())


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
    endpoint = endpoint_url()
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**kwargs)


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
        """Fail early, with the fix, when the bucket is unreachable."""
        try:
            s3_client().head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket"):
                raise StoreError(f"bucket {self.bucket!r} does not exist: create it or fix the store URI "
                                 f"{self.uri!r}") from None
            raise StoreError(f"cannot access bucket {self.bucket!r} ({code}): check your AWS credentials "
                             "and permissions") from None
        except botocore.exceptions.BotoCoreError as e:
            where = endpoint_url() or "AWS"
            raise StoreError(f"cannot reach S3 at {where} for {self.uri!r}: {e}") from None

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

    def write_bytes(self, key: str, data: bytes) -> None:
        requests.count("PUT")
        s3_client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)  # S3 PUTs are atomic

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            if chunk:
                requests.count("DELETE")  # one DeleteObjects request per 1000 keys
                s3_client().delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True})
