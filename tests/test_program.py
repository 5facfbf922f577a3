"""babelmr.worker.program: running the user's program (argv, shell, timeout, logs, counters)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from babelmr.errors import TaskError
from babelmr.worker.program import ProgramRun, program_argv, read_counters, run_program, stderr_tail

PY = sys.executable


def run(tmp_path: Path, command: list[str], mode: str | None = None, *, shell: bool = False,
        timeout: float | None = None, env: dict[str, str] | None = None) -> ProgramRun:
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    return run_program(command, mode, shell=shell, env={"PATH": os.environ["PATH"], **(env or {})},
                       workdir=str(work), log_dir=str(logs), timeout=timeout, label="stage 'map' task 3 attempt 1")


def script(tmp_path: Path, source: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


ECHO_ARGV = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"


def stdout_of(result: ProgramRun) -> str:
    return Path(result.stdout_path).read_text()


# -- argv and shell ------------------------------------------------------------------------------------------------


def test_mode_is_the_last_argument_and_no_shell_is_used(tmp_path: Path) -> None:
    args = ["$HOME", "a;b", "x && y", "`id`", "*", "two words", "'quoted'"]
    result = run(tmp_path, [PY, script(tmp_path, ECHO_ARGV), *args], "reduce", env={"HOME": "/somewhere"})
    assert result.exit_code == 0 and not result.timed_out
    assert json.loads(stdout_of(result)) == [*args, "reduce"]  # every argument arrives literally
    assert result.argv == [PY, str(tmp_path / "prog.py"), *args, "reduce"]


def test_no_mode_adds_no_argument(tmp_path: Path) -> None:
    result = run(tmp_path, [PY, script(tmp_path, ECHO_ARGV), "only"])
    assert json.loads(stdout_of(result)) == ["only"]


def test_shell_true_runs_through_a_shell(tmp_path: Path) -> None:
    result = run(tmp_path, ["echo \"$GREETING\"; echo second"], "map", shell=True, env={"GREETING": "hi there"})
    assert result.exit_code == 0
    assert stdout_of(result).splitlines() == ["hi there", "second map"]
    assert result.argv[:2] == ["/bin/sh", "-c"]


def test_program_argv() -> None:
    assert program_argv(["prog", "a b"], "map", shell=False) == ["prog", "a b", "map"]
    assert program_argv(["prog"], None, shell=False) == ["prog"]
    assert program_argv(["cat in.csv | sort"], "re duce", shell=True) == [
        "/bin/sh", "-c", "cat in.csv | sort 're duce'"]


def test_program_runs_in_the_workdir_with_the_given_environment(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    prog = script(tmp_path, "import os\nprint(os.getcwd())\nprint(os.environ.get('MR_STAGE'))\n"
                            "print(os.environ.get('NOT_PASSED'))\n")
    monkeypatch.setenv("NOT_PASSED", "leak")  # only the env given reaches the program
    result = run(tmp_path, [PY, prog], env={"MR_STAGE": "map"})
    assert stdout_of(result).splitlines() == [str(tmp_path / "work"), "map", "None"]


# -- exit codes and logs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 42])
def test_exit_code_is_reported(tmp_path: Path, code: int) -> None:
    result = run(tmp_path, [PY, "-c", f"import sys; sys.exit({code})"])
    assert result.exit_code == code
    assert not result.timed_out


def test_death_by_signal_is_a_negative_exit_code(tmp_path: Path) -> None:
    result = run(tmp_path, [PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    assert result.exit_code == -15


def test_stdout_and_stderr_go_to_files(tmp_path: Path) -> None:
    prog = script(tmp_path, "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\n"
                            "sys.stdout.write('ünïcode\\n')\n")
    result = run(tmp_path, [PY, prog])
    assert Path(result.stdout_path) == tmp_path / "logs" / "stdout.log"
    assert Path(result.stderr_path) == tmp_path / "logs" / "stderr.log"
    assert Path(result.stdout_path).read_text(encoding="utf-8") == "to out\nünïcode\n"
    assert Path(result.stderr_path).read_text() == "to err\n"


def test_stdin_is_empty(tmp_path: Path) -> None:
    result = run(tmp_path, [PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert stdout_of(result).strip() == "''"


# -- timeout ---------------------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_timeout_kills_the_program_and_its_children(tmp_path: Path) -> None:
    prog = script(tmp_path, "import subprocess, time\n"
                            "child = subprocess.Popen(['sleep', '60'])\n"
                            "open('child.pid', 'w').write(str(child.pid))\n"
                            "print('started', flush=True)\n"
                            "time.sleep(60)\n")
    start = time.monotonic()
    result = run(tmp_path, [PY, prog], timeout=1.5)
    elapsed = time.monotonic() - start
    assert result.timed_out
    assert result.exit_code == -9
    assert 1.4 <= elapsed < 10, elapsed  # about the timeout, not the sleep
    assert 1.4 <= result.seconds < 10
    assert stdout_of(result) == "started\n"
    child = int((tmp_path / "work" / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the program's child survived the timeout"


def test_a_program_finishing_in_time_is_not_timed_out(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run(tmp_path, [PY, "-c", "print('done')"], timeout=30)
    assert not result.timed_out and result.exit_code == 0
    assert time.monotonic() - start < 10  # the timer does not hold the caller


# -- counters, stderr tail, peak memory ------------------------------------------------------------------------------


def test_counters_are_summed(tmp_path: Path) -> None:
    lines = ["reporter:counter:g,n,3", "reporter:counter:g,n,4", "reporter:counter:g,m,1",
             "reporter:counter:other group,rows,-2", "reporter:counter:bad,line", "reporter:counter:g,n,notanumber",
             "not a counter g,n,100"]
    prog = script(tmp_path, f"import sys\nfor line in {lines!r}:\n    print(line, file=sys.stderr)\n")
    result = run(tmp_path, [PY, prog])
    assert result.counters == {"g.n": 7, "g.m": 1, "other group.rows": -2}


def test_read_counters_group_with_commas(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    log.write_text("reporter:counter:a,b,c,5\nreporter:counter:a,b,c,5\n")
    assert read_counters(str(log)) == {"a,b.c": 10}


def test_stderr_tail_keeps_the_last_lines_without_counters(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    lines = [f"line {i}" for i in range(50)]
    log.write_text("\n".join([*lines[:45], "reporter:counter:g,n,1", *lines[45:]]) + "\n")
    assert stderr_tail(str(log)) == "\n".join(lines[30:])
    assert stderr_tail(str(log), lines=3) == "line 47\nline 48\nline 49"
    assert stderr_tail(str(tmp_path / "missing.log")) == ""


def test_stderr_tail_of_a_failing_program_with_bad_bytes(tmp_path: Path) -> None:
    prog = script(tmp_path, "import sys\nsys.stderr.buffer.write(b'Traceback\\nbad \\xff byte\\nValueError: boom\\n')\n"
                            "sys.exit(1)\n")
    result = run(tmp_path, [PY, prog])
    assert result.exit_code == 1
    tail = stderr_tail(result.stderr_path)
    assert tail.splitlines()[0] == "Traceback" and tail.endswith("ValueError: boom")


def test_peak_memory_of_the_program_is_sampled(tmp_path: Path) -> None:
    prog = script(tmp_path, "import time\nblock = bytearray(150 * 1024 * 1024)\n"
                            "for i in range(0, len(block), 4096):\n    block[i] = 1\ntime.sleep(0.5)\n")
    result = run(tmp_path, [PY, prog])
    assert result.exit_code == 0
    assert 150 * 1024 * 1024 <= result.peak_rss_bytes < 1024 * 1024 * 1024


def test_peak_memory_counts_a_child_started_later(tmp_path: Path) -> None:
    """The sampler reads the known processes often and looks for new ones less often: a child the program starts
    after the first look, and that lives past the next one, still counts."""
    child = "import time\nblock = bytearray(150 * 1024 * 1024)\nfor i in range(0, len(block), 4096):\n" \
            "    block[i] = 1\ntime.sleep(1.5)\n"
    prog = script(tmp_path, f"import subprocess, sys, time\ntime.sleep(0.3)\n"
                            f"subprocess.run([sys.executable, '-c', {child!r}], check=True)\n")
    result = run(tmp_path, [PY, prog])
    assert result.exit_code == 0
    assert result.peak_rss_bytes >= 150 * 1024 * 1024


# -- commands that cannot run ----------------------------------------------------------------------------------------


def test_command_not_found_is_not_retryable_and_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as err:
        run(tmp_path, ["no-such-program-babelmr", "x"], "map")
    assert err.value.retryable is False
    message = str(err.value)
    assert "'no-such-program-babelmr' not found" in message
    assert "install it" in message and "'command'" in message
    assert message.startswith("stage 'map' task 3 attempt 1")


def test_command_not_executable_is_not_retryable(tmp_path: Path) -> None:
    prog = script(tmp_path, "#!/bin/sh\necho hi\n", name="prog.sh")
    with pytest.raises(TaskError, match="not executable: chmod") as err:
        run(tmp_path, [prog])
    assert err.value.retryable is False
    os.chmod(prog, 0o755)
    assert stdout_of(run(tmp_path, [prog])) == "hi\n"


def test_shell_command_not_found_is_exit_code_127(tmp_path: Path) -> None:
    result = run(tmp_path, ["no-such-program-babelmr"], shell=True)
    assert result.exit_code == 127
    assert "not found" in stderr_tail(result.stderr_path)
