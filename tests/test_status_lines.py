"""Hadoop Streaming status lines (`reporter:status:MESSAGE`) on a program's stderr, seen while it runs."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from babelmr.worker.program import read_status, run_program, stderr_tail

PROGRAM = """
import sys, time
for i in range(4):
    print(f"reporter:status:step {i} of 4", file=sys.stderr, flush=True)
    time.sleep(0.7)
print("reporter:counter:g,n,1", file=sys.stderr)
print("an ordinary line", file=sys.stderr)
"""


def test_status_lines_are_reported_while_the_program_runs(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []
    running = threading.Event()
    running.set()

    def on_status(text: str) -> None:
        seen.append((text, running.is_set()))

    run = run_program([sys.executable, "-c", PROGRAM], None, shell=False, env={"PATH": os.environ["PATH"]},
                      workdir=str(tmp_path), log_dir=str(tmp_path), timeout=60, label="t", on_status=on_status)
    running.clear()
    texts = [t for t, _ in seen]
    assert run.exit_code == 0 and run.status == "step 3 of 4" and run.counters == {"g.n": 1}
    assert len(texts) >= 2 and texts[-1] == "step 3 of 4"  # several updates, the last one last
    assert texts == sorted(texts) and len(set(texts)) == len(texts)  # in order, each once
    assert stderr_tail(run.stderr_path) == "an ordinary line"  # error messages leave status lines out


def test_read_status_takes_the_last_line_and_ignores_partial_prefixes(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    log.write_text("reporter:status:one\nnot reporter:status:two\nreporter:status:  three  \nreporter:statu\n")
    assert read_status(str(log)) == "three"
    assert read_status(str(tmp_path / "missing.log")) is None
