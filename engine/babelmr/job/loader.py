"""Validate a job file against the schema and babelmr's own rules, then build the `Job` model."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import shlex
import stat
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, get_args

import jsonschema

from babelmr.errors import JobFileError
from babelmr.job.model import (
    DEFAULT_RETRIES,
    CsvOptions,
    ExternalInput,
    Input,
    Job,
    Output,
    OutputFormat,
    Speculation,
    Split,
    Stage,
    StageInput,
)
from babelmr.units import parse_size
from babelmr.worker.formats import TYPE_NAMES, arrow_type

MAX_FILE_BYTES = 16 << 20  # a job file is a few KB; anything this large is not one
MAX_DEPTH = 24  # a valid job nests about 8 levels; deeper values only make error messages recurse
MAX_INT_DIGITS = 18  # every integer field is far below 10**18 (and Python refuses ints over 4300 digits)
MAX_SIZE_BYTES = 1 << 50  # 1 PiB: a size above this is a typo, and would overflow Docker's limits


@cache
def job_schema() -> dict[str, Any]:
    """The JSON Schema of job files, as shipped with the package."""
    text = resources.files("babelmr.job").joinpath("job.schema.json").read_text()
    return json.loads(text)


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema's "integer" accepts 4.0; babelmr does not (it would reach range() and crash the run).
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _validator() -> jsonschema.protocols.Validator:
    base = jsonschema.Draft202012Validator
    cls = jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer))
    return cls(job_schema())


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"\s*-?[0-9]+(\.[0-9]+)?\s*")


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part)}]"
    return path


def _preview(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of any parsed value, however deep (json.dumps would recurse)."""
    if isinstance(value, dict):
        text = "{...}" if value else "{}"
    elif isinstance(value, list):
        text = "[...]" if value else "[]"
    else:
        text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _BadNumber:
    """A number JSON allows to write but babelmr cannot use: NaN, +-Infinity, 1e400, a 30-digit integer."""

    def __init__(self, text: str, why: str):
        self.text, self.why = text, why


def _constant(text: str) -> _BadNumber:
    return _BadNumber(text, f"{text} is not a number in JSON (only some parsers accept it): give a finite number")


def _float(text: str) -> float | _BadNumber:
    value = float(text)
    if math.isfinite(value):
        return value
    return _BadNumber(text, f"{text[:40]} is too large for a number: give a finite number in the field's range")


def _int(text: str) -> int | _BadNumber:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _BadNumber(text, f"{text[:40]}{'...' if len(text) > 40 else ''} ({len(text)} digits) is too "
                                "large: give a number in the field's range")
    return int(text)


