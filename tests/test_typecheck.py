"""The engine type-checks clean under mypy, with the configuration in pyproject.toml ([tool.mypy])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engine_typechecks_clean() -> None:
    """mypy reports no error in engine/babelmr; on failure the message is mypy's own report."""
    # A child process, not mypy.api.run: a cold check grows the process by ~0.5 GB that the rest of the suite
    # would carry. [tool.mypy]'s `files` is relative to the working directory; the incremental cache
    # (.mypy_cache, gitignored) makes a re-run take a second or two instead of a cold check's ten or more.
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                           "--cache-dir", str(ROOT / ".mypy_cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (f"mypy found type errors in the engine (run `mypy` from the repository root; the "
                                  f"stub packages are in the `test` extra):\n{done.stdout}{done.stderr}")
