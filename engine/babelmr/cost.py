"""What a run used and what it cost: task-seconds, GB-seconds, invocations, S3 requests, bytes, dollars.

Usage comes from the run record alone (each attempt's times, memory, request counts and, on Lambda, the
billed duration of its REPORT line), so older records without the newer fields still give what they can.
Dollars come from a price table: AWS list prices for us-east-1 (x86_64 and arm64) unless a config file
overrides them. For runs that did not run on AWS Lambda (local, docker, the Lambda emulator) the dollar
figure is an estimate: what the same attempts would cost as Lambda invocations of the task's memory size.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

from babelmr.errors import BabelMRError
from babelmr.settings import settings
from babelmr.spec import AttemptRecord, RunRecord, StageRecord, TaskStats

ARCHITECTURES = ("x86_64", "arm64")
DEFAULT_ESTIMATE_MB = 2048  # `babelmr run --memory`'s default: the size a local run is priced at
MB = 1 << 20


@dataclass(frozen=True)
class PriceTable:
    """Prices in US dollars; request prices per single request."""

    region: str = "us-east-1"
    date: str = "2025-01-01"
    source: str = "https://aws.amazon.com/lambda/pricing/ and https://aws.amazon.com/s3/pricing/ (list prices)"
    # Lambda duration, first tier (up to 6 billion GB-seconds a month), per GB-second (GB = 1024 MB).
    gb_second: dict[str, float] = field(default_factory=lambda: {"x86_64": 0.0000166667, "arm64": 0.0000133334})
    invocation: float = 0.20 / 1_000_000
    # S3 Standard: PUT/COPY/POST/LIST $0.005 per 1,000; GET/HEAD (and "all other") $0.0004 per 1,000; DELETE free.
    s3_request: dict[str, float] = field(default_factory=lambda: {
        "PUT": 0.005 / 1000, "COPY": 0.005 / 1000, "LIST": 0.005 / 1000,
        "GET": 0.0004 / 1000, "HEAD": 0.0004 / 1000, "DELETE": 0.0})
    architecture: str = "x86_64"  # the one per-stage figures use; totals show every architecture
    estimate_memory_mb: int = DEFAULT_ESTIMATE_MB


def config_path() -> str:
    """``$BABELMR_CONFIG``, else ``~/.config/babelmr/config.toml``."""
    return settings().config or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "babelmr", "config.toml")


def load_prices(path: str | None = None) -> PriceTable:
    """The default price table with the ``[prices]`` section of the config file (if any) applied.

    Keys: region, date, source, architecture, estimate_memory_mb, invocation, gb_second.x86_64,
    gb_second.arm64, s3_request.GET (PUT, LIST, HEAD, COPY, DELETE). Prices are dollars per unit.
    """
    path = path or config_path()
    table = PriceTable()
    if not os.path.exists(path):
        return table
    try:
        with open(path, "rb") as f:
            section = tomllib.load(f).get("prices", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BabelMRError(f"cannot read the price config {path}: {e}: fix its [prices] section") from None
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key in ("gb_second", "s3_request") and isinstance(value, dict):
            changes[key] = {**getattr(table, key), **{k: float(v) for k, v in value.items()}}
        elif key in ("region", "date", "source", "architecture"):
            changes[key] = str(value)
        elif key == "invocation":
            changes[key] = float(value)
        elif key == "estimate_memory_mb":
            changes[key] = int(value)
        else:
            raise BabelMRError(f"{path}: unknown key {key!r} in [prices]: use one of region, date, source, "
                               "architecture, estimate_memory_mb, invocation, gb_second, s3_request")
    table = replace(table, **changes)
    if table.architecture not in table.gb_second:
        raise BabelMRError(f"{path}: [prices] architecture {table.architecture!r} has no gb_second price: "
                           f"use one of {sorted(table.gb_second)}")
    return table


_REPORT = re.compile(r"REPORT RequestId:.*?Billed Duration: (?P<billed>[\d.]+) ms\s+Memory Size: (?P<mb>\d+) MB"
                     r"(?:\s+Max Memory Used: (?P<used>\d+) MB)?")


def lambda_report(log_tail: str, stats: TaskStats | None = None) -> TaskStats:
    """``stats`` (default: new ones) with the billed duration and memory size of a Lambda REPORT line, if any."""
    stats = TaskStats() if stats is None else stats
    match = None
    for match in _REPORT.finditer(log_tail):  # noqa: B007 - the last REPORT line is this invocation's
        pass
    if match is not None:
        stats.lambda_billed_ms, stats.lambda_memory_mb = float(match["billed"]), int(match["mb"])
        if match["used"]:
            stats.lambda_max_memory_used_mb = int(match["used"])
    return stats


@dataclass
class Usage:
    """What a set of attempts used (the quantities a bill is made of)."""

    task_seconds: float = 0.0
    gb_seconds: float = 0.0
    invocations: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_written: int = 0
    billed: bool = True  # every attempt had a Lambda billed duration

    def add(self, other: Usage) -> None:
        """Add ``other`` into this one."""
        self.task_seconds += other.task_seconds
        self.gb_seconds += other.gb_seconds
        self.invocations += other.invocations
        for k, v in other.requests.items():
            self.requests[k] = self.requests.get(k, 0) + v
        self.bytes_read += other.bytes_read
        self.bytes_written += other.bytes_written
        self.billed = self.billed and other.billed

    def dollars(self, prices: PriceTable, architecture: str | None = None) -> dict[str, float]:
        """Compute (duration), invocations and S3 requests in dollars, and their total."""
        arch = architecture or prices.architecture
        compute = self.gb_seconds * prices.gb_second[arch]
        invocations = self.invocations * prices.invocation
        s3 = sum(n * prices.s3_request.get(kind, 0.0) for kind, n in self.requests.items())
        return {"compute": compute, "invocations": invocations, "s3": s3, "total": compute + invocations + s3}

    def to_dict(self, prices: PriceTable) -> dict[str, Any]:
        """Plain JSON, with dollars for every architecture of the price table."""
        return {"task_seconds": self.task_seconds, "gb_seconds": self.gb_seconds, "invocations": self.invocations,
                "requests": dict(self.requests), "bytes_read": self.bytes_read, "bytes_written": self.bytes_written,
                "billed_duration": self.billed and self.invocations > 0,
                "dollars": {arch: self.dollars(prices, arch) for arch in prices.gb_second}}


def attempt_seconds(attempt: TaskStats) -> tuple[float, bool]:
    """Seconds an attempt is billed for, and whether that is Lambda's billed duration.

    Lambda: the REPORT line's billed duration. Otherwise the attempt's wall time in the worker (started to
    finished), rounded up to Lambda's 1 ms; older records without those times: import + program + export.
    """
    if attempt.lambda_billed_ms is not None:
        return attempt.lambda_billed_ms / 1000, True
    started, finished = attempt.started_at, attempt.finished_at
    if started is not None and finished is not None:
        seconds = max(0.0, finished - started)
    else:
        seconds = sum(s or 0.0 for s in (attempt.import_seconds, attempt.program_seconds, attempt.export_seconds))
    return math.ceil(seconds * 1000) / 1000, False


def attempt_memory_mb(attempt: TaskStats, stage: StageRecord, prices: PriceTable) -> int:
    """The memory size an attempt is priced at: Lambda's, the task's, the stage's, else the estimate size."""
    if attempt.lambda_memory_mb:
        return attempt.lambda_memory_mb
    for value in (attempt.memory_bytes, stage.memory_bytes):
        if value:
            return max(1, int(value) // MB)
    return prices.estimate_memory_mb


def stage_usage(stage: StageRecord, prices: PriceTable, attempts: list[AttemptRecord] | None = None) -> Usage:
    """The usage of every attempt of a stage entry (or ``attempts``; failed and duplicate ones are billed too)."""
    usage = Usage(billed=True)
    attempts = stage.task_attempts if attempts is None else attempts
    for entry in attempts:
        attempt = entry.stats
        seconds, billed = attempt_seconds(attempt)
        mb = attempt_memory_mb(attempt, stage, prices)
        one = Usage(task_seconds=seconds, gb_seconds=seconds * mb / 1024, invocations=1,
                    requests={k: int(v) for k, v in attempt.s3_requests.items() if v},
                    bytes_read=attempt.bytes_in or 0, bytes_written=attempt.bytes_out or 0, billed=billed)
        usage.add(one)
    if not attempts:
        usage.billed = False
    return usage


@dataclass
class CostReport:
    """Per stage and in total, with the prices used and whether the dollars are an estimate."""

    stages: list[tuple[str, Usage]]
    total: Usage
    coordinator_requests: dict[str, int]
    prices: PriceTable
    estimate: bool
    memory_mb: set[int]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the run record's ``cost`` and the dashboard's cost report)."""
        return {"stages": {name: u.to_dict(self.prices) for name, u in self.stages},
                "total": self.total.to_dict(self.prices), "coordinator_requests": self.coordinator_requests,
                "coordinator": Usage(requests=dict(self.coordinator_requests)).to_dict(self.prices),
                "estimate": self.estimate, "memory_mb": sorted(self.memory_mb),
                "prices": {"region": self.prices.region, "date": self.prices.date, "source": self.prices.source,
                           "architecture": self.prices.architecture},
                "summary": self.summary()}

    def summary(self) -> str:
        """One sentence with the total: billed, or the Lambda estimate for other backends."""
        d = {a: self.total.dollars(self.prices, a)["total"] for a in self.prices.gb_second}
        money = ", ".join(f"${v:.6f} on {a}" for a, v in d.items())
        sizes = "/".join(str(m) for m in sorted(self.memory_mb)) or str(self.prices.estimate_memory_mb)
        where = f"AWS list prices for {self.prices.region} as of {self.prices.date}"
        if self.estimate:
            return f"this run on Lambda at {sizes} MB would cost {money} ({where})"
        return f"this run cost {money} ({where}; Lambda billed duration)"


def run_cost(record: RunRecord, prices: PriceTable | None = None) -> CostReport:
    """The cost report of a run record (tolerates records written before these fields existed)."""
    prices = prices or load_prices()
    stages: list[tuple[str, Usage]] = []
    total, sizes = Usage(), set[int]()
    for stage in record.stages:
        usage = stage_usage(stage, prices)
        stages.append((stage.name, usage))
        total.add(usage)
        sizes.update(attempt_memory_mb(a.stats, stage, prices) for a in stage.task_attempts)
    coordinator = {k: int(v) for k, v in record.coordinator_s3_requests.items() if v}
    total.add(Usage(requests=coordinator, billed=total.billed))
    real_lambda = record.backend == "lambda" and not record.emulated
    estimate = not (real_lambda and total.billed and total.invocations > 0)
    return CostReport(stages, total, coordinator, prices, estimate, sizes)
