#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs every test.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
exec python3 -m pytest "$@"
