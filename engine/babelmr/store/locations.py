"""Open stores and input locations from URIs; expand input globs and folders into files."""

from __future__ import annotations

import fnmatch
import os
import re

import pyarrow.fs as pafs

from babelmr.errors import InputError, StoreError
from babelmr.store.base import FileEntry, Store
from babelmr.store.local import LocalStore
from babelmr.store.s3 import S3Store, s3_filesystem, split_s3_uri

_GLOB = re.compile(r"[*?\[]")


def open_store(uri: str) -> Store:
    """The store at a local path, ``file://`` URI or ``s3://bucket/prefix``."""
    if uri.startswith("s3://"):
        return S3Store(uri)
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"store {uri!r}: unsupported scheme; use a local folder, file:// or s3://")
    return LocalStore(uri.removeprefix("file://"))


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``uri`` and the path within it."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        return s3_filesystem(), f"{bucket}/{key}".rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(uri.removeprefix("file://"))


def to_uri(fs: pafs.FileSystem, path: str) -> str:
    """The URI a user would write for ``path`` in ``fs``."""
    return f"s3://{path}" if isinstance(fs, pafs.S3FileSystem) else path


def _is_data_file(path: str) -> bool:
    # Hadoop/Spark conventions: _SUCCESS, _metadata and hidden files are not data.
    name = path.rsplit("/", 1)[-1]
    return not name.startswith((".", "_"))


def _glob_match(path: str, pattern: str) -> bool:
    # Like a shell (and Hadoop): wildcards stay within one path segment, so 'data/*.csv' skips data/old/x.csv.
    parts, patterns = path.split("/"), pattern.split("/")
    return len(parts) == len(patterns) and all(map(fnmatch.fnmatchcase, parts, patterns))


def list_input_files(uri: str) -> list[FileEntry]:
    """The files (as URIs) an input URI names (a file, a folder's files, or a glob), sorted.

    Raises `InputError` naming the URI when nothing matches.
    """
    fs, path = filesystem_for(uri)
    try:
        if _GLOB.search(path):
            base = path[: _GLOB.search(path).start()].rsplit("/", 1)[0]
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            files = [i for i in infos if i.type == pafs.FileType.File and _glob_match(i.path, path)]
        else:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.File:
                files = [info]
            elif info.type == pafs.FileType.Directory:
                infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
                files = [i for i in infos if i.type == pafs.FileType.File
                         and _is_data_file(i.path[len(path):])]
            else:
                files = []
    except OSError as e:
        raise InputError(f"input {uri!r}: cannot list it: {e}") from None
    if not files:
        raise InputError(f"input {uri!r} matches no files: check the path or glob "
                         "(relative paths are relative to the job file's folder)")
    return sorted((FileEntry(to_uri(fs, i.path), i.size or 0, i.mtime_ns) for i in files), key=lambda e: e.path)
