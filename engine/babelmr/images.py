"""Container images: the OS base image, the babelmr base image and the images of users' jobs.

Queries (exists, inspect, size) go through the Docker SDK; builds run the ``docker`` CLI with
BuildKit, which hands this machine's pip CA bundle (if its pip has one) to the build as the secret
``pip_cert`` so that nothing machine-specific stays in an image. See base-image/README.md.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from babelmr.errors import ImageError
from babelmr.settings import settings

BASE_IMAGE = "babelmr-base:latest"  # the image every job image starts FROM, and what a stage without one runs
BASE_TAG = BASE_IMAGE  # its older name
OS_BASE_IMAGE = "debian:bookworm-slim"
SOURCE_LABEL = "org.babelmr.source-hash"  # on the base image: hash of the sources it was built from
SECRET_ID = "pip_cert"
DEBIAN_MIRROR = "http://deb.debian.org/debian"  # the default of BABELMR_DEBIAN_MIRROR (babelmr.settings)
SOURCES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md",  # the build context, with engine/babelmr
           "base-image/entrypoint.sh", "base-image/babelmr-pip.sh",
           "base-image/lib/go/go.mod", "base-image/lib/go/babelmr.go", "base-image/lib/csharp/Babelmr.cs")
_START_DOCKER = ("start it: `dockerd > /tmp/dockerd.log 2>&1 &` as root (or `systemctl start docker`), "
                 "then check `docker info`; on a fresh Debian machine first `apt-get install -y docker.io`")

# What debuerreotype puts into Debian's official images; the "slim" variant also drops docs and locales.
_APT_CONF = {
    "docker-clean": 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
    "docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
}
_SLIM_EXCLUDES = ("/usr/share/doc/*", "/usr/share/groff/*", "/usr/share/info/*", "/usr/share/linda/*",
                  "/usr/share/lintian/overrides/*", "/usr/share/locale/*", "/usr/share/man/*")


@dataclass(frozen=True)
class BuildReport:
    """What a build produced: the tag, the image id, its size in bytes and how long it took."""

    tag: str
    image_id: str
    size: int
    seconds: float
    reused: bool = False

    def describe(self) -> str:
        """One line for people, sizes as ``docker images`` shows them."""
        how = "up to date, reused" if self.reused else f"built in {self.seconds:.1f} s"
        return f"{self.tag}: {self.size / 1e6:.0f} MB, {how} ({self.image_id.removeprefix('sha256:')[:12]})"


def image_repository(image: str) -> str:
    """The repository part of an image name, registry, tag and digest left out (``r.io/team/wc:v2`` -> ``wc``).

    The one naming rule: a Lambda function and an ECR repository are named after it.
    """
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def build_hint(image: str) -> str:
    """The command that builds ``image``: the base image's own, or a job image's."""
    if image_repository(image) == image_repository(BASE_IMAGE):
        return "`babelmr image base`" + ("" if image == BASE_IMAGE else f" -t {image}")
    return f"`babelmr image build DIR -t {image}`"


def docker_client(pool_size: int = 1) -> docker.DockerClient:
    """A new client of the local Docker engine (``pool_size`` connections used at once), or an `ImageError`
    saying how to start the engine. The one place babelmr connects to Docker."""
    try:
        client = docker.from_env(max_pool_size=max(10, pool_size + 4), timeout=600)
        client.ping()
        return client
    except docker.errors.DockerException as e:
        raise ImageError(f"cannot reach the Docker engine ({e}): {_START_DOCKER}") from None


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"babelmr: {message}", file=sys.stderr, flush=True)


_client: docker.DockerClient | None = None


def ensure_docker() -> docker.DockerClient:
    """A client of a Docker engine that answers, or an `ImageError` saying how to start one."""
    global _client
    if _client is not None:
        try:
            _client.ping()
            return _client
        except docker.errors.DockerException:
            _client = None
    _client = docker_client()
    return _client


def _docker_candidates() -> list[str]:
    seen: dict[str, str] = {}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(folder, "docker")
        if os.access(path, os.X_OK) and os.path.realpath(path) not in seen:
            seen[os.path.realpath(path)] = path
    return list(seen.values())


@functools.cache
def docker_cli() -> str:
    """A ``docker`` CLI on PATH that builds with BuildKit (``--secret``); ``BABELMR_DOCKER`` overrides."""
    chosen = settings().docker
    candidates = [chosen] if chosen else _docker_candidates()
    if not candidates:
        raise ImageError(f"no `docker` command on PATH: install the Docker CLI (`apt-get install -y docker.io`) "
                         f"and {_START_DOCKER}")
    for cli in candidates:
        try:
            probe = subprocess.run([cli, "build", "--help"], env=_build_env(), capture_output=True, text=True,
                                   timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "--secret" in probe.stdout + probe.stderr:
            return cli
    raise ImageError(f"no docker CLI of {candidates} builds with BuildKit (`DOCKER_BUILDKIT=1 docker build --help` "
                     "shows no --secret): install the buildx plugin (`apt-get install -y docker-buildx`) or Debian's "
                     "docker.io, whose client has BuildKit built in; or point BABELMR_DOCKER at such a client")


def _build_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_BUILDKIT": "1"}


def _inspect(tag: str) -> dict[str, Any] | None:
    try:
        return ensure_docker().images.get(tag).attrs
    except docker.errors.ImageNotFound:
        return None


def image_exists(tag: str) -> bool:
    """Whether the local Docker engine has an image of this name."""
    return _inspect(tag) is not None


def _require(tag: str) -> dict[str, Any]:
    attrs = _inspect(tag)
    if attrs is None:
        raise ImageError(f"no image {tag!r} in the local Docker engine: build it with {build_hint(tag)}")
    return attrs


def image_env(tag: str) -> dict[str, str]:
    """The image's environment (its ``ENV`` lines), e.g. ``MR_CMD`` and ``BABELMR_JOB_DIR``."""
    entries = (_require(tag).get("Config") or {}).get("Env") or []
    return dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in entries)


