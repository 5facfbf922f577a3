"""The cost report against hand-computed values, the price config, Lambda REPORT lines and request counts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from babelmr.cli import main
from babelmr.cost import PriceTable, lambda_report, load_prices, run_cost
from babelmr.errors import BabelMRError
from babelmr.spec import RunRecord, TaskStats
from babelmr.store import open_store, requests
from conftest import write_job

MIB = 1 << 20


def _run(partial: dict[str, Any]) -> RunRecord:
    """A stored run record (its JSON form, the fields cost does not read filled in), read as babelmr reads it."""
    fields = {"job": "j", "job_file": "j.json", "store": "s", "status": "succeeded", "started_at": 0.0, "host": "h",
              "pid": 1}
    return RunRecord.from_dict({**fields, **partial})


def _record(backend: str = "local") -> RunRecord:
    """A run record as the coordinator writes it, with numbers chosen to be computed by hand."""
    return _run({
        "run_id": "r-1", "backend": backend, "status": "succeeded", "started_at": 100.0,
        "coordinator_s3_requests": {"PUT": 6, "LIST": 2, "GET": 3, "HEAD": 0},
        "stages": [
            {"name": "map", "tasks": 1, "memory_bytes": 1024 * MIB, "task_attempts": [
                # 2.5 s, a failed attempt: billed like any other
                {"task": 0, "attempt": 1, "status": "error", "started_at": 100.0, "finished_at": 102.5,
                 "s3_requests": {"GET": 10, "PUT": 2, "HEAD": 3}, "bytes_in": 1000},
                # 1.0004 s: Lambda rounds up to the millisecond, 1.001 s
                {"task": 0, "attempt": 2, "status": "ok", "started_at": 103.0, "finished_at": 104.0004,
                 "s3_requests": {"PUT": 4, "LIST": 1}, "bytes_in": 1000, "bytes_out": 500}]},
            # an old record: no times, no memory (priced at 2048 MB), phases only: 0.5 + 1.25 + 0.25 = 2 s
            {"name": "reduce", "tasks": 1, "task_attempts": [
                {"task": 0, "attempt": 1, "status": "ok", "import_seconds": 0.5, "program_seconds": 1.25,
                 "export_seconds": 0.25, "s3_requests": {"GET": 1000}, "bytes_in": 500, "bytes_out": 40}]},
        ]})


def test_cost_of_a_local_run_matches_the_hand_computed_values() -> None:
    report = run_cost(_record(), PriceTable())
    total = report.total
    assert total.task_seconds == pytest.approx(5.501)  # 2.5 + 1.001 + 2.0
    assert total.gb_seconds == pytest.approx(7.501)  # (2.5 + 1.001) s x 1 GB + 2.0 s x 2 GB
    assert total.invocations == 3
    assert total.requests == {"GET": 1013, "PUT": 12, "HEAD": 3, "LIST": 3}
    assert (total.bytes_read, total.bytes_written) == (2500, 540)
    x86 = total.dollars(report.prices, "x86_64")
    # 7.501 GB-s x $0.0000166667 = $0.0001250169167; 3 x $0.0000002 = $0.0000006;
    # S3: 1013 GET x $0.0000004 + 3 HEAD x $0.0000004 + 12 PUT x $0.000005 + 3 LIST x $0.000005 = $0.0004814
    assert x86["compute"] == pytest.approx(0.0001250169167, rel=1e-9)
    assert x86["invocations"] == pytest.approx(0.0000006, rel=1e-9)
    assert x86["s3"] == pytest.approx(0.0004814, rel=1e-9)
    assert x86["total"] == pytest.approx(0.0006070169167, rel=1e-9)
    # arm64: 7.501 x $0.0000133334 = $0.0001000138334
    assert total.dollars(report.prices, "arm64")["total"] == pytest.approx(0.0005820138334, rel=1e-9)
    map_usage = dict(report.stages)["map"]
    assert map_usage.gb_seconds == pytest.approx(3.501) and map_usage.invocations == 2
    assert report.estimate and report.memory_mb == {1024, 2048}
    assert report.summary() == ("this run on Lambda at 1024/2048 MB would cost $0.000607 on x86_64, $0.000582 on "
                                "arm64 (AWS list prices for us-east-1 as of 2025-01-01)")


def test_a_lambda_run_is_priced_at_its_billed_duration_and_memory_size() -> None:
    record = {"run_id": "r", "backend": "lambda", "emulated": False, "stages": [{"name": "s", "tasks": 1,
              "task_attempts": [{"task": 0, "attempt": 1, "status": "ok", "started_at": 0.0, "finished_at": 9.0,
                                 "lambda_billed_ms": 1234, "lambda_memory_mb": 512, "memory_bytes": 2048 * MIB}]}]}
    report = run_cost(_run(record), PriceTable())
    assert report.total.task_seconds == pytest.approx(1.234) and report.total.gb_seconds == pytest.approx(0.617)
    assert not report.estimate and report.summary().startswith("this run cost $0.000010")  # 0.617 x 1.66667e-5
    assert run_cost(_run({**record, "emulated": True}), PriceTable()).estimate  # the emulator bills nobody


def test_lambda_report_line_is_parsed() -> None:
    log = ("START RequestId: 8f5c Version: $LATEST\nhello\nEND RequestId: 8f5c\n"
           "REPORT RequestId: 8f5c\tDuration: 1233.12 ms\tBilled Duration: 1234 ms\tMemory Size: 512 MB\t"
           "Max Memory Used: 87 MB\tInit Duration: 250.33 ms\t\n")
    assert lambda_report(log) == TaskStats(lambda_billed_ms=1234.0, lambda_memory_mb=512, lambda_max_memory_used_mb=87)
    assert lambda_report("no report here") == TaskStats()


def test_price_config_overrides_and_its_date_is_shown(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[prices]\ndate = "2030-06-01"\narchitecture = "arm64"\nestimate_memory_mb = 1024\n'
                      '[prices.gb_second]\narm64 = 0.00001\n[prices.s3_request]\nGET = 0.0\n')
    prices = load_prices(str(config))
    assert prices.gb_second == {"x86_64": 0.0000166667, "arm64": 0.00001} and prices.estimate_memory_mb == 1024
    report = run_cost(_record(), prices)
    # reduce is now priced at 1024 MB: 3.501 + 2.0 = 5.501 GB-s x $0.00001; S3 without GETs: 12 PUT + 3 LIST
    # x $0.000005 + 3 HEAD x $0.0000004 = $0.0000762; + 3 invocations $0.0000006
    assert report.total.dollars(prices)["total"] == pytest.approx(0.00005501 + 0.0000762 + 0.0000006, rel=1e-9)
    assert "as of 2030-06-01" in report.summary()
    config.write_text("[prices]\ngb_secnd = 1\n")
    with pytest.raises(BabelMRError, match="unknown key 'gb_secnd'"):
        load_prices(str(config))


def test_store_requests_are_counted_by_kind(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s"))
    requests.reset()
    store.write_bytes("a/x.json", b"{}")
    assert store.put_if_absent("a/y.json", b"{}") and not store.put_if_absent("a/y.json", b"{}")
    store.read_bytes("a/x.json")
    store.exists("a/x.json")
    store.list("a")
    store.delete(["a/x.json", "a/y.json"])
    requests.count_upload(25 * MIB)  # three 10 MiB parts: create + 3 parts + complete
    requests.count_upload(100)
    assert requests.snapshot() == {"GET": 1, "PUT": 3 + 5 + 1, "LIST": 1, "HEAD": 1, "COPY": 0, "DELETE": 2}


def test_a_real_run_records_requests_and_cost_and_show_prints_them(tmp_path: Path) -> None:
    """One task, one input file, a program that writes nothing on stderr: its requests are known exactly."""
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"k": ["a", "b"], "v": [1, 2]}), tmp_path / "data" / "p.parquet")
    program = "import os, shutil; shutil.copy(os.environ['MR_INPUT'], os.environ['MR_OUTPUT'])"
    job = write_job(tmp_path, {"name": "one", "stages": [
        {"name": "copy", "command": [sys.executable, "-c", program], "inputs": [{"name": "d", "uri": "data"}]}]})
    result = CliRunner().invoke(main, ["run", str(job), "--json"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    attempt = record["stages"][0]["task_attempts"][0]
    # PUT: the export and the commit record; HEAD: opening the input and checking the export's size;
    # GET: the input's footer and its column chunks (one extent)
    assert attempt["s3_requests"] == {"GET": 2, "PUT": 2, "LIST": 0, "HEAD": 2, "COPY": 0, "DELETE": 0}
    assert record["stages"][0]["cost"]["invocations"] == 1
    assert record["cost"]["estimate"] is True and record["cost"]["prices"]["date"] == "2025-01-01"
    shown = CliRunner().invoke(main, ["show", record["run_id"], "--store", str(tmp_path / ".babelmr")])
    assert shown.exit_code == 0
    assert "this run on Lambda at 2048 MB would cost $" in shown.stdout and "GB-s" in shown.stdout
