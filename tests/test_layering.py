"""The layering contract in pyproject.toml ([tool.importlinter]): the worker never imports client code
(coordinator, backends, CLI, API); the store and the task spec import nothing above them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the ``babelmr`` package under ``root``/engine with ``root``/pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root / "engine")}  # this checkout's sources, not an installed copy
    return subprocess.run([sys.executable, "-c", LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, env=env, cwd=root)


def test_the_engine_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contract_catches_a_forbidden_import_even_a_lazy_indirect_one(tmp_path: Path) -> None:
    """A copy of the engine where the store reaches the job loader through a helper, inside a function."""
    shutil.copytree(ROOT / "engine" / "babelmr", tmp_path / "engine" / "babelmr",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "engine" / "babelmr" / "store" / "helper.py").write_text(
        "def schema():\n    from babelmr.job import job_schema\n\n    return job_schema()\n")
    with open(tmp_path / "engine" / "babelmr" / "worker" / "formats.py", "a") as f:
        f.write("\n\ndef _plan():\n    import babelmr.coordinator.planner  # noqa\n")
    with open(tmp_path / "engine" / "babelmr" / "store" / "base.py", "a") as f:
        f.write("\n\ndef _helper():\n    from babelmr.store import helper  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 broken" in result.stdout
    assert "babelmr.worker.formats -> babelmr.coordinator.planner" in result.stdout
    assert "babelmr.store.helper -> babelmr.job" in result.stdout
