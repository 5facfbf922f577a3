"""AWS credentials for task containers, kept out of their environment (and so out of `docker inspect`).

The coordinator writes its credentials to an AWS shared-credentials file in a private folder (mode 0700)
and bind-mounts that one file read-only into each task container at `CONTAINER_PATH`; the container's
environment carries only ``AWS_SHARED_CREDENTIALS_FILE`` (the path) next to the non-secret settings
(region, endpoint). Every AWS SDK in the container, the engine's boto3 and pyarrow included, reads the file
by itself. The user's program gets neither the secrets nor the path (`babelmr.worker.task.program_env`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

from docker.types import Mount

from babelmr.store.s3 import aws_environment

SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# Settings that would make an SDK look for credentials elsewhere than the mounted file.
NOT_FORWARDED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
CONTAINER_PATH = "/run/babelmr/aws-credentials"


class CredentialsFile:
    """The coordinator's AWS credentials as a file to mount into task containers; `close` removes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: str | None = None
        self._written: dict[str, str] | None = None

    def _path(self) -> str | None:
        """The host file holding the current credentials (rewritten when they change), None without any."""
        env = aws_environment()
        secrets = {k: env[k] for k in SECRETS if env.get(k)}
        if "AWS_ACCESS_KEY_ID" not in secrets or "AWS_SECRET_ACCESS_KEY" not in secrets:
            return None
        with self._lock:
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix="babelmr-credentials-")  # 0700: no other host user
            path = os.path.join(self._folder, "credentials")
            if secrets != self._written:
                lines = ["[default]", f"aws_access_key_id = {secrets['AWS_ACCESS_KEY_ID']}",
                         f"aws_secret_access_key = {secrets['AWS_SECRET_ACCESS_KEY']}"]
                token = secrets.get("AWS_SESSION_TOKEN") or secrets.get("AWS_SECURITY_TOKEN")
                if token:
                    lines.append(f"aws_session_token = {token}")
                tmp = path + ".tmp"
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                    f.write("\n".join(lines) + "\n")
                # The container's user (another uid) must read it; the 0700 folder keeps host users out.
                os.chmod(tmp, 0o444)
                os.replace(tmp, path)
                self._written = secrets
            return path

    def environment(self) -> dict[str, str]:
        """The AWS variables for a task container: settings without secrets, plus the credentials file's path."""
        env = {k: v for k, v in aws_environment().items() if k not in SECRETS and k not in NOT_FORWARDED}
        if self._path() is not None:
            env["AWS_SHARED_CREDENTIALS_FILE"] = CONTAINER_PATH
        return env

    def mounts(self) -> list[Mount]:
        """The read-only bind mount of the credentials file (none when the coordinator has no static keys)."""
        path = self._path()
        return [Mount(target=CONTAINER_PATH, source=path, type="bind", read_only=True)] if path else []

    def close(self) -> None:
        with self._lock:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
            self._folder, self._written = None, None
