"""Run the examples in tests: load an example's modules, point its job at test data, fetch results."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.fs as pafs

from babelmr.store import filesystem_for

ROOT = Path(__file__).resolve().parent.parent


def example_module(language_dir: str, example: str, name: str) -> ModuleType:
    """Import ``<language_dir>/<example>/<name>.py`` under a unique module name."""
    path = ROOT / language_dir / example / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{language_dir}_{example}_{name}".replace("-", "_"), path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_for_data(language_dir: str, example: str, folder: Path, uris: dict[str, str],
                 env: dict[str, str] | None = None, warm: bool = False) -> Path:
    """A copy of the example's folder (without data) in ``folder``, its inputs' ``uri`` replaced in job.json
    (and every stage ``"warm": true`` with ``warm``)."""
    shutil.copytree(ROOT / language_dir / example, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("data", ".babelmr", "__pycache__"))
    source = folder / "job.json"
    job: dict[str, Any] = json.loads(source.read_text())
    for stage in job["stages"]:
        for inp in stage["inputs"]:
            if inp["name"] in uris:
                inp["uri"] = uris[inp["name"]]
        if env:
            stage.setdefault("env", {}).update(env)
        if warm:
            stage["warm"] = True
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    path.write_text(json.dumps(job, indent=2))
    return path


def run_cli(*args: str) -> dict[str, Any]:
    """``babelmr run ... --json`` as a user runs it; returns the run record it printed."""
    proc = subprocess.run([sys.executable, "-m", "babelmr", "run", *args, "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def fetch(uris: list[str], folder: Path) -> list[str]:
    """Local copies of result files (which may be on S3)."""
    folder.mkdir(parents=True, exist_ok=True)
    local = []
    for i, uri in enumerate(uris):
        fs, path = filesystem_for(uri)
        target = folder / f"{i:05d}.parquet"
        pafs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        local.append(str(target))
    return local


def upload_folder(local: Path, uri: str) -> None:
    """Copy a local folder to an S3 prefix."""
    fs, path = filesystem_for(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