def image_labels(tag: str) -> dict[str, str]:
    """The image's labels."""
    return dict((_require(tag).get("Config") or {}).get("Labels") or {})


def image_size(tag: str) -> int:
    """The image's size in bytes, all layers (what ``docker images`` shows)."""
    return int(_require(tag).get("Size") or 0)


def _report(tag: str, seconds: float, reused: bool = False) -> BuildReport:
    attrs = _require(tag)
    return BuildReport(tag, attrs["Id"], int(attrs.get("Size") or 0), seconds, reused)


def repo_root() -> Path:
    """The babelmr checkout this package runs from (it holds the base image's Dockerfile)."""
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / "Dockerfile").is_file() or not (root / "base-image" / "entrypoint.sh").is_file():
        raise ImageError(f"no babelmr source checkout around {Path(__file__).parent} (looked for {root}/Dockerfile "
                         "and base-image/): the base image is built from a checkout of the babelmr repository: "
                         "clone it, `pip install -e .` there, and run `babelmr image base` again")
    return root


def _source_files(root: Path) -> list[Path]:
    files = [root / name for name in SOURCES if (root / name).is_file()]
    for folder, dirs, names in os.walk(root / "engine" / "babelmr"):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files.extend(Path(folder, n) for n in sorted(names) if not n.endswith((".pyc", ".pyo")))
    return files


def source_hash(root: Path | None = None) -> str:
    """A hash of everything the base image is built from: Dockerfile, base-image/ and the engine's sources."""
    root = root or repo_root()
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def pip_cert() -> str | None:
    """The CA bundle this machine's pip trusts (``PIP_CERT`` or ``pip config``), if it sets one."""
    candidates = [os.environ.get("PIP_CERT")]
    if not candidates[0]:
        for key in ("global.cert", "install.cert", "download.cert"):
            try:
                got = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True,
                                     text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                break
            if got.returncode == 0 and got.stdout.strip():
                candidates.append(got.stdout.strip())
                break
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def _secret_args() -> list[str]:
    cert = pip_cert()
    return ["--secret", f"id={SECRET_ID},src={cert}"] if cert else []


def _run(argv: list[str], quiet: bool, what: str, fix: str, **kwargs: Any) -> None:
    """Run a command; its output streams to the terminal, or is kept and shown only if it fails."""
    if not quiet:
        code = subprocess.run(argv, **kwargs).returncode
        tail = ""
    else:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", **kwargs)
        code = done.returncode
        tail = "\n".join(done.stdout.rstrip().splitlines()[-40:])
    if code != 0:
        shown = f"\n--- last lines of its output ---\n{tail}" if tail else " (its output is above)"
        raise ImageError(f"{what} failed with exit code {code}: `{shlex.join(argv)}`; {fix}{shown}")


