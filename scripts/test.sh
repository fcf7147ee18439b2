#!/usr/bin/env bash
# Installs everything the tests need (Python and front-end packages; as root, Debian's
# redis-server and chromium) and runs the whole suite: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# janus: the bench compares Veche with Janus side by side, in CI too.
need_debian_packages redis-server:redis-server chromium:chromium npm:npm janus:janus gcc:gcc
python_env ".[dev]"
frontend_env
say "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
say "mypy"
"$VENV/bin/mypy"
say "pytest"
exec "$VENV/bin/pytest" "$@"
