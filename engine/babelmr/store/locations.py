"""Open stores and input locations from URIs; expand input globs and folders into files."""

from __future__ import annotations

import fnmatch
import os
import re

import botocore.exceptions
import pyarrow.fs as pafs

from babelmr.errors import InputError, StoreError
from babelmr.store.base import FileEntry, Store
from babelmr.store.local import LocalStore
from babelmr.store.s3 import S3Store, describe_s3_error, s3_filesystem, s3_list_objects, s3_object_version, split_s3_uri

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


def local_version(st: os.stat_result) -> str:
    """A local file's version: its modification time (ns) and inode (a file replaced by rename has a new one)."""
    return f"{st.st_mtime_ns}:{st.st_ino}"


def file_version(uri: str) -> tuple[int, str] | None:
    """The current size and version of an input file (S3 ETag, local ``mtime_ns:inode``); None when it is gone."""
    if uri.startswith("s3://"):
        return s3_object_version(*split_s3_uri(uri))
    try:
        st = os.stat(uri.removeprefix("file://"))
    except FileNotFoundError:
        return None
    return st.st_size, local_version(st)


def _local_entry(path: str) -> FileEntry | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:  # deleted while listed
        return None
    return FileEntry(path, st.st_size, local_version(st), st.st_mtime_ns)


def _list_local(path: str) -> list[FileEntry]:
    fs = pafs.LocalFileSystem()
    if glob := _GLOB.search(path):
        base = path[: glob.start()].rsplit("/", 1)[0]
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        paths = [i.path for i in infos if i.type == pafs.FileType.File and _glob_match(i.path, path)]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            paths = [info.path]
        elif info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            paths = [i.path for i in infos if i.type == pafs.FileType.File and _is_data_file(i.path[len(path):])]
        else:
            paths = []
    return [e for e in map(_local_entry, paths) if e is not None]


def _list_s3(bucket: str, key: str) -> list[FileEntry]:
    """Like `_list_local`, through S3 listings, which carry each object's size and ETag: no request per file."""
    path = f"{bucket}/{key}".rstrip("/")
    if glob := _GLOB.search(path):
        base = path[: glob.start()].rsplit("/", 1)[0]
        prefix = base[len(bucket) + 1:]
        objects = s3_list_objects(bucket, f"{prefix}/" if prefix else "")
        found = [(k, size, etag) for k, size, etag in objects if _glob_match(f"{bucket}/{k}", path)]
    else:
        single = s3_object_version(bucket, key) if key else None
        if single is not None:
            found = [(key, *single)]
        else:
            found = [(k, size, etag) for k, size, etag in s3_list_objects(bucket, f"{key}/" if key else "")
                     if _is_data_file(k[len(key):])]
    return [FileEntry(f"s3://{bucket}/{k}", size, etag) for k, size, etag in found]


def list_input_files(uri: str) -> list[FileEntry]:
    """The files (as URIs) an input URI names (a file, a folder's files, or a glob), sorted, each with its
    size and version (to pin it: see `FileSlice`).

    Raises `InputError` naming the URI when nothing matches.
    """
    try:
        files = _list_s3(*split_s3_uri(uri)) if uri.startswith("s3://") else _list_local(filesystem_for(uri)[1])
    except (OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        cause = describe_s3_error(e) if uri.startswith("s3://") else str(e)
        raise InputError(f"input {uri!r}: cannot list it: {cause}") from None
    if not files:
        raise InputError(f"input {uri!r} matches no files: check the path or glob "
                         "(relative paths are relative to the job file's folder)")
    return sorted(files, key=lambda e: e.path)
