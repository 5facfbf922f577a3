"""Benchmark data, generated once per scale factor and cached under benchmarks/.cache/ (git-ignored)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from benchmarks.common import ROOT

CACHE = ROOT / "benchmarks" / ".cache"


def _prepare_module(example: str) -> ModuleType:
    path = ROOT / "examples-python" / example / "prepare.py"
    spec = importlib.util.spec_from_file_location(f"prepare_{example.replace('-', '_')}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tpch_parts(sf: float) -> int:
    """Files of lineitem: about 1.5 M rows (one map task's share) each, at least 4."""
    return max(4, round(sf * 4))


def dataset(query: str, sf: float) -> Path:
    """The folder holding ``query``'s data at scale factor ``sf`` (made with the examples' prepare.py)."""
    folder = CACHE / f"{query}-sf{sf:g}"
    if query == "tpch-q1":
        _prepare_module("tpch-q1").prepare(str(folder), sf=sf, parts=tpch_parts(sf))
    else:  # TPCx-BB-like store_sales: about 1 M rows per scale factor
        rows = max(20_000, int(1_000_000 * sf))
        _prepare_module("bigbench-q1").prepare(str(folder), rows=rows, files=max(2, tpch_parts(sf)), row_groups=4,
                                               seed=7)
    return folder
