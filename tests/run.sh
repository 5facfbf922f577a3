#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs every test.
# Usage: bash tests/run.sh [pytest args...]
# Tests marked `docker` need a Docker engine: when `docker info` fails, this script installs one
# (Debian's docker.io, as root) and starts dockerd in the background. `-m "not docker"` skips that.
# Tests marked `browser` need Debian's chromium and chromium-driver, installed the same way when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test,benchmarks]"

DOCKERD_LOG=/tmp/babelmr-dockerd.log

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "tests/run.sh: no Docker engine answers (docker info) and only root can install or start one here:" \
             "start dockerd (or run this script as root), or skip those tests with -m 'not docker'" >&2
        return 1
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        echo "tests/run.sh: installing the Docker engine (apt-get install docker.io debootstrap)" >&2
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap
    fi
    echo "tests/run.sh: starting dockerd in the background (log: $DOCKERD_LOG)" >&2
    nohup dockerd >"$DOCKERD_LOG" 2>&1 &
    local pid=$!
    for _ in $(seq 60); do
        if docker info >/dev/null 2>&1; then
            echo "tests/run.sh: dockerd answers" >&2
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break  # dockerd exited
        sleep 1
    done
    echo "tests/run.sh: dockerd did not answer (waited up to 60 s); the end of $DOCKERD_LOG:" >&2
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    echo "tests/run.sh: fix the engine, or skip the Docker tests with -m 'not docker'" >&2
    return 1
}

ensure_chromium() {
    # The dashboard's browser tests drive Debian's headless Chromium through its chromedriver (no download at
    # test time). Installed like the Docker engine: only as root, and only when missing.
    if command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "tests/run.sh: the browser tests need chromium and chromium-driver (apt-get install them as root);" \
             "without them they are skipped. Deselect them with -m 'not browser'" >&2
        return 0
    fi
    echo "tests/run.sh: installing chromium and chromium-driver for the browser tests" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
}

case " $* " in
    *"not browser"*) ;;  # the caller deselected the browser tests
    *) ensure_chromium ;;
esac

case " $* " in
    *"not docker"*) ;;  # the caller deselected the Docker tests
    *)
        ensure_docker
        export PATH="$PATH:/usr/sbin:/sbin"
        if [ "$(id -u)" = 0 ] && ! command -v debootstrap >/dev/null 2>&1; then
            # builds the local stand-in for debian:bookworm-slim when no registry is reachable
            apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
        fi
        ;;
esac
exec python3 -m pytest "$@"
