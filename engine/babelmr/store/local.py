"""A store in a local folder (the embedded default)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile

import pyarrow as pa
import pyarrow.fs as pafs

from babelmr.store import requests
from babelmr.store.base import FileEntry, Store


class LocalStore(Store):
    """Keys are files under a folder; atomicity from rename and hard links."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.uri = self.root
        self.filesystem = pafs.LocalFileSystem()

    @property
    def local_root(self) -> str:
        return self.root

    def path(self, key: str) -> str:
        return os.path.join(self.root, key) if key else self.root

    def _temp_file(self, key: str, data: bytes) -> str:
        target = self.path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # like any file written with the default umask (mkstemp makes it 0600)
        return tmp

    def open_output(self, key: str) -> pa.NativeFile:
        os.makedirs(os.path.dirname(self.path(key)), exist_ok=True)
        return super().open_output(key)

    def uri_for(self, key: str) -> str:
        return self.path(key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        requests.count("PUT")  # what the same write costs on S3
        tmp = self._temp_file(key, data)
        try:
            os.link(tmp, self.path(key))  # fails if the name exists: first writer wins
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def write_bytes(self, key: str, data: bytes) -> None:
        requests.count("PUT")
        os.replace(self._temp_file(key, data), self.path(key))

    def list(self, prefix: str) -> list[FileEntry]:
        # Hide the temporary files of writes in progress.
        return [e for e in super().list(prefix) if not os.path.basename(e.path).startswith(".tmp-")]

    def copy(self, source_uri: str, key: str) -> None:
        """A hard link to a local source (no bytes copied; a copy across filesystems), appearing atomically."""
        if "://" in source_uri and not source_uri.startswith("file://"):
            return super().copy(source_uri, key)
        source = source_uri.removeprefix("file://")
        target = self.path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = os.path.join(os.path.dirname(target), f".tmp-{os.getpid()}-{os.path.basename(target)}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return None
