"""Lines of user code, by one rule: non-blank lines that are not only a comment; Python docstrings and
the examples' shared test scaffolding (prepare.py, check.py) do not count. For babelmr, the program
plus the job file (what a user writes); the language's helper that babelmr ships (base-image/lib/go,
base-image/lib/csharp, babelmr.helper) is not user code and is counted apart (`helper_lines`). For the
hand-written variants, the whole program."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

from benchmarks.common import ROOT

PROGRAMS = {"examples-python": "*.py", "examples-go": "*.go", "examples-csharp": "*.cs"}
NOT_USER_CODE = {"prepare.py", "check.py"}
HELPERS = {"examples-python": ROOT / "engine" / "babelmr" / "helper.py",
           "examples-go": ROOT / "base-image" / "lib" / "go" / "babelmr.go",
           "examples-csharp": ROOT / "base-image" / "lib" / "csharp" / "Babelmr.cs"}


def _python_lines(text: str) -> int:
    """Lines holding a Python token other than comments, docstrings, and line breaks."""
    lines: set[int] = set()
    previous = tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                        tokenize.ENDMARKER):
            previous = tok.type if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT) else previous
            continue
        is_docstring = tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                                     tokenize.DEDENT)
        previous = tok.type
        if not is_docstring:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines)


def count_lines(path: Path) -> int:
    """User-code lines of one file by the rule above."""
    text = path.read_text()
    if path.suffix == ".py":
        return _python_lines(text)
    comment = "//" if path.suffix in (".go", ".cs") else None
    return sum(1 for line in text.splitlines() if line.strip() and not (comment and line.strip().startswith(comment)))


def babelmr_lines(language: str, example: str) -> dict[str, int]:
    """The user's files for a babelmr example: its program(s), its job file and its Dockerfile."""
    folder = ROOT / language / example
    files = [p for p in sorted(folder.glob(PROGRAMS[language])) if p.name not in NOT_USER_CODE]
    counts = {p.name: count_lines(p) for p in files}
    counts["job.json"] = count_lines(folder / "job.json")
    return counts


def helper_lines(language: str) -> dict[str, int]:
    """The shared helper babelmr ships for the examples' language (not counted as user code)."""
    path = HELPERS[language]
    return {path.relative_to(ROOT).as_posix(): count_lines(path)}


def handwritten_lines(query: str) -> dict[str, int]:
    """The hand-written ("All Custom") program of a query."""
    path = ROOT / "benchmarks" / "handwritten" / f"{query.replace('-', '_')}.py"
    return {path.name: count_lines(path)}
