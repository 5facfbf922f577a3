"""The seams callers use instead of reaching around: `Store` (check, local root, size), the backend registry
with per-backend options, one image-naming rule, protocol constants in `babelmr.spec`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from babelmr.backends import REGISTRY, backend_class, get_backend
from babelmr.backends.aws_lambda import LambdaBackend, function_name
from babelmr.backends.containers import ContainerLimits
from babelmr.backends.docker import DockerBackend
from babelmr.backends.inline import InlineBackend
from babelmr.backends.local import LocalBackend
from babelmr.deploy import repository_name
from babelmr.errors import BabelMRError
from babelmr.images import BASE_IMAGE, build_hint, image_repository
from babelmr.store import open_store, requests

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine" / "babelmr"


def test_only_the_store_package_asks_which_kind_of_store_it_has() -> None:
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in ENGINE.rglob("*.py") if "store" not in p.parent.name
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"isinstance\(\w*store\w*,|\b(S3Store|LocalStore)\b|store\.filesystem\.", line)]
    assert offenders == []


def test_size_local_root_and_check(store_uri: str) -> None:
    store = open_store(store_uri)
    store.check()
    store.write_bytes("a/b.bin", b"12345")
    requests.reset()
    assert store.size("a/b.bin") == 5
    assert requests.snapshot().get("HEAD") == 1  # one request, counted as S3 bills it
    with pytest.raises(FileNotFoundError):
        store.size("a/missing.bin")
    if store_uri.startswith("s3://"):
        assert store.local_root is None
    else:
        assert store.local_root == str(Path(store_uri).resolve())
        assert Path(store.local_root, "a", "b.bin").read_bytes() == b"12345"


@pytest.mark.parametrize(("name", "cls", "options"), [
    ("local", LocalBackend, {"concurrency", "workdir"}),
    ("inline", InlineBackend, {"concurrency", "workdir"}),
    ("docker", DockerBackend, {"concurrency", "limits"}),
    ("lambda", LambdaBackend, {"concurrency", "limits", "emulators"}),
])
def test_every_backend_is_registered_with_its_own_options(name: str, cls: type, options: set[str]) -> None:
    assert backend_class(name) is cls and cls.name == name
    assert cls.option_names() == options
    limits = ContainerLimits(memory=3 << 30)
    # one command line serves every backend: options another backend declares are ignored
    with get_backend(name, concurrency=3, limits=limits, emulators=None) as backend:
        assert type(backend) is cls and backend.concurrency == 3
        assert backend.memory_per_task == (3 << 30 if "limits" in options else None)
        assert backend.emulated is False


def test_an_unknown_backend_or_option_is_refused() -> None:
    with pytest.raises(BabelMRError, match=r"unknown backend 'nope': use one of local, docker, lambda, inline"):
        get_backend("nope")
    with pytest.raises(BabelMRError, match=r"backend 'local': unknown option\(s\) \['concurrenzy'\]"):
        get_backend("local", concurrenzy=2)
    assert set(REGISTRY) == {"local", "docker", "lambda", "inline"}


@pytest.mark.parametrize(("image", "repository"), [
    ("babelmr-example-go-tpch-q1:latest", "babelmr-example-go-tpch-q1"),
    ("123.dkr.ecr.eu-west-1.amazonaws.com/team/wc:v2", "wc"),
    ("localhost:5000/wc", "wc"),
    ("wc@sha256:0123abcd", "wc"),
    ("r.io/team/wc:v2@sha256:0123abcd", "wc"),
])
def test_one_naming_rule_for_repositories_and_functions(image: str, repository: str) -> None:
    assert image_repository(image) == repository_name(image) == repository
    assert function_name(image) == repository


def test_the_base_image_has_one_name_and_one_hint() -> None:
    assert BASE_IMAGE == "babelmr-base:latest"
    assert build_hint(BASE_IMAGE) == "`babelmr image base`"
    assert build_hint("babelmr-wc:latest") == "`babelmr image build DIR -t babelmr-wc:latest`"
    literal = [f"{p.relative_to(ROOT)}:{n}" for p in ENGINE.rglob("*.py")
               for n, line in enumerate(p.read_text().splitlines(), 1)
               if re.search(r"[\"']babelmr-base", line) and "BASE_IMAGE = " not in line]
    assert literal == []


def test_backends_take_the_protocol_constants_from_the_spec_module() -> None:
    backends = "\n".join(p.read_text() for p in (ENGINE / "backends").glob("*.py"))
    assert "babelmr.worker.__main__" not in backends
    assert "from babelmr.spec import RESULT_MARKER, SPEC_ENV" in (ENGINE / "backends" / "docker.py").read_text()


@pytest.mark.parametrize("how", ["option", "setting"])
def test_the_workdir_option_and_setting_place_the_tasks_working_directories(tmp_path: Path, tune, how: str) -> None:
    import babelmr
    from scripted import make_job

    seen = tmp_path / "seen.txt"
    job = make_job(tmp_path / "job", files=1, map_command=["sh", "-c", f"echo $MR_WORKDIR >> {seen}; cp in.parquet "
                                                                      "out.parquet"])
    chosen = tmp_path / "scratch"
    chosen.mkdir()
    if how == "setting":
        tune(workdir=str(chosen))
    with get_backend("inline", workdir=str(chosen) if how == "option" else None) as backend:
        babelmr.run(job, backend=backend)
    (workdir,) = seen.read_text().split()
    assert Path(workdir).parent.parent == chosen