def _docker_build(context: Path, dockerfile: Path, tag: str, quiet: bool, labels: dict[str, str]) -> None:
    argv = [docker_cli(), "build", "--tag", tag, "--file", str(dockerfile), *_secret_args()]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if quiet or not sys.stderr.isatty():
        argv += ["--progress", "plain"]
    argv.append(str(context))
    _say(f"building {tag} from {dockerfile} (context {context})", quiet)
    _run(argv, quiet, f"building {tag}", "read the build output for the failing step, fix it and build again",
         env=_build_env())


def _debootstrap() -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which("debootstrap", path=search)
    if found:
        return found
    if os.geteuid() != 0:
        raise ImageError("debootstrap is not installed: install it (`sudo apt-get install -y debootstrap`) and run "
                         "again as root")
    _run(["apt-get", "update"], False, "apt-get update", "check this machine's apt sources")
    _run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"], False,
         "installing debootstrap", "install it yourself")
    found = shutil.which("debootstrap", path=search)
    if not found:
        raise ImageError("debootstrap is still not on PATH after `apt-get install debootstrap`: install it by hand")
    return found


def _slim(rootfs: Path, mirror: str) -> None:
    """Make a debootstrapped tree look like Debian's official slim image (apt settings, no docs)."""
    (rootfs / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
    for name, text in _APT_CONF.items():
        (rootfs / "etc/apt/apt.conf.d" / name).write_text(text)
    dpkg = rootfs / "etc/dpkg/dpkg.cfg.d"
    dpkg.mkdir(parents=True, exist_ok=True)
    (dpkg / "docker-apt-speedup").write_text("force-unsafe-io\n")
    (dpkg / "docker").write_text("".join(f"path-exclude {p}\n" for p in _SLIM_EXCLUDES)
                                 + "path-include /usr/share/doc/*/copyright\n")
    security = "http://deb.debian.org/debian-security" if mirror == DEBIAN_MIRROR else mirror + "-security"
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    for pattern in _SLIM_EXCLUDES:
        for path in rootfs.glob(pattern.lstrip("/")):
            if path.is_dir() and not path.is_symlink():
                for inner in sorted(path.rglob("*"), reverse=True):
                    if inner.name != "copyright" and (inner.is_file() or inner.is_symlink()):
                        inner.unlink()
                    elif inner.is_dir() and not any(inner.iterdir()):
                        inner.rmdir()
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.name != "copyright":
                path.unlink()
    for folder in ("var/lib/apt/lists", "var/cache/apt", "var/log"):  # caches and logs: files go, folders stay
        for path in (rootfs / folder).rglob("*"):
            if (path.is_file() or path.is_symlink()) and path.name != "lock":
                path.unlink()
    for folder in ("tmp", "var/tmp"):
        for path in (rootfs / folder).glob("*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)
    (rootfs / "etc/machine-id").write_text("")


def ensure_os_base_image(quiet: bool = False) -> bool:
    """Have ``debian:bookworm-slim``: present, pulled, or else built with debootstrap. True if it was made here."""
    client = ensure_docker()
    if image_exists(OS_BASE_IMAGE):
        return False
    _say(f"{OS_BASE_IMAGE} is not in the Docker engine; pulling it", quiet)
    try:
        repository, tag = OS_BASE_IMAGE.split(":")
        client.images.pull(repository, tag=tag)
        return True
    except docker.errors.DockerException as e:
        _say(f"cannot pull {OS_BASE_IMAGE} ({str(e).splitlines()[0][:160]}); building a local stand-in "
             "with debootstrap (about half a minute)", quiet)
    if os.geteuid() != 0:
        raise ImageError(f"{OS_BASE_IMAGE} cannot be pulled and making it with debootstrap needs root: run "
                         "`babelmr image base` as root once, or pull/load the image yourself")
    debootstrap = _debootstrap()
    mirror = settings().debian_mirror
    start = time.perf_counter()
    rootfs = Path(tempfile.mkdtemp(prefix="babelmr-rootfs-", dir="/var/tmp"))
    try:
        _run([debootstrap, "--variant=minbase", "bookworm", str(rootfs), mirror], quiet, "debootstrap",
             f"check that {mirror} is reachable (or set BABELMR_DEBIAN_MIRROR)")
        _say("debootstrap done; slimming the tree like the official slim image", quiet)
        _slim(rootfs, mirror)
        _say(f"importing it as {OS_BASE_IMAGE}", quiet)
        changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["bash"]',
                   'LABEL org.babelmr.stand-in="debootstrap --variant=minbase bookworm"']
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            imported = subprocess.run([docker_cli(), "import", *(a for c in changes for a in ("--change", c)), "-",
                                       OS_BASE_IMAGE], stdin=tar.stdout, capture_output=True, text=True)
        finally:
            tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise ImageError(f"`tar -C {rootfs} -c . | docker import - {OS_BASE_IMAGE}` failed: "
                             f"{imported.stderr.strip() or 'tar exited with ' + str(tar.returncode)}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    _say(f"{OS_BASE_IMAGE} made in {time.perf_counter() - start:.0f} s "
         f"({image_size(OS_BASE_IMAGE) / 1e6:.0f} MB)", quiet)
    return True


def build_base_image(tag: str = BASE_TAG, quiet: bool = False) -> BuildReport:
    """Build the base image from the checkout's Dockerfile (making the OS base image first if needed)."""
    ensure_docker()
    root = repo_root()
    ensure_os_base_image(quiet)
    previous = (_inspect(tag) or {}).get("Id")
    start = time.perf_counter()
    _docker_build(root, root / "Dockerfile", tag, quiet, {SOURCE_LABEL: source_hash(root)})
    report = _report(tag, time.perf_counter() - start)
    if previous and previous != report.image_id:
        _remove_replaced(previous)
    return report


def _remove_replaced(image_id: str) -> None:
    """Drop the base image a rebuild replaced, unless a container or a job image still uses it."""
    with contextlib.suppress(docker.errors.DockerException):
        ensure_docker().images.remove(image_id)  # no force: refused while anything depends on it


def base_image_current(tag: str = BASE_TAG) -> bool:
    """Whether ``tag`` exists and was built from exactly the checkout's current sources."""
    attrs = _inspect(tag)
    labels = ((attrs or {}).get("Config") or {}).get("Labels") or {}
    return attrs is not None and labels.get(SOURCE_LABEL) == source_hash()


def ensure_base_image(tag: str = BASE_TAG, quiet: bool = False) -> BuildReport:
    """The base image, rebuilt only when missing or built from other sources than the checkout's."""
    ensure_docker()
    start = time.perf_counter()
    if base_image_current(tag):
        return _report(tag, time.perf_counter() - start, reused=True)
    return build_base_image(tag, quiet)


_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)


