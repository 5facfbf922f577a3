"""Deploy a stage image to AWS Lambda: push it to ECR, create or update the function, and the IAM policy.

Each step is one function over boto3 clients, so tests drive them with botocore's Stubber; the steps
for a real account are in docs/aws.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from babelmr.backends.aws_lambda import function_name
from babelmr.errors import BabelMRError
from babelmr.images import BASE_IMAGE, image_repository
from babelmr.job import ExternalInput, Job
from babelmr.store.s3 import split_s3_uri

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@dataclass(frozen=True)
class FunctionSettings:
    """What `babelmr deploy` sets on the function (Lambda's names and units)."""

    memory_mb: int = 2048
    timeout_s: int = 900
    ephemeral_mb: int = 2048
    role_arn: str | None = None


def repository_name(image: str) -> str:
    """The ECR repository for a local image tag: the tag's repository part."""
    return image_repository(image)


def ensure_repository(ecr: Any, name: str) -> str:
    """The repository's URI, creating the repository when missing."""
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise
        repo = ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})["repository"]
    return repo["repositoryUri"]


def registry_login(ecr: Any) -> tuple[str, str, str]:
    """(username, password, registry) for ``docker login`` to the account's ECR registry."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    return user, password, data["proxyEndpoint"]


def push_image(docker_client: Any, ecr: Any, image: str, repository_uri: str, say: Callable[[str], None]) -> str:
    """Tag the local image for ECR and push it; returns the pushed image URI."""
    tag = image.split(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    user, password, registry = registry_login(ecr)
    docker_client.login(username=user, password=password, registry=registry)
    docker_client.images.get(image).tag(repository_uri, tag=tag)
    for line in docker_client.images.push(repository_uri, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise BabelMRError(f"pushing {image} to {repository_uri}: {line['error']}")
        if line.get("status") and not line.get("progressDetail"):
            say(f"{line.get('id', '')} {line['status']}".strip())
    return f"{repository_uri}:{tag}"


def deploy_function(lam: Any, name: str, image_uri: str, settings: FunctionSettings) -> str:
    """Create the function from ``image_uri``, or point an existing one at it; returns its ARN."""
    config = {"MemorySize": settings.memory_mb, "Timeout": settings.timeout_s,
              "EphemeralStorage": {"Size": settings.ephemeral_mb}}
    try:
        lam.get_function(FunctionName=name)
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        if not settings.role_arn:
            raise BabelMRError(f"function {name!r} does not exist yet: give --role ARN (an execution role; "
                               "`babelmr policy JOB` prints the policy it needs), or let babelmr make one with "
                               "--create-role NAME --job JOB") from None
        created = lam.create_function(FunctionName=name, PackageType="Image", Code={"ImageUri": image_uri},
                                      Role=settings.role_arn, **config)
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        return created["FunctionArn"]
    lam.update_function_code(FunctionName=name, ImageUri=image_uri)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if settings.role_arn:
        config["Role"] = settings.role_arn
    updated = lam.update_function_configuration(FunctionName=name, **config)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    return updated["FunctionArn"]


def _scope(uri: str, folder: bool = False) -> tuple[str, str]:
    """(bucket ARN, key prefix) an S3 URI covers; a glob covers its fixed part, a store its folder."""
    bucket, key = split_s3_uri(uri)
    prefix = key.split("*", 1)[0]
    if folder and prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"arn:aws:s3:::{bucket}", prefix


def task_policy(job: Job) -> dict[str, Any]:
    """Least privilege for the job's tasks: read its S3 inputs, read and write its store prefix, write logs."""
    statements: list[dict[str, Any]] = [{
        "Sid": "Logs", "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}]
    reads = sorted({i.uri for s in job.stages for i in s.inputs if isinstance(i, ExternalInput)
                    and i.uri.startswith("s3://")})
    scopes = [("Store", job.store, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], True)] \
        if job.store.startswith("s3://") else []
    scopes += [(f"Input{n}", uri, ["s3:GetObject"], False) for n, uri in enumerate(reads)]
    for sid, uri, actions, folder in scopes:
        bucket, prefix = _scope(uri, folder)
        statements.append({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": f"{bucket}/{prefix}*"})
        statements.append({"Sid": f"List{sid}", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
                           "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}})
    return {"Version": "2012-10-17", "Statement": statements}


def coordinator_policy(job: Job, region: str, account: str) -> dict[str, Any]:
    """What the machine running `babelmr run --backend lambda` needs beyond the tasks' S3 access."""
    functions = sorted({function_name(s.image or BASE_IMAGE) for s in job.stages})
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "Invoke", "Effect": "Allow", "Action": "lambda:InvokeFunction",
        "Resource": [f"arn:aws:lambda:{region}:{account}:function:{f}" for f in functions]}]}


def create_role(iam: Any, name: str, policy: dict[str, Any]) -> str:
    """An execution role for Lambda with ``policy`` inline; returns its ARN (reuses an existing role)."""
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
                              Description="babelmr task execution role")["Role"]["Arn"]
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="babelmr-tasks", PolicyDocument=json.dumps(policy))
    return arn