def _structure_problems(data: Any) -> list[tuple[str, str]]:
    """Values the schema cannot judge safely: unusable numbers, NUL characters, nesting deeper than any job needs."""
    problems = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:  # iterative: a deeply nested file must not exhaust Python's stack here either
        value, path = stack.pop()
        if isinstance(value, _BadNumber):
            problems.append((_json_path(path), value.why))
        elif any(isinstance(text, str) and "\x00" in text for text in (value, path[-1] if path else None)):
            # paths, commands and environments cannot hold NUL: the OS would refuse them mid-run
            problems.append((_json_path(path), "contains a NUL character (\\u0000): remove it"))
        elif len(path) >= MAX_DEPTH and isinstance(value, dict | list) and value:
            problems.append((_json_path(path), f"nested more than {MAX_DEPTH} levels deep: no field of a job "
                                               "file holds such values; remove it"))
        elif isinstance(value, dict):
            stack.extend((v, (*path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
    return problems


def _hint(error: jsonschema.ValidationError) -> str:
    """One line: what is wrong at the error's path and how to fix it."""
    # types-jsonschema types these `... | Unset` (a hand-made error lacks them); every error a validator yields has
    # them, and their JSON values' types depend on the keyword
    v = error.validator
    value: Any = error.instance
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if v == "required":
        missing = [name for name in expected if name not in (value or {})]
        return f"missing required field {', '.join(repr(m) for m in missing)}: add it"
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = [k for k in value if k not in allowed]
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"unknown field {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return "; ".join(hints) + f"; allowed fields: {', '.join(allowed)}"
    if v == "enum":
        return f"{value!r} is not allowed: use one of {', '.join(repr(x) for x in expected)}"
    if v == "type":
        if expected == "integer" and isinstance(value, float) and value.is_integer():
            return f"expected integer, got float {value!r}: write {int(value)} (no decimal point or exponent)"
        hint = f"expected {expected}, got {type(value).__name__} {_preview(value)}"
        if expected in ("integer", "number") and isinstance(value, str) and _NUMBER.fullmatch(value):
            hint += f": write {value.strip()} without quotes"
        return hint
    if v == "pattern":
        ending = " (it ends in a line break: remove it)" if value.endswith(("\n", "\r")) else ""
        if "int8" in expected:
            return f"{value!r} is not a type babelmr knows{ending}: use one of {TYPE_NAMES}"
        if "KMGT" in expected:
            return f"{value!r} is not a size: use a number of bytes or e.g. \"64MB\", \"1GiB\""
        if expected.startswith("^[A-Za-z_]"):
            return (f"{value!r} is not a valid environment variable name{ending}: letters, digits and '_', "
                    "not starting with a digit")
        dot = ", '.'" if "_.-" in expected else ""
        return (f"{value!r} is not a valid name{ending}: start with a letter or digit, then letters, digits{dot}, "
                "'_' or '-' (at most 63 characters)")
    if v in ("minItems", "minLength", "minProperties"):
        return f"must not be empty (at least {expected})"
    if v == "maxProperties":
        return f"give only one of {', '.join(sorted(schema.get('properties', {})))}"
    if v == "uniqueItems":
        return "has duplicate entries: list each only once"
    if v in ("minimum", "exclusiveMinimum", "maximum"):
        return error.message
    if v == "oneOf":
        return f"{_preview(value)} is not valid: {schema.get('description', error.message)}"
    return error.message


def _schema_problems(data: Any) -> list[tuple[str, str]]:
    problems = []
    for error in _validator().iter_errors(data):
        if error.validator == "if":
            continue
        problems.append((_json_path(error.absolute_path), _hint(error)))
    return problems


def _whole(value: Any) -> int | None:
    """``value`` if it is a JSON integer (not a bool, not 4.0), else None: a check on it is the schema's job."""
    return value if _is_integer(None, value) else None


def _names(value: Any) -> tuple[str, ...] | None:
    """``value`` as a tuple if it is a list of strings, else None."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _size_problem(value: Any) -> str | None:
    """Why a size (``memory``, ``bytes_per_task``) the schema accepted cannot be used, if it cannot."""
    if not (_whole(value) is not None or isinstance(value, str)):
        return None
    try:
        n = parse_size(value)
    except ValueError:
        return None  # not a size: the schema's pattern reports it
    except OverflowError:  # so many digits that the float is infinite
        n = MAX_SIZE_BYTES + 1
    if not 1 <= n <= MAX_SIZE_BYTES:
        what = "too large" if n > MAX_SIZE_BYTES else f"{n} bytes"
        return f"{_preview(value)} is {what}: give a size from 1 byte to 1 PiB"
    return None


def _join_problem(upstream: dict[str, dict[str, Any]]) -> str | None:
    """Why the partitioned stages read by one stage cannot be joined task by task, if they cannot.

    Task p of the reading stage gets partition p of every stage it reads. Rows with equal keys meet only
    if every upstream stage hashed the same key columns, in the same order, into the same number of
    partitions; otherwise each task sees only part of the other side and joins silently lose rows.
    """
    partitions = {ref: _whole(s.get("partitions", 1)) for ref, s in upstream.items()}
    counts = [n for n in partitions.values() if n is not None]
    if len(upstream) < 2 or len(counts) < len(partitions) or max(counts) <= 1:
        return None  # one task reads everything: any key meets any key
    fix = ("partition both stages by the same key columns (rename the join columns alike in both map "
           "programs) and the same partitions")
    described = ", ".join(f"{ref!r} into {n} by {list(_names(upstream[ref].get('key')) or [])}"
                          for ref, n in partitions.items())
    if len(set(partitions.values())) > 1:
        why = "task p reads partition p of each, so rows of one stage would meet only some of the other's"
        if 1 in partitions.values():
            why += " (an unpartitioned stage has only partition 0: tasks 1 and up would see none of it)"
        return f"the stages read here are partitioned differently ({described}): {why}: {fix}"
    placed = [ref for ref, s in upstream.items()
              if s.get("partitioner", "hash") != "hash" and (partitions[ref] or 1) > 1]
    if placed:
        how = ", ".join(f"{ref!r} by partitioner {upstream[ref].get('partitioner')!r}" for ref in placed)
        return (f"the stages read here are partitioned by more than a key's hash ({how}): equal keys of two "
                "stages meet in one partition only when both hash the same key columns into the same number of "
                "partitions (range boundaries are sampled per stage; salted and random spread keys apart): "
                "partition the stages joined here with the 'hash' partitioner")
    keys = {ref: _names(s.get("key")) for ref, s in upstream.items()}
    if None not in keys.values() and len(set(keys.values())) > 1:
        why = "equal join keys hash to the same partition only when both stages hash the same columns in order"
        return f"the stages read here are partitioned by different keys ({described}): {why}: {fix}"
    return None


def _semantic_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules JSON Schema cannot say: references between stages, one split input per stage, ...

    Each rule looks only at values of the type the schema expects; the schema reports the others.
    """
    problems: list[tuple[str, str]] = []
    stages = data.get("stages")
    if not isinstance(stages, list):
        return problems
    seen: dict[str, dict[str, Any]] = {}
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        at = f"$.stages[{i}]"
        name = stage.get("name") if isinstance(stage.get("name"), str) else None
        if name is not None and name in seen:
            problems.append((f"{at}.name", f"stage name {name!r} is used twice: give each stage its own name"))
        if stage.get("command") is None and stage.get("image") is None:
            problems.append((at, "give 'command' (the program to run) or 'image' (whose MR_CMD is run)"))
        if isinstance(stage.get("command"), str) and stage.get("shell", False) is not True:
            try:
                if not shlex.split(stage["command"]):
                    problems.append((f"{at}.command", "is blank: give the program to run"))
            except ValueError as e:  # what load_job does with it: split like a shell would
                problems.append((f"{at}.command", f"cannot be split like a shell would ({e}): close the quote, "
                                 "or give the command as a list of arguments"))
        partitions = _whole(stage.get("partitions", 1))
        if partitions is not None and partitions > 1 and not stage.get("key"):
            problems.append((f"{at}.partitions", "partitions > 1 needs 'key': the columns rows are partitioned by"))
        if isinstance(stage.get("split"), dict) and "bytes_per_task" in stage["split"]:
            why = _size_problem(stage["split"]["bytes_per_task"])
            if why:
                problems.append((f"{at}.split.bytes_per_task", why))
        if "memory" in stage and (why := _size_problem(stage["memory"])):
            problems.append((f"{at}.memory", why))
        inputs = given if isinstance(given := stage.get("inputs"), list) else []
        names = [inp.get("name") for inp in inputs if isinstance(inp, dict) and isinstance(inp.get("name"), str)]
        split_inputs: list[str] = []
        upstream: dict[str, dict[str, Any]] = {}
        for j, inp in enumerate(inputs):
            if not isinstance(inp, dict):
                continue
            iat = f"{at}.inputs[{j}]"
            if isinstance(inp.get("name"), str) and names.count(inp["name"]) > 1:
                problems.append((f"{iat}.name", f"input name {inp['name']!r} is used twice in this stage"))
            if "stage" in inp:
                ref = inp["stage"]
                if not isinstance(ref, str):
                    continue
                if ref not in seen:
                    later = [s.get("name") for s in stages[i:] if isinstance(s, dict)]
                    why = "a later stage or this one" if ref in later else "no stage of that name"
                    earlier = ", ".join(repr(s) for s in seen) or "none"
                    problems.append((f"{iat}.stage", f"{ref!r} is {why}: a stage can read only earlier stages "
                                     f"({earlier})"))
                else:
                    upstream[ref] = seen[ref]
            else:
                fmt = inp.get("format", "parquet")
                if inp.get("row_groups") is not None and fmt != "parquet":
                    problems.append((f"{iat}.row_groups", "row_groups works only with format 'parquet'"))
                if inp.get("csv") is not None and fmt != "csv":
                    problems.append((f"{iat}.csv", "csv options need \"format\": \"csv\""))
                if inp.get("broadcast", False) is not True:
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
        if why := _join_problem(upstream):
            problems.append((f"{at}.inputs", why))
        if stage.get("split") is not None and not split_inputs:
            problems.append((f"{at}.split", "'split' applies to a stage's external input that is not broadcast; "
                             "this stage has none: remove it"))
        problems += _sort_problems(stage, at, seen, split_inputs)
        problems += _partitioner_problems(stage, at, seen)
        if name is not None:
            seen[name] = stage
    return problems


def _type_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Type names of the right form that still name no type: an unknown time zone, a decimal too wide."""
    found: list[tuple[str, str]] = []
    type_name = re.compile(job_schema()["$defs"]["type_name"]["pattern"])
    stages = data.get("stages")
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        if not isinstance(stage, dict):
            continue
        schemas = [(f"$.stages[{i}].schema", stage.get("schema"))]
        inputs = stage.get("inputs")
        for j, inp in enumerate(inputs if isinstance(inputs, list) else []):
            csv = inp.get("csv") if isinstance(inp, dict) else None
            if isinstance(csv, dict):
                schemas.append((f"$.stages[{i}].inputs[{j}].csv.schema", csv.get("schema")))
        for at, schema in schemas:
            for column, name in (schema.items() if isinstance(schema, dict) else []):
                if isinstance(name, str) and type_name.match(name):  # other names: the schema's pattern says
                    try:
                        arrow_type(name)
                    except ValueError as e:
                        found.append((f"{at}.{column}", str(e)))
    return found


def _sort_problems(stage: dict[str, Any], at: str, seen: dict[str, dict[str, Any]],
                   split_inputs: list[str]) -> list[tuple[str, str]]:
    """A combiner needs a key; sort columns must be in the inputs that are sorted, where the job lists them."""
    problems: list[tuple[str, str]] = []
    if stage.get("combiner") is not None and not stage.get("key"):
        problems.append((f"{at}.combiner", "a combiner runs on the program's output before it is partitioned by "
                         "key: give the stage a 'key' or remove 'combiner'"))
    sort = stage.get("sort")
    if not isinstance(sort, list):
        return problems
    names = [c for c in (e if isinstance(e, str) else e.get("column") for e in sort if isinstance(e, (str, dict)))
             if isinstance(c, str)]
    for j, column in enumerate(names):
        if names.index(column) != j:
            problems.append((f"{at}.sort[{j}]", f"column {column!r} is listed twice: list each column once"))
    listed = given if isinstance(given := stage.get("inputs"), list) else []
    inputs = [i for i in listed if isinstance(i, dict)]
    if not split_inputs and not any("stage" in i for i in inputs):
        problems.append((f"{at}.sort", "'sort' sorts the stage's input that is split into tasks (or the stages it "
                         "reads); this stage has only broadcast inputs: remove it"))
    for j, inp in enumerate(listed):
        if not isinstance(inp, dict) or inp.get("broadcast"):
            continue
        ref, csv = inp.get("stage"), inp.get("csv")
        upstream = seen.get(ref) if isinstance(ref, str) else None
        key = upstream.get("key") if isinstance(upstream, dict) else None
        key = [k for k in key if isinstance(k, str)] if isinstance(key, list) else []
        known = inp.get("columns") or (csv.get("column_names") if isinstance(csv, dict) else None)
        if not isinstance(known, list) or not all(isinstance(c, str) for c in known):
            continue  # not knowable here (or refused by the schema): checked when the task's input is read
        for column in key:
            if column not in known:
                problems.append((f"{at}.inputs[{j}].columns", f"'sort' puts the key column {column!r} of stage "
                                 f"{inp['stage']!r} first, but this input's columns omit it: add it"))
        for k, column in enumerate(names):
            if column not in known and column not in key:
                problems.append((f"{at}.sort[{k}]", f"input {inp.get('name')!r} has no column {column!r} "
                                 f"(its columns: {', '.join(known)}): fix the sort or the input's columns"))
    return problems


def _partitioner_problems(stage: dict[str, Any], at: str, seen: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """A partitioner other than hash needs a key; 'salts' only with 'salted'; a stage reading a salted or
    random stage cannot ask for grouped input; the stages reading a range stage agree on the key's order."""
    problems: list[tuple[str, str]] = []
    partitioner = stage.get("partitioner", "hash")
    if partitioner in ("range", "salted", "random") and not stage.get("key"):
        problems.append((f"{at}.partitioner", f"partitioner {partitioner!r} places rows by their key: give the "
                         "stage a 'key' (the columns a later stage groups or sorts by) or remove 'partitioner'"))
    salts = _whole(stage.get("salts"))
    if "salts" in stage and partitioner != "salted":
        problems.append((f"{at}.salts", f"'salts' applies to partitioner 'salted' (this stage's is {partitioner!r}"
                         "): remove it or set \"partitioner\": \"salted\""))
    elif salts is not None and (partitions := _whole(stage.get("partitions", 1))) is not None and salts > partitions:
        problems.append((f"{at}.salts", f"{salts} salts exceed the stage's {partitions} partition(s): each key is "
                         "spread over at most all partitions; lower 'salts' or raise 'partitions'"))
    inputs = stage["inputs"] if isinstance(stage.get("inputs"), list) else []
    refs = [i["stage"] for i in inputs if isinstance(i, dict) and isinstance(i.get("stage"), str)
            and i["stage"] in seen]
    sort = stage.get("sort")
    for ref in dict.fromkeys(refs):
        upstream = seen[ref]
        how = upstream.get("partitioner", "hash")
        if how in ("salted", "random") and isinstance(sort, list):
            problems.append((f"{at}.sort", f"stage {ref!r} spreads each key over several partitions (partitioner "
                             f"{how!r}), so no task gets a whole group and sorted input would hand the program "
                             "partial groups as if whole: remove 'sort' here, aggregate each partial group, and "
                             "combine per key in a later stage (partitioner 'hash')"))
    return problems


def _range_order_problems(stages: list[Any]) -> list[tuple[str, str]]:
    """The stages reading one range-partitioned stage must sort its key columns alike (or not at all)."""
    problems: list[tuple[str, str]] = []
    by_name = {s["name"]: s for s in stages if isinstance(s, dict) and isinstance(s.get("name"), str)}
    first: dict[str, tuple[int, list[tuple[str, str, str]]]] = {}
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or not isinstance(stage.get("sort"), list):
            continue
        inputs = stage["inputs"] if isinstance(stage.get("inputs"), list) else []
        for ref in dict.fromkeys(i["stage"] for i in inputs if isinstance(i, dict) and isinstance(i.get("stage"), str)):
            upstream = by_name.get(ref)
            if not upstream or upstream.get("partitioner") != "range" or not _names(upstream.get("key")):
                continue
            order = range_order(stage["sort"], list(_names(upstream["key"]) or []))
            if order is None:
                continue
            if ref in first and first[ref][1] != order:
                before = ", ".join(f"{c} {d} nulls {n}" for c, d, n in first[ref][1])
                now = ", ".join(f"{c} {d} nulls {n}" for c, d, n in order)
                problems.append((f"$.stages[{i}].sort", f"stage {ref!r} is range-partitioned and stages["
                                 f"{first[ref][0]}] sorts its key as ({before}), but this stage as ({now}): the "
                                 "partitions follow one order of the key: sort the key alike in both"))
            first.setdefault(ref, (i, order))
    return problems


def range_order(sort: Any, key: list[str]) -> list[tuple[str, str, str]] | None:
    """The (column, order, nulls) of each key column as a stage's ``sort`` gives them; None: not readable."""
    entries = {}
    for entry in sort:
        if isinstance(entry, str):
            entries[entry] = ("asc", "last")
        elif isinstance(entry, dict) and isinstance(entry.get("column"), str):
            entries[entry["column"]] = (entry.get("order", "asc"), entry.get("nulls", "last"))
        else:
            return None
    return [(k, *entries.get(k, ("asc", "last"))) for k in key]


def validate_job_data(data: Any) -> list[str]:
    """Every problem of a parsed job file, each as ``"$.json.path: hint"``; empty when valid."""
    found = _structure_problems(data)
    if not found:  # the schema and the rules below may only see finite numbers and shallow values
        found = _schema_problems(data)
        if isinstance(data, dict):
            found += _semantic_problems(data)
            if isinstance(data.get("stages"), list):
                found += _range_order_problems(data["stages"])
            found += _type_problems(data)
    return [f"{path}: {hint}" for path, hint in dict.fromkeys(found)]


def _read_json(path: str) -> Any:
    """The parsed job file, or `JobFileError` saying why it cannot be read (never hangs on a FIFO)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses anything but a file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise JobFileError(path, ["file not found: check the path"]) from None
    except OSError as e:  # a symlink loop, no permission, a name too long, a file used as a folder
        raise JobFileError(path, [f"cannot open it: {e.strerror}: give the path of a readable job file"]) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise JobFileError(path, ["is a folder: give the path of the job's JSON file"])
        raise JobFileError(path, ["is not a regular file (a pipe, socket or device): save the job as a "
                                  "JSON file and give its path"])
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise JobFileError(path, [f"cannot read it: {e.strerror}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise JobFileError(path, [f"$: is larger than {MAX_FILE_BYTES >> 20} MiB: a job file is a small JSON object"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        at = len(raw) - len(e.object) + e.start  # e.object is what followed a byte order mark
        raise JobFileError(path, [f"$: not a UTF-8 text file (byte 0x{raw[at]:02x} at offset {at}): "
                                  "save it as UTF-8"]) from None
    if not text.strip():
        raise JobFileError(path, ["$: the file is empty: write the job as a JSON object, e.g. "
                                  "{\"name\": \"my-job\", \"stages\": [...]} (`babelmr schema` prints the schema)"])
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as e:
        raise JobFileError(path, [f"$: line {e.lineno}, column {e.colno}: not valid JSON: {e.msg}"]) from None
    except RecursionError:
        raise JobFileError(path, [f"$: nested too deeply to read: no field of a job file nests more than "
                                  f"{MAX_DEPTH} levels"]) from None


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
            newlines_in_values=csv.get("newlines_in_values", False),
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
        tolerated_failures=d.get("tolerated_failures", 0),
        sort=tuple(d["sort"]) if "sort" in d else None,
        combiner=_command(d.get("combiner"), d.get("shell", False)),
        warm=d.get("warm", False),
        speculation=_speculation(d.get("speculation", {})),
        partitioner=d.get("partitioner", "hash"),
        salts=d.get("salts"),
    )


def _speculation(d: dict[str, Any] | bool) -> Speculation | None:
    if d is False:
        return None
    d = d if isinstance(d, dict) else {}
    default = Speculation()
    return Speculation(after=d.get("after", default.after), slowdown=d.get("slowdown", default.slowdown),
                       min_seconds=d.get("min_seconds", default.min_seconds))


def _output(data: dict[str, Any] | None, job_dir: str, uri: str | None, fmt: OutputFormat | None,
            overwrite: bool) -> Output | None:
    """The job's output, the command line's ``--output``/``--output-format``/``--overwrite`` over the file's."""
    if data is None and uri is None:
        return None
    data = dict(data or {})
    if uri is not None:  # a command-line path is relative to where the command runs
        data["uri"] = _resolve_uri(uri, os.getcwd())
    else:
        data["uri"] = _resolve_uri(data["uri"], job_dir)
    return Output(uri=data["uri"], format=fmt or data.get("format", "parquet"),
                  mode="overwrite" if overwrite else data.get("mode", "error"))


def load_job(path: str, *, store: str | None = None, output: str | None = None,
             output_format: OutputFormat | None = None, overwrite: bool = False) -> Job:
    """Read, validate and resolve a job file; raises `JobFileError` listing every problem.

    ``output``, ``output_format`` and ``overwrite`` (the command line's) override the file's ``output``.
    """
    path = os.path.abspath(path)
    data = _read_json(path)
    problems = validate_job_data(data)
    if output_format is not None and output_format not in get_args(OutputFormat):  # a Python caller's typo
        problems.append(f"output_format {output_format!r} is not an output format: use one of "
                        f"{', '.join(get_args(OutputFormat))}")
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
        output=_output(data.get("output"), job_dir, output, output_format, overwrite),
    )
