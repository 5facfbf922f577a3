"""Validate a job file against the schema and babelmr's own rules, then build the `Job` model."""

from __future__ import annotations

import difflib
import json
import os
import shlex
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from babelmr.errors import JobFileError
from babelmr.job.model import (
    DEFAULT_RETRIES,
    CsvOptions,
    ExternalInput,
    Input,
    Job,
    Speculation,
    Split,
    Stage,
    StageInput,
)
from babelmr.units import parse_size


@cache
def job_schema() -> dict[str, Any]:
    """The JSON Schema of job files, as shipped with the package."""
    text = resources.files("babelmr.job").joinpath("job.schema.json").read_text()
    return json.loads(text)


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _hint(error: jsonschema.ValidationError) -> str:
    """One line: what is wrong at the error's path and how to fix it."""
    v, value = error.validator, error.instance
    if v == "required":
        missing = [name for name in error.validator_value if name not in (value or {})]
        return f"missing required field {', '.join(repr(m) for m in missing)}: add it"
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = [k for k in value if k not in allowed]
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"unknown field {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return "; ".join(hints) + f"; allowed fields: {', '.join(allowed)}"
    if v == "enum":
        return f"{value!r} is not allowed: use one of {', '.join(repr(x) for x in error.validator_value)}"
    if v == "type":
        return f"expected {error.validator_value}, got {type(value).__name__} {json.dumps(value)[:60]}"
    if v == "pattern":
        if "int8" in error.validator_value:
            return (f"{value!r} is not a type babelmr knows: use int64, float64, string, bool, date32, "
                    "timestamp[us], decimal128(p,s), ...")
        if "KMGT" in error.validator_value:
            return f"{value!r} is not a size: use a number of bytes or e.g. \"64MB\", \"1GiB\""
        return (f"{value!r} is not a valid name: start with a letter or digit, then letters, digits, "
                "'_' or '-' (at most 63 characters)")
    if v in ("minItems", "minLength", "minProperties"):
        return f"must not be empty (at least {error.validator_value})"
    if v == "maxProperties":
        return f"give only one of {', '.join(sorted(error.schema.get('properties', {})))}"
    if v == "uniqueItems":
        return "has duplicate entries: list each only once"
    if v in ("minimum", "exclusiveMinimum", "maximum"):
        return error.message
    if v == "oneOf":
        return f"{json.dumps(value)[:60]} is not valid: {error.schema.get('description', error.message)}"
    return error.message


def _schema_problems(data: Any) -> list[tuple[str, str]]:
    validator = jsonschema.Draft202012Validator(job_schema())
    problems = []
    for error in validator.iter_errors(data):
        if error.validator == "if":
            continue
        problems.append((_json_path(error.absolute_path), _hint(error)))
    return problems


def _semantic_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules JSON Schema cannot say: references between stages, one split input per stage, ..."""
    problems: list[tuple[str, str]] = []
    stages = data.get("stages")
    if not isinstance(stages, list):
        return problems
    seen: dict[str, dict[str, Any]] = {}
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        at = f"$.stages[{i}]"
        name = stage.get("name")
        if name in seen:
            problems.append((f"{at}.name", f"stage name {name!r} is used twice: give each stage its own name"))
        if stage.get("command") is None and stage.get("image") is None:
            problems.append((at, "give 'command' (the program to run) or 'image' (whose MR_CMD is run)"))
        if stage.get("partitions", 1) > 1 and not stage.get("key"):
            problems.append((f"{at}.partitions", "partitions > 1 needs 'key': the columns rows are partitioned by"))
        inputs = stage.get("inputs") if isinstance(stage.get("inputs"), list) else []
        names = [inp.get("name") for inp in inputs if isinstance(inp, dict)]
        split_inputs, upstream_partitions = [], set()
        for j, inp in enumerate(inputs):
            if not isinstance(inp, dict):
                continue
            iat = f"{at}.inputs[{j}]"
            if inp.get("name") is not None and names.count(inp.get("name")) > 1:
                problems.append((f"{iat}.name", f"input name {inp['name']!r} is used twice in this stage"))
            if "stage" in inp:
                ref = inp["stage"]
                if ref not in seen:
                    later = [s.get("name") for s in stages[i:] if isinstance(s, dict)]
                    why = "a later stage or this one" if ref in later else "no stage of that name"
                    earlier = ", ".join(repr(s) for s in seen) or "none"
                    problems.append((f"{iat}.stage", f"{ref!r} is {why}: a stage can read only earlier stages "
                                     f"({earlier})"))
                else:
                    upstream_partitions.add(seen[ref].get("partitions", 1))
            else:
                fmt = inp.get("format", "parquet")
                if inp.get("row_groups") is not None and fmt != "parquet":
                    problems.append((f"{iat}.row_groups", "row_groups works only with format 'parquet'"))
                if inp.get("csv") is not None and fmt != "csv":
                    problems.append((f"{iat}.csv", "csv options need \"format\": \"csv\""))
                if not inp.get("broadcast", False):
                    split_inputs.append(iat)
        has_upstream = any(isinstance(inp, dict) and "stage" in inp for inp in inputs)
        if has_upstream and split_inputs:
            for iat in split_inputs:
                problems.append((iat, "this stage reads an earlier stage, so its tasks follow that stage's "
                                 "partitions: mark external inputs here \"broadcast\": true"))
        elif len(split_inputs) > 1:
            for iat in split_inputs[1:]:
                problems.append((iat, f"only one external input per stage is split into tasks ({split_inputs[0]}); "
                                 "mark the others \"broadcast\": true"))
        if len(upstream_partitions) > 1:
            problems.append((f"{at}.inputs", f"the stages read here have different partition counts "
                             f"({sorted(upstream_partitions)}): give them the same 'partitions'"))
        if stage.get("split") is not None and not split_inputs:
            problems.append((f"{at}.split", "'split' applies to a stage's external input that is not broadcast; "
                             "this stage has none: remove it"))
        if isinstance(name, str):
            seen[name] = stage
    return problems


def validate_job_data(data: Any) -> list[str]:
    """Every problem of a parsed job file, each as ``"$.json.path: hint"``; empty when valid."""
    found = _schema_problems(data)
    if isinstance(data, dict):
        found += _semantic_problems(data)
    return [f"{path}: {hint}" for path, hint in dict.fromkeys(found)]


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise JobFileError(path, ["file not found: check the path"]) from None
    except IsADirectoryError:
        raise JobFileError(path, ["is a folder: give the path of the job's JSON file"]) from None
    except json.JSONDecodeError as e:
        raise JobFileError(path, [f"line {e.lineno}, column {e.colno}: not valid JSON: {e.msg}"]) from None
    except UnicodeDecodeError:
        raise JobFileError(path, ["not a UTF-8 text file"]) from None


def _resolve_uri(uri: str, base: str) -> str:
    """Local paths relative to the job file's folder become absolute; URIs stay as they are."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    path = uri.removeprefix("file://")
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _command(value: str | list[str] | None, shell: bool) -> tuple[str, ...] | None:
    # '{job_dir}' stays: the worker resolves it (the job's folder locally, BABELMR_JOB_DIR in an image).
    if value is None:
        return None
    if isinstance(value, str):
        return (value,) if shell else tuple(shlex.split(value))  # a shell gets the string as written
    return tuple(value)


