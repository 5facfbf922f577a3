"""The benchmarks keep working: the one command in smoke mode (SF 0.01, one repetition) writes a report
in which every variant answered DuckDB's answer (the runner checks each answer before timing counts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.__main__ import VARIANTS
from benchmarks.loc import babelmr_lines, count_lines, helper_lines

pytestmark = [pytest.mark.slow, pytest.mark.docker]
ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_writes_the_report(base_image, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = out.read_text()
    for label, *_ in VARIANTS.values():
        assert f"| {label} |" in report, label
    assert "## Targets" in report and "## Engine building blocks" in report
    assert "| import" in report and "task overhead" in report and "peak RSS" in report
    assert (tmp_path / "benchmarks" / "runtime.png").stat().st_size > 10_000
    assert (tmp_path / "benchmarks" / "timeline.png").stat().st_size > 10_000


def test_lines_of_code_rule(tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text('"""Docstring."""\n\n# comment\nimport os  # trailing\n\n\ndef f():\n    """Doc."""\n'
                       '    return (1,\n            2)\n')
    assert count_lines(program) == 4  # import, def, return over two lines
    go = tmp_path / "m.go"
    go.write_text("package main\n\n// comment\nfunc main() {\n}\n")
    assert count_lines(go) == 3
    counts = babelmr_lines("examples-python", "tpch-q1")
    assert set(counts) == {"q1.py", "job.json"} and all(n > 10 for n in counts.values())
    for language in ("examples-python", "examples-go", "examples-csharp"):  # the shipped helper is counted apart
        (helper, n), = helper_lines(language).items()
        assert n > 30 and Path(helper).name not in babelmr_lines(language, "tpch-q1")
