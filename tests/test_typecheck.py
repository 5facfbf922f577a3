"""The engine type-checks clean under mypy, with the configuration in pyproject.toml ([tool.mypy])."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent


def test_engine_typechecks_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """mypy reports no error in engine/babelmr; on failure the message is mypy's own report."""
    # [tool.mypy]'s `files` is relative to the working directory; the incremental cache (.mypy_cache, gitignored)
    # makes a re-run take about a second instead of a cold check's several.
    monkeypatch.chdir(ROOT)
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                      "--cache-dir", str(ROOT / ".mypy_cache")])
    assert status == 0, (f"mypy found type errors in the engine (run `mypy` from the repository root; the stub "
                         f"packages are in the `test` extra):\n{stdout}{stderr}")