def dockerfile_bases(dockerfile: Path) -> list[str]:
    """The images a Dockerfile's FROM lines name (stage names included)."""
    return _FROM.findall(dockerfile.read_text())


def default_tag(directory: Path) -> str:
    """``babelmr-<folder>:latest``, the folder's name made a valid image name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", directory.resolve().name.lower()).strip("-._") or "job"
    return f"babelmr-{name}:latest"


def build_image(directory: str | os.PathLike[str], tag: str | None = None, quiet: bool = False) -> BuildReport:
    """Build a job's image from DIRECTORY/Dockerfile (usually FROM babelmr-base), building the base if missing."""
    folder = Path(directory).resolve()
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageError(f"{dockerfile}: no Dockerfile: write one of a few lines (FROM {BASE_TAG}, install your "
                         "runtime, COPY . /opt/job/, ENV MR_CMD=...; see base-image/README.md)")
    tag = tag or default_tag(folder)
    ensure_docker()
    for base in dict.fromkeys(dockerfile_bases(dockerfile)):
        if base.split(":")[0] == BASE_TAG.split(":")[0]:
            if not image_exists(base):
                _say(f"{base} is missing: building it first", quiet)
                build_base_image(base, quiet)
            elif base == BASE_TAG and _has_checkout() and not base_image_current(base):
                _say(f"note: {base} was built from other engine sources than this checkout's; "
                     "`babelmr image base` rebuilds it", quiet)
        elif base == OS_BASE_IMAGE:
            ensure_os_base_image(quiet)
    start = time.perf_counter()
    _docker_build(folder, dockerfile, tag, quiet, {})
    return _report(tag, time.perf_counter() - start)


def _has_checkout() -> bool:
    try:
        repo_root()
        return True
    except ImageError:
        return False
