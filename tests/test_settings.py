"""babelmr.settings: every BABELMR_* tunable typed, documented and read in one place."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import babelmr.settings as s
from babelmr.cli import main
from babelmr.errors import SettingsError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_when_nothing_is_set() -> None:
    got = s.Settings.from_environ({})
    assert got == s.Settings()
    assert (got.read_threads, got.decode_threads, got.copy_column_chunks) == (8, 4, True)
    assert (got.row_group_bytes, got.export_buffer) == (64 << 20, 64 << 20)
    assert got.program_parquet_compression == "none" and got.workdir is None


def test_values_are_parsed_by_type() -> None:
    got = s.Settings.from_environ({
        "BABELMR_READ_THREADS": "3", "BABELMR_COPY_COLUMN_CHUNKS": "0", "BABELMR_ROW_GROUP_BYTES": "16MiB",
        "BABELMR_EXPORT_BUFFER": "1000", "BABELMR_PROGRAM_PARQUET_COMPRESSION": "zstd",
        "BABELMR_WORKDIR": "/scratch", "BABELMR_OTHER": "ignored"})
    assert (got.read_threads, got.copy_column_chunks, got.row_group_bytes) == (3, False, 16 << 20)
    assert (got.export_buffer, got.program_parquet_compression, got.workdir) == (1000, "zstd", "/scratch")


@pytest.mark.parametrize(("variable", "value", "why"), [
    ("BABELMR_READ_THREADS", "eight", "not a whole number"),
    ("BABELMR_DECODE_THREADS", "0", "must be 1 or more"),
    ("BABELMR_COPY_COLUMN_CHUNKS", "maybe", "use 1 or 0"),
    ("BABELMR_ROW_GROUP_BYTES", "64 apples", "not a size"),
    ("BABELMR_EXPORT_BUFFER", "0", "must be more than 0 bytes"),
    ("BABELMR_PROGRAM_PARQUET_COMPRESSION", "lzma", "use one of none, snappy"),
])
def test_an_invalid_value_names_the_variable_the_cause_and_the_default(variable: str, value: str, why: str) -> None:
    with pytest.raises(SettingsError) as err:
        s.Settings.from_environ({variable: value})
    message = str(err.value)
    assert message.startswith(f"{variable}={value!r} is invalid: {why}"), message
    assert "Unset it for the default" in message and "docs/settings.md" in message


@hsettings(max_examples=60, deadline=None)
@given(st.text(max_size=12))
def test_a_thread_count_is_a_positive_integer_or_an_error(text: str) -> None:
    try:
        expected: int | None = int(text)
    except ValueError:
        expected = None
    if expected is None or expected < 1:
        with pytest.raises(SettingsError, match=r"^BABELMR_READ_THREADS="):
            s.Settings.from_environ({"BABELMR_READ_THREADS": text})
    else:
        assert s.Settings.from_environ({"BABELMR_READ_THREADS": text}).read_threads == expected


def test_the_settings_are_read_once_and_reloaded_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BABELMR_DECODE_THREADS", "2")
    assert s.reload().decode_threads == 2
    monkeypatch.setenv("BABELMR_DECODE_THREADS", "5")
    assert s.settings().decode_threads == 2  # cached: read once
    with s.replaced(decode_threads=7):
        assert s.settings().decode_threads == 7
    assert s.settings().decode_threads == 2
    monkeypatch.delenv("BABELMR_DECODE_THREADS")
    assert s.reload().decode_threads == 4


def test_docs_settings_md_is_generated_from_the_settings() -> None:
    """Fails when a setting changed without `python -m babelmr.settings > docs/settings.md`."""
    assert (ROOT / "docs" / "settings.md").read_text() == s.markdown()
    for f in fields(s.Settings):
        assert f.metadata["doc"], f"setting {f.name} has no doc"


def test_no_module_reads_a_babelmr_variable_from_the_environment_itself() -> None:
    reads = re.compile(r"(environ(\.get)?[\[(]|getenv\()\s*[\"']BABELMR_")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "engine" / "babelmr").rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if reads.search(line)]
    assert offenders == []


def test_the_cli_refuses_an_invalid_setting_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BABELMR_ROW_GROUP_BYTES", "lots")
    monkeypatch.setattr(s, "_current", None)  # as in a new process
    result = CliRunner().invoke(main, ["runs", "--store", "/nonexistent-store"])
    assert result.exit_code == 1
    assert "BABELMR_ROW_GROUP_BYTES='lots' is invalid" in result.output
    assert "Traceback" not in result.output


def test_help_lists_every_setting() -> None:
    text = CliRunner().invoke(main, ["--help"]).output
    assert all(s.variable(f.name) in text for f in fields(s.Settings))


def test_only_worker_tunables_travel_to_containers() -> None:
    """Container tasks get the worker tunables the coordinator was given, and no coordinator-only ones."""
    from babelmr.settings import worker_environment
    env = {"BABELMR_SORT_RUN_BYTES": "4096", "BABELMR_HEARTBEAT_SECONDS": "1", "BABELMR_WORKDIR": "/x",
           "BABELMR_READ_THREADS": "2", "HOME": "/root"}
    assert worker_environment(env) == {"BABELMR_SORT_RUN_BYTES": "4096", "BABELMR_READ_THREADS": "2"}
