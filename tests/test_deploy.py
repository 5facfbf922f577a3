"""`babelmr deploy` and `babelmr policy`: the AWS API calls, driven through botocore's Stubber.

There is no AWS here: Stubber checks each request's parameters and plays AWS's documented answers.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner

from babelmr import deploy as d
from babelmr.cli import main
from babelmr.errors import BabelMRError
from babelmr.job import load_job
from conftest import write_job

IMAGE_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/wc:latest"
ARN = "arn:aws:lambda:eu-west-1:123456789012:function:wc"


def _client(service: str):
    return boto3.client(service, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")


def _active(stub: Stubber, name: str, waiter_state: str = "Active") -> None:
    key = "LastUpdateStatus" if waiter_state == "Successful" else "State"
    stub.add_response("get_function", {"Configuration": {"FunctionName": name, key: waiter_state}},
                      {"FunctionName": name})


def test_creates_a_missing_function_from_the_image() -> None:
    lam = _client("lambda")
    with Stubber(lam) as stub:
        stub.add_client_error("get_function", "ResourceNotFoundException", http_status_code=404)
        stub.add_response("create_function", {"FunctionArn": ARN}, {
            "FunctionName": "wc", "PackageType": "Image", "Code": {"ImageUri": IMAGE_URI},
            "Role": "arn:aws:iam::123456789012:role/r", "MemorySize": 3008, "Timeout": 600,
            "EphemeralStorage": {"Size": 4096}})
        _active(stub, "wc")
        arn = d.deploy_function(lam, "wc", IMAGE_URI, d.FunctionSettings(3008, 600, 4096,
                                                                           "arn:aws:iam::123456789012:role/r"))
        stub.assert_no_pending_responses()
    assert arn == ARN


def test_updates_an_existing_function() -> None:
    lam = _client("lambda")
    with Stubber(lam) as stub:
        stub.add_response("get_function", {"Configuration": {"FunctionName": "wc"}}, {"FunctionName": "wc"})
        stub.add_response("update_function_code", {}, {"FunctionName": "wc", "ImageUri": IMAGE_URI})
        _active(stub, "wc", "Successful")
        stub.add_response("update_function_configuration", {"FunctionArn": ARN}, {
            "FunctionName": "wc", "MemorySize": 2048, "Timeout": 900, "EphemeralStorage": {"Size": 2048}})
        _active(stub, "wc", "Successful")
        assert d.deploy_function(lam, "wc", IMAGE_URI, d.FunctionSettings()) == ARN
        stub.assert_no_pending_responses()


def test_creating_needs_a_role() -> None:
    lam = _client("lambda")
    with Stubber(lam) as stub:
        stub.add_client_error("get_function", "ResourceNotFoundException", http_status_code=404)
        with pytest.raises(BabelMRError, match="give --role ARN") as raised:
            d.deploy_function(lam, "wc", IMAGE_URI, d.FunctionSettings())
    # the hint names only commands and options that exist
    message = str(raised.value)
    assert "`babelmr policy JOB`" in message
    deploy_options = {o for p in main.commands["deploy"].params for o in p.opts}
    assert set(re.findall(r"(?<![\w`])--[a-z-]+", message)) <= deploy_options, message
    for command in re.findall(r"`babelmr ([a-z-]+)", message):
        assert command in main.commands, command


def test_ecr_repository_is_created_once_and_login_decoded() -> None:
    ecr = _client("ecr")
    repo = {"repositoryUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/wc", "repositoryName": "wc"}
    with Stubber(ecr) as stub:
        stub.add_client_error("describe_repositories", "RepositoryNotFoundException")
        stub.add_response("create_repository", {"repository": repo}, {"repositoryName": "wc",
                                                                       "imageScanningConfiguration": ANY})
        stub.add_response("describe_repositories", {"repositories": [repo]}, {"repositoryNames": ["wc"]})
        token = base64.b64encode(b"AWS:secret-password").decode()
        stub.add_response("get_authorization_token", {"authorizationData": [
            {"authorizationToken": token, "proxyEndpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"}]})
        assert d.ensure_repository(ecr, d.repository_name("wc:latest")) == repo["repositoryUri"]
        assert d.ensure_repository(ecr, "wc") == repo["repositoryUri"]
        assert d.registry_login(ecr) == ("AWS", "secret-password",
                                         "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com")


def test_role_is_created_or_reused_with_the_policy() -> None:
    iam = boto3.client("iam", aws_access_key_id="x", aws_secret_access_key="y")
    policy = {"Version": "2012-10-17", "Statement": []}
    with Stubber(iam) as stub:
        stub.add_client_error("create_role", "EntityAlreadyExists")
        stub.add_response("get_role", {"Role": {"Path": "/", "RoleName": "r", "RoleId": "AROAEXAMPLEID123456",
                                                "Arn": "arn:aws:iam::1:role/r", "CreateDate": "2026-01-01"}},
                          {"RoleName": "r"})
        stub.add_response("put_role_policy", {}, {"RoleName": "r", "PolicyName": "babelmr-tasks",
                                                  "PolicyDocument": json.dumps(policy)})
        assert d.create_role(iam, "r", policy) == "arn:aws:iam::1:role/r"


def test_task_policy_allows_only_the_jobs_prefixes(tmp_path: Path) -> None:
    job = load_job(str(write_job(tmp_path, {
        "name": "j", "store": "s3://work-bucket/babelmr",
        "stages": [{"name": "m", "command": "x", "inputs": [
            {"name": "a", "uri": "s3://data-bucket/tpch/lineitem/*.parquet"},
            {"name": "b", "uri": "s3://dims/item.parquet", "broadcast": True}]}]})))
    statements = {s["Sid"]: s for s in d.task_policy(job)["Statement"]}
    assert statements["Store"]["Resource"] == "arn:aws:s3:::work-bucket/babelmr/*"
    assert set(statements["Store"]["Action"]) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert statements["ListStore"]["Condition"]["StringLike"]["s3:prefix"] == ["babelmr/*"]
    assert statements["Input0"]["Resource"] == "arn:aws:s3:::data-bucket/tpch/lineitem/*"
    assert statements["Input0"]["Action"] == ["s3:GetObject"]
    assert statements["Input1"]["Resource"] == "arn:aws:s3:::dims/item.parquet*"
    assert d.coordinator_policy(job, "eu-west-1", "1")["Statement"][0]["Resource"] == [
        "arn:aws:lambda:eu-west-1:1:function:babelmr-base"]


@pytest.mark.parametrize("env", [{"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}, {}],
                         ids=["no-credentials", "no-region"])
def test_deploy_without_aws_settings_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      env: dict) -> None:
    """No credentials (or region) anywhere: botocore's error becomes a message with the fix."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup: fail at once
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["deploy", "babelmr-example:latest"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)
    assert "AWS request failed" in result.stderr and "check the AWS credentials" in result.stderr
    assert ("Unable to locate credentials" if env else "You must specify a region") in result.stderr
    assert "Traceback" not in result.stderr
