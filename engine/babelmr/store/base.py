"""The store interface every backend and the worker use."""

from __future__ import annotations

import builtins
import contextlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs

from babelmr.store import requests


@dataclass(frozen=True)
class FileEntry:
    """One object: its key relative to the store root (or a full path for inputs), its size and, for inputs,
    its version (S3 ETag, or a local file's ``mtime_ns:inode``)."""

    path: str
    size: int
    version: str | None = None
    mtime_ns: int | None = field(default=None, compare=False)  # when listed with it (inputs: for fingerprints)


class Store(ABC):
    """A root (local folder or ``s3://bucket/prefix``) under which babelmr reads and writes keys.

    Keys are ``/``-separated and relative to the root. Bulk data goes through `filesystem` and
    `path` so pyarrow streams it; small records use the byte methods.
    """

    uri: str
    filesystem: pafs.FileSystem

    @abstractmethod
    def path(self, key: str) -> str:
        """The key's path in `filesystem`."""

    @abstractmethod
    def uri_for(self, key: str) -> str:
        """The URI a user (or another process) opens the key with."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object atomically unless it exists; True when this call created it."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace the object atomically: readers see the old or the new content, never a part."""

    @property
    def local_root(self) -> str | None:
        """The folder holding the keys when they are files on this machine (a container can mount it); else None."""
        return None

    def check(self) -> None:  # noqa: B027 - a store that cannot fail early has nothing to check
        """Fail early, naming the store, the cause and the fix, when the store cannot be used."""

    def size(self, key: str) -> int:
        """The object's size in bytes (one HEAD request; raises FileNotFoundError when absent)."""
        requests.count("HEAD")
        info = self.filesystem.get_file_info(self.path(key))
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"no object {self.uri_for(key)}")
        return info.size or 0

    def open_output(self, key: str) -> pa.NativeFile:
        """A stream writing the object (S3: a multipart upload that appears only when closed)."""
        return self.filesystem.open_output_stream(self.path(key))

    def read_bytes(self, key: str) -> bytes:
        """The whole object (for small records; raises FileNotFoundError when absent)."""
        requests.count("GET")
        with self.filesystem.open_input_stream(self.path(key)) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        requests.count("HEAD")
        return self.filesystem.get_file_info(self.path(key)).type == pafs.FileType.File

    def list(self, prefix: str) -> list[FileEntry]:
        """Every object under ``prefix/`` (recursively), keys relative to the root, sorted."""
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        root = self.path("")
        entries = [
            FileEntry(info.path[len(root):].lstrip("/"), info.size or 0)
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
        ]
        requests.count("LIST", max(1, -(-len(entries) // 1000)))  # S3 lists 1000 keys a page
        return sorted(entries, key=lambda e: e.path)

    def delete(self, keys: builtins.list[str]) -> None:  # `list` here would name the method above
        """Remove objects; absent ones are ignored."""
        requests.count("DELETE", len(keys))
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_file(self.path(key))

    def upload_file(self, local_path: str, key: str) -> None:
        """Copy a local file into the store, streaming."""
        with open(local_path, "rb") as src, self.open_output(key) as dst:
            while chunk := src.read(8 << 20):
                dst.write(chunk)
        requests.count_upload(os.path.getsize(local_path))

    def copy(self, source_uri: str, key: str) -> None:
        """Copy the file at ``source_uri`` (a local path or s3:// URI) to ``key``, streaming.

        Subclasses copy without moving the bytes through this process where they can (hard link,
        S3 server-side copy); this fallback streams them, for a source on another kind of storage.
        """
        from babelmr.store.locations import filesystem_for  # locations imports this module

        fs, path = filesystem_for(source_uri)
        with fs.open_input_stream(path) as src, self.open_output(key) as dst:
            while chunk := src.read(8 << 20):
                dst.write(chunk)
