#!/usr/bin/env bash
# Quick start: install Veche into .venv and start it on http://127.0.0.1:8080 with a demo meeting.
# Extra arguments go to `veche serve` (e.g. --port 9000). Data lives in ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# The names on rendered recordings: DejaVu Sans unless VECHE_FONT names another font.
[ -n "${VECHE_FONT:-}" ] ||
  need_debian_files /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core
python_env .
frontend_env
say "starting Veche"
exec "$VENV/bin/veche" serve --demo "$@"