def _input(d: dict[str, Any], job_dir: str) -> Input:
    columns = tuple(d["columns"]) if "columns" in d else None
    if "stage" in d:
        return StageInput(name=d["name"], stage=d["stage"], columns=columns)
    csv = d.get("csv", {})
    return ExternalInput(
        name=d["name"],
        uri=_resolve_uri(d["uri"], job_dir),
        format=d.get("format", "parquet"),
        columns=columns,
        row_groups=tuple(d["row_groups"]) if "row_groups" in d else None,
        broadcast=d.get("broadcast", False),
        csv=CsvOptions(
            delimiter=csv.get("delimiter", ","),
            header=csv.get("header", True),
            column_names=tuple(csv["column_names"]) if "column_names" in csv else None,
            schema=csv.get("schema"),
        ),
    )


def _stage(d: dict[str, Any], job_dir: str) -> Stage:
    split = d.get("split", {})
    return Stage(
        name=d["name"],
        inputs=tuple(_input(i, job_dir) for i in d["inputs"]),
        command=_command(d.get("command"), d.get("shell", False)),
        shell=d.get("shell", False),
        image=d.get("image"),
        mode=d.get("mode"),
        split=Split(
            files_per_task=split.get("files_per_task"),
            bytes_per_task=parse_size(split["bytes_per_task"]) if "bytes_per_task" in split else None,
        ),
        program_format=d.get("program_format", "parquet"),
        key=tuple(d["key"]) if "key" in d else None,
        partitions=d.get("partitions", 1),
        schema=d.get("schema"),
        timeout=d.get("timeout"),
        retries=d.get("retries", DEFAULT_RETRIES),
        concurrency=d.get("concurrency"),
        memory=parse_size(d["memory"]) if "memory" in d else None,
        env=d.get("env", {}),
        speculation=_speculation(d.get("speculation", {})),
    )


def _speculation(d: dict[str, Any] | bool) -> Speculation | None:
    if d is False:
        return None
    d = d if isinstance(d, dict) else {}
    default = Speculation()
    return Speculation(after=d.get("after", default.after), slowdown=d.get("slowdown", default.slowdown),
                       min_seconds=d.get("min_seconds", default.min_seconds))


def load_job(path: str, *, store: str | None = None) -> Job:
    """Read, validate and resolve a job file; raises `JobFileError` listing every problem."""
    path = os.path.abspath(path)
    data = _read_json(path)
    problems = validate_job_data(data)
    if problems:
        raise JobFileError(path, problems)
    job_dir = os.path.dirname(path)
    store_uri = store or data.get("store") or ".babelmr"
    return Job(
        name=data["name"],
        path=path,
        directory=job_dir,
        store=_resolve_uri(store_uri, job_dir if store is None else os.getcwd()),
        stages=tuple(_stage(s, job_dir) for s in data["stages"]),
        env=data.get("env", {}),
    )
