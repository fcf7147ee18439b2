#!/usr/bin/env bash
# Installs everything the tests need (Python and front-end packages; as root, Debian's
# redis-server, chromium, firefox-esr and the DejaVu fonts) and runs the whole suite: lint,
# types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# janus: the bench compares Veche with Janus side by side, in CI too.
need_debian_packages redis-server:redis-server chromium:chromium npm:npm janus:janus gcc:gcc
# The second browser engine of the browser tests (tests/firefox.py drives it over WebDriver BiDi).
need_debian_packages firefox-esr:firefox-esr
# The recording renderer's default font for the names on the programme (Cyrillic included).
need_debian_files /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core
python_env ".[dev]"
frontend_env
say "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
say "mypy"
"$VENV/bin/mypy"
say "pytest"
exec "$VENV/bin/pytest" "$@"
