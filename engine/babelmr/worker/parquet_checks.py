"""Checks of a Parquet input against the job, in one place: the planner runs them at plan time (on the footers
it reads) and the importer at task time, with the same messages."""

from __future__ import annotations

from collections.abc import Sequence

from babelmr.errors import InputError


def unreadable(name: str, uri: str, error: BaseException | str) -> InputError:
    """The error for a file that is not Parquet, or is corrupt."""
    return InputError(f"input {name!r}: cannot read Parquet file {uri}: {error}")


def check_columns(name: str, columns: Sequence[str] | None, files: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Raise unless every column asked for is in some file of the input (a file lacking one reads it as NULL).

    ``files`` are (uri, column names) of the input's files, the first one named in the message.
    """
    if not files:
        return
    found = {c for _, names in files for c in names}
    missing = [c for c in columns or [] if c not in found]
    if missing:
        uri, names = files[0]
        others = f" (nor does any of the input's {len(files) - 1} other file(s))" if len(files) > 1 else ""
        raise InputError(f"input {name!r}: {uri} has no column(s) {missing}; it has {list(names)}: fix 'columns' "
                         f"in the job file{others}")


def check_row_groups(name: str, uri: str, num_row_groups: int, row_groups: Sequence[int] | None) -> None:
    """Raise when ``row_groups`` names a row group the file does not have."""
    bad = [g for g in row_groups or [] if g >= num_row_groups]
    if bad:
        raise InputError(f"input {name!r}: {uri} has {num_row_groups} row groups; row_groups {bad} do not exist")
